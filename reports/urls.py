"""Pages under ``reports/`` and the API under ``api/reports/`` (see auditapp/urls.py)."""

from django.urls import path

from reports import apis, views

app_name = "reports"

urlpatterns = [
    path("", views.report_index, name="index"),
    path("audits/<slug:slug>/", views.audit_report_page, name="audit"),
    path("audits/<slug:slug>/report.html", views.audit_report_download, name="audit-html"),
    path("audits/<slug:slug>/plan/", views.audit_plan_lock, name="audit-plan"),
    path("audits/<slug:slug>/unblind/", views.audit_unblind_page, name="audit-unblind"),
]

api_urlpatterns = [
    path("audits/<slug:slug>/report/", apis.AuditReportApi.as_view(), name="report"),
    path(
        "audits/<slug:slug>/tables/<str:name>.<str:fmt>",
        apis.AuditTableApi.as_view(),
        name="table",
    ),
    # The prefix of the table URLs, for templates that append "<name>.csv".
    path("audits/<slug:slug>/tables/", apis.AuditTableIndexApi.as_view(), name="table-base"),
    path("audits/<slug:slug>/plan/", apis.AnalysisPlanApi.as_view(), name="plan"),
    path("audits/<slug:slug>/unblind/", apis.AuditUnblindApi.as_view(), name="unblind"),
    path("agreement-stats/", apis.AgreementStatsApi.as_view(), name="agreement-stats"),
]
