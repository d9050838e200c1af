from django.urls import path

from annotations import apis, audit_views, views

app_name = "annotations"

urlpatterns = [
    path("my/", views.my_assignments, name="my-assignments"),
    path("my/<slug:public_id>/", views.assignment_resume, name="assignment"),
    path("my/<slug:public_id>/<int:position>/", views.label_page, name="label"),
    path("my/<slug:public_id>/question/", views.end_probe_page, name="end-probe"),
    path("my/<slug:public_id>/trace/<int:number>/", views.trace_page, name="trace"),
    path("audits/new/", audit_views.audit_new_page, name="audit-new"),
    path("audits/<slug:slug>/edit/", audit_views.audit_edit_page, name="audit-edit"),
    path("audits/<slug:slug>/batches/", views.batch_list_page, name="batches"),
    path("batches/<int:batch_id>/", views.batch_page, name="batch"),
    path("audits/<slug:slug>/import/", views.import_page, name="import"),
    path("imports/<int:job_id>/", views.import_job_page, name="import-job"),
]

api_urlpatterns = [
    path("audits/", apis.AuditListApi.as_view(), name="api-audits"),
    path("audits/<slug:slug>/", apis.AuditDetailApi.as_view(), name="api-audit"),
    path("audits/<slug:slug>/imports/", apis.ImportCreateApi.as_view(), name="api-import-create"),
    path("imports/<int:job_id>/", apis.ImportDetailApi.as_view(), name="api-import-detail"),
    # clinicians: their own work, addressed by random public ids and positions only. Public ids
    # are base32 (a-z, 2-7), so <slug:>: a NUL or any odd byte is a 404, never a database error.
    path("my/assignments/", apis.MyAssignmentListApi.as_view(), name="api-my-assignments"),
    path(
        "my/assignments/<slug:public_id>/",
        apis.MyAssignmentDetailApi.as_view(),
        name="api-my-assignment",
    ),
    path(
        "my/assignments/<slug:public_id>/next/",
        apis.MyNextItemApi.as_view(),
        name="api-my-next-item",
    ),
    path(
        "my/assignments/<slug:public_id>/items/<int:position>/",
        apis.MyItemApi.as_view(),
        name="api-my-item",
    ),
    path(
        "my/assignments/<slug:public_id>/items/<int:position>/label/",
        apis.LabelSaveApi.as_view(),
        name="api-label-save",
    ),
    path(
        "my/assignments/<slug:public_id>/traces/<int:number>/",
        apis.MyTraceApi.as_view(),
        name="api-my-trace",
    ),
    path(
        "my/assignments/<slug:public_id>/traces/<int:number>/first-error/",
        apis.FirstErrorSaveApi.as_view(),
        name="api-first-error-save",
    ),
    path(
        "my/assignments/<slug:public_id>/items/<int:position>/skip/",
        apis.ItemSkipApi.as_view(),
        name="api-item-skip",
    ),
    path(
        "my/assignments/<slug:public_id>/items/<int:position>/rating/",
        apis.RatingSaveApi.as_view(),
        name="api-rating-save",
    ),
    path(
        "my/assignments/<slug:public_id>/question/",
        apis.MyEndProbeApi.as_view(),
        name="api-my-end-probe",
    ),
    path(
        "my/assignments/<slug:public_id>/submit/",
        apis.AssignmentSubmitApi.as_view(),
        name="api-assignment-submit",
    ),
    # admins
    path(
        "audits/<slug:slug>/batches/preview/",
        apis.BatchPreviewApi.as_view(),
        name="api-batch-preview",
    ),
    path("audits/<slug:slug>/batches/", apis.BatchCreateApi.as_view(), name="api-batch-create"),
    path(
        "audits/<slug:slug>/progress/", apis.AuditProgressApi.as_view(), name="api-audit-progress"
    ),
    path("batches/<int:batch_id>/assign/", apis.BatchAssignApi.as_view(), name="api-batch-assign"),
    path("batches/<int:batch_id>/plan/", apis.BatchPlannerApi.as_view(), name="api-batch-plan"),
    path(
        "batches/<int:batch_id>/release-wave/",
        apis.BatchWaveReleaseApi.as_view(),
        name="api-batch-release-wave",
    ),
    path(
        "batches/<int:batch_id>/leak-check/",
        apis.BatchLeakCheckApi.as_view(),
        name="api-batch-leak-check",
    ),
    path(
        "batches/<int:batch_id>/progress/",
        apis.BatchProgressApi.as_view(),
        name="api-batch-progress",
    ),
    path(
        "assignments/<slug:public_id>/reassign/",
        apis.AssignmentReassignApi.as_view(),
        name="api-assignment-reassign",
    ),
    path(
        "assignments/<slug:public_id>/reopen/",
        apis.AssignmentReopenApi.as_view(),
        name="api-assignment-reopen",
    ),
]
