"""Likert ratings of whole traces, per trace type and item.

Reads the RATINGS long format: one row per (trace, rater, item) with columns ``trace_id,
trace_type, rater, item, value`` (numeric value; missing values are skipped; extra columns
ignored).

Examples
--------
>>> import numpy as np, pandas as pd
>>> ratings = pd.DataFrame({
...     "trace_id": ["t1", "t1", "t2", "t2", "t3", "t3", "t4", "t4"],
...     "trace_type": ["short"] * 4 + ["long"] * 4,
...     "rater": ["r1", "r2"] * 4,
...     "item": "interpretability",
...     "value": [4, 5, 4, 4, 2, 3, 1, 2]})
>>> summary = likert_summary(ratings)
>>> [(r["trace_type"], r["n"], r["mean"], r["median"]) for r in summary["rows"]]
[('long', 4, 2.0, 2.0), ('short', 4, 4.25, 4.0)]
>>> item = summary["items"][0]
>>> item["item"], item["kruskal_wallis"]["df"], round(item["kruskal_wallis"]["H"], 3)
('interpretability', 1, 5.671)
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from auditapp.agreement._validate import (
    plain,
    require_columns,
    require_confidence_level,
    require_no_duplicates,
    require_one_of,
)
from auditapp.agreement.coefficients import krippendorff_alpha

__all__ = ["RATING_COLUMNS", "likert_summary"]

RATING_COLUMNS: tuple[str, ...] = ("trace_id", "trace_type", "rater", "item", "value")
TestUnit = Literal["rating", "trace"]


def _clean(ratings: pd.DataFrame) -> pd.DataFrame:
    require_columns(ratings, RATING_COLUMNS, name="ratings")
    frame = ratings.loc[:, list(RATING_COLUMNS)]
    for column in RATING_COLUMNS[:4]:
        missing = frame[column].isna().to_numpy()
        if missing.any():
            row = int(np.flatnonzero(missing)[0])
            raise ValueError(f"ratings row {row}, column {column!r}: value is missing")
    numbers = pd.to_numeric(frame["value"], errors="coerce")
    bad = (numbers.isna() & frame["value"].notna()).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"ratings row {row}, column 'value': {plain(frame['value'].iloc[row])!r} is not a "
            "number"
        )
    frame = frame.assign(value=numbers.astype(float))
    frame = frame[frame["value"].notna()]
    require_no_duplicates(frame, ["trace_id", "rater", "item"], name="ratings")
    types_per_trace = frame.groupby("trace_id")["trace_type"].nunique()
    if (types_per_trace > 1).any():
        trace = types_per_trace.index[types_per_trace.to_numpy() > 1][0]
        raise ValueError(f"ratings: trace {plain(trace)!r} appears under two trace types")
    if frame.empty:
        raise ValueError("ratings has no values: column 'value' is empty or all missing")
    return frame


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _cluster_sum_variance(residuals: np.ndarray, clusters: pd.Series) -> tuple[float, int]:
    """Cluster-robust variance of a mean over one clustering, with the G/(G-1) correction."""
    codes, uniques = pd.factorize(clusters)
    groups = len(uniques)
    if groups < 2:
        return math.nan, groups
    sums = np.bincount(codes, weights=residuals, minlength=groups)
    n = residuals.size
    return groups / (groups - 1) * float(sums @ sums) / n**2, groups


def _two_way_cluster_interval(
    group: pd.DataFrame, *, confidence_level: float
) -> tuple[float | None, float | None]:
    """t interval of the mean rating, clustered on participants and on traces at once.

    Cameron, Gelbach & Miller (2011, J. Bus. Econ. Stat. 29:238) two-way cluster-robust
    variance: V = V_participants + V_traces - V_ratings, each a one-way cluster-robust
    variance with the G/(G-1) correction (statsmodels' ``cov_cluster_2groups`` for an
    intercept-only model gives the same). Ratings share a participant and a trace, so either
    clustering alone leaves the other correlation out, and the pigeonhole bootstrap that
    resamples both counts the rating-level noise twice (it covered ~98 % in our simulation;
    this covers 93-96 % from 8 to 100 participants, tests/agreement/test_coverage_likert.py).
    When V comes out negative (possible in tiny samples) the larger one-way variance is used.
    Degrees of freedom: the smaller number of clusters minus one. With one participant it is
    the one-way interval over traces; with fewer than two traces there is none.
    """
    values = group["value"].to_numpy(dtype=float)
    residuals = values - values.mean()
    v_traces, traces = _cluster_sum_variance(residuals, group["trace_id"])
    if traces < 2:
        return None, None
    n_raters = group["rater"].nunique()
    if n_raters < 2:
        variance, clusters = v_traces, traces
    else:
        v_raters, _ = _cluster_sum_variance(residuals, group["rater"])
        n = values.size
        v_ratings = float(residuals @ residuals) / n**2 * n / (n - 1) if n > 1 else 0.0
        variance = v_raters + v_traces - v_ratings
        if variance <= 0:
            variance = max(v_raters, v_traces)
        clusters = min(traces, n_raters)
    half = float(stats.t.ppf(0.5 + confidence_level / 2, clusters - 1)) * math.sqrt(variance)
    mean = float(values.mean())
    return mean - half, mean + half


def _friedman(group: pd.DataFrame) -> dict[str, Any]:
    """Friedman's test across trace types with participants as blocks.

    Each participant's value per trace type is the mean of their ratings of that type's
    traces; participants who rated every type enter (a complete block design, as a Latin
    square gives). ``None`` values when fewer than two types or two complete participants.
    """
    table = group.pivot_table(index="rater", columns="trace_type", values="value", aggfunc="mean")
    complete = table.dropna()
    out: dict[str, Any] = {
        "statistic": None,
        "p": None,
        "df": max(table.shape[1] - 1, 0),
        "n_raters": len(complete),
        "n_raters_incomplete": int(len(table) - len(complete)),
    }
    if complete.shape[1] < 2 or complete.shape[0] < 2:
        return out
    if np.all(np.ptp(complete.to_numpy(), axis=1) == 0):
        # Every participant gave every type the same value: no ranks to compare (scipy
        # would divide by a zero tie correction).
        return out
    if complete.shape[1] == 2:
        # scipy's friedmanchisquare needs three groups; with two, Friedman's statistic is
        # the same chi-square on one degree of freedom, computed from the ranks directly.
        ranks = np.apply_along_axis(stats.rankdata, 1, complete.to_numpy())
        n, k = ranks.shape
        sums = ranks.sum(axis=0)
        ties = sum(
            np.sum(counts**3 - counts)
            for counts in (np.unique(row, return_counts=True)[1] for row in complete.to_numpy())
        )
        denominator = n * k * (k + 1) / 12 - ties / (12 * (k - 1))
        if denominator <= 0:
            return out
        statistic = float(np.sum((sums - n * (k + 1) / 2) ** 2) / denominator)
        out.update(statistic=statistic, p=float(stats.chi2.sf(statistic, k - 1)))
        return out
    result = stats.friedmanchisquare(*(complete[c].to_numpy() for c in complete.columns))
    out.update(statistic=_finite(result.statistic), p=_finite(result.pvalue))
    return out


def _item_tests(samples: dict[str, np.ndarray]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Kruskal-Wallis over the trace types and pairwise Mann-Whitney U with Holm's correction."""
    types = [t for t, values in samples.items() if len(values)]
    everything = np.concatenate([samples[t] for t in types]) if types else np.array([])
    kruskal: dict[str, Any] = {"H": None, "p": None, "df": max(len(types) - 1, 0)}
    if len(types) >= 2 and np.ptp(everything) > 0:
        result = stats.kruskal(*(samples[t] for t in types))
        kruskal.update(H=_finite(result.statistic), p=_finite(result.pvalue))
    pairs = []
    for a, b in combinations(types, 2):
        x, y = samples[a], samples[b]
        result = stats.mannwhitneyu(x, y, alternative="two-sided")
        pairs.append(
            {
                "a": a,
                "b": b,
                "n_a": len(x),
                "n_b": len(y),
                "U": float(result.statistic),
                "p": _finite(result.pvalue),
                "p_holm": None,
            }
        )
    tested = [row for row in pairs if row["p"] is not None]
    if tested:
        adjusted = multipletests([row["p"] for row in tested], method="holm")[1]
        for row, p in zip(tested, adjusted, strict=True):
            row["p_holm"] = float(p)
    return kruskal, pairs


def likert_summary(
    ratings: pd.DataFrame,
    *,
    confidence_level: float = 0.95,
    test_unit: TestUnit = "rating",
) -> dict[str, Any]:
    """Describe and compare Likert items across trace types.

    Parameters
    ----------
    ratings : pandas.DataFrame
        The ratings long format ``trace_id, trace_type, rater, item, value``; one row per
        (trace, rater, item), numeric values, missing values skipped.
    confidence_level : float
        Coverage of the interval for the mean.
    test_unit : {"rating", "trace"}
        What the rank tests compare: every rating (``"rating"``, the usual reading of such
        studies), or each trace's mean rating over its raters (``"trace"``, conservative when
        several raters rate the same trace, since their ratings are not independent).

    Returns
    -------
    dict
        ``rows``: one dict per (trace type, item), sorted, with ``trace_type``, ``item``,
        ``n`` (ratings), ``n_traces``, ``mean``, ``median``, ``ci_low``, ``ci_high`` (interval
        for the mean; ``None`` with fewer than two traces).

        ``items``: one dict per item with ``item``, ``n``, ``n_traces``, ``n_raters``,
        ``kruskal_wallis`` ``{H, p, df}`` across trace types (``None`` values when not
        computable, e.g. every rating equal), ``mann_whitney``: one dict per pair of trace
        types ``{a, b, n_a, n_b, U, p, p_holm}`` (``U`` is the statistic of ``a``), and
        ``krippendorff_alpha``: ordinal alpha across raters with the trace as the unit
        (``None`` when no trace has two ratings or all ratings agree on one value).

        ``methods``: the conventions above in words.

    Notes
    -----
    The interval for the mean is a t interval with a two-way cluster-robust variance over
    participants and traces within each trace type (``_two_way_cluster_interval``), because
    ratings by one participant, and ratings of one trace, are not independent. The median
    is reported without an interval. Kruskal-Wallis and Mann-Whitney U (two-sided) come from
    ``scipy.stats`` with their tie corrections; Mann-Whitney uses scipy's default method
    (exact for small samples without ties, otherwise the normal approximation). Holm's
    adjustment (``statsmodels.stats.multitest.multipletests``) runs over the pairs of one item.

    Raises
    ------
    ValueError
        On a missing column, a missing id, a non-numeric value, a repeated (trace, rater,
        item), a trace under two trace types, or bad options.
    """
    require_confidence_level(confidence_level)
    require_one_of(test_unit, ("rating", "trace"), name="test_unit")
    frame = _clean(ratings)

    rows = []
    for (trace_type, item), group in frame.groupby(["trace_type", "item"], sort=True):
        ci_low, ci_high = _two_way_cluster_interval(group, confidence_level=confidence_level)
        values = group["value"].to_numpy()
        rows.append(
            {
                "trace_type": plain(trace_type),
                "item": plain(item),
                "n": len(values),
                "n_traces": int(group["trace_id"].nunique()),
                "mean": float(values.mean()),
                "median": float(np.median(values)),
                "ci_low": ci_low,
                "ci_high": ci_high,
            }
        )

    items = []
    for item, group in frame.groupby("item", sort=True):
        tested = (
            group.groupby(["trace_type", "trace_id"], as_index=False)["value"].mean()
            if test_unit == "trace"
            else group
        )
        samples = {
            plain(t): g["value"].to_numpy() for t, g in tested.groupby("trace_type", sort=True)
        }
        kruskal, pairs = _item_tests(samples)
        friedman = _friedman(group)
        try:
            alpha = krippendorff_alpha(
                group, unit="trace_id", rater="rater", value="value", level="ordinal"
            )
        except ValueError:  # no trace rated twice
            alpha = math.nan
        items.append(
            {
                "item": plain(item),
                "n": len(group),
                "n_traces": int(group["trace_id"].nunique()),
                "n_raters": int(group["rater"].nunique()),
                "kruskal_wallis": kruskal,
                "friedman": friedman,
                "mann_whitney": pairs,
                "krippendorff_alpha": _finite(alpha),
            }
        )

    tested_text = "every rating" if test_unit == "rating" else "each trace's mean rating"
    return {
        "rows": rows,
        "items": items,
        "methods": {
            "interval": (
                f"{confidence_level:.0%} t interval of the mean within each trace type with a "
                "two-way cluster-robust variance, participants and traces (Cameron, Gelbach "
                "& Miller 2011: V = V_participants + V_traces - V_ratings; df = the smaller "
                "number of clusters - 1)"
            ),
            "within_subject": (
                "Friedman's test across trace types per item, participants as blocks (each "
                "participant's mean rating per trace type; participants who rated every type)"
            ),
            "tests": (
                "Kruskal-Wallis across trace types and two-sided Mann-Whitney U between each "
                f"pair (scipy.stats), on {tested_text}; pairwise p-values Holm-adjusted "
                "within the item"
            ),
            "reliability": "Krippendorff's alpha, ordinal, raters x traces, missing allowed",
        },
    }
