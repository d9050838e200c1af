"""Explicit fields on every serializer, so a new model field never leaks by accident."""

from rest_framework import serializers

from judges.models import Judge, JudgeRun, LabelMode


class JudgeOutputSerializer(serializers.ModelSerializer):
    prompt = serializers.StringRelatedField()
    label = serializers.CharField(read_only=True)

    class Meta:
        model = Judge
        fields = (
            "name",
            "version",
            "label",
            "description",
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
            "hedge_hung_calls",
            "logprobs",
            "top_logprobs",
            "rpm_limit",
            "tpm_limit",
            "timeout_s",
            "max_retries",
            "max_parse_retries",
            "use_json_mode",
            "structured_output",
            "max_tokens_field",
            "style_blind",
            "show_final_answer",
            "context_mode",
            "label_mode",
            "prompt",
            "created_at",
            "updated_at",
        )


class RunListQuerySerializer(serializers.Serializer):
    audit = serializers.SlugField(required=False, help_text="Only this audit's runs.")


class RunCreateInputSerializer(serializers.Serializer):
    audit = serializers.SlugField()
    judge = serializers.CharField(max_length=80)
    segmentation = serializers.CharField(
        max_length=32, required=False, default="", allow_blank=True
    )
    batch = serializers.CharField(max_length=120, required=False, default="", allow_blank=True)
    label_mode = serializers.ChoiceField(
        choices=LabelMode.choices,
        required=False,
        default=None,
        allow_null=True,
        help_text="steps: each step asked on its own; first_error: each trace's first wrong "
        "step. Default: the judge's label_mode.",
    )


# --- the answers built as plain dicts (judges/selectors.py), named for the OpenAPI schema --------
class RunProgressOutputSerializer(serializers.Serializer):
    """:func:`judges.selectors.run_progress`."""

    id = serializers.IntegerField()
    judge = serializers.CharField()
    evaluator_kind = serializers.ChoiceField(choices=["judge", "reference"])
    audit = serializers.CharField()
    mode = serializers.ChoiceField(choices=JudgeRun.Mode.choices)
    label_mode = serializers.ChoiceField(choices=LabelMode.choices)
    scope = serializers.ChoiceField(choices=JudgeRun.Scope.choices)
    segmentation = serializers.CharField(allow_blank=True)
    batch = serializers.CharField(allow_blank=True)
    status = serializers.ChoiceField(choices=JudgeRun.Status.choices)
    message = serializers.CharField(allow_blank=True)
    total = serializers.IntegerField()
    done = serializers.IntegerField()
    failed = serializers.IntegerField()
    invalid = serializers.IntegerField()
    remaining = serializers.IntegerField()
    fraction = serializers.FloatField()
    steps_per_s = serializers.FloatField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    eta_s = serializers.FloatField(allow_null=True)
    elapsed_s = serializers.FloatField()
    created_at = serializers.DateTimeField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    can_pause = serializers.BooleanField()
    can_resume = serializers.BooleanField()
    can_cancel = serializers.BooleanField()


class RunConditionOutputSerializer(serializers.Serializer):
    """:func:`judges.selectors.run_condition_summary`: one condition (blind code until
    unblinded)."""

    condition = serializers.CharField()
    judged = serializers.IntegerField()
    correct = serializers.IntegerField()
    error = serializers.IntegerField()
    abstain = serializers.IntegerField()
    invalid = serializers.IntegerField()
    error_rate = serializers.FloatField(allow_null=True)


class RunDetailOutputSerializer(RunProgressOutputSerializer):
    conditions = RunConditionOutputSerializer(many=True)
    judge_settings = serializers.DictField(
        help_text="The judge version's settings when the run was made (what made its verdicts)."
    )
