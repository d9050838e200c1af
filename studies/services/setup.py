"""Setting a study up: its texts and items from a settings dict (file, page), and its links."""

import re
import secrets
from collections import Counter
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from annotations.models import Audit, Batch
from auditapp.exceptions import ApplicationError
from studies.models import Study, StudyItem, StudyLink

STUDY_KEYS = {
    "consent",
    "instructions",
    "questionnaire",
    "practice",
    "attention_checks",
    "max_attention_failures",
}
QUESTION_KINDS = ("text", "choice", "scale")
VERDICTS = ("correct", "error", "abstain")
# What a recruitment platform's id parameter may be called in a URL query.
PARAM_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")
CODE_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _problem(field: str, message: str) -> ApplicationError:
    return ApplicationError(f"{field}: {message}", code="study_settings", extra={"field": field})


def _text(settings: dict, key: str, *, required: bool = False) -> str:
    value = settings.get(key, "")
    if not isinstance(value, str):
        raise _problem(key, "must be text.")
    if required and not value.strip():
        raise _problem(key, "is required.")
    return value


def _answers(value: Any, field: str, likert: dict[str, tuple[int, int]]) -> dict[str, int]:
    if not isinstance(value, dict) or not value:
        raise _problem(field, "must map Likert item keys to the expected values.")
    out = {}
    for key, answer in value.items():
        if key not in likert:
            raise _problem(field, f"{key!r} is not one of the audit's Likert items.")
        low, high = likert[key]
        if not isinstance(answer, int) or isinstance(answer, bool) or not low <= answer <= high:
            raise _problem(f"{field}.{key}", f"must be a whole number from {low} to {high}.")
        out[key] = answer
    return out


def _questionnaire(value: Any) -> list[dict]:
    if not isinstance(value, list):
        raise _problem("questionnaire", "must be a list of questions.")
    keys: Counter = Counter()
    out = []
    for i, question in enumerate(value, start=1):
        field = f"questionnaire[{i}]"
        if not isinstance(question, dict):
            raise _problem(field, "must be an object with key, text and kind.")
        unknown = set(question) - {"key", "text", "kind", "choices", "min", "max", "required"}
        if unknown:
            raise _problem(field, f"unknown key {sorted(unknown)[0]!r}.")
        key, text = question.get("key"), question.get("text")
        kind = question.get("kind", "text")
        if not isinstance(key, str) or not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", key):
            raise _problem(f"{field}.key", "must be a short lower-case name (a-z, 0-9, _).")
        keys[key] += 1
        if keys[key] > 1:
            raise _problem(f"{field}.key", f"{key!r} is used twice.")
        if not isinstance(text, str) or not text.strip():
            raise _problem(f"{field}.text", "is required.")
        if kind not in QUESTION_KINDS:
            raise _problem(f"{field}.kind", f"must be one of {', '.join(QUESTION_KINDS)}.")
        entry = {"key": key, "text": text, "kind": kind, "required": bool(question.get("required"))}
        if kind == "choice":
            choices = question.get("choices")
            if (
                not isinstance(choices, list)
                or not choices
                or not all(isinstance(c, str) and c for c in choices)
            ):
                raise _problem(f"{field}.choices", "must be a list of texts.")
            entry["choices"] = choices
        if kind == "scale":
            low, high = question.get("min", 1), question.get("max", 5)
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high)) or (
                not 0 <= low < high <= 10
            ):
                raise _problem(f"{field}.min", "min and max: whole numbers, 0 ≤ min < max ≤ 10.")
            entry["min"], entry["max"] = low, high
        out.append(entry)
    return out


def _step_items(value: Any, field: str, *, checks: bool) -> list[dict]:
    """Step-label studies: practice steps with the expected verdict, and attention checks by
    position only (each shows one of the link's batch's gold items: a step with a known
    verdict, on the labelling page like any other)."""
    if not isinstance(value, list):
        raise _problem(field, "must be a list.")
    allowed = {"position"} if checks else {"text", "question", "verdict", "feedback"}
    out, positions = [], set()
    for i, item in enumerate(value, start=1):
        where = f"{field}[{i}]"
        if not isinstance(item, dict):
            raise _problem(where, "must be an object.")
        unknown = set(item) - allowed
        if unknown:
            hint = " (a step study's checks are the batch's gold items)" if checks else ""
            raise _problem(where, f"unknown key {sorted(unknown)[0]!r}{hint}.")
        if checks:
            position = item.get("position")
            if not isinstance(position, int) or isinstance(position, bool) or position < 1:
                raise _problem(f"{where}.position", "must be a whole number from 1.")
            if position in positions:
                raise _problem(f"{where}.position", f"{position} is used twice.")
            positions.add(position)
            out.append({"position": position, "text": "", "question": "", "answers": {}})
            continue
        text = item.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _problem(f"{where}.text", "is required.")
        verdict = item.get("verdict")
        if verdict not in VERDICTS:
            raise _problem(f"{where}.verdict", f"must be one of {', '.join(VERDICTS)}.")
        out.append(
            {
                "position": i,
                "text": text,
                "question": _text(item, "question") if "question" in item else "",
                "answers": {"verdict": verdict},
                "feedback": _text(item, "feedback") if "feedback" in item else "",
            }
        )
    return out


def _items(value: Any, field: str, likert: dict, *, with_position: bool) -> list[dict]:
    if not isinstance(value, list):
        raise _problem(field, "must be a list.")
    allowed = {"text", "question", "answers", "feedback"}
    if with_position:
        allowed.add("position")
    out, positions = [], set()
    for i, item in enumerate(value, start=1):
        where = f"{field}[{i}]"
        if not isinstance(item, dict):
            raise _problem(where, "must be an object.")
        unknown = set(item) - allowed
        if unknown:
            raise _problem(where, f"unknown key {sorted(unknown)[0]!r}.")
        text = item.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _problem(f"{where}.text", "is required.")
        position = i
        if with_position:
            position = item.get("position")
            if not isinstance(position, int) or isinstance(position, bool) or position < 1:
                raise _problem(f"{where}.position", "must be a whole number from 1.")
            if position in positions:
                raise _problem(f"{where}.position", f"{position} is used twice.")
            positions.add(position)
        out.append(
            {
                "position": position,
                "text": text,
                "question": _text(item, "question") if "question" in item else "",
                "answers": _answers(item.get("answers"), f"{where}.answers", likert),
                "feedback": _text(item, "feedback") if "feedback" in item else "",
            }
        )
    return out


@transaction.atomic
def study_configure(*, audit: Audit, settings: dict) -> Study:
    """Create or replace the audit's study from a settings dict (docs/studies.md). The whole
    dict is checked first; an unknown key or a wrong type names the field, nothing is saved.
    Practice items and attention checks are replaced as a whole; their past answers go with
    them, so changing them once participants have answered is refused."""
    if not isinstance(settings, dict):
        raise _problem("study", "must be an object.")
    unknown = set(settings) - STUDY_KEYS
    if unknown:
        raise _problem(sorted(unknown)[0], f"unknown key (known: {', '.join(sorted(STUDY_KEYS))}).")
    rating = audit.kind == Audit.Kind.TRACE_RATINGS
    likert = {
        str(i["key"]): (int(i.get("min", 1)), int(i.get("max", 5))) for i in audit.likert_items
    }
    if rating and not likert:
        raise ApplicationError("The audit has no Likert items to rate.", code="audit_kind")
    existing = Study.objects.select_for_update().filter(audit=audit).first()
    consent = _text(settings, "consent", required=existing is None or "consent" in settings)
    failures = settings.get("max_attention_failures", 0)
    if not isinstance(failures, int) or isinstance(failures, bool) or failures < 0:
        raise _problem("max_attention_failures", "must be a whole number from 0.")
    if rating:
        practice = _items(settings.get("practice", []), "practice", likert, with_position=False)
        checks = _items(
            settings.get("attention_checks", []), "attention_checks", likert, with_position=True
        )
    else:
        practice = _step_items(settings.get("practice", []), "practice", checks=False)
        checks = _step_items(settings.get("attention_checks", []), "attention_checks", checks=True)
    questionnaire = _questionnaire(settings.get("questionnaire", []))
    instructions = _text(settings, "instructions")
    if existing is None:
        study = Study.objects.create(
            audit=audit,
            consent_text=consent,
            instructions=instructions,
            questionnaire=questionnaire,
            max_attention_failures=failures,
        )
    else:
        study = existing
        if consent:
            study.consent_text = consent
        study.instructions = instructions or study.instructions
        study.questionnaire = questionnaire or study.questionnaire
        study.max_attention_failures = failures
        study.save()
        if ("practice" in settings or "attention_checks" in settings) and (
            study.items.filter(responses__isnull=False).exists()
        ):
            raise ApplicationError(
                "Participants have answered this study's practice or attention items; "
                "they can no longer be replaced.",
                code="study_started",
            )
    for kind, rows, given in (
        (StudyItem.Kind.PRACTICE, practice, "practice" in settings),
        (StudyItem.Kind.ATTENTION, checks, "attention_checks" in settings),
    ):
        if existing is not None and not given:
            continue
        study.items.filter(kind=kind).delete()
        StudyItem.objects.bulk_create([StudyItem(study=study, kind=kind, **row) for row in rows])
    return study


def _link_token() -> str:
    return secrets.token_urlsafe(16)  # 128 random bits, 22 characters


@transaction.atomic
def study_link_create(
    *,
    audit: Audit,
    batch: Batch,
    capacity: int,
    created_by: AbstractBaseUser | None = None,
    name: str = "",
    opens_at: datetime | None = None,
    closes_at: datetime | None = None,
    platform_param: str = "PROLIFIC_PID",
    completion_code: str = "",
    completion_url: str = "",
    items_per_participant: int | None = None,
) -> StudyLink:
    """An enrolment link on the audit's study, drawing each participant's assignment from
    ``batch`` (all its items, or ``items_per_participant``: dealt evenly per trace type for
    ratings, in turn from a seeded shuffle for steps, whose checks need the batch's gold)."""
    study = Study.objects.filter(audit=audit).first()
    if study is None:
        raise ApplicationError(
            "The audit has no study yet: give its consent text (and the rest) first.",
            code="no_study",
        )
    if batch.audit_id != audit.pk:
        raise ApplicationError("The batch belongs to another audit.", code="batch")
    if capacity < 1:
        raise _problem("capacity", "must be at least 1.")
    if opens_at and closes_at and closes_at <= opens_at:
        raise _problem("closes_at", "must be after opens_at.")
    if not PARAM_RE.fullmatch(platform_param):
        raise _problem("platform_param", "must be a parameter name such as PROLIFIC_PID.")
    if not completion_code and not completion_url:
        raise _problem("completion_code", "give a completion code or a completion URL.")
    if completion_code and not CODE_RE.fullmatch(completion_code):
        raise _problem("completion_code", "letters, digits, - and _ only (at most 64).")
    if completion_url and not completion_url.startswith(("https://", "http://")):
        raise _problem("completion_url", "must be an http(s) URL.")
    if audit.kind != Audit.Kind.TRACE_RATINGS:
        _step_batch_check(study, batch, items_per_participant)
        units = []
    else:
        units = list(
            batch.items.filter(is_gold=False, trace__isnull=False).values_list(
                "trace__trace_type", flat=True
            )
        )
        if not units:
            raise ApplicationError("The batch has no traces to rate.", code="batch")
    types = Counter(units)
    if items_per_participant is not None and units:
        if items_per_participant < 1 or items_per_participant > len(units):
            raise _problem("items_per_participant", f"must be from 1 to {len(units)}.")
        if items_per_participant % len(types):
            raise _problem(
                "items_per_participant",
                f"must be a multiple of the {len(types)} trace types (equal numbers of each).",
            )
        if items_per_participant // len(types) > min(types.values()):
            raise _problem("items_per_participant", "the batch has too few traces of some type.")
    return StudyLink.objects.create(
        study=study,
        token=_link_token(),
        name=name,
        batch=batch,
        items_per_participant=items_per_participant,
        capacity=capacity,
        opens_at=opens_at,
        closes_at=closes_at,
        platform_param=platform_param,
        completion_code=completion_code,
        completion_url=completion_url,
        created_by=created_by,
    )


def _step_batch_check(study: Study, batch: Batch, items_per_participant: int | None) -> None:
    """A step-label link: steps to label, and a gold item for each attention check."""
    steps = batch.items.filter(is_gold=False, step__isnull=False).count()
    if not steps:
        raise ApplicationError("The batch has no steps to label.", code="batch")
    if items_per_participant is not None and not 1 <= items_per_participant <= steps:
        raise _problem("items_per_participant", f"must be from 1 to {steps}.")
    checks = study.items.filter(kind=StudyItem.Kind.ATTENTION).count()
    gold = batch.items.filter(is_gold=True).count()
    if checks > gold:
        raise ApplicationError(
            f"The study has {checks} attention checks but the batch only {gold} gold items "
            "(steps with a known verdict): draw it with create_batch --gold.",
            code="batch",
        )


def study_link_close(*, link: StudyLink) -> StudyLink:
    """Nobody new enrols; those already in finish (idempotent)."""
    from django.utils import timezone

    StudyLink.objects.filter(pk=link.pk, closed_at__isnull=True).update(closed_at=timezone.now())
    link.refresh_from_db()
    return link
