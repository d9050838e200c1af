"""Judges as a hostile insider would try them: every key name and host through the API, a
judge changed under its runs, the reference judge overwritten, a row edited behind the
service's back. The live-server version of these attacks is ``test_judge_trust_live.py``."""

import os

import pytest
from django.test import override_settings

from auditapp.exceptions import ConflictError
from judges.models import Judge, JudgeRun
from judges.services import judge_create_or_update, reference_run_create, run_create

pytestmark = pytest.mark.django_db

# Names a researcher would try first; every variable of this process's environment is tried too.
SERVER_SECRETS = [
    "SECRET_KEY",
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "OPENAI_API_KEY",  # a real key name, but not listed by this deployment
    "DJANGO_SETTINGS_MODULE",
    "PATH",
    "HOME",
]
HOSTILE_URLS = [
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://[fe80::1]:8000/v1",
    "http://[::ffff:169.254.169.254]/v1",
    "http://0.0.0.0:6379/",
    "http://10.1.2.3:8000/v1",
    "http://192.168.0.1/v1",
    "https://attacker.example.org/v1",
    "http://2130706433/v1",
    "http://127.0.0.1@attacker.example.org/v1",
    "http://user:pw@127.0.0.1:8000/v1",
    "ftp://127.0.0.1/v1",
    "gopher://127.0.0.1:6379/_",
]


def _login(client, user):
    client.login(username=user.username, password=user.raw_password)


def _env_names() -> list[str]:
    names = {n for n in os.environ if n.isidentifier() and len(n) <= 100}
    return sorted(names | set(SERVER_SECRETS))


def test_a_researcher_can_name_no_environment_variable_but_a_listed_judge_key(
    api_client, researcher, fake, monkeypatch
):
    # given the deployment lists one key name; every server secret is set
    monkeypatch.setenv("JUDGE_KEY_A", "sk-judge-a-value")
    for name in SERVER_SECRETS:
        monkeypatch.setenv(name, os.environ.get(name) or f"secret-{name}")
    _login(api_client, researcher)
    spec = {"name": "leaky", "base_url": fake.base_url, "model": "m"}
    with override_settings(STEPAUDIT_JUDGE_KEY_ENVS=["JUDGE_KEY_A"]):
        # when every variable of the server's environment is tried as the key
        refused = {}
        for name in _env_names():
            if name == "JUDGE_KEY_A":
                continue
            response = api_client.post("/api/judges/", {**spec, "api_key_env": name}, format="json")
            refused[name] = (response.status_code, response.json().get("extra", {}).get("field"))
        # then each is a 400 naming the field, and nothing was saved
        assert set(refused.values()) == {(400, "api_key_env")}, refused
        assert not Judge.objects.filter(name="leaky").exists()
        # and the listed name works
        ok = api_client.post("/api/judges/", {**spec, "api_key_env": "JUDGE_KEY_A"}, format="json")
        assert ok.status_code == 201 and ok.json()["api_key_env"] == "JUDGE_KEY_A"
    assert len(refused) >= len(SERVER_SECRETS)


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_a_researcher_cannot_point_a_judge_at_a_host_the_deployment_does_not_allow(
    api_client, researcher, url
):
    # given the development policy (loopback only)
    _login(api_client, researcher)
    # when
    response = api_client.post(
        "/api/judges/", {"name": "ssrf", "base_url": url, "model": "m"}, format="json"
    )
    # then
    assert response.status_code == 400, response.json()
    assert response.json()["extra"]["field"] == "base_url"
    assert not Judge.objects.filter(name="ssrf").exists()


def test_production_has_no_loopback_unless_listed(api_client, researcher, fake):
    # given a production-like policy listing only a public API
    _login(api_client, researcher)
    with override_settings(STEPAUDIT_JUDGE_ALLOWED_HOSTS=["api.openai.com"]):
        # when a researcher points a judge at the server's own loopback
        response = api_client.post(
            "/api/judges/",
            {"name": "local", "base_url": fake.base_url, "model": "m"},
            format="json",
        )
    # then
    assert response.status_code == 400 and response.json()["extra"]["field"] == "base_url"


@pytest.mark.parametrize(
    ("editors", "role", "expected"),
    [
        ("researchers", "researcher", 201),
        ("researchers", "admin", 201),
        ("researchers", "clinician", 403),
        ("admins", "researcher", 403),
        ("admins", "admin", 201),
        ("admins", "clinician", 403),
    ],
)
def test_who_may_save_judges_is_the_deployments_choice(
    api_client, request, fake, editors, role, expected
):
    user = request.getfixturevalue(
        {"researcher": "researcher", "admin": "admin_user"}.get(role, role)
    )
    _login(api_client, user)
    with override_settings(STEPAUDIT_JUDGE_EDITORS=editors):
        response = api_client.post(
            "/api/judges/", {"name": "j", "base_url": fake.base_url, "model": "m"}, format="json"
        )
        listed = api_client.get("/api/judges/")
    assert response.status_code == expected
    assert listed.status_code == (403 if role == "clinician" else 200)


def test_anonymous_users_cannot_save_judges(api_client, fake):
    response = api_client.post(
        "/api/judges/", {"name": "j", "base_url": fake.base_url, "model": "m"}, format="json"
    )
    assert response.status_code in (401, 403)
    assert not Judge.objects.exists()


def test_a_judge_with_runs_never_changes_a_change_makes_a_new_version(
    api_client, researcher, demo_audit, fake, run_chunks
):
    # given a judge and a finished run made with it
    _login(api_client, researcher)
    spec = {"name": "j", "base_url": fake.base_url, "model": "model-a", "temperature": 0}
    assert api_client.post("/api/judges/", spec, format="json").json()["version"] == 1
    v1 = Judge.objects.get(name="j")
    run = run_create(audit=demo_audit, judge=v1, segmentation="given")
    run_chunks(run)
    # when the researcher saves a changed spec under the same name
    response = api_client.post("/api/judges/", {**spec, "model": "model-b"}, format="json")
    # then a second version exists; the run still names the first, with its exact settings
    assert response.status_code == 201
    assert (response.json()["version"], response.json()["label"]) == (2, "j@v2")
    run.refresh_from_db()
    assert run.judge_id == v1.pk and run.judge.model == "model-a"
    assert run.judge_settings["model"] == "model-a" and run.judge_settings["version"] == 1
    assert run.judge_settings["base_url"] == fake.base_url
    assert run.judge_settings["prompt"] == str(v1.prompt)
    detail = api_client.get(f"/api/judges/runs/{run.pk}/").json()
    assert detail["judge"] == "j" and detail["judge_settings"]["model"] == "model-a"
    # when the same spec is saved again, nothing new is made
    again = api_client.post("/api/judges/", {**spec, "model": "model-b"}, format="json")
    assert again.json()["version"] == 2 and Judge.objects.filter(name="j").count() == 2
    # when code bypasses the service and edits the used version
    v1.base_url = "http://127.0.0.1:1/v1"
    with pytest.raises(ConflictError, match="has runs and cannot change"):
        v1.save()
    # then a run by name takes the latest version, and the report tells the versions apart
    run2 = run_create(
        audit=demo_audit, judge=Judge.objects.get(name="j", version=2), segmentation="given"
    )
    run_chunks(run2)
    report = api_client.get(f"/api/reports/audits/{demo_audit.slug}/report/")
    assert report.status_code == 200
    body = report.content.decode()
    assert '"j"' in body and '"j@v2"' in body


def test_the_admin_cannot_edit_a_used_judge_version_either(
    client, admin_user, demo_audit, fake, run_chunks
):
    # given a used judge
    judge = judge_create_or_update(spec={"name": "j", "base_url": fake.base_url, "model": "m"})
    run_create(audit=demo_audit, judge=judge, segmentation="given")
    client.force_login(admin_user)
    # when the admin posts a change to it
    response = client.post(
        f"/admin/judges/judge/{judge.pk}/change/",
        {"name": "j", "base_url": "http://127.0.0.1:1/v1", "model": "other"},
    )
    # then nothing changed (every field is read-only)
    judge.refresh_from_db()
    assert response.status_code in (200, 302, 403)
    assert (judge.model, judge.base_url) == ("m", fake.base_url)


def test_the_admin_form_refuses_a_server_secret_as_a_key(client, admin_user):
    client.force_login(admin_user)
    response = client.post(
        "/admin/judges/judge/add/",
        {
            "name": "adm",
            "version": 1,
            "base_url": "http://127.0.0.1:9/v1",
            "model": "m",
            "api_key_env": "SECRET_KEY",
            "temperature": 0,
            "max_tokens": 10,
            "samples_per_step": 1,
            "aggregation": "majority",
            "max_concurrency": 1,
            "parallel_chunks": 1,
            "timeout_s": 5,
            "max_retries": 1,
            "max_parse_retries": 1,
            "context_mode": "audit",
        },
    )
    assert response.status_code == 200 and b"SECRET_KEY is not a judge key name" in response.content
    assert not Judge.objects.filter(name="adm").exists()


def test_the_reference_judge_cannot_be_made_or_overwritten_through_the_api(
    api_client, researcher, admin_user, demo_audit, fake
):
    # given the imported reference verdicts as a finished run
    reference_run_create(audit=demo_audit, segmentation="given")
    for user in (researcher, admin_user):
        _login(api_client, user)
        # when a spec tries to take the reference judge's name, or to make a reference judge
        taken = api_client.post(
            "/api/judges/",
            {"name": "reference", "base_url": fake.base_url, "model": "m"},
            format="json",
        )
        made = api_client.post(
            "/api/judges/", {"name": "ref2", "is_reference": True}, format="json"
        )
        # then both are refused and the reference judge is as it was
        assert taken.status_code == 403 and taken.json()["code"] == "reserved_name"
        assert made.status_code == 403 and made.json()["code"] == "reference_judge"
    reference = Judge.objects.get(name="reference")
    assert reference.is_reference and reference.base_url == ""
    assert api_client.get(f"/api/reports/audits/{demo_audit.slug}/report/").status_code == 200


def test_a_spec_cannot_turn_a_reference_judge_into_an_endpoint(demo_audit, fake):
    # given a reference judge of another name, made by the admin's command
    judge_create_or_update(spec={"name": "gold", "is_reference": True}, allow_reference=True)
    # when a spec (even the admin's) tries to give it an endpoint
    with pytest.raises(ConflictError, match="reference judge"):
        judge_create_or_update(
            spec={"name": "gold", "base_url": fake.base_url, "model": "m"}, allow_reference=True
        )
    assert Judge.objects.get(name="gold").is_reference


def test_a_key_name_edited_into_the_database_is_refused_at_run_creation_and_by_the_lane(
    demo_audit, fake, run_chunks, monkeypatch
):
    # given a judge saved properly, then its row edited behind the service (bypassing save)
    monkeypatch.setenv("SECRET_KEY", "the-server-secret")
    judge = judge_create_or_update(spec={"name": "j", "base_url": fake.base_url, "model": "m"})
    Judge.objects.filter(pk=judge.pk).update(api_key_env="SECRET_KEY")
    judge.refresh_from_db()
    # when a run is started with it: refused with the reason, nothing created
    with pytest.raises(Exception, match="SECRET_KEY is not a judge key name"):
        run_create(audit=demo_audit, judge=judge, segmentation="given")
    assert not JudgeRun.objects.exists()
    # when a run made before the edit is executed after it
    Judge.objects.filter(pk=judge.pk).update(api_key_env="")
    judge.refresh_from_db()
    run = run_create(audit=demo_audit, judge=judge, segmentation="given")
    Judge.objects.filter(pk=judge.pk).update(api_key_env="SECRET_KEY")
    run_chunks(run)
    # then the run failed with the reason and the endpoint never saw the secret
    run.refresh_from_db()
    assert run.status == JudgeRun.Status.FAILED and "SECRET_KEY" in run.message
    assert fake.stats()["requests"] == 0
    assert not any("the-server-secret" in header for header in fake.stats()["auth_headers"])


def test_a_host_refused_after_the_policy_changed_fails_the_run_without_a_request(
    demo_audit, fake, run_chunks
):
    # given a run made while loopback was allowed
    judge = judge_create_or_update(spec={"name": "j", "base_url": fake.base_url, "model": "m"})
    run = run_create(audit=demo_audit, judge=judge, segmentation="given")
    # when the deployment stops allowing it before the lanes run
    with override_settings(STEPAUDIT_JUDGE_ALLOWED_HOSTS=["api.openai.com"]):
        run_chunks(run)
    # then
    run.refresh_from_db()
    assert run.status == JudgeRun.Status.FAILED and "not an allowed judge host" in run.message
    assert fake.stats()["requests"] == 0


def test_every_spec_setting_is_frozen_once_a_version_has_runs():
    # A spec field missing from Judge.SETTINGS_FIELDS could change under a run unnoticed.
    from judges.services import SPEC_FIELDS

    frozen = set(Judge.SETTINGS_FIELDS) - {"prompt_id"}
    assert set(SPEC_FIELDS) - {"name", "description", "prompt"} == frozen
