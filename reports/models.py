"""Blinded reporting: the locked analysis plan and the unblinding log.

Both are append-only records. An :class:`AnalysisPlan` is written once, before unblinding, and
never changed (its hash is over the canonical JSON of the plan, so a changed plan would no
longer match); an :class:`UnblindingEvent` says who unblinded an audit and when.
"""

from django.conf import settings
from django.db import models

from annotations.models import Audit


class ImmutableRecordError(RuntimeError):
    """A locked plan or an unblinding event was about to be changed or deleted."""


class AnalysisPlan(models.Model):
    """The analysis a researcher committed to before seeing condition names."""

    audit = models.OneToOneField(Audit, on_delete=models.CASCADE, related_name="analysis_plan")
    plan = models.JSONField()
    # sha256 of the canonical JSON (sorted keys, no spaces, UTF-8): see services.plan_hash.
    sha256 = models.CharField(max_length=64)
    locked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    locked_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"analysis plan of {self.audit_id} ({self.sha256[:12]})"

    def save(self, *args, **kwargs) -> None:
        # Why here and not only in the service: the admin or a shell must not edit it either.
        if self.pk is not None and not kwargs.get("force_insert"):
            raise ImmutableRecordError("an analysis plan is immutable once locked")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ImmutableRecordError("an analysis plan is immutable once locked")


class UnblindingEvent(models.Model):
    """Who unblinded an audit and when; one per audit, because unblinding happens once."""

    audit = models.OneToOneField(Audit, on_delete=models.CASCADE, related_name="unblinding")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    at = models.DateTimeField()
    # The plan hash at the moment of unblinding ("" when no plan was locked).
    plan_sha256 = models.CharField(max_length=64, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.audit_id} unblinded at {self.at:%Y-%m-%d %H:%M}"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None and not kwargs.get("force_insert"):
            raise ImmutableRecordError("an unblinding event cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ImmutableRecordError("an unblinding event cannot be deleted")
