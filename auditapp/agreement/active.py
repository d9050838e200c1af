"""Active expert sampling: inclusion probabilities that follow the judge's uncertainty.

Active statistical inference (Zrnic & Candès, ICML 2024) draws the expert sample with
probabilities π_i that grow with how unsure the judge is about unit i, then corrects with the
recorded π_i (Horvitz–Thompson / Hájek weights 1/π_i), so the estimate stays unbiased for any
π while its variance drops when the experts' effort goes where the judge is least reliable.
The variance of a prediction-powered estimate is Σ (Y_i − f_i)² (1 − π_i) / π_i / N² for
Poisson sampling, smallest for π_i ∝ sd(Y_i − f_i | judge); for a 0/1 error label and a
calibrated judge probability p_i that sd is sqrt(p_i (1 − p_i)), the **uncertainty score**.

Where p_i comes from (:func:`error_probability`), in the order used:

* the judge's token probability of "error" (the endpoint's log-probabilities, averaged over
  its samples): the distribution each sample was drawn from, so it holds all the votes hold;
  kept within [0.05, 0.95] for the design (see the function);
* several samples of one judge: the share of its samples that call the step an error;
* several judges: the share of judges that call it an error;
* a stated confidence c in the verdict (or the verdict token's probability): c for an
  "error" verdict, 1 − c for a "correct" one;
* one plain verdict: no uncertainty is known, every step gets the same score.

**The floor.** A judge that is confidently wrong gives p_i = 0 or 1 and a score of 0: without
a floor such a step could never reach an expert, the weights 1/π_i would be unbounded and the
estimate's variance with them. Every step keeps π_i ≥ ``floor`` × n / N (default 0.2: at most
a five-fold weight relative to uniform sampling), which bounds the worst case at 5× the
uniform design's variance contribution per step while leaving most of the budget to the
uncertain steps.

Examples
--------
>>> import numpy as np
>>> pi = inclusion_probabilities(np.array([0.0, 0.0, 0.5, 0.5]), n=2, floor=0.2)
>>> [round(float(p), 3) for p in pi], round(float(pi.sum()), 6)
([0.1, 0.1, 0.9, 0.9], 2.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from auditapp.agreement.rates import SMALL_SAMPLE_TRACES

__all__ = [
    "TOKEN_PROBABILITY_RANGE",
    "ActiveEstimate",
    "active_mean",
    "error_probability",
    "inclusion_probabilities",
    "systematic_sample",
    "uncertainty_score",
]

DEFAULT_FLOOR = 0.2


TOKEN_PROBABILITY_RANGE = (0.05, 0.95)


def error_probability(
    *,
    token_probability: np.ndarray | None = None,
    sample_error_share: np.ndarray | None = None,
    judge_error_share: np.ndarray | None = None,
    confidence: np.ndarray | None = None,
    verdict_is_error: np.ndarray | None = None,
    votes: int = 0,
) -> np.ndarray:
    """The judge's probability that each step is an error, from what exists (module doc).

    ``votes``: how many samples (or judges) each share is taken over; with it the share is
    smoothed towards 1/2 (see below)."""
    if token_probability is not None:
        p = np.asarray(token_probability, dtype=float)
        if np.any((p < 0) | (p > 1) | ~np.isfinite(p)):
            raise ValueError("token probabilities must lie in [0, 1]")
        # A model's 0.999 is not certainty either (language models are least calibrated at
        # the extremes), and near 0 or 1 the score puts a step on the floor with a five-fold
        # weight: with [0.01, 0.99] the active design covered 92 % at 50 labels per arm in
        # bench/efficiency_bench.py, with [0.05, 0.95] 94 % and no wider.
        return np.clip(p, *TOKEN_PROBABILITY_RANGE)
    for share in (sample_error_share, judge_error_share):
        if share is not None:
            p = np.asarray(share, dtype=float)
            if np.any((p < 0) | (p > 1) | ~np.isfinite(p)):
                raise ValueError("error shares must lie in [0, 1]")
            if votes:
                # The posterior mean under a uniform prior, (k·share + 1)/(k + 2): 5 of 5
                # samples agreeing is not certainty. Unsmoothed, such steps sat on the floor
                # with five-fold weights and the active design's intervals covered 78-90 %
                # (bench/efficiency_bench.py); smoothed, 90-98 % and narrower.
                p = (p * votes + 1.0) / (votes + 2.0)
            return p
    if confidence is not None:
        if verdict_is_error is None:
            raise ValueError("a stated confidence needs the verdict it is about")
        c = np.asarray(confidence, dtype=float)
        if np.any((c < 0) | (c > 1) | ~np.isfinite(c)):
            raise ValueError("confidences must lie in [0, 1]")
        return np.where(np.asarray(verdict_is_error, dtype=bool), c, 1.0 - c)
    if verdict_is_error is not None:
        return np.full(np.asarray(verdict_is_error).shape, 0.5)
    raise ValueError("give at least one source of the judge's uncertainty")


def uncertainty_score(p: np.ndarray) -> np.ndarray:
    """sqrt(p (1 − p)): the standard deviation of a 0/1 label with error probability p."""
    p = np.asarray(p, dtype=float)
    return np.sqrt(np.clip(p * (1.0 - p), 0.0, 0.25))


def inclusion_probabilities(p: np.ndarray, *, n: int, floor: float = DEFAULT_FLOOR) -> np.ndarray:
    """π_i ∝ uncertainty_score(p_i), at least ``floor``·n/N, at most 1, summing to n.

    Water-filling: scale the scores to the budget, raise those under the floor to it and cap
    those over 1, then rescale the rest, until the sum is n.
    """
    scores = uncertainty_score(p)
    big_n = scores.size
    if not 0 < n <= big_n:
        raise ValueError(f"n must lie in 1..{big_n}, got {n}")
    if not 0 <= floor <= 1:
        raise ValueError("floor must lie in [0, 1]")
    low = floor * n / big_n
    if np.all(scores == 0):
        return np.full(big_n, n / big_n)
    pi = np.empty(big_n)
    fixed = np.zeros(big_n, dtype=bool)
    for _ in range(big_n + 1):
        free = ~fixed
        budget = n - pi[fixed].sum()
        weight = scores[free].sum()
        if weight <= 0:
            pi[free] = budget / free.sum()
        else:
            pi[free] = scores[free] * budget / weight
        under = free & (pi < low)
        over = free & (pi > 1.0)
        if not under.any() and not over.any():
            break
        pi[under] = low
        pi[over] = 1.0
        fixed |= under | over
    return pi


def systematic_sample(pi: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of a fixed-size sample whose inclusion probabilities are exactly ``pi``.

    Systematic probability-proportional-to-size sampling over a random order (the random
    order removes any periodicity of the input): a uniform start u, and the units whose
    cumulative π interval contains u, u + 1, u + 2, ... ``pi`` must sum to an integer.
    """
    pi = np.asarray(pi, dtype=float)
    total = pi.sum()
    n = round(float(total))
    if abs(total - n) > 1e-6 or np.any((pi < 0) | (pi > 1 + 1e-12)):
        raise ValueError("inclusion probabilities must lie in [0, 1] and sum to an integer")
    order = rng.permutation(pi.size)
    edges = np.concatenate([[0.0], np.cumsum(pi[order])])
    points = rng.random() + np.arange(n)
    chosen = np.searchsorted(edges, points, side="right") - 1
    return np.sort(order[np.clip(chosen, 0, pi.size - 1)])


# --- the estimate from an actively drawn sample -------------------------------------------
@dataclass(frozen=True)
class ActiveEstimate:
    estimate: float
    se: float
    ci_low: float
    ci_high: float
    lam: float  # the judge's coefficient λ (1: plain PPI; 0: experts only)
    shift: float  # the constant c of the working model c + λ·f
    n_labelled: int
    n_effective: float  # labelled units an expert-only simple random sample would need


def active_mean(
    y: np.ndarray,
    sampled: np.ndarray,
    f: np.ndarray,
    pi: np.ndarray,
    *,
    clusters: np.ndarray | None = None,
    lam: float | None = None,
    confidence_level: float = 0.95,
    small_sample: bool = True,
) -> ActiveEstimate:
    """The population mean from a sample drawn with probabilities ``pi`` (Zrnic & Candès).

    ``f`` (judge's error probability or verdict) and ``pi`` cover all N units; ``sampled``
    holds the indices of the labelled ones and ``y`` their labels. The estimate is the
    difference estimator with working model g = c + λ·f,

        θ̂ = (1/N) Σ_i [ g_i + (Y_i − g_i) ξ_i / π_i ],

    unbiased for any fixed (c, λ) because E[ξ_i/π_i] = 1. ``lam=None`` tunes (c, λ) to
    minimise the estimated variance (power tuning, as PPI++ does for λ); with the intercept c
    the tuned estimate is never wider than the Hájek expert-only estimate from the same
    sample (c = ȳ, λ = 0 is one of the candidates), and with uniform π and λ = 1, c = 0 it is
    classical PPI. The variance is cluster-robust over ``clusters`` (traces): the per-unit
    terms are summed per cluster and the cluster totals' spread gives var(θ̂), which keeps
    both the population's variation and the sampling's.

    ``small_sample`` (default): the report's rule for few labelled traces
    (``auditapp.agreement.ppi``): with k < ``SMALL_SAMPLE_TRACES`` labelled clusters the
    interval is t with k − 1 degrees of freedom and the variance carries the CR1 factor
    k/(k − 1). Measured in bench/efficiency_bench.py at 50 labels per arm: the normal
    interval covered 92-94 %, this one 94-95 %.
    """
    f = np.asarray(f, dtype=float)
    pi = np.asarray(pi, dtype=float)
    big_n = f.size
    sampled = np.asarray(sampled, dtype=int)
    y = np.asarray(y, dtype=float)
    if y.shape != sampled.shape or pi.shape != f.shape:
        raise ValueError("one label per sampled index and one π per unit")
    if np.any(pi[sampled] <= 0):
        raise ValueError("a sampled unit has inclusion probability 0")
    weight = np.zeros(big_n)
    weight[sampled] = 1.0 / pi[sampled]
    labels = np.zeros(big_n)
    labels[sampled] = y
    # z_i = c·a0_i + λ·a1_i + b_i with a0 = 1 − ξ/π, a1 = f(1 − ξ/π), b = Y ξ/π.
    a0 = 1.0 - weight
    a1 = f * a0
    b = labels * weight
    codes = np.arange(big_n) if clusters is None else pd.factorize(np.asarray(clusters))[0]
    g = int(codes.max()) + 1
    sizes = np.bincount(codes, minlength=g).astype(float)

    def centred(values: np.ndarray) -> np.ndarray:
        return np.bincount(codes, weights=values, minlength=g) - sizes * values.mean()

    c0, c1, cb = centred(a0), centred(a1), centred(b)
    if lam is None:
        design = np.column_stack([c0, c1])
        coef, *_ = np.linalg.lstsq(design, -cb, rcond=None)
        shift, lam_value = float(coef[0]), float(coef[1])
    else:
        lam_value = float(lam)
        # The shift that is best for this λ (for λ = 1 and uniform π it is ~0: plain PPI).
        denom = float(c0 @ c0)
        shift = float(-(c0 @ (cb + lam_value * c1)) / denom) if denom > 0 else 0.0
    z = shift * a0 + lam_value * a1 + b
    estimate = float(z.mean())
    residual = shift * c0 + lam_value * c1 + cb
    var = float(g / max(g - 1, 1) * np.sum(residual**2) / big_n**2)
    zq = float(stats.norm.ppf(0.5 + confidence_level / 2))
    labelled = int(np.unique(codes[sampled]).size)
    if small_sample and 1 < labelled < SMALL_SAMPLE_TRACES:
        var *= labelled / (labelled - 1)
        zq = float(stats.t.ppf(0.5 + confidence_level / 2, labelled - 1))
    se = float(np.sqrt(max(var, 0.0)))
    y_var = float(np.var(y)) if y.size > 1 else 0.0
    n_eff = float(y_var / var) if var > 0 else float("inf")
    return ActiveEstimate(
        estimate=estimate,
        se=se,
        ci_low=estimate - zq * se,
        ci_high=estimate + zq * se,
        lam=lam_value,
        shift=shift,
        n_labelled=int(sampled.size),
        n_effective=n_eff,
    )
