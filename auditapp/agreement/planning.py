"""Sample-size planner: expert-labelled steps per condition to detect a difference in error rates.

Two independent proportions, normal approximation on Cohen's arcsine effect size
h = 2·asin(√p2) − 2·asin(√p1) (``statsmodels`` ``proportion_effectsize`` and
``NormalIndPower``, as in G*Power's arcsine test). Steps of one trace are correlated, so the
count is inflated by the design effect 1 + (m − 1)·ICC for m labelled steps per trace and an
intra-trace correlation ICC (Kish 1965); the inverse divides n by the same factor.

Examples
--------
>>> plan = sample_size(0.3, 0.5)
>>> plan.n_per_condition
93
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize

__all__ = ["PowerPlan", "SampleSizePlan", "design_effect", "power", "sample_size"]

Alternative = Literal["two-sided", "larger", "smaller"]


@dataclass(frozen=True)
class SampleSizePlan:
    """Steps per condition needed to detect ``p1`` vs ``p2``."""

    p1: float
    p2: float
    alpha: float
    power: float
    effect_size: float
    design_effect: float
    n_per_condition_independent: int
    n_per_condition: int
    n_traces_per_condition: int
    method: str


@dataclass(frozen=True)
class PowerPlan:
    """Power to detect ``p1`` vs ``p2`` with ``n_per_condition`` labelled steps each."""

    p1: float
    p2: float
    alpha: float
    n_per_condition: int
    effect_size: float
    design_effect: float
    n_effective: float
    power: float
    method: str


_METHOD = (
    "two independent proportions, normal approximation on Cohen's arcsine h "
    "(statsmodels NormalIndPower), inflated by the design effect 1 + (m - 1) * ICC"
)


def design_effect(steps_per_trace: float, icc: float) -> float:
    """Kish design effect 1 + (m − 1)·ICC for clusters of ``steps_per_trace`` steps.

    Examples
    --------
    >>> design_effect(5, 0.1)
    1.4
    """
    if steps_per_trace < 1:
        raise ValueError(f"steps_per_trace must be at least 1, got {steps_per_trace!r}")
    if not 0.0 <= icc <= 1.0:
        raise ValueError(f"icc must lie in [0, 1], got {icc!r}")
    return 1.0 + (steps_per_trace - 1.0) * icc


def _check(p1: float, p2: float, alpha: float) -> None:
    for name, p in (("p1", p1), ("p2", p2)):
        if not 0.0 < p < 1.0:
            raise ValueError(f"{name} must lie in (0, 1), got {p!r}")
    if p1 == p2:
        raise ValueError("p1 and p2 must differ: there is no difference to detect")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")


def sample_size(
    p1: float,
    p2: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    alternative: Alternative = "two-sided",
    steps_per_trace: float = 1.0,
    icc: float = 0.0,
) -> SampleSizePlan:
    """Expert-labelled steps per condition to detect error rates ``p1`` vs ``p2``.

    Parameters
    ----------
    p1, p2 : float
        Error rates of the two conditions, in (0, 1).
    alpha : float, keyword-only
        Type I error (default 0.05).
    power : float, keyword-only
        Target power (default 0.8).
    alternative : {"two-sided", "larger", "smaller"}, keyword-only
    steps_per_trace, icc : float, keyword-only
        Labelled steps per trace and intra-trace correlation for the design effect
        (defaults: independent steps).

    Returns
    -------
    SampleSizePlan
        ``n_per_condition`` is rounded up after applying the design effect;
        ``n_traces_per_condition`` = ceil(n / steps_per_trace).

    Examples
    --------
    >>> plan = sample_size(0.3, 0.5, steps_per_trace=5, icc=0.1)
    >>> plan.n_per_condition_independent, plan.design_effect, plan.n_per_condition
    (93, 1.4, 130)
    """
    _check(p1, p2, alpha)
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must lie in (0, 1), got {power!r}")
    effect = float(proportion_effectsize(p2, p1))
    if alternative == "two-sided":
        effect = abs(effect)
    raw = NormalIndPower().solve_power(
        effect_size=effect, alpha=alpha, power=power, ratio=1.0, alternative=alternative
    )
    deff = design_effect(steps_per_trace, icc)
    n = math.ceil(float(raw) * deff - 1e-9)
    return SampleSizePlan(
        p1=p1,
        p2=p2,
        alpha=alpha,
        power=power,
        effect_size=effect,
        design_effect=deff,
        n_per_condition_independent=math.ceil(float(raw) - 1e-9),
        n_per_condition=n,
        n_traces_per_condition=math.ceil(n / steps_per_trace),
        method=_METHOD,
    )


def power(
    p1: float,
    p2: float,
    n_per_condition: int,
    *,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
    steps_per_trace: float = 1.0,
    icc: float = 0.0,
) -> PowerPlan:
    """Power to detect ``p1`` vs ``p2`` with ``n_per_condition`` labelled steps each.

    Examples
    --------
    >>> round(power(0.3, 0.5, 93).power, 3)
    0.801
    """
    _check(p1, p2, alpha)
    if n_per_condition < 1:
        raise ValueError(f"n_per_condition must be at least 1, got {n_per_condition!r}")
    effect = float(proportion_effectsize(p2, p1))
    if alternative == "two-sided":
        effect = abs(effect)
    deff = design_effect(steps_per_trace, icc)
    n_eff = n_per_condition / deff
    achieved = NormalIndPower().power(
        effect_size=effect, nobs1=n_eff, alpha=alpha, ratio=1.0, alternative=alternative
    )
    return PowerPlan(
        p1=p1,
        p2=p2,
        alpha=alpha,
        n_per_condition=n_per_condition,
        effect_size=effect,
        design_effect=deff,
        n_effective=n_eff,
        power=float(achieved),
        method=_METHOD,
    )
