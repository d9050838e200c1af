"""Labels and ratings: create or revise, one current row per item, every change kept."""

import logging

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from annotations.models import (
    TRACE_MODES,
    Assignment,
    AssignmentEvent,
    AssignmentItem,
    Audit,
    Label,
    LabellingMode,
    LabelRevision,
    TraceRating,
    TraceRatingRevision,
    Verdict,
)
from annotations.selectors.access import (
    ItemAccess,
    _fetchone,
    assignment_get_for_annotator,
    assignment_item_get_for_annotator,
    item_marked,
)
from auditapp.exceptions import ApplicationError, ConflictError

logger = logging.getLogger(__name__)

PROBE_NO_IDEA = "no idea"
BLINDING_SCHEME = 1  # bump when what a clinician sees changes in kind


def _check_open(item: ItemAccess) -> None:
    if item.locked:
        raise ConflictError("The assignment is submitted and locked.", code="assignment_locked")


def _open_item_locked(annotator, assignment_public_id: str, position: int, *, kind: str):
    """The annotator's item, row-locked for a save, open, and of the kind being saved."""
    item = assignment_item_get_for_annotator(
        annotator=annotator,
        assignment_public_id=assignment_public_id,
        position=position,
        for_update=True,
    )
    _check_open(item)
    if kind == "label" and item.step_id is None:
        raise ApplicationError("This item asks for a rating, not a label.", code="wrong_kind")
    if kind == "label" and item.mode == LabellingMode.FIRST_ERROR:
        # Its labels come from the trace's first-error mark, written together.
        raise ConflictError(
            "This assignment marks the first wrong step of each trace: save the mark instead.",
            code="wrong_mode",
        )
    if kind == "rating" and item.trace_id is None:
        raise ApplicationError("This item asks for a label, not a rating.", code="wrong_kind")
    return item


def shown_for(item: ItemAccess) -> dict:
    """What the clinician saw for this item — stored with the label for the report."""
    if item.mode in TRACE_MODES:
        # The trace page: every step of the trace on one screen, in order.
        return {
            "scheme": BLINDING_SCHEME,
            "mode": item.mode,
            "context_mode": "whole_trace",
            "step_numbers_visible": item.show_step_numbers,
            "final_answer_visible": item.show_final_answer,
            "gold_answer_visible": False,
            "style_normalisation": item.style_normalisation,
            "blinding_version": item.blinding_version or "",
        }
    preceding = item.context_mode == Audit.ContextMode.PRECEDING
    before = item.step_index or 0
    window = item.context_window
    return {
        "scheme": BLINDING_SCHEME,
        "mode": item.mode,
        "context_mode": item.context_mode,
        "context_steps": (before if window is None else min(before, window)) if preceding else 0,
        "context_window": window,
        "step_numbers_visible": item.show_step_numbers,
        "final_answer_visible": item.show_final_answer,
        "gold_answer_visible": False,
        "style_normalisation": item.style_normalisation,
        "blinding_version": item.blinding_version or "",
    }


def _probe_answers(item: ItemAccess) -> tuple[str, ...]:
    """The probe answers the label form of this item accepts (none unless it asks)."""
    from annotations.services.probe import probe_labels, probe_on_item

    asks = probe_on_item(
        mode=item.probe_mode, every=item.probe_every, arms=item.probe_arms, position=item.position
    )
    return probe_labels(item.probe_arms) if asks else ()


def _validate_label(item: ItemAccess, verdict: str, error_category: str, probe_guess: str) -> str:
    if verdict not in Verdict.values:
        raise ApplicationError(f"Unknown verdict {verdict!r}.", code="verdict")
    if verdict != Verdict.ERROR:
        error_category = ""
    elif item.error_categories and error_category not in item.error_categories:
        raise ApplicationError(
            "Choose an error category from the list.",
            code="error_category",
            extra={"categories": list(item.error_categories)},
        )
    if probe_guess and probe_guess not in _probe_answers(item):
        raise ApplicationError("Unknown answer to the blinding question.", code="probe_guess")
    return error_category


def label_save(
    *,
    annotator: AbstractBaseUser,
    assignment_public_id: str,
    position: int,
    verdict: str,
    error_category: str = "",
    comment: str = "",
    probe_guess: str = "",
    elapsed_ms: int = 0,
    flagged: bool = False,
    flag_note: str = "",
) -> Label:
    """Create or revise the annotator's label of one item (a PUT: sending the same state
    twice changes nothing). ``elapsed_ms`` is the time on the item as the page counts it in
    total; the stored time only grows, so two tabs or a double submit never add it twice.
    ``flagged`` marks the label for review, ``flag_note`` says why (kept only when flagged)."""
    for attempt in range(2):
        try:
            return _label_save(
                annotator=annotator,
                assignment_public_id=assignment_public_id,
                position=position,
                verdict=verdict,
                error_category=error_category,
                comment=comment,
                probe_guess=probe_guess,
                elapsed_ms=elapsed_ms,
                flagged=bool(flagged),
                flag_note=flag_note.strip() if flagged else "",
            )
        except IntegrityError:
            # Only without row locks (SQLite) can a concurrent first save win the insert;
            # the retry finds its label and revises it.
            if attempt:
                raise
    raise AssertionError("unreachable")


@transaction.atomic
def _label_save(
    *,
    annotator,
    assignment_public_id,
    position,
    verdict,
    error_category,
    comment,
    probe_guess,
    elapsed_ms,
    flagged,
    flag_note,
) -> Label:
    item = _open_item_locked(annotator, assignment_public_id, position, kind="label")
    error_category = _validate_label(item, verdict, error_category, probe_guess)
    comment = comment.strip()
    elapsed_ms = max(0, int(elapsed_ms))
    if connection.vendor == "postgresql":
        first = _label_insert_first(
            item,
            annotator,
            verdict,
            error_category,
            comment,
            probe_guess,
            elapsed_ms,
            flagged,
            flag_note,
        )
        if first is not None:
            return first
    # Read after the lock: a label committed while we waited is seen here.
    label = Label.objects.filter(assignment_item_id=item.item_id).first()
    if label is None:
        label = Label.objects.create(
            assignment_item_id=item.item_id,
            assignment_id=item.assignment_id,
            step_id=item.step_id,
            verdict=verdict,
            error_category=error_category,
            comment=comment,
            probe_guess=probe_guess,
            elapsed_ms=elapsed_ms,
            flagged=flagged,
            flag_note=flag_note,
            shown=shown_for(item),
        )
    else:
        state = (verdict, error_category, comment, probe_guess, flagged, flag_note)
        stored = (
            label.verdict,
            label.error_category,
            label.comment,
            label.probe_guess,
            label.flagged,
            label.flag_note,
        )
        if state == stored:
            if elapsed_ms > label.elapsed_ms:
                label.elapsed_ms = elapsed_ms
                label.save(update_fields=["elapsed_ms", "updated_at"])
            return label
        (
            label.verdict,
            label.error_category,
            label.comment,
            label.probe_guess,
            label.flagged,
            label.flag_note,
        ) = state
        label.elapsed_ms = max(label.elapsed_ms, elapsed_ms)
        label.revision += 1
        label.shown = shown_for(item)
        label.save()
    LabelRevision.objects.create(
        label=label,
        revision=label.revision,
        verdict=verdict,
        error_category=error_category,
        comment=comment,
        probe_guess=probe_guess,
        elapsed_ms=label.elapsed_ms,
        flagged=flagged,
        flag_note=flag_note,
        changed_by=annotator,
    )
    return label


def _label_insert_first(
    item: ItemAccess,
    annotator,
    verdict,
    error_category,
    comment,
    probe_guess,
    elapsed_ms,
    flagged,
    flag_note,
) -> Label | None:
    """PostgreSQL, the label loop's hot path: the item's first label and its revision 1 in one
    prepared statement (instead of a read and two ORM inserts). None when the item already
    has a label: the caller revises it as usual."""
    from psycopg.types.json import Jsonb

    label_table = connection.ops.quote_name(Label._meta.db_table)
    revision_table = connection.ops.quote_name(LabelRevision._meta.db_table)
    now = timezone.now()
    shown = shown_for(item)
    state = [verdict, error_category, comment, probe_guess, elapsed_ms, flagged, flag_note]
    row = _fetchone(
        f"""
        WITH l AS (
            INSERT INTO {label_table} (assignment_item_id, assignment_id, step_id, verdict,
                error_category, comment, probe_guess, elapsed_ms, flagged, flag_note, shown,
                revision, created_at, updated_at)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 1, %s, %s)
            ON CONFLICT (assignment_item_id) DO NOTHING
            RETURNING id)
        INSERT INTO {revision_table} (label_id, revision, verdict, error_category, comment,
            probe_guess, elapsed_ms, flagged, flag_note, changed_by_id, changed_at)
        SELECT id, 1, %s, %s, %s, %s, %s, %s, %s, %s, %s FROM l
        RETURNING label_id
        """,
        [
            *(item.item_id, item.assignment_id, item.step_id, *state, Jsonb(shown), now, now),
            *(*state, annotator.pk, now),
        ],
    )
    if row is None:
        return None
    label = Label(
        id=row[0],
        assignment_item_id=item.item_id,
        assignment_id=item.assignment_id,
        step_id=item.step_id,
        verdict=verdict,
        error_category=error_category,
        comment=comment,
        probe_guess=probe_guess,
        elapsed_ms=elapsed_ms,
        flagged=flagged,
        flag_note=flag_note,
        shown=shown,
        revision=1,
        created_at=now,
        updated_at=now,
    )
    label._state.adding = False
    label._state.db = connection.alias
    return label


def _validate_answers(likert_items: list, answers: dict) -> dict[str, int]:
    items = {i["key"]: i for i in likert_items}
    missing = [key for key in items if key not in answers]
    if missing:
        raise ApplicationError(
            "Answer every rating item.", code="answers", extra={"missing": missing}
        )
    unknown = sorted(set(answers) - set(items))
    if unknown:
        raise ApplicationError(f"Unknown rating items: {', '.join(unknown)}.", code="answers")
    clean = {}
    for key, value in answers.items():
        spec = items[key]
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or not (spec.get("min", 1) <= value <= spec.get("max", 5))
        ):
            raise ApplicationError(
                f"{spec.get('label', key)}: choose a value from {spec.get('min', 1)} to "
                f"{spec.get('max', 5)}.",
                code="answers",
                extra={"item": key},
            )
        clean[key] = value
    return clean


@transaction.atomic
def rating_save(
    *,
    annotator: AbstractBaseUser,
    assignment_public_id: str,
    position: int,
    answers: dict,
    comment: str = "",
    elapsed_ms: int = 0,
) -> TraceRating:
    """Create or revise the Likert answers of one trace (same guarantees as ``label_save``).
    Every Likert item must be answered."""
    item = _open_item_locked(annotator, assignment_public_id, position, kind="rating")
    answers = _validate_answers(item.likert_items, answers)
    comment = comment.strip()
    elapsed_ms = max(0, int(elapsed_ms))
    shown = {
        "scheme": BLINDING_SCHEME,
        "segmentation": item.segmentation,
        "style_normalisation": item.style_normalisation,
        "final_answer_visible": item.show_final_answer,
    }
    if connection.vendor == "postgresql":
        first = _rating_insert_first(item, annotator, answers, comment, elapsed_ms, shown)
        if first is not None:
            return first
    # Read after the lock: a rating committed while we waited is seen here.
    rating = TraceRating.objects.filter(assignment_item_id=item.item_id).first()
    if rating is None:
        rating = TraceRating.objects.create(
            assignment_item_id=item.item_id,
            assignment_id=item.assignment_id,
            trace_id=item.trace_id,
            answers=answers,
            comment=comment,
            elapsed_ms=elapsed_ms,
            shown=shown,
        )
    else:
        if (answers, comment) == (rating.answers, rating.comment):
            if elapsed_ms > rating.elapsed_ms:
                rating.elapsed_ms = elapsed_ms
                rating.save(update_fields=["elapsed_ms", "updated_at"])
            return rating
        rating.answers, rating.comment = answers, comment
        rating.elapsed_ms = max(rating.elapsed_ms, elapsed_ms)
        rating.revision += 1
        rating.save()
    TraceRatingRevision.objects.create(
        rating=rating,
        revision=rating.revision,
        answers=answers,
        comment=comment,
        elapsed_ms=rating.elapsed_ms,
        changed_by=annotator,
    )
    return rating


def _rating_insert_first(
    item: ItemAccess, annotator, answers: dict, comment: str, elapsed_ms: int, shown: dict
) -> TraceRating | None:
    """PostgreSQL, a study's rating loop: the item's first rating and its revision 1 in one
    prepared statement (instead of a read and two ORM inserts), as ``_label_insert_first``.
    None when the item already has a rating: the caller revises it as usual."""
    from psycopg.types.json import Jsonb

    rating_table = connection.ops.quote_name(TraceRating._meta.db_table)
    revision_table = connection.ops.quote_name(TraceRatingRevision._meta.db_table)
    now = timezone.now()
    row = _fetchone(
        f"""
        WITH r AS (
            INSERT INTO {rating_table} (assignment_item_id, assignment_id, trace_id, answers,
                comment, elapsed_ms, shown, revision, created_at, updated_at)
            VALUES (%s, %s, %s, %s, %s, %s, %s, 1, %s, %s)
            ON CONFLICT (assignment_item_id) DO NOTHING
            RETURNING id)
        INSERT INTO {revision_table} (rating_id, revision, answers, comment, elapsed_ms,
            changed_by_id, changed_at)
        SELECT id, 1, %s, %s, %s, %s, %s FROM r
        RETURNING rating_id
        """,
        [
            *(item.item_id, item.assignment_id, item.trace_id, Jsonb(answers), comment),
            *(elapsed_ms, Jsonb(shown), now, now),
            *(Jsonb(answers), comment, elapsed_ms, annotator.pk, now),
        ],
    )
    if row is None:
        return None
    rating = TraceRating(
        id=row[0],
        assignment_item_id=item.item_id,
        assignment_id=item.assignment_id,
        trace_id=item.trace_id,
        answers=answers,
        comment=comment,
        elapsed_ms=elapsed_ms,
        shown=shown,
        revision=1,
        created_at=now,
        updated_at=now,
    )
    rating._state.adding = False
    rating._state.db = connection.alias
    return rating


def _complete_rating(audit: Audit) -> dict:
    return {"answers__has_keys": [i["key"] for i in audit.likert_items]}


@transaction.atomic
def assignment_submit(*, annotator: AbstractBaseUser, assignment_public_id: str) -> Assignment:
    """Lock a complete assignment; submitting twice is harmless."""
    assignment = assignment_get_for_annotator(
        annotator=annotator, assignment_public_id=assignment_public_id, for_update=True
    )
    if assignment.is_locked:
        return assignment
    audit = assignment.batch.audit
    if audit.kind == Audit.Kind.TRACE_RATINGS:
        done = Exists(
            TraceRating.objects.filter(assignment_item=OuterRef("pk"), **_complete_rating(audit))
        )
    else:
        done = Exists(Label.objects.filter(assignment_item=OuterRef("pk"))) | item_marked()
    # A skipped item may stay unlabelled: the annotator saw it and chose not to label it (the
    # confirmation on the page names how many).
    missing = list(
        assignment.items.filter(~done, skipped_at__isnull=True)
        .order_by("position")
        .values_list("position", flat=True)
    )
    if missing:
        raise ConflictError(
            f"{len(missing)} item{'s are' if len(missing) != 1 else ' is'} not done yet.",
            code="incomplete",
            extra={"positions": missing[:50]},
        )
    assignment.submitted_at = timezone.now()
    assignment.save(update_fields=["submitted_at"])
    return assignment


@transaction.atomic
def item_skip(*, annotator: AbstractBaseUser, assignment_public_id: str, position: int) -> bool:
    """Skip an item: it stays unlabelled and comes back after the items not yet seen.
    Idempotent (the first skip's time is kept); a labelled item keeps its label and is not
    marked. Returns whether the item now counts as skipped (unlabelled and skipped)."""
    item = assignment_item_get_for_annotator(
        annotator=annotator,
        assignment_public_id=assignment_public_id,
        position=position,
        for_update=True,
    )
    _check_open(item)
    if item.mode == LabellingMode.FIRST_ERROR:
        raise ConflictError(
            "This assignment marks the first wrong step of each trace: nothing to skip.",
            code="wrong_mode",
        )
    if (
        Label.objects.filter(assignment_item_id=item.item_id).exists()
        or TraceRating.objects.filter(assignment_item_id=item.item_id).exists()
    ):
        return False
    AssignmentItem.objects.filter(pk=item.item_id, skipped_at__isnull=True).update(
        skipped_at=timezone.now()
    )
    return True


def assignment_done_count(*, assignment_id: int) -> int:
    """Items labelled or rated: what the page shows as done after a save (one statement)."""
    label = connection.ops.quote_name(Label._meta.db_table)
    rating = connection.ops.quote_name(TraceRating._meta.db_table)
    row = _fetchone(
        f"SELECT (SELECT COUNT(*) FROM {label} WHERE assignment_id = %s)"
        f" + (SELECT COUNT(*) FROM {rating} WHERE assignment_id = %s)",
        [assignment_id, assignment_id],
    )
    return int(row[0])


@transaction.atomic
def assignment_reopen(
    *, assignment: Assignment, by: AbstractBaseUser, note: str = ""
) -> AssignmentEvent:
    """An admin takes a submission back: the annotator can change labels and submit again.
    Logged as an AssignmentEvent (who, when, which submission it undid)."""
    assignment = Assignment.objects.select_for_update().get(pk=assignment.pk)
    if not assignment.is_locked:
        raise ConflictError("The assignment is not submitted.", code="not_submitted")
    event = AssignmentEvent.objects.create(
        assignment=assignment,
        kind=AssignmentEvent.Kind.REOPENED,
        by=by,
        submitted_at=assignment.submitted_at,
        note=note.strip(),
    )
    assignment.submitted_at = None
    assignment.save(update_fields=["submitted_at"])
    logger.info(
        "assignment %s reopened by %s (submitted %s)",
        assignment.public_id,
        by.get_username(),
        event.submitted_at.isoformat(),
    )
    return event
