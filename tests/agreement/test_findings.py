"""Findings from the pre-stated rules: each verdict, on hand-made orderings and real audits."""

import numpy as np
import pandas as pd
import pytest

from auditapp.agreement.findings import FINDING_RULES, ordering_finding
from auditapp.agreement.report import report_compute


def _ordering(name, kind, rates, intervals):
    conditions = sorted(rates)
    differences = []
    for i, a in enumerate(conditions):
        for b in conditions[i + 1 :]:
            low, high = intervals[(a, b)]
            differences.append(
                {
                    "condition_a": a,
                    "condition_b": b,
                    "difference": rates[a] - rates[b],
                    "ci_low": low,
                    "ci_high": high,
                }
            )
    return {
        "evaluator": name,
        "evaluator_kind": kind,
        "ranking": sorted(rates, key=lambda c: (rates[c], c)),
        "rates": rates,
        "differences": differences,
    }


RATES = {"A": 0.1, "B": 0.3, "C": 0.5}
SIGNIFICANT = {("A", "B"): (-0.3, -0.1), ("A", "C"): (-0.5, -0.3), ("B", "C"): (-0.3, -0.1)}
WEAK_BC = {**SIGNIFICANT, ("B", "C"): (-0.35, 0.05)}


@pytest.mark.parametrize(
    ("judge", "expert", "same", "verdict"),
    [
        (SIGNIFICANT, SIGNIFICANT, True, "reproduces"),
        (SIGNIFICANT, WEAK_BC, True, "consistent_with"),
        (WEAK_BC, WEAK_BC, True, "consistent_with"),
    ],
    ids=["all-significant", "expert-weak", "both-weak"],
)
def test_same_point_ordering(judge, expert, same, verdict):
    # given
    a = _ordering("judge", "judge", RATES, judge)
    b = _ordering("dr", "expert", RATES, expert)
    agreement = {"conditions": ["A", "B", "C"], "same_ordering": same, "p_same_ordering": 0.41}
    # when
    finding = ordering_finding(a, b, agreement)
    # then
    assert finding["verdict"] == verdict
    assert finding["rule"] == FINDING_RULES[verdict]
    assert "P(same ordering) = 0.410" in finding["sentence"]
    if verdict == "consistent_with":
        assert "[-35.0%, 5.0%]" in finding["sentence"].replace("−", "-")


def test_a_significant_opposite_difference_does_not_reproduce():
    # given: the expert finds C significantly below B
    expert_rates = {"A": 0.1, "B": 0.5, "C": 0.3}
    expert = {("A", "B"): (-0.5, -0.3), ("A", "C"): (-0.3, -0.1), ("B", "C"): (0.05, 0.35)}
    a = _ordering("judge", "judge", RATES, WEAK_BC)
    b = _ordering("dr", "expert", expert_rates, expert)
    agreement = {"conditions": ["A", "B", "C"], "same_ordering": False, "p_same_ordering": 0.1}
    # when
    finding = ordering_finding(a, b, agreement)
    # then
    assert finding["verdict"] == "does_not_reproduce"
    assert len(finding["contradictions"]) == 1
    assert finding["sentence"].startswith("dr does not reproduce judge's ordering")


def test_an_opposite_point_whose_interval_holds_the_significant_difference_is_inconclusive():
    # given: the judge finds B significantly below C (−20 points); the expert's point puts C
    # below B, but their wide interval [−30, +40] still holds the judge's −20
    expert_rates = {"A": 0.1, "B": 0.45, "C": 0.4}
    expert = {("A", "B"): (-0.5, -0.2), ("A", "C"): (-0.45, -0.15), ("B", "C"): (-0.3, 0.4)}
    a = _ordering("judge", "judge", RATES, SIGNIFICANT)
    b = _ordering("dr", "expert", expert_rates, expert)
    agreement = {"conditions": ["A", "B", "C"], "same_ordering": False, "p_same_ordering": 0.4}
    # when
    finding = ordering_finding(a, b, agreement)
    # then no claim that the expert contradicts the judge: their data allow its difference
    assert finding["verdict"] == "inconclusive" and finding["contradictions"] == []
    assert "no interval rules out the other's difference" in finding["sentence"]


def test_an_opposite_point_whose_interval_rules_out_the_difference_does_not_reproduce():
    # given: as above, but the expert's interval [−2, +12] excludes the judge's −20 (though
    # not 0: the expert's own difference is not significant)
    expert_rates = {"A": 0.1, "B": 0.45, "C": 0.4}
    expert = {("A", "B"): (-0.5, -0.2), ("A", "C"): (-0.45, -0.15), ("B", "C"): (-0.02, 0.12)}
    a = _ordering("judge", "judge", RATES, SIGNIFICANT)
    b = _ordering("dr", "expert", expert_rates, expert)
    agreement = {"conditions": ["A", "B", "C"], "same_ordering": False, "p_same_ordering": 0.1}
    # when
    finding = ordering_finding(a, b, agreement)
    # then
    assert finding["verdict"] == "does_not_reproduce"
    (contradiction,) = finding["contradictions"]
    assert contradiction["a"]["condition_a"] == "B" and contradiction["a"]["condition_b"] == "C"
    assert "rules that difference out" in finding["sentence"]


def test_the_contradiction_is_read_whichever_way_the_pair_is_stored():
    # given the expert's B − C stored as C − B (the interval flipped with it)
    expert_rates = {"A": 0.1, "B": 0.45, "C": 0.4}
    b = _ordering("dr", "expert", expert_rates, {
        ("A", "B"): (-0.5, -0.2), ("A", "C"): (-0.45, -0.15), ("B", "C"): (-0.02, 0.12)
    })  # fmt: skip
    flipped = dict(b, differences=[
        d if (d["condition_a"], d["condition_b"]) != ("B", "C") else {
            "condition_a": "C", "condition_b": "B", "difference": -d["difference"],
            "ci_low": -d["ci_high"], "ci_high": -d["ci_low"]}
        for d in b["differences"]
    ])  # fmt: skip
    a = _ordering("judge", "judge", RATES, SIGNIFICANT)
    agreement = {"conditions": ["A", "B", "C"], "same_ordering": False, "p_same_ordering": 0.1}
    # when / then the same verdict as stored the other way
    assert ordering_finding(a, flipped, agreement)["verdict"] == "does_not_reproduce"
    assert ordering_finding(a, b, agreement)["verdict"] == "does_not_reproduce"


def test_different_orderings_without_significance_are_inconclusive():
    # given
    expert_rates = {"A": 0.1, "B": 0.45, "C": 0.4}
    weak = {pair: (-0.6, 0.6) for pair in SIGNIFICANT}
    a = _ordering("judge", "judge", RATES, weak)
    b = _ordering("dr", "expert", expert_rates, weak)
    agreement = {"conditions": ["A", "B", "C"], "same_ordering": False, "p_same_ordering": 0.3}
    # when / then
    assert ordering_finding(a, b, agreement)["verdict"] == "inconclusive"


def _audit(rng, *, rates, traces, steps=4, expert_share=1.0):
    rows = []
    for condition, rate in rates.items():
        for t in range(traces):
            propensity = rng.beta(rate * 8, (1 - rate) * 8)
            for s in range(steps):
                truth = rng.random() < propensity
                base = {
                    "step_id": f"{condition}{t}-{s}",
                    "trace_id": f"{condition}{t}",
                    "question_id": f"q{t}",
                    "condition": condition,
                }
                judge = truth if rng.random() < 0.9 else not truth
                rows.append({**base, "evaluator": "judge", "evaluator_kind": "judge",
                             "verdict": "error" if judge else "correct"})  # fmt: skip
                if rng.random() < expert_share:
                    rows.append({**base, "evaluator": "dr", "evaluator_kind": "expert",
                                 "verdict": "error" if truth else "correct"})  # fmt: skip
    return pd.DataFrame(rows)


def test_report_opens_with_findings_and_a_strong_effect_reproduces():
    # given: 3 well-separated arms, 80 traces each
    labels = _audit(np.random.default_rng(1), rates={"A": 0.1, "B": 0.35, "C": 0.6}, traces=80)
    # when
    report = report_compute(labels, rng=np.random.default_rng(0), resamples=400)
    # then
    assert next(iter(report)) == "findings"
    (finding,) = report["findings"]["items"]
    assert (finding["a"], finding["b"], finding["verdict"]) == ("judge", "dr", "reproduces")
    assert finding["table"] == "ordering_differences"
    assert report["findings"]["rules"] == FINDING_RULES


def test_a_small_expert_sample_is_only_consistent_with_the_judge():
    # given: the situation — close arms, a few expert labels per arm
    labels = _audit(
        np.random.default_rng(4), rates={"A": 0.25, "B": 0.3, "C": 0.35}, traces=40,
        expert_share=0.15,
    )  # fmt: skip
    # when
    report = report_compute(labels, rng=np.random.default_rng(0), resamples=400)
    # then: never "reproduces" on such evidence
    (finding,) = report["findings"]["items"]
    assert finding["verdict"] in ("consistent_with", "inconclusive")
    assert "P(same ordering)" in finding["sentence"]
