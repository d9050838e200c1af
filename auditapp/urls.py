from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path

from annotations import views as annotation_views
from annotations.urls import api_urlpatterns as annotation_api
from auditapp.openapi import SchemaView, SwaggerView, api_not_found
from judges.urls import api_urlpatterns as judges_api
from reports.urls import api_urlpatterns as reports_api

urlpatterns = [
    path("", annotation_views.home, name="home"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/", include("accounts.urls")),
    path("admin/", admin.site.urls),
    path("", include("annotations.urls")),
    path("", include("studies.urls")),
    path("api/", include((annotation_api, "annotations-api"))),
    path("reports/", include("reports.urls")),
    path("api/reports/", include((reports_api, "reports-api"))),
    path("judges/", include("judges.urls")),
    path("api/judges/", include((judges_api, "judges-api"))),
    path("api/schema/", SchemaView.as_view(), name="api-schema"),
    path("api/docs/", SwaggerView.as_view(), name="api-docs"),
    # Last of the api/ routes: an unknown API URL answers the JSON error body (docs/api.md).
    re_path(r"^api/", api_not_found),
]
