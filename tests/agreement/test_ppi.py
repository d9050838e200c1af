"""Prediction-powered error rates against the ppi_py formulas for the mean."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from auditapp.agreement.ppi import ppi_error_rates, ppi_mean


def _ppi_py_mean_ci(y, yhat, yhat_unlabeled, *, alpha=0.05, w=None):
    """``ppi_py.ppi_mean_pointestimate``/``ppi_mean_ci`` with lam=1, written out in full.

    Weights are normalised to mean 1 (``construct_weight_vector``); standard deviations use
    numpy's default ddof=0, as in ppi_py.
    """
    n, big_n = len(y), len(yhat_unlabeled)
    w = np.ones(n) if w is None else np.asarray(w) / np.sum(w) * n
    estimate = yhat_unlabeled.mean() + (w * (y - yhat)).mean()
    imputed_std = yhat_unlabeled.std() / np.sqrt(big_n)
    rectifier_std = (w * (y - yhat)).std() / np.sqrt(n)
    half = stats.norm.ppf(1 - alpha / 2) * np.sqrt(imputed_std**2 + rectifier_std**2)
    return estimate, estimate - half, estimate + half


@pytest.mark.parametrize("seed", [0, 1], ids=lambda s: f"seed-{s}")
def test_ppi_mean_matches_ppi_py_formula(seed):
    # given
    rng = np.random.default_rng(seed)
    yhat_all = (rng.random(2000) < 0.35).astype(float)
    idx = rng.choice(2000, 150, replace=False)
    yhat = yhat_all[idx]
    y = np.where(rng.random(150) < 0.85, yhat, 1 - yhat)
    expected = _ppi_py_mean_ci(y, yhat, yhat_all)
    # when
    got = ppi_mean(y, yhat, yhat_all)
    # then
    np.testing.assert_allclose([got.estimate, got.ci_low, got.ci_high], expected, rtol=1e-12)


def test_weighted_ppi_mean_has_ppi_py_estimate_and_hajek_variance():
    # given
    rng = np.random.default_rng(5)
    yhat_all = (rng.random(2000) < 0.35).astype(float)
    yhat = yhat_all[:150]
    y = np.where(rng.random(150) < 0.85, yhat, 1 - yhat)
    w = rng.uniform(1, 5, 150)
    estimate, _, _ = _ppi_py_mean_ci(y, yhat, yhat_all, w=w)
    w_norm = w / w.sum() * 150
    delta_w = np.sum(w * (y - yhat)) / w.sum()
    hajek_var = np.sum((w_norm * (y - yhat - delta_w)) ** 2) / 150**2
    # when
    got = ppi_mean(y, yhat, yhat_all, weights=w)
    # then: ppi_py treats normalised weights as fixed; the Hájek linearisation does not
    assert got.estimate == pytest.approx(estimate, rel=1e-12)
    assert got.se**2 == pytest.approx(yhat_all.var() / 2000 + hajek_var, rel=1e-12)


def test_cluster_variance_keeps_the_covariance_of_shared_units():
    # given: singleton clusters; the 60 labelled units are also in the judged population
    rng = np.random.default_rng(3)
    yhat_all = (rng.random(500) < 0.4).astype(float)
    y = yhat_all[:60].copy()
    y[:10] = 1 - y[:10]
    delta = y - yhat_all[:60]
    per_unit = (yhat_all - yhat_all.mean()) / 500
    per_unit[:60] += (delta - delta.mean()) / 60
    # when
    clustered = ppi_mean(
        y, yhat_all[:60], yhat_all, clusters=np.arange(60), clusters_all=np.arange(500)
    )
    iid = ppi_mean(y, yhat_all[:60], yhat_all)
    # then
    assert clustered.se**2 == pytest.approx(np.sum(per_unit**2), rel=1e-12)
    assert clustered.estimate == iid.estimate


def test_perfect_judge_gives_the_judge_mean_and_its_variance_only():
    # given: the expert always agrees with the judge → rectifier 0
    yhat_all = np.array([1.0, 0, 0, 1, 0, 0, 0, 1])
    # when
    est = ppi_mean(yhat_all[:4], yhat_all[:4], yhat_all)
    # then
    assert est.estimate == pytest.approx(3 / 8)
    assert est.se == pytest.approx(np.sqrt((3 / 8) * (5 / 8) / 8))


def _labels(rng, *, n_traces=100, steps=5, p_label=0.2, inclusion=True):
    rows = []
    for condition, p in (("A", 0.2), ("B", 0.4)):
        for t in range(n_traces):
            for s in range(steps):
                step = f"{condition}{t}-{s}"
                truth = rng.random() < p
                judge = truth if rng.random() < 0.95 else not truth
                base = {
                    "step_id": step,
                    "trace_id": f"{condition}{t}",
                    "question_id": "q",
                    "condition": condition,
                }
                rows.append(
                    {
                        **base,
                        "evaluator": "judge",
                        "evaluator_kind": "judge",
                        "verdict": "error" if judge else "correct",
                    }
                )
                if rng.random() < p_label:
                    row = {
                        **base,
                        "evaluator": "dr",
                        "evaluator_kind": "expert",
                        "verdict": "error" if truth else "correct",
                    }
                    if inclusion:
                        row["inclusion_probability"] = p_label
                    rows.append(row)
    return pd.DataFrame(rows)


def test_ppi_error_rates_rows_and_differences():
    # given
    labels = _labels(np.random.default_rng(0))
    # when
    rows, differences = ppi_error_rates(labels)
    # then
    assert [(r.judge, r.condition) for r in rows] == [("judge", "A"), ("judge", "B")]
    a, b = rows
    assert a.n_judged == 500 and 0 < a.n_labelled < 500
    for row in rows:
        assert row.ppi.ci_low < row.ppi.estimate < row.ppi.ci_high
        # with a 95%-accurate judge the expert subset alone is noisier than PPI
        assert row.ppi.se < row.expert_only.se
    (diff,) = differences
    assert (diff.condition_a, diff.condition_b) == ("A", "B")
    assert diff.ppi.estimate == pytest.approx(a.ppi.estimate - b.ppi.estimate)
    assert diff.ppi.se == pytest.approx(np.hypot(a.ppi.se, b.ppi.se))


def test_uniform_inclusion_probability_equals_no_weights():
    # given
    labels = _labels(np.random.default_rng(1))
    # when
    with_pi, _ = ppi_error_rates(labels)
    without, _ = ppi_error_rates(labels.drop(columns="inclusion_probability"))
    # then
    assert [r.ppi.estimate for r in with_pi] == pytest.approx([r.ppi.estimate for r in without])


def test_partly_missing_inclusion_probability_raises():
    # given
    labels = _labels(np.random.default_rng(2))
    first_expert = labels.index[labels["evaluator_kind"] == "expert"][0]
    labels.loc[first_expert, "inclusion_probability"] = np.nan
    # when / then
    with pytest.raises(ValueError, match="'inclusion_probability': value is missing"):
        ppi_error_rates(labels)


def test_no_expert_labels_gives_empty_result():
    # given
    labels = _labels(np.random.default_rng(4), p_label=0.0)
    # when / then
    assert ppi_error_rates(labels) == ([], [])
