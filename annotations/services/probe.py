"""The blinding probe: asking annotators which arm they think wrote what they judged.

The arms are described by neutral labels the admin writes ("Source 1", "Style B") and maps
explicitly to conditions (``Audit.probe_arms``); the report reads guesses through that mapping.
Asking on every item invites a guess per step while the guidelines say not to guess, so the
default asks once per assignment, after its last item, on a few of its steps chosen at random
(``probe_mode = "end"``); ``"every"`` asks on items N, 2N, ... with the label.
"""

import hashlib
from dataclasses import dataclass

import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Exists, OuterRef

from annotations.models import (
    AssignmentItem,
    Audit,
    Condition,
    Label,
    ProbeAnswer,
    ProbeMode,
    TraceRating,
)
from annotations.selectors.access import assignment_get_for_annotator, context_texts
from annotations.services.labels import PROBE_NO_IDEA
from auditapp.exceptions import ApplicationError, ConflictError

# A condition name shorter than this is not looked for inside labels ("A" would refuse most).
_MIN_NAME_IN_LABEL = 3


def probe_arms_check(audit: Audit) -> list[str]:
    """What is wrong with the audit's probe arms, given its conditions (empty: nothing).

    Each arm maps to an existing condition, at most one arm per condition, and no label
    names a condition: not its name, blind code or description (a label such as "teacher
    model" tells the annotator which arm is which, the thing the probe measures).
    """
    conditions = {
        c.name: c
        for c in Condition.objects.filter(audit=audit).only("name", "blind_code", "description")
    }
    problems: list[str] = []
    mapped: set[str] = set()
    for n, arm in enumerate(audit.probe_arms or []):
        label, name = str(arm.get("label", "")), str(arm.get("condition", ""))
        where = f"probe_arms[{n}]"
        if conditions and name not in conditions:
            problems.append(f"{where}.condition: no condition named {name!r} in this audit.")
        if name in mapped:
            problems.append(f"{where}.condition: {name!r} has two labels.")
        mapped.add(name)
        folded = label.casefold()
        for condition in conditions.values():
            tells = [condition.name, condition.blind_code, condition.description or ""]
            if any(len(t) >= _MIN_NAME_IN_LABEL and t.casefold() in folded for t in tells):
                problems.append(
                    f"{where}.label: {label!r} names a condition; use a neutral label "
                    "such as 'Source 1'."
                )
                break
    return problems


def probe_labels(audit_arms: list) -> tuple[str, ...]:
    """The answers an annotator may give: the arms' labels, then "no idea"."""
    if not audit_arms:
        return ()
    return (*(str(a["label"]) for a in audit_arms), PROBE_NO_IDEA)


def probe_on_item(*, mode: str, every: int, arms: list, position: int) -> bool:
    """Whether the label form of the item at ``position`` (1-based) carries the probe."""
    return bool(arms) and mode == ProbeMode.EVERY and every > 0 and position % every == 0


def probe_condition_by_label(audit: Audit) -> dict[str, str]:
    """Probe answer (case-folded label) → condition name, from the explicit mapping."""
    return {str(a["label"]).strip().casefold(): str(a["condition"]) for a in audit.probe_arms or []}


# --- 'end' mode: once per assignment ------------------------------------------------------
@dataclass(frozen=True)
class ProbeItem:
    position: int  # the item's position in the annotator's own order
    text: str  # the blinded step (or, for a trace rating, the blinded trace's steps)
    guess: str  # the answer given, "" when none yet


@dataclass(frozen=True)
class EndProbe:
    assignment_public_id: str
    options: tuple[str, ...]
    items: tuple[ProbeItem, ...]
    available: bool  # the assignment is done (every item labelled or rated) or submitted
    answered: bool


def _chosen_items(assignment, audit: Audit) -> list[AssignmentItem]:
    """The items the end probe asks about: a reproducible random few of the assignment's
    own items (hidden repeats and gold items left out), in the annotator's order."""
    candidates = list(
        assignment.items.filter(is_hidden_repeat=False, batch_item__is_gold=False)
        .select_related("batch_item__step")
        .order_by("position")
    )
    k = min(audit.probe_end_items, len(candidates))
    if k == 0:
        return []
    digest = hashlib.sha256(f"{audit.blinding_seed}:probe:{assignment.public_id}".encode())
    rng = np.random.default_rng(int.from_bytes(digest.digest()[:8], "big"))
    picked = sorted(rng.choice(len(candidates), size=k, replace=False).tolist())
    return [candidates[i] for i in picked]


def _done(assignment, audit: Audit) -> bool:
    if assignment.submitted_at is not None:
        return True
    model = TraceRating if audit.kind == Audit.Kind.TRACE_RATINGS else Label
    done = Exists(model.objects.filter(assignment_item=OuterRef("pk")))
    return not assignment.items.filter(~done).exists()


def _text(item: AssignmentItem, segmentation: str) -> str:
    batch_item = item.batch_item
    if batch_item.step_id is not None:
        return batch_item.step.blinded_text
    return "\n\n".join(
        context_texts(trace_id=batch_item.trace_id, segmentation=segmentation, before_index=None)
    )


def end_probe_get(*, annotator: AbstractBaseUser, assignment_public_id: str) -> EndProbe | None:
    """The end-of-assignment probe of the annotator's own assignment; None when the audit
    does not ask it this way (404 for someone else's assignment, as everywhere)."""
    assignment = assignment_get_for_annotator(
        annotator=annotator, assignment_public_id=assignment_public_id
    )
    audit = assignment.batch.audit
    if not audit.probe_active or audit.probe_mode != ProbeMode.END:
        return None
    available = _done(assignment, audit)
    items = _chosen_items(assignment, audit) if available else []
    answers = dict(
        ProbeAnswer.objects.filter(assignment_item__in=items).values_list(
            "assignment_item_id", "guess"
        )
    )
    return EndProbe(
        assignment_public_id=assignment.public_id,
        options=probe_labels(audit.probe_arms),
        items=tuple(
            ProbeItem(
                position=i.position,
                text=_text(i, assignment.batch.segmentation),
                guess=answers.get(i.pk, ""),
            )
            for i in items
        ),
        available=available,
        answered=bool(items) and len(answers) == len(items),
    )


def end_probe_save(
    *, annotator: AbstractBaseUser, assignment_public_id: str, answers: dict[int, str]
) -> int:
    """Store the annotator's answers (position → label or "no idea"); saving again replaces
    them. Returns how many were stored. Nothing is stored unless every answer is valid."""
    with transaction.atomic():
        assignment = assignment_get_for_annotator(
            annotator=annotator, assignment_public_id=assignment_public_id, for_update=True
        )
        audit = assignment.batch.audit
        if not audit.probe_active or audit.probe_mode != ProbeMode.END:
            raise ConflictError("This audit asks no end-of-assignment question.", code="no_probe")
        if not _done(assignment, audit):
            raise ConflictError(
                "The question comes after the assignment's last item.", code="probe_not_yet"
            )
        items = {i.position: i for i in _chosen_items(assignment, audit)}
        options = set(probe_labels(audit.probe_arms))
        for position, guess in answers.items():
            if position not in items:
                raise ApplicationError(
                    f"Item {position} is not one the question asks about.", code="probe_position"
                )
            if guess not in options:
                raise ApplicationError(
                    "Unknown answer to the blinding question.",
                    code="probe_guess",
                    extra={"options": sorted(options)},
                )
        for position, guess in answers.items():
            ProbeAnswer.objects.update_or_create(
                assignment_item=items[position],
                defaults={"assignment": assignment, "guess": guess},
            )
    return len(answers)
