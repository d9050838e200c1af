"""The label loop under load: 32 clinicians on one PostgreSQL holding 1,000,000 steps.

    .venv/bin/python bench/label_loop_bench.py [--clinicians 32] [--seconds 20]

What it does, bounded in count and time and only on 127.0.0.1:

1. A dedicated database (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/
   stepaudit_labelbench), migrated. The first run writes 10,000 questions, 100,000 traces
   and 1,000,000 steps with INSERT … SELECT generate_series (not the import path; a minute
   or so); later runs reuse them.
2. A batch drawn by the real service (stratified by condition, overlap 2) and assigned to 32
   clinicians by the real service; sessions made server-side (no password hashing in the loop).
3. gunicorn serving the production settings (DEBUG off), several workers × threads.
4. 32 clinicians at once, each doing what the page does: GET …/next/ on first load, then
   for every item one PUT …/label/?next=unlabelled ("save & next": the answer holds the next
   item to show, so one request per label).
   Phase "capacity": no pause → labels per second overall.
   Phase "brisk": 1 s pause between items (first request spread over one pause, so the
   clinicians are not in lockstep) → p50/p95/p99 per call.
   Every item handed out is checked against the clinician's own labelled set (a double
   hand-out) and every non-2xx answer or exception is an error.
"""

import argparse
import asyncio
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from _setup import cpu_seconds, gunicorn_start
from _setup import percentile_ms as pct

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/stepaudit_labelbench"
N_QUESTIONS = 10_000
N_TRACES = 100_000
STEPS_PER_TRACE = 10  # 1,000,000 steps
CONDITIONS = ("teacher", "student-before", "student-after", "student-rl")
BENCH_SLUG = "label-bench"


def _database_url() -> str:
    url = os.environ.get("BENCH_DATABASE_URL") or DEFAULT_URL
    parsed = urlparse(url)
    if parsed.hostname not in ("127.0.0.1", "localhost"):
        sys.exit("the benchmark runs against 127.0.0.1 only")
    return url


def _ensure_database(url: str) -> None:
    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def _server_env(url: str) -> dict:
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
    return env


def django_setup(url: str) -> None:
    os.environ.update({k: v for k, v in _server_env(url).items() if k != "PYTHONPATH"})
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def generate_rows() -> "object":
    """The audit with 1,000,000 steps, written by SQL (reused when already there)."""
    from django.db import connection, transaction

    from annotations.models import Audit, Step
    from annotations.services.audits import audit_create
    from annotations.services.conditions import conditions_ensure

    audit = Audit.objects.filter(slug=BENCH_SLUG).first()
    expected = N_TRACES * STEPS_PER_TRACE
    if audit is not None and Step.objects.filter(audit=audit).count() == expected:
        return audit
    if audit is not None:
        audit.delete()
    started = time.perf_counter()
    with transaction.atomic():
        audit = audit_create(slug=BENCH_SLUG, name="Label loop benchmark")
        conditions = conditions_ensure(audit=audit, names=list(CONDITIONS))
        condition_ids = [conditions[n].pk for n in CONDITIONS]
        with connection.cursor() as cur:
            cur.execute(
                """
                INSERT INTO annotations_question (audit_id, external_id, stem, options,
                    gold_answer, dataset, metadata)
                SELECT %s, 'bq-' || i,
                    'Question ' || i || ': which of the following best explains the finding?',
                    '{"A": "first option", "B": "second option", "C": "third option",
                      "D": "fourth option"}'::jsonb, 'B', 'bench', '{}'::jsonb
                FROM generate_series(1, %s) AS i
                """,
                [audit.pk, N_QUESTIONS],
            )
            cur.execute("SELECT min(id) FROM annotations_question WHERE audit_id = %s", [audit.pk])
            q0 = cur.fetchone()[0]
            cur.execute(
                """
                INSERT INTO annotations_trace (audit_id, question_id, condition_id, external_id,
                    sample_index, text, final_answer, blinded_final_answer, answer_correct,
                    confidence, trace_type, metadata)
                SELECT %s, %s + (i %% %s), (%s::bigint[])[1 + i %% 4], 'bt-' || i, 0, '',
                    CASE WHEN i %% 3 = 0 THEN 'C' ELSE 'B' END,
                    CASE WHEN i %% 3 = 0 THEN 'C' ELSE 'B' END, i %% 3 <> 0, 0.8,
                    'chain-of-thought', '{}'::jsonb
                FROM generate_series(1, %s) AS i
                """,
                [audit.pk, q0, N_QUESTIONS, condition_ids, N_TRACES],
            )
            cur.execute(
                """
                INSERT INTO annotations_step (audit_id, trace_id, segmentation, index, text,
                    blinded_text, blinding_version, public_id, kind)
                SELECT t.audit_id, t.id, 'given', s,
                    'Step ' || s || ' of trace ' || t.id,
                    'Step ' || (s + 1) || ': the finding points to the second option because '
                        || 'the history and the examination agree (' || md5(t.id || ':' || s)
                        || ').',
                    'v1', substr(md5(t.id || '-' || s || '-bench'), 1, 16), ''
                FROM annotations_trace t CROSS JOIN generate_series(0, %s) AS s
                WHERE t.audit_id = %s
                """,
                [STEPS_PER_TRACE - 1, audit.pk],
            )
        connection.cursor().execute("ANALYZE")
    print(f"generated {expected:,} steps in {time.perf_counter() - started:.0f} s")
    return audit


def prepare_assignments(audit, *, clinicians: int, items_each: int) -> list[dict]:
    """A fresh batch (the real services) and one server-side session per clinician."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

    from annotations.roles import Role
    from annotations.services.batches import batch_assign, batch_build
    from annotations.services.users import user_create_or_update

    users = [
        user_create_or_update(
            username=f"bench-clinician-{i:02d}", role=Role.CLINICIAN, password=secrets.token_hex(8)
        )
        for i in range(clinicians)
    ]
    started = time.perf_counter()
    name = f"bench-{int(time.time())}"
    batch = batch_build(
        audit=audit,
        name=name,
        size=clinicians * items_each // 2,
        segmentation="given",
        overlap=2,
        stratify_by=["answer_correct"],
    )
    assignments = batch_assign(batch=batch, annotators=users)
    print(
        f"batch {name!r}: {batch.items.count():,} steps drawn from "
        f"{batch.design['population']:,}, assigned to {len(users)} clinicians "
        f"in {time.perf_counter() - started:.1f} s"
    )
    # The server's own session engine (cached_db: the cache is Redis when REDIS_URL is set).
    SessionStore = import_module(settings.SESSION_ENGINE).SessionStore
    out = []
    for user, assignment in zip(users, assignments, strict=True):
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        # The backend that loads users (the first one, axes, only guards sign-in).
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        out.append(
            {
                "session": session.session_key,
                "csrf": secrets.token_hex(16),  # 32 characters: a valid unmasked secret
                "assignment": assignment.public_id,
            }
        )
    return out


def start_gunicorn(url: str, port: int, *, workers: int, threads: int) -> subprocess.Popen:
    return gunicorn_start(
        _server_env(url),
        port,
        workers=workers,
        threads=threads,
        log_name="label-bench-gunicorn.log",
        backlog=256,
    )


class Stats:
    def __init__(self) -> None:
        # "next": GET next/ (first load); "label": PUT label/?next=… (save & next)
        self.latency: dict[str, list[float]] = {"next": [], "label": []}
        self.errors: list[str] = []
        self.labels = 0
        self.double_handouts = 0


async def clinician_loop(
    session,
    base: str,
    who: dict,
    stats: Stats,
    *,
    until: float,
    pause: float,
    max_labels: int,
    labelled: set[int],
    rng,
) -> None:
    headers = {
        "Cookie": f"sessionid={who['session']}; csrftoken={who['csrf']}",
        "X-CSRFToken": who["csrf"],
        "Content-Type": "application/json",
        "Referer": base + "/",
    }
    api = f"{base}/api/my/assignments/{who['assignment']}"
    count = 0
    if pause:
        # People do not start in step: spread the first request over one pause, so 32
        # clinicians do not arrive as one burst every second (they keep their 1 s pause).
        await asyncio.sleep(rng.uniform(0, pause))
    item = None  # the item on screen; None: load the first one (or reload after an error)
    while time.perf_counter() < until and count < max_labels:
        if item is None:
            t0 = time.perf_counter()
            try:
                async with session.get(f"{api}/next/", headers=headers) as response:
                    body = await response.read()
                    status = response.status
            except Exception as exc:
                stats.errors.append(f"next: {exc!r}")
                continue
            stats.latency["next"].append(time.perf_counter() - t0)
            if status == 204:
                break
            if status != 200:
                stats.errors.append(f"next: HTTP {status} {body[:200]!r}")
                continue
            item = json.loads(body)
            if item["position"] in labelled:
                stats.double_handouts += 1
        position = item["position"]
        verdict = rng.choice(("correct", "correct", "error", "abstain"))
        payload = {
            "verdict": verdict,
            "error_category": item["error_categories"][0] if verdict == "error" else "",
            "comment": "",
            "elapsed_ms": rng.randint(2000, 30000),
        }
        t0 = time.perf_counter()
        try:
            async with session.put(
                f"{api}/items/{position}/label/?next=unlabelled",
                headers=headers,
                data=json.dumps(payload),
            ) as response:
                body = await response.read()
                status = response.status
        except Exception as exc:
            stats.errors.append(f"label: {exc!r}")
            item = None
            continue
        stats.latency["label"].append(time.perf_counter() - t0)
        if status != 200:
            stats.errors.append(f"label: HTTP {status} {body[:200]!r}")
            item = None
            continue
        labelled.add(position)
        stats.labels += 1
        count += 1
        item = json.loads(body)["next"]
        if item is None:
            break  # every item done
        if item["position"] in labelled:
            stats.double_handouts += 1
        if pause:
            await asyncio.sleep(pause)


async def run_phase(
    base: str,
    people: list[dict],
    *,
    seconds: float,
    pause: float,
    max_labels: int,
    labelled: list[set[int]],
) -> tuple[Stats, float]:
    import random

    import aiohttp

    stats = Stats()
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=30),
    ) as session:
        started = time.perf_counter()
        until = started + seconds
        await asyncio.gather(
            *(
                clinician_loop(
                    session,
                    base,
                    who,
                    stats,
                    until=until,
                    pause=pause,
                    max_labels=max_labels,
                    labelled=labelled[i],
                    rng=random.Random(i),
                )
                for i, who in enumerate(people)
            )
        )
        elapsed = time.perf_counter() - started
    return stats, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clinicians", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--items-each", type=int, default=600)
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    args = parser.parse_args()

    url = _database_url()
    _ensure_database(url)
    django_setup(url)
    audit = generate_rows()
    from annotations.models import Step

    n_steps = Step.objects.filter(audit=audit).count()
    people = prepare_assignments(audit, clinicians=args.clinicians, items_each=args.items_each)
    from django.db import connections

    connections.close_all()

    from tests.support.processes import free_port, wait_for_http

    port = args.port or free_port()
    server = start_gunicorn(url, port, workers=args.workers, threads=args.threads)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(base + "/accounts/login/", timeout=60)
        labelled = [set() for _ in people]
        # Warm-up: every worker opens its connections (not counted).
        asyncio.run(run_phase(base, people, seconds=2, pause=0, max_labels=3, labelled=labelled))
        # PostgreSQL backends show the database name in their process title.
        db_name = urlparse(url).path.lstrip("/")
        server_cpu = cpu_seconds(f"127.0.0.1:{port}")
        db_cpu = cpu_seconds(f" {db_name} ")
        own_cpu = time.process_time()
        capacity, elapsed = asyncio.run(
            run_phase(
                base,
                people,
                seconds=args.seconds,
                pause=0,
                max_labels=args.items_each // 2 - 10,
                labelled=labelled,
            )
        )
        server_cpu = cpu_seconds(f"127.0.0.1:{port}") - server_cpu
        db_cpu = cpu_seconds(f" {db_name} ") - db_cpu
        own_cpu = time.process_time() - own_cpu
        load = os.getloadavg()[0]
        brisk_load = [os.getloadavg()[0]]
        brisk, _ = asyncio.run(
            run_phase(
                base,
                people,
                seconds=args.seconds,
                pause=1.0,
                max_labels=int(args.seconds) + 5,
                labelled=labelled,
            )
        )
        brisk_load.append(os.getloadavg()[0])
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

    rate = capacity.labels / elapsed
    print()
    print(
        f"database: PostgreSQL, {n_steps:,} steps; gunicorn {args.workers} workers × "
        f"{args.threads} threads; {len(people)} clinicians; {os.cpu_count()} CPUs"
    )
    print(
        f"capacity (no pause, {elapsed:.1f} s): {capacity.labels:,} labels → "
        f"{rate:.0f} labels/s  (first-load next p50 {pct(capacity.latency['next'], 0.5):.1f} ms,"
        f" save & next p50 {pct(capacity.latency['label'], 0.5):.1f} ms)"
    )
    per_label = 1000 / max(capacity.labels, 1)
    print(
        f"CPU per label in the capacity phase: gunicorn {server_cpu * per_label:.1f} ms, "
        f"PostgreSQL {db_cpu * per_label:.1f} ms, load generator {own_cpu * per_label:.1f} ms"
        f"; machine load average {load:.1f} (other work on the machine counts against us)"
    )
    print(
        f"machine load average at the brisk phase's start and end: {brisk_load[0]:.1f}, "
        f"{brisk_load[1]:.1f}"
    )
    names = {"next": "GET next/ (first load)", "label": "PUT label/?next= (save & next)"}
    for call in ("next", "label"):
        values = brisk.latency[call]
        print(
            f"brisk (1 s pause) {names[call]}: n={len(values):,}  p50 {pct(values, 0.5):.1f} ms"
            f"  p95 {pct(values, 0.95):.1f} ms  p99 {pct(values, 0.99):.1f} ms"
            f"  mean {statistics.fmean(values) * 1000 if values else float('nan'):.1f} ms"
        )
    errors = capacity.errors + brisk.errors
    doubles = capacity.double_handouts + brisk.double_handouts
    print(f"errors: {len(errors)}   double hand-outs: {doubles}")
    for line in errors[:5]:
        print("  ", line)
    p95 = max(pct(brisk.latency[c], 0.95) for c in ("next", "label"))
    verdict = rate >= 200 and p95 < 30 and not errors and not doubles
    print(
        "targets (≥200 labels/s, p95 < 30 ms, no error, no double hand-out):",
        "met" if verdict else "NOT met",
    )
    print(
        json.dumps(
            {
                "labels_per_s": round(rate, 1),
                "p95_ms": round(p95, 1),
                "errors": len(errors),
                "double_handouts": doubles,
            }
        )
    )


if __name__ == "__main__":
    main()
