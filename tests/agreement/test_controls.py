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
