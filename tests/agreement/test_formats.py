"""The labels validator gives the same table whatever dtype the id columns arrive in."""

import pandas as pd
import pytest

from auditapp.agreement.formats import labels_validate

BASE = {
    "step_id": ["s1", "s2", "s3", "s1"],
    "trace_id": ["t1", "t1", "t2", "t1"],
    "question_id": ["q1", "q1", "q2", "q1"],
    "condition": ["A", "A", "B", "A"],
    "evaluator": ["judge", "judge", "judge", "expert-1"],
    "evaluator_kind": ["judge", "judge", "judge", "expert"],
    "verdict": ["error", "correct", "abstain", "error"],
}


def _frame(kind: str) -> pd.DataFrame:
    frame = pd.DataFrame(BASE)
    if kind == "object":
        return frame.astype(object)
    if kind == "arrow":
        return frame.astype("string[pyarrow]")
    if kind == "categorical":
        return frame.astype("category")
    if kind == "padded":
        return frame.astype(object).map(lambda v: f"  {v} ")
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["object", "arrow", "categorical", "padded"])
def test_every_dtype_gives_the_same_clean_text(kind):
    # given the same labels in another dtype
    frame = _frame(kind)
    # when
    out = labels_validate(frame)
    # then
    expected = labels_validate(pd.DataFrame(BASE))
    assert out.astype(object).equals(expected.astype(object))
    assert out["step_id"].tolist() == ["s1", "s2", "s3", "s1"]


def test_integer_ids_become_text():
    # given ids read as integers
    frame = pd.DataFrame(BASE).assign(step_id=[1, 2, 3, 1], trace_id=[10, 10, 20, 10])
    # when
    out = labels_validate(frame)
    # then
    assert out["step_id"].tolist() == ["1", "2", "3", "1"]
    assert out["trace_id"].tolist() == ["10", "10", "20", "10"]


@pytest.mark.parametrize("kind", ["object", "arrow", "categorical"])
def test_duplicate_and_inconsistency_messages_do_not_depend_on_dtype(kind):
    # given a repeated (step, evaluator) and, separately, a trace under two conditions
    repeated = _frame(kind).iloc[[0, 1, 0]].reset_index(drop=True)
    moved = pd.DataFrame(BASE).assign(condition=["A", "B", "B", "A"])
    moved = moved.astype("category") if kind == "categorical" else moved
    # when / then
    with pytest.raises(ValueError, match=r"labels row 2: evaluator 'judge' labels step 's1'"):
        labels_validate(repeated)
    with pytest.raises(
        ValueError, match=r"row 1, column 'condition': trace_id 't1' has 'B' here but 'A'"
    ):
        labels_validate(moved)


def _with_mode(modes, indexes):
    n = len(modes)
    return pd.DataFrame(
        {
            "step_id": [f"s{i}" for i in range(n)],
            "trace_id": ["t1"] * n,
            "question_id": ["q1"] * n,
            "condition": ["A"] * n,
            "evaluator": ["e"] * n,
            "evaluator_kind": ["expert"] * n,
            "verdict": ["correct"] * n,
            "mode": modes,
            "step_index": indexes,
        }
    )


def test_the_labelling_mode_and_step_index_are_kept():
    out = labels_validate(_with_mode(["first_error", "trace", None], ["0", 1, None]))
    assert list(out["mode"][:2]) == ["first_error", "trace"]
    assert pd.isna(out["mode"][2])  # judges and the reference: missing, as control columns
    assert out["step_index"].tolist()[:2] == [0.0, 1.0]


def test_an_unknown_labelling_mode_is_refused():
    with pytest.raises(ValueError, match="column 'mode'"):
        labels_validate(_with_mode(["steps", "sideways"], [0, 1]))
