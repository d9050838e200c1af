"""Sample-size planner against published values, the textbook formula and statsmodels."""

import math

import pytest
from scipy import stats
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize

from auditapp.agreement.planning import design_effect, power, sample_size


def _fleiss_no_correction(p1, p2, alpha=0.05, power_=0.8):
    """Fleiss, Levin & Paik (2003), eq. 4.14, without the continuity correction."""
    za = stats.norm.ppf(1 - alpha / 2)
    zb = stats.norm.ppf(power_)
    pbar = (p1 + p2) / 2
    top = za * math.sqrt(2 * pbar * (1 - pbar)) + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    return (top / (p2 - p1)) ** 2


def test_published_value_for_p_0_3_vs_0_5():
    # given: G*Power / Cohen arcsine test, p1 = 0.3, p2 = 0.5, alpha 0.05, power 0.8 → 93
    #        per group; Fleiss et al. (2003) eq. 4.14 without correction → 93.0 as well
    # when
    plan = sample_size(0.3, 0.5)
    # then
    assert plan.n_per_condition == 93
    assert plan.effect_size == pytest.approx(0.4115168, abs=1e-6)
    assert math.ceil(_fleiss_no_correction(0.3, 0.5)) == 93


@pytest.mark.parametrize(
    ("p1", "p2", "target"),
    [
        pytest.param(0.306, 0.503, 0.8, id="medqa-judge-rates"),
        pytest.param(0.1, 0.2, 0.9, id="small-rates"),
        pytest.param(0.5, 0.45, 0.8, id="small-difference"),
    ],
)
def test_sample_size_matches_statsmodels_and_textbook(p1, p2, target):
    # given
    h = abs(proportion_effectsize(p2, p1))
    raw = NormalIndPower().solve_power(effect_size=h, alpha=0.05, power=target)
    # when
    plan = sample_size(p1, p2, power=target)
    # then: the arcsine and the Fleiss formula agree within a few percent
    assert plan.n_per_condition == math.ceil(raw)
    assert plan.n_per_condition == pytest.approx(
        _fleiss_no_correction(p1, p2, power_=target), rel=0.05
    )


def test_design_effect_inflates_and_power_inverts():
    # given: 5 labelled steps per trace, ICC 0.1 → deff 1.4
    # when
    plan = sample_size(0.3, 0.5, steps_per_trace=5, icc=0.1)
    achieved = power(0.3, 0.5, plan.n_per_condition, steps_per_trace=5, icc=0.1)
    # then
    assert plan.design_effect == pytest.approx(1.4)
    assert plan.n_per_condition == math.ceil(92.696 * 1.4)
    assert plan.n_traces_per_condition == math.ceil(plan.n_per_condition / 5)
    assert achieved.power == pytest.approx(0.8, abs=0.005)
    assert achieved.power >= 0.8


def test_power_grows_with_n_and_matches_statsmodels():
    # given
    h = abs(proportion_effectsize(0.5, 0.3))
    # when
    small, large = power(0.3, 0.5, 50).power, power(0.3, 0.5, 200).power
    # then
    assert small < large
    assert small == pytest.approx(NormalIndPower().power(h, nobs1=50, alpha=0.05))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(lambda: sample_size(0.3, 0.3), "must differ", id="no-difference"),
        pytest.param(lambda: sample_size(0.0, 0.3), "p1 must lie", id="p1-zero"),
        pytest.param(lambda: sample_size(0.3, 0.5, power=1.0), "power", id="power"),
        pytest.param(lambda: power(0.3, 0.5, 0), "n_per_condition", id="n-zero"),
        pytest.param(lambda: design_effect(5, 1.5), "icc", id="icc"),
    ],
)
def test_bad_planner_input_raises(call, message):
    # given / when / then
    with pytest.raises(ValueError, match=message):
        call()
