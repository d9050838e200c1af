"""Step error rates per evaluator × condition with cluster-bootstrap and Wilson intervals.

Error rate = errors / (steps labelled − abstentions) under the default abstain rule
``"exclude"``; ``"error"`` counts abstentions as errors and ``"correct"`` as correct (both over
all labelled steps). The two alternatives are always reported beside the rate as a
sensitivity check.

Steps of one trace are not independent, so the interval is a percentile **cluster bootstrap
over traces**, resampled separately within each condition (traces are nested in conditions).
One set of trace draws per condition is shared by every evaluator, so bootstrap replicates
of two evaluators are paired: the joint distribution of their orderings is meaningful
(:mod:`auditapp.agreement.orderings`). The Wilson interval is shown beside it as the naive
interval that treats steps as independent.

Speed: the labels are aggregated to per-trace (numerator, denominator) counts first; a block
of resamples is a (resamples × traces) matrix of draw counts built with ``np.bincount``, and
every evaluator's bootstrap totals come from one matrix product.

Examples
--------
>>> import numpy as np, pandas as pd
>>> labels = pd.DataFrame({
...     "step_id": [f"s{i}" for i in range(8)],
...     "trace_id": ["t1", "t1", "t2", "t2", "t3", "t3", "t4", "t4"],
...     "question_id": "q1", "condition": ["A"] * 4 + ["B"] * 4,
...     "evaluator": "judge-1", "evaluator_kind": "judge",
...     "verdict": ["error", "correct", "correct", "abstain",
...                 "error", "error", "correct", "error"]})
>>> result = error_rates(labels, rng=np.random.default_rng(0), resamples=200)
>>> [(r.condition, r.n, r.n_abstain, r.n_error, round(r.rate, 3)) for r in result.rows]
[('A', 4, 1, 1, 0.333), ('B', 4, 0, 3, 0.75)]
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from auditapp.agreement.formats import labels_validate

__all__ = [
    "AbstainRule",
    "ErrorRate",
    "ErrorRates",
    "TraceDraws",
    "bootstrap_totals",
    "cluster_bootstrap_counts",
    "effective_wilson_interval",
    "error_rates",
    "newcombe_difference_interval",
    "wilson_interval",
]

AbstainRule = Literal["exclude", "error", "correct"]
ABSTAIN_RULES: tuple[str, ...] = ("exclude", "error", "correct")

# Below this many traces in a condition (or when the bootstrap degenerates) the percentile
# cluster bootstrap under-covers badly (coverage 0.5 at 5 steps, 0.82 at 20 steps in the
# simulation of tests/agreement/test_small_samples.py); the interval is then Wilson's at the
# effective sample size (see :func:`effective_wilson_interval`), which covers 0.94–0.96.
SMALL_SAMPLE_TRACES = 50
METHOD_BOOTSTRAP = "cluster bootstrap over traces (percentile)"
METHOD_EFFECTIVE_WILSON = "Wilson at the effective sample size (small sample)"

# A block of resamples is a float64 (block × traces) matrix; 2**23 cells = 64 MiB keeps the
# peak (draw indices + counts + floats ≈ 3 copies) near 200 MiB for any audit size.
_BLOCK_CELLS = 2**23


@dataclass(frozen=True)
class ErrorRate:
    """The error rate of one evaluator (or a pooled evaluator kind) in one condition."""

    evaluator: str
    evaluator_kind: str
    condition: str
    n: int
    n_abstain: int
    n_error: int
    rate: float | None
    ci_low: float | None
    ci_high: float | None
    wilson_low: float | None
    wilson_high: float | None
    abstain_rate: float | None
    rate_abstain_as_error: float | None
    rate_abstain_as_correct: float | None
    n_traces: int
    pooled: bool
    numerator: int
    denominator: int
    method: str = "cluster bootstrap over traces (percentile)"
    # The raw bootstrap percentiles (``ci_low/ci_high`` may be the small-sample fallback).
    bootstrap_low: float | None = None
    bootstrap_high: float | None = None
    design_effect: float | None = None
    n_effective: float | None = None


@dataclass(frozen=True)
class ErrorRates:
    """All error rates of an audit and their paired bootstrap replicates.

    Attributes
    ----------
    rows : tuple of ErrorRate
        One per (evaluator, condition) with labels; pooled kinds have ``pooled=True``.
    replicates : dict
        ``(evaluator, condition) -> ndarray`` of shape ``(resamples,)``. Replicates of the
        same condition share trace draws across evaluators (index ``b`` is the same resample);
        NaN where a resample drew no countable step for that evaluator.
    abstain : str
        The abstain rule used for ``rate``.
    resamples, confidence_level : int, float
        The bootstrap settings.
    """

    rows: tuple[ErrorRate, ...]
    replicates: dict[tuple[str, str], np.ndarray] = field(repr=False)
    abstain: str
    resamples: int
    confidence_level: float

    def row(self, evaluator: str, condition: str) -> ErrorRate | None:
        """The row of ``evaluator`` in ``condition``, or None."""
        for r in self.rows:
            if r.evaluator == evaluator and r.condition == condition:
                return r
        return None

    def evaluators(self) -> list[tuple[str, str, bool]]:
        """``(evaluator, evaluator_kind, pooled)`` in row order, each once."""
        seen: dict[str, tuple[str, str, bool]] = {}
        for r in self.rows:
            seen.setdefault(r.evaluator, (r.evaluator, r.evaluator_kind, r.pooled))
        return list(seen.values())


def wilson_interval(
    count: int | np.ndarray,
    nobs: int | np.ndarray,
    *,
    confidence_level: float = 0.95,
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson (1927) score interval for a binomial proportion, without continuity correction.

    Parameters
    ----------
    count, nobs : int or array_like
        Successes and trials; where ``nobs`` is 0 both bounds are NaN.
    confidence_level : float, keyword-only
        Two-sided coverage, in (0, 1).

    Returns
    -------
    (low, high) : tuple of ndarray

    Examples
    --------
    Newcombe (1998), Stat Med 17:857, Table I, method 3:

    >>> low, high = wilson_interval(81, 263)
    >>> round(float(low), 4), round(float(high), 4)
    (0.2553, 0.3662)
    >>> [round(float(b), 4) for b in wilson_interval(0, 20)]
    [0.0, 0.1611]
    """
    if not 0.0 < confidence_level < 1.0:
        raise ValueError(f"confidence_level must lie in (0, 1), got {confidence_level!r}")
    x = np.asarray(count, dtype=float)
    n = np.asarray(nobs, dtype=float)
    if np.any(x < 0) or np.any(x > n):
        raise ValueError("count must lie between 0 and nobs")
    z = stats.norm.ppf(0.5 + confidence_level / 2.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = x / n
        denom = 1.0 + z**2 / n
        centre = (p + z**2 / (2.0 * n)) / denom
        half = z * np.sqrt(p * (1.0 - p) / n + z**2 / (4.0 * n**2)) / denom
        # Exactly 0 / 1 at the edges (the formula leaves rounding dust there).
        low = np.where(n > 0, np.where(x <= 0, 0.0, np.clip(centre - half, 0.0, 1.0)), np.nan)
        high = np.where(n > 0, np.where(x >= n, 1.0, np.clip(centre + half, 0.0, 1.0)), np.nan)
    return low, high


def effective_wilson_interval(
    count: float,
    nobs: float,
    *,
    n_clusters: int,
    bootstrap_variance: float | None,
    confidence_level: float = 0.95,
) -> tuple[float, float, float, float]:
    """Wilson interval at the effective sample size ``nobs / design effect``.

    The design effect is the cluster-bootstrap variance of the proportion, with the
    small-cluster correction k/(k − 1) for k clusters, over the binomial variance p(1 − p)/n,
    and at least 1. When the proportion is 0 or 1 the bootstrap variance is 0 and says
    nothing, so the design effect is the largest one clusters of this size allow, n / k (as
    if every step of a trace had the same verdict): 0 errors in 6 steps of 2 traces gives
    the interval of 0 errors in 2 independent steps, not 0 %–0 %.

    Returns
    -------
    (low, high, design_effect, n_effective) : tuple of float

    Examples
    --------
    >>> low, high, deff, n_eff = effective_wilson_interval(
    ...     0, 6, n_clusters=2, bootstrap_variance=0.0)
    >>> round(low, 3), round(high, 3), deff, n_eff
    (0.0, 0.658, 3.0, 2.0)
    """
    if nobs <= 0:
        raise ValueError(f"nobs must be positive, got {nobs!r}")
    p = count / nobs
    if 0.0 < p < 1.0 and n_clusters > 1:
        variance = bootstrap_variance or 0.0
        if n_clusters > 1:
            variance *= n_clusters / (n_clusters - 1)
        design_effect = max(1.0, variance / (p * (1.0 - p) / nobs))
    else:
        design_effect = max(1.0, nobs / max(n_clusters, 1))
    n_effective = nobs / design_effect
    low, high = wilson_interval(p * n_effective, n_effective, confidence_level=confidence_level)
    return float(low), float(high), float(design_effect), float(n_effective)


def newcombe_difference_interval(
    rate_a: float,
    interval_a: tuple[float, float],
    rate_b: float,
    interval_b: tuple[float, float],
) -> tuple[float, float]:
    """Newcombe's (1998, method 10) hybrid score interval for ``rate_a − rate_b``.

    Built from each arm's own interval (here the Wilson interval at the effective sample
    size), so a small arm's honest width carries into the difference; bounds lie in
    [−1, 1].

    Examples
    --------
    Newcombe (1998), Stat Med 17:873, Table II, example (a): 56/70 − 48/80:

    >>> a = [float(v) for v in wilson_interval(56, 70)]
    >>> b = [float(v) for v in wilson_interval(48, 80)]
    >>> [round(v, 4) for v in newcombe_difference_interval(0.8, a, 0.6, b)]
    [0.0524, 0.3339]
    """
    low_a, high_a = interval_a
    low_b, high_b = interval_b
    difference = rate_a - rate_b
    low = difference - np.sqrt((rate_a - low_a) ** 2 + (high_b - rate_b) ** 2)
    high = difference + np.sqrt((high_a - rate_a) ** 2 + (rate_b - low_b) ** 2)
    return float(max(-1.0, low)), float(min(1.0, high))


def cluster_bootstrap_counts(
    n_clusters: int, *, resamples: int, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """Yield blocks of cluster-bootstrap draw counts, ``(block, n_clusters)`` float64.

    Row ``b`` of a block says how often each cluster was drawn in one resample of
    ``n_clusters`` clusters with replacement (the classical nonparametric bootstrap). Blocks
    keep memory bounded; together they hold ``resamples`` rows.

    Examples
    --------
    >>> blocks = list(cluster_bootstrap_counts(4, resamples=3, rng=np.random.default_rng(1)))
    >>> counts = np.vstack(blocks)
    >>> counts.shape, counts.sum(axis=1).tolist()
    ((3, 4), [4.0, 4.0, 4.0])
    """
    if n_clusters < 1:
        raise ValueError(f"n_clusters must be at least 1, got {n_clusters}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    block = max(1, min(resamples, _BLOCK_CELLS // n_clusters))
    done = 0
    while done < resamples:
        size = min(block, resamples - done)
        draws = rng.integers(0, n_clusters, size=(size, n_clusters))
        # Offset each resample's draws so one bincount counts every row at once.
        draws += (np.arange(size) * n_clusters)[:, None]
        counts = np.bincount(draws.ravel(), minlength=size * n_clusters)
        del draws
        yield counts.reshape(size, n_clusters).astype(np.float64)
        done += size


def bootstrap_totals(
    per_cluster: np.ndarray, *, resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """Column totals of ``per_cluster`` over cluster-bootstrap resamples.

    Parameters
    ----------
    per_cluster : ndarray, shape (clusters, columns)
        Per-cluster sums (e.g. errors and non-abstained steps of each evaluator in a trace).
    resamples : int, keyword-only
    rng : numpy.random.Generator, keyword-only

    Returns
    -------
    ndarray, shape (resamples, columns)
        Row ``b`` is the column sums over the clusters drawn in resample ``b``; every column
        sees the same draws, so replicates of different columns are paired.

    Notes
    -----
    Clusters with identical rows are interchangeable, so when there are few distinct rows
    (e.g. traces of ten steps have few (errors, steps) patterns) the draw counts per
    distinct row are taken from Multinomial(clusters, multiplicity / clusters) — the same
    distribution as drawing clusters, at a cost that grows with distinct rows, not clusters.

    Examples
    --------
    >>> per_cluster = np.array([[1.0, 2.0], [0.0, 2.0], [1.0, 2.0]])
    >>> totals = bootstrap_totals(per_cluster, resamples=4, rng=np.random.default_rng(0))
    >>> totals.shape, totals[:, 1].tolist()
    ((4, 2), [6.0, 6.0, 6.0, 6.0])
    """
    n_clusters = per_cluster.shape[0]
    patterns, multiplicity = np.unique(per_cluster, axis=0, return_counts=True)
    totals = np.empty((resamples, per_cluster.shape[1]))
    start = 0
    # Multinomial over patterns costs ~one binomial draw per pattern; drawing cluster indices
    # costs ~one draw + one bincount slot per cluster (measured: 1 s per 2000 × 33k).
    if patterns.shape[0] * 4 < n_clusters:
        probabilities = multiplicity / n_clusters
        block = max(1, min(resamples, _BLOCK_CELLS // patterns.shape[0]))
        while start < resamples:
            size = min(block, resamples - start)
            counts = rng.multinomial(n_clusters, probabilities, size=size).astype(np.float64)
            totals[start : start + size] = counts @ patterns
            start += size
        return totals
    for counts in cluster_bootstrap_counts(n_clusters, resamples=resamples, rng=rng):
        totals[start : start + counts.shape[0]] = counts @ per_cluster
        start += counts.shape[0]
    return totals


@dataclass(frozen=True)
class TraceDraws:
    """Cluster-bootstrap draw counts drawn once per condition and shared by many analyses.

    ``counts[condition]`` is a ``(resamples, traces)`` matrix: row ``b`` says how often each
    of the condition's traces (``traces[condition]``, the columns) was drawn in resample
    ``b``. Every subset of the labels — each level of each control — takes its bootstrap
    totals from the same draws as one matrix product, so a control costs a product, not a
    new bootstrap. A subset's traces are resampled as part of their whole condition (a
    level's number of traces varies between resamples, as it would between samples of the
    condition).
    """

    resamples: int
    traces: dict[str, pd.Index]
    # float32 holds the small draw counts exactly; products stay exact below 2**24.
    counts: dict[str, np.ndarray] = field(repr=False)
    max_count: dict[str, float] = field(repr=False)

    @classmethod
    def draw(cls, labels: pd.DataFrame, *, resamples: int, rng: np.random.Generator) -> TraceDraws:
        """Draw the counts for every condition of ``labels`` (conditions and traces in name
        order, so the draws depend on the data, not on row order)."""
        pairs = labels[["condition", "trace_id"]].drop_duplicates()
        traces: dict[str, pd.Index] = {}
        counts: dict[str, np.ndarray] = {}
        max_count: dict[str, float] = {}
        for condition, part in pairs.groupby("condition", sort=True, observed=True):
            ids = pd.Index(sorted(part["trace_id"].astype(str).unique()), dtype=object)
            blocks = cluster_bootstrap_counts(len(ids), resamples=resamples, rng=rng)
            matrix = np.vstack([b.astype(np.float32) for b in blocks])
            traces[str(condition)] = ids
            counts[str(condition)] = matrix
            max_count[str(condition)] = float(matrix.max())
        return cls(resamples, traces, counts, max_count)

    def totals(self, condition: str, trace_ids: Any, per_cluster: np.ndarray) -> np.ndarray:
        """Bootstrap column totals of ``per_cluster`` (rows = ``trace_ids`` of ``condition``)."""
        columns = self.traces[condition].get_indexer(pd.Index(trace_ids, dtype=object))
        if (columns < 0).any():
            raise ValueError(f"traces of condition {condition!r} that were not drawn")
        counts = self.counts[condition]
        # Scattered into all of the condition's traces (zeros elsewhere) rather than taking
        # the columns of the counts: no copy of the draws per subset.
        full = np.zeros((counts.shape[1], per_cluster.shape[1]), dtype=np.float64)
        full[columns] = per_cluster
        if self.max_count[condition] * float(np.abs(full).sum(axis=0).max(initial=0)) < 2**24:
            # Integer sums below 2**24 are exact in float32.
            return (counts @ full.astype(np.float32)).astype(np.float64)
        totals = np.empty((self.resamples, full.shape[1]))
        block = max(1, _BLOCK_CELLS // max(1, counts.shape[1]))
        for start in range(0, self.resamples, block):
            rows = counts[start : start + block].astype(np.float64)
            totals[start : start + rows.shape[0]] = rows @ full
        return totals


def _percentile(replicates: np.ndarray, confidence_level: float) -> tuple[float, float] | None:
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:
        return None
    alpha = 1.0 - confidence_level
    low, high = np.quantile(finite, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den > 0 else None


def error_rates(
    labels: pd.DataFrame,
    *,
    rng: np.random.Generator,
    resamples: int = 2000,
    confidence_level: float = 0.95,
    abstain: AbstainRule = "exclude",
    validate: bool = True,
    draws: TraceDraws | None = None,
) -> ErrorRates:
    """Error rate per evaluator × condition with cluster-bootstrap and Wilson intervals.

    Parameters
    ----------
    labels : pandas.DataFrame
        The labels long format (:data:`auditapp.agreement.formats.LABEL_COLUMNS`).
    rng : numpy.random.Generator, keyword-only
        The only source of randomness.
    resamples : int, keyword-only
        Bootstrap resamples of traces, per condition (default 2000).
    confidence_level : float, keyword-only
        Two-sided level of both intervals (default 0.95).
    abstain : {"exclude", "error", "correct"}, keyword-only
        How ``rate`` treats abstentions (default ``"exclude"``: errors / non-abstained).
    validate : bool, keyword-only
        Skip :func:`~auditapp.agreement.formats.labels_validate` when the caller already did.
    draws : TraceDraws, optional, keyword-only
        Take the bootstrap from these shared draws (``resamples`` is then theirs) instead
        of drawing from ``rng``; the labels' traces must be among the drawn ones.

    Returns
    -------
    ErrorRates
        Rows for each evaluator, then a pooled row per evaluator kind that has several
        evaluators (``evaluator`` is the kind, ``pooled=True``), each per condition.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> labels = pd.DataFrame({"step_id": ["s1", "s2", "s1", "s2"],
    ...     "trace_id": "t1", "question_id": "q", "condition": "A",
    ...     "evaluator": ["dr-a", "dr-a", "dr-b", "dr-b"], "evaluator_kind": "expert",
    ...     "verdict": ["error", "correct", "error", "abstain"]})
    >>> result = error_rates(labels, rng=np.random.default_rng(0), resamples=50)
    >>> [(r.evaluator, r.n, r.rate, r.pooled) for r in result.rows]
    [('dr-a', 2, 0.5, False), ('dr-b', 2, 1.0, False), ('expert', 4, 0.6666666666666666, True)]
    """
    if abstain not in ABSTAIN_RULES:
        raise ValueError(f"abstain must be one of {ABSTAIN_RULES}, got {abstain!r}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    if not 0.0 < confidence_level < 1.0:
        raise ValueError(f"confidence_level must lie in (0, 1), got {confidence_level!r}")
    if draws is not None:
        resamples = draws.resamples
    frame = labels_validate(labels) if validate else labels
    if frame.empty:
        return ErrorRates((), {}, abstain, resamples, confidence_level)

    verdict = frame["verdict"]
    is_error = (verdict == "error").to_numpy(dtype=np.float64)
    is_abstain = (verdict == "abstain").to_numpy(dtype=np.float64)
    num = is_error + is_abstain if abstain == "error" else is_error
    den = np.ones_like(num) if abstain != "exclude" else 1.0 - is_abstain

    trace_code, trace_ids = pd.factorize(frame["trace_id"], sort=False)
    cond_code, conditions = pd.factorize(frame["condition"], sort=True)
    eval_code, evaluators = pd.factorize(frame["evaluator"], sort=True)
    kind_of_eval = frame.groupby("evaluator", sort=True, observed=True)["evaluator_kind"].first()
    kind_of_eval = kind_of_eval.reindex(evaluators).to_numpy()
    n_traces = int(trace_code.max()) + 1
    cond_of_trace = np.empty(n_traces, dtype=np.int64)
    cond_of_trace[trace_code] = cond_code

    # Series = individual evaluators, then each kind with several evaluators pooled.
    kind_order = {"reference": 0, "expert": 1, "judge": 2}
    series: list[tuple[str, str, bool, np.ndarray]] = []
    for e, name in sorted(
        enumerate(evaluators), key=lambda x: (kind_order.get(kind_of_eval[x[0]], 9), x[1])
    ):
        series.append((str(name), str(kind_of_eval[e]), False, np.array([e])))
    for kind in sorted(set(kind_of_eval), key=lambda k: kind_order.get(k, 9)):
        members = np.flatnonzero(kind_of_eval == kind)
        if members.size > 1:
            series.append((str(kind), str(kind), True, members))

    # Per (evaluator, trace) sums: one bincount per quantity over the combined key.
    key = eval_code.astype(np.int64) * n_traces + trace_code
    size = len(evaluators) * n_traces
    per = {
        name: np.bincount(key, weights=w, minlength=size).reshape(len(evaluators), n_traces)
        for name, w in (
            ("num", num),
            ("den", den),
            ("n", np.ones_like(num)),
            ("err", is_error),
            ("abs", is_abstain),
        )
    }

    rows: list[ErrorRate] = []
    replicates: dict[tuple[str, str], np.ndarray] = {}
    for c, condition in enumerate(conditions):
        traces_c = np.flatnonzero(cond_of_trace == c)
        # (traces × series) matrices of numerators and denominators for this condition.
        num_c = np.column_stack([per["num"][m][:, traces_c].sum(axis=0) for *_, m in series])
        den_c = np.column_stack([per["den"][m][:, traces_c].sum(axis=0) for *_, m in series])
        present = den_c.sum(axis=0) > 0
        per_trace = np.hstack([num_c, den_c])
        if draws is None:
            totals = bootstrap_totals(per_trace, resamples=resamples, rng=rng)
        else:
            totals = draws.totals(str(condition), trace_ids[traces_c].astype(str), per_trace)
        boot_num, boot_den = totals[:, : len(series)], totals[:, len(series) :]
        with np.errstate(invalid="ignore", divide="ignore"):
            boot = np.where(boot_den > 0, boot_num / boot_den, np.nan)

        for j, (name, kind, pooled, members) in enumerate(series):
            n = int(per["n"][members][:, traces_c].sum())
            if n == 0:
                continue
            n_err = int(per["err"][members][:, traces_c].sum())
            n_abs = int(per["abs"][members][:, traces_c].sum())
            numerator, denominator = float(num_c[:, j].sum()), float(den_c[:, j].sum())
            rate = _ratio(numerator, denominator)
            interval = _percentile(boot[:, j], confidence_level) if present[j] else None
            w_low, w_high = wilson_interval(
                numerator, denominator, confidence_level=confidence_level
            )
            n_traces_j = int(np.count_nonzero(den_c[:, j]))
            ci = interval
            method, design_effect, n_effective = METHOD_BOOTSTRAP, None, None
            if rate is not None and (
                interval is None
                or n_traces_j < SMALL_SAMPLE_TRACES
                or interval[0] == interval[1]
                or numerator in (0.0, denominator)
            ):
                finite = boot[:, j][np.isfinite(boot[:, j])]
                low, high, design_effect, n_effective = effective_wilson_interval(
                    numerator,
                    denominator,
                    n_clusters=n_traces_j,
                    bootstrap_variance=float(finite.var()) if finite.size > 1 else None,
                    confidence_level=confidence_level,
                )
                ci, method = (low, high), METHOD_EFFECTIVE_WILSON
            rows.append(
                ErrorRate(
                    evaluator=name,
                    evaluator_kind=kind,
                    condition=str(condition),
                    n=n,
                    n_abstain=n_abs,
                    n_error=n_err,
                    rate=rate,
                    ci_low=ci[0] if ci and rate is not None else None,
                    ci_high=ci[1] if ci and rate is not None else None,
                    wilson_low=float(w_low) if rate is not None else None,
                    wilson_high=float(w_high) if rate is not None else None,
                    abstain_rate=n_abs / n,
                    rate_abstain_as_error=(n_err + n_abs) / n,
                    rate_abstain_as_correct=n_err / n,
                    n_traces=int(np.count_nonzero(per["n"][members][:, traces_c].sum(axis=0))),
                    pooled=pooled,
                    numerator=int(numerator),
                    denominator=int(denominator),
                    method=method,
                    bootstrap_low=interval[0] if interval and rate is not None else None,
                    bootstrap_high=interval[1] if interval and rate is not None else None,
                    design_effect=design_effect,
                    n_effective=n_effective,
                )
            )
            replicates[(name, str(condition))] = boot[:, j].copy()

    order = {s[0]: i for i, s in enumerate(series)}
    rows.sort(key=lambda r: (order[r.evaluator], r.condition))
    return ErrorRates(tuple(rows), replicates, abstain, resamples, confidence_level)
