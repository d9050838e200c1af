from django.contrib import admin

from judges.models import Judge, JudgeFailure, JudgePrompt, JudgeRun, JudgeVerdict


@admin.register(JudgePrompt)
class JudgePromptAdmin(admin.ModelAdmin):
    list_display = ("name", "version", "used_at", "created_at")
    readonly_fields = ("used_at", "created_at")


@admin.register(Judge)
class JudgeAdmin(admin.ModelAdmin):
    list_display = ("name", "is_reference", "model", "base_url", "max_concurrency", "prompt")
    search_fields = ("name", "model")


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
