import json

import pytest
from django.test import override_settings

from annotations.models import Question, Step, Trace
from annotations.services.audits import audit_create
from annotations.services.imports import import_file
from auditapp.exceptions import ImportRejected

pytestmark = pytest.mark.django_db


def record(**overrides):
    base = {
        "question_id": "q1",
        "question": "Which is it?",
        "options": {"A": "one", "B": "two"},
        "gold_answer": "B",
        "condition": "teacher",
        "trace_id": "t1",
        "trace": "First paragraph.\n\nSecond paragraph.",
        "final_answer": "B",
        "confidence": 0.8,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def write_jsonl(tmp_path, records, name="traces.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def audit():
    return audit_create(slug="a1", name="Audit one")


def rejected(audit, path, **kwargs):
    with pytest.raises(ImportRejected) as info:
        import_file(audit=audit, path=path, **kwargs)
    return [str(p) for p in info.value.problems]


def assert_nothing_written(audit):
    assert not Trace.objects.filter(audit=audit).exists()
    assert not Step.objects.filter(audit=audit).exists()
    assert not Question.objects.filter(audit=audit).exists()
    assert not audit.conditions.exists()


def test_a_clean_file_is_imported_with_answer_correctness(audit, tmp_path):
    # given
    path = write_jsonl(
        tmp_path, [record(), record(trace_id="t2", final_answer="A", condition="student")]
    )
    # when
    result = import_file(audit=audit, path=path)
    # then
    assert (result.n_traces, result.n_steps, result.segmenters) == (2, 4, ["paragraphs"])
    assert dict(Trace.objects.values_list("external_id", "answer_correct")) == {
        "t1": True,
        "t2": False,
    }
    assert sorted(audit.conditions.values_list("name", flat=True)) == ["student", "teacher"]


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (['{"question_id": "q1",'], "line 1, column"),
        ([json.dumps(record()), "[1, 2]"], "line 2: a record must be a JSON object"),
        ([json.dumps(record(trace=...))], "line 1 (trace): is required"),
        ([json.dumps(record(trace="   "))], "line 1 (trace): is empty"),
        ([json.dumps(record(condition=...))], "line 1 (condition): is required"),
        ([json.dumps(record(confidence="high"))], "line 1 (confidence): must be a number"),
        ([json.dumps(record(confidence=1.5))], "line 1 (confidence): must be a number"),
        ([json.dumps(record(sample_index=-1))], "line 1 (sample_index): must be a whole"),
        ([json.dumps(record(options=7))], "line 1 (options): must be an object"),
        ([json.dumps(record(trace=["a"]))], "line 1 (trace): must be a string, not list"),
        ([json.dumps(record(metadata=[1]))], "line 1 (metadata): must be an object"),
        ([json.dumps(record(steps="a b"))], "line 1 (steps): must be a list"),
        (
            [json.dumps(record(steps=[{"text": "a", "reference_verdict": "maybe"}]))],
            "reference_verdict must be one of correct, error",
        ),
        ([json.dumps(record(extra_field=1))], "line 1: unknown field(s) extra_field"),
        (
            [json.dumps(record()), json.dumps(record())],
            "line 2 (trace_id): trace id 't1' already appears at line 1",
        ),
        (
            [json.dumps(record()), json.dumps(record(trace_id="t2", question="Other stem?"))],
            "line 2 (question_id): question 'q1' differs from line 1",
        ),
        (["", "  "], "file: the file holds no trace records"),
    ],
    ids=[
        "invalid-json",
        "not-an-object",
        "missing-trace",
        "empty-trace",
        "missing-condition",
        "confidence-text",
        "confidence-range",
        "negative-sample-index",
        "options-type",
        "wrong-type",
        "metadata-type",
        "steps-type",
        "bad-reference-verdict",
        "unknown-field",
        "duplicate-trace-id",
        "question-differs",
        "empty-file",
    ],
)
def test_bad_jsonl_is_rejected_with_line_numbers_and_nothing_written(
    audit, tmp_path, lines, expected
):
    # given
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    # when
    problems = rejected(audit, path)
    # then
    assert any(expected in p for p in problems), problems
    assert_nothing_written(audit)


def test_every_problem_is_listed_not_just_the_first(audit, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps(record(trace=...)),
                "{oops",
                json.dumps(record(trace_id="t3", confidence=2)),
            ]
        )
        + "\n"
    )
    problems = rejected(audit, path)
    assert [p.split(":")[0].split(" (")[0].split(",")[0] for p in problems] == [
        "line 1",
        "line 2",
        "line 3",
    ]


def test_non_utf8_bytes_are_reported_with_line_and_column(audit, tmp_path):
    path = tmp_path / "latin1.jsonl"
    good = json.dumps(record()).encode()
    bad = json.dumps(record(trace_id="t2", trace="caf\u00e9")).encode().replace(b"\\u00e9", b"\xe9")
    path.write_bytes(good + b"\n" + bad + b"\n")
    problems = rejected(audit, path)
    assert any(p.startswith("line 2, column") and "not UTF-8" in p for p in problems), problems
    assert_nothing_written(audit)


def test_trace_over_the_size_limit_is_rejected(audit, tmp_path):
    path = write_jsonl(tmp_path, [record(trace="x. " * 100)])
    with override_settings(STEPAUDIT_MAX_TRACE_CHARS=50):
        problems = rejected(audit, path)
    assert any("the limit is 50" in p for p in problems), problems


def test_segmenter_that_yields_no_steps_is_rejected(audit, tmp_path):
    path = write_jsonl(tmp_path, [record(trace="No list markers here.")])
    problems = rejected(audit, path, segmenter_names=["numbered"])
    assert problems == ["line 1 (trace): segmenter 'numbered' yields no steps for this trace"]
    assert_nothing_written(audit)


def test_given_segmenter_without_steps_is_rejected(audit, tmp_path):
    path = write_jsonl(tmp_path, [record()])
    problems = rejected(audit, path, segmenter_names=["given"])
    assert "segmenter 'given' yields no steps" in problems[0]


def test_unknown_segmenter_is_rejected(audit, tmp_path):
    path = write_jsonl(tmp_path, [record()])
    assert "unknown segmenter 'words'" in rejected(audit, path, segmenter_names=["words"])[0]


def test_too_many_steps_rolls_back_everything(audit, tmp_path):
    # given a file whose second trace segments into too many steps (found while writing)
    path = write_jsonl(tmp_path, [record(), record(trace_id="t2", trace="A.\n\nB.\n\nC.")])
    # when
    with override_settings(STEPAUDIT_MAX_STEPS_PER_TRACE=2):
        problems = rejected(audit, path)
    # then the first trace, already written in the transaction, is gone too
    assert any("yields 3 steps; the limit is 2" in p for p in problems), problems
    assert_nothing_written(audit)


def test_reimport_is_detected_and_skip_existing_leaves_old_traces_alone(audit, tmp_path):
    # given
    import_file(audit=audit, path=write_jsonl(tmp_path, [record()]))
    again = write_jsonl(tmp_path, [record(), record(trace_id="t2")], name="again.jsonl")
    # when / then: plain re-import is refused
    problems = rejected(audit, again)
    assert problems == [
        "line 1 (trace_id): trace id 't1' was already imported into audit 'a1' "
        "(use skip-existing to leave it out)"
    ]
    assert Trace.objects.count() == 1
    # when / then: skip-existing imports only the new one
    result = import_file(audit=audit, path=again, skip_existing=True)
    assert (result.n_traces, result.n_skipped) == (1, 1)
    assert Trace.objects.count() == 2


def test_a_question_imported_before_must_not_change(audit, tmp_path):
    import_file(audit=audit, path=write_jsonl(tmp_path, [record()]))
    changed = write_jsonl(tmp_path, [record(trace_id="t2", gold_answer="A")], name="b.jsonl")
    assert "was imported before with another stem" in rejected(audit, changed)[0]


def test_csv_with_json_cells_imports_like_jsonl(audit, tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(
        "question_id,question,options,condition,trace_id,trace,steps,confidence\n"
        'q1,"Which, exactly?","{""A"": ""x""}",teacher,t1,"One. Two.",'
        '"[""One."", {""text"": ""Two."", ""reference_verdict"": ""error""}]",0.5\n'
    )
    result = import_file(audit=audit, path=path)
    assert result.segmenters == ["given"]
    steps = list(Step.objects.order_by("index").values_list("text", "reference_verdict"))
    assert steps == [("One.", None), ("Two.", "error")]
    assert Question.objects.get().stem == "Which, exactly?"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            "question_id,question,condition,trace\nq1,Q,c,text\n",
            "the header lacks column(s) trace_id",
        ),
        (
            "question_id,question,condition,trace_id,trace,model\nq1,Q,c,t1,x,m\n",
            "the header has unknown column(s) model",
        ),
        (
            "question_id,question,condition,trace_id,trace\nq1,Q,c,t1\n",
            "line 2: has 4 cells; the header has 5",
        ),
        (
            "question_id,question,condition,trace_id,trace,confidence\nq1,Q,c,t1,x,lots\n",
            "line 2, column 6 (confidence): must be a number",
        ),
        (
            'question_id,question,condition,trace_id,trace,options\nq1,Q,c,t1,x,"{bad"\n',
            "line 2, column 6 (options): invalid JSON in cell",
        ),
    ],
    ids=["missing-column", "unknown-column", "short-row", "bad-cell-with-column", "bad-json-cell"],
)
def test_bad_csv_is_rejected_with_line_and_column(audit, tmp_path, content, expected):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    problems = rejected(audit, path)
    assert any(expected in p for p in problems), problems
    assert_nothing_written(audit)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("data.bin", b"\x00\x01\x02binary", "the file is binary"),
        ("notes.txt", b"Just some prose, not a table.\n", "not a JSONL or CSV trace file"),
        ("data.jsonl", b"<html><body>oops</body></html>\n", "invalid JSON"),
    ],
    ids=["binary", "prose", "html-named-jsonl"],
)
def test_a_file_that_is_not_jsonl_or_csv_is_rejected(audit, tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    assert any(expected in p for p in rejected(audit, path))


def test_html_and_script_are_stored_as_given(audit, tmp_path):
    script = "<script>alert('x')</script> <b>bold</b>"
    path = write_jsonl(tmp_path, [record(trace=script, question=script)])
    import_file(audit=audit, path=path)
    assert Trace.objects.get().text == script
    assert Question.objects.get().stem == script


def test_several_segmentations_of_one_trace(audit, tmp_path):
    path = write_jsonl(
        tmp_path, [record(trace="1. One. Two.\n\n2. Three.", steps=["One. Two.", "Three."])]
    )
    import_file(
        audit=audit, path=path, segmenter_names=["given", "sentences", "paragraphs", "numbered"]
    )
    counts = {
        name: Step.objects.filter(segmentation=name).count()
        for name in ["given", "sentences", "paragraphs", "numbered"]
    }
    assert counts == {"given": 2, "sentences": 3, "paragraphs": 2, "numbered": 2}


def test_the_same_imports_with_the_same_seed_give_the_same_ids_and_codes(audit, tmp_path):
    # given an import, remembered
    path = write_jsonl(tmp_path, [record(), record(trace_id="t2", condition="student")])
    import_file(audit=audit, path=path)

    def ids():
        return list(
            Step.objects.filter(audit=audit)
            .order_by("trace__external_id", "index")
            .values_list("public_id", flat=True)
        )

    first_ids, first_codes = ids(), dict(audit.conditions.values_list("name", "blind_code"))
    # when the audit is emptied and the same file imported again
    Trace.objects.filter(audit=audit).delete()
    audit.conditions.all().delete()
    import_file(audit=audit, path=path)
    # then every random choice comes out the same
    assert ids() == first_ids
    assert dict(audit.conditions.values_list("name", "blind_code")) == first_codes
    # and a second import into the same audit draws fresh ids from a new stream
    import_file(audit=audit, path=write_jsonl(tmp_path, [record(trace_id="t3")], name="3.jsonl"))
    assert len(set(ids())) == 6
