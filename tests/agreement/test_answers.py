"""Answer metrics: accuracy, self-consistency@k, ECE, Brier; trace × answer correctness."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import brier_score_loss

from auditapp.agreement.answers import (
    answer_metrics,
    brier_score,
    expected_calibration_error,
    self_consistency,
    trace_vs_answer,
)
from auditapp.agreement.formats import answers_validate


def _answers(rows):
    """rows: (trace, question, condition, sample_index, answer, gold, confidence)."""
    return pd.DataFrame(
        rows,
        columns=[
            "trace_id",
            "question_id",
            "condition",
            "sample_index",
            "answer",
            "gold",
            "confidence",
        ],
    )


def test_ece_hand_computed_example():
    # given: 10 bins; conf 0.95, 0.91 (bin 9, acc 1/2), 0.62 (bin 6, acc 1), 0.3 (bin 3, acc 0)
    confidence = [0.95, 0.91, 0.62, 0.3]
    correct = [1, 0, 1, 0]
    # bin 9: |0.5 - 0.93| = 0.43 · 2/4; bin 6: |1 - 0.62| = 0.38 · 1/4; bin 3: 0.3 · 1/4
    expected = 0.43 * 0.5 + 0.38 * 0.25 + 0.3 * 0.25
    # when
    ece = expected_calibration_error(confidence, correct)
    # then
    assert ece == pytest.approx(expected)


@pytest.mark.parametrize(
    ("confidence", "bin_index"),
    [
        pytest.param(0.0, 0, id="zero-in-first"),
        pytest.param(0.3, 3, id="0.3-in-bin-3"),
        pytest.param(0.7, 7, id="0.7-in-bin-7"),
        pytest.param(1.0, 9, id="one-in-last"),
    ],
)
def test_ece_bin_edges_are_left_closed(confidence, bin_index):
    # given: a single correct answer; ECE = 1 - confidence whatever the bin, so compare
    #        with a second answer placed in the expected bin and wrong
    low = bin_index / 10
    # when
    ece = expected_calibration_error([confidence, low + 0.05], [1, 0])
    # then: both share a bin → |0.5 - mean conf|; otherwise the two terms add
    shared = abs(0.5 - (confidence + low + 0.05) / 2)
    assert ece == pytest.approx(shared)


@pytest.mark.parametrize("seed", [0, 1, 2], ids=lambda s: f"seed-{s}")
def test_brier_matches_sklearn(seed):
    # given
    rng = np.random.default_rng(seed)
    confidence = rng.random(200)
    correct = rng.random(200) < confidence
    # when
    score = brier_score(confidence, correct)
    # then
    assert score == pytest.approx(brier_score_loss(correct, confidence))


def test_ece_of_perfectly_calibrated_bins_is_zero():
    # given: in each bin the accuracy equals the confidence
    confidence = [0.25] * 4 + [0.75] * 4
    correct = [1, 0, 0, 0, 1, 1, 1, 0]
    # when / then
    assert expected_calibration_error(confidence, correct, bins=2) == pytest.approx(0.0)


def test_self_consistency_majority_and_tie_rule():
    # given: q1 majority B (correct); q2 tie A/C, A first seen at sample 0 → A (wrong);
    #        q3 no answers at all → incorrect
    answers = answers_validate(
        _answers(
            [
                ("a", "q1", "X", 0, "B", "B", None),
                ("b", "q1", "X", 1, "C", "B", None),
                ("c", "q1", "X", 2, "B", "B", None),
                ("d", "q2", "X", 1, "C", "C", None),
                ("e", "q2", "X", 0, "A", "C", None),
                ("f", "q3", "X", 0, None, "D", None),
            ]
        )
    )
    # when
    votes = self_consistency(answers).set_index("question_id")
    # then
    assert votes.loc["q1", "vote"] == "B" and votes.loc["q1", "correct"]
    assert votes.loc["q2", "vote"] == "A" and not votes.loc["q2", "correct"]
    assert votes.loc["q3", "vote"] is None and not votes.loc["q3", "correct"]


def test_answer_metrics_per_condition():
    # given
    answers = _answers(
        [
            ("a", "q1", "X", 0, "B", "B", 0.9),
            ("b", "q1", "X", 1, "B", "B", 0.8),
            ("c", "q1", "X", 2, "C", "B", 0.6),
            ("d", "q1", "Y", 0, "C", "B", None),
            ("e", "q1", "Y", 1, " B ", "B", 0.4),
        ]
    )
    # when
    x, y = answer_metrics(answers)
    # then
    assert (x.condition, x.n, x.n_questions, x.k_min, x.k_max) == ("X", 3, 1, 3, 3)
    assert x.accuracy == pytest.approx(2 / 3)
    assert x.sc_at_k == 1.0
    assert x.brier == pytest.approx(brier_score_loss([1, 1, 0], [0.9, 0.8, 0.6]))
    assert y.accuracy == 0.5  # " B " equals "B" after trimming
    assert y.n_confidence == 1  # the missing confidence is left out of ECE and Brier
    assert y.sc_at_k == 0.0  # tie C (sample 0) vs B (sample 1) → C


def test_trace_vs_answer_contingency_and_conditional_rates():
    # given: reference labels for 4 traces; answers for them
    label_rows = []
    for trace, verdicts in {
        "t1": ["correct", "correct"],
        "t2": ["correct", "error"],
        "t3": ["correct", "abstain"],
        "t4": ["error", "error"],
    }.items():
        for i, verdict in enumerate(verdicts):
            label_rows.append((f"{trace}-{i}", trace, "q", "X", "ref", "reference", verdict))
    labels = pd.DataFrame(
        label_rows,
        columns=[
            "step_id",
            "trace_id",
            "question_id",
            "condition",
            "evaluator",
            "evaluator_kind",
            "verdict",
        ],
    )
    answers = _answers(
        [
            ("t1", "q", "X", 0, "A", "A", 0.9),
            ("t2", "q", "X", 1, "A", "A", 0.9),
            ("t3", "q", "X", 2, "B", "A", 0.9),
            ("t4", "q", "X", 3, "B", "A", 0.9),
        ]
    )
    # when
    x, total = trace_vs_answer(labels, answers)
    # then: t1 ok/ok, t3 ok/wrong (abstain is not an error), t2 wrong/ok, t4 wrong/wrong
    assert (x.condition, total.condition) == ("X", "all")
    assert (
        x.trace_correct_answer_correct,
        x.trace_correct_answer_wrong,
        x.trace_wrong_answer_correct,
        x.trace_wrong_answer_wrong,
    ) == (1, 1, 1, 1)
    assert x.p_answer_correct_given_trace_correct == 0.5
    assert x.p_trace_correct_given_answer_correct == 0.5


def test_trace_vs_answer_without_reference_is_empty():
    # given
    labels = pd.DataFrame(
        {
            "step_id": ["s"],
            "trace_id": ["t1"],
            "question_id": ["q"],
            "condition": ["X"],
            "evaluator": ["j"],
            "evaluator_kind": ["judge"],
            "verdict": ["error"],
        }
    )
    answers = _answers([("t1", "q", "X", 0, "A", "A", 0.5)])
    # when / then
    assert trace_vs_answer(labels, answers) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            lambda f: f.assign(confidence=[1.5]),
            r"answers row 0, column 'confidence': 1.5 is outside \[0, 1\]",
            id="confidence",
        ),
        pytest.param(
            lambda f: f.assign(sample_index=[-1]),
            r"answers row 0, column 'sample_index'",
            id="sample-index",
        ),
        pytest.param(
            lambda f: f.assign(gold=[None]),
            r"answers row 0, column 'gold': value is missing",
            id="gold",
        ),
        pytest.param(lambda f: f.drop(columns="gold"), "missing column", id="no-gold"),
    ],
)
def test_bad_answers_raise_precise_errors(change, message):
    # given
    answers = change(_answers([("t1", "q", "X", 0, "A", "A", 0.5)]))
    # when / then
    with pytest.raises(ValueError, match=message):
        answer_metrics(answers)


def test_trace_vs_answer_tests_match_statsmodels_and_a_hand_made_fisher():
    # given: 40 verifiable traces, 28 / 12 answer correct among correct / wrong traces
    from math import comb

    from statsmodels.stats.contingency_tables import Table2x2

    from auditapp.agreement.answers import independence_tests

    table = [[28, 6], [12, 14]]
    # when
    got = independence_tests(table)
    # then: Pearson chi-square as statsmodels computes it (no continuity correction)
    expected = Table2x2(np.asarray(table)).test_nominal_association()
    assert got["chi2"] == pytest.approx(expected.statistic, rel=1e-12)
    assert got["chi2_p"] == pytest.approx(expected.pvalue, rel=1e-10)
    assert got["test"] == "chi-square" and got["p"] == got["chi2_p"]
    # Fisher two-sided: sum of hypergeometric tables no more likely than the observed one
    (a, b), (c, d) = table
    row1, col1, n = a + b, a + c, a + b + c + d

    def prob(x):
        return comb(col1, x) * comb(n - col1, row1 - x) / comb(n, row1)

    observed = prob(a)
    support = range(max(0, row1 + col1 - n), min(row1, col1) + 1)
    fisher = sum(prob(x) for x in support if prob(x) <= observed * (1 + 1e-7))
    assert got["fisher_p"] == pytest.approx(fisher, rel=1e-9)


def test_small_tables_use_fisher():
    # given: expected counts below 5
    from auditapp.agreement.answers import independence_tests

    # when
    got = independence_tests([[3, 1], [1, 4]])
    # then
    assert got["test"] == "fisher" and got["p"] == got["fisher_p"]
    assert independence_tests([[0, 0], [3, 2]])["chi2"] is None  # a zero margin
