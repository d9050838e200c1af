"""report_compute on tiny synthetic audits: keys, JSON safety, orderings reproduced or not."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from auditapp.agreement.report import REPORT_KEYS, report_compute

CONDITIONS = ("teacher", "student-before", "student-after")


def _audit(judge_rates, expert_rates, *, seed=0, traces=20, steps=5, experts=("dr-a", "dr-b")):
    """A judge on every step, experts on every other step, per-condition error shares."""
    rng = np.random.default_rng(seed)
    rows = []
    for condition in CONDITIONS:
        for t in range(traces):
            for s in range(steps):
                base = {
                    "step_id": f"{condition}-{t}-{s}",
                    "trace_id": f"{condition}-{t}",
                    "question_id": f"q{t}",
                    "condition": condition,
                }
                judge = rng.random() < judge_rates[condition]
                rows.append(
                    {
                        **base,
                        "evaluator": "judge-gpt",
                        "evaluator_kind": "judge",
                        "verdict": "abstain"
                        if rng.random() < 0.03
                        else ("error" if judge else "correct"),
                    }
                )
                if s % 2 == 0:
                    for expert in experts:
                        error = rng.random() < expert_rates[condition]
                        rows.append(
                            {
                                **base,
                                "evaluator": expert,
                                "evaluator_kind": "expert",
                                "verdict": "error" if error else "correct",
                                "inclusion_probability": 0.5,
                            }
                        )
    return pd.DataFrame(rows)


def _answers(seed=0, traces=20):
    rng = np.random.default_rng(seed)
    rows = []
    for condition, accuracy in zip(CONDITIONS, (0.8, 0.6, 0.85), strict=True):
        for t in range(traces):
            correct = rng.random() < accuracy
            rows.append(
                {
                    "trace_id": f"{condition}-{t}",
                    "question_id": f"q{t // 4}",
                    "condition": condition,
                    "sample_index": t % 4,
                    "answer": "A" if correct else "B",
                    "gold": "A",
                    "confidence": float(np.clip(accuracy + rng.normal(0, 0.1), 0, 1)),
                }
            )
    return pd.DataFrame(rows)


def _ratings(seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for trace_type, mean in (("long", 3.4), ("short", 4.2)):
        for t in range(15):
            for rater in ("r1", "r2"):
                for item in ("interpretability", "cognitive_load"):
                    value = int(np.clip(round(rng.normal(mean, 0.8)), 1, 5))
                    rows.append(
                        {
                            "trace_id": f"{trace_type}-{t}",
                            "trace_type": trace_type,
                            "rater": rater,
                            "item": item,
                            "value": value,
                        }
                    )
    return pd.DataFrame(rows)


JUDGE = {"teacher": 0.15, "student-before": 0.30, "student-after": 0.50}
SAME = {"teacher": 0.10, "student-before": 0.30, "student-after": 0.55}
REVERSED = {"teacher": 0.55, "student-before": 0.30, "student-after": 0.10}


def _has_nan(value):
    if isinstance(value, float):
        return math.isnan(value) or math.isinf(value)
    if isinstance(value, dict):
        return any(_has_nan(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_nan(v) for v in value)
    return False


def test_report_has_exactly_the_issue_keys_and_is_plain_json():
    # given
    labels = _audit(JUDGE, SAME)
    # when
    report = report_compute(
        labels, _answers(), _ratings(), rng=np.random.default_rng(0), resamples=200
    )
    # then
    assert tuple(report) == REPORT_KEYS
    assert not _has_nan(report)
    assert json.loads(json.dumps(report, allow_nan=False)) == report
    row = report["error_rates"][0]
    for key in (
        "evaluator",
        "evaluator_kind",
        "condition",
        "n",
        "n_abstain",
        "n_error",
        "error_rate",
        "ci_low",
        "ci_high",
        "wilson_low",
        "wilson_high",
        "abstain_rate",
        "error_rate_abstain_as_error",
        "error_rate_abstain_as_correct",
    ):
        assert key in row
    assert set(report["ordering_agreement"][0]) >= {
        "a",
        "b",
        "kendall_tau",
        "same_ordering",
        "p_same_ordering",
    }
    assert set(report["answer_metrics"][0]) >= {
        "condition",
        "accuracy",
        "sc_at_k",
        "ece",
        "brier",
        "n",
    }
    assert report["likert"] is not None
    assert report["ppi"]["rows"] and report["judge_by_condition"]["rows"]


def test_pooled_expert_row_and_one_row_per_evaluator_and_condition():
    # given
    labels = _audit(JUDGE, SAME)
    # when
    report = report_compute(labels, rng=np.random.default_rng(0), resamples=100)
    # then
    keys = {(r["evaluator"], r["condition"]) for r in report["error_rates"]}
    evaluators = {"dr-a", "dr-b", "judge-gpt", "expert"}
    assert keys == {(e, c) for e in evaluators for c in CONDITIONS}
    pooled = [r for r in report["error_rates"] if r["evaluator"] == "expert"]
    assert all(r["pooled"] and r["evaluator_kind"] == "expert" for r in pooled)
    assert not any(r["evaluator"] == "judge" for r in report["error_rates"])


def _agreement(report, a, b):
    (row,) = [r for r in report["ordering_agreement"] if {r["a"], r["b"]} == {a, b}]
    return row


def test_expert_reproduces_the_judge_ordering():
    # given
    labels = _audit(JUDGE, SAME, traces=40)
    # when
    report = report_compute(labels, rng=np.random.default_rng(1), resamples=500)
    # then
    row = _agreement(report, "expert", "judge-gpt")
    assert row["same_ordering"] is True
    assert row["kendall_tau"] == pytest.approx(1.0)
    assert row["p_same_ordering"] > 0.8
    ranking = {o["evaluator"]: o["ranking"] for o in report["orderings"]}
    assert ranking["judge-gpt"] == ranking["expert"] == list(CONDITIONS)


def test_expert_does_not_reproduce_the_judge_ordering():
    # given
    labels = _audit(JUDGE, REVERSED, traces=40)
    # when
    report = report_compute(labels, rng=np.random.default_rng(1), resamples=500)
    # then
    row = _agreement(report, "expert", "judge-gpt")
    assert row["same_ordering"] is False
    assert row["kendall_tau"] == pytest.approx(-1.0)
    assert row["p_same_ordering"] < 0.05
    assert not any({r["a"], r["b"]} == {"expert", "dr-a"} for r in report["ordering_agreement"])


def test_sections_without_input_are_empty_not_errors():
    # given: a judge alone, no answers, no ratings
    labels = _audit(JUDGE, SAME, experts=())
    # when
    report = report_compute(labels, rng=np.random.default_rng(0), resamples=50)
    # then
    assert report["answer_metrics"] == [] and report["trace_vs_answer"] == []
    assert report["likert"] is None and report["ppi"] is None
    assert report["judge_by_condition"] is None
    assert report["pairwise_agreement"] == [] and report["ordering_agreement"] == []
    assert report["robustness"]["hidden_repeats"] is None


def test_empty_labels_give_an_empty_report():
    # given
    labels = _audit(JUDGE, SAME).iloc[:0]
    # when
    report = report_compute(labels, rng=np.random.default_rng(0), resamples=10)
    # then
    assert tuple(report) == REPORT_KEYS
    assert report["error_rates"] == [] and report["orderings"] == []


def test_same_seed_gives_the_same_report():
    # given
    labels = _audit(JUDGE, SAME)
    # when
    first = report_compute(labels, _answers(), rng=np.random.default_rng(5), resamples=100)
    second = report_compute(labels, _answers(), rng=np.random.default_rng(5), resamples=100)
    # then
    assert first == second


def test_abstain_rule_changes_the_rate_and_is_stated():
    # given
    labels = _audit(JUDGE, SAME)
    # when
    excluded = report_compute(labels, rng=np.random.default_rng(0), resamples=20)
    as_error = report_compute(
        labels, rng=np.random.default_rng(0), resamples=20, abstain_rule="error"
    )
    # then
    judge_ex = next(r for r in excluded["error_rates"] if r["evaluator"] == "judge-gpt")
    judge_err = next(r for r in as_error["error_rates"] if r["evaluator"] == "judge-gpt")
    assert judge_err["error_rate"] == pytest.approx(judge_ex["error_rate_abstain_as_error"])
    assert as_error["methods"]["abstain_rule"] == "error"


def test_methods_state_every_convention():
    # given
    labels = _audit(JUDGE, SAME)
    # when
    methods = report_compute(labels, rng=np.random.default_rng(0), resamples=123, ece_bins=15)[
        "methods"
    ]
    # then
    assert "123 resamples" in methods["bootstrap"]
    assert "15 equal-width" in methods["ece"]
    assert "lowest sample_index" in methods["self_consistency"]
    assert "1/inclusion_probability" in methods["ppi"]
    assert "abstentions are left out" in methods["error_rate"]
    assert "95%" in methods["confidence_level"]


def test_agreement_sections_report_abstain_both_ways():
    # given
    labels = _audit(JUDGE, SAME)
    # when
    report = report_compute(labels, rng=np.random.default_rng(0), resamples=20)
    # then
    assert {r["abstain"] for r in report["pairwise_agreement"]} == {"category", "missing"}
    kinds = {(r["evaluator_kind"], r["abstain"]) for r in report["multi_rater"]}
    assert kinds == {
        (None, "category"),
        (None, "missing"),
        ("expert", "category"),
        ("expert", "missing"),
    }


def test_robustness_covers_each_segmentation():
    # given: the same traces cut two ways
    fine = _audit(JUDGE, SAME).assign(segmentation="sentence")
    coarse = (
        _audit(JUDGE, SAME, seed=9, steps=2)
        .assign(segmentation="paragraph")
        .assign(step_id=lambda f: "p-" + f["step_id"])
    )
    labels = pd.concat([fine, coarse], ignore_index=True)
    # when
    report = report_compute(labels, rng=np.random.default_rng(0), resamples=50)
    # then
    gaps = report["robustness"]["segmentation_gaps"]
    assert {g["segmentation"] for g in gaps} == {"sentence", "paragraph"}
    assert "'sentence'" in report["methods"]["segmentation"]  # the one with most labels
    n_judge = sum(r["n"] for r in report["error_rates"] if r["evaluator"] == "judge-gpt")
    assert n_judge == len(fine[fine["evaluator"] == "judge-gpt"])


def test_hidden_repeats_reach_the_robustness_section():
    # given
    repeats = pd.DataFrame(
        {
            "rater": ["dr-a"] * 4,
            "step_id": ["1", "2", "3", "4"],
            "first": ["error", "correct", "correct", "error"],
            "second": ["error", "correct", "error", "error"],
        }
    )
    # when
    report = report_compute(
        _audit(JUDGE, SAME), rng=np.random.default_rng(0), resamples=20, repeats=repeats
    )
    # then
    (row,) = report["robustness"]["hidden_repeats"]
    assert row["rater"] == "dr-a" and row["agreement"] == 0.75


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        pytest.param({"resamples": 0}, ValueError, "resamples", id="resamples"),
        pytest.param({"ece_bins": 0}, ValueError, "ece_bins", id="ece-bins"),
        pytest.param({"abstain_rule": "drop"}, ValueError, "abstain_rule", id="abstain"),
        pytest.param({"rng": 42}, TypeError, "Generator", id="seed-not-rng"),
        pytest.param({"segmentation": "words"}, ValueError, "segmentation", id="segmentation"),
    ],
)
def test_bad_options_raise_up_front(options, error, message):
    # given
    kwargs = {"rng": np.random.default_rng(0), "resamples": 10, **options}
    # when / then
    with pytest.raises(error, match=message):
        report_compute(_audit(JUDGE, SAME), **kwargs)


def test_bad_answer_value_names_row_and_column():
    # given
    answers = _answers()
    answers.loc[3, "confidence"] = 2.0
    # when / then
    with pytest.raises(ValueError, match=r"answers row 3, column 'confidence'"):
        report_compute(_audit(JUDGE, SAME), answers, rng=np.random.default_rng(0), resamples=10)
