"""Changing how an audit blinds its text: the normaliser version, its own rules, on/off.

Blinded text is stored at import (Step.blinded_text, Trace.blinded_final_answer), so a change
re-blinds every step and final answer of the audit in the same transaction — the admin adds a
rule, and the blinding check sees its effect at once. Once anyone has labelled or rated, or a
judge has run, the text they saw is part of the record: the change is refused.
"""

from collections.abc import Iterable
from typing import Any

from django.db import transaction

from annotations.models import Audit, Label, Step, Trace, TraceRating
from annotations.services.normalise import (
    RuleError,
    blinder_for,
    final_answer_blinded,
)
from auditapp.exceptions import ApplicationError, ConflictError

# Rows per bulk update: a few thousand keeps each UPDATE statement and its memory small.
_BATCH = 2000


BLINDING_IN_USE = (
    "this audit has labels, ratings or judge runs: the text they saw is part of the record, "
    "so its blinding can no longer change"
)
BLINDING_FIELDS = ("normaliser_version", "normaliser_rules", "style_normalisation")


def audit_blinding_in_use(*, audit: Audit) -> bool:
    return (
        Label.objects.filter(assignment__batch__audit=audit).exists()
        or TraceRating.objects.filter(assignment__batch__audit=audit).exists()
        or audit.judge_runs.exists()
    )


@transaction.atomic
def audit_normaliser_update(
    *,
    audit: Audit,
    version: str | None = None,
    rules: Iterable[Any] | None = None,
    style_normalisation: bool | None = None,
) -> int:
    """Set what is given (None: keep it), re-blind the audit's text; the steps re-blinded.

    Raises ApplicationError (code ``invalid_rules``) for rules :func:`rules_compile` refuses,
    ConflictError once the audit has labels, ratings or judge runs.
    """
    audit = Audit.objects.select_for_update().get(pk=audit.pk)
    new_version = audit.normaliser_version if version is None else version
    new_rules = list(audit.normaliser_rules if rules is None else rules)
    new_on = audit.style_normalisation if style_normalisation is None else style_normalisation
    try:
        blinder = blinder_for(normalise=new_on, version=new_version, rules=new_rules)
    except RuleError as exc:
        raise ApplicationError(str(exc), code="invalid_rules") from None
    if audit_blinding_in_use(audit=audit):
        raise ConflictError(BLINDING_IN_USE, code="blinding_in_use")
    audit.normaliser_version = new_version
    audit.normaliser_rules = new_rules
    audit.style_normalisation = new_on
    audit.full_clean(validate_unique=False, validate_constraints=False)
    audit.save(update_fields=["normaliser_version", "normaliser_rules", "style_normalisation"])

    steps = Step.objects.filter(audit=audit).only("pk", "text").order_by("pk")
    count = 0
    batch: list[Step] = []
    for step in steps.iterator(chunk_size=_BATCH):
        step.blinded_text = blinder(step.text)
        step.blinding_version = blinder.version
        batch.append(step)
        if len(batch) == _BATCH:
            Step.objects.bulk_update(batch, ["blinded_text", "blinding_version"])
            count += len(batch)
            batch = []
    Step.objects.bulk_update(batch, ["blinded_text", "blinding_version"])
    count += len(batch)

    traces: list[Trace] = []
    for trace in (
        Trace.objects.filter(audit=audit).only("pk", "final_answer").iterator(chunk_size=_BATCH)
    ):
        trace.blinded_final_answer = final_answer_blinded(trace.final_answer, blinder=blinder)
        traces.append(trace)
    Trace.objects.bulk_update(traces, ["blinded_final_answer"], batch_size=_BATCH)
    return count
