"""Trace import: validate the whole file, then segment, blind and write it in one transaction.

Pass 1 streams the file and collects every problem (format, fields, types, duplicates, ids
already imported, sizes, segmenters that would yield nothing). Only a clean file reaches pass 2,
which streams it again and writes in chunks — COPY on PostgreSQL, bulk inserts elsewhere —
inside one transaction, so a failure at any point leaves the database as it was.

Answer-only samples (``record_type: answer``) are parsed once: pass 1 checks each and keeps it
in compact columns (question and condition as ordinals of the file); pass 2 reads only the
traces from the file again, then writes the columns into ``AnswerSample`` with the ordinals
mapped to primary keys (pyarrow's CSV writer feeding COPY on PostgreSQL). They are never
segmented and never become steps.
"""

import io
import math
import queue
import threading
from array import array
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pa_csv
from django.conf import settings
from django.db import connection, transaction
from psycopg.copy import QueuedLibpqWriter

from annotations.models import AnswerSample, Audit, ImportJob, Question, Step, Trace
from annotations.services import segmenters
from annotations.services.conditions import conditions_ensure
from annotations.services.import_adapters import sniff_adapter
from annotations.services.import_answers_fast import FastSamples, answers_fast
from annotations.services.import_formats import (
    FILE_FORMATS,
    MAX_PROBLEMS,
    AnswerRecord,
    FormatError,
    ImportProblem,
    TraceRecord,
    detect_format,
    read_records,
    sniff_head,
)
from annotations.services.normalise import (
    Blinder,
    RuleError,
    blinder_for_audit,
    final_answer_blinded,
)
from annotations.services.randomness import public_ids, seeded_random
from auditapp.exceptions import ImportRejected

# Traces per write; 2,000 traces ≈ 20,000 steps keeps each COPY large and memory flat
# (measured: 500 → 1,000 → 2,000 gained ~8%, beyond that nothing).
CHUNK_TRACES = 2000

ProgressCallback = Callable[[int, int], None]


@dataclass
class ImportPlan:
    """What pass 1 learned about a clean file."""

    path: Path
    file_format: str
    segmenters: list[str]
    n_records: int
    skip_trace_ids: set[str] = field(default_factory=set)
    condition_names: list[str] = field(default_factory=list)
    skip_existing: bool = False
    # The audit's highest trace primary key when pass 1 checked for duplicates.
    traces_seen_up_to: int = 0
    # Answer-only samples: their columns, the file's question and condition ids by ordinal,
    # the questions only samples state, what to leave out, and the audit's count.
    n_samples: int = 0
    sample_columns: "SampleColumns | None" = None
    question_order: list[str] = field(default_factory=list)
    condition_order: list[str] = field(default_factory=list)
    sample_questions: dict[str, AnswerRecord] = field(default_factory=dict)
    skip_sample_keys: set[int] = field(default_factory=set)
    samples_seen: int = 0
    # Lines of the trace records, for pass 2 to read only those again (None: every line).
    trace_lines: set[int] | None = None
    # The arm for the adapters' formats, and whether the format was detected, not chosen.
    condition: str = ""
    format_detected: bool = False


@dataclass(frozen=True)
class ImportResult:
    n_records: int
    n_traces: int
    n_steps: int
    n_skipped: int
    segmenters: list[str]
    n_samples: int = 0
    n_samples_skipped: int = 0


# A sample's identity packed into one int (question ordinal, condition ordinal, sample index):
# a set of 192,000 of them costs a third of the tuples' memory and hashes faster.
_CONDITION_BITS = 21
_INDEX_BITS = 31
MAX_CONDITIONS = 2**_CONDITION_BITS


def _sample_key(question: int, condition: int, sample_index: int) -> int:
    return (((question << _CONDITION_BITS) | condition) << _INDEX_BITS) | sample_index


def _sample_key_parts(key: int) -> tuple[int, int, int]:
    index = key & (2**_INDEX_BITS - 1)
    rest = key >> _INDEX_BITS
    return rest >> _CONDITION_BITS, rest & (MAX_CONDITIONS - 1), index


# A sample without a confidence, in the float column (the checks refuse NaN as a confidence).
_NAN = math.nan


def _capped(problems: list[ImportProblem]) -> list[ImportProblem]:
    if len(problems) <= MAX_PROBLEMS:
        return problems
    extra = len(problems) - MAX_PROBLEMS
    return [*problems[:MAX_PROBLEMS], ImportProblem(None, f"… and {extra} more problems")]


def _segmenter_yields_steps(name: str, record: TraceRecord) -> bool:
    if name == "given":
        return bool(record.steps) and any(s.text.strip() for s in record.steps or [])
    if name == "numbered":
        return segmenters._ITEM_MARKER.search(record.trace) is not None
    return bool(record.trace.strip())


def _step_count_over(name: str, record: TraceRecord, limit: int) -> int | None:
    """How many steps ``name`` cuts the record into, if that is over ``limit``; else None.

    Segmenting every trace in pass 1 too would repeat pass 2's work. Every cut needs a character
    that str.count() finds at C speed (two newlines for a paragraph break, one for a numbered
    item's line, a terminal mark for a sentence), so a bound from those counts clears nearly
    every trace and only the rest are segmented. Measured on 20,000 traces of the import bench:
    0.14 s for all four segmenters, against 6.8 s segmenting them (5.9 s of it sentences).
    """
    if name == "given":
        count = sum(1 for step in record.steps or [] if step.text.strip())
        return count if count > limit else None
    text = record.trace
    newlines = text.count("\n")
    if name == "paragraphs":
        bound = newlines // 2 + 1
    elif name == "numbered":
        bound = newlines + 2  # an item per line, plus the text before the first
    else:
        bound = text.count(".") + text.count("!") + text.count("?") + newlines // 2 + 1
    if bound <= limit:
        return None
    count = len(segmenters.segment_trace(name, text=text, given_steps=None))
    return count if count > limit else None


def _step_count_problem(name: str, line: int, count: int, limit: int) -> ImportProblem:
    return ImportProblem(
        line,
        f"segmenter {name!r} yields {count} steps; the limit is {limit}",
        field="steps" if name == "given" else "trace",
    )


def import_validate(
    *,
    audit: Audit,
    path: Path,
    segmenter_names: list[str] | None = None,
    skip_existing: bool = False,
    keep_samples: bool = True,
    file_format: str | None = None,
    condition: str = "",
    answers_by_columns: bool = True,
) -> ImportPlan:
    """Pass 1: read the whole file; raise ImportRejected listing every problem, or plan pass 2.

    ``audit`` may be unsaved (an import that creates its audit): it has no traces or questions
    yet, and nothing is created before the file has passed. ``keep_samples`` False checks
    answer-only samples without keeping them (a plan that only validates, as the upload does).
    ``file_format`` chooses the reader (see FILE_FORMATS); None or "auto" detects it from the
    name and the first record. ``condition`` names the arm for the adapters' formats.
    ``answers_by_columns`` lets a JSONL file's plain answer-only lines be parsed and checked
    as columns (import_answers_fast); the plan and every problem are the same either way.
    """
    problems: list[ImportProblem] = []
    asked_format = file_format
    detected = file_format in (None, "", "auto")
    try:
        file_format = _format_choose(path, file_format)
    except FormatError as exc:
        raise ImportRejected(exc.problems) from None
    names = list(dict.fromkeys(segmenter_names or []))
    try:
        blinder_for_audit(audit)
    except RuleError as exc:  # rules written around the model's validator (a shell, SQL)
        problems.append(ImportProblem(None, f"the audit's normaliser rules: {exc}"))
    for name in names:
        if name not in segmenters.SEGMENTER_NAMES:
            problems.append(
                ImportProblem(
                    None,
                    f"unknown segmenter {name!r}; choose from "
                    f"{', '.join(segmenters.SEGMENTER_NAMES)}",
                )
            )
    first_seen: dict[str, int] = {}
    questions: dict[str, tuple[int, str, dict, str]] = {}
    conditions: dict[str, None] = {}
    all_have_steps = True
    n_records = 0
    max_chars = settings.STEPAUDIT_MAX_TRACE_CHARS
    max_steps = settings.STEPAUDIT_MAX_STEPS_PER_TRACE
    # Step counts over the limit, by segmenter. Without named segmenters the default ('given'
    # when every record has steps, else 'paragraphs') is known only at the end of the file, so
    # both candidates are counted and the one chosen reports.
    counted = names or ["given", "paragraphs"]
    over_limit: dict[str, list[ImportProblem]] = {name: [] for name in counted}
    samples = _SampleCollector(problems, keep=keep_samples)
    samples_yielded = 0
    trace_lines: set[int] = set()
    # The plain answer-only lines as columns; the reader then reads only the other lines.
    fast = answers_fast(path) if answers_by_columns and file_format == "jsonl" else None
    try:
        records = read_records(
            path,
            file_format,
            problems,
            max_trace_chars=max_chars,
            condition=condition,
            answer_sink=samples.add_basic,
            only_lines=fast.other_lines if fast is not None else None,
        )
        for record in records:
            n_records += 1
            if type(record) is AnswerRecord:
                samples_yielded += 1
                samples.add(record)
                if record.defines_question:
                    _question_seen(questions, record, problems)
                continue
            trace_lines.add(record.line)
            samples.add_trace(record)
            all_have_steps &= bool(record.steps)
            if (line := first_seen.get(record.trace_id)) is not None:
                problems.append(
                    ImportProblem(
                        record.line,
                        f"trace id {record.trace_id!r} already appears at line {line}",
                        field="trace_id",
                    )
                )
            else:
                first_seen[record.trace_id] = record.line
            _question_seen(questions, record, problems)
            conditions[record.condition] = None
            for name in names:
                if not _segmenter_yields_steps(name, record):
                    problems.append(
                        ImportProblem(
                            record.line,
                            f"segmenter {name!r} yields no steps for this trace",
                            field="trace",
                        )
                    )
            for name in counted:
                if name in segmenters.SEGMENTER_NAMES and (
                    count := _step_count_over(name, record, max_steps)
                ):
                    over_limit[name].append(
                        _step_count_problem(name, record.line, count, max_steps)
                    )
    except FormatError as exc:
        problems = exc.problems + problems
    if fast is not None and not samples.add_columns(fast):
        # A place the columns hold twice: the reference reader says where, in its order.
        return import_validate(
            audit=audit,
            path=path,
            segmenter_names=segmenter_names,
            skip_existing=skip_existing,
            keep_samples=keep_samples,
            file_format=asked_format,
            condition=condition,
            answers_by_columns=False,
        )
    # The samples the reader handed straight to the collector were not yielded: count them.
    n_records += samples.count - samples_yielded
    if n_records == 0 and not problems:
        problems.append(ImportProblem(None, "the file holds no trace records"))
    n_traces = n_records - samples.count
    if not names:
        names = ["given"] if n_traces and all_have_steps else ["paragraphs"]
    for name in names:
        problems.extend(over_limit.get(name, []))
    skip: set[str] = set()
    # Read before the duplicate check: a trace another import writes after this point has a
    # higher primary key, which is how pass 2 knows whether it must check again.
    seen_up_to = _last_trace_pk(audit)
    if first_seen and audit.pk is not None:
        existing = _existing_trace_ids(audit, list(first_seen))
        if existing and skip_existing:
            skip = existing
        else:
            for trace_id in sorted(existing, key=first_seen.__getitem__):
                problems.append(
                    ImportProblem(
                        first_seen[trace_id],
                        f"trace id {trace_id!r} was already imported into "
                        f"audit {audit.slug!r} (use skip-existing to leave it out)",
                        field="trace_id",
                    )
                )
    # Questions already in the audit must match what the file says about them.
    for external_id, stem, options, gold in (
        Question.objects.filter(audit=audit, external_id__in=list(questions))
        .values_list("external_id", "stem", "options", "gold_answer")
        .iterator(chunk_size=5000)
        if audit.pk is not None
        else ()
    ):
        line, *shape = questions[external_id]
        if shape != [stem, options, gold]:
            problems.append(
                ImportProblem(
                    line,
                    f"question {external_id!r} was imported before "
                    "with another stem, options or gold answer",
                    field="question_id",
                )
            )
    skip_sample_keys: set[int] = set()
    samples_seen = 0
    if samples.count:
        samples_seen, skip_sample_keys = samples.check_against(
            audit, questions, problems, skip_existing=skip_existing, skip_trace_ids=skip
        )
    if problems:
        problems.sort(key=lambda p: p.line or 0)
        raise ImportRejected(_capped(problems))
    conditions.update(dict.fromkeys(samples.conditions_by_first_line()))
    return ImportPlan(
        path=path,
        file_format=file_format,
        segmenters=names,
        n_records=n_records,
        skip_trace_ids=skip,
        condition_names=list(conditions),
        skip_existing=skip_existing,
        traces_seen_up_to=seen_up_to,
        n_samples=samples.count,
        sample_columns=samples.columns if keep_samples and samples.count else None,
        question_order=samples.question_order,
        condition_order=samples.condition_order,
        sample_questions=samples.defining,
        skip_sample_keys=skip_sample_keys,
        samples_seen=samples_seen,
        trace_lines=trace_lines if samples.count else None,
        condition=condition,
        format_detected=detected,
    )


def _format_choose(path: Path, file_format: str | None) -> str:
    """The reader for a file: the one asked for, or the one its name and first record show."""
    if file_format not in (None, "", "auto"):
        if file_format not in FILE_FORMATS:
            raise FormatError(
                [
                    ImportProblem(
                        None,
                        f"unknown format {file_format!r}; choose from auto, "
                        f"{', '.join(FILE_FORMATS)}",
                    )
                ]
            )
        return file_format
    head = sniff_head(path)
    return sniff_adapter(path, head) or detect_format(path, head)


def _question_seen(
    questions: dict[str, tuple[int, str, dict, str]],
    record: TraceRecord | AnswerRecord,
    problems: list[ImportProblem],
) -> None:
    """Every record that states a question must state it as the first one did."""
    known = questions.get(record.question_id)
    shape = (record.question, record.options, record.gold_answer)
    if known is None:
        questions[record.question_id] = (record.line, *shape)
    elif known[1:] != shape:
        problems.append(
            ImportProblem(
                record.line,
                f"question {record.question_id!r} differs from line {known[0]} "
                "(stem, options or gold answer)",
                field="question_id",
            )
        )


@dataclass
class SampleColumns:
    """Answer-only samples as columns (about 60 bytes a sample): what pass 2 writes.

    The optional fields are sparse (row → value): most samples have neither text nor metadata.
    """

    question: array = field(default_factory=lambda: array("q"))
    condition: array = field(default_factory=lambda: array("q"))
    sample_index: array = field(default_factory=lambda: array("q"))
    # NaN for no confidence (a confidence is never NaN: the checks refuse it).
    confidence: array = field(default_factory=lambda: array("d"))
    answer: list[str] = field(default_factory=list)
    text: dict[int, str] = field(default_factory=dict)
    trace_type: dict[int, str] = field(default_factory=dict)
    metadata: dict[int, str] = field(default_factory=dict)
    # The answers of the rows after ``answer``'s, as the column parse left them (the fast
    # path's: no Python string per sample).
    answer_tail: list["pa.Array"] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sample_index)

    def answers(self) -> "pa.Array":
        tail = [array.cast(pa.string()) for array in self.answer_tail]
        return pa.concat_arrays([pa.array(self.answer, type=pa.string()), *tail])


class _SampleCollector:
    """Pass 1 for answer-only samples: identity checks, and each sample kept in columns.

    A sample's place (question, condition, sample index) must be its own: no other sample and
    no audited trace of the file or of the audit may hold it, since SC@k breaks ties by sample
    index and a doubled sample would vote twice.
    """

    def __init__(self, problems: list[ImportProblem], *, keep: bool) -> None:
        self.problems = problems
        self.count = 0
        self.question_ord: dict[str, int] = {}
        self.condition_ord: dict[str, int] = {}
        self.question_order: list[str] = []
        self.condition_order: list[str] = []
        self.sample_lines: dict[int, int] = {}
        self.trace_keys: dict[int, int] = {}
        # Questions that only samples refer to, by the first sample naming them (its line),
        # and the sample that states each question (to create it if no trace does).
        self.referenced: dict[str, int] = {}
        self.defining: dict[str, AnswerRecord] = {}
        self.keep = keep
        self.columns = SampleColumns()
        # Each condition's first line (the order the conditions are created in).
        self.condition_line: dict[str, int] = {}
        # Samples added as columns (add_columns): their packed keys → lines, made on demand.
        self._column_keys: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def _ordinal_question(self, question_id: str) -> int:
        ordinal = self.question_ord.get(question_id)
        if ordinal is None:
            ordinal = self.question_ord[question_id] = len(self.question_order)
            self.question_order.append(question_id)
        return ordinal

    def _ordinal_condition(self, name: str, line: int) -> int:
        ordinal = self.condition_ord.get(name)
        if ordinal is None:
            ordinal = self.condition_ord[name] = len(self.condition_order)
            self.condition_order.append(name)
            self.condition_line[name] = line
        return ordinal

    def conditions_by_first_line(self) -> list[str]:
        return sorted(self.condition_order, key=self.condition_line.__getitem__)

    def add_trace(self, record: TraceRecord) -> None:
        key = _sample_key(
            self._ordinal_question(record.question_id),
            self._ordinal_condition(record.condition, record.line),
            record.sample_index,
        )
        self.trace_keys.setdefault(key, record.line)
        if (line := self.sample_lines.get(key)) is not None:
            self._clash(
                record.line,
                record.question_id,
                record.condition,
                record.sample_index,
                line,
                "sample",
            )

    def add(self, record: AnswerRecord) -> None:
        """A sample with more than the basic fields (text, type, metadata, its question)."""
        row = self.add_basic(
            record.line,
            record.question_id,
            record.condition,
            record.sample_index,
            record.final_answer,
            record.confidence,
        )
        if record.defines_question:
            self.defining.setdefault(record.question_id, record)
        if row < 0:
            return
        columns = self.columns
        if record.trace:
            columns.text[row] = record.trace
        if record.trace_type:
            columns.trace_type[row] = record.trace_type
        if record.metadata:
            columns.metadata[row] = orjson.dumps(record.metadata).decode()

    def add_basic(
        self,
        line: int,
        question_id: str,
        condition_name: str,
        sample_index: int,
        answer: str,
        confidence: float | None,
    ) -> int:
        """A checked sample straight from the reader; its row in the columns (-1: not kept).

        Written for speed, once per sample: the reader calls it with the checked values, no
        record object in between (that object cost a fifth of pass 1), ordinals and the key
        inline.
        """
        self.count += 1
        question = self.question_ord.get(question_id)
        if question is None:
            question = self._ordinal_question(question_id)
        condition = self.condition_ord.get(condition_name)
        if condition is None:
            condition = self._ordinal_condition(condition_name, line)
        key = (((question << _CONDITION_BITS) | condition) << _INDEX_BITS) | sample_index
        first = self.sample_lines.setdefault(key, line)
        if first != line:
            self._clash(line, question_id, condition_name, sample_index, first, "sample")
        elif self.trace_keys and (trace_line := self.trace_keys.get(key)) is not None:
            self._clash(line, question_id, condition_name, sample_index, trace_line, "trace")
        if question_id not in self.referenced:
            self.referenced[question_id] = line
        if not self.keep:
            return -1
        columns = self.columns
        columns.question.append(question)
        columns.condition.append(condition)
        columns.sample_index.append(sample_index)
        columns.confidence.append(_NAN if confidence is None else confidence)
        columns.answer.append(answer)
        return len(columns.answer) - 1

    def _clash(
        self,
        line: int,
        question_id: str,
        condition: str,
        sample_index: int,
        other_line: int,
        other: str,
    ) -> None:
        holder = "the answer-only sample" if other == "sample" else "the audited trace"
        self.problems.append(
            ImportProblem(
                line,
                f"sample_index {sample_index} of question {question_id!r} under "
                f"condition {condition!r} is already {holder}'s at line {other_line}",
                field="sample_index",
            )
        )

    def add_columns(self, fast: FastSamples) -> bool:
        """Samples the column parse cleared (after the reader's lines); False if one takes a
        place another record holds (the caller reads the file line by line instead, which
        reports each clash against the line before it)."""
        if not len(fast):
            return True
        n = len(fast)
        self.count += n
        first_rows = np.unique(fast.question, return_index=True)[1]
        question_map = np.empty(len(fast.question_ids), dtype=np.int64)
        for index, (question_id, row) in enumerate(
            zip(fast.question_ids, first_rows.tolist(), strict=True)
        ):
            question_map[index] = self._ordinal_question(question_id)
            line = int(fast.line[row])
            if self.referenced.get(question_id, line) >= line:
                self.referenced[question_id] = line
        first_rows = np.unique(fast.condition, return_index=True)[1]
        condition_map = np.empty(len(fast.conditions), dtype=np.int64)
        for index, (name, row) in enumerate(zip(fast.conditions, first_rows.tolist(), strict=True)):
            line = int(fast.line[row])
            condition_map[index] = self._ordinal_condition(name, line)
            self.condition_line[name] = min(self.condition_line[name], line)
        question = question_map[fast.question]
        condition = condition_map[fast.condition]
        if len(self.condition_order) >= MAX_CONDITIONS:
            return False  # the reader's path says so
        # Every place once among these samples and the reader's samples and traces.
        known = [*self.sample_lines, *(k for k in self.trace_keys if k not in self.sample_lines)]
        parts = np.array([_sample_key_parts(k) for k in known], dtype=np.int64).reshape(-1, 3)
        all_q = np.concatenate((parts[:, 0], question))
        all_c = np.concatenate((parts[:, 1], condition))
        all_i = np.concatenate((parts[:, 2], fast.sample_index))
        order = np.lexsort((all_i, all_c, all_q))
        same = (
            (np.diff(all_q[order]) == 0)
            & (np.diff(all_c[order]) == 0)
            & (np.diff(all_i[order]) == 0)
        )
        if same.any():
            return False
        self._column_keys.append((question, condition, fast.sample_index, fast.line))
        if self.keep:
            columns = self.columns
            columns.question.frombytes(question.tobytes())
            columns.condition.frombytes(condition.tobytes())
            columns.sample_index.frombytes(fast.sample_index.astype(np.int64).tobytes())
            columns.confidence.frombytes(fast.confidence.astype(np.float64).tobytes())
            columns.answer_tail.append(fast.answer)
        return True

    def _all_sample_lines(self) -> dict[int, int]:
        """Every sample's packed key → its line (the columns' made into keys only here)."""
        if not self._column_keys:
            return self.sample_lines
        lines = dict(self.sample_lines)
        for question, condition, index, line in self._column_keys:
            for q, c, i, at in zip(
                question.tolist(), condition.tolist(), index.tolist(), line.tolist(), strict=True
            ):
                lines[_sample_key(q, c, i)] = at
        return lines

    def check_against(
        self,
        audit: Audit,
        questions: dict[str, tuple[int, str, dict, str]],
        problems: list[ImportProblem],
        *,
        skip_existing: bool,
        skip_trace_ids: set[str],
    ) -> tuple[int, set[int]]:
        """Questions stated somewhere, places free in the audit; the audit's sample count and
        the samples skip-existing leaves out."""
        if len(self.condition_order) >= MAX_CONDITIONS:
            problems.append(ImportProblem(None, f"more than {MAX_CONDITIONS} conditions"))
            return 0, set()
        unstated = [q for q in self.referenced if q not in questions]
        known: set[str] = set()
        if unstated and audit.pk is not None:
            for start in range(0, len(unstated), 5000):
                known.update(
                    Question.objects.filter(
                        audit=audit, external_id__in=unstated[start : start + 5000]
                    ).values_list("external_id", flat=True)
                )
        for question_id in unstated:
            if question_id not in known:
                problems.append(
                    ImportProblem(
                        self.referenced[question_id],
                        f"question {question_id!r} is stated by no record of the file and was "
                        "not imported before: give its 'question' (and options, gold answer) "
                        "on one of its records",
                        field="question",
                    )
                )
        if audit.pk is None:
            return 0, set()
        seen = AnswerSample.objects.filter(audit=audit).count()
        skip: set[int] = set()
        traces = Trace.objects.filter(audit=audit)
        sample_lines = self._all_sample_lines() if seen or traces.exists() else self.sample_lines
        if seen:
            for key in self._keys_in_audit(AnswerSample.objects.filter(audit=audit)):
                if (line := sample_lines.get(key)) is not None:
                    if skip_existing:
                        skip.add(key)
                    else:
                        problems.append(
                            ImportProblem(
                                line,
                                "this sample (question, condition, sample_index) was already "
                                f"imported into audit {audit.slug!r} (use skip-existing to "
                                "leave it out)",
                                field="sample_index",
                            )
                        )
                elif (line := self.trace_keys.get(key)) is not None:
                    problems.append(
                        ImportProblem(
                            line,
                            "an answer-only sample imported before holds this trace's "
                            "question, condition and sample_index",
                            field="sample_index",
                        )
                    )
        for key in self._keys_in_audit(traces, leave_out=skip_trace_ids):
            if (line := sample_lines.get(key)) is not None and key not in skip:
                problems.append(
                    ImportProblem(
                        line,
                        "an audited trace imported before holds this sample's question, "
                        "condition and sample_index",
                        field="sample_index",
                    )
                )
        return seen, skip

    def _keys_in_audit(self, queryset, *, leave_out: set[str] | None = None) -> Iterator[int]:
        """Packed keys of the rows whose question and condition the file names (traces whose
        external id is in ``leave_out`` left out)."""
        traces = leave_out is not None
        columns = ["question__external_id", "condition__name", "sample_index"]
        rows = queryset.values_list(*columns, *(["external_id"] if traces else [])).iterator(
            chunk_size=20_000
        )
        for question_id, condition, sample_index, *external_id in rows:
            if traces and external_id[0] in leave_out:  # type: ignore[operator]
                continue
            question = self.question_ord.get(question_id)
            condition_ord = self.condition_ord.get(condition)
            if question is not None and condition_ord is not None:
                yield _sample_key(question, condition_ord, sample_index)


def _last_trace_pk(audit: Audit) -> int:
    if audit.pk is None:
        return 0
    last = Trace.objects.filter(audit=audit).order_by("-pk").values_list("pk", flat=True).first()
    return last or 0


def _existing_trace_ids(audit: Audit, trace_ids: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(trace_ids), 5000):
        found.update(
            Trace.objects.filter(
                audit=audit, external_id__in=trace_ids[start : start + 5000]
            ).values_list("external_id", flat=True)
        )
    return found


def _chunks(records: Iterable[TraceRecord], size: int) -> Iterator[list[TraceRecord]]:
    chunk: list[TraceRecord] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _answer_correct(final_answer: str, gold: str) -> bool | None:
    if not final_answer.strip() or not gold.strip():
        return None
    return final_answer.strip().casefold() == gold.strip().casefold()


class _RowWriter:
    """Bulk writer: COPY on PostgreSQL, bulk_create elsewhere (SQLite).

    On PostgreSQL the step rows stream into COPY through a queued writer thread as they are
    made, so the server indexes one batch while Python segments the next, instead of each
    waiting for the other.
    """

    TRACE_COLUMNS = (
        "id",
        "audit_id",
        "question_id",
        "condition_id",
        "external_id",
        "sample_index",
        "text",
        "final_answer",
        "answer_correct",
        "confidence",
        "trace_type",
        "metadata",
        "import_job_id",
        "blinded_final_answer",
    )
    STEP_COLUMNS = (
        "audit_id",
        "trace_id",
        "segmentation",
        "index",
        "text",
        "blinded_text",
        "blinding_version",
        "char_start",
        "char_end",
        "public_id",
        "reference_verdict",
        "kind",
    )

    # The columns' PostgreSQL types, for binary COPY.
    STEP_TYPES = (
        "int8",
        "int8",
        "varchar",
        "int4",
        "text",
        "text",
        "varchar",
        "int4",
        "int4",
        "varchar",
        "varchar",
        "varchar",
    )

    def __init__(self) -> None:
        self.postgres = connection.vendor == "postgresql"

    QUESTION_COLUMNS = (
        "id",
        "audit_id",
        "external_id",
        "stem",
        "options",
        "gold_answer",
        "dataset",
        "metadata",
    )

    def insert_questions(self, questions: list[Question]) -> None:
        """Insert the questions and set their primary keys (COPY on PostgreSQL: an SC@k file
        states a thousand questions, which bulk_create took 0.25 s to insert)."""
        if not self.postgres:
            Question.objects.bulk_create(questions, batch_size=1000)
            return
        pks = self._next_ids("annotations_question", len(questions))
        with (
            connection.cursor() as cursor,
            cursor.cursor.copy(
                f"COPY annotations_question ({', '.join(self.QUESTION_COLUMNS)}) FROM STDIN"
            ) as copy,
        ):
            for pk, question in zip(pks, questions, strict=True):
                question.pk = pk
                copy.write_row(
                    (
                        pk,
                        question.audit_id,
                        question.external_id,
                        question.stem,
                        orjson.dumps(question.options).decode(),
                        question.gold_answer,
                        question.dataset,
                        orjson.dumps(question.metadata).decode(),
                    )
                )
        for question in questions:
            question._state.adding = False
            question._state.db = connection.alias

    def _next_ids(self, table: str, count: int) -> list[int]:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) "
                "FROM generate_series(1, %s)",
                [count],
            )
            return [pk for (pk,) in cursor.fetchall()]

    def trace_ids(self, count: int) -> list[int | None]:
        """Primary keys for the next traces, reserved up front (None off PostgreSQL)."""
        if not self.postgres:
            return [None] * count
        return self._next_ids("annotations_trace", count)

    def insert_traces(self, rows: list[tuple]) -> list[int]:
        """Insert rows in TRACE_COLUMNS order and return their ids."""
        if not self.postgres:
            objects = Trace.objects.bulk_create(
                [Trace(**dict(zip(self.TRACE_COLUMNS[1:], row[1:], strict=True))) for row in rows],
                batch_size=500,
            )
            return [t.pk for t in objects]
        with (
            connection.cursor() as cursor,
            cursor.cursor.copy(
                f"COPY annotations_trace ({', '.join(self.TRACE_COLUMNS)}) FROM STDIN"
            ) as copy,
        ):
            for row in rows:
                copy.write_row((*row[:11], orjson.dumps(row[11]).decode(), *row[12:]))
        return [row[0] for row in rows]

    SAMPLE_COLUMNS = (
        "audit_id",
        "question_id",
        "condition_id",
        "import_job_id",
        "sample_index",
        "final_answer",
        "confidence",
        "text",
        "trace_type",
        "metadata",
    )

    def insert_samples(
        self,
        columns: SampleColumns,
        *,
        audit_pk: int,
        job_pk: int | None,
        question_pks: list[int],
        condition_pks: list[int],
        skip_keys: set[int],
    ) -> tuple[int, int]:
        """Write the samples' columns (ordinals mapped to primary keys); return (written,
        skipped). On PostgreSQL pyarrow writes the rows as CSV for COPY, in C: the checking
        was pass 1's, and a Python loop per row here would double the import's time."""
        keep = _rows_kept(columns, skip_keys)
        n = len(columns) if keep is None else int(keep.sum())
        skipped = len(columns) - n
        frame = _sample_table(columns, audit_pk, job_pk, question_pks, condition_pks)
        if keep is not None:
            frame = frame.filter(pa.array(keep))
        if not self.postgres:
            self._bulk_create_samples(frame)
            return n, skipped
        sql = (
            f"COPY annotations_answersample ({', '.join(self.SAMPLE_COLUMNS)}) "
            "FROM STDIN WITH (FORMAT csv)"
        )
        options = pa_csv.WriteOptions(include_header=False)
        with connection.cursor() as cursor:
            raw = cursor.cursor
            with raw.copy(sql, writer=QueuedLibpqWriter(raw)) as copy:
                # 50,000 rows (~1.5 MB) a block: the server stores one while the next is made.
                for start in range(0, frame.num_rows, 50_000):
                    buffer = io.BytesIO()
                    pa_csv.write_csv(frame.slice(start, 50_000), buffer, options)
                    copy.write(buffer.getvalue())
        return n, skipped

    def _bulk_create_samples(self, frame: "pa.Table") -> None:
        objects = []
        for row in frame.to_pylist():
            row["metadata"] = orjson.loads(row["metadata"])
            objects.append(AnswerSample(**row))
        AnswerSample.objects.bulk_create(objects, batch_size=1000)

    @contextmanager
    def step_sink(self) -> Iterator[Callable[[tuple], None]]:
        """A function taking step rows (STEP_COLUMNS order) until the block ends."""
        if not self.postgres:
            pending: list[Step] = []

            def put(row: tuple) -> None:
                pending.append(Step(**dict(zip(self.STEP_COLUMNS, row, strict=True))))

            yield put
            Step.objects.bulk_create(pending, batch_size=1000)
            return
        # Binary: psycopg formats a step row in half the time it takes for text (measured
        # 0.07 against 0.15 s per 200,000 rows), and the server parses less.
        sql = f"COPY annotations_step ({', '.join(self.STEP_COLUMNS)}) FROM STDIN (FORMAT binary)"
        with connection.cursor() as cursor:
            raw = cursor.cursor
            with raw.copy(sql, writer=QueuedLibpqWriter(raw)) as copy:
                copy.set_types(self.STEP_TYPES)
                yield copy.write_row


def _rows_kept(columns: SampleColumns, skip_keys: set[int]) -> "np.ndarray | None":
    """Which samples to write (None: all); only skip-existing leaves any out."""
    if not skip_keys:
        return None
    return np.fromiter(
        (
            _sample_key(q, c, i) not in skip_keys
            for q, c, i in zip(
                columns.question, columns.condition, columns.sample_index, strict=True
            )
        ),
        dtype=bool,
        count=len(columns),
    )


def _sample_table(
    columns: SampleColumns,
    audit_pk: int,
    job_pk: int | None,
    question_pks: list[int],
    condition_pks: list[int],
) -> "pa.Table":
    """The samples as a table in SAMPLE_COLUMNS order, primary keys in place of ordinals."""
    n = len(columns)

    def sparse(values: dict[int, str], default: str) -> "pa.Array":
        out = [default] * n
        for row, value in values.items():
            out[row] = value
        return pa.array(out, type=pa.string())

    def ints(values: array) -> np.ndarray:
        return np.frombuffer(values, dtype=np.int64) if n else np.zeros(0, dtype=np.int64)

    confidence = np.frombuffer(columns.confidence, dtype=np.float64) if n else np.zeros(0)
    return pa.table(
        {
            "audit_id": pa.array(np.full(n, audit_pk, dtype=np.int64)),
            "question_id": pa.array(np.asarray(question_pks, np.int64)[ints(columns.question)]),
            "condition_id": pa.array(np.asarray(condition_pks, np.int64)[ints(columns.condition)]),
            "import_job_id": pa.array([job_pk] * n, type=pa.int64()),
            "sample_index": pa.array(ints(columns.sample_index)),
            "final_answer": columns.answers(),
            "confidence": pa.array(confidence, mask=np.isnan(confidence), type=pa.float64()),
            "text": sparse(columns.text, ""),
            "trace_type": sparse(columns.trace_type, ""),
            "metadata": sparse(columns.metadata, "{}"),
        }
    )


class _PublicIdPool:
    """Public ids drawn from the audit's stream in blocks (one big draw beats many small)."""

    BLOCK = 4096

    def __init__(self, audit: Audit) -> None:
        # One stream per import, numbered by the steps already there: the same imports into a
        # fresh database with the same seed give the same ids; no id says anything about its
        # step.
        existing = Step.objects.filter(audit=audit).count()
        self._rng = seeded_random(audit.blinding_seed, f"public-ids:{existing}")
        self._ids: list[str] = []
        self._next = 0

    def take(self, count: int) -> list[str]:
        if self._next + count > len(self._ids):
            self._ids = self._ids[self._next :] + public_ids(self._rng, max(self.BLOCK, count))
            self._next = 0
        taken = self._ids[self._next : self._next + count]
        self._next += count
        return taken


def import_run(
    *,
    audit: Audit,
    plan: ImportPlan,
    job: ImportJob | None = None,
    progress: ProgressCallback | None = None,
    prepare_ahead: bool | None = None,
) -> ImportResult:
    """Pass 2: write a validated file in one transaction (rolled back on any problem).

    The Python work of a chunk (reading, segmenting, blinding: ``_prepared_chunks``) is done
    by a thread up to two chunks ahead of the writing, so the server stores one chunk while
    the next is made (``prepare_ahead``; default on PostgreSQL, where the waits for the server
    release the GIL). Both ways write the same rows, public ids included.
    """
    writer = _RowWriter()
    problems: list[ImportProblem] = []
    n_traces = n_steps = n_skipped = done = 0
    n_samples = n_samples_skipped = 0
    if plan.n_samples and plan.sample_columns is None:
        raise ValueError("this plan checked answer-only samples without keeping them")
    if prepare_ahead is None:
        prepare_ahead = writer.postgres
    with transaction.atomic():
        # One import per audit at a time: the id stream and the duplicate check rely on it.
        audit = Audit.objects.select_for_update().get(pk=audit.pk)
        conditions = conditions_ensure(audit=audit, names=plan.condition_names)
        question_ids = dict(Question.objects.filter(audit=audit).values_list("external_id", "id"))
        # Compiled once per import: the audit's normaliser version and its own rules.
        blinder = blinder_for_audit(audit)
        # Pass 1 ran without the lock: if an import that held it first wrote traces since,
        # ids must be checked again per chunk (else the unique constraint would fail the
        # write with no line). One query decides; the usual answer is no (a per-chunk check
        # cost ~0.8 s per 100,000 traces in the import bench).
        recheck = Trace.objects.filter(audit=audit, pk__gt=plan.traces_seen_up_to).exists()
        # The preparing thread touches no database: whatever it needs is read here first.
        read_problems: list[ImportProblem] = []
        records = read_records(
            plan.path,
            plan.file_format,
            read_problems,
            max_trace_chars=settings.STEPAUDIT_MAX_TRACE_CHARS,
            only_lines=plan.trace_lines,
            condition=plan.condition,
        )
        # A file of answer-only samples has no trace to read again.
        chunks = _prepared_chunks(
            records if plan.trace_lines != set() else iter(()),
            read_problems=read_problems,
            skip_trace_ids=plan.skip_trace_ids,
            blinder=blinder,
            names=plan.segmenters,
            new_ids=_PublicIdPool(audit).take,
            max_steps=settings.STEPAUDIT_MAX_STEPS_PER_TRACE,
            job_pk=job.pk if job else None,
        )
        if prepare_ahead:
            chunks = _made_ahead(chunks, depth=2)
        try:
            for chunk in chunks:
                done += chunk.n_read
                if chunk.problems:
                    problems.extend(chunk.problems)
                    break
                kept = chunk.kept
                # Pass 1 ran without the lock: an import that held it first may have written
                # some of these ids since (the unique constraint would fail the write with no
                # line).
                if recheck and (arrived := _existing_trace_ids(audit, [r.trace_id for r in kept])):
                    if not plan.skip_existing:
                        problems.extend(
                            ImportProblem(
                                r.line,
                                f"trace id {r.trace_id!r} was imported into audit "
                                f"{audit.slug!r} by another import since this file was checked",
                                field="trace_id",
                            )
                            for r in kept
                            if r.trace_id in arrived
                        )
                        break
                    chunk.leave_out(arrived)
                    kept = chunk.kept
                n_skipped += chunk.n_read - len(kept)
                _insert_new_questions(writer, audit, kept, question_ids)
                trace_pks = writer.insert_traces(
                    [
                        (
                            pk,
                            audit.pk,
                            question_ids[r.question_id],
                            conditions[r.condition].pk,
                            *row,
                        )
                        for pk, r, row in zip(
                            writer.trace_ids(len(kept)), kept, chunk.trace_rows, strict=True
                        )
                    ]
                )
                audit_pk = audit.pk
                with writer.step_sink() as put:
                    for trace_pk, rows in zip(trace_pks, chunk.step_rows, strict=True):
                        for row in rows:
                            put((audit_pk, trace_pk, *row))
                n_steps += chunk.n_steps
                n_traces += len(kept)
                if progress:
                    progress(done, plan.n_records)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()  # stops the preparing thread (or the reader) before the rollback
        problems.extend(read_problems)
        if plan.n_samples and not problems:
            n_samples, n_samples_skipped = _write_samples(
                writer, audit, plan, conditions, question_ids, job, problems
            )
            if progress:
                progress(plan.n_records, plan.n_records)
        if problems:
            transaction.set_rollback(True)
    if problems:
        raise ImportRejected(_capped(problems))
    return ImportResult(
        n_records=plan.n_records,
        n_traces=n_traces,
        n_steps=n_steps,
        n_skipped=n_skipped,
        segmenters=plan.segmenters,
        n_samples=n_samples,
        n_samples_skipped=n_samples_skipped,
    )


@dataclass
class _PreparedChunk:
    """A chunk of traces made ready to write: every row but the database's keys.

    ``trace_rows`` are TRACE_COLUMNS from ``external_id`` on; ``step_rows`` each trace's step
    rows, STEP_COLUMNS from ``segmentation`` on. Tuples, not lists: the garbage collector
    stops tracking a tuple of strings and numbers, but walks every list still alive (lists
    made the preparing 20% slower).
    """

    n_read: int
    kept: list[TraceRecord]
    trace_rows: list[tuple]
    step_rows: list[list[tuple]]
    n_steps: int
    problems: list[ImportProblem]

    def leave_out(self, trace_ids: set[str]) -> None:
        keep = [i for i, r in enumerate(self.kept) if r.trace_id not in trace_ids]
        self.n_steps = sum(len(self.step_rows[i]) for i in keep)
        self.kept = [self.kept[i] for i in keep]
        self.trace_rows = [self.trace_rows[i] for i in keep]
        self.step_rows = [self.step_rows[i] for i in keep]


def _prepared_chunks(
    records: Iterator[TraceRecord],
    *,
    read_problems: list[ImportProblem],
    skip_trace_ids: set[str],
    blinder: Blinder,
    names: list[str],
    new_ids: Callable[[int], list[str]],
    max_steps: int,
    job_pk: int | None,
) -> Iterator[_PreparedChunk]:
    """The Python half of pass 2, chunk by chunk: segment, blind, draw public ids.

    Touches no database (it may run in a thread of its own). A chunk with problems (the
    reader's, which ``records`` appends to ``read_problems``, or a segmenter that yields
    nothing or too much: pass 1 checked them all, so only a file changed since) is the last.
    """
    try:
        for chunk in _chunks(records, CHUNK_TRACES):
            kept = [r for r in chunk if r.trace_id not in skip_trace_ids]
            # Taken here, in the thread that reads: the reader appends to the list.
            problems = read_problems[:]
            del read_problems[: len(problems)]
            step_rows = []
            n_steps = 0
            for record in kept:
                rows = _step_rows(
                    record,
                    blinder=blinder,
                    names=names,
                    new_ids=new_ids,
                    max_steps=max_steps,
                    problems=problems,
                )
                step_rows.append(rows)
                n_steps += len(rows)
            trace_rows = [
                (
                    r.trace_id,
                    r.sample_index,
                    r.trace,
                    r.final_answer,
                    _answer_correct(r.final_answer, r.gold_answer),
                    r.confidence,
                    r.trace_type,
                    r.metadata,
                    job_pk,
                    final_answer_blinded(r.final_answer, blinder=blinder),
                )
                for r in kept
            ]
            yield _PreparedChunk(len(chunk), kept, trace_rows, step_rows, n_steps, problems)
            if problems:
                return
    finally:
        close = getattr(records, "close", None)
        if close is not None:
            close()


_T = TypeVar("_T")


def _made_ahead(items: Iterator[_T], *, depth: int) -> Iterator[_T]:
    """``items``, made by a thread of their own up to ``depth`` ahead of the caller.

    An exception in the thread is raised here; closing this generator (or leaving the loop)
    stops the thread before it returns.
    """
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def hand_over(entry: tuple) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def make() -> None:
        try:
            for item in items:
                if not hand_over((item, None)):
                    return
            hand_over((end, None))
        except BaseException as exc:  # handed to the consumer, raised there
            hand_over((end, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=make, name="import-prepare", daemon=True)
    thread.start()
    try:
        while True:
            item, exc = ready.get()
            if exc is not None:
                raise exc
            if item is end:
                return
            yield item
    finally:
        stop.set()
        thread.join()


def _write_samples(
    writer: "_RowWriter",
    audit: Audit,
    plan: ImportPlan,
    conditions: dict,
    question_ids: dict[str, int],
    job: ImportJob | None,
    problems: list[ImportProblem],
) -> tuple[int, int]:
    """Pass 2 for answer-only samples, after the traces: create the questions only samples
    state, then write the columns."""
    # Pass 1 ran without the lock; a sample written since could take a place this file
    # holds (the primary key would fail the COPY with no line).
    if AnswerSample.objects.filter(audit=audit).count() != plan.samples_seen:
        problems.append(
            ImportProblem(
                None,
                f"another import wrote answer-only samples into audit {audit.slug!r} since "
                "this file was checked; import the file again",
            )
        )
        return 0, 0
    new = [
        Question(
            audit=audit,
            external_id=question_id,
            stem=record.question,
            options=record.options,
            gold_answer=record.gold_answer,
            dataset=record.dataset,
        )
        for question_id, record in plan.sample_questions.items()
        if question_id not in question_ids
    ]
    if new:
        writer.insert_questions(new)
        question_ids.update({q.external_id: q.pk for q in new})
    return writer.insert_samples(
        plan.sample_columns,  # type: ignore[arg-type]
        audit_pk=audit.pk,
        job_pk=job.pk if job else None,
        question_pks=[question_ids[q] for q in plan.question_order],
        condition_pks=[conditions[name].pk for name in plan.condition_order],
        skip_keys=plan.skip_sample_keys,
    )


def _insert_new_questions(
    writer: _RowWriter, audit: Audit, records: list[TraceRecord], question_ids: dict[str, int]
) -> None:
    new: dict[str, Question] = {}
    for r in records:
        if r.question_id not in question_ids and r.question_id not in new:
            new[r.question_id] = Question(
                audit=audit,
                external_id=r.question_id,
                stem=r.question,
                options=r.options,
                gold_answer=r.gold_answer,
                dataset=r.dataset,
            )
    if new:
        writer.insert_questions(list(new.values()))
        question_ids.update({q.external_id: q.pk for q in new.values()})


def _step_rows(
    record: TraceRecord,
    *,
    blinder: Blinder,
    names: list[str],
    new_ids: Callable[[int], list[str]],
    max_steps: int,
    problems: list[ImportProblem],
) -> list[tuple]:
    """One trace's step rows under each segmentation (STEP_COLUMNS from ``segmentation``)."""
    given = [s.text for s in record.steps] if record.steps else None
    # Reference verdicts and kinds belong to the given steps (blank ones are dropped).
    extras = [(s.reference_verdict, s.kind) for s in record.steps or [] if s.text.strip()]
    version = blinder.version
    blind = blinder.apply  # one call a step fewer than blinder(text)
    rows: list[tuple] = []
    for name in names:
        segments = segmenters.segment_trace(name, text=record.trace, given_steps=given)
        if not segments:
            problems.append(
                ImportProblem(record.line, f"segmenter {name!r} yields no steps", field="trace")
            )
            continue
        if len(segments) > max_steps:
            problems.append(
                ImportProblem(
                    record.line,
                    f"segmenter {name!r} yields {len(segments)} steps; the limit is {max_steps}",
                    field="trace",
                )
            )
            continue
        is_given = name == "given"
        for index, (segment, public_id) in enumerate(
            zip(segments, new_ids(len(segments)), strict=True)
        ):
            verdict, kind = extras[index] if is_given else (None, "")
            rows.append(
                (
                    name,
                    index,
                    segment.text,
                    blind(segment.text),
                    version,
                    segment.start,
                    segment.end,
                    public_id,
                    verdict,
                    kind,
                )
            )
    return rows


def import_file(
    *,
    audit: Audit,
    path: Path,
    segmenter_names: list[str] | None = None,
    skip_existing: bool = False,
    job: ImportJob | None = None,
    progress: ProgressCallback | None = None,
    file_format: str | None = None,
    condition: str = "",
) -> ImportResult:
    """Validate, then import. Raises ImportRejected (nothing written) on any problem."""
    plan = import_validate(
        audit=audit,
        path=path,
        segmenter_names=segmenter_names,
        skip_existing=skip_existing,
        file_format=file_format,
        condition=condition,
    )
    return import_run(audit=audit, plan=plan, job=job, progress=progress)
