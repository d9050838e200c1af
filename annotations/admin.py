from django import forms
from django.contrib import admin

from annotations.models import (
    Assignment,
    AssignmentEvent,
    Audit,
    Batch,
    Condition,
    FirstErrorMark,
    FirstErrorMarkRevision,
    ImportJob,
    Label,
    LabelRevision,
    Question,
    Step,
    Trace,
    TraceRating,
)
from annotations.services.audit_blinding import (
    BLINDING_FIELDS,
    BLINDING_IN_USE,
    audit_blinding_in_use,
    audit_normaliser_update,
)


class ConditionInline(admin.TabularInline):
    model = Condition
    extra = 0
    fields = ("name", "blind_code", "description")
    readonly_fields = ("blind_code",)


class AuditAdminForm(forms.ModelForm):
    class Meta:
        model = Audit
        fields = "__all__"  # noqa: DJ007 (the ModelAdmin chooses the fields it shows)

    def clean(self):
        cleaned = super().clean()
        changed = set(BLINDING_FIELDS) & set(self.changed_data)
        if self.instance.pk and changed and audit_blinding_in_use(audit=self.instance):
            raise forms.ValidationError(BLINDING_IN_USE)
        return cleaned


@admin.register(Audit)
class AuditAdmin(admin.ModelAdmin):
    form = AuditAdminForm
    list_display = (
        "slug",
        "name",
        "kind",
        "annotator_title",
        "context_mode",
        "context_window",
        "show_step_numbers",
        "style_normalisation",
        "created_at",
        "unblinded_at",
    )
    list_filter = ("kind", "context_mode", "show_step_numbers", "style_normalisation")
    search_fields = ("slug", "name")
    readonly_fields = ("seed", "created_at", "unblinded_at", "unblinded_by")
    inlines = [ConditionInline]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change and set(BLINDING_FIELDS) & set(form.changed_data):
            # Stored blinded text follows the new normaliser settings (checked in the form).
            audit_normaliser_update(audit=obj)


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


# --- batches and labels (issue 3): read-mostly; building and assigning go through the
# staff pages (/audits/<slug>/batches/), which call the services.
class AssignmentInline(admin.TabularInline):
    model = Assignment
    extra = 0
    fields = ("public_id", "annotator", "due_date", "submitted_at", "reassigned_from")
    readonly_fields = fields
    can_delete = False
    show_change_link = True


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):
    list_display = ("name", "audit", "mode", "segmentation", "overlap", "seed", "created_at")
    list_filter = ("audit", "mode")
    search_fields = ("name",)
    readonly_fields = (
        "audit",
        "mode",
        "segmentation",
        "seed",
        "design",
        "overlap",
        "created_by",
    )
    inlines = [AssignmentInline]

    def has_add_permission(self, request) -> bool:
        return False  # sampled by the batch service, never typed in


class AssignmentEventInline(admin.TabularInline):
    """Reopenings (issue 13): read-only, written by the reopen service only."""

    model = AssignmentEvent
    extra = 0
    fields = ("kind", "by", "at", "submitted_at", "note")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    inlines = [AssignmentEventInline]
    list_display = ("public_id", "batch", "annotator", "due_date", "submitted_at", "created_at")
    list_filter = ("batch__audit", "submitted_at")
    search_fields = ("public_id", "annotator__username", "batch__name")
    list_select_related = ("batch", "annotator")
    readonly_fields = ("batch", "annotator", "public_id", "reassigned_from", "created_at")
    fields = ("batch", "annotator", "public_id", "due_date", "submitted_at", "reassigned_from")

    def has_add_permission(self, request) -> bool:
        return False


class LabelRevisionInline(admin.TabularInline):
    model = LabelRevision
    extra = 0
    fields = (
        "revision",
        "verdict",
        "error_category",
        "comment",
        "flagged",
        "flag_note",
        "changed_by",
        "changed_at",
    )
    readonly_fields = fields
    can_delete = False


@admin.register(Label)
class LabelAdmin(admin.ModelAdmin):
    list_display = (
        "assignment",
        "step",
        "verdict",
        "error_category",
        "flagged",
        "revision",
        "updated_at",
    )
    list_filter = ("verdict", "flagged", "assignment__batch__audit")
    list_select_related = ("assignment", "step")
    raw_id_fields = ("assignment_item", "assignment", "step")
    readonly_fields = [f.name for f in Label._meta.fields]
    inlines = [LabelRevisionInline]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # labels change only through the clinician's own revisions


@admin.register(TraceRating)
class TraceRatingAdmin(admin.ModelAdmin):
    list_display = ("assignment", "trace", "answers", "revision", "updated_at")
    list_select_related = ("assignment", "trace")
    readonly_fields = [f.name for f in TraceRating._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class FirstErrorMarkRevisionInline(admin.TabularInline):
    model = FirstErrorMarkRevision
    extra = 0
    fields = (
        "revision",
        "first_error_index",
        "cannot_assess",
        "error_category",
        "comment",
        "changed_by",
        "changed_at",
    )
    readonly_fields = fields
    can_delete = False


@admin.register(FirstErrorMark)
class FirstErrorMarkAdmin(admin.ModelAdmin):
    """First-error marks (docs/labelling.md, "Modes"): read-only, written by the mark service
    together with the step labels they imply."""

    list_display = (
        "assignment",
        "trace",
        "first_error_index",
        "cannot_assess",
        "n_steps",
        "revision",
        "updated_at",
    )
    list_filter = ("assignment__batch__audit",)
    list_select_related = ("assignment", "trace")
    raw_id_fields = ("assignment", "trace", "first_error_item")
    readonly_fields = [f.name for f in FirstErrorMark._meta.fields]
    inlines = [FirstErrorMarkRevisionInline]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
