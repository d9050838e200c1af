"""The OpenAPI document and Swagger UI: valid, complete, and shown to admins and researchers
only (docs/api.md)."""

import json

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse


def test_schema_validates_with_no_warning(tmp_path):
    # given: the app's views as they are
    out = tmp_path / "schema.json"
    # when: drf-spectacular builds and validates the document, failing on any warning
    call_command(
        "spectacular",
        "--validate",
        "--fail-on-warn",
        "--format",
        "openapi-json",
        "--file",
        str(out),
    )
    # then: every API route is in it, and every operation names its answers
    schema = json.loads(out.read_text())
    paths = schema["paths"]
    assert len(paths) >= 20
    for path, item in paths.items():
        for method, operation in item.items():
            responses = operation["responses"]
            ok = [c for c in responses if c.startswith("2")]
            assert ok, f"{method} {path} documents no success answer"
            for code in ok:
                body = responses[code].get("content", {})
                assert code == "204" or body, f"{method} {path} {code} has no body schema"
            assert {"401", "403"} <= set(responses), f"{method} {path} lacks auth errors"


def test_schema_has_no_unnamed_view():
    # given / when: the document, as a client downloads it
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    # then: no empty-bodied fallback ("unable to guess serializer") slipped in
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            for code, answer in operation["responses"].items():
                if code != "204":
                    assert answer.get("content"), (method, path, code)
    assert "/api/schema/" not in schema["paths"]


@pytest.mark.parametrize(
    ("role", "status"),
    # anonymous: 401 or 403, whichever the first authentication class answers (DRF)
    [("anonymous", 403), ("clinician", 403), ("researcher", 200), ("admin_user", 200)],
)
def test_schema_is_for_researchers_and_admins(request, client, role, status):
    # given: a visitor of each role
    if role != "anonymous":
        client.force_login(request.getfixturevalue(role))
    # when
    response = client.get(reverse("api-schema") + "?format=json")
    # then
    assert response.status_code == status or (role == "anonymous" and response.status_code == 401)
    if status == 200:
        assert response.json()["info"]["title"] == "StepAudit API"
    else:
        assert "paths" not in response.content.decode()


def test_swagger_ui_sends_anonymous_visitors_to_login(client):
    # when
    response = client.get(reverse("api-docs"))
    # then
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_swagger_ui_refuses_clinicians(client, clinician):
    # given
    client.force_login(clinician)
    # when
    response = client.get(reverse("api-docs"))
    page_script = client.get(reverse("api-docs") + "?script=")
    # then
    assert response.status_code == 403
    assert page_script.status_code == 403
    assert b"swagger" not in response.content.lower()


def test_swagger_ui_is_served_from_the_sidecar_with_no_inline_script(client, admin_user):
    # given
    client.force_login(admin_user)
    # when
    page = client.get(reverse("api-docs"))
    script = client.get(reverse("api-docs") + "?script=")
    # then: the bundle comes from our static files (no CDN), the init script is a separate
    # same-origin request, so a CSP without 'unsafe-inline' scripts holds
    html = page.content.decode()
    assert page.status_code == 200
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower()
    assert "<script>" not in html
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert reverse("api-schema") in script.content.decode()


@pytest.mark.parametrize(
    "url",
    ["/api/nope/", "/api/imports/-1/", "/api/my/assignments/a/b/c/d/e/", "/api/judges/runs/x/"],
)
@pytest.mark.parametrize("method", ["get", "post", "put"])
def test_an_unknown_api_url_answers_the_json_error(admin_user, url, method):
    # given: a signed-in session whose writes carry no CSRF token (as an API client's would)
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    # when
    response = getattr(client, method)(url)
    # then: the API's error body, not Django's HTML page (nor the CSRF failure page)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "not_found"
