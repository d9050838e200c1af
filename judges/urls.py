from django.urls import path

from judges import apis, views

app_name = "judges"

urlpatterns = [
    path("audits/<slug:slug>/runs/", views.runs_page, name="runs"),
    path("runs/<int:run_id>/<slug:action>/", views.run_action, name="run-action"),
    path("judge/<str:name>/", views.judge_page, name="judge"),
]

# Mounted at api/judges/ under the "judges-api" namespace (auditapp/urls.py).
api_urlpatterns = [
    path("", apis.JudgeListCreateApi.as_view(), name="judges"),
    path("runs/", apis.RunListCreateApi.as_view(), name="runs"),
    path("runs/<int:run_id>/", apis.RunDetailApi.as_view(), name="run-detail"),
    path("runs/<int:run_id>/<slug:action>/", apis.RunActionApi.as_view(), name="run-action"),
    path("<str:name>/check/", apis.JudgeCheckApi.as_view(), name="judge-check"),
]
