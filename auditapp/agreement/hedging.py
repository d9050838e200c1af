"""Hedging language per condition: the share of steps whose text hedges, evaluator-free.

The audit paper's point is that answer metrics *and hedging rates* do not reveal the
step-error ordering, so the report shows, per condition, the share of steps containing at
least one term of a fixed, versioned lexicon (whole words, case-insensitive) with a
cluster-bootstrap interval over traces and the small-sample rule of
:mod:`auditapp.agreement.rates`. No evaluator is involved: it is a property of the text.

(Not to be confused with ``hedge`` in the judges' HTTP client, which means a duplicated
request sent to beat a slow response.)

The lexicon (``hedging-v1``) is :data:`HEDGING_TERMS`; a new term goes into a new version so
that an audit's figure never changes under it. An audit may add its own terms
(``extra_terms``); the report names them.

Examples
--------
>>> hedging_flags(["It is probably viral.", "The rate is 5.", "I'm not sure, maybe B."])
[True, False, True]
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from auditapp.agreement.rates import (
    METHOD_BOOTSTRAP,
    METHOD_EFFECTIVE_WILSON,
    SMALL_SAMPLE_TRACES,
    bootstrap_totals,
    effective_wilson_interval,
)

__all__ = [
    "HEDGING_LEXICON_VERSION",
    "HEDGING_TERMS",
    "hedging_flags",
    "hedging_language_rates",
    "hedging_terms_check",
]

HEDGING_LEXICON_VERSION = "hedging-v1"
# Epistemic hedges: words and phrases that mark a claim as uncertain. Multi-word terms match
# as phrases (any whitespace between the words); straight and curly apostrophes alike.
HEDGING_TERMS: tuple[str, ...] = (
    "maybe",
    "perhaps",
    "possibly",
    "possible",
    "probably",
    "probable",
    "likely",
    "unlikely",
    "might",
    "could be",
    "may be",
    "seems",
    "seem",
    "appears to",
    "apparently",
    "presumably",
    "arguably",
    "i think",
    "i believe",
    "i guess",
    "i suspect",
    "i'm not sure",
    "i am not sure",
    "not sure",
    "not certain",
    "uncertain",
    "unclear",
    "suggests",
    "suggestive of",
    "cannot rule out",
    "can't rule out",
    "cannot exclude",
    "it is possible",
    "somewhat",
    "roughly",
)


# An audit's own terms (``Audit.hedging_terms``): words and phrases, never patterns.
MAX_EXTRA_TERMS = 50
MAX_TERM_LENGTH = 60
MAX_TERM_WORDS = 6
_TERM = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*(?:\s+[^\W\d_]+(?:['’-][^\W\d_]+)*)*")


def _term_key(term: str) -> str:
    return " ".join(term.replace("’", "'").casefold().split())


def hedging_terms_check(terms: Any) -> list[str]:
    """An audit's additions to the lexicon, checked: returns them trimmed, in order.

    Each term is a word or a phrase of at most 6 words, 2–60 characters, of letters with
    single spaces, apostrophes or hyphens inside words (``not convinced``, ``can't say``,
    ``so-called``) — no digits, punctuation or regex syntax (terms are matched literally in
    any case). At most 50, none twice (ignoring case), none already in the lexicon.

    Raises
    ------
    ValueError
        Naming the first term that breaks a rule.

    Examples
    --------
    >>> hedging_terms_check(["  Not convinced ", "can't say"])
    ['Not convinced', "can't say"]
    >>> hedging_terms_check(["(a|b)*"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: hedging term '(a|b)*': only letters, with spaces, ...
    """
    if not isinstance(terms, list | tuple):
        raise ValueError("hedging terms must be a list of words or phrases")
    if len(terms) > MAX_EXTRA_TERMS:
        raise ValueError(f"at most {MAX_EXTRA_TERMS} hedging terms, got {len(terms)}")
    lexicon = {_term_key(t) for t in HEDGING_TERMS}
    seen: set[str] = set()
    out = []
    for raw in terms:
        if not isinstance(raw, str):
            raise ValueError(f"hedging term {raw!r}: must be text")
        term = " ".join(raw.split())
        if not 2 <= len(term) <= MAX_TERM_LENGTH:
            raise ValueError(
                f"hedging term {raw!r}: 2 to {MAX_TERM_LENGTH} characters, got {len(term)}"
            )
        if not _TERM.fullmatch(term):
            raise ValueError(
                f"hedging term {raw!r}: only letters, with spaces, apostrophes or hyphens "
                "between them"
            )
        if len(term.split()) > MAX_TERM_WORDS:
            raise ValueError(f"hedging term {raw!r}: at most {MAX_TERM_WORDS} words")
        key = _term_key(term)
        if key in lexicon:
            raise ValueError(
                f"hedging term {raw!r} is already in the lexicon {HEDGING_LEXICON_VERSION}"
            )
        if key in seen:
            raise ValueError(f"hedging term {raw!r} is listed twice")
        seen.add(key)
        out.append(term)
    return out


def _pattern(terms: Iterable[str]) -> re.Pattern[str]:
    # Terms are matched literally (re.escape), apostrophes straight as in the texts read.
    words = sorted({_term_key(t) for t in terms if t.strip()}, key=len, reverse=True)
    parts = [r"\s+".join(re.escape(w) for w in term.split()) for term in words]
    return re.compile(r"(?<![\w'])(?:" + "|".join(parts) + r")(?![\w'])", re.IGNORECASE)


def hedging_flags(texts: Sequence[str], *, extra_terms: Iterable[str] = ()) -> list[bool]:
    """Whether each text contains a hedging term (whole words, case-insensitive)."""
    pattern = _pattern([*HEDGING_TERMS, *extra_terms])
    return [bool(pattern.search(str(t).replace("’", "'"))) for t in texts]


def hedging_language_rates(
    texts: pd.DataFrame,
    *,
    rng: np.random.Generator,
    resamples: int = 2000,
    confidence_level: float = 0.95,
    extra_terms: Iterable[str] = (),
) -> dict[str, Any] | None:
    """Share of steps with hedging language per condition, with intervals.

    Parameters
    ----------
    texts : pandas.DataFrame
        ``trace_id, condition, text``: one row per step.
    rng, resamples, confidence_level : keyword-only
        Cluster bootstrap over traces within each condition; the small-sample rule of the
        error rates when a condition has few traces or no / only hedged steps.
    extra_terms : iterable of str, keyword-only
        The audit's own additions to the lexicon.

    Returns
    -------
    dict or None
        ``lexicon`` (version, terms, extra terms), ``rows`` (``condition``, ``n_steps``,
        ``n_traces``, ``n_hedged``, ``rate``, ``ci_low``, ``ci_high``, ``interval_method``);
        None without texts.
    """
    if texts is None or texts.empty:
        return None
    extra = sorted({t.strip() for t in extra_terms if t and t.strip()})
    flags = np.asarray(hedging_flags(texts["text"].fillna("").tolist(), extra_terms=extra))
    frame = pd.DataFrame(
        {"trace_id": texts["trace_id"].astype(str), "condition": texts["condition"].astype(str)}
    ).assign(hedged=flags.astype(float), one=1.0)
    rows = []
    for condition, part in frame.groupby("condition", sort=True):
        per_trace = part.groupby("trace_id", sort=False)[["hedged", "one"]].sum().to_numpy()
        n_hedged, n_steps = float(per_trace[:, 0].sum()), float(per_trace[:, 1].sum())
        k = per_trace.shape[0]
        totals = bootstrap_totals(per_trace, resamples=resamples, rng=rng)
        boot = totals[:, 0] / totals[:, 1]
        alpha = 1.0 - confidence_level
        low, high = (float(q) for q in np.quantile(boot, [alpha / 2, 1 - alpha / 2]))
        method = METHOD_BOOTSTRAP
        if k < SMALL_SAMPLE_TRACES or n_hedged in (0.0, n_steps) or low == high:
            low, high, _, _ = effective_wilson_interval(
                n_hedged,
                n_steps,
                n_clusters=k,
                bootstrap_variance=float(boot.var()),
                confidence_level=confidence_level,
            )
            method = METHOD_EFFECTIVE_WILSON
        rows.append(
            {
                "condition": str(condition),
                "n_steps": int(n_steps),
                "n_traces": k,
                "n_hedged": int(n_hedged),
                "rate": n_hedged / n_steps,
                "ci_low": low,
                "ci_high": high,
                "interval_method": method,
            }
        )
    return {
        "lexicon": {
            "version": HEDGING_LEXICON_VERSION,
            "terms": list(HEDGING_TERMS),
            "extra_terms": extra,
        },
        "rows": rows,
    }
