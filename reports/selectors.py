"""Reads for the report layer; the one access check every report view goes through."""

from __future__ import annotations

from annotations.models import Audit
from annotations.roles import user_is_researcher_or_admin
from auditapp.exceptions import ForbiddenError, NotFoundError


def audit_get_for_report(*, user, slug: str) -> Audit:
    """The audit a researcher or admin may report on; everyone else is refused.

    Refusal comes before the lookup, so a clinician cannot probe which slugs exist.
    """
    if not user.is_authenticated:
        raise ForbiddenError("sign in to read reports")
    if not user_is_researcher_or_admin(user):
        raise ForbiddenError("reports are for researchers and admins")
    audit = Audit.objects.filter(slug=slug).first()
    if audit is None:
        raise NotFoundError(f"no audit {slug!r}")
    return audit


def audit_list_for_report(*, user) -> list[Audit]:
    if not user_is_researcher_or_admin(user):
        raise ForbiddenError("reports are for researchers and admins")
    return list(Audit.objects.order_by("slug"))
