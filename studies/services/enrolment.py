"""A visitor's way through a study link: consent → instructions → practice → items (with
attention checks at set places) → questionnaire → completion code.

Enrolment makes the participant's account and assignment at the moment of consent, in
enrolment order: participant *i* takes row *i* of the audit's Williams Latin square over trace
types (annotations.services.batches), so the types are balanced per position once the link has
a multiple of the square's rows. Two tabs or a double-posted consent enrol once: the database
holds one participant per (link, platform id), and the losing request finds the winner's row.
"""

import re
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from annotations.models import (
    Assignment,
    AssignmentItem,
    Audit,
    BatchItem,
    Label,
    Trace,
    TraceRating,
)
from annotations.roles import Role
from annotations.selectors.access import _fetchone
from annotations.services.batches import (
    _latin_square_order,
    hidden_repeat_order,
    williams_square,
)
from annotations.services.labels import assignment_submit, rating_save
from annotations.services.randomness import public_ids, seeded_random
from auditapp.exceptions import ApplicationError, ConflictError, NotFoundError
from studies.models import Participant, Study, StudyItem, StudyLink, StudyResponse

TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,32}$")
# Prolific ids are 24 hex characters, SONA and MTurk ids shorter; 64 leaves room and keeps
# anything that could be markup, a path or a formula out.
PLATFORM_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_ELAPSED_MS = 3 * 3600 * 1000


class StudyUnavailable(ConflictError):
    """The link exists but takes nobody now: full, closed, not yet open or expired."""

    status_code = 410


# --- the link ------------------------------------------------------------------------------
def link_get(*, token: str) -> StudyLink:
    """The link by its token, with its study and audit; a tampered token is 'not found'."""
    if not isinstance(token, str) or not TOKEN_RE.fullmatch(token):
        raise NotFoundError("This study link is not valid. Check that it was copied whole.")
    link = StudyLink.objects.select_related("study__audit", "batch").filter(token=token).first()
    if link is None:
        raise NotFoundError("This study link is not valid. Check that it was copied whole.")
    return link


def link_check_open(*, link: StudyLink, now: datetime | None = None) -> None:
    now = now or timezone.now()
    if link.closed_at is not None:
        raise StudyUnavailable("This study is closed.", code="closed")
    if link.opens_at and now < link.opens_at:
        raise StudyUnavailable(
            f"This study opens on {link.opens_at:%d %B %Y at %H:%M} UTC.", code="not_open"
        )
    if link.closes_at and now >= link.closes_at:
        raise StudyUnavailable("This study has ended: the link has expired.", code="expired")
    if link.enrolled_count >= link.capacity:
        raise StudyUnavailable("This study is full: every place is taken.", code="full")


def platform_id_check(*, link: StudyLink, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ApplicationError(
            f"The link lacks your participant id ({link.platform_param}). Open it from the "
            "study platform again.",
            code="platform_id_missing",
        )
    if len(value) > 64:
        raise ApplicationError("That participant id is too long.", code="platform_id")
    if not PLATFORM_ID_RE.fullmatch(value):
        raise ApplicationError(
            "That participant id has characters an id never has (letters, digits, - and _ only).",
            code="platform_id",
        )
    return value


def link_opened(*, link: StudyLink) -> None:
    StudyLink.objects.filter(pk=link.pk).update(opened_count=F("opened_count") + 1)


def link_declined(*, link: StudyLink) -> None:
    """Someone declined consent: a count, and nothing else about them."""
    StudyLink.objects.filter(pk=link.pk).update(declined_count=F("declined_count") + 1)


# --- enrolment -----------------------------------------------------------------------------
def participant_find(*, link: StudyLink, platform_id: str) -> Participant | None:
    # A newcomer is the common case: a plain look-up first (the join compiles for a while).
    if not Participant.objects.filter(link_id=link.pk, platform_id=platform_id).exists():
        return None
    return (
        Participant.objects.select_related("user", "assignment")
        .filter(link_id=link.pk, platform_id=platform_id)
        .first()
    )


def participant_enrol(*, link: StudyLink, platform_id: str) -> tuple[Participant, bool]:
    """The participant of ``platform_id`` on ``link``: the existing one (resume, never a second
    assignment) or a new one with an account and an assignment made now. ``created`` says
    which."""
    existing = participant_find(link=link, platform_id=platform_id)
    if existing is not None:
        return existing, False
    link_check_open(link=link)
    try:
        with transaction.atomic():
            return _enrol(link, platform_id), True
    except IntegrityError:
        # Two tabs, or consent posted twice: the other request enrolled this id first.
        existing = participant_find(link=link, platform_id=platform_id)
        if existing is None:
            raise
        return existing, False


def _participant_user():
    user = get_user_model().objects.create(
        username=f"p-{secrets.token_hex(8)}",
        # Unusable (a random marker, no hashing): they come back through the link only.
        password=make_password(None),
        is_active=True,
    )
    # The group membership in one statement, without reading the group first; the group
    # itself is made by the first enrolment only.
    through = get_user_model().groups.through
    sql = (
        f"INSERT INTO {connection.ops.quote_name(through._meta.db_table)}"
        f" ({through._meta.get_field('user').column}, {through._meta.get_field('group').column})"
        f" SELECT %s, id FROM {connection.ops.quote_name(Group._meta.db_table)} WHERE name = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [user.pk, Role.PARTICIPANT.value])
        linked = cursor.rowcount
    if not linked:
        group, _ = Group.objects.get_or_create(name=Role.PARTICIPANT.value)
        through.objects.create(user_id=user.pk, group_id=group.pk)
    return user


def _take_slot(link: StudyLink) -> int:
    """The next enrolment index, or StudyUnavailable. The UPDATE checks the link's row as it
    is now (capacity, closed, dates: the link passed in may be a few seconds old) and
    row-locks it until the enrolment commits (capacity and order are exact under
    concurrency), so it comes as late in the transaction as it can: the lock is held for a
    few statements only."""
    table = connection.ops.quote_name(StudyLink._meta.db_table)
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET enrolled_count = enrolled_count + 1 "
            "WHERE id = %s AND enrolled_count < capacity AND closed_at IS NULL"
            " AND (opens_at IS NULL OR opens_at <= %s) AND (closes_at IS NULL OR closes_at > %s)"
            " RETURNING enrolled_count",
            [link.pk, now, now],
        )
        row = cursor.fetchone()
    if row is None:
        link.refresh_from_db()
        link_check_open(link=link)
        raise StudyUnavailable("This study is full: every place is taken.", code="full")
    return row[0] - 1


@dataclass(frozen=True)
class _Trace:
    trace_type: str


@dataclass(frozen=True)
class _Unit:
    """A batch item as the ordering needs it (what ``_latin_square_order`` reads)."""

    pk: int
    trace: _Trace


def _units(link: StudyLink) -> list[_Unit]:
    """The batch's traces with their types, in one plain statement (the ORM's join with
    ``only()`` cost more CPU to compile than the whole rest of an enrolment's reads)."""
    item = connection.ops.quote_name(BatchItem._meta.db_table)
    trace = connection.ops.quote_name(Trace._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT bi.id, t.trace_type FROM {item} bi JOIN {trace} t ON t.id = bi.trace_id"
            " WHERE bi.batch_id = %s AND NOT bi.is_gold ORDER BY bi.id",
            [link.batch_id],
        )
        return [_Unit(pk, _Trace(trace_type)) for pk, trace_type in cursor.fetchall()]


def participant_order(*, link: StudyLink, index: int, units: list) -> list:
    """Participant ``index``'s items in order: their share (all, or ``items_per_participant``
    dealt in turn from each trace type), ordered by row ``index`` of the Williams square."""
    seed = link.study.audit.blinding_seed
    types = sorted({u.trace.trace_type for u in units})
    own = units
    if link.items_per_participant is not None:
        by_type: dict[str, list] = defaultdict(list)
        for unit in units:
            by_type[unit.trace.trace_type].append(unit)
        deal = seeded_random(seed, f"study-link:{link.pk}:deal")
        each = link.items_per_participant // len(types)
        own = []
        for trace_type in types:
            group = by_type[trace_type]
            deal.shuffle(group)
            own += [group[(index * each + j) % len(group)] for j in range(each)]
    square = williams_square(len(types))
    rng = seeded_random(seed, f"study-link:{link.pk}:order:{index}")
    return _latin_square_order(own, square[index % len(square)], types, rng)


def _step_units(link: StudyLink) -> tuple[list[int], list[int]]:
    """The batch's sampled steps and its gold items (known verdict), by batch item id."""
    rows = BatchItem.objects.filter(batch_id=link.batch_id, step__isnull=False).values_list(
        "pk", "is_gold"
    )
    units, gold = [], []
    for pk, is_gold in rows.order_by("pk"):
        (gold if is_gold else units).append(pk)
    return units, gold


def participant_step_order(
    *, link: StudyLink, index: int, units: list[int], gold: list[int], checks: list[StudyItem]
) -> list[tuple[int, int | None]]:
    """A step-label participant's batch items in order: their share of the sampled steps (all,
    or ``items_per_participant`` dealt in turn), shuffled from the audit's secret, with the
    batch's share of hidden repeats among them (as in a clinician's assignment: at least the
    audit's gap after the original and after any identical text), and one gold item at each
    attention check's position (checks past the end come last). Each entry: (batch item id,
    the index in the list of the item it repeats, or None)."""
    seed = link.study.audit.blinding_seed
    own = list(units)
    if link.items_per_participant is not None:
        seeded_random(seed, f"study-link:{link.pk}:deal").shuffle(own)
        each = link.items_per_participant
        own = [own[(index * each + j) % len(own)] for j in range(min(each, len(own)))]
    seeded_random(seed, f"study-link:{link.pk}:order:{index}").shuffle(own)
    sequence = _with_step_repeats(
        link, own, seeded_random(seed, f"study-link:{link.pk}:repeats:{index}")
    )
    dealt = list(gold)
    seeded_random(seed, f"study-link:{link.pk}:gold").shuffle(dealt)
    k = min(len(checks), len(dealt))  # the link refuses fewer gold items than checks
    golds = [dealt[(index * k + j) % len(dealt)] for j in range(k)]
    total = len(sequence) + k
    at: dict[int, int] = {}
    for check, pk in zip(sorted(checks, key=lambda c: c.position), golds, strict=False):
        place = min(check.position, total)
        while place in at:
            place -= 1
        at[place] = pk
    # The gold items go in between: a repeat's original moves to its index in the whole list.
    out: list[tuple[int, int | None]] = []
    moved: dict[int, int] = {}
    rest = iter(enumerate(sequence))
    for n in range(1, total + 1):
        if n in at:
            out.append((at[n], None))
            continue
        i, (pk, original) = next(rest)
        moved[i] = len(out)
        out.append((pk, None if original is None else moved[original]))
    return out


def _with_step_repeats(link: StudyLink, own: list[int], rng) -> list[tuple[int, int | None]]:
    """``own`` with the batch's hidden repeats (``hidden_repeat_order``); as it is without."""
    batch = link.batch
    share = float(batch.design.get("hidden_repeat_share", 0.0))
    if not share or len(own) < 2:
        return [(pk, None) for pk in own]
    gap = int(batch.design.get("repeat_min_gap", link.study.audit.repeat_min_gap))
    sequence, _ = hidden_repeat_order(own, share=share, gap=gap, rng=rng)
    return sequence


def _is_rating(link: StudyLink) -> bool:
    return link.study.audit.kind == Audit.Kind.TRACE_RATINGS


def _enrol(link: StudyLink, platform_id: str) -> Participant:
    user = _participant_user()
    if _is_rating(link):
        units = _units(link)
        index = _take_slot(link)
        order = participant_order(link=link, index=index, units=units)
        unit_ids = [(unit.pk, None) for unit in order]
    else:
        steps, gold = _step_units(link)
        _, checks = _study_items(link.study)
        index = _take_slot(link)
        unit_ids = participant_step_order(
            link=link, index=index, units=steps, gold=gold, checks=checks
        )
    seed = link.study.audit.blinding_seed
    (public_id,) = public_ids(
        seeded_random(seed, f"assignment-id:{link.batch_id}:{user.pk}:study:{link.pk}"), 1
    )
    assignment = Assignment.objects.create(
        batch_id=link.batch_id, annotator=user, public_id=public_id
    )
    rows = [
        AssignmentItem(
            assignment=assignment,
            position=i,
            batch_item_id=pk,
            is_hidden_repeat=original is not None,
        )
        for i, (pk, original) in enumerate(unit_ids, start=1)
    ]
    # Originals first, so that each repeat can point at its original's row.
    AssignmentItem.objects.bulk_create(
        [r for r, (_, o) in zip(rows, unit_ids, strict=True) if o is None]
    )
    repeats = []
    for row, (_, original) in zip(rows, unit_ids, strict=True):
        if original is not None:
            row.repeat_of = rows[original]
            repeats.append(row)
    AssignmentItem.objects.bulk_create(repeats)
    return Participant.objects.create(
        link=link,
        platform_id=platform_id,
        user=user,
        assignment=assignment,
        enrolment_index=index,
        # Trace ratings: attention checks apart. Step labels: the gold items included.
        n_items=len(unit_ids),
        consented_at=timezone.now(),
    )


# --- where a participant is ----------------------------------------------------------------
@dataclass(frozen=True)
class Slot:
    """One place in the participant's sequence: an assignment item or an attention check."""

    number: int  # 1-based, what the participant sees ("3 of 18")
    position: int | None  # the assignment item's position (items)
    check: StudyItem | None  # the attention check (checks)


def participant_slots(*, participant: Participant, checks: list[StudyItem]) -> list[Slot]:
    """Items in assignment order with each attention check at its position (checks asking for
    a place past the end come last)."""
    total = participant.n_items + len(checks)
    at = {}
    for check in sorted(checks, key=lambda c: c.position):
        place = min(check.position, total)
        while place in at:
            place -= 1
        at[place] = check
    slots, position = [], 0
    for number in range(1, total + 1):
        if number in at:
            slots.append(Slot(number, None, at[number]))
        else:
            position += 1
            slots.append(Slot(number, position, None))
    return slots


@dataclass(frozen=True)
class Progress:
    stage: str  # instructions | practice | items | questionnaire | done
    practice: StudyItem | None  # the practice item to show next
    slot: Slot | None  # the item or check to show next
    total: int  # slots in all
    done: int  # slots done
    answered: frozenset[int] = frozenset()  # study items answered (practice, checks)
    rated: frozenset[int] = frozenset()  # assignment positions rated


# A study's practice items and checks change only through study_configure, which saves the
# study (a new updated_at): cached per process under that stamp, so the item loop reads them
# once instead of once a request.
_ITEMS_CACHE: dict[tuple[int, str], tuple[list[StudyItem], list[StudyItem]]] = {}


def _study_items(study: Study) -> tuple[list[StudyItem], list[StudyItem]]:
    key = (study.pk, study.updated_at.isoformat())
    cached = _ITEMS_CACHE.get(key)
    if cached is None:
        items = list(study.items.order_by("kind", "position"))
        practice = [i for i in items if i.kind == StudyItem.Kind.PRACTICE]
        checks = [i for i in items if i.kind == StudyItem.Kind.ATTENTION]
        if len(_ITEMS_CACHE) > 256:
            _ITEMS_CACHE.clear()
        cached = _ITEMS_CACHE[key] = (practice, checks)
    return cached


def participant_progress(
    *,
    participant: Participant,
    answered: set[int] | None = None,
    rated: set[int] | None = None,
) -> Progress:
    """Where the participant is: the first thing not done, in study order. ``answered`` and
    ``rated`` (what a previous call returned, plus what was just saved) spare the reads."""
    study = participant.link.study
    practice, checks = _study_items(study)
    if study.audit.kind != Audit.Kind.TRACE_RATINGS:
        return _step_progress(participant, study, practice)
    slots = participant_slots(participant=participant, checks=checks)
    if participant.completed_at is not None:
        return Progress("done", None, None, len(slots), len(slots))
    if answered is None or rated is None:
        answered, rated = _done_sets(participant)
    done = [s for s in slots if (s.check.pk in answered if s.check else s.position in rated)]
    state = {"total": len(slots), "done": len(done)}
    state |= {"answered": frozenset(answered), "rated": frozenset(rated)}
    if participant.instructions_seen_at is None:
        return Progress("instructions", None, None, **state)
    open_practice = [p for p in practice if p.pk not in answered]
    if open_practice:
        return Progress("practice", open_practice[0], None, **state)
    pending = [s for s in slots if s not in done]
    if pending:
        return Progress("items", None, pending[0], **state)
    if study.questionnaire and participant.questionnaire_answers is None:
        return Progress("questionnaire", None, None, **state)
    return Progress("done", None, None, **state)


def _step_progress(participant: Participant, study: Study, practice: list[StudyItem]) -> Progress:
    """Step-label studies: the steps are labelled on the labelling page, and the assignment's
    submission ends them (its attention checks are scored then)."""
    total = participant.n_items
    if participant.completed_at is not None:
        return Progress("done", None, None, total, total)
    answered = set(
        StudyResponse.objects.filter(participant=participant).values_list("item_id", flat=True)
    )
    submitted = participant.assignment.submitted_at is not None
    state = {"total": total, "done": total if submitted else 0, "answered": frozenset(answered)}
    if participant.instructions_seen_at is None:
        return Progress("instructions", None, None, **state)
    open_practice = [p for p in practice if p.pk not in answered]
    if open_practice:
        return Progress("practice", open_practice[0], None, **state)
    if not submitted:
        return Progress("labelling", None, None, **state)
    if study.questionnaire and participant.questionnaire_answers is None:
        return Progress("questionnaire", None, None, **state)
    return Progress("done", None, None, **state)


def step_checks_score(*, participant: Participant) -> None:
    """Score a step-label participant's attention checks once their assignment is submitted:
    the label on the gold item at each check's place against its known verdict (unlabelled
    counts as failed). Idempotent: a check already scored keeps its first result."""
    study = participant.link.study
    if study.audit.kind == Audit.Kind.TRACE_RATINGS:
        return
    if participant.assignment.submitted_at is None:
        return
    _, checks = _study_items(study)
    if not checks:
        return
    scored = set(
        StudyResponse.objects.filter(participant=participant, item__in=checks).values_list(
            "item_id", flat=True
        )
    )
    if len(scored) == len(checks):
        return
    golds = list(
        AssignmentItem.objects.filter(
            assignment_id=participant.assignment_id, batch_item__is_gold=True
        )
        .order_by("position")
        .values_list("pk", "position", "batch_item__gold_verdict")
    )
    given = dict(
        Label.objects.filter(assignment_id=participant.assignment_id).values_list(
            "assignment_item_id", "verdict"
        )
    )
    for check, (item_pk, position, expected) in zip(
        sorted(checks, key=lambda c: c.position), golds, strict=False
    ):
        if check.pk in scored:
            continue
        verdict = given.get(item_pk, "")
        answers = {"verdict": verdict, "expected": expected, "position": position}
        with transaction.atomic():
            _check_answer(participant, check, answers, 0, passed=verdict == expected)


def _done_sets(participant: Participant) -> tuple[set[int], set[int]]:
    """The study items answered and the assignment positions rated, in one statement."""
    names = {
        "rating": TraceRating._meta.db_table,
        "item": AssignmentItem._meta.db_table,
        "response": StudyResponse._meta.db_table,
    }
    t = {k: connection.ops.quote_name(v) for k, v in names.items()}
    sql = (
        f"SELECT 0, ai.position FROM {t['rating']} r"
        f" JOIN {t['item']} ai ON ai.id = r.assignment_item_id WHERE r.assignment_id = %s"
        f" UNION ALL SELECT 1, x.item_id FROM {t['response']} x WHERE x.participant_id = %s"
    )
    answered, rated = set(), set()
    with connection.cursor() as cursor:
        cursor.execute(sql, [participant.assignment_id, participant.pk])
        for kind, value in cursor.fetchall():
            (answered if kind else rated).add(value)
    return answered, rated


def progress_after(*, participant: Participant, progress: Progress, slot: Slot) -> Progress:
    """Where the participant is once ``slot`` is answered (no reads)."""
    answered, rated = set(progress.answered), set(progress.rated)
    if slot.check is not None:
        answered.add(slot.check.pk)
    else:
        rated.add(slot.position)
    return participant_progress(participant=participant, answered=answered, rated=rated)


# The link with its study and audit, for the pages of participants already enrolled (who do
# not depend on its capacity or dates), kept per process for a few seconds: compiling the
# four-table join cost more than a third of an item page's CPU. An admin's change to the
# study's texts shows within LINK_CACHE_SECONDS; enrolment always reads the link afresh.
LINK_CACHE_SECONDS = 10.0
_LINK_CACHE: dict[str, tuple[float, StudyLink]] = {}


def _link_cached(token: str) -> StudyLink | None:
    now = time.monotonic()
    hit = _LINK_CACHE.get(token)
    if hit is not None and now - hit[0] < LINK_CACHE_SECONDS:
        return hit[1]
    link = StudyLink.objects.select_related("study__audit", "batch").filter(token=token).first()
    if link is not None:
        if len(_LINK_CACHE) > 1024:
            _LINK_CACHE.clear()
        _LINK_CACHE[token] = (now, link)
    return link


def link_get_for_consent(*, token: str) -> StudyLink:
    """The link for a consent post: possibly a few seconds old, which is safe because taking
    the enrolment slot re-checks the row itself (``_take_slot``)."""
    if not isinstance(token, str) or not TOKEN_RE.fullmatch(token):
        return link_get(token=token)  # raises "not valid"
    return _link_cached(token) or link_get(token=token)


_PARTICIPANT_SQL: dict[str, tuple[str, list, list]] = {}


def _participant_sql() -> tuple[str, list, list]:
    """The participant-with-assignment statement, every concrete column of both (so a field
    added to either model is read too), built once per process."""
    cached = _PARTICIPANT_SQL.get("sql")
    if cached is None:
        p_fields = list(Participant._meta.concrete_fields)
        a_fields = list(Assignment._meta.concrete_fields)
        q = connection.ops.quote_name
        columns = [f"p.{q(f.column)}" for f in p_fields] + [f"a.{q(f.column)}" for f in a_fields]
        sql = (
            f"SELECT {', '.join(columns)} FROM {q(Participant._meta.db_table)} p"
            f" JOIN {q(Assignment._meta.db_table)} a ON a.id = p.assignment_id"
            " WHERE p.link_id = %s AND p.user_id = %s"
        )
        cached = _PARTICIPANT_SQL["sql"] = (sql, p_fields, a_fields)
    return cached


def _model_from_row(model, fields: list, values) -> object:
    decoded = []
    for field, value in zip(fields, values, strict=True):
        if isinstance(value, str) and field.get_internal_type() == "JSONField":
            # JSON columns come back as text here; Django's own read decodes them so too.
            value = field.from_db_value(value, None, connection)
        decoded.append(value)
    return model.from_db(connection.alias, [f.attname for f in fields], decoded)


def _participant_with_assignment(*, link_id: int, user_id: int) -> Participant | None:
    """The user's participation on the link, with its assignment. On PostgreSQL one prepared
    statement: the ORM's select_related compile cost about 0.9 ms CPU, on every page a
    participant loads (measured with bench/hot_path_profile.py)."""
    if connection.vendor != "postgresql":
        return (
            Participant.objects.select_related("assignment")
            .filter(link_id=link_id, user_id=user_id)
            .first()
        )
    sql, p_fields, a_fields = _participant_sql()
    row = _fetchone(sql, [link_id, user_id])
    if row is None:
        return None
    participant = _model_from_row(Participant, p_fields, row[: len(p_fields)])
    participant.assignment = _model_from_row(Assignment, a_fields, row[len(p_fields) :])
    return participant


def participant_for_user(*, token: str, user) -> Participant:
    """The signed-in visitor's participation on the link of ``token`` (with the link, study
    and audit); 404 for a tampered token or someone else's link."""
    if not isinstance(token, str) or not TOKEN_RE.fullmatch(token):
        link_get(token=token)  # raises "not valid"
    link = _link_cached(token)
    if link is None:
        link_get(token=token)  # raises "not valid"
    participant = None
    if user.is_authenticated:
        participant = _participant_with_assignment(link_id=link.pk, user_id=user.pk)
    if participant is None:
        raise NotFoundError("Open the study link from the study platform to continue.")
    participant.link = link
    participant.user = user
    return participant


# --- answers -------------------------------------------------------------------------------
def elapsed_since(shown_at_ms: object) -> int:
    """Time on the page from the time it was shown (the page's own hidden field)."""
    try:
        shown = int(shown_at_ms)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 0
    return max(0, min(MAX_ELAPSED_MS, int(time.time() * 1000) - shown))


VERDICTS = ("correct", "error", "abstain")


def likert_answers(*, audit: Audit, data) -> dict:
    """The Likert answers posted (``likert-<key>``): every item answered, within its scale.
    A step-label audit's practice posts a verdict instead (``likert-verdict``)."""
    if audit.kind != Audit.Kind.TRACE_RATINGS:
        verdict = data.get("likert-verdict")
        if verdict not in VERDICTS:
            raise ApplicationError("Choose correct, error or abstain to go on.", code="answers")
        return {"verdict": verdict}
    answers = {}
    for item in audit.likert_items:
        key = str(item["key"])
        low, high = int(item.get("min", 1)), int(item.get("max", 5))
        raw = data.get(f"likert-{key}")
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise ApplicationError(
                f"Answer “{item.get('label', key)}” to go on.", code="answers"
            ) from None
        if not low <= value <= high:
            raise ApplicationError(f"Choose a value from {low} to {high}.", code="answers")
        answers[key] = value
    return answers


def _passed(item: StudyItem, answers: dict) -> bool:
    return all(answers.get(key) == value for key, value in item.answers.items())


@transaction.atomic
def instructions_done(*, participant: Participant) -> None:
    now = timezone.now()
    Participant.objects.filter(pk=participant.pk, instructions_seen_at__isnull=True).update(
        instructions_seen_at=now
    )
    participant.instructions_seen_at = participant.instructions_seen_at or now


def practice_answer(
    *, participant: Participant, item: StudyItem, answers: dict, elapsed_ms: int = 0
) -> StudyResponse:
    """Keep the practice answer (the first one counts; a second post returns it)."""
    if item.kind != StudyItem.Kind.PRACTICE or item.study_id != participant.link.study_id:
        raise NotFoundError("No such practice item.")
    response, _ = _response_once(participant, item, answers, elapsed_ms)
    return response


def _response_once(
    participant: Participant,
    item: StudyItem,
    answers: dict,
    elapsed_ms: int,
    passed: bool | None = None,
) -> tuple[StudyResponse, bool]:
    try:
        with transaction.atomic():
            return StudyResponse.objects.create(
                participant=participant,
                item=item,
                answers=answers,
                passed=_passed(item, answers) if passed is None else passed,
                elapsed_ms=elapsed_ms,
            ), True
    except IntegrityError:  # two tabs: the first answer stands
        return StudyResponse.objects.get(participant=participant, item=item), False


def slot_answer(
    *,
    participant: Participant,
    slot: Slot,
    answers: dict,
    comment: str = "",
    elapsed_ms: int = 0,
) -> None:
    """Save the answer to an item (the audit's rating) or an attention check. A failed check
    past the study's allowance flags the participant as excluded; their data stay."""
    if participant.completed_at is not None:
        raise ConflictError("You have already finished this study.", code="completed")
    if slot.check is None:
        rating_save(
            annotator=participant.user,
            assignment_public_id=participant.assignment.public_id,
            position=slot.position,
            answers=answers,
            comment=comment[:5000],
            elapsed_ms=elapsed_ms,
        )
        return
    with transaction.atomic():
        _check_answer(participant, slot.check, answers, elapsed_ms)


def _check_answer(
    participant: Participant,
    check: StudyItem,
    answers: dict,
    elapsed_ms: int,
    passed: bool | None = None,
):
    response, created = _response_once(participant, check, answers, elapsed_ms, passed)
    if not created or response.passed:
        return
    # Locked: two failed checks posted at once both count, and the flag is set once.
    locked = Participant.objects.select_for_update().get(pk=participant.pk)
    locked.attention_failures += 1
    fields = ["attention_failures"]
    allowed = participant.link.study.max_attention_failures
    if locked.attention_failures > allowed and locked.excluded_at is None:
        locked.excluded_at = timezone.now()
        locked.excluded_reason = (
            f"failed {locked.attention_failures} attention check"
            f"{'s' if locked.attention_failures != 1 else ''} (allowed {allowed})"
        )
        fields += ["excluded_at", "excluded_reason"]
    locked.save(update_fields=fields)
    participant.attention_failures = locked.attention_failures
    participant.excluded_at = locked.excluded_at


def questionnaire_answers(*, study: Study, data) -> dict:
    out = {}
    for question in study.questionnaire:
        key, kind = question["key"], question["kind"]
        raw = (data.get(f"q-{key}") or "").strip()
        if not raw:
            if question.get("required"):
                raise ApplicationError(f"Please answer: {question['text']}", code="questionnaire")
            out[key] = None
            continue
        if kind == "choice" and raw not in question["choices"]:
            raise ApplicationError(f"Choose one of the answers to: {question['text']}")
        if kind == "scale":
            try:
                value = int(raw)
            except ValueError:
                raise ApplicationError(f"Choose a number for: {question['text']}") from None
            if not question["min"] <= value <= question["max"]:
                raise ApplicationError(f"Choose a number for: {question['text']}")
            out[key] = value
            continue
        out[key] = raw[:2000]
    return out


def questionnaire_save(*, participant: Participant, answers: dict) -> None:
    """The first answers stand (a second post changes nothing)."""
    Participant.objects.filter(pk=participant.pk, questionnaire_answers__isnull=True).update(
        questionnaire_answers=answers
    )


@transaction.atomic
def participant_complete(*, participant: Participant) -> Participant:
    """Mark the participant complete and submit their assignment; idempotent."""
    locked = Participant.objects.select_for_update().get(pk=participant.pk)
    if locked.completed_at is None:
        assignment_submit(
            annotator=participant.user, assignment_public_id=participant.assignment.public_id
        )
        locked.completed_at = timezone.now()
        locked.save(update_fields=["completed_at"])
    participant.completed_at = locked.completed_at
    return participant


def items_started(*, participant: Participant) -> None:
    if participant.items_started_at is None:
        now = timezone.now()
        Participant.objects.filter(pk=participant.pk, items_started_at__isnull=True).update(
            items_started_at=now
        )
        participant.items_started_at = now
