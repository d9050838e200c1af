"""Controls: does the ordering of the conditions hold within each level of a covariate?

The audit paper's claim is that the step-error ordering persists under answer-correctness,
benchmark (dataset), trace-type, step-position and segmentation controls, and between a
style-blind and a raw judge. Each control splits the labels by one column of the labels
table; within every level the error rates (cluster bootstrap over traces, with the
small-sample rule of :mod:`auditapp.agreement.rates`), the orderings and the ordering
agreement are computed again, and the findings rules of :mod:`auditapp.agreement.findings`
give each level's verdict. The summary table answers "does the ordering hold under this
control?" per level: the evaluators' verdict there, and whether each evaluator's ordering
is the same as over all labels.

Columns read (optional; a control needs two or more levels with labels):

``answer_correct``  the trace's final answer is correct (``True``/``False``)
``dataset``         the question's dataset (benchmark)
``trace_type``      the trace's type
``step_position``   ``first`` / ``middle`` / ``last`` third of the trace (see
                    :func:`step_thirds`)
``segmentation``    how the trace was cut into steps
``style_blind``     per judge: it saw the style-normalised text (True) or the raw text

Examples
--------
>>> step_thirds([0, 1, 2, 3, 4, 5], [6] * 6)
['first', 'first', 'middle', 'middle', 'last', 'last']
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from auditapp.agreement.findings import ordering_finding, ordering_findings
from auditapp.agreement.orderings import ordering_agreement, orderings
from auditapp.agreement.rates import AbstainRule, ErrorRates, TraceDraws, error_rates

__all__ = ["CONTROLS", "control_analyses", "step_thirds", "style_blind_findings"]

# column → what the page calls it
CONTROLS: dict[str, str] = {
    "answer_correct": "final-answer correctness",
    "dataset": "dataset (benchmark)",
    "trace_type": "trace type",
    "step_position": "step position (third of the trace)",
    "segmentation": "segmentation",
}
POSITION_LEVELS = ("first", "middle", "last")
# Every control and level shares one set of trace draws per condition (TraceDraws); 1,000
# resamples (as the blinding classifier) keep the percentile intervals' Monte Carlo error
# near 0.005 and the stored draw counts at 2 bytes × 1,000 × traces.
CONTROL_MAX_RESAMPLES = 1000
_RATE_COLUMNS = ("trace_id", "condition", "evaluator", "evaluator_kind", "verdict")


def step_thirds(rank: Any, length: Any) -> list[str]:
    """``first`` / ``middle`` / ``last`` third of a trace for 0-based step ranks.

    Rank r of a trace of L steps falls in third ⌊3r / L⌋, so a trace of 1 step is "first",
    of 2 steps "first, middle" and of 3 steps one step per third.
    """
    r = np.asarray(rank, dtype=np.int64)
    n = np.maximum(np.asarray(length, dtype=np.int64), 1)
    third = np.minimum((3 * r) // n, 2)
    return [POSITION_LEVELS[int(t)] for t in third]


def _pairs(result: ErrorRates) -> list[tuple[str, str]]:
    """Every pair of evaluators, except a pooled kind with one of its own members."""
    series = result.evaluators()
    out = []
    for i, (a, kind_a, pooled_a) in enumerate(series):
        for b, kind_b, pooled_b in series[i + 1 :]:
            if (pooled_a or pooled_b) and kind_a == kind_b:
                continue
            out.append((a, b))
    return out


def _agreement_rows(result: ErrorRates) -> list[dict[str, Any]]:
    rows = []
    for a, b in _pairs(result):
        agreement = ordering_agreement(result, a, b)
        rows.append(
            {
                "a": agreement.a,
                "b": agreement.b,
                "conditions": list(agreement.conditions),
                "kendall_tau": agreement.kendall_tau,
                "same_ordering": agreement.same_ordering,
                "p_same_ordering": agreement.p_same_ordering,
                "n_resamples": agreement.n_resamples,
            }
        )
    return rows


def _ordering_rows(result: ErrorRates) -> list[dict[str, Any]]:
    return [
        {
            "evaluator": o.evaluator,
            "evaluator_kind": o.evaluator_kind,
            "ranking": list(o.ranking),
            "rates": dict(o.rates),
            "differences": [
                {
                    "condition_a": d.condition_a,
                    "condition_b": d.condition_b,
                    "difference": d.difference,
                    "ci_low": d.ci_low,
                    "ci_high": d.ci_high,
                    "method": d.method,
                    "significant": d.significant,
                }
                for d in o.differences
            ],
        }
        for o in orderings(result, exact_tests=False)
    ]


def _level_text(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return "correct" if value else "incorrect"
    return str(value)


def control_analyses(
    labels: pd.DataFrame,
    *,
    overall: list[dict[str, Any]],
    rng: np.random.Generator,
    resamples: int = 2000,
    confidence_level: float = 0.95,
    abstain: AbstainRule = "exclude",
) -> dict[str, Any]:
    """Error rates, orderings and findings within each level of every control.

    Parameters
    ----------
    labels : pandas.DataFrame
        Validated labels, optionally with the control columns (module docstring).
    overall : list of dict
        The report's ``orderings`` over all labels (to say whether a level keeps them).
    rng, resamples, confidence_level, abstain : keyword-only
        As in :func:`auditapp.agreement.rates.error_rates`.

    Returns
    -------
    dict
        ``controls`` (per control: ``control``, ``name``, ``levels``), ``error_rates``
        (rows with ``control``, ``level`` and the error-rate columns), ``differences``
        (``control``, ``level``, ``evaluator``, the difference columns) and ``summary``
        (``control``, ``level``, ``a``, ``b``, ``n_labels``, ``ranking_a``, ``ranking_b``,
        ``same_as_overall_a``, ``same_as_overall_b``, ``same_ordering``,
        ``p_same_ordering``, ``verdict``, ``sentence``).
    """
    overall_ranking = {o["evaluator"]: o["ranking"] for o in overall}
    out: dict[str, Any] = {"controls": [], "error_rates": [], "differences": [], "summary": []}
    columns = [c for c in CONTROLS if c in labels.columns]
    if not columns:
        return out
    # Only what error_rates reads, as categories: each level's subset is then a take of
    # integer codes and its factorizations are free (not a hash of a million strings each).
    narrow = labels[[*_RATE_COLUMNS, *columns]].astype("category")
    controls: list[tuple[str, str, pd.DataFrame, list[Any]]] = []
    for column in columns:
        known = narrow[column].notna()
        present = narrow if known.all() else narrow[known]
        levels = sorted(present[column].unique().tolist(), key=_level_text)
        if len(levels) >= 2:
            controls.append((column, CONTROLS[column], present, levels))
    if not controls:
        return out
    # One set of trace draws per condition for every control and level (TraceDraws): a
    # level's bootstrap is a matrix product, and the levels of a condition share draws.
    draws = TraceDraws.draw(narrow, resamples=min(resamples, CONTROL_MAX_RESAMPLES), rng=rng)
    for column, name, present, levels in controls:
        out["controls"].append(
            {"control": column, "name": name, "levels": [_level_text(v) for v in levels]}
        )
        for value in levels:
            part = present[present[column] == value]
            level = _level_text(value)
            result = error_rates(
                part,
                rng=rng,
                confidence_level=confidence_level,
                abstain=abstain,
                validate=False,
                draws=draws,
            )
            for r in result.rows:
                out["error_rates"].append(
                    {
                        "control": column,
                        "level": level,
                        "evaluator": r.evaluator,
                        "evaluator_kind": r.evaluator_kind,
                        "condition": r.condition,
                        "pooled": r.pooled,
                        "n": r.n,
                        "n_traces": r.n_traces,
                        "n_error": r.n_error,
                        "n_abstain": r.n_abstain,
                        "error_rate": r.rate,
                        "ci_low": r.ci_low,
                        "ci_high": r.ci_high,
                        "interval_method": r.method,
                    }
                )
            ordering_rows = _ordering_rows(result)
            for o in ordering_rows:
                for d in o["differences"]:
                    out["differences"].append(
                        {"control": column, "level": level, "evaluator": o["evaluator"], **d}
                    )
            findings = ordering_findings(ordering_rows, _agreement_rows(result))
            by_name = {o["evaluator"]: o for o in ordering_rows}
            for f in findings:
                out["summary"].append(
                    {
                        "control": column,
                        "level": level,
                        "a": f["a"],
                        "b": f["b"],
                        "n_labels": len(part),
                        "ranking_a": f["ranking_a"],
                        "ranking_b": f["ranking_b"],
                        "same_as_overall_a": _same_as(by_name, overall_ranking, f["a"]),
                        "same_as_overall_b": _same_as(by_name, overall_ranking, f["b"]),
                        "same_ordering": f["same_ordering"],
                        "p_same_ordering": f["p_same_ordering"],
                        "verdict": f["verdict"],
                        "sentence": f["sentence"],
                    }
                )
    return out


def _same_as(
    by_name: dict[str, dict[str, Any]], overall: dict[str, list[str]], evaluator: str
) -> bool | None:
    """Whether the evaluator ranks this level's conditions as it ranks them over all labels."""
    if evaluator not in by_name or evaluator not in overall:
        return None
    ranking = by_name[evaluator]["ranking"]
    return [c for c in overall[evaluator] if c in ranking] == ranking


def style_blind_findings(
    orderings_rows: list[dict[str, Any]],
    agreements: list[dict[str, Any]],
    style_blind: dict[str, bool],
) -> list[dict[str, Any]]:
    """Does a raw-text judge reproduce a style-blind judge's ordering (both ran)?

    ``style_blind`` maps judge evaluator names to their flag. One finding per (style-blind,
    raw) pair that has an ordering agreement row; empty unless both kinds ran.
    """
    by_name = {o["evaluator"]: o for o in orderings_rows}
    out = []
    for pair in agreements:
        a, b = pair["a"], pair["b"]
        if a not in style_blind or b not in style_blind or style_blind[a] == style_blind[b]:
            continue
        blind, raw = (a, b) if style_blind[a] else (b, a)
        if blind in by_name and raw in by_name:
            finding = ordering_finding(by_name[blind], by_name[raw], pair)
            out.append({**finding, "control": "style_blind"})
    return out
