"""Small samples: the error-rate interval covers about 95 % at 5–30 steps per arm.

Each arm is n steps from traces of 1–3 steps (an expert sample draws few steps per trace),
each trace with its own error propensity ~ Beta (intra-trace correlation 0.2). Many arms are
packed into one labels table as separate conditions: the bootstrap resamples each condition
on its own, so one call gives hundreds of independent replicates.

Measured with this seed (pooled over true rates 0.1, 0.3, 0.5), the rule's interval (Wilson
at the effective sample size) covers 0.983 / 0.958 / 0.961 / 0.933 at n = 5 / 10 / 20 / 30
(0.959 pooled); the percentile cluster bootstrap alone 0.59 / 0.78 / 0.88 / 0.90. At n = 5
the rule is conservative on purpose: an arm with 0 (or all) errors — most arms at a true
rate of 0.1 — says nothing about the design effect, so it takes the largest one its traces
allow (steps / traces).
"""

import numpy as np
import pandas as pd
import pytest

from auditapp.agreement.orderings import orderings
from auditapp.agreement.rates import (
    METHOD_EFFECTIVE_WILSON,
    effective_wilson_interval,
    error_rates,
    newcombe_difference_interval,
)

RATES = (0.1, 0.3, 0.5)
SIZES = (5, 10, 20, 30)
ARMS = 120  # per (n, rate): 1,440 arms in all, binomial SE of a coverage ≈ 0.006


def _arms(rng, *, n_steps, rate, arms, concentration=4.0):
    steps, traces, conditions, verdicts = [], [], [], []
    trace = 0
    for arm in range(arms):
        left = n_steps
        while left > 0:
            length = int(min(left, rng.integers(1, 4)))
            propensity = rng.beta(rate * concentration, (1 - rate) * concentration)
            errors = rng.random(length) < propensity
            steps += [f"{n_steps}-{rate}-{trace}-{i}" for i in range(length)]
            traces += [f"{n_steps}-{rate}-{trace}"] * length
            conditions += [f"n{n_steps:02d}-p{rate}-{arm:03d}"] * length
            verdicts += np.where(errors, "error", "correct").tolist()
            trace += 1
            left -= length
    return pd.DataFrame(
        {
            "step_id": steps,
            "trace_id": traces,
            "question_id": "q",
            "condition": conditions,
            "evaluator": "dr",
            "evaluator_kind": "expert",
            "verdict": verdicts,
        }
    )


@pytest.fixture(scope="module")
def simulated():
    rng = np.random.default_rng(20261201)
    truth, parts = {}, []
    for n in SIZES:
        for rate in RATES:
            part = _arms(rng, n_steps=n, rate=rate, arms=ARMS)
            truth.update(dict.fromkeys(part["condition"].unique(), (n, rate)))
            parts.append(part)
    result = error_rates(
        pd.concat(parts, ignore_index=True), rng=np.random.default_rng(5), resamples=300
    )
    return result, truth


def test_small_sample_interval_covers_94_to_96_percent_at_5_to_30_steps(simulated):
    # given
    result, truth = simulated
    covered = {n: [] for n in SIZES}
    bootstrap = {n: [] for n in SIZES}
    for row in result.rows:
        n, rate = truth[row.condition]
        covered[n].append(row.ci_low <= rate <= row.ci_high)
        bootstrap[n].append(row.bootstrap_low <= rate <= row.bootstrap_high)
        # then: every arm this small takes the rule, and no interval has zero width
        assert row.method == METHOD_EFFECTIVE_WILSON
        assert row.ci_high > row.ci_low
        assert 0.0 <= row.ci_low <= row.rate <= row.ci_high <= 1.0
    figures = {n: round(float(np.mean(v)), 3) for n, v in covered.items()}
    print("coverage by steps per arm", figures)
    print("bootstrap alone", {n: round(float(np.mean(v)), 3) for n, v in bootstrap.items()})
    # then: ±0.025 per size is ~2.5 binomial SEs of 360 arms; pooled 0.94–0.96; at n = 5
    #       the stated conservative rule for 0 / all errors over-covers
    assert 0.94 <= np.mean(covered[5]) <= 0.995, figures
    for n in SIZES[1:]:
        assert 0.925 <= np.mean(covered[n]) <= 0.975, (n, figures)
    assert 0.94 <= np.mean([c for v in covered.values() for c in v]) <= 0.965
    assert np.mean(bootstrap[5]) < 0.7  # why the rule exists


def test_difference_interval_covers_at_least_95_percent_at_small_n(simulated):
    # given: pairs of independent arms of the same size with different true rates
    result, truth = simulated
    by_key = {}
    for row in result.rows:
        by_key.setdefault(truth[row.condition], []).append(row)
    covered = []
    for n in SIZES:
        for a, b in zip(by_key[(n, 0.1)], by_key[(n, 0.3)], strict=True):
            low, high = newcombe_difference_interval(
                a.rate, (a.ci_low, a.ci_high), b.rate, (b.ci_low, b.ci_high)
            )
            covered.append(low <= -0.2 <= high)
    print(f"difference coverage {np.mean(covered):.3f}")
    # then: Newcombe's hybrid is mildly conservative
    assert 0.94 <= np.mean(covered) <= 0.99


def test_zero_errors_in_six_steps_is_not_a_zero_width_interval():
    # given: the case — 0 errors in 6 steps (3 traces of 2)
    labels = pd.DataFrame(
        {
            "step_id": [f"s{i}" for i in range(6)],
            "trace_id": ["t1", "t1", "t2", "t2", "t3", "t3"],
            "question_id": "q",
            "condition": "A",
            "evaluator": "dr",
            "evaluator_kind": "expert",
            "verdict": "correct",
        }
    )
    # when
    (row,) = error_rates(labels, rng=np.random.default_rng(0), resamples=200).rows
    # then: the bootstrap is 0–0; the rule gives 0 errors in 3 effective steps
    assert row.bootstrap_low == row.bootstrap_high == 0.0
    assert row.design_effect == 2.0 and row.n_effective == 3.0
    assert row.ci_low == 0.0
    assert row.ci_high == pytest.approx(1.96**2 / (3 + 1.96**2), rel=1e-3)  # Wilson, x = 0


def test_effective_wilson_uses_the_bootstrap_design_effect():
    # given: 12 errors in 40 steps of 10 traces, bootstrap variance 3× binomial
    binomial = 0.3 * 0.7 / 40
    # when
    low, high, deff, n_eff = effective_wilson_interval(
        12, 40, n_clusters=10, bootstrap_variance=3 * binomial * 9 / 10
    )
    # then: k/(k−1) undoes the bootstrap's small-cluster bias, so deff = 3
    assert deff == pytest.approx(3.0)
    assert n_eff == pytest.approx(40 / 3)
    from statsmodels.stats.proportion import proportion_confint

    assert (low, high) == pytest.approx(proportion_confint(4, 40 / 3, method="wilson"), rel=1e-9)


def test_large_samples_keep_the_cluster_bootstrap():
    # given: 60 traces per condition
    rng = np.random.default_rng(2)
    labels = _arms(rng, n_steps=150, rate=0.3, arms=2)
    # when
    result = error_rates(labels, rng=np.random.default_rng(0), resamples=300)
    # then
    for row in result.rows:
        assert row.n_traces >= 50
        assert row.method.startswith("cluster bootstrap")
        assert (row.ci_low, row.ci_high) == (row.bootstrap_low, row.bootstrap_high)
    (ordering,) = orderings(result)
    assert ordering.differences[0].method.startswith("cluster bootstrap")


def test_a_single_trace_counts_as_one_effective_step():
    # given: 3 errors in 6 steps of one trace
    labels = pd.DataFrame(
        {
            "step_id": [f"s{i}" for i in range(6)],
            "trace_id": "t1",
            "question_id": "q",
            "condition": "A",
            "evaluator": "dr",
            "evaluator_kind": "expert",
            "verdict": ["error"] * 3 + ["correct"] * 3,
        }
    )
    # when
    (row,) = error_rates(labels, rng=np.random.default_rng(0), resamples=100).rows
    # then
    assert row.n_effective == 1.0 and row.design_effect == 6.0
    from statsmodels.stats.proportion import proportion_confint

    assert (row.ci_low, row.ci_high) == pytest.approx(
        proportion_confint(0.5, 1, method="wilson"), rel=1e-9
    )
