"""The planner fed by a pilot (issue 15): the labels it plans give the interval it promised,
checked by simulating each design at the planned size; and its parts against brute force."""

import numpy as np
import pytest
from scipy import stats

from auditapp.agreement.active import (
    active_mean,
    error_probability,
    inclusion_probabilities,
    systematic_sample,
)
from auditapp.agreement.pilot_planning import ArmPilot, _icc, pilot_plan, unit_variances

VOTES = 5


def _arm(rng, rate, traces=400):
    lengths = rng.integers(6, 13, size=traces)
    clusters = np.repeat(np.arange(traces), lengths)
    wrong = rng.random(clusters.size) < rate
    mean = np.where(wrong, 0.8, 0.15)
    q = rng.beta(mean * 2.0, (1 - mean) * 2.0)
    f = rng.binomial(VOTES, q) / VOTES
    return wrong.astype(float), f, clusters


def _pilot(rng, y, f, clusters, n=40):
    chosen = rng.choice(y.size, n, replace=False)
    return ArmPilot(y=y[chosen], f=f[chosen], f_all=f, clusters=clusters[chosen])


def test_the_planned_size_delivers_the_promised_half_width():
    rng = np.random.default_rng(11)
    population = {"a": _arm(rng, 0.2), "b": _arm(rng, 0.45)}
    pilots = {k: _pilot(rng, *v) for k, v in population.items()}
    plan = pilot_plan(pilots, pair=("a", "b"), half_width=0.1, votes=VOTES)
    z = stats.norm.ppf(0.975)
    assert plan.n_per_arm["PPI++"] < plan.n_per_arm["expert-only"]
    for design in ("expert-only", "PPI++", "active + PPI++"):
        n = plan.n_per_arm[design]
        widths = []
        for _ in range(150):
            ses = []
            for y, f, clusters in population.values():
                if design == "active + PPI++":
                    p = error_probability(sample_error_share=f, votes=VOTES)
                    pi = inclusion_probabilities(p, n=n)
                else:
                    pi = np.full(y.size, n / y.size)
                chosen = systematic_sample(pi, rng)
                lam = 0.0 if design == "expert-only" else None
                ses.append(active_mean(y[chosen], chosen, f, pi, clusters=clusters, lam=lam).se)
            widths.append(z * np.hypot(*ses))
        # within 25 % of the promise: the pilot has only 40 labels per arm
        assert np.mean(widths) == pytest.approx(0.1, rel=0.25), design


def test_power_target_matches_the_normal_formula():
    rng = np.random.default_rng(12)
    pilots = {k: _pilot(rng, *_arm(rng, r)) for k, r in (("a", 0.2), ("b", 0.4))}
    plan = pilot_plan(pilots, pair=("a", "b"), gap=0.2, power=0.8)
    v = plan.variances
    by_hand = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) ** 2 / 0.2**2
    expected = by_hand * plan.design_effect * (v["a"]["expert-only"] + v["b"]["expert-only"])
    ya, yb = pilots["a"].y, pilots["b"].y
    assert v["a"]["expert-only"] == pytest.approx(np.var(ya, ddof=1))
    assert v["b"]["expert-only"] == pytest.approx(np.var(yb, ddof=1))
    assert plan.n_per_arm["expert-only"] == int(np.ceil(expected - 1e-9))


def test_ppi_plus_plus_variance_is_the_residual_of_the_least_squares_line():
    rng = np.random.default_rng(13)
    y, f, _ = _arm(rng, 0.3)
    arm = ArmPilot(y=y[:200], f=f[:200], f_all=f)
    corr = np.corrcoef(y[:200], f[:200])[0, 1]
    expected = np.var(y[:200]) * (1 - corr**2) * 200 / 198  # two fitted parameters
    assert unit_variances(arm)["PPI++"] == pytest.approx(expected)


def test_icc_of_independent_steps_is_near_zero_and_of_identical_traces_is_one():
    rng = np.random.default_rng(14)
    clusters = np.repeat(np.arange(100), 4)
    assert _icc(rng.normal(size=400), clusters) < 0.1
    assert _icc(np.repeat(rng.normal(size=100), 4), clusters) == pytest.approx(1.0)


def test_bad_requests_are_refused():
    arm = ArmPilot(y=np.array([0.0, 1.0]), f=np.array([0.1, 0.9]), f_all=np.array([0.1, 0.9]))
    with pytest.raises(ValueError, match="either half_width or gap"):
        pilot_plan({"a": arm, "b": arm}, pair=("a", "b"))
    with pytest.raises(ValueError, match="two of the pilot's arms"):
        pilot_plan({"a": arm}, pair=("a", "c"), half_width=0.1)
