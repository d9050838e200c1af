"""Participant studies: a study per audit (consent, instructions, practice, attention checks,
questionnaire), enrolment links, the participants they enrol, and one-time sign-in links.

Double submits and two tabs are the database's problem first: one participant per (link,
platform id), one enrolment slot per (link, index), one answer per (participant, study item).
"""

from django.conf import settings
from django.db import models

from annotations.models import Assignment, Audit, Batch


class Study(models.Model):
    """What a participant goes through around the audit's items."""

    audit = models.OneToOneField(Audit, on_delete=models.CASCADE, related_name="study")
    consent_text = models.TextField(help_text="Markdown, shown before anything else.")
    instructions = models.TextField(blank=True, help_text="Markdown, shown after consent.")
    # [{"key", "text", "kind": "text" | "choice" | "scale", "choices"?, "min"?, "max"?,
    #   "required"?}] — docs/studies.md
    questionnaire = models.JSONField(default=list, blank=True)
    # More failed attention checks than this flags the participant as excluded.
    max_attention_failures = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "studies"

    def __str__(self) -> str:
        return f"study of {self.audit.slug}"


class StudyItem(models.Model):
    """A practice item (with feedback, not counted) or an attention check (known answer, at a
    set position of the participant's sequence). Neither is an assignment item: their answers
    never reach the ratings the report reads."""

    class Kind(models.TextChoices):
        PRACTICE = "practice", "Practice"
        ATTENTION = "attention", "Attention check"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="items")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    # Practice: the order shown. Attention: the 1-based place in the participant's items.
    position = models.PositiveIntegerField()
    text = models.TextField(help_text="What is shown in place of a trace.")
    question = models.TextField(blank=True)
    # The expected Likert answers, item key → value (keys the audit's Likert items).
    answers = models.JSONField(default=dict)
    feedback = models.TextField(blank=True, help_text="Practice: shown after answering.")

    class Meta:
        ordering = ["study", "kind", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["study", "kind", "position"], name="studyitem_unique_position"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.position}"


class StudyLink(models.Model):
    """An enrolment link: who may enrol, when, how many, from which batch, and how they
    return to the recruitment platform."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="links")
    # Random, the only handle in the URL; a tampered one finds nothing.
    token = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=120, blank=True)
    batch = models.ForeignKey(Batch, on_delete=models.PROTECT, related_name="study_links")
    # None: every item of the batch; else each participant's share, dealt per trace type.
    items_per_participant = models.PositiveIntegerField(null=True, blank=True)
    capacity = models.PositiveIntegerField()
    opens_at = models.DateTimeField(null=True, blank=True)
    closes_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True, help_text="Closed by an admin.")
    platform_param = models.CharField(max_length=40, default="PROLIFIC_PID")
    completion_code = models.CharField(max_length=64, blank=True)
    completion_url = models.URLField(max_length=500, blank=True)
    # Enrolment order: the next participant's index (counterbalancing row), under a row lock.
    enrolled_count = models.PositiveIntegerField(default=0)
    # Counts only: a visitor who declines leaves nothing else behind.
    opened_count = models.PositiveIntegerField(default=0)
    declined_count = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name or f"link {self.pk}"


class Participant(models.Model):
    """Someone who consented through a link: their account, assignment and progress."""

    link = models.ForeignKey(StudyLink, on_delete=models.PROTECT, related_name="participants")
    platform_id = models.CharField(max_length=64)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="participation"
    )
    assignment = models.OneToOneField(
        Assignment, on_delete=models.PROTECT, related_name="participation"
    )
    enrolment_index = models.PositiveIntegerField()  # 0-based, in consent order
    n_items = models.PositiveIntegerField()  # the assignment's items (attention checks apart)
    consented_at = models.DateTimeField()
    instructions_seen_at = models.DateTimeField(null=True, blank=True)
    items_started_at = models.DateTimeField(null=True, blank=True)
    questionnaire_answers = models.JSONField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    attention_failures = models.PositiveSmallIntegerField(default=0)
    # Flagged, never deleted: the data stay, the report leaves them out by the plan's rule.
    excluded_at = models.DateTimeField(null=True, blank=True)
    excluded_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["link", "enrolment_index"]
        constraints = [
            models.UniqueConstraint(
                fields=["link", "platform_id"], name="participant_unique_platform_id"
            ),
            models.UniqueConstraint(
                fields=["link", "enrolment_index"], name="participant_unique_index"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.link_id}:{self.platform_id}"


class StudyResponse(models.Model):
    """A participant's answer to a practice item or an attention check (one each)."""

    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="responses")
    item = models.ForeignKey(StudyItem, on_delete=models.CASCADE, related_name="responses")
    answers = models.JSONField(default=dict)
    passed = models.BooleanField()
    elapsed_ms = models.PositiveBigIntegerField(default=0)
    answered_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["participant", "item"], name="response_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.participant_id}:{self.item_id}"


class SignInLink(models.Model):
    """A one-time sign-in link: valid until ``expires_at``, used once to set a password.
    Only the SHA-256 of the token is stored; the token itself is in the CSV handed out."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sign_in_links"
    )
    token_digest = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"sign-in link of {self.user_id}"
