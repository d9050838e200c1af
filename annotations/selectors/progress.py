"""Progress of assignments for admins: labelled / total, time spent, abstention share."""

from dataclasses import dataclass
from datetime import date, datetime

from django.db.models import Count, Exists, IntegerField, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from annotations.models import (
    Assignment,
    AssignmentItem,
    Audit,
    Batch,
    FirstErrorMark,
    Label,
    TraceRating,
)
from annotations.selectors.access import item_marked


@dataclass(frozen=True)
class AssignmentProgress:
    public_id: str
    batch: str
    annotator: str
    total: int
    done: int
    abstained: int
    elapsed_ms: int
    due_date: date | None
    submitted_at: datetime | None

    @property
    def abstention_share(self) -> float | None:
        return self.abstained / self.done if self.done else None

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.total) if self.total else 0


@dataclass(frozen=True)
class AuditProgress:
    total: int
    done: int
    abstained: int
    elapsed_ms: int
    assignments: tuple[AssignmentProgress, ...]

    @property
    def abstention_share(self) -> float | None:
        return self.abstained / self.done if self.done else None


def assignment_progress_list(
    *, audit: Audit | None = None, batch: Batch | None = None
) -> list[AssignmentProgress]:
    """One query whatever the number of assignments (each count is a correlated subquery,
    so the counts never multiply each other as joins would)."""
    assignments = Assignment.objects.select_related("batch", "annotator").order_by(
        "batch__created_at", "created_at", "pk"
    )
    if batch is not None:
        assignments = assignments.filter(batch=batch)
    if audit is not None:
        assignments = assignments.filter(batch__audit=audit)
    labels = Label.objects.filter(assignment=OuterRef("pk")).order_by().values("assignment")
    ratings = TraceRating.objects.filter(assignment=OuterRef("pk")).order_by().values("assignment")
    items = AssignmentItem.objects.filter(assignment=OuterRef("pk")).order_by().values("assignment")
    # First-error mode: the unlabelled steps after a trace's mark are done too, and the time
    # on task is on the marks.
    marked_rest = items.filter(
        ~Exists(Label.objects.filter(assignment_item=OuterRef("pk"))), item_marked()
    )
    marks = FirstErrorMark.objects.filter(assignment=OuterRef("pk")).order_by().values("assignment")

    def sub(queryset, expression):
        return Coalesce(
            Subquery(queryset.annotate(v=expression).values("v")[:1]),
            Value(0),
            output_field=IntegerField(),
        )

    rows = assignments.annotate(
        n_total=sub(items, Count("pk")),
        n_labels=sub(labels, Count("pk")),
        n_abstain=sub(labels, Count("pk", filter=Q(verdict="abstain"))),
        ms_labels=sub(labels, Sum("elapsed_ms")),
        n_ratings=sub(ratings, Count("pk")),
        ms_ratings=sub(ratings, Sum("elapsed_ms")),
        n_marked_rest=sub(marked_rest, Count("pk")),
        ms_marks=sub(marks, Sum("elapsed_ms")),
    )
    return [
        AssignmentProgress(
            public_id=a.public_id,
            batch=a.batch.name,
            annotator=a.annotator.get_username(),
            total=a.n_total,
            done=a.n_labels + a.n_ratings + a.n_marked_rest,
            abstained=a.n_abstain,
            elapsed_ms=a.ms_labels + a.ms_ratings + a.ms_marks,
            due_date=a.due_date,
            submitted_at=a.submitted_at,
        )
        for a in rows
    ]


def audit_progress(*, audit: Audit) -> AuditProgress:
    rows = assignment_progress_list(audit=audit)
    return AuditProgress(
        total=sum(r.total for r in rows),
        done=sum(r.done for r in rows),
        abstained=sum(r.abstained for r in rows),
        elapsed_ms=sum(r.elapsed_ms for r in rows),
        assignments=tuple(rows),
    )
