"""A planner fed by a pilot: expert labels needed per arm, by design, from measured agreement.

Given a pilot — a judge run over every step plus a few dozen expert labels per arm drawn
uniformly — the planner estimates, for each design, the variance one expert label contributes
to an arm's error-rate estimate, and from it the labels per arm needed for a target interval
half-width on the gap between two arms, or for a target power to detect it (as
``ppi_py.ppi_power_analysis`` does for PPI, here per design and with a design effect):

* expert-only: var(Y);
* PPI (λ = 1): var(Y − f);
* PPI++ (c + λ·f tuned): var(Y − c − λ f) = var(Y)·(1 − corr(Y, f)²);
* active + PPI++: E[(Y − c − λ f)² / π̃], π̃ the active design's probability relative to
  uniform (its mean over the population is 1), computed from the judge's uncertainty on every
  step with the design's floor (``auditapp.agreement.active``) and read on the pilot's steps;
* stratified PPI (strata: the judge's verdict, f > 1/2 or not; Neyman allocation):
  (Σ_h W_h S_h)², W_h the stratum's share of the arm's steps and S_h the standard deviation
  of the pilot's expert labels in it (``auditapp.agreement.stratified``); a stratum with
  fewer than two pilot labels takes sqrt(f̄_h (1 − f̄_h)), the calibrated judge's guess.

The judge-only part of PPI's variance (var(f)/N over all judged steps) is left out: with
thousands of judged steps per arm it is below 1 % of the total. Steps of a trace are
correlated; the count is multiplied by the design effect 1 + (m − 1)·ICC for m labelled steps
per trace (``planning.design_effect``), with the ICC of the pilot's residuals estimated by
one-way ANOVA when the pilot has several steps of some trace.

    n per arm = z² · deff · (V_a + V_b) / w²              (half-width w of the gap's interval)
    n per arm = (z_{1−α/2} + z_{power})² · deff · (V_a + V_b) / δ²    (power to detect δ)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from auditapp.agreement.active import (
    DEFAULT_FLOOR,
    error_probability,
    uncertainty_score,
)
from auditapp.agreement.planning import design_effect

__all__ = ["ArmPilot", "PilotPlan", "pilot_plan", "unit_variances"]

DESIGNS = ("expert-only", "PPI", "PPI++", "stratified PPI", "active + PPI++")


@dataclass(frozen=True)
class ArmPilot:
    """One arm's pilot: expert labels with the judge's prediction on the same steps, and the
    judge's predictions on every step of the arm."""

    y: np.ndarray  # expert error labels (0/1 or shares) of the pilot's steps
    f: np.ndarray  # the judge's error probability on the same steps
    f_all: np.ndarray  # the judge's error probability on every step of the arm
    clusters: np.ndarray | None = None  # trace ids of the pilot's steps


@dataclass(frozen=True)
class PilotPlan:
    arms: tuple[str, str]
    alpha: float
    target: str  # "half-width 0.05" or "power 0.8 for a gap of 0.11"
    design_effect: float
    icc: float
    variances: dict[str, dict[str, float]]  # arm → design → variance per label
    n_per_arm: dict[str, int]  # design → labels per arm
    relative_to_expert: dict[str, float] = field(default_factory=dict)
    rule: str = ""


def _fit(y: np.ndarray, f: np.ndarray) -> tuple[float, float]:
    """(c, λ) of the least-squares line y ≈ c + λ f (the power-tuned working model)."""
    if np.var(f) == 0:
        return float(np.mean(y)), 0.0
    lam = float(np.cov(y, f, bias=True)[0, 1] / np.var(f))
    return float(np.mean(y) - lam * np.mean(f)), lam


def _relative_probabilities(f: np.ndarray, f_all: np.ndarray, votes: int, floor: float):
    """π̃ on the pilot's steps: the active design's probability over uniform (mean 1)."""
    score_all = uncertainty_score(error_probability(sample_error_share=f_all, votes=votes))
    score = uncertainty_score(error_probability(sample_error_share=f, votes=votes))
    mean = float(score_all.mean())
    if mean == 0:
        return np.ones_like(f)
    rel_all = np.maximum(floor, score_all / mean)
    return np.maximum(floor, score / mean) / float(rel_all.mean())


def unit_variances(
    arm: ArmPilot, *, votes: int = 0, floor: float = DEFAULT_FLOOR
) -> dict[str, float]:
    """Variance per expert label of the arm's estimate under each design (module doc)."""
    y, f = np.asarray(arm.y, float), np.asarray(arm.f, float)
    if y.size < 2 or y.shape != f.shape:
        raise ValueError("a pilot arm needs at least two labelled steps, one prediction each")
    c, lam = _fit(y, f)
    residual = y - c - lam * f
    rel = _relative_probabilities(f, np.asarray(arm.f_all, float), votes, floor)
    n = y.size
    # Unbiased for the population's variances: one fitted mean, or the line's two parameters.
    one, two = n / (n - 1), n / max(n - 2, 1)
    return {
        "expert-only": float(np.var(y)) * one,
        "PPI": float(np.var(y - f)) * one,
        "PPI++": float(np.var(residual)) * two,
        "stratified PPI": _neyman_variance(y, f, np.asarray(arm.f_all, float)),
        "active + PPI++": float(np.mean(residual**2 / rel)) * two,
    }


def _neyman_variance(y: np.ndarray, f: np.ndarray, f_all: np.ndarray) -> float:
    """(Σ_h W_h S_h)²: the variance per label of Σ W_h ȳ_h under Neyman allocation."""
    total = 0.0
    for in_pilot, in_all in ((f > 0.5, f_all > 0.5), (f <= 0.5, f_all <= 0.5)):
        w = float(in_all.mean())
        if w == 0:
            continue
        if in_pilot.sum() >= 2:
            s = float(np.std(y[in_pilot], ddof=1))
        else:
            p = float(f_all[in_all].mean())
            s = math.sqrt(p * (1 - p))
        total += w * s
    return total**2


def _icc(residual: np.ndarray, clusters: np.ndarray) -> float:
    """One-way ANOVA ICC of the residuals, 0 when no trace has two pilot steps."""
    frame = pd.DataFrame({"r": residual, "g": clusters})
    sizes = frame.groupby("g")["r"].size()
    if (sizes > 1).sum() == 0 or len(sizes) < 3:
        return 0.0
    k = len(sizes)
    n = len(frame)
    n0 = (n - float((sizes**2).sum()) / n) / (k - 1)
    means = frame.groupby("g")["r"].mean()
    msb = float((sizes * (means - frame["r"].mean()) ** 2).sum()) / (k - 1)
    msw = float(((frame["r"] - frame["g"].map(means)) ** 2).sum()) / (n - k)
    icc = (msb - msw) / (msb + (n0 - 1) * msw) if msb + (n0 - 1) * msw > 0 else 0.0
    return float(min(max(icc, 0.0), 1.0))


def pilot_plan(
    arms: dict[str, ArmPilot],
    *,
    pair: tuple[str, str],
    half_width: float | None = None,
    gap: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    steps_per_trace: float = 1.0,
    votes: int = 0,
    floor: float = DEFAULT_FLOOR,
) -> PilotPlan:
    """Labels per arm, by design, for the gap between ``pair`` (module doc). Give either
    ``half_width`` (of the gap's 1 − α interval) or ``gap`` (to detect with ``power``)."""
    if (half_width is None) == (gap is None):
        raise ValueError("give either half_width or gap")
    a, b = pair
    if a not in arms or b not in arms or a == b:
        raise ValueError(f"pair must name two of the pilot's arms: {sorted(arms)}")
    variances = {name: unit_variances(arm, votes=votes, floor=floor) for name, arm in arms.items()}
    residuals, clusters = [], []
    for name in pair:
        arm = arms[name]
        if arm.clusters is not None:
            c, lam = _fit(np.asarray(arm.y, float), np.asarray(arm.f, float))
            residuals.append(np.asarray(arm.y, float) - c - lam * np.asarray(arm.f, float))
            clusters.append(np.asarray([f"{name}:{g}" for g in arm.clusters]))
    icc = _icc(np.concatenate(residuals), np.concatenate(clusters)) if residuals else 0.0
    deff = design_effect(steps_per_trace, icc)
    z = float(stats.norm.ppf(1 - alpha / 2))
    if half_width is not None:
        if half_width <= 0:
            raise ValueError("half_width must be positive")
        factor, target = z**2 / half_width**2, f"half-width {half_width:g}"
    else:
        if gap <= 0 or not 0 < power < 1:
            raise ValueError("gap must be positive and power in (0, 1)")
        factor = (z + float(stats.norm.ppf(power))) ** 2 / gap**2
        target = f"power {power:g} for a gap of {gap:g}"
    n = {
        d: max(2, math.ceil(factor * deff * (variances[a][d] + variances[b][d]) - 1e-9))
        for d in DESIGNS
    }
    return PilotPlan(
        arms=(a, b),
        alpha=alpha,
        target=target,
        design_effect=deff,
        icc=icc,
        variances=variances,
        n_per_arm=n,
        relative_to_expert={d: n[d] / n["expert-only"] for d in DESIGNS},
        rule=(
            "labels per arm = z² × design effect × (V_a + V_b) / w², with V the pilot's "
            "variance per label under each design (PPI++ and active: residual of the "
            "least-squares line y ≈ c + λ·f; active: divided by the design's probability "
            f"relative to uniform, floor {floor:g}; stratified PPI: (Σ W_h S_h)² over the "
            "judge's verdict strata); the judge-only variance is left out"
        ),
    )
