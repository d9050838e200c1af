from rest_framework import serializers

from annotations.models import Audit
from annotations.services.segmenters import SEGMENTER_NAMES


class ImportCreateInputSerializer(serializers.Serializer):
    file = serializers.FileField()
    segmenter = serializers.ListField(
        child=serializers.ChoiceField(choices=SEGMENTER_NAMES), required=False, default=list
    )
    skip_existing = serializers.BooleanField(required=False, default=False)


class AuditOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Audit
        fields = (
            "slug",
            "name",
            "kind",
            "context_mode",
            "style_normalisation",
            "error_categories",
            "created_at",
            "unblinded_at",
        )
