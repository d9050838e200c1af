from django.db import models

from .audits import Audit, Condition


class Question(models.Model):
    audit = models.ForeignKey(Audit, on_delete=models.CASCADE, related_name="questions")
    external_id = models.CharField(max_length=200)
    stem = models.TextField()
    options = models.JSONField(default=dict, blank=True)
    gold_answer = models.CharField(max_length=200, blank=True)
    dataset = models.CharField(max_length=120, blank=True)
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["audit", "external_id"], name="question_unique_id"),
        ]

    def __str__(self) -> str:
        return self.external_id


class Trace(models.Model):
    """One model output for a question under a condition."""

    # Indexed through the (audit, …) constraints below; a separate index only slows imports.
    audit = models.ForeignKey(
        Audit, on_delete=models.CASCADE, related_name="traces", db_index=False
    )
    question = models.ForeignKey(Question, on_delete=models.CASCADE, related_name="traces")
    condition = models.ForeignKey(Condition, on_delete=models.PROTECT, related_name="traces")
    external_id = models.CharField(max_length=200)
    sample_index = models.PositiveIntegerField(default=0)
    text = models.TextField()
    final_answer = models.CharField(max_length=200, blank=True)
    # What annotators and style-blind judges are shown, blinded at import like step text
    # (norm-v1 and raw audits: the final answer as imported).
    blinded_final_answer = models.TextField(blank=True, default="")
    # Stored at import (final answer vs gold) because batches stratify on it.
    answer_correct = models.BooleanField(null=True, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    trace_type = models.CharField(max_length=80, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    import_job = models.ForeignKey(
        "annotations.ImportJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["audit", "external_id"], name="trace_unique_id"),
        ]
        indexes = [models.Index(fields=["audit", "condition"], name="trace_audit_condition")]

    def __str__(self) -> str:
        return self.external_id


class Step(models.Model):
    """A segment of a trace under one named segmentation."""

    class ReferenceVerdict(models.TextChoices):
        CORRECT = "correct", "Correct"
        ERROR = "error", "Error"

    # Denormalised from the trace: every batch and report query filters on it.
    # Denormalised from the trace, which the database does hold to its audit. No database
    # constraint here: every step row would pay a deferred foreign-key check at commit (measured
    # −40% import throughput) for a fact the trace already guarantees. Django still cascades.
    # Neither column needs an index of its own: each leads an index or constraint below.
    audit = models.ForeignKey(
        Audit,
        on_delete=models.CASCADE,
        related_name="steps",
        db_index=False,
        db_constraint=False,
    )
    # No database constraint either: its check is deferred to the commit, a trigger per step
    # (measured 0.8 s of the server's time per 200,000 steps, after the COPY: 4 s of the import
    # bench's million steps). The import writes a step only with the trace it reserved the key
    # for, in the same transaction; Django still cascades a deleted trace to its steps.
    trace = models.ForeignKey(
        Trace,
        on_delete=models.CASCADE,
        related_name="steps",
        db_index=False,
        db_constraint=False,
    )
    segmentation = models.CharField(max_length=32)
    index = models.PositiveIntegerField()
    text = models.TextField()
    blinded_text = models.TextField()
    # Which normaliser produced blinded_text ("raw" when normalisation is off).
    blinding_version = models.CharField(max_length=16)
    char_start = models.IntegerField(null=True, blank=True)
    char_end = models.IntegerField(null=True, blank=True)
    # Random, from the audit's seed: no sequence, no hash of anything the clinician could know.
    # Unique through a constraint, not unique=True, which would add a LIKE index nobody uses.
    public_id = models.CharField(max_length=24)
    reference_verdict = models.CharField(  # noqa: DJ001 (NULL: no reference, not "")
        max_length=8, choices=ReferenceVerdict.choices, null=True, blank=True
    )
    kind = models.CharField(max_length=40, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["trace", "segmentation", "index"], name="step_unique_position"
            ),
            models.UniqueConstraint(fields=["public_id"], name="step_unique_public_id"),
        ]
        indexes = [models.Index(fields=["audit", "segmentation"], name="step_audit_segmentation")]

    def __str__(self) -> str:
        return self.public_id


class AnswerSample(models.Model):
    """One sampled answer that counts in the answer metrics and is never audited.

    Self-consistency over k samples needs every sample's answer, but only one trace per question
    and arm is audited step by step. The other samples live here, apart from Trace, so nothing
    that works on steps (batches, judge runs, step exports, the blinding check) can meet them.
    A sample is identified by (audit, question, condition, sample_index); an audited trace of
    the same question and condition holds a sample index of its own (checked at import).
    Answer correctness is not stored: nothing stratifies on it, and the report derives it from
    the answer and the gold answer as for every answer row.
    """

    # The identity is the primary key: one index, no sequence. A surrogate id with a unique
    # constraint beside it cost twice the COPY time (measured 1.5 s against 0.8 s for 192,000
    # rows). No database foreign-key constraints: each fires a trigger per inserted row; the
    # import creates the question and condition in the same transaction, and Django still
    # cascades and protects.
    pk = models.CompositePrimaryKey("audit_id", "question_id", "condition_id", "sample_index")
    audit = models.ForeignKey(
        Audit,
        on_delete=models.CASCADE,
        related_name="answer_samples",
        db_index=False,  # leads the primary key
        db_constraint=False,
    )
    question = models.ForeignKey(
        Question,
        on_delete=models.CASCADE,
        related_name="answer_samples",
        db_index=False,
        db_constraint=False,
    )
    condition = models.ForeignKey(
        Condition,
        on_delete=models.PROTECT,
        related_name="answer_samples",
        db_index=False,
        db_constraint=False,
    )
    sample_index = models.PositiveIntegerField()
    final_answer = models.CharField(max_length=200, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    # The sample's reasoning, when given: kept for reading, never segmented.
    text = models.TextField(blank=True, default="")
    trace_type = models.CharField(max_length=80, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    import_job = models.ForeignKey(
        "annotations.ImportJob",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )

    def __str__(self) -> str:
        return f"sample {self.sample_index} of {self.question_id}/{self.condition_id}"
