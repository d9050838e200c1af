"""Stratified PPI (Fisch et al. 2024) and the Neyman allocation: against ppi_py with one
stratum and equal weights, and against brute force over every sample of a small population."""

import itertools

import numpy as np
import ppi_py
import pytest

from auditapp.agreement.stratified import neyman_allocation, stratified_ppi_mean


@pytest.mark.parametrize("lam", [1.0, 0.4, 0.0])
def test_one_stratum_is_ppi_py(lam):
    # given a labelled sample and a separate unlabelled set, one stratum
    rng = np.random.default_rng(1)
    y = (rng.random(60) < 0.3).astype(float)
    yhat = np.where(rng.random(60) < 0.8, y, 1 - y)
    unlabelled = (rng.random(500) < 0.32).astype(float)
    # when
    ours = stratified_ppi_mean(
        y,
        yhat,
        np.zeros(60),
        unlabelled,
        np.zeros(500),
        lam=lam,
        confidence_level=0.9,
        small_sample=False,
    )
    low, high = ppi_py.ppi_mean_ci(y, yhat, unlabelled, alpha=0.1, lam=lam)
    point = ppi_py.ppi_mean_pointestimate(y, yhat, unlabelled, lam=lam)
    # then
    assert ours.estimate == pytest.approx(float(np.ravel(point)[0]), abs=1e-12)
    assert ours.ci_low == pytest.approx(float(np.ravel(low)[0]), abs=1e-12)
    assert ours.ci_high == pytest.approx(float(np.ravel(high)[0]), abs=1e-12)


def test_tuned_lambda_is_close_to_ppi_py_and_never_wider_than_either_end():
    rng = np.random.default_rng(2)
    y = (rng.random(80) < 0.4).astype(float)
    yhat = np.where(rng.random(80) < 0.85, y, 1 - y)
    unlabelled = (rng.random(2000) < 0.4).astype(float)
    tuned = stratified_ppi_mean(
        y, yhat, np.zeros(80), unlabelled, np.zeros(2000), small_sample=False
    )
    low, high = ppi_py.ppi_mean_ci(y, yhat, unlabelled, alpha=0.05, lam=None)
    theirs = (float(np.ravel(high)[0]) - float(np.ravel(low)[0])) / 2
    assert tuned.ci_high - tuned.estimate == pytest.approx(theirs, rel=0.02)
    for lam in (0.0, 1.0):
        fixed = stratified_ppi_mean(
            y, yhat, np.zeros(80), unlabelled, np.zeros(2000), lam=lam, small_sample=False
        )
        assert tuned.se <= fixed.se + 1e-12


# A population of 10 units in two strata (6 + 4), 2 labels per stratum.
POP_Y = np.array([1, 0, 0, 1, 0, 0, 1, 1, 0, 1], dtype=float)
POP_F = np.array([0.9, 0.1, 0.2, 0.6, 0.0, 0.3, 0.8, 0.7, 0.4, 0.9])
POP_H = np.array(["a"] * 6 + ["b"] * 4)


def _samples():
    a, b = range(6), range(6, 10)
    for sa in itertools.combinations(a, 2):
        for sb in itertools.combinations(b, 2):
            yield np.array(sa + sb)


def test_fixed_lambda_is_exactly_unbiased_over_every_sample():
    # when every one of the 15 x 6 stratified samples is drawn
    estimates = [
        stratified_ppi_mean(POP_Y[s], POP_F[s], POP_H[s], POP_F, POP_H, lam=0.7).estimate
        for s in _samples()
    ]
    # then the design expectation is the population mean
    assert np.mean(estimates) == pytest.approx(POP_Y.mean(), abs=1e-12)


def test_variance_and_lambda_match_a_brute_force_computation():
    for s in _samples():
        est = stratified_ppi_mean(POP_Y[s], POP_F[s], POP_H[s], POP_F, POP_H, small_sample=False)
        total_var, total = 0.0, 0.0
        for h in ("a", "b"):
            lab = [i for i in s if POP_H[i] == h]
            pop = [i for i in range(10) if POP_H[i] == h]
            w = len(pop) / 10

            def stratum_var(lam, lab=lab, pop=pop, w=w):
                d = [POP_Y[i] - lam * POP_F[i] for i in lab]
                dbar = sum(d) / len(d)
                fbar = sum(POP_F[j] for j in pop) / len(pop)
                return w**2 * (
                    sum((x - dbar) ** 2 for x in d) / len(d) ** 2
                    + lam**2 * sum((POP_F[j] - fbar) ** 2 for j in pop) / len(pop) ** 2
                )

            grid = np.linspace(0, 1, 10001)
            best = grid[int(np.argmin([stratum_var(g) for g in grid]))]
            assert est.lam[h] == pytest.approx(best, abs=2e-4)
            lam = est.lam[h]
            total_var += stratum_var(lam)
            fbar = np.mean([POP_F[j] for j in pop])
            total += w * (lam * fbar + np.mean([POP_Y[i] - lam * POP_F[i] for i in lab]))
        assert est.estimate == pytest.approx(total, abs=1e-12)
        assert est.se**2 == pytest.approx(total_var, abs=1e-12)


def test_clusters_add_the_covariance_of_steps_of_one_trace():
    # given two labelled steps of one trace in different strata, moving together
    y = np.array([1.0, 1.0, 0.0, 0.0])
    f = np.zeros(4)
    h = np.array(["a", "b", "a", "b"])
    traces = np.array([1, 1, 2, 2])
    plain = stratified_ppi_mean(y, f, h, f, h, lam=0.0)
    clustered = stratified_ppi_mean(y, f, h, f, h, lam=0.0, clusters=traces, clusters_all=traces)
    # then positively correlated strata widen the cluster-robust interval
    assert clustered.se > plain.se


def test_small_sample_scaling_is_n_over_n_minus_fitted_parameters():
    s = next(_samples())
    plain = stratified_ppi_mean(POP_Y[s], POP_F[s], POP_H[s], POP_F, POP_H, lam=0.0)
    raw = stratified_ppi_mean(
        POP_Y[s], POP_F[s], POP_H[s], POP_F, POP_H, lam=0.0, small_sample=False
    )
    # λ = 0: the population terms vanish, each stratum's labelled variance is scaled by 2/1
    assert plain.se**2 == pytest.approx(2 * raw.se**2)


def test_a_stratum_without_labels_is_refused():
    with pytest.raises(ValueError, match="no labelled unit"):
        stratified_ppi_mean(
            np.array([1.0]), np.array([1.0]), np.array(["a"]), np.ones(3), np.array(list("aab"))
        )


def test_neyman_allocation_follows_population_times_sd():
    sizes = neyman_allocation(
        {"a": 1000, "b": 1000, "c": 10}, {"a": 0.4, "b": 0.2, "c": 0.5}, size=60
    )
    assert sum(sizes.values()) == 60
    assert sizes["a"] == pytest.approx(2 * sizes["b"], abs=2)
    assert sizes["c"] >= 2
    # capped by the population, and the minimum kept even with S_h = 0
    capped = neyman_allocation({"a": 3, "b": 100}, {"a": 1.0, "b": 0.0}, size=20)
    assert capped == {"a": 3, "b": 17}
