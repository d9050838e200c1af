"""Helpers shared by the judge commands."""

from django.core.management.base import CommandError

from annotations.models import Audit
from auditapp.exceptions import ApplicationError, ImportRejected


def audit_by_slug(slug: str) -> Audit:
    audit = Audit.objects.filter(slug=slug).first()
    if audit is None:
        raise CommandError(f"no audit {slug!r}")
    return audit


def command_error(exc: ApplicationError) -> CommandError:
    """An ApplicationError as a CommandError, with every line problem when there are some."""
    if isinstance(exc, ImportRejected):
        lines = [exc.message] + [
            f"  line {p['line']}: {p['field']}: {p['message']}" for p in exc.extra["problems"]
        ]
        return CommandError("\n".join(lines))
    return CommandError(exc.message)
