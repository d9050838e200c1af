import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from annotations.services.normalise import NORMALISER_V1, NORMALISER_V2, RuleError, rules_compile
from auditapp.agreement.hedging import hedging_terms_check

# Safe defaults for the side channels. K = 2 preceding steps: the number shown is
# min(index, 2) plus whether earlier ones were cut, which tells a first and a second step from
# the rest and nothing about the trace's length (measured in docs/formats.md).
DEFAULT_CONTEXT_WINDOW = 2
DEFAULT_ANNOTATOR_TITLE = "Step review"
DEFAULT_REPEAT_MIN_GAP = 10
# The probe: once per assignment, after its last item, on this many of its steps (or, in
# 'every' mode, on every Nth item).
DEFAULT_PROBE_EVERY = 20
DEFAULT_PROBE_END_ITEMS = 5
PROBE_LABEL_MAX = 60


def new_blinding_seed() -> str:
    return secrets.token_hex(32)


class NormaliserVersion(models.TextChoices):
    V1 = NORMALISER_V1, "norm-v1"
    V2 = NORMALISER_V2, "norm-v2"


def validate_normaliser_rules(value: object) -> None:
    """Model-field validator (admin, forms): the rules compile and are idempotent."""
    try:
        rules_compile(value)  # type: ignore[arg-type]
    except RuleError as exc:
        raise ValidationError(str(exc), code="invalid_rules") from None


def validate_hedging_terms(value: object) -> None:
    """Model-field validator: words and phrases, never patterns (auditapp.agreement.hedging)."""
    try:
        hedging_terms_check(value)
    except ValueError as exc:
        raise ValidationError(str(exc), code="hedging_terms") from None


def validate_probe_arms(value: object) -> None:
    """Model-field validator: a list of ``{"label", "condition"}`` with distinct labels.

    Whether a label is neutral (names no condition) needs the audit's conditions: see
    ``Audit.clean`` and ``annotations.services.probe.probe_arms_check``.
    """
    if not isinstance(value, list):
        raise ValidationError("A list of {label, condition} objects.", code="probe_arms")
    seen: set[str] = set()
    for n, arm in enumerate(value):
        where = f"probe_arms[{n}]"
        if not isinstance(arm, dict) or set(arm) != {"label", "condition"}:
            raise ValidationError(
                f"{where}: an object with exactly 'label' and 'condition'.", code="probe_arms"
            )
        label, condition = arm["label"], arm["condition"]
        if not isinstance(label, str) or not label.strip() or len(label) > PROBE_LABEL_MAX:
            raise ValidationError(
                f"{where}.label: 1 to {PROBE_LABEL_MAX} characters.", code="probe_arms"
            )
        if not isinstance(condition, str) or not condition.strip():
            raise ValidationError(f"{where}.condition: a condition's name.", code="probe_arms")
        key = label.strip().casefold()
        if key in seen:
            raise ValidationError(f"{where}.label: {label!r} is used twice.", code="probe_arms")
        seen.add(key)


class ProbeMode(models.TextChoices):
    END = "end", "Once, after the assignment's last item"
    EVERY = "every", "On every Nth item"
    OFF = "off", "Off"


class LabellingMode(models.TextChoices):
    """How an assignment's items are shown (docs/labelling.md, "Modes")."""

    # One step at a time, in the annotator's own shuffled order: the blinded default.
    STEPS = "steps", "Shuffled steps"
    # One trace at a time, every step labelled in order on one screen.
    TRACE = "trace", "Whole trace, every step"
    # One trace at a time: the expert marks the first wrong step, or "no error".
    FIRST_ERROR = "first_error", "Whole trace, first wrong step"


TRACE_MODES = (LabellingMode.TRACE, LabellingMode.FIRST_ERROR)


class Verdict(models.TextChoices):
    CORRECT = "correct", "Correct"
    ERROR = "error", "Error"
    ABSTAIN = "abstain", "Abstain"


class Audit(models.Model):
    """A study: what is audited, how steps are shown, and the secret all blinding flows from."""

    class Kind(models.TextChoices):
        STEP_LABELS = "step_labels", "Step labels"
        TRACE_RATINGS = "trace_ratings", "Trace ratings (Likert)"

    class ContextMode(models.TextChoices):
        STEP_ONLY = "step_only", "Step only"
        PRECEDING = "preceding", "With preceding steps"

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.STEP_LABELS)
    guidelines = models.TextField(blank=True, help_text="Markdown, shown to clinicians.")
    error_categories = models.JSONField(default=list, blank=True)
    context_mode = models.CharField(
        max_length=16, choices=ContextMode.choices, default=ContextMode.PRECEDING
    )
    style_normalisation = models.BooleanField(default=True)
    # Batches take it when built unless they override it; a built batch keeps its own.
    labelling_mode = models.CharField(
        max_length=16,
        choices=LabellingMode.choices,
        default=LabellingMode.STEPS,
        help_text="steps: shuffled single steps (most blind); trace: a whole trace, every "
        "step in order; first_error: a whole trace, the first wrong step. A whole trace "
        "shows its length and style.",
    )
    # Which normaliser blinds this audit's steps (and, from norm-v2 on, final answers). An audit
    # keeps the version it was imported with: existing audits were migrated as norm-v1.
    normaliser_version = models.CharField(
        max_length=16,
        choices=NormaliserVersion.choices,
        default=NormaliserVersion.V2,
        help_text="docs/formats.md, 'Blinded text'.",
    )
    # The audit's own replacement rules, run after the normaliser:
    # [{"pattern": regex, "replacement": str, "example"?: str, "note"?: str}, …]
    normaliser_rules = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_normaliser_rules],
        help_text="Regex → replacement, applied in order after the normaliser; checked on save.",
    )
    show_final_answer = models.BooleanField(default=False)
    # Side channels (docs/formats.md, "What an annotator sees"): a step's position and its
    # trace's length predicted the arm on their own, so both stay hidden unless asked for.
    show_step_numbers = models.BooleanField(
        default=False,
        help_text="Show 'step N' and the number of preceding steps (reveals trace position).",
    )
    context_window = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        default=DEFAULT_CONTEXT_WINDOW,
        help_text="Show at most this many preceding steps ('…' when earlier ones are cut); "
        "empty: all of them (reveals how far into its trace a step is).",
    )
    annotator_title = models.CharField(
        max_length=200,
        default=DEFAULT_ANNOTATOR_TITLE,
        help_text="What annotators see instead of the audit's name (which may state the "
        "hypothesis).",
    )
    repeat_min_gap = models.PositiveSmallIntegerField(
        default=DEFAULT_REPEAT_MIN_GAP,
        help_text="A hidden repeat comes at least this many items after its original, and "
        "identical blinded texts are kept this far apart (where the assignment allows).",
    )
    # The leak gate (annotations/services/leak_gate.py): assigning a batch whose classifier AUC
    # interval lies above this needs a logged confirmation. 0.5 = chance.
    leak_threshold = models.FloatField(
        default=0.6,
        validators=[MinValueValidator(0.5), MaxValueValidator(1.0)],
        help_text="Assigning a batch whose blinding-classifier AUC interval lies wholly above "
        "this needs an explicit, logged confirmation.",
    )
    likert_items = models.JSONField(default=list, blank=True)
    # The report's hedging rate counts these besides the versioned lexicon (docs/report.md).
    hedging_terms = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_hedging_terms],
        help_text="Words or phrases the report's hedging rate counts besides its lexicon "
        "(hedging-v1), e.g. 'not convinced'. Letters, spaces, apostrophes, hyphens.",
    )
    # The blinding probe (annotations/services/probe.py): arms described by neutral labels the
    # admin writes, each mapped explicitly to a condition; the report reads guesses through
    # this mapping, never by matching a label against condition names.
    probe_arms = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_probe_arms],
        help_text='[{"label": "Source 1", "condition": "<condition name>"}, ...]; empty: no '
        "probe. Labels must not name a condition, its code or its description.",
    )
    probe_mode = models.CharField(
        max_length=8,
        choices=ProbeMode.choices,
        default=ProbeMode.END,
        help_text="end: once per assignment, after its last item, on a few of its items; "
        "every: on every Nth item; off: never.",
    )
    probe_every = models.PositiveSmallIntegerField(
        default=DEFAULT_PROBE_EVERY,
        validators=[MinValueValidator(1)],
        help_text="In 'every' mode, the probe is asked on items N, 2N, 3N, ...",
    )
    probe_end_items = models.PositiveSmallIntegerField(
        default=DEFAULT_PROBE_END_ITEMS,
        validators=[MinValueValidator(1), MaxValueValidator(50)],
        help_text="In 'end' mode, how many of the assignment's steps the probe shows again.",
    )
    hidden_repeat_share = models.FloatField(default=0.0)
    # Optional, set by whoever creates the audit: the secret below is then derived from it
    # (annotations/services/randomness.py, audit_secret_from_seed), so the same files and
    # seeds re-run on a fresh database give the same samples, orders and ids.
    seed = models.CharField(
        max_length=200,
        blank=True,
        editable=False,
        help_text="Empty: the secret is random. Set: the secret is derived from it and the "
        "audit's slug (whoever has the seed can reproduce the blinding).",
    )
    # Secret: every random choice (blind codes, public ids, samples, orders) derives from it.
    blinding_seed = models.CharField(max_length=64, default=new_blinding_seed, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    unblinded_at = models.DateTimeField(null=True, blank=True, editable=False)
    unblinded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        editable=False,
    )

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    @property
    def is_blinded(self) -> bool:
        return self.unblinded_at is None

    @property
    def probe_active(self) -> bool:
        return bool(self.probe_arms) and self.probe_mode != ProbeMode.OFF

    def clean(self) -> None:
        super().clean()
        if self.pk and self.probe_arms:
            from annotations.services.probe import probe_arms_check

            try:
                validate_probe_arms(self.probe_arms)
            except ValidationError:
                return  # reported by the field's own validator

            problems = probe_arms_check(self)
            if problems:
                raise ValidationError({"probe_arms": problems})


class Condition(models.Model):
    """An arm of the audit (e.g. ``student-after``), shown by its blind code until unblinding."""

    audit = models.ForeignKey(Audit, on_delete=models.CASCADE, related_name="conditions")
    name = models.CharField(max_length=120)
    blind_code = models.CharField(max_length=16)
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["audit", "blind_code"]
        constraints = [
            models.UniqueConstraint(fields=["audit", "name"], name="condition_unique_name"),
            models.UniqueConstraint(fields=["audit", "blind_code"], name="condition_unique_code"),
        ]

    def __str__(self) -> str:
        return f"{self.audit.slug}:{self.name}"
