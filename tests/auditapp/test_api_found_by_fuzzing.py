"""API answers schemathesis found to be 500s on PostgreSQL (tests/auditapp/test_schemathesis.py):
a NUL byte in a query or path value reached the database ("PostgreSQL text fields cannot
contain NUL"). Run on both databases; on PostgreSQL they are the regression tests."""

import pytest


def test_a_nul_in_the_runs_audit_filter_is_a_400(api_client, researcher):
    # given
    api_client.force_authenticate(researcher)
    # when
    response = api_client.get("/api/judges/runs/", {"audit": "demo\x00"})
    # then
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert "audit" in response.json()["extra"]


@pytest.mark.parametrize(
    "url",
    [
        "/api/my/assignments/ab%00cd/",
        "/api/my/assignments/ab%00cd/next/",
        "/api/my/assignments/ab%00cd/items/1/",
        "/my/ab%00cd/",
    ],
)
def test_a_nul_in_a_public_id_is_a_404(client, clinician, url):
    # given
    client.force_login(clinician)
    # when
    response = client.get(url)
    # then: no route takes it (public ids are base32), so it never reaches a query
    assert response.status_code == 404


def test_a_nul_in_a_public_id_to_reassign_is_a_404(api_client, admin_user):
    # given
    api_client.force_authenticate(admin_user)
    # when
    response = api_client.post(
        "/api/assignments/ab%00cd/reassign/", {"annotator": "x"}, format="json"
    )
    # then
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
