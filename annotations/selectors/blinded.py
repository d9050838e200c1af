"""The one door through which clinician-facing code reads steps, traces and labels.

Everything returned is a frozen dataclass holding only what a clinician may see: blinded text,
the question and its options, the audit's categories and guidelines, and this clinician's own
label. Items are addressed by the assignment's random public id and a position in the
clinician's own order — never by a step, trace or database id (a step's public id is not shown
either: it would give a hidden repeat away). Serializers and templates are built from these
dataclasses only, so a new model field cannot reach a clinician by accident.
"""

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Exists, Min, OuterRef, Q

from annotations.models import (
    TRACE_MODES,
    Assignment,
    AssignmentItem,
    Audit,
    FirstErrorMark,
    Label,
    LabellingMode,
    ProbeAnswer,
    ProbeMode,
    Trace,
    TraceRating,
)
from annotations.selectors.access import (
    NOT_FOUND,
    ItemView,
    assignment_get_for_annotator,
    assignment_item_get_for_display,
    assignment_trace_get_for_annotator,
    context_texts,
    item_marked,
)
from annotations.services.probe import probe_labels, probe_on_item
from auditapp.exceptions import NotFoundError


@dataclass(frozen=True)
class BlindedLabel:
    verdict: str
    error_category: str
    comment: str
    probe_guess: str
    elapsed_ms: int
    revision: int
    flagged: bool = False
    flag_note: str = ""


@dataclass(frozen=True)
class BlindedRating:
    answers: dict[str, int]
    comment: str
    elapsed_ms: int
    revision: int


@dataclass(frozen=True)
class LikertItem:
    key: str
    label: str
    min: int
    max: int
    min_label: str
    max_label: str


@dataclass(frozen=True)
class BlindedItem:
    assignment_public_id: str
    position: int
    total: int
    done: int
    kind: str  # "step" or "trace"
    question: str
    options: tuple[tuple[str, str], ...]
    context: tuple[str, ...]  # the last K preceding steps (blinded), when the audit allows
    context_cut: bool  # earlier preceding steps were left out (shown as "…")
    step_number: int | None  # 1-based position in its trace, only when the audit shows it
    step: str  # the step to judge (blinded); empty for trace ratings
    trace: tuple[str, ...]  # the whole trace's steps (blinded), for trace ratings
    final_answer: str  # only when the audit shows it; blinded at import (norm-v2 on)
    error_categories: tuple[str, ...]
    guidelines: str
    probe_options: tuple[str, ...]
    likert_items: tuple[LikertItem, ...]
    locked: bool
    label: BlindedLabel | None
    rating: BlindedRating | None
    skipped: bool = False  # skipped and not labelled
    n_skipped: int = 0  # items of the assignment skipped and not labelled
    mode: str = "steps"  # the batch's labelling mode: trace modes have their own page


@dataclass(frozen=True)
class AssignmentSummary:
    public_id: str
    title: str
    kind: str
    total: int
    done: int
    due_date: object
    submitted: bool
    first_open_position: int | None
    probe_pending: bool = False  # done, and the end-of-assignment question is not answered yet
    mode: str = "steps"  # the batch's labelling mode (steps, trace, first_error)


@dataclass(frozen=True)
class OverviewEntry:
    position: int
    done: bool
    verdict: str  # this clinician's own verdict, "" when none (ratings: "rated")
    skipped: bool = False  # skipped and not labelled
    flagged: bool = False


def _probe_options(item: ItemView) -> tuple[str, ...]:
    """The probe's answers when this item's label form asks it ('every' mode), else none."""
    asks = probe_on_item(
        mode=item.probe_mode, every=item.probe_every, arms=item.probe_arms, position=item.position
    )
    return probe_labels(item.probe_arms) if asks else ()


def _likert(items: list) -> tuple[LikertItem, ...]:
    return tuple(
        LikertItem(
            key=str(i["key"]),
            label=str(i.get("label", i["key"])),
            min=int(i.get("min", 1)),
            max=int(i.get("max", 5)),
            min_label=str(i.get("min_label", "")),
            max_label=str(i.get("max_label", "")),
        )
        for i in items
    )


def _title(assignment: Assignment, index: int) -> str:
    # The batch's name is written by an admin and may say anything ("teacher vs student"),
    # and so may the audit's ("Demo: distillation audit" states the hypothesis): the
    # clinician sees the audit's annotator-facing title instead.
    audit = assignment.batch.audit
    return f"{audit.annotator_title} — assignment {index}"


def item_get_blinded(
    *, clinician: AbstractBaseUser, assignment_public_id: str, position: int
) -> BlindedItem:
    item = assignment_item_get_for_display(
        annotator=clinician, assignment_public_id=assignment_public_id, position=position
    )
    return _blind(item)


def item_get_next_blinded(
    *, clinician: AbstractBaseUser, assignment_public_id: str
) -> BlindedItem | None:
    """The first item without a label in the clinician's order, or None when all are done."""
    item = assignment_item_get_for_display(
        annotator=clinician, assignment_public_id=assignment_public_id
    )
    return _blind(item) if item is not None else None


def item_get_after_save_blinded(
    *, clinician: AbstractBaseUser, assignment_public_id: str, position: int, following: bool
) -> BlindedItem | None:
    """What "save & next" shows after ``position``: the first item not yet done after it
    (wrapping to the start), or — ``following``, when revising — the next position, and past
    the last one the first item not yet done. None when every item is done."""
    if following:
        try:
            return item_get_blinded(
                clinician=clinician,
                assignment_public_id=assignment_public_id,
                position=position + 1,
            )
        except NotFoundError:
            pass  # past the last item
    item = assignment_item_get_for_display(
        annotator=clinician, assignment_public_id=assignment_public_id, after=position
    )
    return _blind(item) if item is not None else None


def _blind(item: ItemView) -> BlindedItem:
    """Build the dataclass: one more query (the preceding steps) beyond the item itself."""
    context: tuple[str, ...] = ()
    context_cut = False
    step_number = None
    trace_steps: tuple[str, ...] = ()
    label = rating = None
    if item.step_id is not None:
        kind = "step"
        if item.context_mode == Audit.ContextMode.PRECEDING and item.step_index:
            # At most K preceding steps: how many are shown must not give the trace's
            # length (or the step's depth) away. Indexes are 0-based, so index = steps before.
            window = item.context_window
            context = tuple(
                context_texts(
                    trace_id=item.step_trace_id,
                    segmentation=item.segmentation,
                    before_index=item.step_index,
                    last=window,
                )
            )
            context_cut = window is not None and item.step_index > window
        if item.show_step_numbers:
            step_number = (item.step_index or 0) + 1
        if item.label is not None:
            label = BlindedLabel(**item.label)
    else:
        kind = "trace"
        trace_steps = tuple(
            context_texts(trace_id=item.trace_id, segmentation=item.segmentation, before_index=None)
        )
        if item.rating is not None:
            rating = BlindedRating(**item.rating)
    return BlindedItem(
        assignment_public_id=item.public_id,
        position=item.position,
        total=item.total,
        done=item.done,
        kind=kind,
        question=item.question_stem,
        options=tuple((str(k), str(v)) for k, v in item.question_options.items()),
        context=context,
        context_cut=context_cut,
        step_number=step_number,
        step=item.step_text or "",
        trace=trace_steps,
        final_answer=item.final_answer if item.show_final_answer else "",
        error_categories=tuple(item.error_categories),
        guidelines=item.guidelines,
        probe_options=_probe_options(item),
        likert_items=_likert(item.likert_items),
        locked=item.locked,
        label=label,
        rating=rating,
        skipped=item.skipped,
        n_skipped=item.n_skipped,
        mode=item.mode,
    )


def assignment_list_for_clinician(*, clinician: AbstractBaseUser) -> list[AssignmentSummary]:
    """The clinician's own assignments with progress, in two queries whatever their number."""
    label_done = Exists(Label.objects.filter(assignment_item=OuterRef("pk")))
    # First-error mode: the steps after a trace's mark stay unlabelled, and are done.
    label_done = label_done | item_marked()
    rating_done = Exists(TraceRating.objects.filter(assignment_item=OuterRef("pk")))
    assignments = list(
        Assignment.objects.filter(annotator=clinician)
        .select_related("batch__audit")
        .only(
            "public_id",
            "due_date",
            "submitted_at",
            "created_at",
            "batch__audit__annotator_title",
            "batch__audit__kind",
            "batch__audit__probe_arms",
            "batch__audit__probe_mode",
            "batch__mode",
        )
        .order_by("created_at", "pk")
    )
    stats = {
        row["assignment_id"]: row
        for row in AssignmentItem.objects.filter(assignment__annotator=clinician)
        .annotate(done=label_done | rating_done)
        .values("assignment_id")
        .annotate(
            total=Count("pk"),
            n_done=Count("pk", filter=Q(done=True)),
        )
        .order_by()
    }
    open_items = (
        AssignmentItem.objects.filter(assignment__annotator=clinician)
        .annotate(done=label_done | rating_done)
        .filter(done=False)
    )
    # Items not yet seen first; skipped ones once none is left.
    first_open = dict(
        open_items.filter(skipped_at__isnull=False)
        .values("assignment_id")
        .annotate(first=Min("position"))
        .order_by()
        .values_list("assignment_id", "first")
    )
    first_open.update(
        open_items.filter(skipped_at__isnull=True)
        .values("assignment_id")
        .annotate(first=Min("position"))
        .order_by()
        .values_list("assignment_id", "first")
    )
    probed = set(
        ProbeAnswer.objects.filter(assignment__annotator=clinician)
        .values_list("assignment_id", flat=True)
        .distinct()
    )
    summaries = []
    for index, a in enumerate(assignments, start=1):
        total = stats.get(a.pk, {}).get("total", 0)
        done = stats.get(a.pk, {}).get("n_done", 0)
        audit = a.batch.audit
        asks_at_end = audit.probe_active and audit.probe_mode == ProbeMode.END
        summaries.append(
            AssignmentSummary(
                public_id=a.public_id,
                title=_title(a, index),
                kind="trace" if audit.kind == Audit.Kind.TRACE_RATINGS else "step",
                total=total,
                done=done,
                due_date=a.due_date,
                submitted=a.is_locked,
                first_open_position=first_open.get(a.pk),
                probe_pending=asks_at_end and total > 0 and done == total and a.pk not in probed,
                mode=a.batch.mode,
            )
        )
    return summaries


def assignment_get_for_clinician(
    *, clinician: AbstractBaseUser, assignment_public_id: str
) -> AssignmentSummary:
    public_id = assignment_public_id
    for summary in assignment_list_for_clinician(clinician=clinician):
        if summary.public_id == public_id:
            return summary
    raise NotFoundError(NOT_FOUND)


def assignment_overview_for_clinician(
    *, clinician: AbstractBaseUser, assignment_public_id: str
) -> list[OverviewEntry]:
    """Every position with whether it is done and the clinician's own verdict (one query)."""
    assignment = assignment_get_for_annotator(
        annotator=clinician, assignment_public_id=assignment_public_id
    )
    rows = (
        AssignmentItem.objects.filter(assignment=assignment)
        # First-error mode: the steps after a trace's mark are done, unlabelled.
        .annotate(marked=item_marked())
        .order_by("position")
        .values_list(
            "position", "label__verdict", "rating__id", "skipped_at", "label__flagged", "marked"
        )
    )
    return [
        OverviewEntry(
            position=position,
            done=verdict is not None or rating_id is not None or bool(marked),
            verdict=verdict or ("rated" if rating_id is not None else ""),
            skipped=skipped_at is not None and verdict is None and rating_id is None,
            flagged=bool(flagged),
        )
        for position, verdict, rating_id, skipped_at, flagged, marked in rows
    ]


# --- the trace modes: one trace at a time ----------------------------------------------------
@dataclass(frozen=True)
class BlindedTraceStep:
    position: int  # the item's position in the annotator's own order (its label's address)
    text: str  # blinded
    step_number: int | None  # 1-based place in its trace, only when the audit shows it
    label: BlindedLabel | None


@dataclass(frozen=True)
class BlindedMark:
    first_error: int | None  # 1-based step of the trace as shown; None: "no error"
    error_category: str
    comment: str
    elapsed_ms: int
    revision: int
    cannot_assess: bool = False  # "can't assess this trace": every step abstain


@dataclass(frozen=True)
class BlindedTrace:
    """A whole trace as its page shows it: no condition, no ids, no step numbers unless the
    audit shows them. (The number of its steps and their style are on screen: that is what
    the trace modes reveal, and what the leak gate measures for them.)"""

    assignment_public_id: str
    mode: str  # "trace" or "first_error"
    number: int  # 1-based, in the annotator's own order of traces
    n_traces: int
    traces_done: int
    question: str
    options: tuple[tuple[str, str], ...]
    steps: tuple[BlindedTraceStep, ...]
    final_answer: str
    error_categories: tuple[str, ...]
    guidelines: str
    locked: bool
    mark: BlindedMark | None


def trace_get_blinded(
    *,
    clinician: AbstractBaseUser,
    assignment_public_id: str,
    number: int | None = None,
    position: int | None = None,
) -> BlindedTrace:
    """Trace ``number`` (or the one holding item ``position``) of a trace-mode assignment of
    this clinician, or 404. Five queries whatever the trace's length."""
    access = assignment_trace_get_for_annotator(
        annotator=clinician,
        assignment_public_id=assignment_public_id,
        number=number,
        position=position,
    )
    assignment = access.assignment
    audit = assignment.batch.audit
    if assignment.batch.mode not in TRACE_MODES:
        raise NotFoundError("This assignment shows single steps.")
    stem, options, final = (
        Trace.objects.filter(pk=access.trace_id)
        .values_list("question__stem", "question__options", "blinded_final_answer")
        .get()
    )
    steps = tuple(
        BlindedTraceStep(
            position=s.position,
            text=s.text or "",
            step_number=s.step_index + 1 if audit.show_step_numbers else None,
            label=BlindedLabel(*s.label) if s.label is not None else None,
        )
        for s in access.steps
    )
    mark = None
    if assignment.batch.mode == LabellingMode.FIRST_ERROR:
        marks = {
            row[0]: row[1:]
            for row in FirstErrorMark.objects.filter(assignment=assignment).values_list(
                "trace_id",
                "first_error_item_id",
                "error_category",
                "comment",
                "elapsed_ms",
                "revision",
                "cannot_assess",
            )
        }
        traces_done = len(marks)
        row = marks.get(access.trace_id)
        if row is not None:
            at = next((n for n, s in enumerate(access.steps, 1) if s.item_id == row[0]), None)
            mark = BlindedMark(at, *row[1:])
    else:
        traces_done = access.traces_labelled
    return BlindedTrace(
        assignment_public_id=assignment.public_id,
        mode=assignment.batch.mode,
        number=access.number,
        n_traces=access.n_traces,
        traces_done=traces_done,
        question=stem,
        options=tuple((str(k), str(v)) for k, v in (options or {}).items()),
        steps=steps,
        final_answer=(final or "") if audit.show_final_answer else "",
        error_categories=tuple(audit.error_categories or ()),
        guidelines=audit.guidelines,
        locked=assignment.is_locked,
        mark=mark,
    )
