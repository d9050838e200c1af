"""One answer rule everywhere: the report's is the import's (trimmed, ignoring case)."""

import pandas as pd

from annotations.services.imports import _answer_correct
from auditapp.agreement.formats import answers_validate


def test_answer_rule_ignores_case_and_surrounding_space_as_the_import_does():
    # given
    frame = pd.DataFrame(
        {
            "trace_id": ["a", "b", "c", "d"],
            "question_id": "q",
            "condition": "X",
            "sample_index": [0, 1, 2, 3],
            "answer": ["b", " B ", "Straße", "C"],
            "gold": ["B", "B", "STRASSE", "B"],
            "confidence": None,
        }
    )
    # when
    correct = answers_validate(frame)["correct"].tolist()
    # then
    assert correct == [True, True, True, False]
    assert correct == [
        _answer_correct(a, g) for a, g in zip(frame["answer"], frame["gold"], strict=True)
    ]
