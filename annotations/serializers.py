from rest_framework import serializers

from annotations.models import Audit, ImportJob, LabellingMode
from annotations.services.import_formats import FILE_FORMATS
from annotations.services.segmenters import SEGMENTER_NAMES


class ImportCreateInputSerializer(serializers.Serializer):
    file = serializers.FileField()
    segmenter = serializers.ListField(
        child=serializers.ChoiceField(choices=SEGMENTER_NAMES), required=False, default=list
    )
    skip_existing = serializers.BooleanField(required=False, default=False)
    format = serializers.ChoiceField(
        choices=["auto", *FILE_FORMATS],
        required=False,
        default="auto",
        help_text="How to read the file: auto (from its name and first record), jsonl, csv, "
        "inspect (Inspect AI eval log), lm-eval (--log_samples JSONL), chat (messages JSONL).",
    )
    condition = serializers.CharField(
        required=False,
        default="",
        allow_blank=True,
        max_length=120,
        help_text="The arm, for lm-eval samples (which name no model); replaces the model's "
        "name for inspect and chat files.",
    )


class AuditOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Audit
        fields = (
            "slug",
            "name",
            "kind",
            "labelling_mode",
            "context_mode",
            "style_normalisation",
            "error_categories",
            "created_at",
            "unblinded_at",
        )


# --- labelling (clinicians): built from the blinded dataclasses only, explicit fields ---------
def blinded_item_output(item) -> dict:
    """The JSON of a ``BlindedItem``: every key listed here, nothing taken wholesale.

    A plain function rather than a DRF serializer because this is the label loop's hot path:
    instantiating the nested serializer (field deep copies) cost ~1 ms a request, more than
    the database work (measured with bench/label_loop_bench.py).
    """
    label, rating = item.label, item.rating
    return {
        "assignment": item.assignment_public_id,
        "position": item.position,
        "total": item.total,
        "done": item.done,
        "kind": item.kind,
        "question": item.question,
        "options": [{"key": key, "text": text} for key, text in item.options],
        "context": list(item.context),
        "context_cut": item.context_cut,
        "step_number": item.step_number,
        "step": item.step,
        "trace": list(item.trace),
        "final_answer": item.final_answer,
        "error_categories": list(item.error_categories),
        "guidelines": item.guidelines,
        "probe_options": list(item.probe_options),
        "likert_items": [
            {
                "key": i.key,
                "label": i.label,
                "min": i.min,
                "max": i.max,
                "min_label": i.min_label,
                "max_label": i.max_label,
            }
            for i in item.likert_items
        ],
        "locked": item.locked,
        "label": None
        if label is None
        else {
            "verdict": label.verdict,
            "error_category": label.error_category,
            "comment": label.comment,
            "probe_guess": label.probe_guess,
            "elapsed_ms": label.elapsed_ms,
            "revision": label.revision,
            "flagged": label.flagged,
            "flag_note": label.flag_note,
        },
        "skipped": item.skipped,
        "n_skipped": item.n_skipped,
        "rating": None
        if rating is None
        else {
            "answers": dict(rating.answers),
            "comment": rating.comment,
            "elapsed_ms": rating.elapsed_ms,
            "revision": rating.revision,
        },
    }


class AssignmentSummaryOutputSerializer(serializers.Serializer):
    id = serializers.CharField(source="public_id")
    title = serializers.CharField()
    kind = serializers.CharField()
    mode = serializers.CharField(help_text="steps, trace or first_error")
    total = serializers.IntegerField()
    done = serializers.IntegerField()
    due_date = serializers.DateField(allow_null=True)
    submitted = serializers.BooleanField()
    first_open_position = serializers.IntegerField(allow_null=True)
    probe_pending = serializers.BooleanField()


class OverviewEntryOutputSerializer(serializers.Serializer):
    position = serializers.IntegerField()
    done = serializers.BooleanField()
    verdict = serializers.CharField()
    skipped = serializers.BooleanField(help_text="Skipped and not labelled.")
    flagged = serializers.BooleanField(help_text="The label is flagged for review.")


class LabelInputSerializer(serializers.Serializer):
    verdict = serializers.CharField(max_length=16)
    error_category = serializers.CharField(
        max_length=120, required=False, allow_blank=True, default=""
    )
    comment = serializers.CharField(
        max_length=5000, required=False, allow_blank=True, default="", trim_whitespace=False
    )
    probe_guess = serializers.CharField(
        max_length=120, required=False, allow_blank=True, default=""
    )
    elapsed_ms = serializers.IntegerField(
        min_value=0, max_value=86_400_000, required=False, default=0
    )
    flagged = serializers.BooleanField(required=False, default=False)
    flag_note = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class RatingInputSerializer(serializers.Serializer):
    answers = serializers.DictField(child=serializers.IntegerField())
    comment = serializers.CharField(max_length=5000, required=False, allow_blank=True, default="")
    elapsed_ms = serializers.IntegerField(
        min_value=0, max_value=86_400_000, required=False, default=0
    )


class FirstErrorInputSerializer(serializers.Serializer):
    first_error = serializers.IntegerField(
        min_value=1,
        allow_null=True,
        help_text="The first wrong step, 1-based in the trace's order on the page; null: no "
        "error (or, with cannot_assess, no mark).",
    )
    cannot_assess = serializers.BooleanField(
        required=False,
        default=False,
        help_text="The expert cannot assess this trace: every step is labelled abstain "
        "(first_error must be null).",
    )
    error_category = serializers.CharField(
        max_length=120, required=False, allow_blank=True, default=""
    )
    comment = serializers.CharField(max_length=5000, required=False, allow_blank=True, default="")
    elapsed_ms = serializers.IntegerField(
        min_value=0, max_value=86_400_000, required=False, default=0
    )


def blinded_label_output(label) -> dict | None:
    if label is None:
        return None
    return {
        "verdict": label.verdict,
        "error_category": label.error_category,
        "comment": label.comment,
        "elapsed_ms": label.elapsed_ms,
        "revision": label.revision,
        "flagged": label.flagged,
        "flag_note": label.flag_note,
    }


def blinded_trace_output(trace) -> dict:
    """The JSON of a ``BlindedTrace``: every key listed here, nothing taken wholesale."""
    mark = trace.mark
    return {
        "assignment": trace.assignment_public_id,
        "mode": trace.mode,
        "number": trace.number,
        "n_traces": trace.n_traces,
        "traces_done": trace.traces_done,
        "question": trace.question,
        "options": [{"key": key, "text": text} for key, text in trace.options],
        "steps": [
            {
                "position": step.position,
                "text": step.text,
                "step_number": step.step_number,
                "label": blinded_label_output(step.label),
            }
            for step in trace.steps
        ],
        "final_answer": trace.final_answer,
        "error_categories": list(trace.error_categories),
        "guidelines": trace.guidelines,
        "locked": trace.locked,
        "mark": None
        if mark is None
        else {
            "first_error": mark.first_error,
            "error_category": mark.error_category,
            "comment": mark.comment,
            "elapsed_ms": mark.elapsed_ms,
            "revision": mark.revision,
            "cannot_assess": mark.cannot_assess,
        },
    }


def saved_output(*, position: int, revision: int, elapsed_ms: int, done: int | None = None) -> dict:
    """What a save answers: the item's new state (no ids). Hot path: a plain dict."""
    data = {"position": position, "revision": revision, "elapsed_ms": elapsed_ms}
    if done is not None:
        data["done"] = done
    return data


# --- batches (admins) --------------------------------------------------------------------------
class BatchPlanInputSerializer(serializers.Serializer):
    size = serializers.IntegerField(min_value=1, max_value=1_000_000)
    segmentation = serializers.CharField(max_length=32)
    seed = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
    stratify_by = serializers.ListField(
        child=serializers.CharField(max_length=32), required=False, default=list
    )
    allocation = serializers.ChoiceField(
        choices=["equal", "proportional", "balanced", "uncertainty"],
        default="equal",
        help_text="uncertainty (active design only): labels per stratum ∝ its size × the "
        "judge's mean uncertainty in it.",
    )
    include_batched = serializers.BooleanField(required=False, default=False)
    gold = serializers.IntegerField(min_value=0, required=False, default=0)
    design = serializers.ChoiceField(
        choices=["stratified", "active", "stratified-ppi"],
        default="stratified",
        help_text="active: within each stratum, probabilities follow the judge's uncertainty; "
        "stratified-ppi: strata condition × judge verdict, Neyman allocation.",
    )
    uncertainty = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        default="",
        help_text="The active design's source, e.g. judge-runs:12 or judge-runs:12,13.",
    )
    floor = serializers.FloatField(min_value=0, max_value=1, required=False, default=0.2)
    mode = serializers.ChoiceField(
        choices=LabellingMode.choices,
        required=False,
        allow_blank=True,
        default="",
        help_text="The labelling mode of this batch; empty: the audit's labelling_mode. Trace "
        "modes draw whole traces (every step of each becomes an item).",
    )


class BatchCreateInputSerializer(BatchPlanInputSerializer):
    name = serializers.CharField(max_length=120)
    overlap = serializers.IntegerField(min_value=1, max_value=50, default=1)
    hidden_repeat_share = serializers.FloatField(
        min_value=0, max_value=0.5, required=False, allow_null=True, default=None
    )
    waves = serializers.IntegerField(
        min_value=1,
        max_value=20,
        required=False,
        default=1,
        help_text="Release the sample in this many waves (wave 1 at assignment).",
    )


class StratumOutputSerializer(serializers.Serializer):
    key = serializers.CharField()
    condition = serializers.CharField()
    population = serializers.IntegerField()
    sample = serializers.IntegerField()
    inclusion_probability = serializers.FloatField()


class BatchPlanOutputSerializer(serializers.Serializer):
    unit = serializers.CharField()
    mode = serializers.CharField()
    segmentation = serializers.CharField()
    seed = serializers.CharField()
    allocation = serializers.CharField()
    stratify_by = serializers.ListField(child=serializers.CharField())
    population = serializers.IntegerField()
    excluded = serializers.IntegerField()
    sample_size = serializers.IntegerField()
    sampling = serializers.DictField(help_text="The design: stratified, or active and its source.")
    gold = serializers.IntegerField()
    gold_available = serializers.IntegerField()
    strata = StratumOutputSerializer(many=True)


class BatchOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    audit = serializers.CharField(source="audit.slug")
    name = serializers.CharField()
    segmentation = serializers.CharField()
    mode = serializers.CharField()
    seed = serializers.CharField()
    overlap = serializers.IntegerField()
    waves = serializers.IntegerField()
    waves_released = serializers.IntegerField()
    design = serializers.JSONField()
    created_at = serializers.DateTimeField()


class PlannerInputSerializer(serializers.Serializer):
    judge = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        default="",
        help_text="e.g. judge-runs:12; default: the batch design's judge",
    )
    half_width = serializers.FloatField(min_value=0.001, max_value=0.999, default=0.05)
    alpha = serializers.FloatField(min_value=0.0001, max_value=0.4999, default=0.05)


class PlannerOutputSerializer(serializers.Serializer):
    judge = serializers.CharField()
    source = serializers.CharField()
    half_width = serializers.FloatField()
    alpha = serializers.FloatField()
    pair = serializers.ListField(child=serializers.CharField())
    judge_rates = serializers.DictField(child=serializers.FloatField())
    pilot_labels = serializers.DictField(child=serializers.IntegerField())
    steps_per_trace = serializers.FloatField()
    design_effect = serializers.FloatField()
    icc = serializers.FloatField()
    n_per_arm = serializers.DictField(child=serializers.IntegerField())
    more_per_arm = serializers.DictField(child=serializers.IntegerField())
    relative_to_expert = serializers.DictField(child=serializers.FloatField())
    suggestion = serializers.CharField()
    suggestion_options = serializers.CharField()
    rule = serializers.CharField()
    notes = serializers.ListField(child=serializers.CharField())


class WaveReleaseOutputSerializer(serializers.Serializer):
    wave = serializers.IntegerField()
    waves = serializers.IntegerField()
    items_added = serializers.DictField(child=serializers.IntegerField())
    reopened = serializers.ListField(child=serializers.CharField())


class BatchAssignInputSerializer(serializers.Serializer):
    annotators = serializers.ListField(child=serializers.CharField(max_length=150), min_length=1)
    due_date = serializers.DateField(required=False, allow_null=True, default=None)
    # Assign although the leak gate is above the audit's threshold (logged on the batch).
    confirm_leak = serializers.BooleanField(required=False, default=False)


class LeakFeatureOutputSerializer(serializers.Serializer):
    ngram = serializers.CharField()
    count = serializers.IntegerField()
    other = serializers.IntegerField()


class LeakCheckOutputSerializer(serializers.Serializer):
    n_items = serializers.IntegerField()
    auc = serializers.FloatField(allow_null=True)
    ci_low = serializers.FloatField(allow_null=True)
    ci_high = serializers.FloatField(allow_null=True)
    threshold = serializers.FloatField()
    above = serializers.BooleanField()
    top_features = serializers.DictField(child=LeakFeatureOutputSerializer(many=True))


class ReassignInputSerializer(serializers.Serializer):
    annotator = serializers.CharField(max_length=150)
    due_date = serializers.DateField(required=False, allow_null=True, default=None)


class AssignmentProgressOutputSerializer(serializers.Serializer):
    id = serializers.CharField(source="public_id")
    batch = serializers.CharField()
    annotator = serializers.CharField()
    total = serializers.IntegerField()
    done = serializers.IntegerField()
    abstained = serializers.IntegerField()
    abstention_share = serializers.FloatField(allow_null=True)
    elapsed_ms = serializers.IntegerField()
    due_date = serializers.DateField(allow_null=True)
    submitted_at = serializers.DateTimeField(allow_null=True)


# --- the answers built as plain dicts, named for the OpenAPI schema (docs/api.md) ---------------
# The hot paths stay dicts; these serializers describe them exactly (the schemathesis test checks
# every answer against the schema), and nothing serializes through them.
class ImportJobOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=ImportJob.Status.choices)
    filename = serializers.CharField()
    total_records = serializers.IntegerField()
    done_records = serializers.IntegerField()
    fraction = serializers.FloatField()
    n_traces = serializers.IntegerField()
    n_steps = serializers.IntegerField()
    n_skipped = serializers.IntegerField()
    n_samples = serializers.IntegerField(help_text="Answer-only samples written (never steps).")
    segmenters = serializers.ListField(child=serializers.CharField())
    message = serializers.CharField(allow_blank=True)
    problems = serializers.ListField(
        child=serializers.DictField(), help_text="Each problem with its line and field."
    )
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


class OptionOutputSerializer(serializers.Serializer):
    key = serializers.CharField(allow_blank=True)
    text = serializers.CharField(allow_blank=True)


class LikertItemOutputSerializer(serializers.Serializer):
    key = serializers.CharField()
    label = serializers.CharField(allow_blank=True)
    min = serializers.IntegerField()
    max = serializers.IntegerField()
    min_label = serializers.CharField(allow_blank=True)
    max_label = serializers.CharField(allow_blank=True)


class OwnLabelOutputSerializer(serializers.Serializer):
    verdict = serializers.CharField()
    error_category = serializers.CharField(allow_blank=True)
    comment = serializers.CharField(allow_blank=True)
    probe_guess = serializers.CharField(allow_blank=True)
    elapsed_ms = serializers.IntegerField()
    revision = serializers.IntegerField()
    flagged = serializers.BooleanField()
    flag_note = serializers.CharField(allow_blank=True)


class OwnRatingOutputSerializer(serializers.Serializer):
    answers = serializers.DictField(child=serializers.IntegerField())
    comment = serializers.CharField(allow_blank=True)
    elapsed_ms = serializers.IntegerField()
    revision = serializers.IntegerField()


class BlindedItemOutputSerializer(serializers.Serializer):
    """:func:`blinded_item_output`: one item of a clinician's assignment, blinded."""

    assignment = serializers.CharField()
    position = serializers.IntegerField()
    total = serializers.IntegerField()
    done = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=["step", "trace"])
    question = serializers.CharField(allow_blank=True)
    options = OptionOutputSerializer(many=True)
    context = serializers.ListField(
        child=serializers.CharField(allow_blank=True),
        help_text="The last K preceding steps (the audit's context window).",
    )
    context_cut = serializers.BooleanField(help_text="Earlier preceding steps were left out.")
    step_number = serializers.IntegerField(
        allow_null=True, help_text="Position in its trace; null unless the audit shows it."
    )
    step = serializers.CharField(allow_blank=True)
    trace = serializers.ListField(child=serializers.CharField(allow_blank=True))
    final_answer = serializers.CharField(allow_blank=True)
    error_categories = serializers.ListField(child=serializers.CharField())
    guidelines = serializers.CharField(allow_blank=True)
    probe_options = serializers.ListField(child=serializers.CharField())
    likert_items = LikertItemOutputSerializer(many=True)
    locked = serializers.BooleanField()
    label = OwnLabelOutputSerializer(allow_null=True)
    rating = OwnRatingOutputSerializer(allow_null=True)
    skipped = serializers.BooleanField(help_text="This item was skipped and is not labelled.")
    n_skipped = serializers.IntegerField(help_text="Items skipped and not labelled.")


class SavedOutputSerializer(serializers.Serializer):
    """:func:`saved_output`; with ``?next=`` also ``next``, the item to show next."""

    position = serializers.IntegerField()
    revision = serializers.IntegerField()
    elapsed_ms = serializers.IntegerField()
    done = serializers.IntegerField(
        required=False, help_text="Items done after this save (without ?next=)."
    )
    next = BlindedItemOutputSerializer(
        required=False, allow_null=True, help_text="Only with ?next=; null when all are done."
    )


class AssignmentDetailOutputSerializer(AssignmentSummaryOutputSerializer):
    labelled = serializers.IntegerField()
    skipped = serializers.IntegerField(help_text="Items skipped and not labelled.")
    flagged = serializers.IntegerField(help_text="Labels flagged for review.")
    items = OverviewEntryOutputSerializer(many=True)


class SkipOutputSerializer(serializers.Serializer):
    position = serializers.IntegerField()
    skipped = serializers.BooleanField(help_text="False when the item already has a label.")
    next = BlindedItemOutputSerializer(
        required=False, allow_null=True, help_text="Only with ?next=; null when all are done."
    )


class ReopenInputSerializer(serializers.Serializer):
    note = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


class AssignmentEventOutputSerializer(serializers.Serializer):
    kind = serializers.CharField()
    by = serializers.CharField(source="by.username")
    at = serializers.DateTimeField()
    submitted_at = serializers.DateTimeField(allow_null=True)
    note = serializers.CharField(allow_blank=True)


class AuditProgressOutputSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    done = serializers.IntegerField()
    abstention_share = serializers.FloatField(allow_null=True)
    elapsed_ms = serializers.IntegerField()
    assignments = AssignmentProgressOutputSerializer(many=True)


# --- the end-of-assignment blinding question ----------------------------------------------
class ProbeItemOutputSerializer(serializers.Serializer):
    position = serializers.IntegerField()
    text = serializers.CharField(allow_blank=True)
    guess = serializers.CharField(allow_blank=True)


class EndProbeOutputSerializer(serializers.Serializer):
    """:class:`annotations.services.probe.EndProbe`: the question asked once per assignment."""

    assignment = serializers.CharField(source="assignment_public_id")
    options = serializers.ListField(child=serializers.CharField())
    items = ProbeItemOutputSerializer(many=True)
    available = serializers.BooleanField(
        help_text="False until every item of the assignment is done."
    )
    answered = serializers.BooleanField()


class ProbeAnswerInputSerializer(serializers.Serializer):
    position = serializers.IntegerField(min_value=1)
    guess = serializers.CharField(max_length=120)


class EndProbeInputSerializer(serializers.Serializer):
    answers = ProbeAnswerInputSerializer(many=True, allow_empty=False, max_length=50)
