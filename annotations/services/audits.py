"""Creating and changing audits (from a file, the API or the page: annotations/audit_spec.py)."""

from typing import Any

from django.db import transaction

from annotations.models import Audit, Label, TraceRating
from annotations.models.audits import new_blinding_seed
from annotations.services.audit_blinding import BLINDING_FIELDS, audit_normaliser_update
from annotations.services.randomness import audit_secret_from_seed
from auditapp.exceptions import ConflictError

DEFAULT_ERROR_CATEGORIES = [
    "factual error",
    "calculation error",
    "logical error",
    "misread question",
    "unsupported claim",
    "other",
]


@transaction.atomic
def audit_create(*, slug: str, name: str, seed: str = "", **fields) -> Audit:
    """A new audit. With a ``seed`` its secret is derived from it (reproducible), else random."""
    fields.setdefault("error_categories", list(DEFAULT_ERROR_CATEGORIES))
    blinding_seed = audit_secret_from_seed(seed, slug) if seed else new_blinding_seed()
    return Audit.objects.create(
        slug=slug, name=name, seed=seed, blinding_seed=blinding_seed, **fields
    )


def _has_derived_data(audit: Audit) -> bool:
    # Blind codes, public ids, samples and orders drawn from the secret so far.
    return audit.conditions.exists() or audit.traces.exists() or audit.batches.exists()


def _refuse(message: str, *, field: str, code: str) -> ConflictError:
    return ConflictError(message, code=code, extra={"field": field})


@transaction.atomic
def audit_update(*, audit: Audit, changes: dict[str, Any]) -> Audit:
    """Apply validated ``changes``; refuse what would rewrite a record already made.

    Raises ConflictError (``extra.field`` names the setting) when the seed changes once
    anything was drawn from the secret, the kind once there are batches, the Likert items once
    anyone rated, an error category is removed once anyone labelled, or the blinding changes
    once the text was seen (annotations/services/audit_blinding.py).
    """
    audit = Audit.objects.select_for_update().get(pk=audit.pk)
    changes = {k: v for k, v in changes.items() if getattr(audit, k) != v}
    if "seed" in changes:
        if _has_derived_data(audit):
            raise _refuse(
                "the audit already has traces or batches drawn from its secret: its seed "
                "can no longer change",
                field="seed",
                code="seed_in_use",
            )
        seed = changes["seed"]
        audit.blinding_seed = (
            audit_secret_from_seed(seed, audit.slug) if seed else (new_blinding_seed())
        )
    if "kind" in changes and audit.batches.exists():
        raise _refuse(
            "the audit has batches: its kind can no longer change", field="kind", code="kind_in_use"
        )
    if (
        "likert_items" in changes
        and TraceRating.objects.filter(assignment__batch__audit=audit).exists()
    ):
        raise _refuse(
            "traces were rated with these items: they can no longer change",
            field="likert_items",
            code="likert_in_use",
        )
    if "error_categories" in changes:
        removed = set(audit.error_categories) - set(changes["error_categories"])
        used = Label.objects.filter(
            assignment__batch__audit=audit, error_category__in=removed
        ).exists()
        if removed and used:
            raise _refuse(
                "labels name a category this removes: categories can be added, not removed",
                field="error_categories",
                code="categories_in_use",
            )
    blinding = {k: changes.pop(k) for k in BLINDING_FIELDS if k in changes}
    if blinding:
        # Re-blinds the stored text, or refuses once anyone saw it.
        audit_normaliser_update(
            audit=audit,
            version=blinding.get("normaliser_version"),
            rules=blinding.get("normaliser_rules"),
            style_normalisation=blinding.get("style_normalisation"),
        )
        audit.refresh_from_db(fields=list(BLINDING_FIELDS))
    for field, value in changes.items():
        setattr(audit, field, value)
    audit.full_clean(validate_unique=False, validate_constraints=False)
    audit.save()
    return audit
