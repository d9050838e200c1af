from django.conf import settings
from django.db import models

from .audits import Audit


class ImportJob(models.Model):
    """An uploaded trace file on its way in: validated, then imported by a worker with progress."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    audit = models.ForeignKey(Audit, on_delete=models.CASCADE, related_name="import_jobs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    filename = models.CharField(max_length=255)
    path = models.CharField(max_length=500)
    file_format = models.CharField(max_length=8)
    # The arm named with the upload, for the adapters' formats (lm-eval samples name no model).
    condition = models.CharField(max_length=120, blank=True, default="")
    segmenters = models.JSONField(default=list)
    skip_existing = models.BooleanField(default=False)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    total_records = models.PositiveIntegerField(default=0)
    done_records = models.PositiveIntegerField(default=0)
    n_traces = models.PositiveIntegerField(default=0)
    n_steps = models.PositiveIntegerField(default=0)
    n_skipped = models.PositiveIntegerField(default=0)
    # Answer-only samples written (never segmented; see AnswerSample).
    n_samples = models.PositiveIntegerField(default=0)
    problems = models.JSONField(default=list, blank=True)
    message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"import {self.pk} of {self.filename}"
