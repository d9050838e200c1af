"""Prediction-powered error rates: every judge verdict plus the expert-labelled subset.

Prediction-powered inference (Angelopoulos, Bates, Fannjiang, Jordan & Zrnic 2023, Science
382:669) for a mean, as in ``ppi_py.ppi_mean_ci`` with λ = 1 (no power tuning):

    θ̂ = mean(Ŷ over all N judged steps) + mean(w̃ · (Y − Ŷ) over the n labelled steps),

where Ŷ is the judge's prediction — its stated probability that the step is an error where it
has one (``judge_probability``: the share of its samples saying so, or its token probability),
else its 0/1 verdict — Y the expert's (the share of non-abstaining experts
who call the step an error), and w̃ = w · n / Σw with Horvitz–Thompson weights w = 1/π from
the recorded ``inclusion_probability`` π (or the ``weight`` column; uniform when neither is
given). The point estimate is ``ppi_py``'s. The variance has two parts, the imputed mean's
var(Ŷ)/N and the rectifier's Σ(w̃·(Δ − Δ̄_w))²/n² (the Hájek linearisation, because the
normalised weights vary with the sample); with equal weights this is exactly ``ppi_py``'s
formula (population variance, ``ddof=0``). By default both parts are computed
**cluster-robustly over traces** in one linearisation, Σ_g (imputed_g/N + rectifier_g/n)²,
which also keeps their covariance (the labelled steps sit inside the judged traces). The
interval is the normal (CLT) one; with few labelled disagreements (tens of expert labels per
condition) it runs a little narrow, see ``tests/agreement/test_coverage_simulation.py``.

The population of a judge in a condition is the steps it judged without abstaining; the
labelled subset is those with at least one non-abstaining expert (expert abstentions are
treated as missing at random). Conditions hold disjoint traces, so the variance of a
difference is the sum of the two variances.

Examples
--------
>>> import numpy as np
>>> est = ppi_mean([1, 0, 1], [1, 0, 0], [1, 0, 0, 1, 0, 0])
>>> round(est.estimate, 4)
0.6667
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from auditapp.agreement.formats import labels_validate
from auditapp.agreement.rates import SMALL_SAMPLE_TRACES, effective_wilson_interval

__all__ = ["PPIDifference", "PPIEstimate", "PPIRow", "ppi_error_rates", "ppi_mean"]


@dataclass(frozen=True)
class PPIEstimate:
    """A mean with its standard error and normal interval."""

    estimate: float | None
    se: float | None
    ci_low: float | None
    ci_high: float | None
    lam: float | None = None  # the λ of a prediction-powered estimate
    clipped: bool = False  # estimate or interval moved into the parameter's range
    raw_estimate: float | None = None  # before clipping; differences are taken from it
    method: str = "normal"  # or the small-sample rule's (see _small_sample)


@dataclass(frozen=True)
class PPIRow:
    """Error rate of one condition estimated three ways, for one judge."""

    judge: str
    condition: str
    n_judged: int
    n_labelled: int
    ppi: PPIEstimate
    judge_only: PPIEstimate
    expert_only: PPIEstimate
    ppi_plus_plus: PPIEstimate = PPIEstimate(None, None, None, None)
    # Expert labels the expert-only estimate would need for PPI++'s precision:
    # n_labelled · var(expert-only) / var(PPI++), at least n_labelled by construction.
    n_effective: float | None = None
    # Share of the judged steps whose prediction was the judge's stated probability of an
    # error (JudgeVerdict.error_probability) rather than its 0/1 verdict.
    prediction_probability_share: float = 0.0


@dataclass(frozen=True)
class PPIDifference:
    """``rate(condition_a) − rate(condition_b)`` for one judge, three ways."""

    judge: str
    condition_a: str
    condition_b: str
    ppi: PPIEstimate
    judge_only: PPIEstimate
    expert_only: PPIEstimate
    ppi_plus_plus: PPIEstimate = PPIEstimate(None, None, None, None)


def _z(confidence_level: float) -> float:
    if not 0.0 < confidence_level < 1.0:
        raise ValueError(f"confidence_level must lie in (0, 1), got {confidence_level!r}")
    return float(stats.norm.ppf(0.5 + confidence_level / 2.0))


def _estimate(value: float | None, var: float | None, z: float) -> PPIEstimate:
    if value is None or var is None or not np.isfinite(value) or not np.isfinite(var):
        return PPIEstimate(None, None, None, None)
    se = float(np.sqrt(max(var, 0.0)))
    return PPIEstimate(float(value), se, float(value - z * se), float(value + z * se))


def _mean_var(values: np.ndarray, clusters: np.ndarray | None) -> float:
    """Variance of the mean of ``values``, cluster-robust when ``clusters`` is given."""
    n = values.size
    centred = values - values.mean()
    if clusters is None:
        return float(np.sum(centred**2) / n**2)
    sums = np.bincount(_codes(clusters), weights=centred)
    return float(np.sum(sums**2) / n**2)


def _codes(clusters: np.ndarray) -> np.ndarray:
    """Dense integer codes 0..k-1 of cluster ids."""
    if np.issubdtype(clusters.dtype, np.integer):
        return np.unique(clusters, return_inverse=True)[1]
    return pd.factorize(clusters)[0]


def _variance_terms(
    y: np.ndarray,
    yhat: np.ndarray,
    all_arr: np.ndarray,
    w: np.ndarray,
    cl: np.ndarray | None,
    cl_all: np.ndarray | None,
) -> tuple[float, float, float]:
    """``(S_bb, S_bd, S_dd)`` with var(θ̂_λ) = S_bb + 2λ·S_bd + λ²·S_dd.

    θ̂_λ = λ·mean(Ŷ_all) + mean(w̃·(Y − λ·Ŷ)) is linear in λ, and so is its linearisation:
    per unit (or per trace) the influence is b + λ·d, with b = w̃(Y − Ȳ_w)/n (the expert-only
    Hájek mean's) and d = (Ŷ_all − Ŷ̄_all)/N − w̃(Ŷ − Ŷ̄_w)/n. Cluster-robust: b and d are
    summed per trace first. Without clusters the judged mean and the rectifier are treated
    as independent samples (ppi_py's formula).
    """
    n, big_n = y.size, all_arr.size
    b = w * (y - np.sum(w * y) / n) / n
    c = w * (yhat - np.sum(w * yhat) / n) / n
    a = (all_arr - all_arr.mean()) / big_n
    if cl is None or cl_all is None:
        return float(np.sum(b**2)), float(-np.sum(b * c)), float(np.sum(a**2) + np.sum(c**2))
    codes = pd.factorize(np.concatenate([cl_all, cl]))[0]
    k = int(codes.max()) + 1
    b_g = np.bincount(codes[big_n:], weights=b, minlength=k)
    d_g = np.bincount(codes[:big_n], weights=a, minlength=k) - np.bincount(
        codes[big_n:], weights=c, minlength=k
    )
    return float(np.sum(b_g**2)), float(np.sum(b_g * d_g)), float(np.sum(d_g**2))


def ppi_tuned_lambda(s_bb: float, s_bd: float, s_dd: float) -> float:
    """The λ in [0, 1] that minimises S_bb + 2λ·S_bd + λ²·S_dd (PPI++ power tuning).

    The variance is a parabola in λ, so the minimiser is −S_bd / S_dd clipped to [0, 1];
    λ = 0 is the expert-only estimate, so the tuned variance is never above expert-only's.

    >>> ppi_tuned_lambda(1.0, -0.4, 0.5), ppi_tuned_lambda(1.0, 0.2, 0.5)
    (0.8, 0.0)
    """
    if s_dd <= 0.0:
        return 0.0  # the judge adds no information: the expert-only estimate
    return float(min(1.0, max(0.0, -s_bd / s_dd)))


def ppi_mean(
    y: np.ndarray | list[float],
    yhat: np.ndarray | list[float],
    yhat_all: np.ndarray | list[float],
    *,
    weights: np.ndarray | list[float] | None = None,
    clusters: np.ndarray | list | None = None,
    clusters_all: np.ndarray | list | None = None,
    confidence_level: float = 0.95,
    lam: float | None = 1.0,
    bounds: tuple[float, float] | None = None,
) -> PPIEstimate:
    """Prediction-powered estimate of a mean, with a normal interval.

    Parameters
    ----------
    y, yhat : array_like, shape (n,)
        Gold labels and predictions on the labelled sample.
    yhat_all : array_like, shape (N,)
        Predictions on every unit of the population (labelled ones included).
    weights : array_like, shape (n,), optional, keyword-only
        Horvitz–Thompson weights 1/π of the labelled units; normalised to mean 1.
    clusters, clusters_all : array_like, optional, keyword-only
        Cluster ids (e.g. trace ids) for cluster-robust variances; give both or neither.
    confidence_level : float, keyword-only
    lam : float in [0, 1] or None, keyword-only
        Weight of the predictions: 1 is plain PPI (default), 0 the labelled sample alone;
        None chooses λ from the data to minimise the estimated variance (PPI++,
        Angelopoulos, Duchi & Zrnic 2023), with the same weights and clusters.
    bounds : (low, high), optional, keyword-only
        Clip the estimate and the interval to these bounds (e.g. (0, 1) for a proportion);
        ``clipped`` then says whether anything moved. The standard error is unclipped.

    Returns
    -------
    PPIEstimate
        With ``lam`` the λ used.

    Examples
    --------
    ``ppi_py.ppi_mean_pointestimate`` with ``lhat=1``: 0.3333 + 0.3333:

    >>> est = ppi_mean([1, 0, 1], [1, 0, 0], [1, 0, 0, 1, 0, 0])
    >>> round(est.estimate, 4), round(est.se, 4)
    (0.6667, 0.3333)
    """
    z = _z(confidence_level)
    y_arr = np.asarray(y, dtype=float)
    yhat_arr = np.asarray(yhat, dtype=float)
    all_arr = np.asarray(yhat_all, dtype=float)
    if y_arr.shape != yhat_arr.shape or y_arr.ndim != 1:
        raise ValueError(
            f"y and yhat must be 1-D and equally long, got {y_arr.shape}, {yhat_arr.shape}"
        )
    if all_arr.ndim != 1 or all_arr.size == 0:
        raise ValueError("yhat_all must be a non-empty 1-D array")
    if (clusters is None) != (clusters_all is None):
        raise ValueError("give both clusters and clusters_all, or neither")
    if lam is not None and not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must lie in [0, 1] or be None, got {lam!r}")
    n, big_n = y_arr.size, all_arr.size
    if n == 0:
        return PPIEstimate(None, None, None, None)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != (n,) or np.any(~np.isfinite(w)) or np.any(w <= 0):
        raise ValueError("weights must be positive, finite and one per labelled unit")
    w = w * n / w.sum()
    cl = None if clusters is None else np.asarray(clusters)
    cl_all = None if clusters_all is None else np.asarray(clusters_all)
    if cl is not None and cl.shape != (n,):
        raise ValueError("clusters must have one id per labelled unit")
    if cl_all is not None and cl_all.shape != (big_n,):
        raise ValueError("clusters_all must have one id per unit of yhat_all")
    # Hájek linearisation w̃·(Δ − Δ̄_w): the weights are normalised by their own sum, so they
    # vary with the sample; with equal weights this is ppi_py's rectifier deviation exactly.
    # Clustered, both means move with the same traces (the labelled steps sit inside them),
    # so the terms are summed per trace, which keeps the covariance that ppi_py's
    # independent-samples formula leaves out.
    s_bb, s_bd, s_dd = _variance_terms(y_arr, yhat_arr, all_arr, w, cl, cl_all)
    used = ppi_tuned_lambda(s_bb, s_bd, s_dd) if lam is None else float(lam)
    value = used * all_arr.mean() + float(np.mean(w * (y_arr - used * yhat_arr)))
    var = s_bb + 2.0 * used * s_bd + used**2 * s_dd
    return _bounded(_estimate(value, var, z), bounds, lam=used)


def _bounded(
    est: PPIEstimate, bounds: tuple[float, float] | None, *, lam: float | None = None
) -> PPIEstimate:
    """``est`` with its estimate and interval clipped to ``bounds`` (and λ recorded)."""
    if est.estimate is None or bounds is None:
        return dataclasses.replace(est, lam=lam)
    low, high = bounds
    clip = [min(high, max(low, v)) for v in (est.estimate, est.ci_low, est.ci_high)]
    moved = clip != [est.estimate, est.ci_low, est.ci_high]
    return PPIEstimate(
        clip[0], est.se, clip[1], clip[2], lam=lam, clipped=moved, raw_estimate=est.estimate
    )


def _weighted_mean(y: np.ndarray, w: np.ndarray, clusters: np.ndarray, z: float) -> PPIEstimate:
    """Hájek mean with a linearised cluster-robust variance."""
    if y.size == 0:
        return PPIEstimate(None, None, None, None)
    w = w * y.size / w.sum()
    value = float(np.sum(w * y) / y.size)
    sums = np.bincount(_codes(clusters), weights=w * (y - value))
    return _estimate(value, float(np.sum(sums**2) / y.size**2), z)


def _difference(a: PPIEstimate, b: PPIEstimate, z: float) -> PPIEstimate:
    if a.estimate is None or b.estimate is None or a.se is None or b.se is None:
        return PPIEstimate(None, None, None, None)
    # The unclipped estimates: a difference of clipped ones would be biased towards 0.
    value = (a.raw_estimate if a.raw_estimate is not None else a.estimate) - (
        b.raw_estimate if b.raw_estimate is not None else b.estimate
    )
    return _bounded(_estimate(value, a.se**2 + b.se**2, z), (-1.0, 1.0))


# Fewer expert labels than this, or a zero estimated variance, and the normal PPI interval
# means nothing (0 disagreements in 6 labels gives se = 0): the rule of _small_sample applies.
PPI_MIN_LABELS = 10
PPI_MIN_TRACES = 20
METHOD_NORMAL = "normal"
METHOD_SMALL = "Wilson at the effective sample size (small sample)"
METHOD_PPI_SMALL = "normal, widened to the expert-only small-sample interval (few labels)"
METHOD_FEW_TRACES = "t with k - 1 df and the CR1 correction (fewer than 50 labelled traces)"
METHOD_PPI_PP_EXPERT = "expert-only (lambda = 0: too few labels, or the t interval was wider)"


def _small_proportion(
    est: PPIEstimate, *, n: int, clusters: np.ndarray, level: float
) -> PPIEstimate:
    """A mean of 0/1 values under the error rates' small-sample rule (effective-n Wilson)."""
    k = int(np.unique(clusters).size)
    if est.estimate is None or (k >= SMALL_SAMPLE_TRACES and est.se):
        return est
    low, high, _, _ = effective_wilson_interval(
        est.estimate * n,
        float(n),
        n_clusters=k,
        # effective_wilson_interval applies k/(k-1); the linearised variance has none.
        bootstrap_variance=(est.se or 0.0) ** 2,
        confidence_level=level,
    )
    return dataclasses.replace(
        est, ci_low=min(low, est.estimate), ci_high=max(high, est.estimate), method=METHOD_SMALL
    )


def _few_clusters(est: PPIEstimate, *, k: int, level: float) -> PPIEstimate:
    """``est``'s normal interval as a t interval with the CR1 correction, for k clusters.

    With few labelled traces the cluster-robust variance is biased low and its normal
    quantile too small: the usual fix (Cameron & Miller 2015, J. Human Resources 50:317) is
    the k/(k−1) factor and t with k − 1 degrees of freedom, around the unclipped estimate.
    """
    if est.estimate is None or not est.se or k < 2:
        return est
    raw = est.raw_estimate if est.raw_estimate is not None else est.estimate
    # ``se`` stays the plain cluster-robust one, so n_effective and the differences keep
    # one basis; only this interval is widened.
    half = float(stats.t.ppf(0.5 + level / 2, k - 1)) * est.se * float(np.sqrt(k / (k - 1)))
    widened = _bounded(PPIEstimate(raw, est.se, raw - half, raw + half), (0.0, 1.0), lam=est.lam)
    return dataclasses.replace(widened, method=METHOD_FEW_TRACES)


def _small_sample(
    expert_only: PPIEstimate,
    ppi: PPIEstimate,
    ppi_pp: PPIEstimate,
    *,
    y: np.ndarray,
    clusters: np.ndarray,
    level: float,
) -> tuple[PPIEstimate, PPIEstimate, PPIEstimate]:
    """The small-sample rule for one judge × condition.

    Expert-only: with fewer than ``SMALL_SAMPLE_TRACES`` labelled traces or a degenerate
    variance, Wilson's interval at the effective sample size (as for error rates; the design
    effect from the cluster-robust Hájek variance, so unequal weights count too).

    PPI and PPI++ (their normal intervals undercover with few labelled traces: PPI covered 0.86 /
    0.90 / 0.93 at 9 / 18 / 35 labelled traces in tests/agreement/test_coverage_simulation.py's
    unequal-weight scenario):

    - fewer than ``PPI_MIN_LABELS`` labels, fewer than ``PPI_MIN_TRACES`` labelled traces or
      a zero variance: the judge cannot be calibrated; PPI's interval is the hull of its own
      and the expert-only one, and PPI++ is the expert-only estimate (λ = 0);
    - fewer than ``SMALL_SAMPLE_TRACES`` labelled traces: a t interval with the CR1
      correction (``_few_clusters``); PPI++ then keeps the expert-only interval when its own
      came out wider (λ = 0 is the expert-only estimate, so it is never the wider one).
    """
    if expert_only.estimate is None or not y.size:
        return expert_only, ppi, ppi_pp
    expert_only = _small_proportion(expert_only, n=y.size, clusters=clusters, level=level)
    k = int(np.unique(clusters).size)

    def widened(est: PPIEstimate) -> PPIEstimate:
        if est.estimate is None:
            return est
        if y.size < PPI_MIN_LABELS or k < PPI_MIN_TRACES or not est.se:
            return dataclasses.replace(
                est,
                ci_low=min(est.ci_low, expert_only.ci_low, est.estimate),
                ci_high=max(est.ci_high, expert_only.ci_high, est.estimate),
                method=METHOD_PPI_SMALL,
            )
        if k < SMALL_SAMPLE_TRACES:
            return _few_clusters(est, k=k, level=level)
        return est

    ppi, ppi_pp = widened(ppi), widened(ppi_pp)
    if ppi_pp.method == METHOD_PPI_SMALL or (
        ppi_pp.method == METHOD_FEW_TRACES
        and expert_only.ci_low is not None
        and ppi_pp.ci_high - ppi_pp.ci_low > expert_only.ci_high - expert_only.ci_low
    ):
        ppi_pp = dataclasses.replace(expert_only, lam=0.0, method=METHOD_PPI_PP_EXPERT)
    return expert_only, ppi, ppi_pp


def _step_weights(experts: pd.DataFrame) -> pd.Series:
    """1/π per step (mean over its expert rows), or ``weight``, or 1."""
    for column, invert in (("inclusion_probability", True), ("weight", False)):
        if column in experts.columns and experts[column].notna().any():
            missing = experts[column].isna().to_numpy()
            if missing.any():
                row = experts.index[int(np.flatnonzero(missing)[0])]
                raise ValueError(
                    f"labels row {row}, column {column!r}: value is missing while other "
                    f"expert rows have one; give it for every expert label or none"
                )
            per_step = experts.groupby("step_id")[column].mean()
            return 1.0 / per_step if invert else per_step
    return pd.Series(1.0, index=pd.Index(experts["step_id"].unique(), name="step_id"))


def ppi_error_rates(
    labels: pd.DataFrame,
    *,
    confidence_level: float = 0.95,
    cluster: bool = True,
    validate: bool = True,
) -> tuple[list[PPIRow], list[PPIDifference]]:
    """Prediction-powered error rate per judge × condition and all condition differences.

    Parameters
    ----------
    labels : pandas.DataFrame
        The labels long format; expert rows may carry ``inclusion_probability`` (or
        ``weight``).
    confidence_level : float, keyword-only
    cluster : bool, keyword-only
        Cluster-robust variances over traces (default); False treats steps as independent
        (``ppi_py``'s formula when the weights are equal).
    validate : bool, keyword-only

    Returns
    -------
    (rows, differences) : tuple of lists
        Empty when there is no judge or no expert label.
    """
    z = _z(confidence_level)
    frame = labels_validate(labels) if validate else labels
    # Only the columns read here: masking every column of a million-row frame is the cost.
    wanted = ["step_id", "trace_id", "condition", "evaluator", "evaluator_kind", "verdict"]
    wanted += [
        c for c in ("inclusion_probability", "weight", "judge_probability") if c in frame.columns
    ]
    frame = frame[wanted]
    counted = frame["verdict"] != "abstain"
    experts = frame[(frame["evaluator_kind"] == "expert") & counted]
    judges = frame[(frame["evaluator_kind"] == "judge") & counted]
    if experts.empty or judges.empty:
        return [], []
    y_step = (experts["verdict"] == "error").astype(float).groupby(experts["step_id"]).mean()
    w_step = _step_weights(experts)

    rows: list[PPIRow] = []
    differences: list[PPIDifference] = []
    # Look every judged step up once (NaN = not labelled); groups then slice numpy arrays.
    step_ids = judges["step_id"]
    # One hash of the million judged ids; the lookups then run over the few labelled ones.
    labelled = step_ids.isin(y_step.index).to_numpy()
    y_of = np.full(len(step_ids), np.nan)
    w_of = np.full(len(step_ids), np.nan)
    y_of[labelled] = y_step.reindex(step_ids[labelled]).to_numpy(dtype=float)
    w_of[labelled] = w_step.reindex(step_ids[labelled]).to_numpy(dtype=float)
    verdict_of = (judges["verdict"] == "error").to_numpy(dtype=float)
    # The prediction: the judge's own probability of an error where it stated one (the share
    # of its samples, its token probability), else its 0/1 verdict. PPI is unbiased for any
    # fixed prediction; the probability carries more of what the judge knows, so the
    # rectifier's variance is smaller (bench/efficiency_bench.py, "votes" against "verdict").
    yhat_of = verdict_of
    if "judge_probability" in judges.columns:
        stated = judges["judge_probability"].to_numpy(dtype=float)
        yhat_of = np.where(np.isnan(stated), verdict_of, stated)
        has_probability = ~np.isnan(stated)
    else:
        has_probability = np.zeros(len(judges), dtype=bool)
    trace_of = pd.factorize(judges["trace_id"])[0]
    groups = judges.groupby(["evaluator", "condition"], sort=True).indices
    by_judge: dict[str, dict[str, np.ndarray]] = {}
    for (judge, condition), positions in groups.items():
        by_judge.setdefault(str(judge), {})[str(condition)] = positions
    for judge, conditions in by_judge.items():
        per_condition: dict[str, PPIRow] = {}
        for condition, positions in conditions.items():
            yhat_all = yhat_of[positions]
            traces_all = trace_of[positions]
            is_labelled = ~np.isnan(y_of[positions])
            y = y_of[positions][is_labelled]
            w = w_of[positions][is_labelled]
            yhat = yhat_all[is_labelled]
            traces = traces_all[is_labelled]
            clusters = {"clusters": traces, "clusters_all": traces_all} if cluster else {}
            ppi, ppi_pp = (
                ppi_mean(
                    y,
                    yhat,
                    yhat_all,
                    weights=w,
                    confidence_level=confidence_level,
                    lam=lam,
                    bounds=(0.0, 1.0),
                    **clusters,
                )
                for lam in (1.0, None)
            )
            singleton_all = traces_all if cluster else np.arange(yhat_all.size)
            singleton = traces if cluster else np.arange(y.size)
            verdicts_all = verdict_of[positions]
            judge_only = _bounded(
                _estimate(float(verdicts_all.mean()), _mean_var(verdicts_all, singleton_all), z),
                (0.0, 1.0),
            )
            expert_only = _bounded(_weighted_mean(y, w, singleton, z), (0.0, 1.0))
            expert_only, ppi, ppi_pp = _small_sample(
                expert_only, ppi, ppi_pp, y=y, clusters=singleton, level=confidence_level
            )
            n_effective = None
            if ppi_pp.se and expert_only.se is not None:
                n_effective = float(y.size * expert_only.se**2 / ppi_pp.se**2)
            judge_only = _small_proportion(
                judge_only, n=verdicts_all.size, clusters=singleton_all, level=confidence_level
            )
            stated_share = float(has_probability[positions].mean())
            row = PPIRow(
                judge=str(judge),
                condition=str(condition),
                n_judged=int(yhat_all.size),
                n_labelled=int(y.size),
                ppi=ppi,
                judge_only=judge_only,
                expert_only=expert_only,
                ppi_plus_plus=ppi_pp,
                n_effective=n_effective,
                prediction_probability_share=stated_share,
            )
            per_condition[str(condition)] = row
            rows.append(row)
        for ca, cb in itertools.combinations(sorted(per_condition), 2):
            a, b = per_condition[ca], per_condition[cb]
            differences.append(
                PPIDifference(
                    judge=str(judge),
                    condition_a=ca,
                    condition_b=cb,
                    ppi=_difference(a.ppi, b.ppi, z),
                    judge_only=_difference(a.judge_only, b.judge_only, z),
                    expert_only=_difference(a.expert_only, b.expert_only, z),
                    ppi_plus_plus=_difference(a.ppi_plus_plus, b.ppi_plus_plus, z),
                )
            )
    return rows, differences
