"""Shared fixtures: roles, a small imported audit, and the real services (PostgreSQL, Redis,
a Celery worker process, the web server as a process, Chromium).

Tests that need a service carry a marker (postgres, redis, celery, browser). Without the
service they are skipped — unless STEPAUDIT_REQUIRE_SERVICES=1 (as in .ci/run), which turns a
missing service into a failure.
"""

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "support"))

from processes import ManagedProcess, free_port, wait_for_http  # noqa: E402

REQUIRE_SERVICES = os.environ.get("STEPAUDIT_REQUIRE_SERVICES") == "1"
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"


def service_missing(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"required service missing: {reason}")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _check_service_markers(request):
    marker_names = {m.name for m in request.node.iter_markers()}
    if "postgres" in marker_names:
        from django.db import connection

        if connection.vendor != "postgresql":
            service_missing("needs PostgreSQL: set DATABASE_URL=postgres://...")
    if "llm_server" in marker_names:
        from tiny_llama import missing_reason, missing_server_packages

        if missing := missing_server_packages():
            service_missing(missing_reason(missing))
    if "redis" in marker_names and not os.environ.get("REDIS_URL"):
        service_missing("needs Redis: set REDIS_URL=redis://...")
    if "browser" in marker_names and not Path(CHROMIUM).exists():
        service_missing("needs Debian's chromium (apt-get install chromium)")


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("REDIS_URL")
    if not url:
        service_missing("needs Redis: set REDIS_URL=redis://...")
    return url


# --- roles -------------------------------------------------------------------------------
def _user(username: str, role: str):
    from annotations.roles import Role
    from annotations.services.users import user_create_or_update

    user = user_create_or_update(username=username, role=Role(role), password="pw-" + username)
    user.raw_password = "pw-" + username
    return user


@pytest.fixture
def admin_user(db):
    return _user("admin1", "admin")


@pytest.fixture
def researcher(db):
    return _user("researcher1", "researcher")


@pytest.fixture
def clinician(db):
    return _user("clinician1", "clinician")


@pytest.fixture
def other_clinician(db):
    return _user("clinician2", "clinician")


@pytest.fixture
def participant(db):
    """A participant account made the bulk way (it can sign in), not enrolled anywhere."""
    return _user("participant1", "participant")


@pytest.fixture
def api_client():
    from rest_framework.test import APIClient

    return APIClient()


# --- data ----------------------------------------------------------------------------------
EXAMPLES = ROOT / "docs" / "examples"


@pytest.fixture
def demo_audit(db):
    """The demo audit: 60 traces of 3 conditions, segmented as 'given' and 'sentences'."""
    from annotations.services.audits import audit_create
    from annotations.services.imports import import_file

    audit = audit_create(slug="demo-test", name="Demo for tests")
    import_file(audit=audit, path=EXAMPLES / "traces.jsonl", segmenter_names=["given", "sentences"])
    return audit


# --- processes ---------------------------------------------------------------------------
def _process_env(extra: dict | None = None) -> dict:
    """The environment a child process needs to see the test database and broker."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "auditapp.settings.test"
    env["PYTHONPATH"] = str(ROOT)
    if db["ENGINE"].endswith("postgresql"):
        user = db.get("USER") or ""
        auth = f"{user}:{db.get('PASSWORD') or ''}@" if user else ""
        host = f"{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}"
        env["DATABASE_URL"] = f"postgres://{auth}{host}/{db['NAME']}"
    else:
        env["DATABASE_URL"] = f"sqlite:///{db['NAME']}"
    env.update(extra or {})
    return env


@pytest.fixture
def child_env():
    """``child_env(extra)``: the environment for a child process on the test database."""
    return _process_env


@pytest.fixture
def celery_worker_process(transactional_db, tmp_path):
    """A real `celery worker` process on the test database and the configured broker."""
    from django.conf import settings

    if settings.DATABASES["default"]["NAME"] in (":memory:", "") or "mode=memory" in str(
        settings.DATABASES["default"]["NAME"]
    ):
        service_missing("a worker process needs a file or server database")
    started: list[ManagedProcess] = []

    def start(
        *,
        concurrency: int = 1,
        queues: str | None = None,
        name: str = "w",
        env: dict | None = None,
    ) -> ManagedProcess:
        cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "auditapp",
            "worker",
            "--loglevel=INFO",
            f"--concurrency={concurrency}",
            "--pool=prefork",
            f"--hostname={name}-{len(started)}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
        if queues:
            cmd += ["-Q", queues]
        proc = ManagedProcess(
            cmd, env=_process_env(env), cwd=ROOT, log=tmp_path / f"worker-{len(started)}.log"
        )
        proc.start()
        proc.wait_for_log("ready", timeout=60)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def web_process(transactional_db, tmp_path):
    """The production web command (gunicorn) as a process on a free port; returns its URL."""
    port = free_port()
    proc = ManagedProcess(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "auditapp.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--access-logfile",
            "-",
        ],
        env=_process_env({"DEBUG": "1"}),
        cwd=ROOT,
        log=tmp_path / "web.log",
    )
    proc.start()
    url = f"http://127.0.0.1:{port}"
    wait_for_http(url + "/accounts/login/", timeout=60, process=proc)
    yield url
    proc.stop()


@pytest.fixture
def browser(monkeypatch):
    """Headless Debian chromium driven by Playwright (no browser download).

    Playwright's sync API keeps an event loop running in this thread, which trips Django's
    async-safety check on every ORM call the test makes; the switch is set for the browser
    tests only, never for the whole session. The connections those calls open are closed
    here, before the loop stops (see the teardown).
    """
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        instance = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
            ],
        )
        yield instance
        instance.close()
        # While Playwright's event loop runs in this thread, asgiref keeps Django's connections
        # in a context-local store apart from the thread's own: the test's ORM calls opened one
        # there, and the test case's teardown (after the loop stops) cannot see it to close it.
        from django.db import connections

        connections.close_all()


@pytest.fixture
def page(browser, live_server):
    """A fresh page on the live server; uncaught JavaScript errors collect in ``page.errors``,
    Content-Security-Policy violations in ``page.csp_violations`` (any fails the test)."""
    from browsing import watch_csp

    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, base_url=live_server.url, accept_downloads=True
    )
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    page.csp_violations = watch_csp(page)
    yield page
    context.close()
    assert page.csp_violations == [], "the pages broke their Content-Security-Policy"


ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
