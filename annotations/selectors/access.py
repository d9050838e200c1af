"""The one access check for an annotator's work: an assignment (item) of *this* user, or 404.

Every function here puts the same two conditions first — the assignment's public id and the
annotator — so another user's assignment and a missing one answer the same (a guessed public
id tells nothing). Tests: tests/annotations/selectors/test_access.py.

The two item reads of the label loop are single hand-written SQL statements: the ORM spent
more time compiling the nine-table select_related than PostgreSQL spent running it (measured:
16 ms → 4 ms per "next item" request in process). They run unchanged on SQLite.
"""

import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import Exists, OuterRef

from annotations.models import (
    Assignment,
    AssignmentItem,
    Audit,
    Batch,
    BatchItem,
    FirstErrorMark,
    Label,
    Question,
    Step,
    Trace,
    TraceRating,
)
from auditapp.exceptions import NotFoundError

NOT_FOUND = "No such assignment."
NO_ITEM = "No such item."


def assignment_get_for_annotator(
    *, annotator: AbstractBaseUser, assignment_public_id: str, for_update: bool = False
) -> Assignment:
    if not annotator.is_authenticated:
        raise NotFoundError(NOT_FOUND)
    queryset = Assignment.objects.select_related("batch__audit")
    if for_update:
        queryset = queryset.select_for_update(of=("self",))
    assignment = queryset.filter(public_id=assignment_public_id, annotator=annotator).first()
    if assignment is None:
        raise NotFoundError(NOT_FOUND)
    return assignment


def _fetchone(sql: str, params: list) -> tuple | None:
    """Run one of the hot statements and return its row.

    On PostgreSQL the statement is prepared once per connection and reused: planning the
    joins cost 1.5 ms a call, ten times the execution (EXPLAIN ANALYZE on the 1M-step bench
    database). Django binds parameters on the client, which rules out prepared statements,
    so this uses a server-binding psycopg cursor on the same connection (and transaction).
    """
    connection.ensure_connection()
    if connection.vendor == "postgresql":
        import psycopg

        raw = connection.connection
        if raw.prepare_threshold is None:
            # Django switches preparation off; its own (client-binding) cursors never prepare
            # anyway. Allow only the explicit prepare=True below: automatic preparation
            # stays out of reach.
            raw.prepare_threshold = 2**31
        started = time.monotonic()
        with psycopg.Cursor(raw) as cursor:
            cursor.execute(sql, params, prepare=True)
            row = cursor.fetchone()
        if connection.queries_logged:
            # This cursor bypasses Django's debug wrapper: log it the same way, so query
            # counts (CaptureQueriesContext, the tests' upper bounds) see these statements too.
            connection.queries_log.append(
                {"sql": sql, "time": f"{time.monotonic() - started:.3f}", "prepared": True}
            )
        return row
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def _json(value: Any) -> Any:
    # PostgreSQL hands jsonb back decoded; SQLite hands back the text.
    return json.loads(value) if isinstance(value, str) else value


@dataclass(frozen=True)
class ItemAccess:
    """An item of the annotator's assignment, with what saving a label or rating needs."""

    item_id: int
    position: int
    assignment_id: int
    submitted_at: datetime | str | None
    segmentation: str
    step_id: int | None
    trace_id: int | None  # the batch item's trace (trace-rating audits)
    audit_kind: str
    context_mode: str
    show_final_answer: bool
    style_normalisation: bool
    error_categories: list
    probe_arms: list  # [{"label", "condition"}]; the label form asks only in 'every' mode
    probe_mode: str
    probe_every: int
    likert_items: list
    step_index: int | None
    blinding_version: str | None
    context_window: int | None  # at most this many preceding steps; None: all
    show_step_numbers: bool
    mode: str  # the batch's labelling mode (annotations.models.LabellingMode)

    @property
    def locked(self) -> bool:
        return self.submitted_at is not None


@dataclass(frozen=True)
class ItemView(ItemAccess):
    """Everything the blinded view of one item may draw on (and nothing it may not)."""

    guidelines: str
    public_id: str
    step_text: str | None
    step_trace_id: int | None
    final_answer: str
    question_stem: str
    question_options: dict
    label: dict | None
    rating: dict | None
    total: int
    done: int
    skipped: bool  # this item was skipped and is not labelled
    n_skipped: int  # items skipped and not labelled


def _tables() -> dict[str, str]:
    models = {
        "item": AssignmentItem,
        "assignment": Assignment,
        "batch": Batch,
        "audit": Audit,
        "batchitem": BatchItem,
        "step": Step,
        "trace": Trace,
        "question": Question,
        "label": Label,
        "rating": TraceRating,
    }
    return {name: connection.ops.quote_name(m._meta.db_table) for name, m in models.items()}


_ACCESS_COLUMNS = """
    ai.id, ai.position, a.id, a.submitted_at, b.segmentation, bi.step_id, bi.trace_id,
    au.kind, au.context_mode, au.show_final_answer, au.style_normalisation,
    au.error_categories, au.probe_arms, au.likert_items,
    s."index", s.blinding_version, au.context_window, au.show_step_numbers,
    au.probe_mode, au.probe_every, b.mode
"""
_ACCESS_JOINS = """
    FROM {item} ai
    JOIN {assignment} a ON a.id = ai.assignment_id
    JOIN {batch} b ON b.id = a.batch_id
    JOIN {audit} au ON au.id = b.audit_id
    JOIN {batchitem} bi ON bi.id = ai.batch_item_id
    LEFT JOIN {step} s ON s.id = bi.step_id
"""
# The two conditions every read starts with: this assignment, and it is this annotator's.
_OWNED = "a.public_id = %s AND a.annotator_id = %s"


def _access(row: tuple) -> dict:
    return {
        "item_id": row[0],
        "position": row[1],
        "assignment_id": row[2],
        "submitted_at": row[3],
        "segmentation": row[4],
        "step_id": row[5],
        "trace_id": row[6],
        "audit_kind": row[7],
        "context_mode": row[8],
        "show_final_answer": bool(row[9]),
        "style_normalisation": bool(row[10]),
        "error_categories": _json(row[11]) or [],
        "probe_arms": _json(row[12]) or [],
        "likert_items": _json(row[13]) or [],
        "step_index": row[14],
        "blinding_version": row[15],
        "context_window": row[16],
        "show_step_numbers": bool(row[17]),
        "probe_mode": row[18],
        "probe_every": row[19],
        "mode": row[20],
    }


def assignment_item_get_for_annotator(
    *,
    annotator: AbstractBaseUser,
    assignment_public_id: str,
    position: int,
    for_update: bool = False,
) -> ItemAccess:
    """The item at ``position`` of the annotator's assignment, or 404.

    ``for_update`` locks the item and its assignment (PostgreSQL): saves of one assignment
    are serialised against each other and against its submission.
    """
    if not annotator.is_authenticated:
        raise NotFoundError(NOT_FOUND)
    sql = (
        f"SELECT {_ACCESS_COLUMNS} {_ACCESS_JOINS.format(**_tables())}"
        f" WHERE {_OWNED} AND ai.position = %s"
    )
    if for_update and connection.features.has_select_for_update_of:
        sql += " FOR UPDATE OF ai, a"
    row = _fetchone(sql, [assignment_public_id, annotator.pk, position])
    if row is None:
        raise NotFoundError(NO_ITEM)
    return ItemAccess(**_access(row))


def assignment_item_get_for_display(
    *,
    annotator: AbstractBaseUser,
    assignment_public_id: str,
    position: int | None = None,
    after: int | None = None,
) -> ItemView | None:
    """The item at ``position`` — or, with ``position=None``, the first not yet done — with
    the unit, its trace's question, the annotator's own label or rating and the progress
    counts, in one statement. None only when every item is done.

    ``after`` (with ``position=None``): the first item not yet done after that position,
    else the first not yet done from the start ("save & next" while labelling). Skipped items
    come after every item not yet seen; the one at ``after`` is not offered again unless it
    is the last one open."""
    if not annotator.is_authenticated:
        raise NotFoundError(NOT_FOUND)
    t = _tables()
    if position is None:
        # Walks the (assignment, position) index and stops at the first open item.
        first_open = f"""SELECT o.position FROM {t["item"]} o
            WHERE o.assignment_id = a.id {{}}
              AND NOT EXISTS (SELECT 1 FROM {t["label"]} x WHERE x.assignment_item_id = o.id)
              AND NOT EXISTS (SELECT 1 FROM {t["rating"]} y WHERE y.assignment_item_id = o.id)
            ORDER BY o.position LIMIT 1"""
        params = [assignment_public_id, annotator.pk]
        if after is None:
            where_position = f"ai.position = ({first_open.format('')})"
        else:
            # COALESCE stops at the first subquery that finds one: no wrap-around scan
            # unless nothing is open after ``after``.
            where_position = f"""ai.position = COALESCE(
                ({first_open.format("AND o.position > %s")}), ({first_open.format("")}))"""
            params.append(after)
    else:
        where_position = "ai.position = %s"
        params = [assignment_public_id, annotator.pk, position]
    view = _display(t, where_position, params)
    if view is not None and view.skipped and position is None:
        # The first open item was skipped: items not yet seen come first, skipped ones once
        # none is left. A second statement, only then: a filter on skipped_at in the one
        # above costs the planner its index walk (measured: 1.4 ms and 1,200 buffers a call
        # on the bench database instead of a few).
        fresh, skipped = "AND o.skipped_at IS NULL", "AND o.skipped_at IS NOT NULL"
        params = [assignment_public_id, annotator.pk]
        if after is None:
            where_position = f"""ai.position = COALESCE(
                ({first_open.format(fresh)}), ({first_open.format(skipped)}))"""
        else:
            # The item at ``after`` itself (just skipped) comes back only when it is the last
            # one open: then None.
            where_position = f"""ai.position = COALESCE(
                ({first_open.format(fresh + " AND o.position > %s")}),
                ({first_open.format(fresh + " AND o.position <> %s")}),
                ({first_open.format(skipped + " AND o.position > %s")}),
                ({first_open.format(skipped + " AND o.position <> %s")}))"""
            params += [after] * 4
        view = _display(t, where_position, params)
    if view is None:
        if position is not None:
            raise NotFoundError(NO_ITEM)
        # All done, or not this annotator's assignment: tell the two apart.
        assignment_get_for_annotator(annotator=annotator, assignment_public_id=assignment_public_id)
    return view


def _display(t: dict[str, str], where_position: str, params: list) -> ItemView | None:
    sql = f"""
        SELECT {_ACCESS_COLUMNS},
            au.guidelines, a.public_id, s.blinded_text, s.trace_id,
            t.blinded_final_answer, q.stem, q.options,
            l.verdict, l.error_category, l.comment, l.probe_guess, l.elapsed_ms, l.revision,
            r.answers, r.comment, r.elapsed_ms, r.revision,
            (SELECT COUNT(*) FROM {t["item"]} c WHERE c.assignment_id = a.id),
            (SELECT COUNT(*) FROM {t["label"]} c WHERE c.assignment_id = a.id)
              + (SELECT COUNT(*) FROM {t["rating"]} c WHERE c.assignment_id = a.id),
            l.flagged, l.flag_note, ai.skipped_at,
            (SELECT COUNT(*) FROM {t["item"]} c WHERE c.assignment_id = a.id
              AND c.skipped_at IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM {t["label"]} x WHERE x.assignment_item_id = c.id)
              AND NOT EXISTS (SELECT 1 FROM {t["rating"]} y WHERE y.assignment_item_id = c.id))
        {_ACCESS_JOINS.format(**t)}
        JOIN {t["trace"]} t ON t.id = COALESCE(s.trace_id, bi.trace_id)
        JOIN {t["question"]} q ON q.id = t.question_id
        LEFT JOIN {t["label"]} l ON l.assignment_item_id = ai.id
        LEFT JOIN {t["rating"]} r ON r.assignment_item_id = ai.id
        WHERE {_OWNED} AND {where_position}
    """
    row = _fetchone(sql, params)
    if row is None:
        return None
    rest = row[21:]
    return ItemView(
        **_access(row),
        guidelines=rest[0],
        public_id=rest[1],
        step_text=rest[2],
        step_trace_id=rest[3],
        final_answer=rest[4] or "",
        question_stem=rest[5],
        question_options=_json(rest[6]) or {},
        label=None
        if rest[7] is None
        else {
            "verdict": rest[7],
            "error_category": rest[8],
            "comment": rest[9],
            "probe_guess": rest[10],
            "elapsed_ms": rest[11],
            "revision": rest[12],
            "flagged": bool(rest[19]),
            "flag_note": rest[20] or "",
        },
        rating=None
        if rest[16] is None
        else {
            "answers": _json(rest[13]) or {},
            "comment": rest[14],
            "elapsed_ms": rest[15],
            "revision": rest[16],
        },
        total=rest[17],
        done=rest[18],
        skipped=rest[21] is not None and rest[7] is None and rest[16] is None,
        n_skipped=rest[22],
    )


def context_texts(
    *, trace_id: int, segmentation: str, before_index: int | None, last: int | None = None
) -> list[str]:
    """Blinded texts of a trace's steps (those before ``before_index``), in order; with
    ``last``, only the last ``last`` of them (the window annotators see)."""
    table = connection.ops.quote_name(Step._meta.db_table)
    sql = f"SELECT blinded_text FROM {table} WHERE trace_id = %s AND segmentation = %s"
    params: list = [trace_id, segmentation]
    if before_index is not None:
        sql += ' AND "index" < %s'
        params.append(before_index)
    if last is not None:
        # Newest first, then reversed: the window never reads the rest of a long trace.
        sql += ' ORDER BY "index" DESC LIMIT %s'
        params.append(last)
    else:
        sql += ' ORDER BY "index"'
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        texts = [r[0] for r in cursor.fetchall()]
    return texts[::-1] if last is not None else texts


@dataclass(frozen=True)
class TraceStepRow:
    item_id: int
    position: int
    step_id: int
    step_index: int
    text: str
    # The annotator's own label: (verdict, error_category, comment, probe_guess, elapsed_ms,
    # revision, flagged, flag_note), or None.
    label: tuple | None = None


@dataclass(frozen=True)
class TraceAccess:
    """One trace of a trace-mode assignment: its items in order, and what its page needs."""

    assignment: Assignment
    number: int  # 1-based, in the annotator's order of traces
    n_traces: int
    trace_id: int
    steps: tuple[TraceStepRow, ...]
    traces_labelled: int  # traces of the assignment whose every step has a label


def assignment_trace_numbers(*, assignment: Assignment) -> list[tuple[int, list[int]]]:
    """(trace id, positions of its items) in the annotator's order: one query. In the trace
    modes a trace's items are consecutive positions (``batch_assign``)."""
    return [(t, ps) for t, ps, _ in _trace_items(assignment)]


def _trace_items(assignment: Assignment) -> list[tuple[int, list[int], bool]]:
    """(trace id, positions, every step labelled) per trace, in order: one query."""
    rows = (
        AssignmentItem.objects.filter(assignment=assignment)
        .annotate(labelled=Exists(Label.objects.filter(assignment_item=OuterRef("pk"))))
        .order_by("position")
        .values_list("position", "batch_item__step__trace_id", "labelled")
    )
    traces: dict[int, list] = {}
    for position, trace_id, labelled in rows:
        entry = traces.setdefault(trace_id, [[], True])
        entry[0].append(position)
        entry[1] = entry[1] and bool(labelled)
    return [(t, ps, done) for t, (ps, done) in traces.items()]


def assignment_trace_get_for_annotator(
    *,
    annotator: AbstractBaseUser,
    assignment_public_id: str,
    number: int | None = None,
    position: int | None = None,
    for_update: bool = False,
) -> TraceAccess:
    """Trace ``number`` (or the trace holding item ``position``) of the annotator's own
    assignment, or 404: the same two conditions first as every read here. Three queries:
    the assignment, its items by trace, the trace's steps with the annotator's labels."""
    assignment = assignment_get_for_annotator(
        annotator=annotator, assignment_public_id=assignment_public_id, for_update=for_update
    )
    traces = _trace_items(assignment)
    if position is not None:
        number = next((n for n, (_, ps, _) in enumerate(traces, 1) if position in ps), None)
    if number is None or not 1 <= number <= len(traces):
        raise NotFoundError(NO_ITEM)
    trace_id, positions, _ = traces[number - 1]
    rows = (
        AssignmentItem.objects.filter(assignment=assignment, position__in=positions)
        .order_by("position")
        .values_list(
            "pk",
            "position",
            "batch_item__step_id",
            "batch_item__step__index",
            "batch_item__step__blinded_text",
            "label__verdict",
            "label__error_category",
            "label__comment",
            "label__probe_guess",
            "label__elapsed_ms",
            "label__revision",
            "label__flagged",
            "label__flag_note",
        )
    )
    return TraceAccess(
        assignment=assignment,
        number=number,
        n_traces=len(traces),
        trace_id=trace_id,
        steps=tuple(
            TraceStepRow(*row[:5], label=tuple(row[5:]) if row[5] is not None else None)
            for row in rows
        ),
        traces_labelled=sum(1 for _, _, done in traces if done),
    )


def item_marked() -> Exists:
    """An assignment item whose trace has a first-error mark in its assignment: done, though
    the steps after the mark stay unlabelled (for ``AssignmentItem`` querysets)."""
    return Exists(
        FirstErrorMark.objects.filter(
            assignment_id=OuterRef("assignment_id"),
            trace_id=OuterRef("batch_item__step__trace_id"),
        )
    )
