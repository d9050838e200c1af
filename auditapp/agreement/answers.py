"""Answer-level metrics per condition, and trace correctness × answer correctness.

Conventions (also stated in the report's ``methods`` block):

- an answer is correct when it equals the gold answer after trimming whitespace, ignoring
  case (the import's rule); a missing
  answer is incorrect; **accuracy** is the share of correct answers over all traces
  (every sample counts);
- **self-consistency@k**: per (condition, question) the answers of the k samples vote; the
  most frequent answer wins and a tie goes to the tied answer whose first appearance has the
  lowest ``sample_index``; missing answers do not vote (a question with none is incorrect);
  ``sc_at_k`` is the share of questions whose winner is correct;
- **ECE**: equal-width bins over [0, 1] (default 10); bin ``b`` holds confidences in
  [b/M, (b+1)/M), the last bin also holds 1.0; ECE = Σ_b (n_b/N)·|accuracy_b − mean
  confidence_b| over traces with a confidence;
- **Brier score**: mean of (confidence − correct)² over traces with a confidence, the
  confidence being that of the given answer (binary Brier score);
- every answer row counts, audited trace or answer-only sample (the optional ``audited``
  column says which); each row also reports how many of its samples were audited and at
  which sample indices;
- **per control**: the same metrics again within each value of a control column
  (``dataset``, ``trace_type``), per condition.

Examples
--------
>>> import numpy as np
>>> round(expected_calibration_error([0.9, 0.8, 0.3], [1, 0, 0], bins=2), 4)
0.3333
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from auditapp.agreement.formats import answers_validate, labels_validate

__all__ = [
    "ANSWER_CONTROLS",
    "AnswerMetrics",
    "TraceVsAnswer",
    "answer_metrics",
    "answer_metrics_by_control",
    "brier_score",
    "expected_calibration_error",
    "self_consistency",
    "trace_vs_answer",
]


@dataclass(frozen=True)
class AnswerMetrics:
    """Answer-level metrics of one condition."""

    condition: str
    n: int
    n_questions: int
    accuracy: float | None
    k_min: int
    k_max: int
    sc_at_k: float | None
    n_confidence: int
    ece: float | None
    brier: float | None
    # Of the n samples, how many are audited traces (the rest answer-only), and the distinct
    # sample indices of those traces (which of the k samples was audited).
    n_audited: int = 0
    audited_sample_indices: tuple[int, ...] = ()


# Columns of the answers table the metrics are broken down by, when present.
ANSWER_CONTROLS: tuple[str, ...] = ("dataset", "trace_type")


@dataclass(frozen=True)
class TraceVsAnswer:
    """Trace correct (no wrong step, by the reference) × final answer correct."""

    condition: str
    n: int
    trace_correct_answer_correct: int
    trace_correct_answer_wrong: int
    trace_wrong_answer_correct: int
    trace_wrong_answer_wrong: int
    p_answer_correct_given_trace_correct: float | None
    p_answer_correct_given_trace_wrong: float | None
    p_trace_correct_given_answer_correct: float | None
    p_trace_correct_given_answer_wrong: float | None
    # Is answer correctness independent of trace correctness? Pearson's chi-square (no
    # continuity correction) and Fisher's exact test; ``test`` names the one whose p-value
    # is ``p``: Fisher when an expected count is below 5.
    chi2: float | None = None
    chi2_p: float | None = None
    fisher_odds_ratio: float | None = None
    fisher_p: float | None = None
    test: str | None = None
    p: float | None = None


def _check_binary(confidence: np.ndarray, correct: np.ndarray) -> None:
    if confidence.shape != correct.shape or confidence.ndim != 1:
        raise ValueError(
            f"confidence and correct must be 1-D and equally long, got shapes "
            f"{confidence.shape} and {correct.shape}"
        )
    if np.any((confidence < 0) | (confidence > 1)) or np.any(np.isnan(confidence)):
        raise ValueError("confidence must lie in [0, 1] (no NaN)")
    if not np.all(np.isin(correct, (0, 1))):
        raise ValueError("correct must hold only 0/1 or booleans")


def expected_calibration_error(
    confidence: np.ndarray | list[float],
    correct: np.ndarray | list[int] | list[bool],
    *,
    bins: int = 10,
) -> float | None:
    """Expected calibration error with equal-width bins.

    Parameters
    ----------
    confidence : array_like of float in [0, 1]
        Confidence of the given answer.
    correct : array_like of bool or 0/1
        Whether the given answer is correct.
    bins : int, keyword-only
        Number of equal-width bins over [0, 1] (default 10). Bin ``b`` holds
        [b/bins, (b+1)/bins); the last bin also holds 1.0.

    Returns
    -------
    float or None
        Σ_b (n_b/N)·|accuracy_b − mean confidence_b|; None for no data.

    Examples
    --------
    Bins [0, 0.5) and [0.5, 1]: the upper bin has confidence 0.85 and accuracy 0.5, the
    lower one 0.3 and 0, so ECE = 2/3·0.35 + 1/3·0.3 = 0.3333.

    >>> round(expected_calibration_error([0.9, 0.8, 0.3], [1, 0, 0], bins=2), 4)
    0.3333
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    conf = np.asarray(confidence, dtype=float)
    hit = np.asarray(correct).astype(float)
    _check_binary(conf, hit)
    if conf.size == 0:
        return None
    # floor(c·M) puts 0.3 in bin 3 of 10 (np.linspace edges would put it in bin 2).
    index = np.minimum(np.floor(conf * bins).astype(np.int64), bins - 1)
    sum_conf = np.bincount(index, weights=conf, minlength=bins)
    sum_hit = np.bincount(index, weights=hit, minlength=bins)
    return float(np.sum(np.abs(sum_hit - sum_conf)) / conf.size)


def brier_score(
    confidence: np.ndarray | list[float], correct: np.ndarray | list[int] | list[bool]
) -> float | None:
    """Binary Brier score: mean of (confidence − correct)²; None for no data.

    Examples
    --------
    >>> round(brier_score([0.9, 0.8, 0.3], [1, 0, 0]), 4)
    0.2467
    """
    conf = np.asarray(confidence, dtype=float)
    hit = np.asarray(correct).astype(float)
    _check_binary(conf, hit)
    if conf.size == 0:
        return None
    return float(np.mean((conf - hit) ** 2))


def self_consistency(answers: pd.DataFrame) -> pd.DataFrame:
    """Majority vote over the samples of each (condition, question).

    Parameters
    ----------
    answers : pandas.DataFrame
        Validated answers (:func:`auditapp.agreement.formats.answers_validate`).

    Returns
    -------
    pandas.DataFrame
        One row per (condition, question_id) with ``k`` (samples), ``vote`` (the winning
        answer or None) and ``correct``. Ties go to the tied answer first seen at the lowest
        ``sample_index``; missing answers do not vote.

    Examples
    --------
    >>> import pandas as pd
    >>> from auditapp.agreement.formats import answers_validate
    >>> frame = answers_validate(pd.DataFrame({"trace_id": ["a", "b", "c", "d"],
    ...     "question_id": "q1", "condition": "A", "sample_index": [3, 0, 1, 2],
    ...     "answer": ["B", "C", "B", "C"], "gold": "B", "confidence": None}))
    >>> self_consistency(frame)[["k", "vote", "correct"]].to_dict("records")
    [{'k': 4, 'vote': 'C', 'correct': False}]
    """
    keys = ["condition", "question_id"]
    k = answers.groupby(keys, sort=True).size().rename("k")
    voting = answers[answers["answer"].notna()]
    # "B" and "b" are one answer under the answer rule (case-insensitive), so one vote; the
    # winner is shown as first spelled (lowest sample_index).
    voting = voting.sort_values("sample_index", kind="stable")
    voting = voting.assign(key=voting["answer"].astype(str).str.casefold())
    if voting.empty:
        out = k.reset_index()
        out["vote"] = None
        out["correct"] = False
        return out
    tally = voting.groupby([*keys, "key"], sort=False).agg(
        votes=("sample_index", "size"), first=("sample_index", "min"), answer=("answer", "first")
    )
    tally = tally.reset_index().sort_values(
        [*keys, "votes", "first"], ascending=[True, True, False, True]
    )
    winners = tally.drop_duplicates(keys, keep="first").set_index(keys)
    winner_keys, winners = winners["key"], winners["answer"]
    gold = answers.groupby(keys, sort=True)["gold"].first()
    out = pd.concat(
        [k, winners.rename("vote"), winner_keys.rename("vote_key"), gold], axis=1
    ).reset_index()
    out["vote"] = out["vote"].astype(object).where(out["vote"].notna(), None)
    gold_folded = out["gold"].astype(str).str.casefold()
    out["correct"] = out["vote"].notna() & (out["vote_key"] == gold_folded)
    return out.drop(columns=["gold", "vote_key"])


def answer_metrics(
    answers: pd.DataFrame, *, bins: int = 10, validate: bool = True
) -> list[AnswerMetrics]:
    """Accuracy, self-consistency@k, ECE and Brier score per condition.

    Parameters
    ----------
    answers : pandas.DataFrame
        The answers long format (:data:`auditapp.agreement.formats.ANSWER_COLUMNS`).
    bins : int, keyword-only
        ECE bin count (default 10).
    validate : bool, keyword-only
        Skip validation when the caller already did.

    Returns
    -------
    list of AnswerMetrics
        One per condition, in name order.

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"trace_id": ["a", "b", "c"], "question_id": "q1",
    ...     "condition": "A", "sample_index": [0, 1, 2], "answer": ["B", "B", "C"],
    ...     "gold": "B", "confidence": [0.9, 0.6, 0.5]})
    >>> m = answer_metrics(frame)[0]
    >>> round(m.accuracy, 4), m.sc_at_k, round(m.brier, 4)
    (0.6667, 1.0, 0.14)
    """
    frame = answers_validate(answers) if validate else answers
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    votes = self_consistency(frame)
    out = []
    has_audited = "audited" in frame
    for condition, group in frame.groupby("condition", sort=True):
        voted = votes[votes["condition"] == condition]
        rated = group[group["confidence"].notna()]
        conf = rated["confidence"].to_numpy(dtype=float)
        hit = rated["correct"].to_numpy(dtype=bool)
        # Without the column every row is an audited trace (the answers of imported traces).
        audited = (
            group["audited"].to_numpy(dtype=bool)
            if has_audited
            else np.ones(len(group), dtype=bool)
        )
        out.append(
            AnswerMetrics(
                condition=str(condition),
                n=len(group),
                n_questions=len(voted),
                accuracy=float(group["correct"].mean()),
                k_min=int(voted["k"].min()),
                k_max=int(voted["k"].max()),
                sc_at_k=float(voted["correct"].mean()),
                n_confidence=len(rated),
                ece=expected_calibration_error(conf, hit, bins=bins),
                brier=brier_score(conf, hit),
                n_audited=int(audited.sum()),
                audited_sample_indices=tuple(
                    int(i) for i in np.unique(group["sample_index"].to_numpy()[audited])
                ),
            )
        )
    return out


def answer_metrics_by_control(
    answers: pd.DataFrame,
    *,
    controls: tuple[str, ...] = ANSWER_CONTROLS,
    bins: int = 10,
    validate: bool = True,
) -> list[dict]:
    """:func:`answer_metrics` within each value of each control column, per condition.

    Parameters
    ----------
    answers : pandas.DataFrame
        The answers long format, with any of the ``controls`` columns (a missing column is
        skipped; a missing value is the group ``"(none)"``).
    controls : tuple of str, keyword-only
        Control columns (default ``dataset`` and ``trace_type``).
    bins : int, keyword-only
        ECE bin count (default 10).
    validate : bool, keyword-only
        Skip validation when the caller already did.

    Returns
    -------
    list of dict
        One per (control, value, condition): ``control``, ``value`` and the fields of
        :class:`AnswerMetrics`. SC@k votes among the samples of the group.

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"trace_id": ["a", "b", "c"], "question_id": ["q1", "q1", "q2"],
    ...     "condition": "A", "sample_index": [0, 1, 0], "answer": ["B", "B", "C"],
    ...     "gold": "B", "confidence": None, "dataset": ["x", "x", "y"]})
    >>> [(r["value"], r["accuracy"]) for r in answer_metrics_by_control(frame)]
    [('x', 1.0), ('y', 0.0)]
    """
    frame = answers_validate(answers) if validate else answers
    rows: list[dict] = []
    for control in controls:
        if control not in frame:
            continue
        values = frame[control].astype(object).where(frame[control].notna(), "(none)")
        values = values.map(lambda v: str(v) if str(v).strip() else "(none)")
        for value, group in frame.groupby(values, sort=True):
            for metrics in answer_metrics(group, bins=bins, validate=False):
                rows.append({"control": control, "value": str(value), **asdict(metrics)})
    return rows


def _share(count: int, total: int) -> float | None:
    return count / total if total else None


def independence_tests(table: list[list[int]]) -> dict[str, float | str | None]:
    """Pearson's chi-square (no continuity correction) and Fisher's exact test on a 2×2 table.

    ``test`` is ``"fisher"`` when an expected count is below 5 (Cochran's rule), else
    ``"chi-square"``; ``p`` is that test's p-value. Undefined parts (a zero margin) are None.

    Examples
    --------
    >>> tests = independence_tests([[12, 5], [9, 7]])
    >>> tests["test"], round(tests["chi2"], 4), round(tests["fisher_p"], 4)
    ('chi-square', 0.7323, 0.4813)
    """
    from scipy import stats

    counts = np.asarray(table, dtype=float)
    out: dict[str, float | str | None] = {
        "chi2": None,
        "chi2_p": None,
        "fisher_odds_ratio": None,
        "fisher_p": None,
        "test": None,
        "p": None,
    }
    if counts.sum() == 0:
        return out
    odds, fisher_p = stats.fisher_exact(counts)
    out["fisher_odds_ratio"] = float(odds) if np.isfinite(odds) else None
    out["fisher_p"] = float(fisher_p)
    margins_ok = np.all(counts.sum(axis=0) > 0) and np.all(counts.sum(axis=1) > 0)
    if margins_ok:
        result = stats.chi2_contingency(counts, correction=False)
        out["chi2"], out["chi2_p"] = float(result.statistic), float(result.pvalue)
        small = bool(np.any(result.expected_freq < 5))
    else:
        small = True
    out["test"] = "fisher" if small else "chi-square"
    out["p"] = out["fisher_p"] if small else out["chi2_p"]
    return out


def trace_vs_answer(
    labels: pd.DataFrame, answers: pd.DataFrame, *, validate: bool = True
) -> list[TraceVsAnswer]:
    """Contingency of trace correctness (reference labels) and answer correctness.

    A trace is correct when no reference-labelled step of it is an error (abstentions do not
    count as errors); only traces with reference labels and an answer row enter. One row
    per condition, then one with ``condition="all"``.

    Examples
    --------
    >>> import pandas as pd
    >>> labels = pd.DataFrame({"step_id": ["1", "2", "3", "4"],
    ...     "trace_id": ["t1", "t1", "t2", "t2"], "question_id": "q", "condition": "A",
    ...     "evaluator": "ref", "evaluator_kind": "reference",
    ...     "verdict": ["correct", "correct", "error", "correct"]})
    >>> answers = pd.DataFrame({"trace_id": ["t1", "t2"], "question_id": "q",
    ...     "condition": "A", "sample_index": 0, "answer": ["x", "x"], "gold": "x",
    ...     "confidence": None})
    >>> row = trace_vs_answer(labels, answers)[0]
    >>> row.trace_correct_answer_correct, row.trace_wrong_answer_correct
    (1, 1)
    >>> row.p_answer_correct_given_trace_correct
    1.0
    """
    if validate:
        labels = labels_validate(labels)
        answers = answers_validate(answers)
    reference = labels[labels["evaluator_kind"] == "reference"]
    if reference.empty:
        return []
    trace_ok = (reference["verdict"] != "error").groupby(reference["trace_id"]).all()
    joined = answers.set_index("trace_id").join(trace_ok.rename("trace_correct"), how="inner")
    if joined.empty:
        return []
    out = []
    groups = [(str(c), g) for c, g in joined.groupby("condition", sort=True)]
    for condition, group in [*groups, ("all", joined)]:
        tc = group["trace_correct"].to_numpy(dtype=bool)
        ac = group["correct"].to_numpy(dtype=bool)
        cc, cw = int(np.sum(tc & ac)), int(np.sum(tc & ~ac))
        wc, ww = int(np.sum(~tc & ac)), int(np.sum(~tc & ~ac))
        out.append(
            TraceVsAnswer(
                condition=condition,
                n=len(group),
                trace_correct_answer_correct=cc,
                trace_correct_answer_wrong=cw,
                trace_wrong_answer_correct=wc,
                trace_wrong_answer_wrong=ww,
                p_answer_correct_given_trace_correct=_share(cc, cc + cw),
                p_answer_correct_given_trace_wrong=_share(wc, wc + ww),
                p_trace_correct_given_answer_correct=_share(cc, cc + wc),
                p_trace_correct_given_answer_wrong=_share(cw, cw + ww),
                **independence_tests([[cc, cw], [wc, ww]]),
            )
        )
    return out
