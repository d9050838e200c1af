"""Explicit fields on every serializer, so a new model field never leaks by accident."""

from rest_framework import serializers

from judges.models import Judge


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
            "rpm_limit",
            "tpm_limit",
            "timeout_s",
            "max_retries",
            "max_parse_retries",
            "use_json_mode",
            "style_blind",
            "show_final_answer",
            "context_mode",
            "prompt",
            "created_at",
            "updated_at",
        )


class RunCreateInputSerializer(serializers.Serializer):
    audit = serializers.SlugField()
    judge = serializers.CharField(max_length=80)
    segmentation = serializers.CharField(
        max_length=32, required=False, default="", allow_blank=True
    )
    batch = serializers.CharField(max_length=120, required=False, default="", allow_blank=True)
