"""Orderings of conditions and agreement between two evaluators' orderings."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportions_ztest

from auditapp.agreement.orderings import ordering_agreement, orderings, two_proportion_z
from auditapp.agreement.rates import error_rates


def _audit(rates_by_evaluator, *, traces=30, steps=5, seed=0, shared=False):
    """Labels where each evaluator has a fixed error share per condition.

    rates_by_evaluator: {evaluator: {condition: p}}. With ``shared`` all evaluators label
    the same steps; otherwise each gets its own error draws on the same steps.
    """
    rng = np.random.default_rng(seed)
    rows = []
    conditions = sorted(next(iter(rates_by_evaluator.values())))
    for condition in conditions:
        for t in range(traces):
            for s in range(steps):
                u = rng.random()
                for evaluator, rates in rates_by_evaluator.items():
                    draw = u if shared else rng.random()
                    kind = "judge" if evaluator.startswith("judge") else "expert"
                    rows.append(
                        {
                            "step_id": f"{condition}-{t}-{s}",
                            "trace_id": f"{condition}-{t}",
                            "question_id": f"q{t}",
                            "condition": condition,
                            "evaluator": evaluator,
                            "evaluator_kind": kind,
                            "verdict": "error" if draw < rates[condition] else "correct",
                        }
                    )
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    ("counts"),
    [
        pytest.param((30, 100, 50, 100), id="30/100-vs-50/100"),
        pytest.param((5, 40, 12, 35), id="unequal-n"),
        pytest.param((0, 20, 3, 20), id="zero"),
    ],
)
def test_two_proportion_z_matches_statsmodels(counts):
    # given
    ca, na, cb, nb = counts
    z_ref, p_ref = proportions_ztest([ca, cb], [na, nb])
    # when
    z, p = two_proportion_z(ca, na, cb, nb)
    # then
    assert z == pytest.approx(z_ref, rel=1e-10)
    assert p == pytest.approx(p_ref, rel=1e-10)


def test_two_proportion_z_is_none_when_undefined():
    # given / when / then: both all-correct → zero pooled variance
    assert two_proportion_z(0, 10, 0, 10) == (None, None)


def test_orderings_rank_and_test_every_pair():
    # given: A 3/6 (traces t1, t2), B 1/6, C 5/6
    rows = []
    for condition, errors in [("A", 3), ("B", 1), ("C", 5)]:
        for s in range(6):
            rows.append(
                {
                    "step_id": f"{condition}{s}",
                    "trace_id": f"{condition}{s // 3}",
                    "question_id": "q",
                    "condition": condition,
                    "evaluator": "judge",
                    "evaluator_kind": "judge",
                    "verdict": "error" if s < errors else "correct",
                }
            )
    result = error_rates(pd.DataFrame(rows), rng=np.random.default_rng(0), resamples=200)
    # when
    (ordering,) = orderings(result)
    # then
    assert ordering.ranking == ("B", "A", "C")
    pairs = {(d.condition_a, d.condition_b): d for d in ordering.differences}
    assert list(pairs) == [("A", "B"), ("A", "C"), ("B", "C")]
    ab = pairs[("A", "B")]
    assert ab.difference == pytest.approx(2 / 6)
    odds, p = stats.fisher_exact([[3, 3], [1, 5]])
    assert ab.p_fisher == pytest.approx(p)
    assert ab.odds_ratio == pytest.approx(odds)
    assert ab.ci_low <= ab.difference <= ab.ci_high


def test_fisher_matches_lady_tasting_tea():
    # given: Fisher (1935) 3/4 vs 1/4 → two-sided p = 34/70 = 0.4857
    rows = []
    for condition, errors in [("A", 3), ("B", 1)]:
        for s in range(4):
            rows.append(
                {
                    "step_id": f"{condition}{s}",
                    "trace_id": f"{condition}{s}",
                    "question_id": "q",
                    "condition": condition,
                    "evaluator": "j",
                    "evaluator_kind": "judge",
                    "verdict": "error" if s < errors else "correct",
                }
            )
    result = error_rates(pd.DataFrame(rows), rng=np.random.default_rng(0), resamples=20)
    # when
    (difference,) = orderings(result)[0].differences
    # then
    assert round(difference.p_fisher, 4) == 0.4857
    assert difference.odds_ratio == 9.0


@pytest.mark.parametrize(
    ("judge", "expert", "same"),
    [
        pytest.param(
            {"A": 0.2, "B": 0.4, "C": 0.6}, {"A": 0.1, "B": 0.3, "C": 0.5}, True, id="reproduced"
        ),
        pytest.param(
            {"A": 0.2, "B": 0.4, "C": 0.6}, {"A": 0.6, "B": 0.4, "C": 0.2}, False, id="reversed"
        ),
    ],
)
def test_ordering_agreement_tau_matches_scipy(judge, expert, same):
    # given
    labels = _audit({"judge": judge, "dr": expert}, traces=60)
    result = error_rates(labels, rng=np.random.default_rng(0), resamples=500)
    rates_j = [result.row("judge", c).rate for c in "ABC"]
    rates_e = [result.row("dr", c).rate for c in "ABC"]
    # when
    agreement = ordering_agreement(result, "judge", "dr")
    # then
    assert agreement.kendall_tau == pytest.approx(stats.kendalltau(rates_j, rates_e).statistic)
    assert agreement.same_ordering is same
    assert agreement.p_same_ordering > 0.9 if same else agreement.p_same_ordering < 0.1
    assert agreement.conditions == ("A", "B", "C")


def test_p_same_ordering_is_a_joint_bootstrap():
    # given: two evaluators with identical verdicts and nearly equal condition rates; an
    #        independent bootstrap would disagree often, the paired one never
    labels = _audit(
        {"judge": {"A": 0.30, "B": 0.32}, "dr": {"A": 0.30, "B": 0.32}}, shared=True, traces=40
    )
    result = error_rates(labels, rng=np.random.default_rng(0), resamples=500)
    # when
    agreement = ordering_agreement(result, "judge", "dr")
    # then
    assert agreement.p_same_ordering == 1.0


def test_ordering_agreement_with_one_common_condition_is_undefined():
    # given
    labels = _audit({"judge": {"A": 0.3, "B": 0.5}, "dr": {"A": 0.3, "B": 0.5}})
    labels = labels[~((labels["evaluator"] == "dr") & (labels["condition"] == "B"))]
    result = error_rates(labels, rng=np.random.default_rng(0), resamples=50)
    # when
    agreement = ordering_agreement(result, "judge", "dr")
    # then
    assert agreement.conditions == ("A",)
    assert agreement.kendall_tau is None and agreement.same_ordering is None


def test_ordering_agreement_unknown_evaluator_raises():
    # given
    labels = _audit({"judge": {"A": 0.3, "B": 0.5}})
    result = error_rates(labels, rng=np.random.default_rng(0), resamples=10)
    # when / then
    with pytest.raises(ValueError, match="'nobody' has no error rates"):
        ordering_agreement(result, "judge", "nobody")
