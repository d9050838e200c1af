"""Blinding checks: text leakage AUC, blinding indices from guesses, hidden-repeat consistency.

Published values: the R package ``BI`` (Mercaldo & Schwartz; its Julia port
BlindingIndex.jl prints the same) on the disulfiram trial of James et al. (1996), treated arm
guesses 48 treatment / 4 placebo / 330 don't know, placebo arm 22 / 30 / 319: Bang's BI
treatment 0.115 (SE 0.018, 95% CI 0.08 to 0.15), placebo 0.022 (SE 0.019, -0.016 to 0.06);
James' BI 0.896.
"""

import time

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from auditapp.agreement.blinding import (
    BlindingCheck,
    _macro_auc,
    blinding_check,
    blinding_index,
    blinding_summary,
    hidden_repeat_consistency,
    james_blinding_index,
)

_VOCABULARY = """
sodium potassium renal dose therefore risk acute level patient chronic failure clearance
increase decrease likely because answer option fluid loss
"""
WORDS = np.array(_VOCABULARY.split())


def random_steps(rng: np.random.Generator, n: int) -> list[str]:
    return [" ".join(rng.choice(WORDS, size=rng.integers(6, 16))) for _ in range(n)]


def traces(n_traces: int, steps_per_trace: int, conditions: tuple[str, ...]):
    """Condition and trace id of each step, conditions alternating over traces."""
    trace_ids = np.repeat(np.arange(n_traces), steps_per_trace)
    condition = [conditions[t % len(conditions)] for t in trace_ids]
    return condition, trace_ids


DISULFIRAM = (
    [("T", "T")] * 48
    + [("T", "P")] * 4
    + [("T", "dk")] * 330
    + [("P", "T")] * 22
    + [("P", "P")] * 30
    + [("P", "dk")] * 319
)


# ----------------------------------------------------------------------- AUC arithmetic


@pytest.mark.parametrize("k", [2, 3, 4], ids=["binary", "three-class", "four-class"])
def test_auc_arithmetic_matches_sklearn_including_ties_and_weights(k):
    # given coarse (tied) scores and integer case weights
    rng = np.random.default_rng(k)
    n = 300
    y = rng.integers(0, k, size=n)
    proba = rng.dirichlet(np.ones(k), size=n).round(1) + 0.2 * np.eye(k)[y]
    proba /= proba.sum(axis=1, keepdims=True)
    weights = rng.integers(0, 4, size=n).astype(float)

    # when
    plain_auc, weighted_auc = _macro_auc(proba, y, np.stack([np.ones(n), weights]))

    # then sklearn's ROC AUC (one-vs-rest macro), unweighted and with sample weights
    def reference(sample_weight):
        if k == 2:
            return roc_auc_score(y, proba[:, 1], sample_weight=sample_weight)
        return roc_auc_score(
            y, proba, multi_class="ovr", average="macro", sample_weight=sample_weight
        )

    assert plain_auc == pytest.approx(reference(None))
    assert weighted_auc == pytest.approx(reference(weights))


# ----------------------------------------------------------------------- blinding_check


def test_blinding_check_finds_an_injected_condition_marker():
    # given 120 traces x 5 steps where one condition's steps often end with "Hence,"
    rng = np.random.default_rng(0)
    condition, trace_ids = traces(120, 5, ("student", "teacher"))
    texts = [
        text + (" Hence," if c == "teacher" and rng.random() < 0.8 else "")
        for text, c in zip(random_steps(rng, len(condition)), condition, strict=True)
    ]

    # when
    check = blinding_check(
        texts, condition, groups=trace_ids, rng=np.random.default_rng(1), resamples=300
    )

    # then
    assert isinstance(check, BlindingCheck)
    assert check.auc > 0.85
    assert check.ci_low > 0.8
    assert (check.n, check.n_groups, check.folds) == (600, 120, 5)
    assert check.conditions == ("student", "teacher")


@pytest.mark.parametrize("seed", [0, 1, 2], ids=["seed0", "seed1", "seed2"])
def test_blinding_check_interval_covers_one_half_when_text_is_uninformative(seed):
    # given steps drawn from the same distribution under three conditions
    rng = np.random.default_rng(seed)
    condition, trace_ids = traces(150, 4, ("after", "before", "teacher"))
    texts = random_steps(rng, len(condition))

    # when
    check = blinding_check(texts, condition, groups=trace_ids, rng=rng, resamples=400)

    # then
    assert check.ci_low <= 0.5 <= check.ci_high
    assert "one-vs-rest" in check.method


def test_blinding_check_keeps_the_steps_of_a_trace_in_one_fold():
    # given every trace has its own random signature word, unrelated to the condition
    rng = np.random.default_rng(5)
    condition, trace_ids = traces(100, 8, ("a", "b"))
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    signature = ["".join(rng.choice(letters, 10)) for _ in range(100)]
    texts = [
        f"{text} {signature[trace]}"
        for text, trace in zip(random_steps(rng, len(condition)), trace_ids, strict=True)
    ]

    # when
    grouped = blinding_check(texts, condition, groups=trace_ids, rng=rng, resamples=300)
    split = blinding_check(texts, condition, rng=rng, resamples=300)

    # then grouped folds cannot learn a trace's word from its siblings; split folds can
    assert grouped.ci_low <= 0.5 <= grouped.ci_high
    assert split.auc > 0.8


def test_blinding_check_is_reproducible_from_the_seed():
    # given
    rng = np.random.default_rng(9)
    condition, trace_ids = traces(60, 3, ("a", "b"))
    texts = random_steps(rng, len(condition))

    # when
    first = blinding_check(texts, condition, groups=trace_ids, rng=np.random.default_rng(3))
    second = blinding_check(texts, condition, groups=trace_ids, rng=np.random.default_rng(3))

    # then
    assert first == second


@pytest.mark.slow
def test_blinding_check_handles_twenty_thousand_short_texts_in_seconds():
    # given 2,000 traces x 10 steps, three conditions
    rng = np.random.default_rng(0)
    condition, trace_ids = traces(2000, 10, ("a", "b", "c"))
    texts = random_steps(rng, len(condition))

    # when
    start = time.perf_counter()
    blinding_check(texts, condition, groups=trace_ids, rng=rng)
    elapsed = time.perf_counter() - start

    # then about 3 s on two idle cores; the bound leaves room for a busy CI machine
    assert elapsed < 20


@pytest.mark.parametrize(
    ("texts", "conditions", "kwargs", "error", "message"),
    [
        (["x"] * 4, ["a", "b", "a"], {}, ValueError, "same length"),
        (["x"] * 4, ["a"] * 4, {}, ValueError, "at least two conditions"),
        (["x"] * 4, ["a", "b"] * 2, {}, ValueError, "folds=5 needs at least 5 groups"),
        (
            ["x"] * 10,
            ["a", "b"] * 5,
            {"groups": [0] * 10, "folds": 2},
            ValueError,
            "needs at least 2 groups",
        ),
        (["x"] * 10, ["a", "b"] * 5, {"folds": 1}, ValueError, "folds must be an integer"),
        (["x"] * 10, ["a", "b"] * 5, {"rng": 0}, TypeError, "numpy.random.Generator"),
        ("text", "ab", {}, ValueError, "not one string"),
    ],
    ids=[
        "length",
        "one-condition",
        "too-few-texts",
        "too-few-groups",
        "one-fold",
        "rng-int",
        "string",
    ],
)
def test_blinding_check_rejects_bad_input(texts, conditions, kwargs, error, message):
    # given
    options = {"rng": np.random.default_rng(0)} | kwargs

    # when / then
    with pytest.raises(error, match=message):
        blinding_check(texts, conditions, **options)


# ----------------------------------------------------------------------- blinding indices


def test_bang_index_reproduces_the_published_disulfiram_values():
    # given
    guesses = pd.DataFrame(DISULFIRAM, columns=["condition", "guess"])

    # when
    rows = {r["condition"]: r for r in blinding_index(guesses)}

    # then the BI package's output, and the counts behind it
    treated, placebo = rows["T"], rows["P"]
    assert (treated["n"], treated["n_correct"], treated["n_incorrect"]) == (382, 48, 4)
    assert treated["n_dont_know"] == 330
    assert round(treated["bang_bi"], 3) == 0.115
    assert round(treated["se"], 3) == 0.018
    assert (round(treated["ci_low"], 2), round(treated["ci_high"], 2)) == (0.08, 0.15)
    assert round(placebo["bang_bi"], 3) == 0.022
    assert round(placebo["se"], 3) == 0.019
    assert (round(placebo["ci_low"], 3), round(placebo["ci_high"], 2)) == (-0.016, 0.06)
    assert treated["bi_if_random"] == 0.0


def test_james_index_reproduces_the_published_disulfiram_value():
    # given
    guesses = pd.DataFrame(DISULFIRAM, columns=["condition", "guess"])

    # when / then
    assert round(james_blinding_index(guesses), 3) == 0.896


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([("A", "dk"), ("B", "no idea")] * 5, 1.0),
        ([("A", "A"), ("B", "B")] * 5, 0.0),
        ([("A", "A"), ("A", "B"), ("B", "A"), ("B", "B")] * 5, 0.5),
    ],
    ids=["all-dont-know", "all-correct", "random-guessing"],
)
def test_james_index_anchors(rows, expected):
    # given
    guesses = pd.DataFrame(rows, columns=["condition", "guess"])

    # when / then: 1 complete blinding, 0 complete unblinding, 0.5 random guessing
    assert james_blinding_index(guesses) == pytest.approx(expected)


def test_bang_index_reduces_multi_arm_guesses_to_correct_incorrect_dont_know():
    # given three arms; in arm A: 3 correct, 2 guessed B, 1 guessed C, 2 don't know
    guesses = pd.DataFrame(
        {
            "arm": ["A"] * 8 + ["B", "C"],
            "answer": ["A", "a ", "A", "B", "B", "C", "Don't know", "dont_know", "B", "dk"],
        }
    )

    # when
    rows = blinding_index(guesses, condition="arm", guess="answer")

    # then
    arm_a = rows[0]
    assert (arm_a["n_correct"], arm_a["n_incorrect"], arm_a["n_dont_know"]) == (3, 3, 2)
    assert arm_a["bang_bi"] == pytest.approx(0.0)
    assert arm_a["bi_if_random"] == pytest.approx((2 / 3 - 1) * 6 / 8)
    assert rows[2]["condition"] == "C"
    assert rows[2]["bang_bi"] == 0.0


def test_bang_index_skips_missing_guesses_and_reports_arms_without_guesses():
    # given arm B was never asked
    guesses = pd.DataFrame({"condition": ["A", "A", "B"], "guess": ["A", None, None]})

    # when
    rows = blinding_index(guesses, conditions=["A", "B"])

    # then
    assert rows[0]["n"] == 1 and rows[0]["bang_bi"] == 1.0
    assert rows[1]["n"] == 0 and rows[1]["bang_bi"] is None


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"condition": ["A", "B"], "guess": ["A", "maybe"]}), "'maybe' is neither"),
        (pd.DataFrame({"condition": ["A", "A"], "guess": ["A", "dk"]}), "at least two"),
        (pd.DataFrame({"condition": ["A"]}), "missing column\\(s\\) 'guess'"),
    ],
    ids=["unknown-guess", "one-arm", "missing-column"],
)
def test_blinding_index_rejects_bad_guesses(frame, message):
    # when / then
    with pytest.raises(ValueError, match=message):
        blinding_index(frame)


# ----------------------------------------------------------------------- hidden repeats


def test_hidden_repeat_consistency_per_rater_matches_sklearn():
    # given two clinicians' first and second verdicts on repeated steps
    rng = np.random.default_rng(4)
    first = rng.choice(["correct", "error", "abstain"], size=60, p=[0.6, 0.3, 0.1])
    flip = rng.random(60) < 0.25
    second = np.where(flip, rng.choice(["correct", "error", "abstain"], size=60), first)
    repeats = pd.DataFrame(
        {
            "rater": ["c2"] * 30 + ["c1"] * 30,
            "step_id": np.arange(60),
            "first": first,
            "second": second,
        }
    )

    # when
    rows = hidden_repeat_consistency(repeats)

    # then sorted by rater, with sklearn's kappa and the plain agreement share
    assert [r["rater"] for r in rows] == ["c1", "c2"]
    for row, part in zip(rows, (slice(30, 60), slice(0, 30)), strict=True):
        assert row["n"] == 30
        assert row["agreement"] == pytest.approx(np.mean(first[part] == second[part]))
        assert row["cohen_kappa"] == pytest.approx(cohen_kappa_score(first[part], second[part]))
        assert row["kappa_ci_low"] <= row["cohen_kappa"] <= row["kappa_ci_high"]


def test_hidden_repeat_consistency_with_one_verdict_only_has_no_kappa():
    # given a clinician who always said "correct", and a row with a missing second verdict
    repeats = pd.DataFrame(
        {
            "rater": ["c1"] * 3,
            "step_id": [1, 2, 3],
            "first": ["correct"] * 3,
            "second": ["correct", "correct", None],
        }
    )

    # when
    row = hidden_repeat_consistency(repeats)[0]

    # then
    assert (row["n"], row["agreement"], row["cohen_kappa"]) == (2, 1.0, None)


def test_hidden_repeat_consistency_needs_its_columns():
    # when / then
    with pytest.raises(ValueError, match="missing column\\(s\\) 'step_id', 'second'"):
        hidden_repeat_consistency(pd.DataFrame({"rater": ["c1"], "first": ["error"]}))


# ----------------------------------------------------------------------- the report section


def _guesses(rows):
    return pd.DataFrame(rows, columns=["condition", "option", "guess"])


def test_summary_gives_bang_index_when_every_answer_maps():
    # given the disulfiram guesses as probe answers that name the arms
    names = {"T": "treatment", "P": "placebo", "dk": "no idea"}
    rows = [(arm, names[g], None if g == "dk" else g) for arm, g in DISULFIRAM]
    # when
    section = blinding_summary(None, _guesses(rows), rng=np.random.default_rng(0))
    # then the published values, and the answers per option
    by_arm = {r["condition"]: r for r in section["index"]}
    assert round(by_arm["T"]["bang_bi"], 3) == 0.115
    assert round(by_arm["P"]["bang_bi"], 3) == 0.022
    assert by_arm["T"]["options"] == {"no idea": 330, "placebo": 4, "treatment": 48}
    assert section["guesses"]["mapped"] is True
    assert round(section["guesses"]["james_bi"], 3) == 0.896
    assert section["notes"] == ["classifier: no blinded step texts"]


def test_summary_without_a_mapping_gives_the_distribution_only():
    # given options that name no condition
    rows = [("A", "small model", None), ("A", "no idea", None), ("B", "big model", None)]
    # when
    section = blinding_summary(None, _guesses(rows), rng=np.random.default_rng(0))
    # then counts per option, no index, and a note that says why
    by_arm = {r["condition"]: r for r in section["index"]}
    assert by_arm["A"] == {
        "condition": "A",
        "n": 2,
        "n_dont_know": 1,
        "options": {"no idea": 1, "small model": 1},
    }
    assert section["guesses"]["mapped"] is False
    assert section["guesses"]["unmapped_options"] == ["big model", "small model"]
    assert any("Bang's index needs" in n for n in section["notes"])


def test_summary_classifier_on_leaky_texts_and_too_few_traces():
    # given texts whose condition shows in a word, steps grouped in traces
    rng = np.random.default_rng(3)
    condition, trace_ids = traces(40, 5, ("A", "B"))
    steps = random_steps(rng, 200)
    texts = [t + (" Hence" if c == "A" else "") for t, c in zip(steps, condition, strict=True)]
    frame = pd.DataFrame({"trace_id": trace_ids, "condition": condition, "text": texts})
    frame.attrs["n_population"] = 1000
    # when
    section = blinding_summary(frame, None, rng=np.random.default_rng(0), resamples=100)
    few = blinding_summary(frame.iloc[:10], None, rng=np.random.default_rng(0))
    # then
    classifier = section["classifier"]
    assert classifier["auc"] > 0.9 and classifier["ci_low"] > 0.5
    assert (classifier["n"], classifier["n_traces"], classifier["n_population"]) == (200, 40, 1000)
    assert few["classifier"] is None
    assert "at least 5 traces" in few["notes"][0]


def test_report_blinding_section_leaves_the_other_sections_unchanged():
    # given judge labels and texts of the same steps
    from auditapp.agreement.report import report_compute

    rng = np.random.default_rng(5)
    condition, trace_ids = traces(30, 4, ("A", "B", "C"))
    labels = pd.DataFrame(
        {
            "step_id": [f"s{i}" for i in range(120)],
            "trace_id": [f"t{t}" for t in trace_ids],
            "question_id": "q",
            "condition": condition,
            "evaluator": "judge",
            "evaluator_kind": "judge",
            "verdict": rng.choice(["correct", "error"], 120),
        }
    )
    texts = labels[["trace_id", "condition"]].assign(text=random_steps(rng, 120))
    guesses = _guesses([("A", "no idea", None), ("B", "b", "B")])
    # when
    plain_report = report_compute(labels, rng=np.random.default_rng(1), resamples=100)
    with_blinding = report_compute(
        labels, rng=np.random.default_rng(1), resamples=100, texts=texts, guesses=guesses
    )
    # then the blinding section is filled and nothing else moved
    assert plain_report["blinding"]["classifier"] is None
    assert 0.2 < with_blinding["blinding"]["classifier"]["auc"] < 0.8
    assert [r["condition"] for r in with_blinding["blinding"]["index"]] == ["A", "B", "C"]
    for key in plain_report:
        if key not in ("blinding", "methods", "hedging_language"):  # both read the texts
            assert plain_report[key] == with_blinding[key], key
    assert "near 0.5 is good" in with_blinding["methods"]["blinding_classifier"]


def test_grouping_by_question_removes_the_below_chance_bias_of_shared_content():
    # given every question answered under both conditions with the same words (no condition
    # signal at all), two samples per question and condition
    rng = np.random.default_rng(3)
    vocab = [f"w{i}" for i in range(400)]
    texts, conditions, traces, questions = [], [], [], []
    for q in range(60):
        topic = rng.choice(vocab, 6, replace=False)
        for condition in ("a", "b"):
            for sample in range(2):
                for _ in range(4):
                    texts.append(" ".join(rng.choice(topic, 5)))
                    conditions.append(condition)
                    traces.append(f"{q}-{condition}-{sample}")
                    questions.append(q)
    # when the folds hold out traces, or whole questions
    by_trace = blinding_check(
        texts, conditions, groups=traces, rng=np.random.default_rng(0), resamples=200
    )
    by_question = blinding_check(
        texts, conditions, groups=questions, rng=np.random.default_rng(0), resamples=200
    )
    # then holding out traces teaches the model "this question's text is the other arm"
    assert by_trace.ci_high < 0.45
    # and holding out questions shows no signal, as there is none
    assert by_question.ci_low < 0.5 < by_question.ci_high
