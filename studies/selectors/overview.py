"""What the admin's study page and its CSV show: counts, times, dropout, exclusions.

One query for the participants with their done counts (subqueries), one for the attention
results; nothing per participant (a study of hundreds renders in a few queries).
"""

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce

from annotations.models import Audit, Label, TraceRating
from studies.models import Participant, Study, StudyItem, StudyLink, StudyResponse


@dataclass(frozen=True)
class ParticipantRow:
    platform_id: str
    link: str
    enrolment_index: int
    status: str  # in_progress | completed
    excluded: bool
    excluded_reason: str
    consented_at: datetime
    items_started_at: datetime | None
    completed_at: datetime | None
    minutes: float | None
    items_done: int
    n_items: int
    stopped_at: str  # where an unfinished participant is (or stopped)
    attention: str  # "5:pass 12:fail"
    attention_failures: int
    assignment_public_id: str


@dataclass(frozen=True)
class StudyOverview:
    opened: int
    declined: int
    enrolled: int  # consented, with an assignment
    in_progress: int
    completed: int
    excluded: int
    median_minutes: float | None
    dropout: list[tuple[str, int]]  # (where they stopped, how many), in study order
    rows: list[ParticipantRow]
    links: list[StudyLink]


def _where(p, rated: int, practice_done: int, n_practice: int, checks_done: int) -> str:
    if p.completed_at is not None:
        return ""
    if p.instructions_seen_at is None:
        return "instructions"
    if practice_done < n_practice:
        return f"practice {practice_done + 1}"
    done = rated + checks_done
    if done < p.n_items + p.n_checks:
        return f"item {done + 1}"
    if p.assignment.submitted_at is None:  # step labels: all labelled, not yet submitted
        return "submit"
    return "questionnaire"


def study_overview(*, audit: Audit) -> StudyOverview | None:
    study = Study.objects.filter(audit=audit).first()
    if study is None:
        return None
    links = list(study.links.order_by("created_at"))
    kinds = Counter(study.items.values_list("kind", flat=True))
    n_practice, n_checks = kinds[StudyItem.Kind.PRACTICE], kinds[StudyItem.Kind.ATTENTION]
    # Step-label studies: labels on the labelling page, attention checks among them (gold
    # items, scored on submission); trace ratings: ratings, checks apart.
    rating = audit.kind == Audit.Kind.TRACE_RATINGS
    rated = (
        (TraceRating if rating else Label)
        .objects.filter(assignment_id=OuterRef("assignment_id"))
        .order_by()
        .values("assignment_id")
        .annotate(n=Count("pk"))
        .values("n")
    )
    participants = (
        Participant.objects.filter(link__study=study)
        .select_related("link", "assignment")
        .annotate(
            rated=Coalesce(Subquery(rated), 0),
            practice_done=Count("responses", filter=Q(responses__item__kind="practice")),
            checks_done=Count("responses", filter=Q(responses__item__kind="attention")),
        )
        .order_by("link_id", "enrolment_index")
    )
    attention: dict[int, list[str]] = defaultdict(list)
    for pid, position, passed in (
        StudyResponse.objects.filter(participant__link__study=study, item__kind="attention")
        .order_by("participant_id", "item__position")
        .values_list("participant_id", "item__position", "passed")
    ):
        attention[pid].append(f"{position}:{'pass' if passed else 'fail'}")
    rows, minutes, dropout = [], [], Counter()
    for p in participants:
        p.n_checks = n_checks if rating else 0
        took = None
        if p.completed_at is not None:
            took = (p.completed_at - p.consented_at).total_seconds() / 60
            minutes.append(took)
        where = _where(p, p.rated, p.practice_done, n_practice, p.checks_done if rating else 0)
        if where:
            dropout[where] += 1
        rows.append(
            ParticipantRow(
                platform_id=p.platform_id,
                link=str(p.link),
                enrolment_index=p.enrolment_index,
                status="completed" if p.completed_at else "in_progress",
                excluded=p.excluded_at is not None,
                excluded_reason=p.excluded_reason,
                consented_at=p.consented_at,
                items_started_at=p.items_started_at,
                completed_at=p.completed_at,
                minutes=None if took is None else round(took, 2),
                items_done=p.rated,
                n_items=p.n_items,
                stopped_at=where,
                attention=" ".join(attention[p.pk]),
                attention_failures=p.attention_failures,
                assignment_public_id=p.assignment.public_id,
            )
        )

    def order(key: str) -> tuple:
        head, _, number = key.partition(" ")
        rank = ["instructions", "practice", "item", "submit", "questionnaire"].index(head)
        return rank, int(number or 0)

    counts = StudyLink.objects.filter(study=study).aggregate(
        opened=Coalesce(Sum("opened_count"), 0), declined=Coalesce(Sum("declined_count"), 0)
    )
    return StudyOverview(
        opened=counts["opened"],
        declined=counts["declined"],
        enrolled=len(rows),
        in_progress=sum(r.status == "in_progress" for r in rows),
        completed=sum(r.status == "completed" for r in rows),
        excluded=sum(r.excluded for r in rows),
        median_minutes=round(statistics.median(minutes), 2) if minutes else None,
        dropout=sorted(dropout.items(), key=lambda kv: order(kv[0])),
        rows=rows,
        links=links,
    )


def study_exclusions(*, audit: Audit) -> list[dict]:
    """The participants flagged by attention checks, for the report's exclusions: their
    assignment's public id, the rater name their ratings and labels carry in the report's
    tables, and the reason."""
    return [
        {
            "assignment": public_id,
            "rater": username,
            "platform_id": platform_id,
            "reason": reason,
            "excluded_at": at.isoformat(),
        }
        for public_id, username, platform_id, reason, at in Participant.objects.filter(
            link__study__audit=audit, excluded_at__isnull=False
        )
        .order_by("excluded_at", "pk")
        .values_list(
            "assignment__public_id",
            "user__username",
            "platform_id",
            "excluded_reason",
            "excluded_at",
        )
    ]


def excluded_assignment_ids(*, audit: Audit) -> set[int]:
    """Database ids of the assignments of excluded participants (the report's filter)."""
    return set(
        Participant.objects.filter(link__study__audit=audit, excluded_at__isnull=False).values_list(
            "assignment_id", flat=True
        )
    )
