"""PPI's prediction is the judge's stated probability of an error where it has one.

PPI is unbiased for any fixed prediction; a judge's share of samples saying "error" (or its
token probability) carries more than its 0/1 majority verdict, so the rectifier Y − Ŷ varies
less. Checked against ppi_py with the probabilities as ``Yhat`` (the independent oracle), and
the 0/1 fallback where a step has none.
"""

import numpy as np
import pandas as pd
import pytest

from auditapp.agreement.formats import labels_validate
from auditapp.agreement.ppi import ppi_error_rates

ppi_py = pytest.importorskip("ppi_py")


def ppi_mean_pointestimate(y, yhat, yhat_all, *, lam):
    return float(np.asarray(ppi_py.ppi_mean_pointestimate(y, yhat, yhat_all, lam=lam))[0])


def ppi_mean_ci(y, yhat, yhat_all, *, lam, alpha):
    return tuple(
        float(np.asarray(v)[0]) for v in ppi_py.ppi_mean_ci(y, yhat, yhat_all, alpha=alpha, lam=lam)
    )


def _frame(rng, *, n_steps=600, labelled=120, votes=5, with_probability=True):
    """One judge, one condition, one step per trace (so ppi_py's i.i.d. formula applies)."""
    truth = rng.random(n_steps) < 0.3
    q = np.where(truth, rng.beta(6, 2, n_steps), rng.beta(2, 6, n_steps))
    share = rng.binomial(votes, q) / votes
    verdict = np.where(share > 0.5, "error", "correct")
    steps = [f"s{i}" for i in range(n_steps)]
    base = pd.DataFrame(
        {
            "step_id": steps,
            "trace_id": steps,
            "question_id": "q",
            "condition": "A",
        }
    )
    judge = base.assign(evaluator="judge", evaluator_kind="judge", verdict=verdict)
    if with_probability:
        judge["judge_probability"] = share
    chosen = rng.choice(n_steps, labelled, replace=False)
    expert = base.iloc[chosen].assign(
        evaluator="dr",
        evaluator_kind="expert",
        verdict=np.where(truth[chosen], "error", "correct"),
    )
    return pd.concat([judge, expert], ignore_index=True), share, verdict == "error", chosen, truth


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ppi_uses_the_stated_probability_as_ppi_py_does(seed):
    # given
    labels, share, _, chosen, truth = _frame(np.random.default_rng(seed))
    y, yhat = truth[chosen].astype(float), share[chosen]
    # when
    (row,), _ = ppi_error_rates(labels, cluster=False)
    # then: ppi_py with the shares as predictions, λ = 1 and tuned (PPI++)
    assert row.ppi.estimate == pytest.approx(ppi_mean_pointestimate(y, yhat, share, lam=1))
    low, high = ppi_mean_ci(y, yhat, share, lam=1, alpha=0.05)
    assert (row.ppi.ci_low, row.ppi.ci_high) == pytest.approx((float(low), float(high)), rel=1e-9)
    theta = ppi_mean_pointestimate(y, yhat, share, lam=None)
    lam = (theta - y.mean()) / (share.mean() - yhat.mean())  # ppi_py's λ (estimate is linear)
    # our λ is the exact minimiser of the variance, ppi_py's a pooled approximation: at ours
    # ppi_py's own interval is no wider than at its λ
    ours = ppi_mean_ci(y, yhat, share, lam=row.ppi_plus_plus.lam, alpha=0.05)
    theirs = ppi_mean_ci(y, yhat, share, lam=lam, alpha=0.05)
    assert ours[1] - ours[0] <= (theirs[1] - theirs[0]) * (1 + 1e-9)
    at_ours = ppi_mean_pointestimate(y, yhat, share, lam=row.ppi_plus_plus.lam)
    assert row.ppi_plus_plus.estimate == pytest.approx(at_ours, abs=1e-12)
    assert row.prediction_probability_share == 1.0


def test_judge_only_stays_the_verdicts_error_rate():
    # given
    labels, _, is_error, _, _ = _frame(np.random.default_rng(3))
    # when
    (row,), _ = ppi_error_rates(labels, cluster=False)
    # then: the judge's own rate counts its verdicts, not its probabilities
    assert row.judge_only.estimate == pytest.approx(is_error.mean())


def test_steps_without_a_probability_fall_back_to_the_verdict():
    # given: half the judged steps lost their probability (an older run, one sample)
    rng = np.random.default_rng(4)
    labels, share, is_error, chosen, truth = _frame(rng)
    judged = labels["evaluator_kind"] == "judge"
    missing = judged & (np.arange(len(labels)) % 2 == 0)
    labels.loc[missing, "judge_probability"] = np.nan
    prediction = np.where(np.arange(share.size) % 2 == 0, is_error.astype(float), share)
    # when
    (row,), _ = ppi_error_rates(labels, cluster=False)
    # then
    y = truth[chosen].astype(float)
    expected = ppi_mean_pointestimate(y, prediction[chosen], prediction, lam=1)
    assert row.ppi.estimate == pytest.approx(expected)
    assert row.prediction_probability_share == pytest.approx(0.5)


def test_without_the_column_ppi_predicts_with_the_verdict():
    # given
    labels, _, is_error, chosen, truth = _frame(np.random.default_rng(5), with_probability=False)
    # when
    (row,), _ = ppi_error_rates(labels, cluster=False)
    # then
    y, yhat_all = truth[chosen].astype(float), is_error.astype(float)
    expected = ppi_mean_pointestimate(y, yhat_all[chosen], yhat_all, lam=1)
    assert row.ppi.estimate == pytest.approx(expected)
    assert row.prediction_probability_share == 0.0


def test_the_probability_narrows_ppi_over_many_audits():
    # given: the same audits read with the shares and with the 0/1 verdicts
    rng = np.random.default_rng(6)
    with_share, with_verdict = [], []
    for _ in range(40):
        labels, *_ = _frame(rng)
        (row,), _ = ppi_error_rates(labels, cluster=False)
        with_share.append(row.ppi.se)
        (row,), _ = ppi_error_rates(labels.drop(columns="judge_probability"), cluster=False)
        with_verdict.append(row.ppi.se)
    # then: the judge's probability carries more than its majority verdict
    assert np.mean(with_share) < 0.97 * np.mean(with_verdict)


@pytest.mark.parametrize("bad", [1.2, -0.1, "likely"])
def test_a_probability_outside_0_1_is_rejected_with_its_row(bad):
    # given
    labels, *_ = _frame(np.random.default_rng(7))
    labels["judge_probability"] = labels["judge_probability"].astype(object)
    labels.loc[3, "judge_probability"] = bad
    # when / then
    with pytest.raises(ValueError, match=r"labels row 3, column 'judge_probability'"):
        labels_validate(labels)
