"""PPI++ (power-tuned λ) against ppi_py, brute force over λ, and its guarantees."""

import numpy as np
import pandas as pd
import pytest

from auditapp.agreement.ppi import METHOD_PPI_PP_EXPERT, ppi_error_rates, ppi_mean

ppi_py = pytest.importorskip("ppi_py")


def _sample(rng, *, big_n=3000, n=200, accuracy=0.85, p=0.3):
    yhat_all = (rng.random(big_n) < p).astype(float)
    labelled = rng.choice(big_n, n, replace=False)
    yhat = yhat_all[labelled]
    y = np.where(rng.random(n) < accuracy, yhat, 1 - yhat)
    return y, yhat, yhat_all


@pytest.mark.parametrize("accuracy", [0.6, 0.85, 0.99], ids=lambda a: f"judge-{a}")
def test_tuned_lambda_and_interval_match_ppi_py_with_equal_weights(accuracy):
    # given
    y, yhat, yhat_all = _sample(np.random.default_rng(int(accuracy * 100)), accuracy=accuracy)
    # ppi_py's tuned λ, read off its public point estimate (linear in λ)
    theta = float(ppi_py.ppi_mean_pointestimate(y, yhat, yhat_all, lam=None)[0])
    lam_ppi_py = (theta - y.mean()) / (yhat_all.mean() - yhat.mean())
    low_ppi_py, high_ppi_py = (
        float(v[0]) for v in ppi_py.ppi_mean_ci(y, yhat, yhat_all, alpha=0.05, lam=None)
    )
    # when
    tuned = ppi_mean(y, yhat, yhat_all, lam=None)
    at_their_lambda = ppi_mean(y, yhat, yhat_all, lam=float(np.clip(lam_ppi_py, 0, 1)))
    # then: the same estimator and interval at ppi_py's λ ...
    assert at_their_lambda.estimate == pytest.approx(theta, rel=1e-9)
    assert [at_their_lambda.ci_low, at_their_lambda.ci_high] == pytest.approx(
        [low_ppi_py, high_ppi_py], rel=1e-9
    )
    # ... and our λ (exact minimiser of the same variance, ddof 0) is ppi_py's up to its
    # pooled-variance approximation; the widths agree to 1 %
    assert tuned.lam == pytest.approx(lam_ppi_py, abs=0.03)
    assert (tuned.ci_high - tuned.ci_low) == pytest.approx(high_ppi_py - low_ppi_py, rel=0.01)


def _brute_force_variance(lam, y, yhat, yhat_all, w, traces, traces_all):
    """Linearised cluster variance of λ·mean(Ŷ_all) + mean(w̃(Y − λŶ)), one trace at a time."""
    n, big_n = len(y), len(yhat_all)
    w = w * n / w.sum()
    delta = y - lam * yhat
    delta_w = np.sum(w * delta) / n
    total = 0.0
    for trace in set(traces_all) | set(traces):
        imputed = sum(
            lam * (yhat_all[i] - yhat_all.mean()) / big_n
            for i in range(big_n)
            if traces_all[i] == trace
        )
        rectifier = sum(w[i] * (delta[i] - delta_w) / n for i in range(n) if traces[i] == trace)
        total += (imputed + rectifier) ** 2
    return total


@pytest.mark.parametrize("seed", range(6), ids=lambda s: f"seed-{s}")
def test_tuned_lambda_is_the_brute_force_minimiser_with_weights_and_clusters(seed):
    # given: 8 traces × 4 steps, 10 labelled steps with unequal weights
    rng = np.random.default_rng(seed)
    traces_all = np.repeat(np.arange(8), 4)
    yhat_all = (rng.random(32) < 0.4).astype(float)
    labelled = rng.choice(32, 10, replace=False)
    yhat, traces = yhat_all[labelled], traces_all[labelled]
    y = np.where(rng.random(10) < 0.7, yhat, 1 - yhat)
    w = rng.uniform(1, 4, 10)
    grid = np.linspace(0, 1, 1001)
    variances = [_brute_force_variance(g, y, yhat, yhat_all, w, traces, traces_all) for g in grid]
    # when
    tuned = ppi_mean(
        y, yhat, yhat_all, weights=w, clusters=traces, clusters_all=traces_all, lam=None
    )
    # then
    assert tuned.lam == pytest.approx(grid[int(np.argmin(variances))], abs=1e-3)
    assert tuned.se**2 == pytest.approx(min(variances), rel=1e-4, abs=1e-12)
    for lam in (0.0, 0.5, 1.0):
        fixed = ppi_mean(
            y, yhat, yhat_all, weights=w, clusters=traces, clusters_all=traces_all, lam=lam
        )
        expected = _brute_force_variance(lam, y, yhat, yhat_all, w, traces, traces_all)
        assert fixed.se**2 == pytest.approx(expected, rel=1e-9, abs=1e-15)


def _labels(rng, *, traces=40, steps=5, p_label=0.3, accuracy=0.9):
    rows = []
    for condition, p in (("A", 0.2), ("B", 0.45)):
        for t in range(traces):
            propensity = rng.beta(p * 4, (1 - p) * 4)
            for s in range(steps):
                truth = rng.random() < propensity
                judge = truth if rng.random() < accuracy else not truth
                base = {
                    "step_id": f"{condition}{t}-{s}",
                    "trace_id": f"{condition}{t}",
                    "question_id": f"q{t}",
                    "condition": condition,
                }
                rows.append(
                    {**base, "evaluator": "judge", "evaluator_kind": "judge",
                     "verdict": "error" if judge else "correct"}
                )  # fmt: skip
                pi = 0.6 if judge else p_label
                if rng.random() < pi:
                    rows.append(
                        {**base, "evaluator": "dr", "evaluator_kind": "expert",
                         "verdict": "error" if truth else "correct",
                         "inclusion_probability": pi}
                    )  # fmt: skip
    return pd.DataFrame(rows)


@pytest.mark.parametrize("accuracy", [0.5, 0.7, 0.95], ids=lambda a: f"judge-{a}")
def test_ppi_plus_plus_is_never_wider_than_expert_only_or_plain_ppi(accuracy):
    # given: a judge from useless (0.5) to good (0.95), unequal inclusion, clustered
    for seed in range(5):
        labels = _labels(np.random.default_rng(seed), accuracy=accuracy)
        # when
        rows, differences = ppi_error_rates(labels)
        # then
        for row in rows:
            pp = row.ppi_plus_plus
            assert 0.0 <= pp.lam <= 1.0
            assert pp.se <= row.expert_only.se * (1 + 1e-12)
            width = pp.ci_high - pp.ci_low
            assert width <= row.expert_only.ci_high - row.expert_only.ci_low + 1e-12
            if pp.method == METHOD_PPI_PP_EXPERT:  # the small-sample rule chose λ = 0
                assert (pp.lam, pp.ci_low, pp.ci_high) == (
                    0.0,
                    row.expert_only.ci_low,
                    row.expert_only.ci_high,
                )
            else:
                assert pp.se <= row.ppi.se * (1 + 1e-12)
            assert row.n_effective >= row.n_labelled * (1 - 1e-12)
            assert row.n_effective == pytest.approx(
                row.n_labelled * row.expert_only.se**2 / pp.se**2
            )
        for d in differences:
            assert d.ppi_plus_plus.se <= d.expert_only.se * (1 + 1e-12)


def test_lambda_zero_is_the_expert_only_estimate():
    # given
    labels = _labels(np.random.default_rng(7))
    experts = labels[labels["evaluator_kind"] == "expert"]
    a = experts[experts["condition"] == "A"]
    judged = labels[(labels["evaluator_kind"] == "judge") & (labels["condition"] == "A")]
    is_labelled = judged["step_id"].isin(a["step_id"]).to_numpy()
    order = a.set_index("step_id").loc[judged["step_id"][is_labelled]]
    y = (order["verdict"] == "error").to_numpy(float)
    w = 1 / order["inclusion_probability"].to_numpy()
    yhat_all = (judged["verdict"] == "error").to_numpy(float)
    # when
    est = ppi_mean(
        y,
        yhat_all[is_labelled],
        yhat_all,
        weights=w,
        clusters=judged["trace_id"].to_numpy()[is_labelled],
        clusters_all=judged["trace_id"].to_numpy(),
        lam=0.0,
    )
    (row, _) = ppi_error_rates(labels)[0]
    # then: the Hájek mean of the expert labels and its cluster variance
    assert est.estimate == pytest.approx(np.sum(w * y) / np.sum(w), rel=1e-12)
    assert est.estimate == pytest.approx(row.expert_only.estimate, rel=1e-12)
    assert est.se == pytest.approx(row.expert_only.se, rel=1e-12)


def test_estimates_and_bounds_are_clipped_to_the_unit_interval():
    # given: the judge flags 2 of 20 steps, both among the 4 labelled ones, which the expert
    #        calls correct: plain PPI = 0.1 + (0 − 0.5) = −0.4
    yhat_all = np.array([1.0, 1.0] + [0.0] * 18)
    yhat = yhat_all[:4]
    y = np.zeros(4)
    # when
    raw = ppi_mean(y, yhat, yhat_all)
    clipped = ppi_mean(y, yhat, yhat_all, bounds=(0.0, 1.0))
    # then
    assert raw.estimate == pytest.approx(-0.4) and not raw.clipped
    assert clipped.clipped and clipped.raw_estimate == pytest.approx(-0.4)
    assert 0.0 == clipped.ci_low == clipped.estimate <= clipped.ci_high <= 1.0
    assert clipped.se == raw.se


def test_zero_disagreements_in_few_labels_give_an_honest_interval_not_zero_width():
    # given: 6 expert labels (2 per trace) that all agree with a judge that flags nothing
    rows = []
    for t in range(3):
        for s in range(4):
            step = {"step_id": f"{t}-{s}", "trace_id": f"t{t}", "question_id": "q",
                    "condition": "A"}  # fmt: skip
            rows.append({**step, "evaluator": "j", "evaluator_kind": "judge", "verdict": "correct"})
            if s < 2:
                rows.append(
                    {**step, "evaluator": "dr", "evaluator_kind": "expert", "verdict": "correct"}
                )
    # when
    (row,), _ = ppi_error_rates(pd.DataFrame(rows))
    # then: se is 0, yet the intervals are those of 0 errors in 2 effective labels
    #       (3 traces, up to 2 labels each: design effect 2)
    for est in (row.ppi, row.ppi_plus_plus, row.expert_only):
        assert est.se == 0.0
        assert est.ci_low == 0.0 and est.ci_high > 0.5
    assert row.expert_only.method.startswith("Wilson at the effective")
    assert "expert-only small-sample" in row.ppi.method
    assert row.judge_only.ci_low == 0.0 and row.judge_only.ci_high > 0.2
