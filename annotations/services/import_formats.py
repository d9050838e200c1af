"""Reading and validating trace files (JSONL or CSV), record by record, with line numbers.

A record is an audited trace (the default) or, with ``"record_type": "answer"``, an answer-only
sample: it counts in the answer metrics and is never segmented (``AnswerRecord``).

Pure of Django: the import service calls ``read_records`` twice (validate, then write), so a
file of any size is streamed and never held in memory. See docs/formats.md.
"""

import csv
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from annotations.services import import_adapters

REQUIRED_FIELDS = ("question_id", "question", "condition", "trace_id", "trace")
OPTIONAL_FIELDS = (
    "options",
    "gold_answer",
    "dataset",
    "sample_index",
    "final_answer",
    "confidence",
    "trace_type",
    "steps",
    "metadata",
)
# Says which kind a record is: "trace" (audited, the default) or "answer" (answer-only).
RECORD_TYPE_FIELD = "record_type"
RECORD_TYPES = ("trace", "answer")
ALL_FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS + (RECORD_TYPE_FIELD,)
# An answer-only sample: identified by question, condition and sample index; the question's
# stem (with options, gold answer, dataset) is needed once per question, on any record.
ANSWER_REQUIRED_FIELDS = ("question_id", "condition", "sample_index")
ANSWER_QUESTION_FIELDS = ("question", "options", "gold_answer", "dataset")
ANSWER_FIELDS = frozenset(
    (
        RECORD_TYPE_FIELD,
        *ANSWER_REQUIRED_FIELDS,
        *ANSWER_QUESTION_FIELDS,
        "final_answer",
        "confidence",
        "trace",
        "trace_type",
        "metadata",
    )
)
_ANSWER_BASIC_FIELDS = frozenset(
    (RECORD_TYPE_FIELD, *ANSWER_REQUIRED_FIELDS, "final_answer", "confidence")
)
# Fields of audited traces only, with why an answer-only record cannot have them.
TRACE_ONLY_FIELDS = {
    "trace_id": "an answer-only sample is identified by question_id, condition and sample_index",
    "steps": "an answer-only sample is never segmented into steps",
}
# Columns whose CSV cells hold JSON (an object or an array).
CSV_JSON_FIELDS = ("options", "steps", "metadata")
STEP_VERDICTS = ("correct", "error")
MAX_ID_LENGTH = 200
MAX_PROBLEMS = 1000
# Every limit below is the column's own (tests/annotations/services/test_import.py checks them
# against the models): a value the database would refuse must be refused here, with its line,
# not by the worker in the middle of the write.
TEXT_LIMITS: dict[str, int | None] = {
    "question_id": MAX_ID_LENGTH,
    "question": None,
    "condition": 120,
    "trace_id": MAX_ID_LENGTH,
    "trace": None,
    "gold_answer": 200,
    "dataset": 120,
    "final_answer": 200,
    "trace_type": 80,
}
MAX_STEP_KIND_LENGTH = 40
_CONDITION_LIMIT: int = TEXT_LIMITS["condition"]  # type: ignore[assignment]
_ANSWER_LIMIT: int = TEXT_LIMITS["final_answer"]  # type: ignore[assignment]
# sample_index is a PositiveIntegerField: an ``integer`` on PostgreSQL, the narrowest backend.
MAX_SAMPLE_INDEX = 2**31 - 1
# The largest signed 32-bit C long, which csv.field_size_limit takes on every platform.
CSV_MAX_CELL_CHARS = 2**31 - 1
# Options given as a list are labelled A … Z.
MAX_LISTED_OPTIONS = 26
# CSV numbers in ASCII only: str.isdigit() and int()/float() also take "²", "٣", "1_000", "nan".
_ASCII_WHOLE = re.compile(r"[0-9]+")
_ASCII_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# PostgreSQL stores no NUL (U+0000) in text or jsonb; no trace, id or label legitimately has one.
NUL = "\x00"
NUL_MESSAGE = "contains a NUL character (U+0000), which cannot be stored"


def _nul_place(value: Any, place: str = "") -> str | None:
    """Where in a JSON value (keys included) a NUL hides: '' for the value itself, None if none."""
    if isinstance(value, str):
        return place if NUL in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if NUL in key:
                return f"{place}[{key!r}] (in the key)"
            if (found := _nul_place(item, f"{place}[{key!r}]")) is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if (found := _nul_place(item, f"{place}[{index}]")) is not None:
                return found
    return None


@dataclass(frozen=True, slots=True)
class ImportProblem:
    line: int | None
    message: str
    column: int | None = None
    field: str | None = None

    def __str__(self) -> str:
        place = "file" if self.line is None else f"line {self.line}"
        if self.column is not None:
            place += f", column {self.column}"
        if self.field:
            place += f" ({self.field})"
        return f"{place}: {self._safe(self.message)}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "column": self.column,
            "field": self._safe(self.field),
            "message": self._safe(self.message),
        }

    @staticmethod
    def _safe(text: str | None) -> str | None:
        # A message may quote the file (an unknown field's name); a failed job keeps its
        # problems in a jsonb column, which refuses NUL.
        return text.replace(NUL, "\\x00") if text else text


@dataclass(slots=True)
class GivenStep:
    text: str
    reference_verdict: str | None = None
    kind: str = ""


@dataclass(slots=True)
class TraceRecord:
    line: int
    question_id: str
    question: str
    condition: str
    trace_id: str
    trace: str
    options: dict[str, str] = field(default_factory=dict)
    gold_answer: str = ""
    dataset: str = ""
    sample_index: int = 0
    final_answer: str = ""
    confidence: float | None = None
    trace_type: str = ""
    steps: list[GivenStep] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


class AnswerRecord:
    """An answer-only sample: counts in accuracy, SC@k, ECE and Brier; never a step.

    A plain class, not a dataclass: one is made per sample (192,000 for an SC@64 study), and
    setting six attributes with the optional ones read from class defaults costs half of a
    dataclass's fourteen-field __init__ (measured 1.1 against 2.0 µs).
    """

    # The sample's reasoning, kept as given and never segmented ("" when not given).
    trace: str = ""
    trace_type: str = ""
    metadata: dict[str, Any] | None = None
    # Whether this record states the question (stem, options, gold answer, dataset); when it
    # does not, another record of the file or an earlier import must.
    defines_question: bool = False
    question: str = ""
    options: dict[str, str] | None = None
    gold_answer: str = ""
    dataset: str = ""

    def __init__(
        self,
        line: int,
        question_id: str,
        condition: str,
        sample_index: int,
        final_answer: str = "",
        confidence: float | None = None,
    ) -> None:
        self.line = line
        self.question_id = question_id
        self.condition = condition
        self.sample_index = sample_index
        self.final_answer = final_answer
        self.confidence = confidence

    def __repr__(self) -> str:
        return (
            f"AnswerRecord(line={self.line}, question_id={self.question_id!r}, "
            f"condition={self.condition!r}, sample_index={self.sample_index})"
        )


class FormatError(Exception):
    """The file as a whole cannot be read as the format (not JSONL or CSV, bad header)."""

    def __init__(self, problems: list[ImportProblem]):
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


def detect_format(path: Path, head: bytes) -> str:
    """'jsonl' or 'csv', from the extension or, failing that, the first bytes."""
    # A file named as JSONL or CSV is read as such: a stray NUL in it is a problem of its line
    # and field (found by the checks), not a reason to call the whole file binary.
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson", ".json"}:
        return "jsonl"
    if suffix in {".csv", ".tsv"}:
        return "csv"
    if b"\x00" in head:
        raise FormatError([ImportProblem(None, "the file is binary, not JSONL or CSV text")])
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if text.startswith(b"{"):
        return "jsonl"
    first_line = text.split(b"\n", 1)[0]
    if b"," in first_line and (b"trace_id" in first_line or b"record_type" in first_line):
        return "csv"
    raise FormatError(
        [
            ImportProblem(
                None,
                "not a JSONL or CSV trace file: name it .jsonl or .csv, or start "
                "JSONL with '{' and CSV with a header row naming the columns",
            )
        ]
    )


def _decoded_lines(
    stream: BinaryIO, problems: list[ImportProblem], only_lines: set[int] | None = None
) -> Iterator[tuple[int, str]]:
    """Each line decoded, with its number; with ``only_lines``, only those (the others are
    not decoded at all: a second pass reads a few lines of a large file)."""
    for number, raw in enumerate(stream, start=1):
        if only_lines is not None and number not in only_lines:
            continue
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(ImportProblem(number, "bytes that are not UTF-8", column=exc.start + 1))
            yield number, raw.decode("utf-8", errors="replace")


# Takes a checked answer-only sample of the basic fields: line, question id, condition,
# sample index, final answer, confidence (see read_records' answer_sink).
AnswerSink = Callable[[int, str, str, int, str, "float | None"], Any]


class _RecordChecker:
    """Turns one raw dict into a TraceRecord, appending every problem it finds."""

    def __init__(
        self,
        problems: list[ImportProblem],
        *,
        max_trace_chars: int,
        answer_sink: AnswerSink | None = None,
    ):
        self.problems = problems
        self.max_trace_chars = max_trace_chars
        self.answer_sink = answer_sink
        # Set by a reader that knows the record holds no NUL (a JSON line without "\u0000"):
        # the NUL checks, a scan of every value, are then skipped.
        self.nul_free = False

    def problem(
        self, line: int, message: str, *, field: str | None = None, column: int | None = None
    ) -> None:
        self.problems.append(ImportProblem(line, message, column=column, field=field))

    def text(
        self,
        raw: dict,
        line: int,
        name: str,
        *,
        required: bool,
        limit: int | None = None,
        col: dict | None = None,
    ) -> str:
        value = raw.get(name)
        if (
            type(value) is str
            and value
            and (limit is None or len(value) <= limit)
            and (self.nul_free or NUL not in value)
            and not (required and value.isspace())
        ):
            return value  # the common case: a text that passes every check below
        column = col.get(name) if col else None
        if value is None or value == "":
            if required:
                self.problem(line, "is required", field=name, column=column)
            return ""
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.problem(
                line, f"must be a string, not {type(value).__name__}", field=name, column=column
            )
            return ""
        text = str(value)
        if not self.nul_free and NUL in text:
            self.problem(line, NUL_MESSAGE, field=name, column=column)
        if required and not text.strip():
            self.problem(line, "is empty", field=name, column=column)
        if limit is not None and len(text) > limit:
            self.problem(line, f"is longer than {limit} characters", field=name, column=column)
        return text

    def check(
        self, raw: Any, line: int, col: dict | None = None
    ) -> TraceRecord | AnswerRecord | None:
        if not isinstance(raw, dict):
            self.problem(line, f"a record must be a JSON object, not {type(raw).__name__}")
            return None
        record_type = raw.get(RECORD_TYPE_FIELD)
        if record_type == "answer":
            return self.check_answer(raw, line, col)
        if record_type not in (None, "", "trace"):
            self.problem(
                line,
                f"must be one of {', '.join(RECORD_TYPES)} (default trace), not {record_type!r}"
                if isinstance(record_type, str)
                else f"must be one of {', '.join(RECORD_TYPES)}, not {type(record_type).__name__}",
                field=RECORD_TYPE_FIELD,
                column=col.get(RECORD_TYPE_FIELD) if col else None,
            )
            return None
        before = len(self.problems)
        unknown = sorted(set(raw) - set(ALL_FIELDS))
        if unknown:
            self.problem(
                line,
                f"unknown field(s) {', '.join(unknown)}; put extra information under 'metadata'",
            )
        texts = {
            name: self.text(raw, line, name, required=name in REQUIRED_FIELDS, limit=limit, col=col)
            for name, limit in TEXT_LIMITS.items()
        }
        record = TraceRecord(line=line, **texts)
        if len(record.trace) > self.max_trace_chars:
            self.problem(
                line,
                f"trace is {len(record.trace)} characters; the limit is {self.max_trace_chars}",
                field="trace",
                column=col.get("trace") if col else None,
            )
        record.options = self._options(raw.get("options"), line, col)
        record.sample_index = self._sample_index(raw.get("sample_index"), line, col)
        record.confidence = self._confidence(raw.get("confidence"), line, col)
        record.steps = self._steps(raw.get("steps"), line, col)
        metadata = raw.get("metadata")
        column = col.get("metadata") if col else None
        if metadata in (None, ""):
            record.metadata = {}
        elif not isinstance(metadata, dict):
            self.problem(line, "must be an object", field="metadata", column=column)
        elif not self.nul_free and (place := _nul_place(metadata)) is not None:
            self.problem(line, f"metadata{place} {NUL_MESSAGE}", field="metadata", column=column)
        else:
            record.metadata = metadata
        return record if len(self.problems) == before else None

    def check_answer(self, raw: dict, line: int, col: dict | None) -> AnswerRecord | None:
        """An answer-only record, or None with its problems appended.

        Speed matters here (an SC@64 study is 64 records per question and arm): each field is
        first tried on the common shape (a short string, an int, a float in range) and only a
        value outside it goes through the general checks, which state the problem.
        """
        get = raw.get
        question_id, condition, sample_index = (
            get("question_id"),
            get("condition"),
            get("sample_index"),
        )
        answer, confidence = get("final_answer", ""), get("confidence")
        if (
            ANSWER_FIELDS.issuperset(raw)
            and type(question_id) is str
            and type(condition) is str
            and type(sample_index) is int
            and type(answer) is str
            and (confidence is None or (type(confidence) is float and 0.0 <= confidence <= 1.0))
            and 0 <= sample_index <= MAX_SAMPLE_INDEX
            and 0 < len(question_id) <= MAX_ID_LENGTH
            and 0 < len(condition) <= _CONDITION_LIMIT
            and len(answer) <= _ANSWER_LIMIT
            and NUL not in question_id
            and NUL not in condition
            and NUL not in answer
            and not question_id.isspace()
            and not condition.isspace()
        ):
            if _ANSWER_BASIC_FIELDS.issuperset(raw):  # nothing else to look at
                if self.answer_sink is not None:
                    self.answer_sink(line, question_id, condition, sample_index, answer, confidence)
                    return None
                return AnswerRecord(line, question_id, condition, sample_index, answer, confidence)
            record = AnswerRecord(line, question_id, condition, sample_index, answer, confidence)
            return self._answer_extras(raw, record, line, col)
        before = len(self.problems)
        unknown = raw.keys() - ANSWER_FIELDS
        if unknown:
            for name in sorted(unknown & TRACE_ONLY_FIELDS.keys()):
                if raw.get(name) not in (None, ""):
                    self.problem(
                        line,
                        f"is not allowed on an answer-only record: {TRACE_ONLY_FIELDS[name]}",
                        field=name,
                        column=col.get(name) if col else None,
                    )
            if others := sorted(unknown - TRACE_ONLY_FIELDS.keys()):
                self.problem(
                    line,
                    f"unknown field(s) {', '.join(others)}; put extra information under 'metadata'",
                )
        question_id = raw.get("question_id")
        if not (
            type(question_id) is str
            and len(question_id) <= MAX_ID_LENGTH
            and NUL not in question_id
            and question_id.strip()
        ):
            question_id = self.text(
                raw, line, "question_id", required=True, limit=MAX_ID_LENGTH, col=col
            )
        condition = raw.get("condition")
        limit = TEXT_LIMITS["condition"]
        if not (
            type(condition) is str
            and len(condition) <= limit  # type: ignore[operator]
            and NUL not in condition
            and condition.strip()
        ):
            condition = self.text(raw, line, "condition", required=True, limit=limit, col=col)
        sample_index = raw.get("sample_index")
        if not (type(sample_index) is int and 0 <= sample_index <= MAX_SAMPLE_INDEX):
            if sample_index in (None, ""):
                self.problem(
                    line,
                    "is required on an answer-only record",
                    field="sample_index",
                    column=col.get("sample_index") if col else None,
                )
                sample_index = 0
            else:
                sample_index = self._sample_index(sample_index, line, col)
        answer = raw.get("final_answer")
        if answer is None:
            answer = ""
        elif not (type(answer) is str and len(answer) <= 200 and NUL not in answer):
            answer = self.text(raw, line, "final_answer", required=False, limit=200, col=col)
        confidence = raw.get("confidence")
        if not (confidence is None or (type(confidence) is float and 0.0 <= confidence <= 1.0)):
            confidence = self._confidence(confidence, line, col)
        record = AnswerRecord(line, question_id, condition, sample_index, answer, confidence)
        record = self._answer_extras(raw, record, line, col)
        return record if len(self.problems) == before else None

    def _answer_extras(
        self, raw: dict, record: AnswerRecord, line: int, col: dict | None
    ) -> AnswerRecord | None:
        """The optional fields of an answer-only record: trace text, type, metadata, question."""
        before = len(self.problems)
        if raw.get("trace") not in (None, ""):
            record.trace = self.text(raw, line, "trace", required=False, col=col)
            if len(record.trace) > self.max_trace_chars:
                self.problem(
                    line,
                    f"trace is {len(record.trace)} characters; the limit is {self.max_trace_chars}",
                    field="trace",
                    column=col.get("trace") if col else None,
                )
        if raw.get("trace_type") not in (None, ""):
            record.trace_type = self.text(
                raw, line, "trace_type", required=False, limit=TEXT_LIMITS["trace_type"], col=col
            )
        metadata = raw.get("metadata")
        if metadata not in (None, ""):
            column = col.get("metadata") if col else None
            if not isinstance(metadata, dict):
                self.problem(line, "must be an object", field="metadata", column=column)
            elif not self.nul_free and (place := _nul_place(metadata)) is not None:
                self.problem(
                    line, f"metadata{place} {NUL_MESSAGE}", field="metadata", column=column
                )
            else:
                record.metadata = metadata
        if raw.get("question") not in (None, ""):
            record.defines_question = True
            record.question = self.text(raw, line, "question", required=True, col=col)
            record.options = self._options(raw.get("options"), line, col)
            record.gold_answer = self.text(
                raw, line, "gold_answer", required=False, limit=TEXT_LIMITS["gold_answer"], col=col
            )
            record.dataset = self.text(
                raw, line, "dataset", required=False, limit=TEXT_LIMITS["dataset"], col=col
            )
        else:
            stray = [n for n in ANSWER_QUESTION_FIELDS[1:] if raw.get(n) not in (None, "")]
            if stray:
                self.problem(
                    line,
                    f"gives {', '.join(stray)} without 'question': state the question whole "
                    "(stem with options, gold answer and dataset) or leave them all out to "
                    "refer to the question as another record states it",
                    field=stray[0],
                    column=col.get(stray[0]) if col else None,
                )
        return record if len(self.problems) == before else None

    def _options(self, value: Any, line: int, col: dict | None) -> dict[str, str]:
        column = col.get("options") if col else None
        if value in (None, ""):
            return {}
        if not self.nul_free and (place := _nul_place(value)) is not None:
            self.problem(line, f"options{place} {NUL_MESSAGE}", field="options", column=column)
            return {}
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            if len(value) > MAX_LISTED_OPTIONS:
                # They would be labelled past Z; an object names its own labels.
                self.problem(
                    line,
                    f"lists {len(value)} options; a list holds at most {MAX_LISTED_OPTIONS} "
                    "(A to Z), give an object of label → text for more",
                    field="options",
                    column=column,
                )
                return {}
            return {chr(ord("A") + i): v for i, v in enumerate(value)}
        if isinstance(value, dict) and all(
            isinstance(v, str | int | float) and not isinstance(v, bool) for v in value.values()
        ):
            return {str(k): str(v) for k, v in value.items()}
        self.problem(
            line,
            "must be an object of label → text, or a list of texts",
            field="options",
            column=column,
        )
        return {}

    def _sample_index(self, value: Any, line: int, col: dict | None) -> int:
        if value in (None, ""):
            return 0
        if isinstance(value, str):
            digits = value.strip()
            # Ten digits already exceed the column; a longer string is not converted at all
            # (int() refuses more than 4,300 digits with an error of its own).
            if _ASCII_WHOLE.fullmatch(digits) and len(digits) <= len(str(MAX_SAMPLE_INDEX)):
                value = int(digits)
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not 0 <= value <= MAX_SAMPLE_INDEX
        ):
            self.problem(
                line,
                f"must be a whole number from 0 to {MAX_SAMPLE_INDEX}",
                field="sample_index",
                column=col.get("sample_index") if col else None,
            )
            return 0
        return value

    def _confidence(self, value: Any, line: int, col: dict | None) -> float | None:
        if value in (None, ""):
            return None
        if isinstance(value, str):
            number = value.strip()
            value = float(number) if _ASCII_DECIMAL.fullmatch(number) else None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not 0 <= value <= 1
        ):
            self.problem(
                line,
                "must be a number from 0 to 1",
                field="confidence",
                column=col.get("confidence") if col else None,
            )
            return None
        return float(value)

    def _steps(self, value: Any, line: int, col: dict | None) -> list[GivenStep] | None:
        column = col.get("steps") if col else None
        if value in (None, ""):
            return None
        if not isinstance(value, list):
            self.problem(
                line, "must be a list of step texts or objects", field="steps", column=column
            )
            return None
        steps: list[GivenStep] = []
        before = len(self.problems)
        for number, item in enumerate(value, start=1):
            if not self.nul_free and (place := _nul_place(item)) is not None:
                self.problem(
                    line, f"step {number}{place} {NUL_MESSAGE}", field="steps", column=column
                )
                continue
            if isinstance(item, str):
                steps.append(GivenStep(item))
                continue
            if not isinstance(item, dict) or not isinstance(item.get("text"), str):
                self.problem(
                    line,
                    f"step {number} must be a string or an object with 'text'",
                    field="steps",
                    column=column,
                )
                continue
            verdict = item.get("reference_verdict")
            if verdict is not None and verdict not in STEP_VERDICTS:
                self.problem(
                    line,
                    f"step {number}: reference_verdict must be one of {', '.join(STEP_VERDICTS)}",
                    field="steps",
                    column=column,
                )
            kind = item.get("kind") or ""
            if not isinstance(kind, str) or len(kind) > MAX_STEP_KIND_LENGTH:
                self.problem(
                    line,
                    f"step {number}: kind must be a string of at most {MAX_STEP_KIND_LENGTH} "
                    "characters",
                    field="steps",
                    column=column,
                )
                kind = ""
            steps.append(GivenStep(item["text"], verdict, kind))
        if len(self.problems) == before and not any(step.text.strip() for step in steps):
            self.problem(line, "has no non-empty step", field="steps", column=column)
        return steps


# Every format the reader takes: the native two and the adapters' (import_adapters.py).
FILE_FORMATS = ("jsonl", "csv", *import_adapters.ADAPTER_FORMATS)


def read_records(
    path: Path,
    file_format: str,
    problems: list[ImportProblem],
    *,
    max_trace_chars: int,
    only_lines: set[int] | None = None,
    condition: str = "",
    answer_sink: AnswerSink | None = None,
) -> Iterator[TraceRecord | AnswerRecord]:
    """Yield the valid records of the file; append a problem for every invalid one.

    ``only_lines`` (the lines a first pass found) leaves every other record unread: a second
    pass over a file of traces and many answer-only samples reads only the traces again.
    ``condition`` names the arm for the adapters' formats (lm-evaluation-harness samples do
    not name their model; for the others it replaces the model's name). ``answer_sink``, when
    given, takes each valid answer-only sample of the basic fields (question, condition, sample
    index, answer, confidence) instead of its being yielded: no record object per sample.
    """
    checker = _RecordChecker(problems, max_trace_chars=max_trace_chars, answer_sink=answer_sink)
    try:
        if file_format == "inspect":
            yield from _read_inspect(path, checker, only_lines, condition)
            return
        with path.open("rb") as stream:
            if file_format == "jsonl":
                yield from _read_jsonl(stream, checker, problems, only_lines)
            elif file_format == "csv":
                yield from _read_csv(stream, checker, problems, only_lines)
            else:
                yield from _read_adapted_jsonl(
                    stream, checker, problems, only_lines, file_format, path, condition
                )
    except import_adapters.AdapterError as exc:
        raise FormatError([ImportProblem(None, str(exc))]) from None


def _read_inspect(
    path: Path, checker: _RecordChecker, only_lines: set[int] | None, condition: str
) -> Iterator[TraceRecord | AnswerRecord]:
    for position, raw in import_adapters.inspect_records(path, condition=condition):
        if only_lines is not None and position not in only_lines:
            continue
        if (record := checker.check(raw, position)) is not None:
            yield record


def _read_adapted_jsonl(
    stream: BinaryIO,
    checker: _RecordChecker,
    problems: list[ImportProblem],
    only_lines: set[int] | None,
    file_format: str,
    path: Path,
    condition: str,
) -> Iterator[TraceRecord | AnswerRecord]:
    task = import_adapters.lm_eval_task(path)
    # The harness writes a line per (document, filter): the first line of a document stands
    # for it, so a task logged with two filters does not import its responses twice.
    seen_docs: set[str] = set()
    for number, text in _decoded_lines(stream, problems):
        if (only_lines is not None and number not in only_lines) or not text.strip():
            continue
        try:
            raw = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            problems.append(ImportProblem(number, f"invalid JSON: {exc.msg}", column=exc.colno))
            continue
        if file_format == "chat":
            record, why = import_adapters.chat_record(raw, number, condition=condition)
            mapped = [record] if record is not None else []
        else:
            doc = str(raw.get("doc_id")) if isinstance(raw, dict) else ""
            if doc and doc in seen_docs:
                continue
            seen_docs.add(doc)
            mapped, why = import_adapters.lm_eval_records(
                raw, number, task=task, condition=condition
            )
        if why:
            problems.append(ImportProblem(number, why))
            continue
        for item in mapped:
            if (checked := checker.check(item, number)) is not None:
                yield checked


def _read_jsonl(
    stream: BinaryIO,
    checker: _RecordChecker,
    problems: list[ImportProblem],
    only_lines: set[int] | None = None,
) -> Iterator[TraceRecord | AnswerRecord]:
    for number, text in _decoded_lines(stream, problems, only_lines):
        if not text.strip():
            continue
        try:
            raw = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            problems.append(ImportProblem(number, f"invalid JSON: {exc.msg}", column=exc.colno))
            continue
        # JSON spells a NUL "\u0000" (a raw one is invalid JSON): without that, none is in it.
        checker.nul_free = "\\u0000" not in text
        record = checker.check(raw, number)
        checker.nul_free = False
        if record is not None:
            yield record


def _read_csv(
    stream: BinaryIO,
    checker: _RecordChecker,
    problems: list[ImportProblem],
    only_lines: set[int] | None = None,
) -> Iterator[TraceRecord | AnswerRecord]:
    lines = _decoded_lines(stream, problems)
    physical = {"line": 0}

    def text_lines() -> Iterator[str]:
        for number, text in lines:
            physical["line"] = number
            yield text

    # The csv module refuses a cell over 131,072 characters, a trace well within
    # STEPAUDIT_MAX_TRACE_CHARS among them, and stops the reading there. A JSONL line has no
    # such cap either; the upload limit bounds what comes through the web. (The setting is the
    # module's, process-wide: it only lets other readers take longer cells too.)
    csv.field_size_limit(max(csv.field_size_limit(), CSV_MAX_CELL_CHARS))
    reader = csv.reader(text_lines())
    try:
        header = next(reader)
    except StopIteration:
        raise FormatError([ImportProblem(1, "the CSV file is empty")]) from None
    except csv.Error as exc:
        raise FormatError([ImportProblem(1, f"not a CSV header: {exc}")]) from None
    header = [name.strip() for name in header]
    # With a record_type column, rows may be answer-only samples: the trace columns are then
    # required of the trace rows only (each row's own check says so).
    required = ANSWER_REQUIRED_FIELDS[:2] if RECORD_TYPE_FIELD in header else REQUIRED_FIELDS
    missing = [name for name in required if name not in header]
    unknown = [name for name in header if name not in ALL_FIELDS]
    duplicated = sorted({name for name in header if header.count(name) > 1})
    header_problems = []
    if missing:
        header_problems.append(ImportProblem(1, f"the header lacks column(s) {', '.join(missing)}"))
    if unknown:
        header_problems.append(
            ImportProblem(
                1,
                f"the header has unknown column(s) {', '.join(unknown)}; expected some of "
                f"{', '.join(ALL_FIELDS)}",
            )
        )
    if duplicated:
        header_problems.append(ImportProblem(1, f"the header repeats {', '.join(duplicated)}"))
    if header_problems:
        raise FormatError(header_problems)
    columns = {name: index + 1 for index, name in enumerate(header)}
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(ImportProblem(physical["line"], f"unreadable CSV row: {exc}"))
            break
        line = reader.line_num
        if only_lines is not None and line not in only_lines:
            continue
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            problems.append(
                ImportProblem(line, f"has {len(row)} cells; the header has {len(header)}")
            )
            continue
        raw: dict[str, Any] = {name: cell for name, cell in zip(header, row, strict=True)}
        ok = True
        for name in CSV_JSON_FIELDS:
            cell = raw.get(name)
            if cell:
                try:
                    raw[name] = orjson.loads(cell)
                except orjson.JSONDecodeError as exc:
                    problems.append(
                        ImportProblem(
                            line,
                            f"invalid JSON in cell: {exc.msg}",
                            column=columns[name],
                            field=name,
                        )
                    )
                    ok = False
        if ok and (record := checker.check(raw, line, columns)) is not None:
            yield record


def sniff_head(path: Path) -> bytes:
    with path.open("rb") as stream:
        return stream.read(8192)


def spool_upload(chunks: Iterator[bytes], destination: Path) -> Path:
    destination.parent.mkdir(parents=True, exist_ok=True)
    with destination.open("wb") as out:
        for chunk in chunks:
            out.write(chunk)
    return destination


__all__ = [
    "ALL_FIELDS",
    "ANSWER_FIELDS",
    "FILE_FORMATS",
    "MAX_SAMPLE_INDEX",
    "MAX_STEP_KIND_LENGTH",
    "RECORD_TYPES",
    "RECORD_TYPE_FIELD",
    "REQUIRED_FIELDS",
    "TEXT_LIMITS",
    "AnswerRecord",
    "FormatError",
    "GivenStep",
    "ImportProblem",
    "TraceRecord",
    "detect_format",
    "read_records",
    "sniff_head",
]
