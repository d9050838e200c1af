import json

import pytest
from django.test import override_settings

from annotations.models import Condition, Question, Step, Trace
from annotations.services.audits import audit_create
from annotations.services.imports import import_file, import_run, import_validate
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


# --- issue 9: values the database would refuse are refused in pass 1, with line and field ----
NUL = "\u0000"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param(
            {"sample_index": 2**31},
            "line 1 (sample_index): must be a whole number from 0 to",
            id="2^31",
        ),
        pytest.param(
            {"sample_index": 2**63}, "line 1 (sample_index): must be a whole number", id="2^63"
        ),
        pytest.param(
            {"sample_index": 10**24}, "line 1 (sample_index): must be a whole number", id="10^24"
        ),
        pytest.param({"sample_index": 1.5}, "(sample_index): must be a whole", id="fraction"),
        pytest.param({"sample_index": True}, "(sample_index): must be a whole", id="boolean"),
        pytest.param({"confidence": 1e308}, "(confidence): must be a number", id="huge-float"),
        pytest.param({"confidence": -0.1}, "(confidence): must be a number", id="negative"),
        pytest.param({"confidence": "nan"}, "(confidence): must be a number", id="nan-text"),
        pytest.param({"confidence": "inf"}, "(confidence): must be a number", id="inf-text"),
        pytest.param({"confidence": "1e999"}, "(confidence): must be a number", id="1e999-text"),
        pytest.param({"trace_id": "t" * 201}, "(trace_id): is longer than 200", id="long-trace-id"),
        pytest.param(
            {"question_id": "q" * 201}, "(question_id): is longer than 200", id="long-question-id"
        ),
        pytest.param({"condition": "c" * 121}, "(condition): is longer than 120", id="long-cond"),
        pytest.param(
            {"final_answer": "a" * 201}, "(final_answer): is longer than 200", id="long-answer"
        ),
        pytest.param({"trace_type": "t" * 81}, "(trace_type): is longer than 80", id="long-type"),
        pytest.param({"metadata": "text"}, "(metadata): must be an object", id="metadata-text"),
        pytest.param({"metadata": 3}, "(metadata): must be an object", id="metadata-number"),
        pytest.param(
            {"options": [f"o{i}" for i in range(27)]},
            "(options): lists 27 options; a list holds at most 26",
            id="27-listed-options",
        ),
        pytest.param(
            {"steps": [{"text": "a", "kind": "k" * 41}]},
            "(steps): step 1: kind must be a string of at most 40",
            id="long-step-kind",
        ),
        pytest.param(
            {"steps": [{"text": "a", "kind": {"x": 1}}]},
            "(steps): step 1: kind must be a string",
            id="step-kind-object",
        ),
    ],
)
def test_values_the_columns_cannot_hold_are_rejected_by_line_and_field(
    audit, tmp_path, overrides, expected
):
    # given a record that the old checks let through to the worker (or silently cut)
    path = write_jsonl(tmp_path, [record(trace_id="t0"), record(**overrides)])
    # when
    problems = rejected(audit, path)
    # then the second line is named, and nothing was written
    assert any(expected.replace("line 1", "line 2") in p for p in problems), problems
    assert all(p.startswith("line 2") for p in problems), problems
    assert_nothing_written(audit)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        pytest.param({"question_id": f"q{NUL}1"}, "question_id", id="question_id"),
        pytest.param({"question": f"Which{NUL}?"}, "question", id="question"),
        pytest.param({"condition": f"teach{NUL}er"}, "condition", id="condition"),
        pytest.param({"trace_id": f"t{NUL}"}, "trace_id", id="trace_id"),
        pytest.param({"trace": f"A.{NUL}\n\nB."}, "trace", id="trace"),
        pytest.param({"gold_answer": f"B{NUL}"}, "gold_answer", id="gold_answer"),
        pytest.param({"dataset": f"medqa{NUL}"}, "dataset", id="dataset"),
        pytest.param({"final_answer": f"{NUL}B"}, "final_answer", id="final_answer"),
        pytest.param({"trace_type": f"cot{NUL}"}, "trace_type", id="trace_type"),
        pytest.param({"options": {"A": f"one{NUL}"}}, "options", id="option-text"),
        pytest.param({"options": {f"A{NUL}": "one"}}, "options", id="option-label"),
        pytest.param({"options": ["one", f"tw{NUL}o"]}, "options", id="listed-option"),
        pytest.param({"steps": ["A.", f"B{NUL}."]}, "steps", id="step-text"),
        pytest.param({"steps": [{"text": f"A{NUL}"}]}, "steps", id="step-object-text"),
        pytest.param({"steps": [{"text": "A", "kind": f"k{NUL}"}]}, "steps", id="step-kind"),
        pytest.param({"metadata": {"model": f"m{NUL}"}}, "metadata", id="metadata-value"),
        pytest.param({"metadata": {f"k{NUL}": 1}}, "metadata", id="metadata-key"),
        pytest.param({"metadata": {"a": [{"b": [f"{NUL}"]}]}}, "metadata", id="metadata-nested"),
    ],
)
def test_a_nul_in_any_text_is_rejected_by_line_and_field(audit, tmp_path, overrides, field):
    # given a JSON "\u0000" escape: valid JSON, but PostgreSQL stores no NUL in text or jsonb
    path = write_jsonl(tmp_path, [record(trace_id="t0"), record(**overrides)])
    # when
    with pytest.raises(ImportRejected) as info:
        import_file(audit=audit, path=path)
    # then
    (problem,) = [p for p in info.value.problems if "NUL" in p.message]
    assert (problem.line, problem.field) == (2, field)
    assert "\x00" not in str(problem) and "\x00" not in json.dumps(problem.as_dict())
    assert_nothing_written(audit)


def test_a_nul_in_an_unknown_field_name_is_quoted_safely(audit, tmp_path):
    # given a field name with a NUL: the problem quotes it, and problems are stored as jsonb
    path = write_jsonl(tmp_path, [record(**{f"x{NUL}y": 1})])
    # when
    with pytest.raises(ImportRejected) as info:
        import_file(audit=audit, path=path)
    # then
    assert "\x00" not in json.dumps(info.value.extra)
    assert "x\\x00y" in info.value.extra["problems"][0]["message"]


CSV_HEAD = "question_id,question,condition,trace_id,trace,sample_index,confidence,metadata\n"


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        pytest.param(
            "\u00b2,", "line 2, column 6 (sample_index): must be a whole", id="superscript"
        ),
        pytest.param("\u0663,", "line 2, column 6 (sample_index): must be a whole", id="arabic-3"),
        pytest.param("1_000,", "line 2, column 6 (sample_index): must be a whole", id="underscore"),
        pytest.param("+1,", "line 2, column 6 (sample_index): must be a whole", id="plus-sign"),
        pytest.param("2147483648,", "column 6 (sample_index): must be a whole", id="2^31"),
        pytest.param("1" + "0" * 24 + ",", "column 6 (sample_index): must be a whole", id="10^24"),
        pytest.param(
            "9" * 5000 + ",", "column 6 (sample_index): must be a whole", id="5000-digits"
        ),
        pytest.param(",nan", "line 2, column 7 (confidence): must be a number", id="nan"),
        pytest.param(",inf", "line 2, column 7 (confidence): must be a number", id="inf"),
        pytest.param(",-Infinity", "line 2, column 7 (confidence): must be a number", id="-inf"),
        pytest.param(",1e999", "line 2, column 7 (confidence): must be a number", id="1e999"),
        pytest.param(",0_5", "line 2, column 7 (confidence): must be a number", id="underscore"),
        pytest.param(",\u0660.5", "line 2, column 7 (confidence): must be a number", id="arabic"),
        pytest.param(',,"[1]"', "line 2, column 8 (metadata): must be an object", id="meta-list"),
        pytest.param(',,"""x"""', "line 2, column 8 (metadata): must be an object", id="meta-str"),
        pytest.param(
            ',,"{""a"": ""\\u0000""}"',
            "line 2, column 8 (metadata): metadata['a'] contains a NUL",
            id="meta-nul-escape",
        ),
    ],
)
def test_csv_numbers_and_json_cells_are_checked_strictly(audit, tmp_path, cells, expected):
    # given a CSV row whose cell str.isdigit() or float() would take, or the database refuse
    path = tmp_path / "bad.csv"
    cells += "," * (2 - cells.count(","))  # sample_index, confidence, metadata
    path.write_text(CSV_HEAD + f"q1,Q,c,t1,Some text.,{cells}\n", encoding="utf-8")
    # when
    problems = rejected(audit, path)
    # then
    assert any(expected in p for p in problems), problems
    assert_nothing_written(audit)


def test_a_raw_nul_byte_in_a_csv_cell_is_rejected_by_line_and_column(audit, tmp_path):
    # given a NUL past the first 8 KiB (so the file is not taken for binary), inside a cell
    path = tmp_path / "bad.csv"
    filler = "".join(f"q{i},Q,c,t{i},{'x' * 100},,,\n" for i in range(100))
    path.write_bytes((CSV_HEAD + filler + "q1,Q,c,tz,Bad\x00text,,,\n").encode())
    # when
    problems = rejected(audit, path)
    # then
    assert problems == [
        "line 102, column 5 (trace): contains a NUL character (U+0000), which cannot be stored"
    ]
    assert_nothing_written(audit)


@pytest.mark.parametrize(
    ("sample_index", "confidence"),
    [("0", "0"), (" 7 ", "1"), ("2147483647", "0.25"), ("12", ".5"), ("3", "1e-1")],
    ids=["zero", "padded", "max-int32", "leading-dot", "exponent"],
)
def test_csv_numbers_in_range_are_accepted(audit, tmp_path, sample_index, confidence):
    path = tmp_path / "ok.csv"
    path.write_text(CSV_HEAD + f'q1,Q,c,t1,Some text.,{sample_index},{confidence},"{{}}"\n')
    import_file(audit=audit, path=path)
    trace = Trace.objects.get()
    assert (trace.sample_index, trace.confidence) == (int(sample_index), float(confidence))


def test_import_limits_are_the_columns_limits():
    # given the limits pass 1 checks, and the columns the rows go to
    from django.db.backends.base.operations import BaseDatabaseOperations

    from annotations.services import import_formats

    columns = {
        "question_id": Question._meta.get_field("external_id"),
        "question": Question._meta.get_field("stem"),
        "condition": Condition._meta.get_field("name"),
        "trace_id": Trace._meta.get_field("external_id"),
        "trace": Trace._meta.get_field("text"),
        "gold_answer": Question._meta.get_field("gold_answer"),
        "dataset": Question._meta.get_field("dataset"),
        "final_answer": Trace._meta.get_field("final_answer"),
        "trace_type": Trace._meta.get_field("trace_type"),
    }
    # then every text limit is its column's max_length (None for text columns)
    assert {name: f.max_length for name, f in columns.items()} == import_formats.TEXT_LIMITS
    assert Step._meta.get_field("kind").max_length == import_formats.MAX_STEP_KIND_LENGTH
    # and the sample index fits the column on the narrowest backend (PostgreSQL's integer)
    field = Trace._meta.get_field("sample_index")
    low, high = BaseDatabaseOperations.integer_field_ranges[field.get_internal_type()]
    assert (low, high) == (0, import_formats.MAX_SAMPLE_INDEX)


def test_the_largest_sample_index_the_column_holds_is_imported(audit, tmp_path):
    path = write_jsonl(tmp_path, [record(sample_index=2**31 - 1)])
    import_file(audit=audit, path=path)
    assert Trace.objects.get().sample_index == 2**31 - 1


@pytest.mark.parametrize(
    ("segmenter", "trace", "steps"),
    [
        pytest.param("given", "One.", ["s"] * 4, id="given"),
        pytest.param("paragraphs", "\n\n".join(["p."] * 4), None, id="paragraphs"),
        pytest.param("sentences", " ".join(["Yes."] * 4), None, id="sentences"),
        pytest.param("numbered", "\n".join(f"{i}. x" for i in range(4)), None, id="numbered"),
        pytest.param(None, "One.", ["s"] * 4, id="default-given"),
        pytest.param(None, "\n\n".join(["p."] * 4), None, id="default-paragraphs"),
    ],
)
def test_too_many_steps_are_found_in_pass_1_before_any_job(
    audit, tmp_path, segmenter, trace, steps
):
    # given a trace that segments into 4 steps, the limit being 3, after one within it
    first = record(trace_id="t0", trace="1. One.", steps=["One."])
    path = write_jsonl(tmp_path, [first, record(trace=trace, steps=steps or ...)])
    # when validating only (what the API does in the request, before the job is queued)
    with override_settings(STEPAUDIT_MAX_STEPS_PER_TRACE=3), pytest.raises(ImportRejected) as info:
        import_validate(audit=audit, path=path, segmenter_names=[segmenter] if segmenter else None)
    # then
    name = segmenter or ("given" if steps else "paragraphs")
    assert [str(p) for p in info.value.problems] == [
        f"line 2 ({'steps' if name == 'given' else 'trace'}): segmenter {name!r} yields 4 steps; "
        "the limit is 3"
    ]


def test_the_default_segmenter_not_chosen_does_not_count(audit, tmp_path):
    # given many given steps on one record, but another without steps: default is paragraphs
    path = write_jsonl(tmp_path, [record(trace_id="t0"), record(steps=["s"] * 9)])
    # when / then: paragraphs yields 2 steps per trace, within the limit
    with override_settings(STEPAUDIT_MAX_STEPS_PER_TRACE=3):
        plan = import_validate(audit=audit, path=path)
    assert plan.segmenters == ["paragraphs"]


def test_the_step_count_bound_never_undercounts():
    # given texts dense in every character a cut needs
    import random

    from annotations.services.import_formats import TraceRecord
    from annotations.services.imports import _step_count_over
    from annotations.services.segmenters import segment_trace

    rng = random.Random(9)
    alphabet = ["a", "B", "1", " ", ".", "!", "?", "\n", "\n\n", "- ", "1. ", "Step 2: ", "e.g. "]
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 80)))
        rec = TraceRecord(
            line=1, question_id="q", question="Q", condition="c", trace_id="t", trace=text
        )
        for name in ("paragraphs", "sentences", "numbered"):
            actual = len(segment_trace(name, text=text, given_steps=None))
            # when the limit is just under the true count, the count is found
            if actual:
                assert _step_count_over(name, rec, actual - 1) == actual, (name, text)
            assert _step_count_over(name, rec, actual) is None, (name, text)


def test_a_step_limit_lowered_between_the_passes_still_rolls_everything_back(audit, tmp_path):
    # given a file validated under one limit and written under a lower one (a settings change
    # between the request and the worker): pass 2 keeps its own check
    path = write_jsonl(tmp_path, [record(), record(trace_id="t2", trace="A.\n\nB.\n\nC.")])
    plan = import_validate(audit=audit, path=path)
    # when
    with override_settings(STEPAUDIT_MAX_STEPS_PER_TRACE=2), pytest.raises(ImportRejected) as info:
        import_run(audit=audit, plan=plan)
    # then the first trace, already written in the transaction, is gone too
    assert "yields 3 steps; the limit is 2" in str(info.value.problems[0])
    assert_nothing_written(audit)


def test_an_unsaved_audit_is_validated_as_empty(tmp_path):
    # given the audit an import with --create would make, not saved yet
    from annotations.models import Audit

    path = write_jsonl(tmp_path, [record()])
    # when
    plan = import_validate(audit=Audit(slug="new", name="new"), path=path)
    # then nothing is created by validating
    assert plan.n_records == 1
    assert not Audit.objects.filter(slug="new").exists()


@pytest.mark.parametrize("name", ["traces.jsonl", "traces.csv"])
def test_a_binary_file_named_as_text_is_still_rejected(audit, tmp_path, name):
    # given bytes of a gzip archive under a text name (no longer sniffed for NUL: the name says)
    import gzip

    path = tmp_path / name
    path.write_bytes(gzip.compress(json.dumps(record()).encode() * 50))
    # when / then
    assert rejected(audit, path)
    assert_nothing_written(audit)


def test_a_csv_trace_over_the_csv_modules_cell_cap_but_within_the_limit_imports(audit, tmp_path):
    # given a trace of 150,000 characters (csv's default cap is 131,072; ours is 200,000)
    path = tmp_path / "long.csv"
    long_trace = "A long step. " * 11_600
    path.write_text(
        f"question_id,question,condition,trace_id,trace\nq1,Q,c,t1,{long_trace}\nq2,Q,c,t2,Short.\n"
    )
    # when
    result = import_file(audit=audit, path=path, segmenter_names=["paragraphs"])
    # then the whole file was read, the long trace kept whole
    assert result.n_traces == 2
    assert Trace.objects.get(external_id="t1").text == long_trace


@pytest.mark.parametrize("skip_existing", [False, True], ids=["refused", "skipped"])
def test_ids_imported_by_another_import_after_pass_1_are_found_by_line(
    audit, tmp_path, skip_existing
):
    # given a file checked (pass 1), then another import writing one of its ids first
    path = write_jsonl(tmp_path, [record(), record(trace_id="t2")])
    plan = import_validate(audit=audit, path=path, skip_existing=skip_existing)
    import_file(audit=audit, path=write_jsonl(tmp_path, [record(trace_id="t2")], name="b.jsonl"))
    # when the first file is written
    if not skip_existing:
        with pytest.raises(ImportRejected) as info:
            import_run(audit=audit, plan=plan)
        # then: refused by line, not an IntegrityError, and nothing of it written
        assert [str(p) for p in info.value.problems] == [
            "line 2 (trace_id): trace id 't2' was imported into audit 'a1' by another import "
            "since this file was checked"
        ]
        assert list(Trace.objects.values_list("external_id", flat=True)) == ["t2"]
    else:
        result = import_run(audit=audit, plan=plan)
        assert (result.n_traces, result.n_skipped) == (1, 1)
        assert sorted(Trace.objects.values_list("external_id", flat=True)) == ["t1", "t2"]
