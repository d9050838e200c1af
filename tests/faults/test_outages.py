"""Faults on private servers (tests/support/faults.py): a PostgreSQL and a Redis this module
starts on ports of its own, killed and restarted on purpose while two Celery workers, beat and
gunicorn run — never the machine's shared servers.

One stack serves the module (migrating and seeding it is the slow part); each test breaks one
thing and checks that nothing is lost, nothing duplicated, clients get 503 + Retry-After and
the work flows again within the target (15 s of the service being back).
"""

import json
import os
import subprocess
import sys
import time

import pytest
import requests
from faults import FaultStack, drill, servers_missing

pytestmark = [pytest.mark.celery, pytest.mark.slow]

RECOVERY_TARGET_S = 15.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    missing = servers_missing()
    if missing:
        if os.environ.get("STEPAUDIT_REQUIRE_SERVICES") == "1":
            pytest.fail(f"required service missing: {missing}")
        pytest.skip(missing)
    # 300 ms per request, 8 at a time: the 264 steps take ~10 s, time enough to break things.
    with FaultStack(tmp_path_factory.mktemp("faults"), fake_latency_ms=300) as running:
        yield running


def _assert_clean(result: dict, stack: FaultStack) -> None:
    assert result["status"] == "done", (result, stack.logs())
    assert result["steps_with_verdict"] == result["steps"] == 264, result
    assert result["steps_with_duplicates"] == 0, result
    assert result["recovered_s"] is not None, (result, stack.logs())
    assert result["recovered_s"] < RECOVERY_TARGET_S, result


@pytest.mark.parametrize("fault", ["redis", "postgres"])
def test_a_judge_run_recovers_from_a_restart_within_seconds(stack, fault):
    # given a run under way; when the service is killed for 2 s and started again
    result = drill(stack, fault, outage_s=2.0)
    print(json.dumps(result))
    # then the run ends with exactly one verdict per step, verdicts flowing again at once
    _assert_clean(result, stack)


def test_a_judge_run_recovers_from_killed_workers_and_a_redis_restart(stack):
    # given a run under way; when every worker is SIGKILLed and Redis restarts (every queued
    # message and the run's list are lost) and one new worker starts
    result = drill(stack, "worker+redis", outage_s=1.0)
    print(json.dumps(result))
    # then reconcile (beat, every 5 s) hands the run to the new worker and it ends clean
    _assert_clean(result, stack)


def _signed_in(stack: FaultStack) -> requests.Session:
    session = requests.Session()
    session.get(stack.web_url + "/accounts/login/", timeout=30)
    response = session.post(
        stack.web_url + "/accounts/login/",
        data={
            "username": "clin1",
            "password": "pw-clin1",
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        headers={"Referer": stack.web_url + "/accounts/login/"},
        timeout=30,
    )
    assert response.status_code == 200 and "sessionid" in session.cookies, response.text[:500]
    session.headers["X-CSRFToken"] = session.cookies["csrftoken"]
    session.headers["Referer"] = stack.web_url + "/"
    return session


def _save(session: requests.Session, stack: FaultStack, position: int) -> requests.Response:
    url = (
        f"{stack.web_url}/api/my/assignments/{stack.seed['assignment']}/items/{position}/label/"
        "?next=unlabelled"
    )
    return session.put(url, json={"verdict": "correct", "elapsed_ms": 500}, timeout=30)


def test_labelling_rides_a_redis_outage_and_gets_503_then_success_through_a_database_one(stack):
    session = _signed_in(stack)
    assignment = stack.seed["assignment"]
    assert _save(session, stack, 1).status_code == 200
    # when Redis is down: saves, next item and resume keep working (only the database is needed)
    stack.redis.kill()
    try:
        for position in (2, 3, 4):
            response = _save(session, stack, position)
            assert response.status_code == 200, response.text[:500]
            assert response.json()["next"]["position"] == position + 1
        resumed = session.get(f"{stack.web_url}/api/my/assignments/{assignment}/next/", timeout=30)
        assert resumed.status_code == 200 and resumed.json()["position"] == 5
        page = session.get(f"{stack.web_url}/my/{assignment}/", timeout=30)
        assert page.status_code == 200  # resume: the page redirects to the next item
        ready = requests.get(stack.web_url + "/readyz", timeout=30)
        assert ready.status_code == 503 and ready.json()["checks"]["cache"]["ok"] is False
        assert requests.get(stack.web_url + "/readyz?check=database", timeout=30).ok
    finally:
        stack.redis.start()
    # when the database is down: a save answers JSON 503 + Retry-After, a page the plain 503
    stack.postgres.crash()
    try:
        refused = _save(session, stack, 5)
        assert refused.status_code == 503
        assert refused.headers["Content-Type"].startswith("application/json")
        assert int(refused.headers["Retry-After"]) > 0
        body = refused.json()
        assert body["code"] == "service_unavailable" and body["extra"]["service"] == "database"
        page = session.get(f"{stack.web_url}/my/", timeout=30)
        assert page.status_code == 503 and "Retry-After" in page.headers
        assert "temporarily unavailable" in page.text.lower()
        assert "nothing was lost" in page.text.lower()
        for answer in (refused.text, page.text):
            assert "Traceback" not in answer and "OperationalError" not in answer
        assert requests.get(stack.web_url + "/healthz", timeout=30).ok  # still alive
    finally:
        stack.postgres.start()
    # then the same save succeeds once the database is back (the session survived both)
    deadline = time.monotonic() + RECOVERY_TARGET_S
    while (response := _save(session, stack, 5)).status_code == 503:
        assert time.monotonic() < deadline, "saves did not recover"
        time.sleep(0.2)
    assert response.status_code == 200, response.text[:500]
    rows = stack.sql(
        "SELECT i.position, l.revision FROM annotations_label l JOIN annotations_assignmentitem i "
        "ON i.id = l.assignment_item_id JOIN annotations_assignment a ON a.id = l.assignment_id "
        "WHERE a.public_id = %s ORDER BY i.position",
        (assignment,),
    )
    assert rows == [(p, 1) for p in (1, 2, 3, 4, 5)]  # each stored once, nothing lost
    # and the web log has no traceback for the outage, only the one-line notice
    web = next(p for p in stack.processes if p.name == "web").output()
    assert "Traceback" not in web, web[-3000:]
    assert "database unreachable" in web


def test_run_judge_wait_rides_out_a_database_outage_and_exits_when_the_run_ends(stack):
    # given `run_judge --wait` following a run
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "run_judge", "--audit", "faults", "--judge",
         "drill-judge", "--segmentation", "given", "--wait", "--poll-s", "0.3"],
        cwd=stack.env()["PYTHONPATH"], env=stack.env(), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if " done, " in line and not line.strip().startswith("queued"):
                done = int(line.split()[1].split("/")[0])
                if done >= 40:
                    break
        # when PostgreSQL crashes for 3 s mid-run
        stack.postgres.crash()
        time.sleep(3)
        stack.postgres.start()
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = "".join(lines) + out
    # then it said what it waited for, kept watching and exited 0 when the run was done
    assert proc.returncode == 0, output[-3000:]
    assert "waiting for the database" in output, output[-3000:]
    assert output.rstrip().endswith("done"), output[-3000:]
    assert "Traceback" not in output


def test_compose_healthcheck_commands_pass_and_fail_as_they_should(stack):
    # the commands docker-compose runs, run here as processes
    web = [sys.executable, "deploy/healthcheck.py", stack.web_url + "/readyz?check=database"]
    root = stack.env()["PYTHONPATH"]
    assert subprocess.run(web, cwd=root, capture_output=True, timeout=30).returncode == 0
    full = subprocess.run(
        [sys.executable, "deploy/healthcheck.py", stack.web_url + "/readyz"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert full.returncode == 0, full.stdout
    report = json.loads(full.stdout)
    assert report["checks"]["workers"]["ok"], report  # plain workers consume every queue
    worker = stack.workers()[0]
    node = next(a.split("=", 1)[1] for a in worker.cmd if a.startswith("--hostname="))
    node = node.replace("%h", __import__("socket").gethostname())
    ping = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "auditapp", "inspect", "ping", "-d", node,
         "--timeout", "5"],
        cwd=root, env=stack.env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert ping.returncode == 0, ping.stdout + ping.stderr
    stack.postgres.crash()
    try:
        down = subprocess.run(web, cwd=root, capture_output=True, text=True, timeout=30)
        assert down.returncode == 1 and '"database"' in down.stdout, down.stdout
    finally:
        stack.postgres.start()
