"""Active expert sampling (issue 15): inclusion probabilities from the judge's uncertainty with
a floor, and a fixed-size sample that realises them exactly (checked by simulation)."""

import numpy as np
import pytest

from auditapp.agreement.active import (
    active_mean,
    error_probability,
    inclusion_probabilities,
    systematic_sample,
    uncertainty_score,
)


def test_the_error_probability_comes_from_the_first_source_there_is():
    shares = np.array([0.0, 0.6, 1.0])
    assert error_probability(sample_error_share=shares).tolist() == shares.tolist()
    assert error_probability(judge_error_share=shares).tolist() == shares.tolist()
    p = error_probability(confidence=np.array([0.9, 0.9]), verdict_is_error=np.array([1, 0]))
    assert p == pytest.approx([0.9, 0.1])
    assert error_probability(verdict_is_error=np.array([1, 0, 1])).tolist() == [0.5] * 3
    with pytest.raises(ValueError, match="at least one source"):
        error_probability()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        error_probability(sample_error_share=np.array([1.2]))


def test_scores_and_probabilities_follow_uncertainty_with_a_floor():
    rng = np.random.default_rng(0)
    p = rng.choice([0.0, 0.2, 0.5, 1.0], size=1000)
    pi = inclusion_probabilities(p, n=150, floor=0.2)
    assert pi.sum() == pytest.approx(150)
    assert pi.min() == pytest.approx(0.2 * 150 / 1000)  # confident steps sit on the floor
    assert np.all(pi <= 1)
    # among steps above the floor, π is proportional to the score
    above = pi > 0.2 * 150 / 1000 + 1e-12
    ratio = pi[above] / uncertainty_score(p[above])
    assert ratio == pytest.approx(np.full(ratio.size, ratio[0]))
    assert uncertainty_score(np.array([0.5]))[0] == 0.5


def test_probabilities_are_capped_at_one_and_the_rest_rescaled():
    p = np.r_[np.full(5, 0.5), np.full(95, 0.01)]
    pi = inclusion_probabilities(p, n=60, floor=0.0)
    assert pi[:5] == pytest.approx(np.ones(5))
    assert pi[5:] == pytest.approx(np.full(95, 55 / 95))
    assert pi.sum() == pytest.approx(60)


def test_no_uncertainty_known_means_uniform():
    pi = inclusion_probabilities(np.zeros(10), n=4)
    assert pi == pytest.approx(np.full(10, 0.4))


def test_systematic_sample_has_the_stated_inclusion_probabilities():
    rng = np.random.default_rng(1)
    p = rng.random(60)
    pi = inclusion_probabilities(p, n=12, floor=0.2)
    counts = np.zeros(60)
    runs = 20_000
    for _ in range(runs):
        chosen = systematic_sample(pi, rng)
        assert chosen.size == 12 and np.unique(chosen).size == 12
        counts[chosen] += 1
    # each unit's frequency within 4 standard errors of its π
    se = np.sqrt(pi * (1 - pi) / runs)
    assert np.all(np.abs(counts / runs - pi) <= 4 * se + 1e-9)


def test_bad_probabilities_are_refused():
    rng = np.random.default_rng(2)
    with pytest.raises(ValueError, match="sum to an integer"):
        systematic_sample(np.array([0.5, 0.6]), rng)
    with pytest.raises(ValueError, match="n must lie"):
        inclusion_probabilities(np.array([0.5, 0.5]), n=3)


# --- the estimate ----------------------------------------------------------------------------
def _population(rng, traces=200):
    lengths = rng.integers(4, 9, size=traces)
    clusters = np.repeat(np.arange(traces), lengths)
    y = (rng.random(clusters.size) < 0.3).astype(float)
    f = np.clip(y * 0.7 + rng.random(clusters.size) * 0.4, 0, 1)
    return y, f, clusters


def test_uniform_pi_and_lambda_one_is_classical_ppi_as_ppi_py_computes_it():
    ppi_py = pytest.importorskip("ppi_py")
    rng = np.random.default_rng(4)
    y, f, clusters = _population(rng)
    n = 60
    pi = np.full(y.size, n / y.size)
    chosen = systematic_sample(pi, rng)
    est = active_mean(y[chosen], chosen, f, pi, clusters=clusters, lam=1.0)
    oracle = ppi_py.ppi_mean_pointestimate(y[chosen], f[chosen], f, lam=1)
    assert est.estimate == pytest.approx(float(np.ravel(oracle)[0]), abs=1e-12)


def test_the_estimate_is_unbiased_under_active_sampling():
    rng = np.random.default_rng(5)
    y, f, clusters = _population(rng)
    pi = inclusion_probabilities(error_probability(sample_error_share=f, votes=5), n=80)
    runs = 4000
    estimates = np.empty(runs)
    for r in range(runs):
        chosen = systematic_sample(pi, rng)
        estimates[r] = active_mean(y[chosen], chosen, f, pi, clusters=clusters, lam=0.7).estimate
    se = estimates.std() / np.sqrt(runs)
    assert abs(estimates.mean() - y.mean()) < 4 * se


def test_tuning_is_never_wider_than_experts_only_on_the_same_sample():
    rng = np.random.default_rng(6)
    for _ in range(50):
        y, f, clusters = _population(rng, traces=60)
        pi = inclusion_probabilities(error_probability(sample_error_share=f, votes=5), n=40)
        chosen = systematic_sample(pi, rng)
        tuned = active_mean(y[chosen], chosen, f, pi, clusters=clusters)
        experts = active_mean(y[chosen], chosen, f, pi, clusters=clusters, lam=0.0)
        plain = active_mean(y[chosen], chosen, f, pi, clusters=clusters, lam=1.0)
        assert tuned.se <= experts.se + 1e-12 and tuned.se <= plain.se + 1e-12


def test_brute_force_variance_on_a_tiny_population():
    # Four units, each its own cluster, Poisson-free check of the algebra: with λ and c
    # fixed the estimate is (1/N) Σ [g + (Y − g) ξ/π], computed here by hand.
    y_all = np.array([1.0, 0.0, 1.0, 0.0])
    f = np.array([0.9, 0.2, 0.4, 0.1])
    pi = np.array([0.5, 0.5, 0.5, 0.5])
    chosen = np.array([0, 3])
    est = active_mean(y_all[chosen], chosen, f, pi, lam=1.0)
    xi = np.isin(np.arange(4), chosen).astype(float)
    by_hand = np.mean(est.shift + f + (y_all - est.shift - f) * xi / pi)
    assert est.estimate == pytest.approx(by_hand)
