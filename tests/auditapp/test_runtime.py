"""The production shape as processes: settings pass check --deploy; gunicorn serves pages and
static files (whitenoise); a Celery worker process runs a task sent from here."""

import os
import secrets
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "support"))
from processes import ManagedProcess, free_port, wait_for_http  # noqa: E402


def production_env(tmp_path: Path, **extra: str) -> dict:
    unwanted = {"DEBUG", "DJANGO_SETTINGS_MODULE", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env = {k: v for k, v in os.environ.items() if k not in unwanted}
    env.update(
        {
            "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "127.0.0.1,stepaudit.example.org",
            "STATIC_ROOT": str(tmp_path / "static"),
            "STEPAUDIT_VAR_DIR": str(tmp_path / "var"),
            "DJANGO_SETTINGS_MODULE": "auditapp.settings.base",
        }
    )
    env.update(extra)
    return env


@pytest.mark.parametrize("proxy", ["0", "1"], ids=["direct", "behind-proxy"])
def test_production_settings_pass_check_deploy(tmp_path, proxy):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production_env(tmp_path, STEPAUDIT_BEHIND_PROXY=proxy),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("proxy", "expected"),
    [(None, "None"), ("0", "None"), ("1", "('HTTP_X_FORWARDED_PROTO', 'https')")],
    ids=["unset", "off", "on"],
)
def test_x_forwarded_proto_is_trusted_only_when_a_proxy_is_declared(tmp_path, proxy, expected):
    # given production settings with or without STEPAUDIT_BEHIND_PROXY
    env = production_env(tmp_path)
    if proxy is not None:
        env["STEPAUDIT_BEHIND_PROXY"] = proxy
    code = "from django.conf import settings; print(settings.SECURE_PROXY_SSL_HEADER)"
    # when
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # then a client's own X-Forwarded-Proto is believed only behind the declared proxy
    assert result.stdout.strip().splitlines()[-1] == expected, result.stderr


def test_debug_off_without_a_secret_key_refuses_to_start(tmp_path):
    env = production_env(tmp_path)
    env.pop("SECRET_KEY")
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


@pytest.mark.django_db(transaction=True)
def test_gunicorn_serves_pages_and_static_files_with_debug_off(tmp_path, child_env):
    # given collected static files and the production web command
    env = production_env(
        tmp_path, SECURE_SSL_REDIRECT="0", DATABASE_URL=child_env()["DATABASE_URL"]
    )
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--no-input", "-v0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
    )
    port = free_port()
    web = ManagedProcess(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "auditapp.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
        ],
        env=env,
        cwd=ROOT,
        log=tmp_path / "web.log",
    ).start()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(url + "/accounts/login/", timeout=60, process=web)
        # when
        page = urllib.request.urlopen(url + "/accounts/login/", timeout=10)
        css = urllib.request.urlopen(url + "/static/css/app.css", timeout=10)
        # then
        assert page.status == 200 and b"Sign in" in page.read()
        assert css.status == 200 and b"StepAudit" in css.read()
        assert "max-age" in css.headers.get("Cache-Control", "")
        assert page.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
        assert "no-store" in page.headers["Cache-Control"]
        assert "no-store" not in css.headers.get("Cache-Control", "")
    finally:
        web.stop()


@pytest.mark.celery
def test_a_task_round_trips_through_a_real_worker(celery_worker_process, web_process):
    # given a worker process and the web process on the same database and broker
    from django.core.cache import cache

    from annotations.tasks import ping_task

    celery_worker_process()
    page = urllib.request.urlopen(web_process + "/accounts/login/", timeout=10)
    assert page.status == 200
    token = uuid.uuid4().hex
    # when
    ping_task.delay(token)
    # then the worker wrote the answer where this process can read it
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and cache.get(f"ping:{token}") is None:
        time.sleep(0.2)
    assert cache.get(f"ping:{token}") == "pong"
