"""Reading and validating trace files (JSONL or CSV), record by record, with line numbers.

Pure of Django: the import service calls ``read_records`` twice (validate, then write), so a
file of any size is streamed and never held in memory. See docs/formats.md.
"""

import csv
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson

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
ALL_FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS
# Columns whose CSV cells hold JSON (an object or an array).
CSV_JSON_FIELDS = ("options", "steps", "metadata")
STEP_VERDICTS = ("correct", "error")
MAX_ID_LENGTH = 200
MAX_PROBLEMS = 1000


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
        return f"{place}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "column": self.column,
            "field": self.field,
            "message": self.message,
        }


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


class FormatError(Exception):
    """The file as a whole cannot be read as the format (not JSONL or CSV, bad header)."""

    def __init__(self, problems: list[ImportProblem]):
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


def detect_format(path: Path, head: bytes) -> str:
    """'jsonl' or 'csv', from the extension or, failing that, the first bytes."""
    if b"\x00" in head:
        raise FormatError([ImportProblem(None, "the file is binary, not JSONL or CSV text")])
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson", ".json"}:
        return "jsonl"
    if suffix in {".csv", ".tsv"}:
        return "csv"
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if text.startswith(b"{"):
        return "jsonl"
    first_line = text.split(b"\n", 1)[0]
    if b"," in first_line and b"trace_id" in first_line:
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


def _decoded_lines(stream: BinaryIO, problems: list[ImportProblem]) -> Iterator[tuple[int, str]]:
    for number, raw in enumerate(stream, start=1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(ImportProblem(number, "bytes that are not UTF-8", column=exc.start + 1))
            yield number, raw.decode("utf-8", errors="replace")


class _RecordChecker:
    """Turns one raw dict into a TraceRecord, appending every problem it finds."""

    def __init__(self, problems: list[ImportProblem], *, max_trace_chars: int):
        self.problems = problems
        self.max_trace_chars = max_trace_chars

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
        if required and not text.strip():
            self.problem(line, "is empty", field=name, column=column)
        if limit is not None and len(text) > limit:
            self.problem(line, f"is longer than {limit} characters", field=name, column=column)
        return text

    def check(self, raw: Any, line: int, col: dict | None = None) -> TraceRecord | None:
        if not isinstance(raw, dict):
            self.problem(line, f"a record must be a JSON object, not {type(raw).__name__}")
            return None
        before = len(self.problems)
        unknown = sorted(set(raw) - set(ALL_FIELDS))
        if unknown:
            self.problem(
                line,
                f"unknown field(s) {', '.join(unknown)}; put extra information under 'metadata'",
            )
        record = TraceRecord(
            line=line,
            question_id=self.text(
                raw, line, "question_id", required=True, limit=MAX_ID_LENGTH, col=col
            ),
            question=self.text(raw, line, "question", required=True, col=col),
            condition=self.text(raw, line, "condition", required=True, limit=120, col=col),
            trace_id=self.text(raw, line, "trace_id", required=True, limit=MAX_ID_LENGTH, col=col),
            trace=self.text(raw, line, "trace", required=True, col=col),
            gold_answer=self.text(raw, line, "gold_answer", required=False, limit=200, col=col),
            dataset=self.text(raw, line, "dataset", required=False, limit=120, col=col),
            final_answer=self.text(raw, line, "final_answer", required=False, limit=200, col=col),
            trace_type=self.text(raw, line, "trace_type", required=False, limit=80, col=col),
        )
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
        if metadata in (None, ""):
            record.metadata = {}
        elif isinstance(metadata, dict):
            record.metadata = metadata
        else:
            self.problem(
                line,
                "must be an object",
                field="metadata",
                column=col.get("metadata") if col else None,
            )
        return record if len(self.problems) == before else None

    def _options(self, value: Any, line: int, col: dict | None) -> dict[str, str]:
        column = col.get("options") if col else None
        if value in (None, ""):
            return {}
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return {chr(ord("A") + i): v for i, v in enumerate(value[:26])}
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
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.problem(
                line,
                "must be a whole number ≥ 0",
                field="sample_index",
                column=col.get("sample_index") if col else None,
            )
            return 0
        return value

    def _confidence(self, value: Any, line: int, col: dict | None) -> float | None:
        if value in (None, ""):
            return None
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                value = None
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
        for number, item in enumerate(value, start=1):
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
            steps.append(GivenStep(item["text"], verdict, str(kind)[:40]))
        if not any(step.text.strip() for step in steps):
            self.problem(line, "has no non-empty step", field="steps", column=column)
        return steps


def read_records(
    path: Path, file_format: str, problems: list[ImportProblem], *, max_trace_chars: int
) -> Iterator[TraceRecord]:
    """Yield the valid records of the file; append a problem for every invalid one."""
    checker = _RecordChecker(problems, max_trace_chars=max_trace_chars)
    with path.open("rb") as stream:
        if file_format == "jsonl":
            yield from _read_jsonl(stream, checker, problems)
        else:
            yield from _read_csv(stream, checker, problems)


def _read_jsonl(
    stream: BinaryIO, checker: _RecordChecker, problems: list[ImportProblem]
) -> Iterator[TraceRecord]:
    for number, text in _decoded_lines(stream, problems):
        if not text.strip():
            continue
        try:
            raw = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            problems.append(ImportProblem(number, f"invalid JSON: {exc.msg}", column=exc.colno))
            continue
        record = checker.check(raw, number)
        if record is not None:
            yield record


def _read_csv(
    stream: BinaryIO, checker: _RecordChecker, problems: list[ImportProblem]
) -> Iterator[TraceRecord]:
    lines = _decoded_lines(stream, problems)
    physical = {"line": 0}

    def text_lines() -> Iterator[str]:
        for number, text in lines:
            physical["line"] = number
            yield text

    reader = csv.reader(text_lines())
    try:
        header = next(reader)
    except StopIteration:
        raise FormatError([ImportProblem(1, "the CSV file is empty")]) from None
    except csv.Error as exc:
        raise FormatError([ImportProblem(1, f"not a CSV header: {exc}")]) from None
    header = [name.strip() for name in header]
    missing = [name for name in REQUIRED_FIELDS if name not in header]
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
    "REQUIRED_FIELDS",
    "FormatError",
    "GivenStep",
    "ImportProblem",
    "TraceRecord",
    "detect_format",
    "read_records",
    "sniff_head",
]
