"""Judges, their versioned prompts, runs over a scope of steps, and one verdict per (run, step).

Business logic lives in ``judges.services`` (writes) and ``judges.selectors`` (reads); the
models only hold data and the two invariants the database or ``save`` can guard:

* a prompt version that has been used by a run is immutable (``JudgePrompt.save``), and so is
  a judge version that has runs (``Judge.save``): a change makes the next version, and each
  run also keeps a copy of the settings it was made with (``JudgeRun.judge_settings``);
* exactly one verdict per (run, step) (``judgeverdict_unique_run_step``) — the last guard
  behind the idempotent chunk task: a duplicated or redelivered chunk inserts with
  ``ON CONFLICT DO NOTHING`` and loses the race silently.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from auditapp.exceptions import ConflictError


class JudgePrompt(models.Model):
    """One version of a prompt: a system and a user template (``judges.prompts`` syntax)."""

    name = models.CharField(max_length=80)
    version = models.PositiveIntegerField()
    system_template = models.TextField(blank=True)
    user_template = models.TextField()
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Set when the first run uses this version; from then on the templates never change.
    used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="judgeprompt_unique_version")
        ]

    def __str__(self) -> str:
        return f"{self.name}@v{self.version}"

    def save(self, *args, **kwargs) -> None:
        # The service checks first; this catches the admin and any code that bypasses it.
        if self.pk is not None:
            stored = (
                JudgePrompt.objects.filter(pk=self.pk)
                .values("used_at", "system_template", "user_template")
                .first()
            )
            if (
                stored is not None
                and stored["used_at"] is not None
                and (
                    stored["system_template"] != self.system_template
                    or stored["user_template"] != self.user_template
                )
            ):
                raise ConflictError(
                    f"prompt {self} has been used by a run and cannot change; create a new version",
                    code="prompt_immutable",
                )
        super().save(*args, **kwargs)


class LabelMode(models.TextChoices):
    """What a judge is asked: every step on its own, or a whole trace's first wrong step."""

    STEPS = "steps", "Each step on its own"
    # The whole trace in one request; the answer (first wrong step or none) is stored as step
    # verdicts: before it correct, it error, later steps no verdict (docs/judges.md).
    FIRST_ERROR = "first_error", "First wrong step of the whole trace"


def judge_label(name: str, version: int) -> str:
    """How reports and pages name a judge version: ``name``, or ``name@vN`` from version 2."""
    return name if version == 1 else f"{name}@v{version}"


class Judge(models.Model):
    """One version of an OpenAI-compatible endpoint and how to ask it. Never holds an API key.

    ``name`` + ``version`` identify it; a version that has runs never changes (a changed spec
    makes ``version + 1``, see ``judges.services.specs``), so a run always names what made it.
    """

    class Aggregation(models.TextChoices):
        MAJORITY = "majority", "Majority (a tie is abstain)"

    class ContextMode(models.TextChoices):
        AUDIT = "audit", "As the audit shows clinicians"
        STEP_ONLY = "step_only", "Step only"
        PRECEDING = "preceding", "With preceding steps"

    name = models.SlugField(max_length=80)
    version = models.PositiveIntegerField(default=1)
    description = models.TextField(blank=True)
    # A reference judge has no endpoint: its runs copy Step.reference_verdict (no HTTP).
    is_reference = models.BooleanField(default=False)
    base_url = models.URLField(max_length=300, blank=True)
    model = models.CharField(max_length=200, blank=True)
    # The NAME of the environment variable holding the key (e.g. "OPENAI_API_KEY"), never it;
    # only names in settings.STEPAUDIT_JUDGE_KEY_ENVS resolve (judges.clients.egress).
    api_key_env = models.CharField(max_length=100, blank=True)
    temperature = models.FloatField(default=0.0)
    max_tokens = models.PositiveIntegerField(default=512)
    samples_per_step = models.PositiveSmallIntegerField(default=1)
    aggregation = models.CharField(
        max_length=16, choices=Aggregation.choices, default=Aggregation.MAJORITY
    )
    # The judge's total in-flight requests, split evenly over ``parallel_chunks`` lanes.
    max_concurrency = models.PositiveIntegerField(default=8)
    parallel_chunks = models.PositiveSmallIntegerField(default=1)
    rpm_limit = models.PositiveIntegerField(null=True, blank=True)
    tpm_limit = models.PositiveIntegerField(null=True, blank=True)
    timeout_s = models.FloatField(default=60.0)
    max_retries = models.PositiveSmallIntegerField(default=6)
    max_parse_retries = models.PositiveSmallIntegerField(default=2)
    use_json_mode = models.BooleanField(default=True)

    class StructuredOutput(models.TextChoices):
        JSON_SCHEMA = (
            "json_schema",
            "response_format json_schema (OpenAI, vLLM, SGLang, llama-server)",
        )
        JSON_OBJECT_SCHEMA = (
            "json_object_schema",
            "response_format json_object + schema (llama-cpp-python)",
        )
        OLLAMA_FORMAT = "ollama_format", "format: schema (Ollama)"
        GUIDED_JSON = "guided_json", "guided_json (vLLM guided decoding, SGLang)"
        GRAMMAR = "grammar", "grammar: GBNF (llama.cpp)"
        JSON_OBJECT = "json_object", "response_format json_object (JSON asked, shape not enforced)"
        NONE = "none", "none (plain prompting)"

    # How the verdict shape is enforced; ``manage.py judge_check`` says which a server honours.
    structured_output = models.CharField(
        max_length=24, choices=StructuredOutput.choices, default=StructuredOutput.JSON_OBJECT
    )
    # OpenAI's reasoning models refuse max_tokens and want max_completion_tokens.
    max_tokens_field = models.CharField(max_length=24, default="max_tokens")
    # Send a call that looks hung (in flight > 4x the median) once more; at most 1.5% of the
    # requests. Off for a paid API where a duplicated long answer costs more than the time.
    hedge_hung_calls = models.BooleanField(default=True)
    # Ask for token log-probabilities and store the verdict's error probability read from them
    # (``judges.clients.logprobs``), the active design's uncertainty (issue 15).
    logprobs = models.BooleanField(default=False)
    top_logprobs = models.PositiveSmallIntegerField(default=10)
    style_blind = models.BooleanField(
        default=True, help_text="Judge the style-normalised (blinded) text, as clinicians see it."
    )
    show_final_answer = models.BooleanField(default=False)
    context_mode = models.CharField(
        max_length=16, choices=ContextMode.choices, default=ContextMode.AUDIT
    )
    # The default for the judge's runs (a run may say otherwise, see JudgeRun.label_mode).
    label_mode = models.CharField(max_length=16, choices=LabelMode.choices, default=LabelMode.STEPS)
    prompt = models.ForeignKey(
        JudgePrompt, null=True, blank=True, on_delete=models.PROTECT, related_name="judges"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="judge_unique_version")
        ]

    def __str__(self) -> str:
        return self.label

    def save(self, *args, **kwargs) -> None:
        # The service makes a new version instead; this catches the admin and any code that
        # bypasses it (like JudgePrompt.save).
        if self.pk is not None and JudgeRun.objects.filter(judge_id=self.pk).exists():
            stored = Judge.objects.filter(pk=self.pk).values(*self.SETTINGS_FIELDS, "name").first()
            current = {f: getattr(self, f) for f in (*self.SETTINGS_FIELDS, "name")}
            if stored is not None and stored != current:
                changed = sorted(f for f in current if current[f] != stored[f])
                raise ConflictError(
                    f"judge {self.label} has runs and cannot change ({', '.join(changed)}); "
                    "save the spec again to make a new version",
                    code="judge_immutable",
                )
        super().save(*args, **kwargs)

    @property
    def label(self) -> str:
        return judge_label(self.name, self.version)

    # Fields that say what the judge does; none may change once a run used this version.
    SETTINGS_FIELDS = (
        "is_reference",
        "base_url",
        "model",
        "api_key_env",
        "temperature",
        "max_tokens",
        "samples_per_step",
        "aggregation",
        "max_concurrency",
        "parallel_chunks",
        "rpm_limit",
        "tpm_limit",
        "timeout_s",
        "max_retries",
        "max_parse_retries",
        "use_json_mode",
        "structured_output",
        "max_tokens_field",
        "hedge_hung_calls",
        "logprobs",
        "top_logprobs",
        "style_blind",
        "show_final_answer",
        "context_mode",
        "label_mode",
        "prompt_id",
    )

    def settings_record(self) -> dict:
        """The settings as a run keeps them (``JudgeRun.judge_settings``)."""
        record = {name: getattr(self, name) for name in self.SETTINGS_FIELDS if name != "prompt_id"}
        record.update(
            name=self.name,
            version=self.version,
            prompt=str(self.prompt) if self.prompt_id else None,
        )
        return record


class JudgeRun(models.Model):
    """A judge over a scope of steps of one audit."""

    class Scope(models.TextChoices):
        AUDIT = "audit", "All steps of the audit"
        SEGMENTATION = "segmentation", "One segmentation"
        BATCH = "batch", "One batch"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused"
        CANCELLED = "cancelled", "Cancelled"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    class Mode(models.TextChoices):
        WORKERS = "workers", "Celery workers"
        REFERENCE = "reference", "Reference verdicts"
        IMPORTED = "imported", "Imported verdicts"
        BATCH_API = "batch_api", "Provider batch API"

    ACTIVE = (Status.QUEUED, Status.RUNNING)
    ENDED = (Status.CANCELLED, Status.DONE, Status.FAILED)

    judge = models.ForeignKey(Judge, on_delete=models.PROTECT, related_name="runs")
    audit = models.ForeignKey(
        "annotations.Audit", on_delete=models.CASCADE, related_name="judge_runs"
    )
    prompt = models.ForeignKey(
        JudgePrompt, null=True, blank=True, on_delete=models.PROTECT, related_name="runs"
    )
    # The judge's settings when the run was made (``Judge.settings_record``): the record of
    # what produced the verdicts, kept even if the judge row were ever changed by hand.
    judge_settings = models.JSONField(default=dict, blank=True)
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.WORKERS)
    # steps: one request per step; first_error: one per (trace, segmentation), its answer
    # stored as derived step verdicts. ``total`` counts steps and shrinks by the steps after
    # each trace's first error, which get no verdict.
    label_mode = models.CharField(max_length=16, choices=LabelMode.choices, default=LabelMode.STEPS)
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.AUDIT)
    segmentation = models.CharField(max_length=32, blank=True)
    batch_name = models.CharField(max_length=120, blank=True)
    # Steps created after the run (a later import) are not in its scope.
    scope_max_step_id = models.BigIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    message = models.TextField(blank=True)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)  # verdicts stored (invalid included)
    failed = models.PositiveIntegerField(default=0)  # steps that ended without a verdict
    invalid = models.PositiveIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    cached_tokens = models.BigIntegerField(default=0)  # prompt tokens from the prefix cache
    chunks_enqueued = models.PositiveIntegerField(default=0)
    seed = models.CharField(max_length=64, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Last time a chunk stored something: reconcile treats a running run silent for long as
    # stuck (a worker killed mid-chunk) and re-enqueues its missing steps.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Bumped by resume and reconcile: chunk tasks carry the generation that enqueued them and
    # an older one exits (or stops at its next poll), so a re-enqueue never runs twice in full.
    generation = models.PositiveIntegerField(default=0)
    running_since = models.DateTimeField(null=True, blank=True)
    # Seconds spent running (pauses excluded), kept at pause / finish for the steps/s figure.
    active_seconds = models.FloatField(default=0.0)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status"], name="judgerun_status")]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.judge_id} on {self.audit_id}"


class JudgeVerdict(models.Model):
    """The judge's verdict on one step in one run — exactly one, guarded by the database."""

    class Verdict(models.TextChoices):
        CORRECT = "correct", "Correct"
        ERROR = "error", "Error"
        ABSTAIN = "abstain", "Abstain"
        INVALID = "invalid", "Invalid (unparseable answer)"

    run = models.ForeignKey(JudgeRun, on_delete=models.CASCADE, related_name="verdicts")
    step = models.ForeignKey("annotations.Step", on_delete=models.CASCADE, related_name="+")
    verdict = models.CharField(max_length=8, choices=Verdict.choices)
    category = models.CharField(max_length=120, blank=True)
    rationale = models.TextField(blank=True)
    raw_response = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    # Prompt tokens the server served from its prefix cache, where it reports them.
    cached_tokens = models.PositiveIntegerField(default=0)
    prompt_hash = models.CharField(max_length=64, blank=True)
    # What the prompt contained: context mode, context steps, answer shown, style-blind, …
    prompt_record = models.JSONField(default=dict, blank=True)
    # The judge's probability that the step is an error, where it stated one: its token
    # probability of "error" (log-probabilities), else its stated confidence, else the share
    # of its several samples saying "error" (judges.services.store). The report's
    # prediction-powered estimates use it as the prediction (auditapp.agreement.ppi); null
    # for one plain verdict.
    error_probability = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "step"], name="judgeverdict_unique_run_step")
        ]

    def __str__(self) -> str:
        return f"{self.run_id}/{self.step_id}: {self.verdict}"


class JudgeFailure(models.Model):
    """A step of a run that ended without a verdict (a 4xx, or transport retries exhausted).

    Kept apart from verdicts so the verdict table only holds answers; ``run_resume`` deletes
    a run's failures and asks those steps again.
    """

    run = models.ForeignKey(JudgeRun, on_delete=models.CASCADE, related_name="failures")
    step = models.ForeignKey("annotations.Step", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=32)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "step"], name="judgefailure_unique_run_step")
        ]

    def __str__(self) -> str:
        return f"{self.run_id}/{self.step_id}: {self.kind}"
