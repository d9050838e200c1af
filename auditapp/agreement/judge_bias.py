"""The judge checked per condition: sensitivity and specificity against the experts.

"Error" is the positive class. The expert reference for a step is the **majority** of its
non-abstaining experts (a tie leaves the step out), or, with ``reference="each"``, every
(judge, expert) pair counts once. Steps where the judge abstained are left out.

A judge with a good overall kappa can still bias the ordering of conditions when it is more
sensitive in one condition than another. The rule: a judge is **flagged** when a test of
homogeneity across conditions gives p < ``alpha`` (default 0.05) for sensitivity or for
specificity — Pearson's chi-square test on the (conditions × {judge error, judge correct})
table, or Fisher's exact test when there are exactly two conditions. Wilson intervals are
shown beside each proportion (steps treated as independent).

Examples
--------
>>> import pandas as pd
>>> rows = []
>>> for cond, judge in [("A", ["error", "error", "correct", "correct"]),
...                     ("B", ["correct", "correct", "correct", "correct"])]:
...     for i, (expert, jv) in enumerate(zip(["error", "error", "correct", "correct"], judge)):
...         step = f"{cond}{i}"
...         rows.append((step, cond, "dr", "expert", expert))
...         rows.append((step, cond, "gpt", "judge", jv))
>>> labels = pd.DataFrame(rows, columns=["step_id", "condition", "evaluator",
...     "evaluator_kind", "verdict"]).assign(trace_id=lambda d: d.step_id, question_id="q")
>>> result = judge_by_condition(labels)
>>> [(r.condition, r.sensitivity, r.specificity) for r in result.rows]
[('A', 1.0, 1.0), ('B', 0.0, 1.0)]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from auditapp.agreement.formats import labels_validate
from auditapp.agreement.rates import wilson_interval

__all__ = ["JudgeBias", "JudgeConditionRow", "JudgeHomogeneity", "judge_by_condition"]


@dataclass(frozen=True)
class JudgeConditionRow:
    """Confusion counts of one judge against the expert reference in one condition."""

    judge: str
    condition: str
    n: int
    true_positive: int
    false_negative: int
    true_negative: int
    false_positive: int
    sensitivity: float | None
    sensitivity_low: float | None
    sensitivity_high: float | None
    specificity: float | None
    specificity_low: float | None
    specificity_high: float | None


@dataclass(frozen=True)
class JudgeHomogeneity:
    """Tests that a judge's sensitivity and specificity do not differ across conditions."""

    judge: str
    test: str
    sensitivity_p: float | None
    specificity_p: float | None
    flagged: bool


@dataclass(frozen=True)
class JudgeBias:
    rows: tuple[JudgeConditionRow, ...]
    homogeneity: tuple[JudgeHomogeneity, ...]
    reference: str
    alpha: float


def _expert_reference(experts: pd.DataFrame, reference: str) -> pd.DataFrame:
    voting = experts[experts["verdict"] != "abstain"]
    if reference == "each":
        return voting.assign(expert_error=voting["verdict"] == "error")[["step_id", "expert_error"]]
    is_error = (voting["verdict"] == "error").astype(int)
    tally = is_error.groupby(voting["step_id"]).agg(["sum", "size"])
    decided = tally[2 * tally["sum"] != tally["size"]]  # ties leave the step out
    return pd.DataFrame(
        {
            "step_id": decided.index.to_numpy(),
            "expert_error": (2 * decided["sum"] > decided["size"]).to_numpy(),
        }
    )


def _homogeneity_p(table: np.ndarray) -> float | None:
    """p of the homogeneity test on a (conditions × 2) table, None when undefined."""
    table = table[table.sum(axis=1) > 0]
    if table.shape[0] < 2 or np.any(table.sum(axis=0) == 0):
        return None
    if table.shape[0] == 2:
        return float(stats.fisher_exact(table).pvalue)
    return float(stats.chi2_contingency(table, correction=False).pvalue)


def judge_by_condition(
    labels: pd.DataFrame,
    *,
    reference: Literal["majority", "each"] = "majority",
    alpha: float = 0.05,
    confidence_level: float = 0.95,
    validate: bool = True,
) -> JudgeBias:
    """Sensitivity and specificity of every judge against the experts, per condition.

    Parameters
    ----------
    labels : pandas.DataFrame
        The labels long format, with judge and expert rows on shared ``step_id`` values.
    reference : {"majority", "each"}, keyword-only
        Expert reference per step: the majority of non-abstaining experts (ties dropped), or
        each expert separately.
    alpha : float, keyword-only
        Significance level of the homogeneity tests behind ``flagged`` (default 0.05).
    confidence_level : float, keyword-only
        Level of the Wilson intervals.
    validate : bool, keyword-only
        Skip validation when the caller already did.

    Returns
    -------
    JudgeBias
        ``rows`` per (judge, condition) and one ``homogeneity`` entry per judge; both empty
        when no step has both a judge verdict and an expert reference.
    """
    if reference not in ("majority", "each"):
        raise ValueError(f"reference must be 'majority' or 'each', got {reference!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
    frame = labels_validate(labels) if validate else labels
    # The columns read here only: masking every column of a million rows is the cost.
    frame = frame[["step_id", "condition", "evaluator", "evaluator_kind", "verdict"]]
    experts = frame[frame["evaluator_kind"] == "expert"]
    judges = frame[(frame["evaluator_kind"] == "judge") & (frame["verdict"] != "abstain")]
    if experts.empty or judges.empty:
        return JudgeBias((), (), reference, alpha)
    ref = _expert_reference(experts, reference)
    judges = judges[judges["step_id"].isin(ref["step_id"])]
    pairs = judges[["step_id", "condition", "evaluator", "verdict"]].merge(ref, on="step_id")
    if pairs.empty:
        return JudgeBias((), (), reference, alpha)
    pairs["judge_error"] = pairs["verdict"] == "error"

    rows: list[JudgeConditionRow] = []
    homogeneity: list[JudgeHomogeneity] = []
    for judge, by_judge in pairs.groupby("evaluator", sort=True):
        sens_table, spec_table = [], []
        for condition, group in by_judge.groupby("condition", sort=True):
            je = group["judge_error"].to_numpy(dtype=bool)
            ee = group["expert_error"].to_numpy(dtype=bool)
            tp, fn = int(np.sum(je & ee)), int(np.sum(~je & ee))
            tn, fp = int(np.sum(~je & ~ee)), int(np.sum(je & ~ee))
            sens_table.append([tp, fn])
            spec_table.append([tn, fp])
            s_low, s_high = wilson_interval(tp, tp + fn, confidence_level=confidence_level)
            p_low, p_high = wilson_interval(tn, tn + fp, confidence_level=confidence_level)
            rows.append(
                JudgeConditionRow(
                    judge=str(judge),
                    condition=str(condition),
                    n=len(group),
                    true_positive=tp,
                    false_negative=fn,
                    true_negative=tn,
                    false_positive=fp,
                    sensitivity=tp / (tp + fn) if tp + fn else None,
                    sensitivity_low=float(s_low) if tp + fn else None,
                    sensitivity_high=float(s_high) if tp + fn else None,
                    specificity=tn / (tn + fp) if tn + fp else None,
                    specificity_low=float(p_low) if tn + fp else None,
                    specificity_high=float(p_high) if tn + fp else None,
                )
            )
        n_conditions = len(sens_table)
        sens_p = _homogeneity_p(np.array(sens_table))
        spec_p = _homogeneity_p(np.array(spec_table))
        homogeneity.append(
            JudgeHomogeneity(
                judge=str(judge),
                test="fisher_exact" if n_conditions == 2 else "chi2_homogeneity",
                sensitivity_p=sens_p,
                specificity_p=spec_p,
                flagged=any(p is not None and p < alpha for p in (sens_p, spec_p)),
            )
        )
    return JudgeBias(tuple(rows), tuple(homogeneity), reference, alpha)
