from django.urls import path

from annotations import apis, views

app_name = "annotations"

urlpatterns = [
    path("my/", views.my_assignments, name="my-assignments"),
    path("audits/<slug:slug>/import/", views.import_page, name="import"),
    path("imports/<int:job_id>/", views.import_job_page, name="import-job"),
]

api_urlpatterns = [
    path("audits/", apis.AuditListApi.as_view(), name="api-audits"),
    path("audits/<slug:slug>/imports/", apis.ImportCreateApi.as_view(), name="api-import-create"),
    path("imports/<int:job_id>/", apis.ImportDetailApi.as_view(), name="api-import-detail"),
]
