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


class FirstErrorMark(models.Model):
    """First-error mode: where the expert put the first wrong step of one trace (or none).

    The step labels it implies are ordinary ``Label`` rows (steps before the mark correct, the
    marked one an error, later ones unlabelled; "no error": every step correct), written in the
    same transaction; this row says they came from a mark and where it was, so a re-mark
    revises them together. Every mark is kept in ``FirstErrorMarkRevision``.
    """

    assignment = models.ForeignKey(
        Assignment, on_delete=models.CASCADE, related_name="first_error_marks"
    )
    trace = models.ForeignKey("annotations.Trace", on_delete=models.CASCADE, related_name="+")
    # The marked step: its 0-based index in the trace (Step.index) and its assignment item.
    # Both NULL: "no error" (every step correct).
    first_error_index = models.PositiveIntegerField(null=True, blank=True)
    first_error_item = models.ForeignKey(
        AssignmentItem, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    n_steps = models.PositiveIntegerField()  # steps of the trace shown when it was marked
    # "Can't assess this trace": no mark, every step labelled abstain (as a judge's tie is).
    cannot_assess = models.BooleanField(default=False)
    error_category = models.CharField(max_length=120, blank=True)
    comment = models.TextField(blank=True)
    elapsed_ms = models.PositiveBigIntegerField(default=0)
    revision = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["assignment", "trace"], name="firsterrormark_unique_trace"
            ),
        ]

    def __str__(self) -> str:
        if self.cannot_assess:
            return f"{self.assignment_id}/{self.trace_id}: cannot assess"
        where = "none" if self.first_error_index is None else self.first_error_index
        return f"{self.assignment_id}/{self.trace_id}: first error {where}"

    @property
    def no_error(self) -> bool:
        return self.first_error_index is None and not self.cannot_assess


class FirstErrorMarkRevision(models.Model):
    mark = models.ForeignKey(FirstErrorMark, on_delete=models.CASCADE, related_name="revisions")
    revision = models.PositiveIntegerField()
    first_error_index = models.PositiveIntegerField(null=True, blank=True)
    cannot_assess = models.BooleanField(default=False)
    error_category = models.CharField(max_length=120, blank=True)
    comment = models.TextField(blank=True)
    elapsed_ms = models.PositiveBigIntegerField(default=0)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    changed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["mark", "revision"]
        constraints = [
            models.UniqueConstraint(fields=["mark", "revision"], name="firsterrormark_rev_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.mark_id} r{self.revision}"


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
