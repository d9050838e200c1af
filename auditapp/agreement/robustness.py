"""Robustness: the error-rate gap between conditions under each segmentation of the traces.

The same traces can be cut into steps in several ways (``segmentation`` column of the labels
format). A finding that holds only under one segmentation is fragile, so every evaluator's
pairwise condition gaps are recomputed per segmentation, each with its cluster-bootstrap
interval. Hidden-repeat consistency of each clinician lives in
:func:`auditapp.agreement.blinding.hidden_repeat_consistency` and is re-exported here.

Examples
--------
>>> import numpy as np, pandas as pd
>>> labels = pd.DataFrame({"step_id": ["a1", "a2", "b1", "b2", "A", "B"],
...     "trace_id": ["t1", "t1", "t2", "t2", "t1", "t2"], "question_id": "q",
...     "condition": ["A", "A", "B", "B", "A", "B"], "evaluator": "j",
...     "evaluator_kind": "judge",
...     "verdict": ["error", "correct", "correct", "correct", "error", "correct"],
...     "segmentation": ["sentence"] * 4 + ["whole"] * 2})
>>> gaps = segmentation_gaps(labels, rng=np.random.default_rng(0), resamples=20)
>>> [(g.segmentation, g.gap) for g in gaps]
[('sentence', 0.5), ('whole', 1.0)]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from auditapp.agreement.blinding import hidden_repeat_consistency
from auditapp.agreement.formats import labels_validate
from auditapp.agreement.orderings import orderings
from auditapp.agreement.rates import AbstainRule, ErrorRates, error_rates

__all__ = [
    "SegmentationGap",
    "gaps_from_rates",
    "hidden_repeat_consistency",
    "segmentation_gaps",
]


@dataclass(frozen=True)
class SegmentationGap:
    """``rate(condition_a) − rate(condition_b)`` of one evaluator under one segmentation."""

    segmentation: str
    evaluator: str
    evaluator_kind: str
    condition_a: str
    condition_b: str
    rate_a: float
    rate_b: float
    gap: float
    ci_low: float | None
    ci_high: float | None
    n_a: int
    n_b: int


def segmentation_gaps(
    labels: pd.DataFrame,
    *,
    rng: np.random.Generator,
    resamples: int = 2000,
    confidence_level: float = 0.95,
    abstain: AbstainRule = "exclude",
    validate: bool = True,
) -> list[SegmentationGap]:
    """Pairwise condition gaps of every evaluator, per segmentation.

    Parameters
    ----------
    labels : pandas.DataFrame
        The labels long format; without a ``segmentation`` column all rows form one
        segmentation called ``"default"``.
    rng, resamples, confidence_level, abstain : keyword-only
        As in :func:`auditapp.agreement.rates.error_rates`.
    validate : bool, keyword-only

    Returns
    -------
    list of SegmentationGap
        In segmentation, evaluator and condition-pair order.
    """
    frame = labels_validate(labels) if validate else labels
    if frame.empty:
        return []
    if "segmentation" not in frame.columns:
        frame = frame.assign(segmentation="default")
    out: list[SegmentationGap] = []
    for segmentation, part in frame.groupby("segmentation", sort=True):
        result = error_rates(
            part,
            rng=rng,
            resamples=resamples,
            confidence_level=confidence_level,
            abstain=abstain,
            validate=False,
        )
        out.extend(gaps_from_rates(result, segmentation=str(segmentation)))
    return out


def gaps_from_rates(result: ErrorRates, *, segmentation: str) -> list[SegmentationGap]:
    """The pairwise condition gaps of every evaluator in ``result``, tagged ``segmentation``.

    Lets a caller that already computed the error rates of the only segmentation skip a
    second bootstrap.
    """
    out: list[SegmentationGap] = []
    for ordering in orderings(result):
        for d in ordering.differences:
            row_a = result.row(ordering.evaluator, d.condition_a)
            row_b = result.row(ordering.evaluator, d.condition_b)
            if row_a is None or row_b is None:  # pragma: no cover - orderings only pair rows
                continue
            out.append(
                SegmentationGap(
                    segmentation=segmentation,
                    evaluator=ordering.evaluator,
                    evaluator_kind=ordering.evaluator_kind,
                    condition_a=d.condition_a,
                    condition_b=d.condition_b,
                    rate_a=ordering.rates[d.condition_a],
                    rate_b=ordering.rates[d.condition_b],
                    gap=d.difference,
                    ci_low=d.ci_low,
                    ci_high=d.ci_high,
                    n_a=row_a.n,
                    n_b=row_b.n,
                )
            )
    return out
