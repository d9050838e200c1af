from django.conf import settings
from django.db import models

from .audits import Verdict
from .batches import Assignment, AssignmentItem
from .traces import Step


class Label(models.Model):
    """The current label of one assignment item; its history lives in LabelRevision."""

    # One current label per item, enforced by the database (double submits, two tabs).
    assignment_item = models.OneToOneField(
        AssignmentItem, on_delete=models.CASCADE, related_name="label"
    )
    # Denormalised: progress counts and reports filter on them without joining the item.
    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="labels")
    step = models.ForeignKey(Step, on_delete=models.CASCADE, related_name="labels")
    verdict = models.CharField(max_length=8, choices=Verdict.choices)
    error_category = models.CharField(max_length=120, blank=True)
    comment = models.TextField(blank=True)
    probe_guess = models.CharField(max_length=120, blank=True)
    elapsed_ms = models.PositiveBigIntegerField(default=0)
    # Marked by the annotator for review (unsure, odd item), with an optional note.
    flagged = models.BooleanField(default=False, db_default=False)
    flag_note = models.CharField(max_length=500, blank=True, db_default="")
    # What the clinician saw: context mode, answer visibility, blinded text version.
    shown = models.JSONField(default=dict)
    revision = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["assignment", "verdict"], name="label_assignment_verdict")]

    def __str__(self) -> str:
        return f"{self.assignment_item_id}: {self.verdict}"


class LabelRevision(models.Model):
    label = models.ForeignKey(Label, on_delete=models.CASCADE, related_name="revisions")
    revision = models.PositiveIntegerField()
    verdict = models.CharField(max_length=8, choices=Verdict.choices)
    error_category = models.CharField(max_length=120, blank=True)
    comment = models.TextField(blank=True)
    probe_guess = models.CharField(max_length=120, blank=True)
    elapsed_ms = models.PositiveBigIntegerField(default=0)
    flagged = models.BooleanField(default=False, db_default=False)
    flag_note = models.CharField(max_length=500, blank=True, db_default="")
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    changed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["label", "revision"]
        constraints = [
            models.UniqueConstraint(fields=["label", "revision"], name="labelrevision_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.label_id} r{self.revision}"


class TraceRating(models.Model):
    """Likert answers for one trace-rating item: ``answers`` maps item key → integer."""

    assignment_item = models.OneToOneField(
        AssignmentItem, on_delete=models.CASCADE, related_name="rating"
    )
    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="ratings")
    trace = models.ForeignKey("annotations.Trace", on_delete=models.CASCADE, related_name="+")
    answers = models.JSONField(default=dict)
    comment = models.TextField(blank=True)
    elapsed_ms = models.PositiveBigIntegerField(default=0)
    shown = models.JSONField(default=dict)
    revision = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.assignment_item_id}: {self.answers}"


class TraceRatingRevision(models.Model):
    rating = models.ForeignKey(TraceRating, on_delete=models.CASCADE, related_name="revisions")
    revision = models.PositiveIntegerField()
    answers = models.JSONField(default=dict)
    comment = models.TextField(blank=True)
    elapsed_ms = models.PositiveBigIntegerField(default=0)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    changed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["rating", "revision"]
        constraints = [
            models.UniqueConstraint(fields=["rating", "revision"], name="ratingrevision_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.rating_id} r{self.revision}"


class ProbeAnswer(models.Model):
    """An annotator's answer to the end-of-assignment blinding question about one item.

    In 'every' mode the answer rides on the label (``Label.probe_guess``); in 'end' mode the
    probe re-shows a few of the assignment's steps once the assignment is done, and each answer
    is one of these. ``guess`` is a probe arm's neutral label or "no idea".
    """

    assignment_item = models.OneToOneField(
        AssignmentItem, on_delete=models.CASCADE, related_name="probe_answer"
    )
    assignment = models.ForeignKey(
        Assignment, on_delete=models.CASCADE, related_name="probe_answers"
    )
    guess = models.CharField(max_length=120)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.assignment_item_id}: {self.guess}"
