from django.db import transaction

from annotations.models import Audit

DEFAULT_ERROR_CATEGORIES = [
    "factual error",
    "calculation error",
    "logical error",
    "misread question",
    "unsupported claim",
    "other",
]


@transaction.atomic
def audit_create(*, slug: str, name: str, **fields) -> Audit:
    fields.setdefault("error_categories", list(DEFAULT_ERROR_CATEGORIES))
    return Audit.objects.create(slug=slug, name=name, **fields)
