"""Orderings of conditions by error rate, per evaluator, and agreement between evaluators.

An evaluator's **ordering** ranks the conditions by error rate (lowest first). Every pairwise
difference carries a cluster-bootstrap percentile interval (from the replicates of
:func:`auditapp.agreement.rates.error_rates`) and two naive tests that treat steps as
independent: the pooled two-proportion z test and Fisher's exact test.

Two evaluators agree on the ordering (``same_ordering``) when every pairwise difference has
the same sign (zero matches only zero). ``p_same_ordering`` is the share of bootstrap
resamples in which they agree; it is a joint bootstrap because both evaluators' replicates
come from the same trace draws in each condition. Kendall's tau-b compares the two rate
vectors (:func:`scipy.stats.kendalltau`).

Examples
--------
>>> import numpy as np
>>> round(float(two_proportion_z(30, 100, 50, 100)[1]), 4)
0.0039
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from auditapp.agreement.rates import (
    METHOD_BOOTSTRAP,
    METHOD_EFFECTIVE_WILSON,
    ErrorRates,
    newcombe_difference_interval,
)

METHOD_NEWCOMBE = "Newcombe hybrid score from the arms' effective-n Wilson intervals"

__all__ = [
    "ConditionDifference",
    "Ordering",
    "OrderingAgreement",
    "ordering_agreement",
    "orderings",
    "two_proportion_z",
]


@dataclass(frozen=True)
class ConditionDifference:
    """``rate(condition_a) − rate(condition_b)`` for one evaluator."""

    condition_a: str
    condition_b: str
    difference: float
    ci_low: float | None
    ci_high: float | None
    z: float | None
    p_z: float | None
    odds_ratio: float | None
    p_fisher: float | None
    method: str = "cluster bootstrap over traces (percentile)"
    bootstrap_low: float | None = None
    bootstrap_high: float | None = None

    @property
    def significant(self) -> bool | None:
        """Whether the interval excludes 0 (None without an interval)."""
        if self.ci_low is None or self.ci_high is None:
            return None
        return self.ci_low > 0 or self.ci_high < 0


@dataclass(frozen=True)
class Ordering:
    """The conditions of one evaluator ranked from lowest to highest error rate."""

    evaluator: str
    evaluator_kind: str
    ranking: tuple[str, ...]
    rates: dict[str, float]
    differences: tuple[ConditionDifference, ...]


@dataclass(frozen=True)
class OrderingAgreement:
    """Whether evaluators ``a`` and ``b`` order their common conditions the same way."""

    a: str
    b: str
    conditions: tuple[str, ...]
    kendall_tau: float | None
    same_ordering: bool | None
    p_same_ordering: float | None
    n_resamples: int


def two_proportion_z(
    count_a: int, nobs_a: int, count_b: int, nobs_b: int
) -> tuple[float | None, float | None]:
    """Pooled two-proportion z test, two-sided; ``(None, None)`` when undefined.

    Examples
    --------
    >>> z, p = two_proportion_z(30, 100, 50, 100)
    >>> round(z, 4), round(p, 4)
    (-2.8868, 0.0039)
    """
    if nobs_a <= 0 or nobs_b <= 0:
        return None, None
    pooled = (count_a + count_b) / (nobs_a + nobs_b)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / nobs_a + 1.0 / nobs_b))
    if se == 0.0:
        return None, None
    z = (count_a / nobs_a - count_b / nobs_b) / se
    return z, float(2.0 * stats.norm.sf(abs(z)))


def _ranking(rates: dict[str, float]) -> tuple[str, ...]:
    # Ties keep condition-name order so the ranking is deterministic.
    return tuple(sorted(rates, key=lambda c: (rates[c], c)))


def orderings(result: ErrorRates, *, exact_tests: bool = True) -> list[Ordering]:
    """Rank conditions per evaluator, with every pairwise difference, interval and tests.

    Parameters
    ----------
    result : ErrorRates
        From :func:`auditapp.agreement.rates.error_rates`.
    exact_tests : bool, keyword-only
        Compute Fisher's exact test (``p_fisher``, ``odds_ratio``); False leaves them None
        (the controls, which do not show them, save ~20 % of their time).

    Returns
    -------
    list of Ordering
        One per evaluator (pooled kinds included) with a defined rate in at least one
        condition. Differences are ``a − b`` for conditions in name order.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from auditapp.agreement.rates import error_rates
    >>> labels = pd.DataFrame({"step_id": [f"s{i}" for i in range(6)],
    ...     "trace_id": ["t1", "t1", "t2", "t2", "t3", "t3"], "question_id": "q",
    ...     "condition": ["A", "A", "B", "B", "C", "C"], "evaluator": "j",
    ...     "evaluator_kind": "judge",
    ...     "verdict": ["error", "error", "correct", "correct", "error", "correct"]})
    >>> rates = error_rates(labels, rng=np.random.default_rng(0), resamples=10)
    >>> orderings(rates)[0].ranking
    ('B', 'C', 'A')
    """
    level = result.confidence_level
    alpha = 1.0 - level
    out: list[Ordering] = []
    for evaluator, kind, _pooled in result.evaluators():
        rows = {
            r.condition: r for r in result.rows if r.evaluator == evaluator and r.rate is not None
        }
        if not rows:
            continue
        rates = {c: r.rate for c, r in rows.items() if r.rate is not None}
        differences = []
        for ca, cb in itertools.combinations(sorted(rows), 2):
            ra, rb = rows[ca], rows[cb]
            delta = result.replicates[(evaluator, ca)] - result.replicates[(evaluator, cb)]
            delta = delta[np.isfinite(delta)]
            if delta.size:
                low, high = (float(q) for q in np.quantile(delta, [alpha / 2, 1 - alpha / 2]))
            else:
                low = high = None
            boot_low, boot_high, method = low, high, METHOD_BOOTSTRAP
            small = METHOD_EFFECTIVE_WILSON in (ra.method, rb.method)
            if small and None not in (ra.ci_low, ra.ci_high, rb.ci_low, rb.ci_high):
                # A small arm: the percentile bootstrap of the difference is too narrow too.
                low, high = newcombe_difference_interval(
                    rates[ca], (ra.ci_low, ra.ci_high), rates[cb], (rb.ci_low, rb.ci_high)
                )
                method = METHOD_NEWCOMBE
            z, p_z = two_proportion_z(ra.numerator, ra.denominator, rb.numerator, rb.denominator)
            table = [
                [ra.numerator, ra.denominator - ra.numerator],
                [rb.numerator, rb.denominator - rb.numerator],
            ]
            odds_ratio, p_fisher = stats.fisher_exact(table) if exact_tests else (None, None)
            differences.append(
                ConditionDifference(
                    condition_a=ca,
                    condition_b=cb,
                    difference=float(rates[ca] - rates[cb]),
                    ci_low=low,
                    ci_high=high,
                    z=z,
                    p_z=p_z,
                    odds_ratio=(
                        float(odds_ratio)
                        if odds_ratio is not None and np.isfinite(odds_ratio)
                        else None
                    ),
                    p_fisher=float(p_fisher) if p_fisher is not None else None,
                    method=method,
                    bootstrap_low=boot_low,
                    bootstrap_high=boot_high,
                )
            )
        out.append(Ordering(evaluator, kind, _ranking(rates), rates, tuple(differences)))
    return out


def _pair_signs(rates: np.ndarray) -> np.ndarray:
    """Signs of all pairwise differences along the last axis (i < j)."""
    i, j = np.triu_indices(rates.shape[-1], k=1)
    return np.sign(rates[..., i] - rates[..., j])


def ordering_agreement(result: ErrorRates, a: str, b: str) -> OrderingAgreement:
    """Compare the orderings of evaluators ``a`` and ``b`` over their common conditions.

    Parameters
    ----------
    result : ErrorRates
        From :func:`auditapp.agreement.rates.error_rates`; the replicates of one condition
        share trace draws, which makes ``p_same_ordering`` a joint bootstrap.
    a, b : str
        Evaluator names (a pooled kind such as ``"expert"`` counts as an evaluator).

    Returns
    -------
    OrderingAgreement
        ``kendall_tau`` (tau-b), ``same_ordering`` and ``p_same_ordering`` are None when
        fewer than two common conditions have rates for both.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from auditapp.agreement.rates import error_rates
    >>> rows = []
    >>> for cond, errs in [("A", 1), ("B", 3)]:
    ...     for t in range(4):
    ...         for s in range(4):
    ...             for ev, kind in [("judge", "judge"), ("dr", "expert")]:
    ...                 rows.append({"step_id": f"{cond}{t}{s}", "trace_id": f"{cond}{t}",
    ...                     "question_id": "q", "condition": cond, "evaluator": ev,
    ...                     "evaluator_kind": kind,
    ...                     "verdict": "error" if s < errs else "correct"})
    >>> rates = error_rates(pd.DataFrame(rows), rng=np.random.default_rng(0), resamples=100)
    >>> agreement = ordering_agreement(rates, "judge", "dr")
    >>> agreement.kendall_tau, agreement.same_ordering, agreement.p_same_ordering
    (1.0, True, 1.0)
    """
    rates_a = {r.condition: r.rate for r in result.rows if r.evaluator == a}
    rates_b = {r.condition: r.rate for r in result.rows if r.evaluator == b}
    if not rates_a:
        raise ValueError(f"evaluator {a!r} has no error rates")
    if not rates_b:
        raise ValueError(f"evaluator {b!r} has no error rates")
    common = tuple(
        sorted(c for c in rates_a if rates_a[c] is not None and rates_b.get(c) is not None)
    )
    if len(common) < 2:
        return OrderingAgreement(a, b, common, None, None, None, 0)
    point_a = np.array([rates_a[c] for c in common])
    point_b = np.array([rates_b[c] for c in common])
    tau = stats.kendalltau(point_a, point_b, variant="b").statistic
    same = bool(np.all(_pair_signs(point_a) == _pair_signs(point_b)))

    boot_a = np.column_stack([result.replicates[(a, c)] for c in common])
    boot_b = np.column_stack([result.replicates[(b, c)] for c in common])
    valid = np.all(np.isfinite(boot_a), axis=1) & np.all(np.isfinite(boot_b), axis=1)
    agree = np.all(_pair_signs(boot_a[valid]) == _pair_signs(boot_b[valid]), axis=1)
    n_valid = int(valid.sum())
    return OrderingAgreement(
        a=a,
        b=b,
        conditions=common,
        kendall_tau=float(tau) if np.isfinite(tau) else None,
        same_ordering=same,
        p_same_ordering=float(agree.mean()) if n_valid else None,
        n_resamples=n_valid,
    )
