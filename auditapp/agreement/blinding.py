"""Does the blinding hold? Text leakage, clinicians' guesses, and consistency on hidden repeats.

* :func:`blinding_check` asks how well a simple text classifier predicts the condition from the
  blinded step text (cross-validated AUC near 0.5 means the text does not give it away);
* :func:`blinding_index` and :func:`james_blinding_index` summarise clinicians' guesses of the
  condition (Bang, Ni & Davis 2004; James et al. 1996);
* :func:`hidden_repeat_consistency` measures each clinician's agreement with themselves on
  steps shown twice without saying so.

Examples
--------
>>> import pandas as pd
>>> guesses = pd.DataFrame({"condition": ["A"] * 4 + ["B"] * 4,
...                         "guess": ["A", "A", "B", "no idea", "A", "B", "dont_know", "B"]})
>>> [(r["condition"], r["bang_bi"]) for r in blinding_index(guesses)]
[('A', 0.25), ('B', 0.25)]
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import StratifiedGroupKFold

from auditapp.agreement._validate import (
    plain,
    require_columns,
    require_confidence_level,
    require_int,
    require_rng,
    require_same_length,
)
from auditapp.agreement.coefficients import _kappa_from_table

__all__ = [
    "CLASSIFIER_MAX_RESAMPLES",
    "CLASSIFIER_MAX_TEXTS",
    "DONT_KNOW",
    "BlindingCheck",
    "blinding_check",
    "blinding_index",
    "blinding_summary",
    "hidden_repeat_consistency",
    "james_blinding_index",
]

#: Guesses read as "don't know" (compared after trimming and lower-casing).
DONT_KNOW: tuple[str, ...] = (
    "no idea",
    "dont_know",
    "don't know",
    "dont know",
    "do not know",
    "unknown",
    "dk",
)

# Hashed features need no vocabulary fitted on the data, so the text is vectorised once for all
# folds without leaking the held-out fold. 2**16 buckets per analyser keep one logistic fit on
# 16,000 short texts near half a second (measured on 2 cores); larger tables barely changed
# the AUC in trials.
_N_FEATURES = 2**16
_BOOTSTRAP_BATCH = 100  # resamples per vectorised batch: 100 x 20,000 float64 = 16 MB


@dataclass(frozen=True)
class BlindingCheck:
    """Cross-validated AUC of predicting the condition from blinded step text.

    Attributes
    ----------
    auc : float
        ROC AUC on each held-out fold (one-vs-rest macro average for more than two
        conditions), averaged over the folds. 0.5 = the text carries no information about
        the condition.
    ci_low, ci_high : float
        Percentile bootstrap interval of the AUC, resampling groups (traces) of the out-of-fold
        predictions.
    n : int
        Texts.
    n_groups : int
        Groups (traces); equals ``n`` when no groups were given.
    folds : int
        Cross-validation folds.
    conditions : tuple of str
        The conditions, in the order of the one-vs-rest average.
    method : str
        The procedure in words.
    """

    auc: float
    ci_low: float
    ci_high: float
    n: int
    n_groups: int
    folds: int
    conditions: tuple[str, ...]
    method: str


def _features(texts: Sequence[str]) -> sp.csr_matrix:
    words = HashingVectorizer(
        ngram_range=(1, 2), n_features=_N_FEATURES, alternate_sign=False, norm=None
    )
    chars = HashingVectorizer(
        analyzer="char_wb",
        ngram_range=(3, 5),
        n_features=_N_FEATURES,
        alternate_sign=False,
        norm=None,
    )
    return sp.hstack([words.transform(texts), chars.transform(texts)], format="csr")


def _weighted_auc(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC (Mann-Whitney, ties count one half) for each row of case weights.

    ``scores`` and ``positive`` have shape (n,); ``weights`` has shape (b, n). Returns (b,),
    ``nan`` where a row has no positive or no negative weight.
    """
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    w = weights[:, order]
    pos = np.add.reduceat(w * positive[order], starts, axis=1)
    neg = np.add.reduceat(w * ~positive[order], starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    total_pos = pos.sum(axis=1)
    total_neg = neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (below + 0.5 * neg)).sum(axis=1) / (total_pos * total_neg)


def _macro_auc(proba: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    k = proba.shape[1]
    if k == 2:
        return _weighted_auc(proba[:, 1], y == 1, weights)
    return np.mean([_weighted_auc(proba[:, c], y == c, weights) for c in range(k)], axis=0)


def _fold_mean_auc(
    proba: np.ndarray, y: np.ndarray, fold: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """Mean over folds of each fold's (macro) AUC, for each row of case weights."""
    per_fold = [
        _macro_auc(proba[fold == f], y[fold == f], weights[:, fold == f]) for f in np.unique(fold)
    ]
    with warnings.catch_warnings():  # a resample may leave a fold without one condition
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(per_fold, axis=0)


def blinding_check(
    texts: Sequence[str],
    conditions: Sequence[str],
    *,
    groups: Sequence[Any] | None = None,
    rng: np.random.Generator,
    folds: int = 5,
    resamples: int = 1000,
    confidence_level: float = 0.95,
) -> BlindingCheck:
    """How well the condition can be predicted from the blinded text (near 0.5 = blind).

    A TF-IDF representation of word 1-2-grams and character 3-5-grams (within word
    boundaries; hashed into 2**16 buckets each, sublinear tf, idf fitted on the training
    folds) feeds an L2-penalised logistic regression (penalty of C = 1, fitted by 10 epochs
    of stochastic gradient descent; one-vs-rest for more than two conditions). Predictions
    are out-of-fold from ``StratifiedGroupKFold``: all texts of a group (the steps of one
    trace, or of one question) fall in the same fold, and folds keep the condition mix. The
    AUC is computed on each held-out fold (one-vs-rest macro average for more than two
    conditions) and averaged over folds; pooling the folds' probabilities instead mixes models with
    different intercepts and biases the AUC below 0.5 when the text is uninformative. The
    interval is a percentile bootstrap that resamples groups with replacement (each text
    keeps its fold and its out-of-fold probability), so it reflects the sampling of texts
    given the fitted models, not the variability of refitting. 20,000 short texts take
    about 3 s on two cores.

    Parameters
    ----------
    texts : sequence of str
        Blinded step texts.
    conditions : sequence of str
        The condition of each text.
    groups : sequence, optional
        Group of each text; texts of one group share a fold. Use the question id when the
        same questions are answered under every condition (the report does), else the trace
        id; a group may hold texts of several conditions. By default every text is its own
        group.
    rng : numpy.random.Generator
        Source of the fold shuffling and the bootstrap.
    folds : int
        Cross-validation folds (at least 2, at most the number of groups).
    resamples : int
        Bootstrap resamples.
    confidence_level : float
        Coverage of the interval.

    Returns
    -------
    BlindingCheck

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> words = np.array(["sodium", "renal", "dose", "therefore", "risk", "acute", "level"])
    >>> texts = [" ".join(rng.choice(words, 8)) for _ in range(200)]
    >>> leaky = [t + (" Hence" if i % 2 else "") for i, t in enumerate(texts)]
    >>> conditions = ["teacher" if i % 2 else "student" for i in range(200)]
    >>> check = blinding_check(leaky, conditions, rng=rng, resamples=200)
    >>> round(check.auc, 2), check.conditions
    (1.0, ('student', 'teacher'))
    """
    rng = require_rng(rng)
    require_confidence_level(confidence_level)
    folds = require_int(folds, name="folds", minimum=2)
    resamples = require_int(resamples, name="resamples", minimum=1)
    if isinstance(texts, str) or isinstance(conditions, str):
        raise ValueError("texts and conditions must be sequences of strings, not one string")
    lengths = {"texts": texts, "conditions": conditions}
    if groups is not None:
        lengths["groups"] = groups
    n = require_same_length(**lengths)
    texts = ["" if t is None else str(t) for t in texts]
    labels, classes = pd.factorize(pd.Series(list(conditions), dtype=object), sort=True)
    if (labels < 0).any():
        raise ValueError("conditions has a missing value")
    if len(classes) < 2:
        raise ValueError(f"blinding_check needs at least two conditions; got {len(classes)}")
    group_codes, group_names = pd.factorize(
        pd.Series(range(n) if groups is None else list(groups), dtype=object)
    )
    if (group_codes < 0).any():
        raise ValueError("groups has a missing value")
    n_groups = len(group_names)
    if n_groups < folds:
        raise ValueError(f"folds={folds} needs at least {folds} groups; got {n_groups}")

    features = _features(texts)
    k = len(classes)
    proba = np.zeros((n, k))
    fold = np.zeros(n, dtype=np.int64)
    splitter = StratifiedGroupKFold(
        n_splits=folds, shuffle=True, random_state=int(rng.integers(2**31 - 1))
    )
    for f, (train, test) in enumerate(splitter.split(features, labels, group_codes)):
        fold[test] = f
        tfidf = TfidfTransformer(sublinear_tf=True)
        x_train = tfidf.fit_transform(features[train])
        present = np.unique(labels[train])
        if len(present) == 1:  # a fold saw one condition only: it can only predict that one
            proba[np.ix_(test, present)] = 1.0
            continue
        # Logistic loss with the L2 penalty of C = 1, fitted by 10 epochs of SGD: on 16,000
        # short texts this took 0.5 s against 5 s for lbfgs, with the same AUC to 3 decimals.
        model = SGDClassifier(
            loss="log_loss",
            alpha=1.0 / len(train),
            max_iter=10,
            tol=None,
            random_state=int(rng.integers(2**31 - 1)),
        )
        model.fit(x_train, labels[train])
        proba[np.ix_(test, model.classes_)] = model.predict_proba(tfidf.transform(features[test]))

    auc = float(_fold_mean_auc(proba, labels, fold, np.ones((1, n)))[0])
    draws = []
    for start in range(0, resamples, _BOOTSTRAP_BATCH):
        b = min(_BOOTSTRAP_BATCH, resamples - start)
        picks = rng.integers(0, n_groups, size=(b, n_groups))
        counts = np.bincount(
            (picks + n_groups * np.arange(b)[:, None]).ravel(), minlength=b * n_groups
        ).reshape(b, n_groups)
        draws.append(_fold_mean_auc(proba, labels, fold, counts[:, group_codes].astype(float)))
    boot = np.concatenate(draws)
    tail = (1 - confidence_level) / 2
    if np.isnan(boot).all():
        low = high = math.nan
    else:
        low, high = np.nanquantile(boot, [tail, 1 - tail])
    method = (
        f"TF-IDF word 1-2-grams + char_wb 3-5-grams, logistic regression (SGD); {folds}-fold "
        f"StratifiedGroupKFold by {'group' if groups is not None else 'text'}; "
        f"{'ROC AUC' if k == 2 else 'one-vs-rest macro ROC AUC'} on each held-out fold, "
        f"averaged over folds; {confidence_level:.0%} percentile bootstrap over groups, "
        f"{resamples} resamples"
    )
    return BlindingCheck(
        auc=auc,
        ci_low=float(low),
        ci_high=float(high),
        n=n,
        n_groups=n_groups,
        folds=folds,
        conditions=tuple(str(c) for c in classes),
        method=method,
    )


# --------------------------------------------------------------------------- guesses


def _guess_table(
    guesses: pd.DataFrame,
    condition: str,
    guess: str,
    conditions: Sequence[str] | None,
    dont_know: Sequence[str],
) -> tuple[list[str], pd.Series, pd.Series]:
    """Arms, each row's true arm and each row's guess (an arm or ``None`` for don't know)."""
    require_columns(guesses, [condition, guess], name="guesses")
    frame = guesses.loc[guesses[guess].notna(), [condition, guess]]
    if frame[condition].isna().any():
        raise ValueError(f"guesses has a row without a {condition!r}")
    truth = frame[condition].astype(str)
    arms = sorted(set(truth)) if conditions is None else [str(c) for c in conditions]
    unknown_truth = sorted(set(truth) - set(arms))
    if unknown_truth:
        raise ValueError(f"condition(s) {', '.join(map(repr, unknown_truth))} not in conditions")
    by_key = {a.strip().casefold(): a for a in arms}
    dk = {d.strip().casefold() for d in dont_know}
    keys = frame[guess].astype(str).str.strip().str.casefold()
    known = keys.isin(by_key) | keys.isin(dk)
    if not known.all():
        row = int(np.flatnonzero(~known.to_numpy())[0])
        raise ValueError(
            f"guesses row {row}, column {guess!r}: {frame[guess].iloc[row]!r} is neither a "
            f"condition ({', '.join(map(repr, arms))}) nor a don't-know answer"
        )
    guessed = keys.map(by_key).where(~keys.isin(dk), None)
    if len(arms) < 2:
        raise ValueError(f"a blinding index needs at least two conditions; got {len(arms)}")
    return arms, truth, guessed


def blinding_index(
    guesses: pd.DataFrame,
    *,
    condition: str = "condition",
    guess: str = "guess",
    conditions: Sequence[str] | None = None,
    dont_know: Sequence[str] = DONT_KNOW,
    confidence_level: float = 0.95,
) -> list[dict[str, Any]]:
    """Bang's blinding index per condition from guesses of the condition.

    Bang, Ni & Davis (2004): within the arm's ``n`` guesses, ``C`` correct, ``I`` incorrect
    and ``D`` don't know, ``BI = (2 C / (C + I) - 1) (C + I) / n = (C - I) / n`` with
    ``SE = sqrt((p_C (1 - p_C) + p_I (1 - p_I) + 2 p_C p_I) / n)`` and a normal interval.
    BI = 0 matches random guessing between two arms, 1 complete unblinding, -1 everyone
    guessing the other arm.

    With more than two arms a guess is reduced to *correct* (the true condition),
    *incorrect* (any other condition) or *don't know*. Random guessing among ``K`` arms then
    gives ``BI = (2 / K - 1) (C + I) / n``, not 0; that value is reported as
    ``bi_if_random`` so the index can be read against it.

    Parameters
    ----------
    guesses : pandas.DataFrame
        One row per guess with the true ``condition`` and the ``guess`` (a condition name,
        matched ignoring case and surrounding spaces, or a don't-know answer). Rows with a
        missing guess (not asked) are skipped.
    condition, guess : str
        Column names.
    conditions : sequence of str, optional
        All arms; by default those in the ``condition`` column.
    dont_know : sequence of str
        Answers read as don't know.
    confidence_level : float
        Coverage of the interval.

    Returns
    -------
    list of dict
        Per condition: ``condition``, ``n``, ``n_correct``, ``n_incorrect``,
        ``n_dont_know``, ``bang_bi``, ``se``, ``ci_low``, ``ci_high``, ``bi_if_random``
        (``None`` values for an arm without guesses).

    Examples
    --------
    The disulfiram trial of James et al. (1996) as tabulated in the R package ``BI`` (treated
    arm: 48 guessed treatment, 4 placebo, 330 don't know; placebo arm: 22, 30, 319):

    >>> import pandas as pd
    >>> rows = ([("T", "T")] * 48 + [("T", "P")] * 4 + [("T", "dk")] * 330
    ...         + [("P", "T")] * 22 + [("P", "P")] * 30 + [("P", "dk")] * 319)
    >>> result = blinding_index(pd.DataFrame(rows, columns=["condition", "guess"]),
    ...                         conditions=["T", "P"])
    >>> [(r["condition"], round(r["bang_bi"], 3), round(r["se"], 3)) for r in result]
    [('T', 0.115, 0.018), ('P', 0.022, 0.019)]
    """
    require_confidence_level(confidence_level)
    arms, truth, guessed = _guess_table(guesses, condition, guess, conditions, dont_know)
    z = float(stats.norm.ppf(0.5 + confidence_level / 2))
    k = len(arms)
    rows = []
    for arm in arms:
        mine = (truth == arm).to_numpy()
        g = guessed[mine]
        n = int(mine.sum())
        n_dk = int(g.isna().sum())
        n_correct = int((g == arm).sum())
        n_incorrect = n - n_dk - n_correct
        row: dict[str, Any] = {
            "condition": arm,
            "n": n,
            "n_correct": n_correct,
            "n_incorrect": n_incorrect,
            "n_dont_know": n_dk,
            "bang_bi": None,
            "se": None,
            "ci_low": None,
            "ci_high": None,
            "bi_if_random": None,
        }
        if n:
            p_c, p_i = n_correct / n, n_incorrect / n
            bi = p_c - p_i
            se = math.sqrt((p_c * (1 - p_c) + p_i * (1 - p_i) + 2 * p_c * p_i) / n)
            row.update(
                bang_bi=bi,
                se=se,
                ci_low=max(bi - z * se, -1.0),
                ci_high=min(bi + z * se, 1.0),
                bi_if_random=(2 / k - 1) * (p_c + p_i),
            )
        rows.append(row)
    return rows


def james_blinding_index(
    guesses: pd.DataFrame,
    *,
    condition: str = "condition",
    guess: str = "guess",
    conditions: Sequence[str] | None = None,
    dont_know: Sequence[str] = DONT_KNOW,
) -> float:
    """James' (1996) blinding index over all arms (point estimate).

    ``BI = (1 + P_dk + (1 - P_dk) kappa_d) / 2`` with ``P_dk`` the share of don't-know
    answers and ``kappa_d = (P_o - P_e) / P_e`` a weighted disagreement among those who
    guessed: weight 0 for a correct guess and 0.5 for an incorrect one (James' weights),
    observed ``P_o`` against ``P_e`` expected from the guess and arm margins. 1 = complete
    blinding (everyone answers don't know), 0.5 = random guessing, 0 = complete unblinding.
    The standard error is not computed.

    Examples
    --------
    >>> import pandas as pd
    >>> rows = ([("T", "T")] * 48 + [("T", "P")] * 4 + [("T", "dk")] * 330
    ...         + [("P", "T")] * 22 + [("P", "P")] * 30 + [("P", "dk")] * 319)
    >>> round(james_blinding_index(pd.DataFrame(rows, columns=["condition", "guess"])), 3)
    0.896
    """
    arms, truth, guessed = _guess_table(guesses, condition, guess, conditions, dont_know)
    n = len(truth)
    if n == 0:
        raise ValueError("guesses has no answered guess")
    k = len(arms)
    index = {a: i for i, a in enumerate(arms)}
    t = truth.map(index).to_numpy(dtype=np.int64)
    answered = guessed.notna().to_numpy()
    g = guessed[answered].map(index).to_numpy(dtype=np.int64)
    table = np.zeros((k, k))  # guess x arm, answered guesses only, as shares of all n
    np.add.at(table, (g, t[answered]), 1.0 / n)
    p_dk = 1.0 - table.sum()
    if math.isclose(p_dk, 1.0):
        return 1.0
    weights = np.full((k, k), 0.5)
    np.fill_diagonal(weights, 0.0)
    guess_margin = table.sum(axis=1)  # p_i.
    arm_margin = table.sum(axis=0)  # arm share among those who guessed, times (1 - p_dk)
    p_o = float((weights * table).sum()) / (1 - p_dk)
    p_e = float((weights * np.outer(guess_margin, arm_margin)).sum()) / (1 - p_dk) ** 2
    if p_e == 0:
        return math.nan
    kappa_d = (p_o - p_e) / p_e
    return float((1 + p_dk + (1 - p_dk) * kappa_d) / 2)


# --------------------------------------------------------------------------- hidden repeats


def hidden_repeat_consistency(
    repeats: pd.DataFrame,
    *,
    rater: str = "rater",
    first: str = "first",
    second: str = "second",
    confidence_level: float = 0.95,
) -> list[dict[str, Any]]:
    """Each rater's agreement with themselves on steps shown twice.

    Parameters
    ----------
    repeats : pandas.DataFrame
        One row per hidden repeat: ``rater``, ``step_id``, the ``first`` verdict and the
        ``second`` one. Rows with a missing verdict are skipped.
    rater, first, second : str
        Column names.
    confidence_level : float
        Coverage of the kappa interval.

    Returns
    -------
    list of dict
        Per rater (sorted): ``rater``, ``n``, ``agreement`` (share with ``second ==
        first``), ``cohen_kappa``, ``kappa_ci_low``, ``kappa_ci_high`` (Cohen's kappa between
        first and second verdicts, Fleiss-Cohen-Everitt SE; ``None`` when undefined, e.g. a
        rater who always gave the same verdict).

    Examples
    --------
    >>> import pandas as pd
    >>> repeats = pd.DataFrame({"rater": ["c1"] * 4, "step_id": [1, 2, 3, 4],
    ...     "first": ["error", "correct", "correct", "error"],
    ...     "second": ["error", "correct", "error", "error"]})
    >>> row = hidden_repeat_consistency(repeats)[0]
    >>> row["rater"], row["n"], row["agreement"], row["cohen_kappa"]
    ('c1', 4, 0.75, 0.5)
    """
    require_confidence_level(confidence_level)
    require_columns(repeats, [rater, "step_id", first, second], name="repeats")
    frame = repeats.loc[repeats[first].notna() & repeats[second].notna(), [rater, first, second]]
    rows = []
    for who, group in frame.groupby(rater, sort=True):
        a = group[first].astype(str).to_numpy()
        b = group[second].astype(str).to_numpy()
        codes, cats = pd.factorize(np.concatenate([a, b]), sort=True)
        q = len(cats)
        table = np.bincount(codes[: len(a)] * q + codes[len(a) :], minlength=q * q).reshape(q, q)
        kappa = _kappa_from_table(table, confidence_level)
        rows.append(
            {
                "rater": plain(who),
                "n": len(a),
                "agreement": float((a == b).mean()),
                "cohen_kappa": _none_if_nan(kappa.kappa),
                "kappa_ci_low": _none_if_nan(kappa.ci_low),
                "kappa_ci_high": _none_if_nan(kappa.ci_high),
            }
        )
    return rows


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


# --------------------------------------------------------------------------- the report section

#: Texts for the classifier at most; the report layer samples down to this (about 3 s).
CLASSIFIER_MAX_TEXTS = 10_000
#: Bootstrap resamples of the classifier's AUC at most (the report's own count when lower).
CLASSIFIER_MAX_RESAMPLES = 1000
TEXT_COLUMNS: tuple[str, ...] = ("trace_id", "condition", "text")
GUESS_COLUMNS: tuple[str, ...] = ("condition", "option", "guess")


def _classifier_section(
    texts: pd.DataFrame | None,
    *,
    rng: np.random.Generator,
    resamples: int,
    folds: int,
    confidence_level: float,
) -> tuple[dict[str, Any] | None, str | None]:
    if texts is None or texts.empty:
        return None, "no blinded step texts"
    require_columns(texts, TEXT_COLUMNS, name="texts")
    frame = texts.loc[texts["condition"].notna()]
    n_conditions = frame["condition"].nunique()
    n_traces = frame["trace_id"].nunique()
    if n_conditions < 2:
        return None, f"the classifier needs two or more conditions; the texts have {n_conditions}"
    if n_traces < folds:
        return None, f"the classifier needs at least {folds} traces; the texts have {n_traces}"
    # Folds hold out whole questions when the table names them: the same question is answered
    # under every condition, so holding out one trace while its siblings from the other
    # conditions train the model teaches it "this content is not this condition" and drives the
    # AUC below 0.5 (0.14 on the demo audit grouped by trace). Grouped by question, content
    # shared across conditions carries no signal either way; only style and per-condition
    # differences in what is said do.
    by_question = "question_id" in frame and frame["question_id"].notna().all()
    groups = frame["question_id"] if by_question else frame["trace_id"]
    check = blinding_check(
        frame["text"].fillna("").astype(str).tolist(),
        frame["condition"].astype(str).tolist(),
        groups=groups.astype(str).tolist(),
        rng=rng,
        folds=folds,
        resamples=min(resamples, CLASSIFIER_MAX_RESAMPLES),
        confidence_level=confidence_level,
    )
    row = {
        "auc": check.auc,
        "ci_low": check.ci_low,
        "ci_high": check.ci_high,
        "n": check.n,
        "n_traces": int(frame["trace_id"].nunique()),
        "n_groups": check.n_groups,
        "grouped_by": "question" if by_question else "trace",
        "folds": check.folds,
        "conditions": list(check.conditions),
        "method": check.method,
    }
    if "n_population" in texts.attrs:
        row["n_population"] = int(texts.attrs["n_population"])
    return row, None


def _index_rows(
    guesses: pd.DataFrame | None, *, conditions: Sequence[str] | None, confidence_level: float
) -> tuple[list[dict[str, Any]] | None, dict[str, Any] | None, str | None]:
    if guesses is None or guesses.empty:
        return None, None, "no answers to the blinding question"
    require_columns(guesses, GUESS_COLUMNS, name="guesses")
    frame = guesses.loc[guesses["option"].notna() & (guesses["option"].astype(str) != "")]
    if frame.empty:
        return None, None, "no answers to the blinding question"
    option = frame["option"].astype(str)
    dk = {d.strip().casefold() for d in DONT_KNOW}
    is_dk = option.str.strip().str.casefold().isin(dk).to_numpy()
    mapped = frame["guess"].notna().to_numpy()
    arms = sorted(
        {str(c) for c in frame["condition"]}
        | {str(g) for g in frame["guess"].dropna()}
        | set(conditions or [])
    )
    complete = bool((mapped | is_dk).all()) and len(arms) >= 2
    bang: dict[str, dict[str, Any]] = {}
    james = None
    if complete:
        table = pd.DataFrame(
            {
                "condition": frame["condition"].astype(str).to_numpy(),
                "guess": np.where(is_dk, "dont_know", frame["guess"].astype(object).to_numpy()),
            }
        )
        bang = {
            r["condition"]: r
            for r in blinding_index(table, conditions=arms, confidence_level=confidence_level)
        }
        james = james_blinding_index(table, conditions=arms)
    rows = []
    for arm in arms:
        mine = (frame["condition"].astype(str) == arm).to_numpy()
        counts = option[mine].value_counts()
        row: dict[str, Any] = {
            "condition": arm,
            "n": int(mine.sum()),
            "n_dont_know": int((mine & is_dk).sum()),
            "options": {str(k): int(v) for k, v in sorted(counts.items())},
        }
        if complete:
            row.update({k: v for k, v in bang[arm].items() if k != "condition"})
        rows.append(row)
    summary = {
        "n": len(frame),
        "mapped": complete,
        "unmapped_options": sorted(set(option[~(mapped | is_dk)])),
        "james_bi": james,
    }
    return rows, summary, None


def blinding_summary(
    texts: pd.DataFrame | None = None,
    guesses: pd.DataFrame | None = None,
    *,
    rng: np.random.Generator,
    resamples: int = 1000,
    folds: int = 5,
    confidence_level: float = 0.95,
    conditions: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The report's blinding section: the text classifier and the guess-based index.

    Parameters
    ----------
    texts : pandas.DataFrame, optional
        One row per blinded step: ``trace_id, condition, text`` (a sample is fine; put the
        population size in ``texts.attrs["n_population"]`` to have it reported).
    guesses : pandas.DataFrame, optional
        One row per answer to the blinding question: the true ``condition``, the ``option``
        as answered, and ``guess``, the condition that option names (missing when it names
        none, e.g. a don't-know answer or an option no condition was mapped to).
    rng : numpy.random.Generator
        Source of the classifier's folds and bootstrap.
    resamples : int
        Bootstrap resamples (capped at :data:`CLASSIFIER_MAX_RESAMPLES` for the AUC).
    folds : int
        Cross-validation folds of the classifier.
    confidence_level : float
        Coverage of every interval.
    conditions : sequence of str, optional
        All arms (an arm nobody guessed still gets a row).

    Returns
    -------
    dict
        ``classifier``: ``auc``, ``ci_low``, ``ci_high``, ``n`` (texts), ``n_traces``,
        ``folds``, ``conditions``, ``method`` (and ``n_population``), or None;
        ``index``: per condition ``condition``, ``n``, ``n_dont_know``, ``options`` (answer
        → count) and, when every answer is a don't-know or names a condition, Bang's
        ``n_correct``, ``n_incorrect``, ``bang_bi``, ``se``, ``ci_low``, ``ci_high``,
        ``bi_if_random``; or None; ``guesses``: ``n``, ``mapped``, ``unmapped_options``,
        ``james_bi``, or None; ``notes``: why a part is missing.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> guesses = pd.DataFrame({"condition": ["A", "A", "B", "B"],
    ...     "option": ["teacher model", "no idea", "teacher model", "small model"],
    ...     "guess": ["A", None, "A", "B"]})
    >>> section = blinding_summary(None, guesses, rng=np.random.default_rng(0))
    >>> [(r["condition"], r["n"], r["bang_bi"]) for r in section["index"]]
    [('A', 2, 0.5), ('B', 2, 0.0)]
    >>> section["classifier"], section["notes"]
    (None, ['classifier: no blinded step texts'])
    """
    rng = require_rng(rng)
    require_confidence_level(confidence_level)
    classifier, classifier_note = _classifier_section(
        texts, rng=rng, resamples=resamples, folds=folds, confidence_level=confidence_level
    )
    rows, summary, index_note = _index_rows(
        guesses, conditions=conditions, confidence_level=confidence_level
    )
    if summary is not None and not summary["mapped"]:
        index_note = (
            "Bang's index needs every answer to name a condition or be a don't-know; "
            f"unmapped: {', '.join(map(repr, summary['unmapped_options']))}"
        )
    notes = [f"classifier: {classifier_note}"] if classifier_note else []
    notes += [f"index: {index_note}"] if index_note else []
    return {"classifier": classifier, "index": rows, "guesses": summary, "notes": notes}
