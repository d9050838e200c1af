"""Trace import: validate the whole file, then segment, blind and write it in one transaction.

Pass 1 streams the file and collects every problem (format, fields, types, duplicates, ids
already imported, sizes, segmenters that would yield nothing). Only a clean file reaches pass 2,
which streams it again and writes in chunks — COPY on PostgreSQL, bulk inserts elsewhere —
inside one transaction, so a failure at any point leaves the database as it was.
"""

import base64
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from django.conf import settings
from django.db import connection, transaction

from annotations.models import Audit, ImportJob, Question, Step, Trace
from annotations.services import segmenters
from annotations.services.conditions import conditions_ensure
from annotations.services.import_formats import (
    MAX_PROBLEMS,
    FormatError,
    ImportProblem,
    TraceRecord,
    detect_format,
    read_records,
    sniff_head,
)
from annotations.services.normalise import blind_text
from annotations.services.randomness import seeded_random
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


@dataclass(frozen=True)
class ImportResult:
    n_records: int
    n_traces: int
    n_steps: int
    n_skipped: int
    segmenters: list[str]


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


def import_validate(
    *,
    audit: Audit,
    path: Path,
    segmenter_names: list[str] | None = None,
    skip_existing: bool = False,
) -> ImportPlan:
    """Pass 1: read the whole file; raise ImportRejected listing every problem, or plan pass 2."""
    problems: list[ImportProblem] = []
    try:
        file_format = detect_format(path, sniff_head(path))
    except FormatError as exc:
        raise ImportRejected(exc.problems) from None
    names = list(dict.fromkeys(segmenter_names or []))
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
    try:
        for record in read_records(path, file_format, problems, max_trace_chars=max_chars):
            n_records += 1
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
    except FormatError as exc:
        problems = exc.problems + problems
    if n_records == 0 and not problems:
        problems.append(ImportProblem(None, "the file holds no trace records"))
    if not names:
        names = ["given"] if n_records and all_have_steps else ["paragraphs"]
    skip: set[str] = set()
    if first_seen:
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
    if problems:
        problems.sort(key=lambda p: p.line or 0)
        raise ImportRejected(_capped(problems))
    return ImportPlan(
        path=path,
        file_format=file_format,
        segmenters=names,
        n_records=n_records,
        skip_trace_ids=skip,
        condition_names=list(conditions),
    )


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
    """Bulk writer: COPY on PostgreSQL, bulk_create elsewhere (SQLite)."""

    def __init__(self) -> None:
        self.postgres = connection.vendor == "postgresql"

    def insert_questions(self, questions: list[Question]) -> None:
        Question.objects.bulk_create(questions, batch_size=1000)

    def insert_traces(self, traces: list[Trace]) -> None:
        if not self.postgres:
            Trace.objects.bulk_create(traces, batch_size=500)
            return
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence('annotations_trace', 'id')) "
                "FROM generate_series(1, %s)",
                [len(traces)],
            )
            for trace, (pk,) in zip(traces, cursor.fetchall(), strict=True):
                trace.pk = pk
            columns = (
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
            )
            with cursor.cursor.copy(
                f"COPY annotations_trace ({', '.join(columns)}) FROM STDIN"
            ) as copy:
                for t in traces:
                    copy.write_row(
                        (
                            t.pk,
                            t.audit_id,
                            t.question_id,
                            t.condition_id,
                            t.external_id,
                            t.sample_index,
                            t.text,
                            t.final_answer,
                            t.answer_correct,
                            t.confidence,
                            t.trace_type,
                            orjson.dumps(t.metadata).decode(),
                            t.import_job_id,
                        )
                    )

    def insert_steps(self, rows: list[tuple]) -> None:
        if not self.postgres:
            Step.objects.bulk_create(
                [
                    Step(
                        audit_id=r[0],
                        trace_id=r[1],
                        segmentation=r[2],
                        index=r[3],
                        text=r[4],
                        blinded_text=r[5],
                        blinding_version=r[6],
                        char_start=r[7],
                        char_end=r[8],
                        public_id=r[9],
                        reference_verdict=r[10],
                        kind=r[11],
                    )
                    for r in rows
                ],
                batch_size=1000,
            )
            return
        with (
            connection.cursor() as cursor,
            cursor.cursor.copy(
                "COPY annotations_step (audit_id, trace_id, segmentation, index, text,"
                " blinded_text, blinding_version, char_start, char_end, public_id,"
                " reference_verdict, kind)"
                " FROM STDIN"
            ) as copy,
        ):
            for row in rows:
                copy.write_row(row)


def _public_id_stream(audit: Audit) -> Callable[[], str]:
    # One stream per import, numbered by the steps already there: the same imports into a
    # fresh database with the same seed give the same ids; no id says anything about its step.
    existing = Step.objects.filter(audit=audit).count()
    getrandbits = seeded_random(audit.blinding_seed, f"public-ids:{existing}").getrandbits

    def next_id() -> str:
        return base64.b32encode(getrandbits(80).to_bytes(10, "big")).decode().lower()

    return next_id


def import_run(
    *,
    audit: Audit,
    plan: ImportPlan,
    job: ImportJob | None = None,
    progress: ProgressCallback | None = None,
) -> ImportResult:
    """Pass 2: write a validated file in one transaction (rolled back on any problem)."""
    writer = _RowWriter()
    problems: list[ImportProblem] = []
    max_steps = settings.STEPAUDIT_MAX_STEPS_PER_TRACE
    n_traces = n_steps = n_skipped = done = 0
    with transaction.atomic():
        # One import per audit at a time: the id stream and the duplicate check rely on it.
        audit = Audit.objects.select_for_update().get(pk=audit.pk)
        conditions = conditions_ensure(audit=audit, names=plan.condition_names)
        question_ids = dict(Question.objects.filter(audit=audit).values_list("external_id", "id"))
        next_public_id = _public_id_stream(audit)
        normalise = audit.style_normalisation
        records = read_records(
            plan.path,
            plan.file_format,
            problems,
            max_trace_chars=settings.STEPAUDIT_MAX_TRACE_CHARS,
        )
        for chunk in _chunks(records, CHUNK_TRACES):
            done += len(chunk)
            kept = [r for r in chunk if r.trace_id not in plan.skip_trace_ids]
            n_skipped += len(chunk) - len(kept)
            chunk = kept
            new_questions = {}
            for r in chunk:
                if r.question_id not in question_ids and r.question_id not in new_questions:
                    new_questions[r.question_id] = Question(
                        audit=audit,
                        external_id=r.question_id,
                        stem=r.question,
                        options=r.options,
                        gold_answer=r.gold_answer,
                        dataset=r.dataset,
                    )
            if new_questions:
                writer.insert_questions(list(new_questions.values()))
                question_ids.update({q.external_id: q.pk for q in new_questions.values()})
            traces = [
                Trace(
                    audit_id=audit.pk,
                    question_id=question_ids[r.question_id],
                    condition_id=conditions[r.condition].pk,
                    external_id=r.trace_id,
                    sample_index=r.sample_index,
                    text=r.trace,
                    final_answer=r.final_answer,
                    answer_correct=_answer_correct(r.final_answer, r.gold_answer),
                    confidence=r.confidence,
                    trace_type=r.trace_type,
                    metadata=r.metadata,
                    import_job_id=job.pk if job else None,
                )
                for r in chunk
            ]
            writer.insert_traces(traces)
            step_rows: list[tuple] = []
            for record, trace in zip(chunk, traces, strict=True):
                given = [s.text for s in record.steps] if record.steps else None
                for name in plan.segmenters:
                    segments = segmenters.segment_trace(name, text=record.trace, given_steps=given)
                    if not segments:
                        problems.append(
                            ImportProblem(
                                record.line, f"segmenter {name!r} yields no steps", field="trace"
                            )
                        )
                    elif len(segments) > max_steps:
                        problems.append(
                            ImportProblem(
                                record.line,
                                f"segmenter {name!r} yields {len(segments)} steps; "
                                f"the limit is {max_steps}",
                                field="trace",
                            )
                        )
                    extras = _given_extras(record) if name == "given" else None
                    for index, segment in enumerate(segments):
                        blinded, version = blind_text(segment.text, normalise=normalise)
                        verdict, kind = extras[index] if extras else (None, "")
                        step_rows.append(
                            (
                                audit.pk,
                                trace.pk,
                                name,
                                index,
                                segment.text,
                                blinded,
                                version,
                                segment.start,
                                segment.end,
                                next_public_id(),
                                verdict,
                                kind,
                            )
                        )
            if problems:
                break
            writer.insert_steps(step_rows)
            n_traces += len(chunk)
            n_steps += len(step_rows)
            if progress:
                progress(done, plan.n_records)
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
    )


def _given_extras(record: TraceRecord) -> list[tuple[str | None, str]]:
    return [(s.reference_verdict, s.kind) for s in record.steps or [] if s.text.strip()]


def import_file(
    *,
    audit: Audit,
    path: Path,
    segmenter_names: list[str] | None = None,
    skip_existing: bool = False,
    job: ImportJob | None = None,
    progress: ProgressCallback | None = None,
) -> ImportResult:
    """Validate, then import. Raises ImportRejected (nothing written) on any problem."""
    plan = import_validate(
        audit=audit, path=path, segmenter_names=segmenter_names, skip_existing=skip_existing
    )
    return import_run(audit=audit, plan=plan, job=job, progress=progress)
