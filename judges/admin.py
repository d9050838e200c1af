from django import forms
from django.contrib import admin
from django.db import models

from auditapp.exceptions import ApplicationError
from judges.models import Judge, JudgeFailure, JudgePrompt, JudgeRun, JudgeVerdict
from judges.services.specs import egress_check


@admin.register(JudgePrompt)
class JudgePromptAdmin(admin.ModelAdmin):
    list_display = ("name", "version", "used_at", "created_at")
    readonly_fields = ("used_at", "created_at")


class JudgeAdminForm(forms.ModelForm):
    # No Meta: the admin builds it (with formfield_overrides) through modelform_factory.

    def clean(self):
        data = super().clean()
        if not data.get("is_reference") and data.get("base_url"):
            try:  # the same host and key rules as a spec saved through the API
                egress_check(base_url=data["base_url"], api_key_env=data.get("api_key_env"))
            except ApplicationError as exc:
                raise forms.ValidationError(exc.message) from None
        return data


@admin.register(Judge)
class JudgeAdmin(admin.ModelAdmin):
    form = JudgeAdminForm
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = ("name", "version", "is_reference", "model", "base_url", "prompt")
    search_fields = ("name", "model")

    def get_readonly_fields(self, request, obj=None):
        # A version with runs is the record of what made their verdicts (Judge.save).
        if obj is not None and JudgeRun.objects.filter(judge=obj).exists():
            return [f.name for f in Judge._meta.fields]
        return ["version"]


@admin.register(JudgeRun)
class JudgeRunAdmin(admin.ModelAdmin):
    list_display = ("id", "judge", "audit", "scope", "status", "total", "done", "failed")
    list_filter = ("status", "mode", "judge")
    readonly_fields = [f.name for f in JudgeRun._meta.fields]


@admin.register(JudgeVerdict)
class JudgeVerdictAdmin(admin.ModelAdmin):
    list_display = ("run", "step", "verdict", "category", "attempts", "latency_ms")
    list_filter = ("verdict",)
    raw_id_fields = ("run", "step")
    readonly_fields = [f.name for f in JudgeVerdict._meta.fields]


@admin.register(JudgeFailure)
class JudgeFailureAdmin(admin.ModelAdmin):
    list_display = ("run", "step", "kind", "attempts", "created_at")
    raw_id_fields = ("run", "step")
