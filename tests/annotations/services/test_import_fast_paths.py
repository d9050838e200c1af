"""The import's fast paths give what the reference paths give, byte for byte.

- Pass 1 parses a JSONL file's plain answer-only lines as columns (import_answers_fast);
  every other line, and any file the columns cannot vouch for, goes through the reference
  reader. Here each file is validated both ways: the same plan on a good file, the same
  problems (text, order) on a bad one, and the same rows once written.
- Pass 2 prepares chunks (read, segment, blind, public ids) in a thread ahead of the COPY on
  PostgreSQL. Here a varied styled file is written both ways: the same steps (text, blinded
  text, spans, public ids), and each blinded text is what the normaliser gives its step.
"""

import json
import random
from pathlib import Path

import pytest
from django.db import transaction

from annotations.models import AnswerSample, Condition, Question, Step, Trace
from annotations.services import imports, segmenters
from annotations.services.audits import audit_create
from annotations.services.import_answers_fast import answers_fast
from annotations.services.imports import import_run, import_validate
from annotations.services.normalise import NORMALISER_V1, NORMALISER_V2, blinder_for_audit
from auditapp.exceptions import ImportRejected
from tests.annotations.fixtures.styled_arms import styled_jsonl

pytestmark = pytest.mark.django_db

ARMS = ("teacher", "student-before", "student-after")


def sc_lines(*, questions: int = 12, k: int = 40, seed: int = 5) -> list[str]:
    """An SC@k file as JSON lines, varied: audited traces, samples that state their question,
    samples with and without confidence, empty and non-ASCII answers, integer confidences,
    the odd sample with text, type or metadata, keys in another order, spaces after colons."""
    rng = random.Random(seed)
    lines = []
    for q in range(questions):
        for a, arm in enumerate(ARMS):
            for s in range(k):
                record: dict = {"record_type": "answer", "question_id": f"q{q:03d}"}
                record |= {"condition": arm, "sample_index": s}
                pick = rng.random()
                if pick < 0.05:
                    record["final_answer"] = ""
                elif pick < 0.1:
                    record["final_answer"] = "é" * rng.randrange(1, 150)  # 2 bytes a character
                elif pick > 0.12:
                    record["final_answer"] = rng.choice("ABCD")
                if rng.random() < 0.85:
                    record["confidence"] = rng.choice([round(rng.random(), 3), 0, 1, 0.5])
                if s == 0 and a == 0:
                    record |= {"question": f"Question {q}?", "options": ["one", "two"]}
                    record["gold_answer"] = "A"
                elif s == 1:
                    record = {
                        "record_type": "trace",
                        "question_id": f"q{q:03d}",
                        "question": f"Question {q}?",
                        "options": ["one", "two"],
                        "gold_answer": "A",
                        "condition": arm,
                        "trace_id": f"t{q}-{a}",
                        "sample_index": 1,
                        "trace": f"**Okay,** step one of {q}.\n\nSo $x^{2}$ it is.",
                        "final_answer": "A",
                    }
                elif s == 2:
                    record["trace"] = f"kept, not segmented {q}"
                elif s == 3:
                    record["metadata"] = {"seed": s}
                elif s == 4:
                    record["trace_type"] = "cot"
                elif s == 5:
                    record = dict(reversed(list(record.items())))
                if s == 6:
                    lines.append(json.dumps(record))  # ", " and ": " between tokens
                else:
                    lines.append(json.dumps(record, separators=(",", ":"), ensure_ascii=False))
    return lines


def write(path: Path, lines: list[str], *, ending: str = "\n") -> Path:
    path.write_bytes(ending.join(lines).encode() + ending.encode())
    return path


def validated(audit, path: Path, *, by_columns: bool, **options):
    """The plan, or the problems as text, from pass 1 with or without the columns."""
    try:
        return import_validate(
            audit=audit,
            path=path,
            segmenter_names=["paragraphs"],
            answers_by_columns=by_columns,
            **options,
        )
    except ImportRejected as exc:
        return [str(p) for p in exc.problems]


def plan_facts(plan) -> dict:
    columns = plan.sample_columns
    answers = columns.answers().to_pylist() if columns else []
    samples = (
        None
        if columns is None
        else sorted(
            (
                plan.question_order[q],
                plan.condition_order[c],
                i,
                answers[row],
                None if conf != conf else conf,  # NaN: none
                columns.text.get(row, "") if row < len(columns.answer) else "",
                columns.trace_type.get(row, "") if row < len(columns.answer) else "",
                columns.metadata.get(row, "") if row < len(columns.answer) else "",
            )
            for row, (q, c, i, conf) in enumerate(
                zip(
                    columns.question,
                    columns.condition,
                    columns.sample_index,
                    columns.confidence,
                    strict=True,
                )
            )
        )
    )
    return {
        "n_records": plan.n_records,
        "n_samples": plan.n_samples,
        "segmenters": plan.segmenters,
        "conditions": plan.condition_names,
        "trace_lines": plan.trace_lines,
        "questions": {
            key: (r.line, r.question, r.options, r.gold_answer, r.dataset)
            for key, r in plan.sample_questions.items()
        },
        "samples": samples,
        "skip": plan.skip_sample_keys,
        "samples_seen": plan.samples_seen,
    }


@pytest.fixture
def audit():
    return audit_create(slug="fast", name="Fast path")


def test_the_columns_take_the_plain_lines_and_leave_the_rest(tmp_path):
    # given
    lines = sc_lines()
    path = write(tmp_path / "sc.jsonl", lines)
    # when
    fast = answers_fast(path)
    # then: every line is the columns' or the reader's, and the plain ones are the columns'
    assert fast is not None
    plain = {
        n
        for n, text in enumerate(lines, start=1)
        if (r := json.loads(text))["record_type"] == "answer"
        and not {"question", "trace", "metadata", "trace_type"} & r.keys()
    }
    assert set(fast.line.tolist()) == plain - fast.other_lines
    assert len(fast) >= 0.8 * len(plain)
    assert set(fast.line.tolist()) | fast.other_lines == set(range(1, len(lines) + 1))


def test_small_large_and_other_files_are_left_to_the_reader(tmp_path, monkeypatch):
    from annotations.services import import_answers_fast

    lines = sc_lines()
    assert answers_fast(write(tmp_path / "few.jsonl", lines[:900])) is None  # < 1,000 samples
    path = write(tmp_path / "sc.jsonl", lines)
    monkeypatch.setattr(import_answers_fast, "MAX_FILE_BYTES", path.stat().st_size - 1)
    assert answers_fast(path) is None  # too large to hold whole
    monkeypatch.undo()
    assert answers_fast(path) is not None


def test_a_good_file_gives_the_same_plan_both_ways(audit, tmp_path):
    path = write(tmp_path / "sc.jsonl", sc_lines())
    fast = validated(audit, path, by_columns=True)
    reference = validated(audit, path, by_columns=False)
    assert not isinstance(fast, list), fast
    assert plan_facts(fast) == plan_facts(reference)


@pytest.mark.parametrize("ending", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_a_good_file_writes_the_same_rows_both_ways(tmp_path, ending):
    # given: the same file into two audits, with and without the columns
    path = write(tmp_path / "sc.jsonl", sc_lines(), ending=ending)
    rows = []
    for by_columns in (True, False):
        audit = audit_create(slug=f"fast-{by_columns}", name="Fast path")
        plan = validated(audit, path, by_columns=by_columns)
        # when
        result = import_run(audit=audit, plan=plan)
        # then
        samples = sorted(
            AnswerSample.objects.filter(audit=audit).values_list(
                "question__external_id",
                "condition__name",
                "sample_index",
                "final_answer",
                "confidence",
                "text",
                "trace_type",
                "metadata",
            )
        )
        questions = sorted(
            Question.objects.filter(audit=audit).values_list(
                "external_id", "stem", "options", "gold_answer", "dataset"
            )
        )
        conditions = list(
            Condition.objects.filter(audit=audit).order_by("pk").values_list("name", flat=True)
        )
        traces = sorted(Trace.objects.filter(audit=audit).values_list("external_id", "text"))
        rows.append((result.n_samples, result.n_steps, samples, questions, conditions, traces))
    assert rows[0] == rows[1]
    assert rows[0][0] == 12 * 3 * 39


def _line(**fields) -> str:
    record = {"record_type": "answer", "question_id": "q001", "condition": "teacher"}
    record |= {"sample_index": 900, "final_answer": "B", "confidence": 0.5} | fields
    return json.dumps({k: v for k, v in record.items() if v is not _GONE})


_GONE = object()
# Each replaces line 200 of the good file (or is inserted there): a problem the columns must
# leave to the reader, or a value they must read as it does.
BAD_LINES = {
    "negative index": _line(sample_index=-1),
    "index over int32": _line(sample_index=2**31),
    "index as text": _line(sample_index="3"),
    "index as float": _line(sample_index=3.0),
    "index missing": _line(sample_index=_GONE),
    "index null": _line(sample_index=None),
    "confidence over 1": _line(confidence=1.5),
    "confidence negative": _line(confidence=-0.1),
    "confidence true": _line(confidence=True),
    "confidence as text": _line(confidence="0.5"),
    "confidence NaN literal": _line().replace('"confidence": 0.5', '"confidence": NaN'),
    "confidence Infinity": _line().replace('"confidence": 0.5', '"confidence": Infinity'),
    "empty question id": _line(question_id=""),
    "blank question id": _line(question_id="   "),
    "unicode blank condition": _line(condition="\u2003\u00a0"),
    "tab-led condition": _line(condition="\tteacher"),
    "number question id": _line(question_id=5),
    "null question id": _line(question_id=None),
    "long question id": _line(question_id="q" * 201),
    "long condition": _line(condition="c" * 121),
    "condition of 100 two-byte characters": _line(condition="é" * 100),
    "long answer": _line(final_answer="x" * 201),
    "answer of 200 two-byte characters": _line(final_answer="é" * 200),
    "answer null": _line(final_answer=None),
    "answer number": _line(final_answer=3),
    "answer object": _line(final_answer={"x": 1}),
    "NUL in answer": _line(final_answer="A\u0000"),
    "escaped backslash before u0000": _line(final_answer="A\\u0000"),
    "unknown field": _line(colour="red"),
    "unknown field null": _line(colour=None),
    "trace id on a sample": _line(trace_id="t9"),
    "trace id null on a sample": _line(trace_id=None),
    "steps on a sample": _line(steps=["a"]),
    "record type sample": _line(record_type="sample"),
    "record type null": _line(record_type=None),
    "stray gold answer": _line(gold_answer="C"),
    "unstated question": _line(question_id="q999"),
    "question differs": _line(question="Another?", sample_index=901),
    "doubled sample": _line(sample_index=7),
    "sample on a trace's place": _line(sample_index=1),
    "duplicate key": _line()[:-1] + ', "condition": "student-after"}',
    "two objects on a line": _line() + " " + _line(sample_index=901),
    "invalid JSON": _line()[:-1],
    "trailing comma": _line()[:-1] + ",}",
    "a list, not an object": "[1, 2]",
    "blank line": "   ",
    "empty line": "",
    "not UTF-8": _line(final_answer="NOT-UTF-8"),  # made a raw 0xff byte below
    "raw tab between tokens": _line().replace(", ", ",\t", 1),
    "raw control character in a string": _line(final_answer="A\u0001").replace("\\u0001", "\x01"),
    "leading space": " " + _line(),
}


@pytest.mark.parametrize("name", list(BAD_LINES))
def test_a_changed_line_is_judged_the_same_both_ways(audit, tmp_path, name):
    # given: a good file of ~4,700 lines with one line replaced
    lines = sc_lines()
    lines[199] = BAD_LINES[name]
    path = tmp_path / "one.jsonl"
    body = "\n".join(lines) + "\n"
    path.write_bytes(body.encode().replace(b"NOT-UTF-8", b"\xff"))
    # when
    fast = validated(audit, path, by_columns=True)
    reference = validated(audit, path, by_columns=False)
    # then: the same problems in the same order, or the same plan
    if isinstance(reference, list):
        assert fast == reference
    else:
        assert not isinstance(fast, list), fast
        assert plan_facts(fast) == plan_facts(reference)


def test_a_bad_file_lists_every_problem_as_the_reader_does(audit, tmp_path):
    # given: many bad lines at once, some the columns would clear on their own
    lines = sc_lines()
    for index, bad in enumerate(BAD_LINES.values()):
        lines[100 + 7 * index] = bad
    path = tmp_path / "bad.jsonl"
    path.write_bytes(("\n".join(lines) + "\n").encode().replace(b"NOT-UTF-8", b"\xff"))
    # when / then
    fast = validated(audit, path, by_columns=True)
    assert isinstance(fast, list) and len(fast) > 20
    assert fast == validated(audit, path, by_columns=False)


def test_samples_already_in_the_audit_are_found_both_ways(audit, tmp_path):
    # given: the file imported once, then again (refused, or skipped with skip-existing)
    path = write(tmp_path / "sc.jsonl", sc_lines())
    import_run(audit=audit, plan=validated(audit, path, by_columns=True))
    # when / then
    for options in ({}, {"skip_existing": True}):
        fast = validated(audit, path, by_columns=True, **options)
        reference = validated(audit, path, by_columns=False, **options)
        if isinstance(reference, list):
            assert fast == reference and len(fast) > 1000
        else:
            assert plan_facts(fast) == plan_facts(reference)
            assert len(fast.skip_sample_keys) == 12 * 3 * 39  # every sample


def test_the_upload_check_without_keeping_samples_agrees(audit, tmp_path):
    path = write(tmp_path / "sc.jsonl", sc_lines())
    fast = validated(audit, path, by_columns=True, keep_samples=False)
    reference = validated(audit, path, by_columns=False, keep_samples=False)
    assert (fast.n_records, fast.n_samples, fast.sample_columns) == (
        reference.n_records,
        reference.n_samples,
        None,
    )


# --- pass 2: chunks prepared ahead of the COPY ----------------------------------------------
def _steps(audit) -> list[tuple]:
    return list(
        Step.objects.filter(audit=audit)
        .order_by("trace__external_id", "segmentation", "index")
        .values_list(
            "trace__external_id",
            "segmentation",
            "index",
            "text",
            "blinded_text",
            "blinding_version",
            "char_start",
            "char_end",
            "public_id",
        )
    )


@pytest.mark.parametrize("version", [NORMALISER_V2, NORMALISER_V1])
def test_steps_prepared_ahead_are_the_steps_prepared_in_turn(tmp_path, monkeypatch, version):
    # given: a styled file (fillers, emphasis, LaTeX, tables, emoji …) in chunks of 7 traces
    monkeypatch.setattr(imports, "CHUNK_TRACES", 7)
    path = styled_jsonl(tmp_path / "styled.jsonl")
    audit = audit_create(slug="ahead", name="Ahead", normaliser_version=version)
    plan = import_validate(audit=audit, path=path, segmenter_names=["paragraphs", "sentences"])
    written = []
    for ahead in (True, False):
        # when: written, read back, rolled back (public ids are unique across audits)
        with transaction.atomic():
            import_run(audit=audit, plan=plan, prepare_ahead=ahead)
            written.append(_steps(audit))
            texts = dict(Trace.objects.filter(audit=audit).values_list("external_id", "text"))
            transaction.set_rollback(True)
    # then: the same rows, public ids included
    steps, reference = written
    assert steps == reference and len(steps) > 1000
    # and each blinded text is the normaliser's on the segment's text (the reference path)
    blinder = blinder_for_audit(audit)
    for trace_id, name, index, text, blinded, blinding_version, start, end, _ in steps:
        segment = segmenters.segment_trace(name, text=texts[trace_id], given_steps=None)[index]
        assert (segment.text, segment.start, segment.end) == (text, start, end)
        assert blinded == blinder(segment.text) and blinding_version == blinder.version


def test_a_failure_while_preparing_ahead_rolls_back_and_stops(audit, tmp_path, monkeypatch):
    # given: a segmenter that breaks on the 30th trace, in chunks of 7
    monkeypatch.setattr(imports, "CHUNK_TRACES", 7)
    path = styled_jsonl(tmp_path / "styled.jsonl")
    plan = import_validate(audit=audit, path=path, segmenter_names=["paragraphs"])
    calls = {"n": 0}
    real = segmenters.segment_trace

    def breaking(name, **kwargs):
        calls["n"] += 1
        if calls["n"] == 30:
            raise RuntimeError("segmenter broke")
        return real(name, **kwargs)

    monkeypatch.setattr(segmenters, "segment_trace", breaking)
    # when / then: the thread's error reaches the caller, nothing is written
    with pytest.raises(RuntimeError, match="segmenter broke"):
        import_run(audit=audit, plan=plan, prepare_ahead=True)
    assert not Trace.objects.filter(audit=audit).exists()
    assert not Step.objects.filter(audit=audit).exists()
    assert calls["n"] == 30  # the thread stopped there
