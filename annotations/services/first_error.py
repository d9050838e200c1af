"""First-error mode: the expert marks the first wrong step of a trace, or "no error".

A mark is stored twice over, on purpose:

- as ordinary step labels (``Label`` + ``LabelRevision``), so every reader of labels (the
  report's long table, agreement, exports) reads it without knowing the mode: the steps
  before the mark ``correct``, the marked step ``error`` (with the category, if given, and the
  comment), the steps after it unlabelled; "no error": every step ``correct``;
- as one ``FirstErrorMark`` per (assignment, trace), which says the labels came from a mark
  and where it was (``first_error_index``: the marked step's 0-based ``Step.index``, NULL for
  "no error"), with every mark kept in ``FirstErrorMarkRevision``.

"Can't assess this trace" (``cannot_assess``) is a mark too: every step ``abstain``, as when a
judge's samples tie on a trace. The trace is done, and the report counts it among the
evaluator's undefined first errors (reason ``abstain``), never as "no error" or a guess.

A re-mark revises the step labels in the same transaction: a label whose verdict changes
gets a new revision; a step that falls after the new mark loses its label (it is unlabelled
now; the mark's revisions keep the history of what it was).
"""

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from annotations.models import (
    FirstErrorMark,
    FirstErrorMarkRevision,
    Label,
    LabellingMode,
    LabelRevision,
    Verdict,
)
from annotations.selectors.access import TraceAccess, assignment_trace_get_for_annotator
from annotations.services.labels import BLINDING_SCHEME
from auditapp.exceptions import ApplicationError, ConflictError


def trace_shown(*, access: TraceAccess) -> dict:
    """What the clinician saw on a trace page, stored with each label it writes."""
    audit = access.assignment.batch.audit
    return {
        "scheme": BLINDING_SCHEME,
        "mode": access.assignment.batch.mode,
        "context_mode": "whole_trace",
        "trace_steps": len(access.steps),
        "step_numbers_visible": audit.show_step_numbers,
        "final_answer_visible": audit.show_final_answer,
        "gold_answer_visible": False,
        "style_normalisation": audit.style_normalisation,
    }


def first_error_targets(
    n_steps: int, first_error: int | None, *, cannot_assess: bool = False
) -> list[str | None]:
    """The verdict each step of a trace gets from a mark (1-based ``first_error``; None: no
    error): correct before it, error at it, nothing after it; abstain everywhere when the
    expert cannot assess the trace.

    >>> first_error_targets(4, 2)
    ['correct', 'error', None, None]
    >>> first_error_targets(3, None)
    ['correct', 'correct', 'correct']
    >>> first_error_targets(2, None, cannot_assess=True)
    ['abstain', 'abstain']
    """
    if cannot_assess:
        return [Verdict.ABSTAIN.value] * n_steps
    if first_error is None:
        return [Verdict.CORRECT.value] * n_steps
    targets: list[str | None] = [Verdict.CORRECT.value] * (first_error - 1)
    return targets + [Verdict.ERROR.value] + [None] * (n_steps - first_error)


@transaction.atomic
def first_error_mark(
    *,
    annotator: AbstractBaseUser,
    assignment_public_id: str,
    trace_number: int,
    first_error: int | None,
    error_category: str = "",
    comment: str = "",
    elapsed_ms: int = 0,
    cannot_assess: bool = False,
) -> FirstErrorMark:
    """Mark step ``first_error`` (1-based, in the trace's order on the page; None: "no
    error") of trace ``trace_number`` of the annotator's first-error assignment, or that the
    trace cannot be assessed (``cannot_assess``, with ``first_error`` None), and write the
    step labels it implies (module doc). A PUT: the same mark twice changes nothing but a
    longer ``elapsed_ms``. ``error_category`` is optional; when given, from the audit's list."""
    access = assignment_trace_get_for_annotator(
        annotator=annotator,
        assignment_public_id=assignment_public_id,
        number=trace_number,
        for_update=True,
    )
    assignment = access.assignment
    if assignment.is_locked:
        raise ConflictError("The assignment is submitted and locked.", code="assignment_locked")
    if assignment.batch.mode != LabellingMode.FIRST_ERROR:
        raise ConflictError(
            "This assignment labels steps one by one, not a first wrong step.", code="wrong_mode"
        )
    n = len(access.steps)
    cannot_assess = bool(cannot_assess)
    if cannot_assess and first_error is not None:
        raise ApplicationError(
            "Either mark the first wrong step or say the trace cannot be assessed, not both.",
            code="first_error",
        )
    whole = isinstance(first_error, int) and not isinstance(first_error, bool)
    if first_error is not None and not (whole and 1 <= first_error <= n):
        raise ApplicationError(
            f"The first wrong step is a step of this trace (1 to {n}) or null for no error.",
            code="first_error",
        )
    categories = assignment.batch.audit.error_categories or []
    error_category = (error_category or "").strip() if first_error is not None else ""
    if error_category and error_category not in categories:
        raise ApplicationError(
            "Choose an error category from the list.",
            code="error_category",
            extra={"categories": list(categories)},
        )
    comment = (comment or "").strip()
    elapsed_ms = max(0, int(elapsed_ms or 0))
    marked = access.steps[first_error - 1] if first_error is not None else None
    index = marked.step_index if marked is not None else None

    mark = FirstErrorMark.objects.filter(assignment=assignment, trace_id=access.trace_id).first()
    state = (index, cannot_assess, error_category, comment)
    if (
        mark is not None
        and (
            mark.first_error_index,
            mark.cannot_assess,
            mark.error_category,
            mark.comment,
        )
        == state
    ):
        if elapsed_ms > mark.elapsed_ms:
            mark.elapsed_ms = elapsed_ms
            mark.save(update_fields=["elapsed_ms", "updated_at"])
        return mark
    if mark is None:
        mark = FirstErrorMark(assignment=assignment, trace_id=access.trace_id, revision=1)
    else:
        mark.revision += 1
    mark.first_error_index = index
    mark.cannot_assess = cannot_assess
    mark.first_error_item_id = marked.item_id if marked is not None else None
    mark.n_steps = n
    mark.error_category, mark.comment = error_category, comment
    mark.elapsed_ms = max(mark.elapsed_ms or 0, elapsed_ms)
    mark.save()
    FirstErrorMarkRevision.objects.create(
        mark=mark,
        revision=mark.revision,
        first_error_index=index,
        cannot_assess=cannot_assess,
        error_category=error_category,
        comment=comment,
        elapsed_ms=mark.elapsed_ms,
        changed_by=annotator,
    )
    targets = first_error_targets(n, first_error, cannot_assess=cannot_assess)
    _labels_from_mark(access, annotator, targets, error_category, comment)
    return mark


def _labels_from_mark(
    access: TraceAccess,
    annotator: AbstractBaseUser,
    targets: list[str | None],
    error_category: str,
    comment: str,
) -> None:
    """Bring the trace's step labels in line with the mark: one revision per changed label."""
    shown = trace_shown(access=access) | {"first_error_mark": True}
    labels = {
        label.assignment_item_id: label
        for label in Label.objects.filter(assignment_item_id__in=[s.item_id for s in access.steps])
    }
    gone = []
    for step, verdict in zip(access.steps, targets, strict=True):
        label = labels.get(step.item_id)
        if verdict is None:
            if label is not None:
                gone.append(label.pk)
            continue
        category = error_category if verdict == Verdict.ERROR else ""
        note = comment if verdict == Verdict.ERROR else ""
        if label is None:
            label = Label.objects.create(
                assignment_item_id=step.item_id,
                assignment_id=access.assignment.pk,
                step_id=step.step_id,
                verdict=verdict,
                error_category=category,
                comment=note,
                shown=shown,
            )
        elif (label.verdict, label.error_category, label.comment) != (verdict, category, note):
            label.verdict, label.error_category, label.comment = verdict, category, note
            label.revision += 1
            label.shown = shown
            label.save()
        else:
            continue
        LabelRevision.objects.create(
            label=label,
            revision=label.revision,
            verdict=verdict,
            error_category=category,
            comment=note,
            elapsed_ms=label.elapsed_ms,
            changed_by=annotator,
        )
    if gone:
        Label.objects.filter(pk__in=gone).delete()
