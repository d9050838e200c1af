"""First-error indices and ProcessBench's metric: worked cases by hand, brute force, coverage."""

import itertools

import numpy as np
import pandas as pd
import pytest

from auditapp.agreement.first_error import (
    NO_ERROR,
    expert_consensus,
    first_error_evaluation,
    first_error_indices,
    harmonic_mean,
    processbench_scores,
)
from auditapp.agreement.rates import wilson_interval


def _long(rows):
    """rows: (evaluator, trace, "c e a ." string per position; "." = unlabelled)."""
    codes = {"c": "correct", "e": "error", "a": "abstain"}
    out = []
    for evaluator, trace, pattern in rows:
        for pos, code in enumerate(pattern, 1):
            if code != ".":
                out.append(
                    {
                        "evaluator": evaluator,
                        "trace": trace,
                        "position": pos,
                        "verdict": codes[code],
                    }
                )
    return pd.DataFrame(out)


def _by(indices):
    return {
        (r.evaluator, r.trace): (None if pd.isna(r.first_error) else int(r.first_error), r.reason)
        for r in indices.itertuples()
    }


def test_first_error_rule_worked_cases():
    rows = [
        ("x", "t1", "cceca"),  # first error at 3 (later steps do not matter)
        ("x", "t2", "ccccc"),  # no error
        ("x", "t3", "e...."),  # first error at 1: the first-error-mode shape
        ("x", "t4", "cc.e."),  # an unlabelled step before the error: undefined (gap)
        ("x", "t5", "cae.."),  # an abstention before the error: undefined (abstain)
        ("x", "t6", "cccc."),  # no error but the last step unlabelled: undefined (gap)
        ("x", "t7", "ccacc"),  # no error but an abstention: undefined (abstain)
        ("x", "t8", "cce.."),  # first-error mode's "marked step 3"
    ]
    lengths = {f"t{i}": 5 for i in range(1, 9)}
    got = _by(first_error_indices(_long(rows), n_steps=lengths))
    assert got == {
        ("x", "t1"): (3, ""),
        ("x", "t2"): (NO_ERROR, ""),
        ("x", "t3"): (1, ""),
        ("x", "t4"): (None, "gap"),
        ("x", "t5"): (None, "abstain"),
        ("x", "t6"): (None, "gap"),
        ("x", "t7"): (None, "abstain"),
        ("x", "t8"): (3, ""),
    }


def test_without_lengths_the_longest_labelled_position_is_the_length():
    # Evaluator y saw 4 steps of t; x labelled 3 correct: without n_steps, t has 4 steps, so
    # x's "no error" is undefined (step 4 unlabelled).
    got = _by(first_error_indices(_long([("x", "t", "ccc"), ("y", "t", "cccc")])))
    assert got[("x", "t")] == (None, "gap")
    assert got[("y", "t")] == (NO_ERROR, "")


def test_bad_input_is_refused():
    frame = _long([("x", "t", "cc")])
    with pytest.raises(ValueError, match="beyond"):
        first_error_indices(frame, n_steps={"t": 1})
    with pytest.raises(ValueError, match="lacks"):
        first_error_indices(frame, n_steps={"u": 3})
    with pytest.raises(ValueError, match="one verdict"):
        first_error_indices(pd.concat([frame, frame]))
    with pytest.raises(ValueError, match="column"):
        first_error_indices(frame.drop(columns="position"))


def test_processbench_scores_by_hand():
    # Reference: 4 erroneous traces (first errors 1, 2, 3, 2) and 3 correct ones.
    ref = pd.Series([1, 2, 3, 2, NO_ERROR, NO_ERROR, NO_ERROR], index=list("abcdefg"))
    # Predicted: hits a, b (2 of 4 erroneous: c says too late, d says no error);
    # on the correct traces e right, f flags step 2, g right: 2 of 3.
    pred = pd.Series([1, 2, 4, NO_ERROR, NO_ERROR, 2, NO_ERROR], index=list("abcdefg"))
    s = processbench_scores(pred, ref)
    assert (s["n_erroneous"], s["hits_erroneous"], s["n_correct"], s["hits_correct"]) == (
        4,
        2,
        3,
        2,
    )
    assert s["acc_erroneous"] == 0.5
    assert s["acc_correct"] == pytest.approx(2 / 3)
    # F1 = 2 · 1/2 · 2/3 / (1/2 + 2/3) = (2/3) / (7/6) = 4/7
    assert s["f1"] == pytest.approx(4 / 7)
    low, high = (float(b) for b in wilson_interval(2, 4))
    assert (s["acc_erroneous_low"], s["acc_erroneous_high"]) == pytest.approx((low, high))
    # Small classes: the Wilson box at 97.5 % per class.
    assert s["f1_interval_method"] == "wilson box"
    bl_e, bh_e = wilson_interval(2, 4, confidence_level=0.975)
    bl_c, bh_c = wilson_interval(2, 3, confidence_level=0.975)
    assert s["f1_low"] == pytest.approx(harmonic_mean(float(bl_e), float(bl_c)))
    assert s["f1_high"] == pytest.approx(harmonic_mean(float(bh_e), float(bh_c)))
    assert s["f1_low"] < s["f1"] < s["f1_high"]


def test_traces_undefined_on_either_side_are_left_out():
    ref = pd.Series([2, NO_ERROR, pd.NA, 3], index=list("abcd"), dtype="Int64")
    pred = pd.Series([2, NO_ERROR, 1, pd.NA], index=list("abcd"), dtype="Int64")
    s = processbench_scores(pred, ref)
    assert (s["n"], s["acc_erroneous"], s["acc_correct"], s["f1"]) == (2, 1.0, 1.0, 1.0)
    # A perfect score on 2 traces is not certainty: the interval is wide, never [1, 1].
    assert s["f1_low"] < 0.5 and s["f1_high"] == 1.0


def test_a_class_without_traces_has_no_f1():
    s = processbench_scores(pd.Series([2, 3]), pd.Series([2, 1]))
    assert s["acc_correct"] is None and s["f1"] is None and s["f1_low"] is None
    assert s["acc_erroneous"] == 0.5


def test_bootstrap_with_large_classes_is_seeded_and_brackets_f1():
    rng = np.random.default_rng(1)
    ref = pd.Series(np.r_[rng.integers(1, 6, 80), np.full(70, NO_ERROR)])
    pred = ref.copy()
    flip = rng.random(ref.size) < 0.3
    pred[flip] = rng.integers(1, 6, flip.sum())
    a = processbench_scores(pred, ref, rng=np.random.default_rng(7), resamples=500)
    b = processbench_scores(pred, ref, rng=np.random.default_rng(7), resamples=500)
    assert a == b
    assert a["f1_interval_method"] == "stratified bootstrap"
    assert a["f1_low"] < a["f1"] < a["f1_high"]


def _naive_first_error(labels: dict[int, str], n: int):
    for k in range(1, n + 1):
        v = labels.get(k)
        if v == "error":
            return k
        if v != "correct":
            return None
    return NO_ERROR


def test_brute_force_against_a_loop():
    rng = np.random.default_rng(3)
    rows, lengths, truth = [], {}, {}
    for t in range(300):
        n = int(rng.integers(1, 7))
        lengths[t] = n
        for e in ("x", "y"):
            labels = {}
            for k in range(1, n + 1):
                code = rng.choice(["correct", "correct", "correct", "error", "abstain", None])
                if code is not None:
                    labels[k] = str(code)
                    rows.append({"evaluator": e, "trace": t, "position": k, "verdict": str(code)})
            if labels:
                truth[(e, t)] = _naive_first_error(labels, n)
    got = first_error_indices(pd.DataFrame(rows), n_steps=lengths)
    got_map = {
        (r.evaluator, r.trace): (None if pd.isna(r.first_error) else int(r.first_error))
        for r in got.itertuples()
    }
    assert got_map == truth
    # The metric against a loop over the traces, y scored against x.
    x = got[got.evaluator == "x"].set_index("trace")["first_error"]
    y = got[got.evaluator == "y"].set_index("trace")["first_error"]
    s = processbench_scores(y, x)
    pairs = [
        (truth[("y", t)], truth[("x", t)])
        for t in lengths
        if truth.get(("x", t)) is not None and truth.get(("y", t)) is not None
    ]
    err = [p == r for p, r in pairs if r != NO_ERROR]
    ok = [p == NO_ERROR for p, r in pairs if r == NO_ERROR]
    assert (s["n_erroneous"], s["n_correct"]) == (len(err), len(ok))
    assert s["acc_erroneous"] == pytest.approx(sum(err) / len(err))
    assert s["acc_correct"] == pytest.approx(sum(ok) / len(ok))


def test_wilson_box_covers_f1_at_small_n():
    # Exact coverage over every outcome of two binomial classes (n = 6 and 4) at several
    # true accuracies: the box's coverage is at least the nominal 95 %.
    from math import comb

    for pa, pb in itertools.product((0.2, 0.5, 0.8, 0.95), repeat=2):
        true_f1 = harmonic_mean(pa, pb)
        covered = 0.0
        for ka in range(7):
            for kb in range(5):
                prob = comb(6, ka) * pa**ka * (1 - pa) ** (6 - ka)
                prob *= comb(4, kb) * pb**kb * (1 - pb) ** (4 - kb)
                ref = pd.Series([1] * 6 + [NO_ERROR] * 4)
                pred = pd.Series([1] * ka + [2] * (6 - ka) + [NO_ERROR] * kb + [3] * (4 - kb))
                s = processbench_scores(pred, ref)
                if s["f1_low"] <= true_f1 <= s["f1_high"]:
                    covered += prob
        assert covered >= 0.95, (pa, pb, covered)


def test_consensus_needs_a_strict_majority():
    rows = pd.DataFrame(
        {
            "evaluator": ["a", "b", "a", "b", "a", "b", "c"],
            "trace": [1, 1, 2, 2, 3, 3, 3],
            "first_error": pd.array([2, 2, 2, 3, 1, pd.NA, 1], dtype="Int64"),
        }
    )
    assert expert_consensus(rows, ["a", "b", "c"]).to_dict() == {1: 2, 3: 1}


def test_evaluation_judges_against_experts_and_experts_against_each_other():
    rows = [
        ("ann", "t1", "cce"),
        ("ann", "t2", "ccc"),
        ("ann", "t3", "e.."),
        ("bob", "t1", "cce"),
        ("bob", "t2", "ccc"),
        ("bob", "t3", "ce."),
        ("judge", "t1", "ce."),
        ("judge", "t2", "ccc"),
        ("judge", "t3", "e.."),
    ]
    out = first_error_evaluation(
        _long(rows),
        evaluator_kinds={"ann": "expert", "bob": "expert", "judge": "judge"},
        conditions={"t1": "A", "t2": "A", "t3": "B"},
        n_steps={"t1": 3, "t2": 3, "t3": 3},
        modes={"ann": "first_error", "judge": "first_error"},
    )
    table = {(r["condition"], r["evaluator"]): r for r in out["rows"]}
    # Consensus of ann and bob: t1 → 3, t2 → none, t3 → no majority (1 vs 2).
    judge = table[("(all)", "judge")]
    assert (judge["n_reference"], judge["n_erroneous"], judge["n_correct"]) == (2, 1, 1)
    assert (judge["acc_erroneous"], judge["acc_correct"], judge["f1"]) == (0.0, 1.0, 0.0)
    # ann against bob alone: t1 hit, t2 hit, t3 missed (1 vs 2).
    ann = table[("(all)", "ann")]
    assert (ann["acc_erroneous"], ann["acc_correct"], ann["reference"]) == (
        0.5,
        1.0,
        "other experts",
    )
    assert table[("B", "ann")]["n"] == 1 and table[("A", "ann")]["n"] == 2
    assert judge["mode"] == "first_error" and table[("(all)", "bob")]["mode"] == "steps"
    cov = {c["evaluator"]: c for c in out["coverage"]}
    assert cov["bob"]["n_defined"] == 3 and cov["judge"]["n_error"] == 2
