"""The judges' API and runs page: permissions, a run's life cycle, blind codes on the page."""

import pytest
from django.urls import reverse

from annotations.models import Condition
from judges.models import JudgeRun

pytestmark = pytest.mark.django_db


def _login(client, user):
    client.login(username=user.username, password=user.raw_password)


def test_clinicians_and_anonymous_users_cannot_use_the_judges_api(api_client, clinician):
    # when / then
    assert api_client.get("/api/judges/").status_code == 403
    _login(api_client, clinician)
    assert api_client.get("/api/judges/").status_code == 403
    assert api_client.get("/api/judges/runs/").status_code == 403


def test_a_researcher_defines_a_judge_and_runs_it_through_the_api(
    api_client, researcher, demo_audit, fake, run_chunks, django_assert_max_num_queries
):
    # given
    _login(api_client, researcher)
    spec = {"name": "api-judge", "base_url": fake.base_url, "model": "fake", "timeout_s": 5}
    # when a judge is created and a bad spec is refused with the field named
    created = api_client.post("/api/judges/", spec, format="json")
    bad = api_client.post("/api/judges/", {**spec, "temperature": 9}, format="json")
    # then
    assert created.status_code == 201 and created.json()["name"] == "api-judge"
    assert bad.status_code == 400 and bad.json()["extra"]["field"] == "temperature"
    assert "api_key" not in str(created.json()).replace("api_key_env", "")
    # when a run starts
    response = api_client.post(
        "/api/judges/runs/",
        {"audit": demo_audit.slug, "judge": "api-judge", "segmentation": "given"},
        format="json",
    )
    # then
    assert response.status_code == 201, response.json()
    run_id = response.json()["id"]
    assert response.json()["status"] == "queued" and response.json()["remaining"] > 0
    # when paused, resumed and run to the end
    assert api_client.post(f"/api/judges/runs/{run_id}/pause/").json()["status"] == "paused"
    assert api_client.post(f"/api/judges/runs/{run_id}/pause/").status_code == 409
    assert api_client.post(f"/api/judges/runs/{run_id}/resume/").json()["status"] == "running"
    run_chunks(JudgeRun.objects.get(pk=run_id))
    # then
    detail = api_client.get(f"/api/judges/runs/{run_id}/").json()
    assert detail["status"] == "done" and detail["remaining"] == 0 and detail["fraction"] == 1
    assert detail["done"] == detail["total"] and detail["prompt_tokens"] > 0
    codes = set(Condition.objects.filter(audit=demo_audit).values_list("blind_code", flat=True))
    assert {c["condition"] for c in detail["conditions"]} == codes
    with django_assert_max_num_queries(8):
        listed = api_client.get(f"/api/judges/runs/?audit={demo_audit.slug}")
    assert [r["id"] for r in listed.json()] == [run_id]


def test_the_runs_page_starts_a_run_and_shows_blind_codes_only(
    client, researcher, demo_audit, make_judge, fake
):
    # given
    make_judge(fake.base_url)
    _login(client, researcher)
    url = reverse("judges:runs", kwargs={"slug": demo_audit.slug})
    # when
    page = client.get(url)
    posted = client.post(url, {"judge": "fake-judge", "segmentation": "given"})
    after = client.get(url)
    # then
    assert page.status_code == 200
    assert posted.status_code == 302
    run = JudgeRun.objects.get()
    body = after.content.decode()
    assert f'data-run-id="{run.pk}"' in body and 'id="judge-runs-data"' in body
    assert "<script>" not in body.replace('<script type="module"', "")
    for condition in Condition.objects.filter(audit=demo_audit):
        assert condition.name not in body
    # when cancelled from the page
    cancel = client.post(reverse("judges:run-action", args=[run.pk, "cancel"]))
    # then
    assert cancel.status_code == 302
    run.refresh_from_db()
    assert run.status == JudgeRun.Status.CANCELLED


def test_a_clinician_cannot_open_the_runs_page(client, clinician, demo_audit):
    # given
    _login(client, clinician)
    # when
    response = client.get(reverse("judges:runs", kwargs={"slug": demo_audit.slug}))
    # then
    assert response.status_code == 403
