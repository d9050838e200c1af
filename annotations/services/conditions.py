from django.db import transaction

from annotations.models import Audit, Condition
from annotations.services.randomness import blind_code_sequence


@transaction.atomic
def conditions_ensure(*, audit: Audit, names: list[str]) -> dict[str, Condition]:
    """The audit's conditions by name, creating missing ones with the next seeded blind codes."""
    existing = {c.name: c for c in Condition.objects.select_for_update().filter(audit=audit)}
    used = {c.blind_code for c in existing.values()}
    codes = (code for code in blind_code_sequence(audit.blinding_seed) if code not in used)
    for name in names:
        if name not in existing:
            existing[name] = Condition.objects.create(
                audit=audit, name=name, blind_code=next(codes)
            )
    return existing
