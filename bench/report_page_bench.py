"""The researcher's report page of the demo audit: latency of 50 sequential GETs, cold then warm.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/h_report \
        .venv/bin/python bench/report_page_bench.py [--port 18410] [--requests 50]

Seeds the demo (``seed_demo`` and ``seed_demo_judges``, idempotent) into the PostgreSQL
database, signs the demo researcher in (a session row, as the sign-in page would write it),
starts gunicorn (one worker, ``bench/_setup.py``) on 127.0.0.1 and times 50 sequential GETs of
``/reports/audits/demo/`` after clearing the cache: the first one computes the report (cold),
the other 49 find it (warm). Then one label is changed and the next GET must show it (cold
again, the cache key moved). Target (issue 10): p50 and p95 of the warm GETs under 300 ms.
Prints wall latencies and the CPU seconds of the gunicorn worker and of the database.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import time
import urllib.request
from pathlib import Path

from _setup import cpu_seconds, gunicorn_start, percentile_ms

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/stepaudit_report_page_bench"
TARGET_MS = 300.0
PAGE = "/reports/audits/demo/"


def _server_env(url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=url,
        DJANGO_SETTINGS_MODULE="auditapp.settings.base",
        DEBUG="0",
        SECRET_KEY=os.environ.get("BENCH_SECRET_KEY", "bench-" + "k" * 50),
        ALLOWED_HOSTS="127.0.0.1",
        SECURE_SSL_REDIRECT="0",
        SECURE_HSTS_SECONDS="0",
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    env.pop("REDIS_URL", None)  # the file cache of the server: no shared Redis needed here
    return env


def prepare(url: str) -> str:
    """Seed the demo and return a session key of the demo researcher."""
    os.environ.update({k: v for k, v in _server_env(url).items() if k != "PYTHONPATH"})
    os.environ.pop("REDIS_URL", None)
    # The demo judge's (never called) URL is on loopback, which production settings refuse.
    os.environ["STEPAUDIT_JUDGE_ALLOWED_HOSTS"] = "127.0.0.0/8"
    sys.path.insert(0, str(ROOT))
    from _setup import ensure_database

    ensure_database(url)
    import django

    django.setup()
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
    )
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)
    call_command("seed_demo", "--credentials-file", str(ROOT / "var" / "bench-demo-accounts.txt"))
    call_command("seed_demo_judges")
    user = get_user_model().objects.get(username="researcher")
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


def cache_clear() -> None:
    from django.core.cache import cache

    cache.clear()


def label_add() -> object:
    """One clinician labels one more step of the demo (as the label page would save it)."""
    from annotations.models.batches import AssignmentItem
    from annotations.models.labels import Label

    slot = (
        AssignmentItem.objects.filter(
            assignment__batch__audit__slug="demo",
            label__isnull=True,
            is_hidden_repeat=False,
            batch_item__is_gold=False,
        )
        .select_related("assignment", "batch_item")
        .order_by("pk")
        .first()
    )
    return Label.objects.create(
        assignment_item=slot,
        assignment=slot.assignment,
        step_id=slot.batch_item.step_id,
        verdict="error",
    )


def get(base: str, session_key: str) -> tuple[float, str]:
    request = urllib.request.Request(base + PAGE, headers={"Cookie": f"sessionid={session_key}"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        body = response.read().decode()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")
    return time.perf_counter() - started, body


def wait_up(base: str, deadline: float = 60.0) -> None:
    started = time.perf_counter()
    while time.perf_counter() - started < deadline:
        try:
            urllib.request.urlopen(base + "/healthz", timeout=2).read()
            return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("gunicorn did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=18410)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL") or DEFAULT_URL
    if not url.startswith("postgres"):
        sys.exit("benchmarks run on PostgreSQL: set DATABASE_URL=postgres://...")
    session_key = prepare(url)
    cache_clear()
    base = f"http://127.0.0.1:{args.port}"
    server = gunicorn_start(
        _server_env(url), args.port, workers=1, threads=1, log_name="report-page-bench.log"
    )
    try:
        wait_up(base)
        worker_cpu = cpu_seconds(f"127.0.0.1:{args.port}")
        database = url.rsplit("/", 1)[1]
        database_cpu = cpu_seconds(f"postgres {database} ")
        times = [get(base, session_key)[0] for _ in range(args.requests)]
        worker_cpu = cpu_seconds(f"127.0.0.1:{args.port}") - worker_cpu
        database_cpu = cpu_seconds(f"postgres {database} ") - database_cpu
        cold, warm = times[0], times[1:]
        print(f"{args.requests} sequential GETs of {PAGE}")
        print(f"cold (first, computes the report): {cold * 1000:7.0f} ms")
        print(
            f"warm p50 {percentile_ms(warm, 0.5):6.0f} ms  p95 {percentile_ms(warm, 0.95):6.0f} ms"
            f"  max {max(warm) * 1000:6.0f} ms  (target < {TARGET_MS:.0f} ms: "
            f"{'OK' if percentile_ms(warm, 0.95) < TARGET_MS else 'MISSED'})"
        )
        print(f"CPU: gunicorn {worker_cpu:.2f} s, PostgreSQL {database_cpu:.2f} s for all GETs")
        _, body = get(base, session_key)
        shown = re.search(r"expert (\d+)", body)
        label = label_add()
        try:
            after, body = get(base, session_key)
            again, _ = get(base, session_key)
        finally:
            label.delete()  # the demo as it was
        now = re.search(r"expert (\d+)", body)
        print(
            f"after a clinician saved one more label: {after * 1000:.0f} ms (recomputed), then "
            f"{again * 1000:.0f} ms; expert labels shown "
            f"{shown.group(1) if shown else 0} -> {now.group(1) if now else 0}"
        )
        print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
