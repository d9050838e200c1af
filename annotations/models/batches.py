from django.conf import settings
from django.db import models
from django.db.models import Q

from .audits import Audit, LabellingMode, Verdict
from .traces import Step, Trace


class Batch(models.Model):
    """A sample of steps (or, for trace-rating audits, traces), reproducible from its seed.

    ``design`` records how it was drawn — strata with population and sample sizes and the
    inclusion probability of each — so the report can weight labels back to the population.
    """

    audit = models.ForeignKey(Audit, on_delete=models.CASCADE, related_name="batches")
    name = models.CharField(max_length=120)
    segmentation = models.CharField(max_length=32)
    # Not a secret on its own: every stream is HMAC(audit.blinding_seed, "batch:<seed>:…").
    seed = models.CharField(max_length=64)
    design = models.JSONField(default=dict)
    overlap = models.PositiveSmallIntegerField(default=1)
    # Released in waves (issue 15): annotators hold assignment items of released waves only;
    # a wave's items are dealt to the assignments when it is released (services/batches.py).
    waves = models.PositiveSmallIntegerField(default=1)
    waves_released = models.PositiveSmallIntegerField(default=1)
    # The labelling mode the batch was drawn for (the audit's, or the override given when it
    # was built): trace modes sample whole traces, so a built batch never changes mode.
    mode = models.CharField(
        max_length=16, choices=LabellingMode.choices, default=LabellingMode.STEPS
    )
    # Set when the batch was assigned although the leak gate was above the audit's threshold:
    # the figures, who confirmed and when (annotations/services/leak_gate.py).
    leak_gate = models.JSONField(default=dict, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["audit", "name"], name="batch_unique_name"),
        ]

    def __str__(self) -> str:
        return f"{self.audit.slug}:{self.name}"


class BatchItem(models.Model):
    """One sampled unit: a step (step-label audits) or a trace (trace-rating audits)."""

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="items")
    step = models.ForeignKey(
        Step, null=True, blank=True, on_delete=models.CASCADE, related_name="batch_items"
    )
    trace = models.ForeignKey(
        Trace, null=True, blank=True, on_delete=models.CASCADE, related_name="batch_items"
    )
    stratum = models.CharField(max_length=200)
    # NULL for gold items: they are mixed in on purpose, not drawn from the population.
    inclusion_probability = models.FloatField(null=True, blank=True)
    is_gold = models.BooleanField(default=False)
    # 1..batch.waves: each stratum's sample is split at random into near-equal waves, so the
    # items of waves 1..w are themselves a probability sample (π × n_h,≤w / n_h).
    wave = models.PositiveSmallIntegerField(default=1)
    gold_verdict = models.CharField(  # noqa: DJ001 (NULL: not a gold item)
        max_length=8, choices=Verdict.choices, null=True, blank=True
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["batch", "step"], name="batchitem_unique_step"),
            models.UniqueConstraint(fields=["batch", "trace"], name="batchitem_unique_trace"),
            models.CheckConstraint(
                condition=Q(step__isnull=False, trace__isnull=True)
                | Q(step__isnull=True, trace__isnull=False),
                name="batchitem_step_xor_trace",
            ),
        ]

    def __str__(self) -> str:
        return f"batch item {self.pk}"


class Assignment(models.Model):
    """A batch's share given to one annotator, in the annotator's own shuffled order."""

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="assignments"
    )
    # Random from the audit's seed; the only handle a clinician ever sees.
    public_id = models.CharField(max_length=24, unique=True)
    due_date = models.DateField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    reassigned_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["batch", "annotator"], name="assignment_unique_annotator"
            ),
        ]

    def __str__(self) -> str:
        return self.public_id

    @property
    def is_locked(self) -> bool:
        return self.submitted_at is not None


class AssignmentItem(models.Model):
    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveIntegerField()  # 1-based, the annotator's order
    batch_item = models.ForeignKey(
        BatchItem, on_delete=models.CASCADE, related_name="assignment_items"
    )
    is_hidden_repeat = models.BooleanField(default=False)
    repeat_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="repeats"
    )
    # The annotator skipped it (unsure, or to come back later): it stays unlabelled and comes
    # back after the items not yet seen. Kept once it is labelled (the export says so).
    skipped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["assignment", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["assignment", "position"], name="assignmentitem_unique_position"
            ),
            models.UniqueConstraint(
                fields=["assignment", "batch_item"],
                condition=Q(is_hidden_repeat=False),
                name="assignmentitem_unique_item",
            ),
        ]
        indexes = [
            # The label loop counts an assignment's skipped items on every "save & next".
            models.Index(
                fields=["assignment"],
                condition=Q(skipped_at__isnull=False),
                name="assignmentitem_skipped",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.assignment_id}#{self.position}"

    @property
    def repeat_of_position(self) -> int | None:
        return self.repeat_of.position if self.repeat_of_id else None


class AssignmentEvent(models.Model):
    """What an admin did to an assignment after the fact (reopening a submitted one)."""

    class Kind(models.TextChoices):
        REOPENED = "reopened", "reopened"

    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    at = models.DateTimeField(auto_now_add=True)
    # The submission this event undid (reopen), so the history reads on its own.
    submitted_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["assignment", "at", "pk"]

    def __str__(self) -> str:
        return f"{self.assignment_id} {self.kind} {self.at:%Y-%m-%d}"
