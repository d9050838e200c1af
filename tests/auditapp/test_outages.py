"""Outages seen from one process: the 503 answers, the one-line log, the health endpoints, the
fail-soft cache on a private Redis, and the worker registry behind "no worker consumes …".

The end-to-end drills (real servers killed under a running stack) are in tests/faults/.
"""

import logging
import subprocess
import sys
import time

import pytest
from django.db import OperationalError

from auditapp.outages import outage_log


@pytest.fixture(autouse=True)
def _fresh_outage_log():
    outage_log._down_since.clear()
    yield
    outage_log._down_since.clear()


def _database_down(*args, **kwargs):
    raise OperationalError('connection failed: connection to server at "127.0.0.1", port 5432')


def test_an_api_call_during_a_database_outage_answers_json_503_with_retry_after(
    client, clinician, monkeypatch, caplog
):
    from annotations import apis

    client.force_login(clinician)
    monkeypatch.setattr(apis.MyAssignmentListApi, "get", _database_down)
    caplog.set_level(logging.WARNING)
    # when three calls meet the outage
    answers = [client.get("/api/my/assignments/") for _ in range(3)]
    # then each is a JSON 503 saying what is down, with Retry-After, and no traceback
    for response in answers:
        assert response.status_code == 503
        assert response["Content-Type"].startswith("application/json")
        assert int(response["Retry-After"]) > 0
        body = response.json()
        assert body["code"] == "service_unavailable"
        assert body["extra"]["service"] == "database"
        assert "5432" not in body["message"] and "Traceback" not in response.content.decode()
    # and the log says so once, not once per request
    notices = [r for r in caplog.records if "database unreachable" in r.getMessage()]
    assert len(notices) == 1
    assert not [r for r in caplog.records if r.name == "django.request"]


def test_a_page_during_an_outage_is_the_plain_503_page(client, clinician, monkeypatch):
    import annotations.urls as annotation_urls

    client.force_login(clinician)
    # the URLconf holds the view function itself: patch the pattern's callback
    for pattern in annotation_urls.urlpatterns:
        if pattern.name == "my-assignments":
            monkeypatch.setattr(pattern, "callback", _database_down)
    response = client.get("/my/")
    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    assert "Retry-After" in response
    text = response.content.decode()
    assert "Temporarily unavailable" in text and "Nothing was lost" in text
    assert "OperationalError" not in text


def test_an_outage_inside_a_middleware_is_a_503_too(client, clinician, monkeypatch):
    # a session read or save fails before or after the view: Django turns it into a 500 on
    # the way out, which the outage middleware swaps for the 503
    from accounts.middleware import SessionIdleTimeoutMiddleware

    client.force_login(clinician)
    client.raise_request_exception = False
    monkeypatch.setattr(SessionIdleTimeoutMiddleware, "__call__", _database_down)
    response = client.get("/api/my/assignments/")
    assert response.status_code == 503
    assert response.json()["extra"]["service"] == "database"


def test_a_bug_stays_a_500(client, clinician, monkeypatch):
    from annotations import apis

    def bug(*args, **kwargs):
        raise KeyError("not an outage")

    client.force_login(clinician)
    client.raise_request_exception = False
    monkeypatch.setattr(apis.MyAssignmentListApi, "get", bug)
    assert client.get("/api/my/assignments/").status_code == 500


def test_healthz_and_readyz(client, db, settings):
    from auditapp.workers import app_queues, worker_announce

    assert client.get("/healthz").json() == {"status": "ok"}
    # a probe needs no allowed host and no session
    assert client.get("/healthz", HTTP_HOST="10.1.2.3:8000").status_code == 200
    only_db = client.get("/readyz?check=database")
    assert only_db.status_code == 200 and only_db.json()["checks"]["database"]["ok"] is True
    assert client.get("/readyz?check=nonsense").status_code == 400
    worker_announce("nobody@host", app_queues(), alive=False)
    report = client.get("/readyz?check=workers")
    assert report.status_code == 503 and report["Retry-After"]
    # when a worker announces the app's queues, the workers check passes
    worker_announce("w1@host", app_queues())
    try:
        assert client.get("/readyz?check=workers").status_code == 200
    finally:
        worker_announce("w1@host", app_queues(), alive=False)


def test_a_plain_worker_consumes_every_queue_the_app_uses(settings):
    from auditapp.celery import app
    from judges.tasks import Queue

    declared = {q.name for q in settings.CELERY_TASK_QUEUES}
    assert declared == {q.value for q in Queue}
    # what `celery worker` without -Q consumes
    assert set(app.amqp.queues.consume_from or app.amqp.queues) >= declared


# -- the cache on a private Redis -------------------------------------------------------------
@pytest.fixture
def private_redis(tmp_path):
    from faults import PrivateRedis, servers_missing

    if servers_missing() and "redis" in (servers_missing() or ""):
        pytest.skip(servers_missing())
    server = PrivateRedis(tmp_path).start()
    yield server
    server.stop()


def test_the_cache_behaves_as_empty_while_redis_is_down_and_recovers(private_redis, caplog):
    from auditapp.cache import FailSoftRedisCache

    cache = FailSoftRedisCache(
        private_redis.url, {"OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 1}}
    )
    cache.set("k", "v", 60)
    assert cache.get("k") == "v" and cache.reachable()
    caplog.set_level(logging.WARNING)
    # when Redis dies
    private_redis.kill()
    started = time.monotonic()
    assert cache.get("k", "miss") == "miss"
    assert cache.add("slot", "me", 10) is False
    cache.set("k", "w", 60)
    assert cache.delete("k") is False
    assert cache.get_many(["k"]) == {}
    assert not cache.reachable()
    for _ in range(100):
        cache.get("k")  # fast while it is known down: no connection attempt each time
    assert time.monotonic() - started < 3
    # then, once it is back, the cache works again and the outage was logged once, then its end
    private_redis.start()
    time.sleep(1.1)
    cache.set("k", "x", 60)
    assert cache.get("k") == "x"  # the delete remembered from the outage ran before, not after
    messages = [r.getMessage() for r in caplog.records if r.name == "auditapp.outages"]
    assert sum("cache unreachable" in m for m in messages) == 1
    assert sum("cache reachable again" in m for m in messages) == 1


# -- runs nobody consumes ---------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_a_run_with_no_consumer_says_so_on_its_page_and_in_run_judge_wait(
    demo_audit, admin_user, child_env, tmp_path
):
    from auditapp.workers import worker_announce
    from judges.clients.fake_server import fake_server
    from judges.selectors import run_progress
    from judges.services import judge_create_or_update, run_create

    worker_announce("nobody@host", ["celery", "judges"], alive=False)
    with fake_server(latency_ms=1) as server:
        judge = judge_create_or_update(
            spec={"name": "lonely", "base_url": server.base_url, "model": "fake-judge"}
        )
        run = run_create(audit=demo_audit, judge=judge, segmentation="given")
        # the run page's data
        warning = run_progress(run)["warning"]
        assert "no worker is consuming the 'judges' queue" in warning
        assert "celery -A auditapp worker" in warning
        # run_judge --wait, as a process with no worker anywhere, says so within seconds
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "run_judge", "--audit", demo_audit.slug, "--judge",
             "lonely", "--segmentation", "given", "--wait", "--poll-s", "0.3"],
            env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            started, seen = time.monotonic(), []
            while time.monotonic() - started < 30:
                line = proc.stdout.readline()
                seen.append(line)
                if "no worker is consuming" in line:
                    break
            assert "no worker is consuming the 'judges' queue" in "".join(seen), "".join(seen)
            assert time.monotonic() - started < 30
        finally:
            proc.kill()
            proc.wait()
        # and a worker announcing the queue clears the warning
        worker_announce("w9@host", ["celery", "judges"])
        try:
            assert run_progress(run)["warning"] == ""
        finally:
            worker_announce("w9@host", ["celery", "judges"], alive=False)


def test_ride_out_retries_only_outages_and_says_what_it_waits_for():
    from auditapp.outages import outage_service, ride_out

    calls, waits = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("server closed the connection unexpectedly")
        return "ok"

    assert ride_out(flaky, what="test", on_wait=lambda *a: waits.append(a[0]), first_delay_s=0.01)
    assert len(calls) == 3 and waits == ["database", "database"]
    # a bug is not an outage: it propagates at once
    with pytest.raises(KeyError):
        ride_out(lambda: {}["missing"], what="test")
    # a bounded wait gives up with the outage's own error
    with pytest.raises(OperationalError):
        ride_out(_database_down, what="test", give_up_after_s=0.05, first_delay_s=0.01)
    # the cause chain counts: a wrapped Redis connection error is the cache
    import redis.exceptions

    try:
        try:
            raise redis.exceptions.ConnectionError("refused")
        except redis.exceptions.ConnectionError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert outage_service(outer) == "cache"
    assert outage_service(ValueError("no")) is None
