"""Controls: the ordering within each level of a covariate, against a direct recomputation."""

import numpy as np
import pandas as pd
import pytest

from auditapp.agreement.controls import step_thirds
from auditapp.agreement.report import report_compute


def _audit(rng, *, traces=60, steps=6):
    rows = []
    rates = {"A": 0.1, "B": 0.3, "C": 0.55}
    for condition, rate in rates.items():
        for t in range(traces):
            dataset = ["medqa", "pubmedqa"][t % 2]
            answer_correct = bool(rng.random() < 0.7)
            propensity = rng.beta(rate * 8, (1 - rate) * 8)
            for s in range(steps):
                truth = rng.random() < propensity
                base = {
                    "step_id": f"{condition}{t}-{s}",
                    "trace_id": f"{condition}{t}",
                    "question_id": f"q{t}",
                    "condition": condition,
                    "dataset": dataset,
                    "answer_correct": answer_correct,
                    "trace_type": "cot",
                    "step_position": step_thirds([s], [steps])[0],
                }
                for judge, blind in (("judge-blind", True), ("judge-raw", False)):
                    verdict = truth if rng.random() < 0.9 else not truth
                    rows.append({**base, "evaluator": judge, "evaluator_kind": "judge",
                                 "style_blind": blind,
                                 "verdict": "error" if verdict else "correct"})  # fmt: skip
                rows.append({**base, "evaluator": "dr", "evaluator_kind": "expert",
                             "verdict": "error" if truth else "correct"})  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def audit_and_report():
    labels = _audit(np.random.default_rng(3))
    return labels, report_compute(labels, rng=np.random.default_rng(0), resamples=300)


def test_controls_cover_each_covariate_with_two_levels(audit_and_report):
    # given
    _, report = audit_and_report
    controls = report["controls"]
    # then: trace_type has one level, so it is no control here
    names = {c["control"]: c["levels"] for c in controls["controls"]}
    assert names == {
        "answer_correct": ["correct", "incorrect"],
        "dataset": ["medqa", "pubmedqa"],
        "step_position": ["first", "last", "middle"],
    }


def test_control_error_rates_equal_a_direct_count_per_level(audit_and_report):
    # given
    labels, report = audit_and_report
    rows = report["controls"]["error_rates"]
    # then: every point estimate is the share of errors among that level's labels
    for row in rows:
        if row["pooled"]:
            continue
        column = row["control"]
        level = {"correct": True, "incorrect": False}.get(row["level"], row["level"])
        part = labels[
            (labels[column] == level)
            & (labels["evaluator"] == row["evaluator"])
            & (labels["condition"] == row["condition"])
        ]
        assert row["n"] == len(part)
        assert row["error_rate"] == pytest.approx((part["verdict"] == "error").mean())
        assert row["ci_low"] <= row["error_rate"] <= row["ci_high"]


def test_summary_says_whether_the_ordering_holds_in_each_level(audit_and_report):
    # given
    _, report = audit_and_report
    summary = report["controls"]["summary"]
    # then: one row per (control, level, judge–expert pair), with the findings' verdicts
    pairs = {(r["control"], r["level"], r["a"], r["b"]) for r in summary}
    assert ("dataset", "medqa", "judge-blind", "dr") in pairs
    assert ("answer_correct", "incorrect", "judge-raw", "dr") in pairs
    for row in summary:
        assert row["verdict"] in {
            "reproduces",
            "consistent_with",
            "does_not_reproduce",
            "inconclusive",
        }
        # well-separated arms: every level keeps the overall ordering
        assert row["same_as_overall_a"] and row["same_as_overall_b"]


def test_style_blind_and_raw_judges_are_compared(audit_and_report):
    # given
    _, report = audit_and_report
    # then
    (finding,) = report["controls"]["style_blind"]
    assert (finding["a"], finding["b"]) == ("judge-blind", "judge-raw")
    assert report["controls"]["style_blind_judges"] == {"judge-blind": True, "judge-raw": False}
    assert finding["verdict"] == "reproduces"


def test_segmentation_is_a_control_over_every_segmentation():
    # given: the same audit cut two ways
    labels = _audit(np.random.default_rng(5), traces=30, steps=4)
    other = labels.assign(
        step_id=labels["step_id"] + "-w", segmentation="whole"
    )  # the other cut: same verdicts, so the same rates
    both = pd.concat([labels.assign(segmentation="given"), other], ignore_index=True)
    # when
    report = report_compute(both, rng=np.random.default_rng(0), resamples=100)
    # then
    levels = {c["control"]: c["levels"] for c in report["controls"]["controls"]}
    assert levels["segmentation"] == ["given", "whole"]
    seg = [r for r in report["controls"]["error_rates"] if r["control"] == "segmentation"]
    by_level = {
        level: {
            (r["evaluator"], r["condition"]): r["error_rate"] for r in seg if r["level"] == level
        }
        for level in ("given", "whole")
    }
    assert by_level["given"] == by_level["whole"]
    # other controls count each label once (within the main segmentation)
    dataset = [
        r for r in report["controls"]["error_rates"]
        if r["control"] == "dataset" and r["evaluator"] == "dr"
    ]  # fmt: skip
    assert sum(r["n"] for r in dataset) == (labels["evaluator"] == "dr").sum()


def test_no_covariates_no_controls():
    # given
    labels = _audit(np.random.default_rng(1), traces=10, steps=2).drop(
        columns=["dataset", "answer_correct", "trace_type", "step_position", "style_blind"]
    )
    # when / then
    assert report_compute(labels, rng=np.random.default_rng(0), resamples=50)["controls"] is None


def test_shared_trace_draws_give_each_subset_its_own_bootstrap_totals():
    # given draws for two conditions and a subset of one condition's traces
    from auditapp.agreement.rates import TraceDraws

    labels = pd.DataFrame(
        {"condition": ["A"] * 5 + ["B"] * 3, "trace_id": [f"t{i}" for i in range(8)]}
    )
    draws = TraceDraws.draw(labels, resamples=50, rng=np.random.default_rng(2))
    per_trace = np.array([[1.0, 3.0], [0.0, 2.0]])  # (errors, steps) of t3 and t1
    # when
    totals = draws.totals("A", ["t3", "t1"], per_trace)
    # then row b is the counts of t3 and t1 in resample b times their sums
    counts = draws.counts["A"]
    columns = [list(draws.traces["A"]).index(t) for t in ("t3", "t1")]
    expected = counts[:, columns].astype(float) @ per_trace
    assert np.array_equal(totals, expected)
    assert np.all(counts.sum(axis=1) == 5)  # each resample draws 5 traces of A
    # and the same seed draws the same counts
    again = TraceDraws.draw(labels, resamples=50, rng=np.random.default_rng(2))
    assert np.array_equal(again.counts["B"], draws.counts["B"])


def test_control_intervals_match_an_independent_bootstrap_of_the_level():
    # given the audit's 'medqa' level of the expert in condition B
    # (60 traces in the level: the bootstrap interval, not the small-sample rule)
    labels = _audit(np.random.default_rng(3), traces=120)
    report = report_compute(labels, rng=np.random.default_rng(0), resamples=1000)
    row = next(
        r
        for r in report["controls"]["error_rates"]
        if (r["control"], r["level"], r["evaluator"], r["condition"])
        == ("dataset", "medqa", "dr", "B")
    )
    part = labels[
        (labels["dataset"] == "medqa")
        & (labels["evaluator"] == "dr")
        & (labels["condition"] == "B")
    ]
    per_trace = part.groupby("trace_id")["verdict"].agg(
        errors=lambda v: (v == "error").sum(), steps="size"
    )
    # when the level's traces alone are resampled (the classical scheme), 4,000 times
    rng = np.random.default_rng(11)
    k = len(per_trace)
    picks = rng.integers(0, k, size=(4000, k))
    rates = per_trace["errors"].to_numpy()[picks].sum(1) / per_trace["steps"].to_numpy()[picks].sum(
        1
    )
    low, high = np.quantile(rates, [0.025, 0.975])
    # then the shared-draw interval (the level's traces resampled within their condition)
    # has the same width and place up to Monte Carlo and subset-size noise
    assert row["interval_method"].startswith("cluster bootstrap")
    assert row["error_rate"] == pytest.approx(per_trace["errors"].sum() / per_trace["steps"].sum())
    assert row["ci_high"] - row["ci_low"] == pytest.approx(high - low, rel=0.15)
    assert row["ci_low"] == pytest.approx(low, abs=0.03)
    assert row["ci_high"] == pytest.approx(high, abs=0.03)
