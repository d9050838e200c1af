"""Confidence sequences and the wave stopping rule (issue 15): the boundary against Robbins'
normal-mixture formula written out, time-uniform coverage by simulation, and the stopping
rule's wrong-ordering rate at or below α — including when every arm is the same."""

import math

import numpy as np
import pytest
from scipy import stats

from auditapp.agreement.sequential import (
    confidence_sequence,
    cs_half_width,
    ordering_decision,
    rho_for,
)


@pytest.mark.parametrize("t", [1, 10, 150, 5000])
@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_half_width_is_robbins_normal_mixture_boundary_over_t(t, alpha):
    rho = rho_for(150, alpha)
    # P(∃t: |S_t| ≥ sqrt((t + ρ⁻²) · log((1 + tρ²)/α²))) ≤ α for a standard Gaussian walk
    boundary = math.sqrt((t + rho**-2) * math.log((1 + t * rho**2) / alpha**2))
    assert cs_half_width(t, 1.0, alpha=alpha, rho=rho) == pytest.approx(boundary / t, rel=1e-12)


def test_rho_makes_the_boundary_tightest_near_the_planned_size():
    alpha, t_opt = 0.05, 200
    rho = rho_for(t_opt, alpha)
    widths = {r: cs_half_width(t_opt, 1.0, alpha=alpha, rho=r) for r in (rho / 3, rho, rho * 3)}
    assert widths[rho] < widths[rho / 3] and widths[rho] < widths[rho * 3]


def test_coverage_holds_at_every_sample_size_at_once():
    # 2,000 streams of 600 Bernoulli(0.3) labels: the share of streams whose sequence ever
    # misses the truth stays at or below α (plus Monte Carlo error), while a 95% interval
    # recomputed after every label misses far more often.
    rng = np.random.default_rng(15)
    truth, n, streams, alpha = 0.3, 600, 2000, 0.05
    x = (rng.random((streams, n)) < truth).astype(float)
    ever_missed = 0
    naive_missed = 0
    z = stats.norm.ppf(0.975)
    t = np.arange(1, n + 1)
    for row in x:
        cs = confidence_sequence(row, alpha=alpha, t_opt=150)
        ever_missed += bool(np.any((cs.low > truth) | (cs.high < truth)))
        mean = np.cumsum(row) / t
        se = np.sqrt(np.maximum(mean * (1 - mean), 1e-12) / t)
        naive_missed += bool(np.any(np.abs(mean[9:] - truth) > z * se[9:]))
    se_mc = math.sqrt(alpha * (1 - alpha) / streams)
    assert ever_missed / streams <= alpha + 3 * se_mc
    assert naive_missed / streams > 3 * alpha


def test_zero_errors_early_do_not_give_a_zero_width_sequence():
    cs = confidence_sequence(np.zeros(10), alpha=0.05, t_opt=150)
    assert cs.low[-1] == 0.0 and cs.high[-1] > 0.05


def _waves(rng, rates, wave, budget, alpha):
    """Release waves of ``wave`` labels per arm until the rule says stop or the budget ends."""
    arms = {f"arm{i}": [] for i in range(len(rates))}
    while True:
        for values, rate in zip(arms.values(), rates, strict=True):
            values.extend((rng.random(wave) < rate).astype(float))
        decision = ordering_decision(arms, alpha=alpha, t_opt=150)
        used = len(arms["arm0"])
        if decision.settled or used >= budget:
            return decision, used


def test_stopping_rule_states_the_paper_ordering_and_rarely_a_wrong_one():
    rng = np.random.default_rng(7)
    alpha, runs = 0.05, 200
    wrong = stopped = 0
    used = []
    for _ in range(runs):
        decision, n = _waves(rng, [0.20, 0.31, 0.50], wave=25, budget=1500, alpha=alpha)
        if decision.settled:
            stopped += 1
            used.append(n)
            wrong += decision.ordering != ("arm0", "arm1", "arm2")
    assert stopped / runs > 0.9  # the gaps are settled within the budget nearly always
    assert wrong / runs <= alpha
    assert 100 < np.mean(used) < 1500


def test_equal_arms_are_almost_never_declared_ordered():
    # Every "settled" is wrong here; looking after each of 24 waves must not push it above α.
    rng = np.random.default_rng(8)
    alpha, runs = 0.05, 200
    settled = sum(
        _waves(rng, [0.3, 0.3, 0.3], wave=25, budget=600, alpha=alpha)[0].settled
        for _ in range(runs)
    )
    assert settled / runs <= alpha


def test_go_on_says_roughly_how_many_more_labels():
    rng = np.random.default_rng(3)
    arms = {"a": (rng.random(40) < 0.2).astype(float), "b": (rng.random(40) < 0.5).astype(float)}
    decision = ordering_decision(arms, alpha=0.05, t_opt=150)
    assert not decision.settled and decision.labels_more > 0
    more = decision.labels_more
    # with that many more labels at the same rates the rule settles (most of the time)
    hits = 0
    for _ in range(50):
        extra = {
            "a": np.r_[arms["a"], (rng.random(more + 20) < 0.2)],
            "b": np.r_[arms["b"], (rng.random(more + 20) < 0.5)],
        }
        hits += ordering_decision(extra, alpha=0.05, t_opt=150).settled
    assert hits >= 25
    assert "α/K" in decision.rule


def test_wave_stopping_fires_at_the_first_settled_wave_and_stays_stopped():
    from auditapp.agreement.sequential import wave_stopping

    # given two arms far apart, 40 labels per wave, and a third wave that looks tied again
    rng = np.random.default_rng(3)
    low = np.r_[rng.random(80) < 0.1, rng.random(40) < 0.9].astype(float)
    high = np.r_[rng.random(80) < 0.9, rng.random(40) < 0.1].astype(float)
    waves = np.repeat([1, 2, 3], 40)
    # when
    result = wave_stopping(
        {"A": low, "B": high}, {"A": waves, "B": waves}, waves_released=3, t_opt=120
    )
    # then the first look that separates the arms is the one that counts
    settled = [look.decision.settled for look in result.looks]
    assert result.fired_at_wave == settled.index(True) + 1
    assert result.advice.startswith("stop:") and f"wave {result.fired_at_wave}" in result.advice
    assert "A < B" in result.advice


def test_wave_stopping_says_how_many_more_labels():
    from auditapp.agreement.sequential import wave_stopping

    x = {"A": np.r_[np.zeros(7), np.ones(3)], "B": np.r_[np.zeros(5), np.ones(5)]}
    w = {"A": np.ones(10), "B": np.ones(10)}
    result = wave_stopping(x, w, waves_released=1, t_opt=100)
    more = result.looks[-1].decision.labels_more
    assert result.fired_at_wave is None
    assert result.advice == f"go on: about {more} more labels per arm expected ({2 * more} in all)"


def test_ht_increments_are_labels_under_uniform_probabilities_and_unbiased_otherwise():
    from auditapp.agreement.sequential import ht_increments

    y = np.array([1.0, 0.0, 1.0, 1.0])
    assert np.allclose(ht_increments(y, np.full(4, 0.1), n_arm=4, big_n_arm=40), y)
    # brute force: one draw with probability q_i = π_i / n; E[x] is the population mean
    pop_y = np.array([1.0, 0.0, 0.0, 1.0, 1.0])
    pi = np.array([0.9, 0.3, 0.2, 0.4, 0.2])  # sums to n = 2
    x = ht_increments(pop_y, pi, n_arm=2, big_n_arm=5)
    assert float(np.sum(pi / 2 * x)) == pytest.approx(pop_y.mean())
