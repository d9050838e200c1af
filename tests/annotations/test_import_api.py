import io
import json

import pytest
from django.urls import reverse

from annotations.models import ImportJob, Trace
from annotations.services.audits import audit_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def audit():
    return audit_create(slug="api", name="API audit")


def upload(name: str, text: str) -> io.BytesIO:
    handle = io.BytesIO(text.encode())
    handle.name = name
    return handle


GOOD = "\n".join(
    json.dumps(
        {
            "question_id": f"q{i}",
            "question": "Q?",
            "condition": "c",
            "trace_id": f"t{i}",
            "trace": "A.\n\nB.",
        }
    )
    for i in range(3)
)


def test_admin_uploads_a_file_and_the_job_finishes(
    api_client, admin_user, audit, celery_eager, django_capture_on_commit_callbacks
):
    # given
    api_client.force_authenticate(admin_user)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client.post(
            reverse("annotations-api:api-import-create", args=["api"]),
            {"file": upload("t.jsonl", GOOD), "segmenter": "paragraphs"},
            format="multipart",
        )
    # then
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    detail = api_client.get(reverse("annotations-api:api-import-detail", args=[job_id])).json()
    assert detail["status"] == "done"
    assert (detail["n_traces"], detail["n_steps"], detail["fraction"]) == (3, 6, 1.0)
    assert Trace.objects.filter(audit=audit).count() == 3


def test_a_bad_upload_is_a_400_with_every_problem_and_no_job(api_client, admin_user, audit):
    api_client.force_authenticate(admin_user)
    bad = GOOD + "\n{broken\n"
    response = api_client.post(
        reverse("annotations-api:api-import-create", args=["api"]),
        {"file": upload("t.jsonl", bad)},
        format="multipart",
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "import_rejected"
    assert body["extra"]["problems"][0]["line"] == 4
    assert not ImportJob.objects.exists()
    assert not Trace.objects.exists()


@pytest.mark.parametrize(
    ("data", "field"),
    [({}, "file"), ({"segmenter": "words"}, "segmenter")],
    ids=["no-file", "unknown-segmenter"],
)
def test_bad_requests_are_400_with_a_reason(api_client, admin_user, audit, data, field):
    api_client.force_authenticate(admin_user)
    if field != "file":
        data = {**data, "file": upload("t.jsonl", GOOD)}
    response = api_client.post(
        reverse("annotations-api:api-import-create", args=["api"]), data, format="multipart"
    )
    assert response.status_code == 400
    assert field in response.json()["extra"]


@pytest.mark.parametrize("role", ["researcher", "clinician", None])
def test_only_admins_may_import(api_client, audit, role, request):
    if role:
        api_client.force_authenticate(request.getfixturevalue(role))
    response = api_client.post(
        reverse("annotations-api:api-import-create", args=["api"]),
        {"file": upload("t.jsonl", GOOD)},
        format="multipart",
    )
    assert response.status_code in (401, 403)
    assert not Trace.objects.exists()


def test_unknown_audit_and_job_are_404(api_client, admin_user):
    api_client.force_authenticate(admin_user)
    assert (
        api_client.post(
            reverse("annotations-api:api-import-create", args=["nope"]),
            {"file": upload("t.jsonl", GOOD)},
        ).status_code
        == 404
    )
    assert (
        api_client.get(reverse("annotations-api:api-import-detail", args=[999])).status_code == 404
    )


def test_import_page_shows_problems_escaped(client, admin_user, audit):
    # given a bad file whose text carries markup
    client.force_login(admin_user)
    bad = '{"question_id": "<script>alert(1)</script>"}\n'
    # when
    response = client.post(
        reverse("annotations:import", args=["api"]), {"file": upload("t.jsonl", bad)}
    )
    # then
    assert response.status_code == 400
    body = response.content.decode()
    assert "nothing was imported" in body
    assert "line 1 (question): is required" in body
    assert "<script>alert(1)</script>" not in body


def test_import_page_redirects_to_a_job_page_with_a_progress_bar(
    client, admin_user, audit, celery_eager, django_capture_on_commit_callbacks
):
    client.force_login(admin_user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("annotations:import", args=["api"]), {"file": upload("t.jsonl", GOOD)}
        )
    assert response.status_code == 302
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert b'role="progressbar"' in page.content
    assert b'id="import-progress"' in page.content
