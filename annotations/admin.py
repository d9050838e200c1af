from django.contrib import admin

from annotations.models import Audit, Condition, ImportJob, Question, Step, Trace


class ConditionInline(admin.TabularInline):
    model = Condition
    extra = 0
    fields = ("name", "blind_code", "description")
    readonly_fields = ("blind_code",)


@admin.register(Audit)
class AuditAdmin(admin.ModelAdmin):
    list_display = (
        "slug",
        "name",
        "kind",
        "context_mode",
        "style_normalisation",
        "created_at",
        "unblinded_at",
    )
    list_filter = ("kind", "context_mode", "style_normalisation")
    search_fields = ("slug", "name")
    readonly_fields = ("created_at", "unblinded_at", "unblinded_by")
    inlines = [ConditionInline]


@admin.register(Condition)
class ConditionAdmin(admin.ModelAdmin):
    list_display = ("name", "blind_code", "audit")
    list_filter = ("audit",)
    search_fields = ("name", "blind_code")
    readonly_fields = ("blind_code",)


@admin.register(Question)
class QuestionAdmin(admin.ModelAdmin):
    list_display = ("external_id", "audit", "dataset", "gold_answer")
    list_filter = ("audit", "dataset")
    search_fields = ("external_id", "stem")


@admin.register(Trace)
class TraceAdmin(admin.ModelAdmin):
    list_display = (
        "external_id",
        "audit",
        "condition",
        "question",
        "sample_index",
        "final_answer",
        "answer_correct",
        "trace_type",
    )
    list_filter = ("audit", "condition", "trace_type", "answer_correct")
    search_fields = ("external_id", "question__external_id", "text")
    list_select_related = ("audit", "condition", "question")
    raw_id_fields = ("question", "import_job")


@admin.register(Step)
class StepAdmin(admin.ModelAdmin):
    list_display = (
        "public_id",
        "audit",
        "trace",
        "segmentation",
        "index",
        "reference_verdict",
        "short_text",
    )
    list_filter = ("audit", "segmentation", "reference_verdict", "blinding_version")
    search_fields = ("public_id", "trace__external_id", "text")
    list_select_related = ("audit", "trace")
    raw_id_fields = ("trace",)

    @admin.display(description="text")
    def short_text(self, step: Step) -> str:
        return step.blinded_text[:80]


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = (
        "pk",
        "audit",
        "filename",
        "status",
        "done_records",
        "total_records",
        "n_traces",
        "n_steps",
        "created_at",
    )
    list_filter = ("status", "audit")
    readonly_fields = [f.name for f in ImportJob._meta.fields]
