"""The judge attacks against the production shape: gunicorn, a real Celery worker, PostgreSQL
and Redis, and the fake endpoint as a process that records every Authorization header it gets.

The web and the worker get different key allow-lists on purpose: a judge the web accepted (as
under an older policy) must still be refused by the worker when it is about to send the key.
"""

import re
import time

import pytest
import requests

pytestmark = [
    pytest.mark.celery,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

SECRETS = ["SECRET_KEY", "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "PATH", "HOME"]
HOSTS = [
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/",
    "http://metadata.google.internal/",
    "http://0.0.0.0:6379/",
    "http://10.0.0.1/v1",
    "https://attacker.example.org/v1",
]


def _signed_in(base: str, username: str, password: str) -> requests.Session:
    session = requests.Session()
    page = session.get(base + "/accounts/login/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    done = session.post(
        base + "/accounts/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": token},
        headers={"Referer": base + "/accounts/login/"},
        timeout=10,
    )
    assert done.status_code == 200 and "/accounts/login/" not in done.url, done.text[:300]
    session.headers["X-CSRFToken"] = session.cookies["csrftoken"]
    session.headers["Referer"] = base + "/"
    return session


def _wait_ended(session: requests.Session, base: str, run_id: int, timeout_s: float = 90):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = session.get(f"{base}/api/judges/runs/{run_id}/", timeout=10).json()
        if run["status"] in ("done", "failed", "cancelled"):
            return run
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} did not end: {run}")


def test_a_researcher_cannot_get_a_server_secret_sent_anywhere_through_the_live_app(
    request, monkeypatch, demo_audit, researcher, celery_worker_process, fake_process, fake_stats_of
):
    # given every server secret set, a web process that (like an older policy) accepts the key
    # name LEAKY, and a worker whose deployment lists no key at all
    secret_values = {
        "SECRET_KEY": "live-test-secret-key-" + "x" * 40,
        "LEAKY": "leaky-value-that-must-never-leave",
    }
    for name, value in secret_values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("STEPAUDIT_JUDGE_KEY_ENVS", "LEAKY")
    base = request.getfixturevalue("web_process")
    celery_worker_process(
        concurrency=1, queues="celery,judges", env={"STEPAUDIT_JUDGE_KEY_ENVS": ""}
    )
    endpoint = fake_process("--latency-ms", "1")
    session = _signed_in(base, researcher.username, researcher.raw_password)

    # when the researcher names server secrets as the key, or hosts the deployment refuses
    answers = []
    for name in SECRETS:
        spec = {"name": f"leak-{name.lower()}", "base_url": endpoint, "model": "m"}
        answers.append(session.post(base + "/api/judges/", json={**spec, "api_key_env": name}))
    for i, url in enumerate(HOSTS):
        answers.append(
            session.post(
                base + "/api/judges/", json={"name": f"ssrf-{i}", "base_url": url, "model": "m"}
            )
        )
    # then each is a 400 with the field named
    assert [a.status_code for a in answers] == [400] * len(answers)
    assert {a.json()["extra"]["field"] for a in answers} == {"api_key_env", "base_url"}

    # when a judge the web accepts (LEAKY) is run by the worker, which does not list it
    saved = session.post(
        base + "/api/judges/",
        json={"name": "leaky", "base_url": endpoint, "model": "m", "api_key_env": "LEAKY"},
    )
    assert saved.status_code == 201, saved.text
    started = session.post(
        base + "/api/judges/runs/",
        json={"audit": demo_audit.slug, "judge": "leaky", "segmentation": "given"},
    )
    assert started.status_code == 201, started.text
    run = _wait_ended(session, base, started.json()["id"])
    # then the worker failed the run with the reason and sent nothing at all
    assert run["status"] == "failed" and "LEAKY is not a judge key name" in run["message"]
    stats = fake_stats_of(endpoint)
    assert stats["requests"] == 0

    # when an honest keyless judge runs on the same live app
    honest = session.post(
        base + "/api/judges/", json={"name": "honest", "base_url": endpoint, "model": "m"}
    )
    assert honest.status_code == 201
    started = session.post(
        base + "/api/judges/runs/",
        json={"audit": demo_audit.slug, "judge": "honest", "segmentation": "given"},
    )
    run = _wait_ended(session, base, started.json()["id"])
    # then it completes, and no request ever carried a secret
    assert run["status"] == "done" and run["done"] == run["total"] > 0
    headers = fake_stats_of(endpoint)["auth_headers"]
    assert set(headers) == {""}, headers
    for value in secret_values.values():
        assert not any(value in h for h in headers)
