"""100 participants enrol through one study link at once and each rate 16 traces.

    .venv/bin/python bench/enrol_bench.py [--participants 100] [--think 1.0] [--port 21400]

What it does, bounded and only on 127.0.0.1:

1. A dedicated database (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/
   h_enrol_bench), emptied and migrated. A trace-rating audit with two Likert items over the
   demo traces under four trace types, a batch of 16 traces (four of each type), a study
   (consent, instructions) and one link with room for everyone — all through the services.
2. gunicorn serving the production settings (DEBUG off), several workers × threads.
3. All participants are released together and arrive within ``--arrival`` seconds (uniform;
   0: the same instant — a recruitment platform's launch sends its first hundred within
   seconds, not within one millisecond): GET the link with its PROLIFIC_PID (the consent
   page), POST consent (account + assignment made now: "enrolment"), the instructions, then
   for each of the 16 items GET the page and POST the rating (the POST is "per rating"), a
   think time between items (``--think`` seconds ± half: reading a whole trace and rating it
   takes people far longer), then the completion page, whose code is checked.
   Every unexpected status, redirect or exception is an error.
4. Afterwards, from the database: the trace type at each position of every assignment, and
   whether each type came equally often at each position (the Williams square filled in
   enrolment order).

Targets (issue 12): enrolment p95 < 200 ms, rating p95 < 50 ms, 0 errors, balance exact.
"""

import argparse
import asyncio
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import urlparse

from _setup import cpu_seconds, gunicorn_start
from _setup import percentile_ms as pct

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/h_enrol_bench"
TRACE_TYPES = ("chain-of-thought", "structured", "summary", "worked-example")
CODE = "BENCHDONE1"
SLUG = "enrol-bench"


def _database_url() -> str:
    url = os.environ.get("BENCH_DATABASE_URL") or DEFAULT_URL
    if urlparse(url).hostname not in ("127.0.0.1", "localhost"):
        sys.exit("the benchmark runs against 127.0.0.1 only")
    return url


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
    env.pop("REDIS_URL", None)  # the web processes' own cache: no shared Redis needed here
    return env


def prepare(url: str, participants: int) -> str:
    """A fresh database with the audit, batch, study and link; returns the link's token."""
    os.environ.update({k: v for k, v in _server_env(url).items() if k != "PYTHONPATH"})
    os.environ.pop("REDIS_URL", None)
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    from _setup import ensure_database

    ensure_database(url)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    call_command("migrate", verbosity=0)
    # The pages link their stylesheets through the production (manifest) static storage.
    call_command("collectstatic", interactive=False, verbosity=0)

    from annotations.models import Audit, Batch, BatchItem, Trace
    from annotations.services.audits import audit_create
    from annotations.services.imports import import_file
    from studies.services.setup import study_configure, study_link_create

    audit = audit_create(
        slug=SLUG,
        name="Enrolment bench",
        kind=Audit.Kind.TRACE_RATINGS,
        likert_items=[
            {"key": "interpretability", "label": "How easy to follow?", "min": 1, "max": 5},
            {"key": "cognitive_load", "label": "How much effort?", "min": 1, "max": 5},
        ],
    )
    import_file(audit=audit, path=ROOT / "docs/examples/traces.jsonl", segmenter_names=["given"])
    for i, trace in enumerate(Trace.objects.filter(audit=audit).order_by("external_id")):
        trace.trace_type = TRACE_TYPES[i % 4]
        trace.save(update_fields=["trace_type"])
    batch = Batch.objects.create(audit=audit, name="b16", segmentation="given", seed="b16")
    BatchItem.objects.bulk_create(
        [
            BatchItem(batch=batch, trace=t, stratum=t.trace_type, inclusion_probability=1.0)
            for trace_type in TRACE_TYPES
            for t in Trace.objects.filter(audit=audit, trace_type=trace_type).order_by("pk")[:4]
        ]
    )
    study_configure(
        audit=audit,
        settings={"consent": "You will rate 16 short texts.", "instructions": "Rate each text."},
    )
    link = study_link_create(audit=audit, batch=batch, capacity=participants, completion_code=CODE)
    connection.close()
    return link.token


def start_gunicorn(url: str, port: int, *, workers: int, threads: int) -> subprocess.Popen:
    return gunicorn_start(
        _server_env(url),
        port,
        workers=workers,
        threads=threads,
        log_name="enrol-bench-gunicorn.log",
        backlog=512,
    )


class Stats:
    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: list[str] = []
        self.completed = 0


COOKIE_RE = re.compile(r"^(sessionid|csrftoken)=([^;]*)")


async def participant(
    session, base: str, token: str, n: int, stats: Stats, start, think: float, arrival: float
):
    """One person through the link. Cookies by hand: the production cookies are Secure, and
    this runs over plain HTTP on 127.0.0.1."""
    rng = random.Random(n)
    cookies = {"csrftoken": secrets.token_hex(16)}  # 32 characters: a valid unmasked secret

    def headers() -> dict:
        return {
            "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items()),
            "X-CSRFToken": cookies["csrftoken"],
            "Referer": base + "/",
        }

    async def call(kind: str, method: str, path: str, data=None, expect=(200,)):
        t0 = time.perf_counter()
        async with session.request(
            method, base + path, data=data, headers=headers(), allow_redirects=False
        ) as response:
            body = await response.text()
            elapsed = time.perf_counter() - t0
            for value in response.headers.getall("Set-Cookie", []):
                match = COOKIE_RE.match(value)
                if match:
                    cookies[match.group(1)] = match.group(2)
        stats.latency[kind].append(elapsed)
        if response.status not in expect:
            raise RuntimeError(f"{kind} {method} {path}: HTTP {response.status} {body[:160]!r}")
        return response, body

    pid = f"bench{n:04d}{secrets.token_hex(4)}"
    try:
        await start.wait()
        await asyncio.sleep(rng.uniform(0, arrival))
        await call("link", "GET", f"/s/{token}/?PROLIFIC_PID={pid}")
        response, _ = await call(
            "enrolment",
            "POST",
            f"/s/{token}/consent/",
            {"platform_id": pid, "decision": "accept"},
            expect=(302,),
        )
        if "sessionid" not in cookies:
            raise RuntimeError("consent set no session")
        await call("page", "GET", f"/s/{token}/instructions/")
        response, _ = await call(
            "instructions", "POST", f"/s/{token}/instructions/", {}, expect=(302,)
        )
        location = response.headers["Location"]
        for number in range(1, 17):
            if location != f"/s/{token}/items/{number}/":
                raise RuntimeError(f"expected item {number}, sent to {location}")
            await call("page", "GET", location)
            await asyncio.sleep(max(0.0, rng.uniform(0.5, 1.5) * think))
            response, _ = await call(
                "rating",
                "POST",
                location,
                {
                    "likert-interpretability": str(rng.randint(1, 5)),
                    "likert-cognitive_load": str(rng.randint(1, 5)),
                    "shown_at": str(int(time.time() * 1000) - 5000),
                },
                expect=(302,),
            )
            location = response.headers["Location"]
        if location != f"/s/{token}/done/":
            raise RuntimeError(f"expected the completion page, sent to {location}")
        _, body = await call("page", "GET", location)
        if CODE not in body:
            raise RuntimeError("no completion code on the last page")
        stats.completed += 1
    except Exception as exc:  # every failure is counted and printed
        stats.errors.append(f"participant {n}: {exc!r}")


async def run(
    base: str, token: str, participants: int, think: float, arrival: float
) -> tuple[Stats, float]:
    import aiohttp

    stats = Stats()
    start = asyncio.Event()
    async with aiohttp.ClientSession(
        # A new connection per request: gunicorn closes idle keep-alive connections after
        # 2 s, and a think time is longer (reusing one the server just closed is a reset).
        connector=aiohttp.TCPConnector(limit=0, force_close=True),
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=120),
    ) as session:
        tasks = [
            asyncio.create_task(participant(session, base, token, n, stats, start, think, arrival))
            for n in range(participants)
        ]
        await asyncio.sleep(0.2)  # every task waiting at the start line
        t0 = time.perf_counter()
        start.set()
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - t0
    return stats, wall


def balance() -> tuple[bool, dict[int, Counter], int]:
    from annotations.models import AssignmentItem
    from studies.models import Participant

    per_position: dict[int, Counter] = defaultdict(Counter)
    for position, trace_type in AssignmentItem.objects.filter(
        assignment__participation__isnull=False
    ).values_list("position", "batch_item__trace__trace_type"):
        per_position[position][trace_type] += 1
    exact = all(len(set(c.values())) == 1 and len(c) == 4 for c in per_position.values())
    return exact, per_position, Participant.objects.count()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=100)
    parser.add_argument("--think", type=float, default=5.0, help="seconds between items (±50%%)")
    parser.add_argument(
        "--arrival", type=float, default=10.0, help="everyone arrives within this many seconds"
    )
    parser.add_argument("--port", type=int, default=21400)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()

    url = _database_url()
    token = prepare(url, args.participants)
    sys.path.insert(0, str(ROOT / "tests" / "support"))
    from processes import wait_for_http

    server = start_gunicorn(url, args.port, workers=args.workers, threads=args.threads)
    base = f"http://127.0.0.1:{args.port}"
    try:
        wait_for_http(base + "/accounts/login/", timeout=60)
        # Warm-up: each worker imports its views and opens its database connection (not
        # counted: a page that enrols nobody).
        asyncio.run(_warm(base, token, args.workers * args.threads))
        db_name = urlparse(url).path.lstrip("/")
        cpu_before = (cpu_seconds(f"127.0.0.1:{args.port}"), cpu_seconds(f" {db_name} "))
        stats, wall = asyncio.run(run(base, token, args.participants, args.think, args.arrival))
        server_cpu = cpu_seconds(f"127.0.0.1:{args.port}") - cpu_before[0]
        db_cpu = cpu_seconds(f" {db_name} ") - cpu_before[1]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    exact, per_position, enrolled = balance()

    lat = stats.latency
    print()
    print(
        f"PostgreSQL; gunicorn {args.workers} workers × {args.threads} threads on "
        f"{os.cpu_count()} CPUs (shared machine, load {os.getloadavg()[0]:.1f}); "
        f"{args.participants} participants arriving within {args.arrival:.0f} s, think time "
        f"{args.think:.1f} s ± 50%"
    )
    print(
        f"enrolment (consent POST: account + assignment): p50 {pct(lat['enrolment'], 0.5):.1f} ms"
        f", p95 {pct(lat['enrolment'], 0.95):.1f} ms   (target p95 < 200 ms)"
    )
    print(
        f"link opened (consent page GET): p50 {pct(lat['link'], 0.5):.1f} ms, "
        f"p95 {pct(lat['link'], 0.95):.1f} ms"
    )
    print(
        f"per rating (item POST, {len(lat['rating'])} ratings): p50 {pct(lat['rating'], 0.5):.1f}"
        f" ms, p95 {pct(lat['rating'], 0.95):.1f} ms   (target p95 < 50 ms)"
    )
    pages = lat["page"]
    print(f"item pages (GET): p50 {pct(pages, 0.5):.1f} ms, p95 {pct(pages, 0.95):.1f} ms")
    print(f"total wall time: {wall:.1f} s; completed {stats.completed}/{args.participants}")
    requests = sum(len(v) for v in lat.values())
    print(
        f"CPU per request ({requests} requests): gunicorn {1000 * server_cpu / requests:.1f} ms,"
        f" PostgreSQL {1000 * db_cpu / requests:.1f} ms — the latencies above include waiting"
        " for a CPU on a machine shared with other work"
    )
    print(f"errors: {len(stats.errors)}   (target 0)")
    for line in stats.errors[:10]:
        print("  ", line)
    rows = sorted(per_position)
    counts = {pos: dict(sorted(per_position[pos].items())) for pos in rows}
    distinct = sorted({n for c in per_position.values() for n in c.values()})
    print(
        f"counterbalancing: {enrolled} enrolled; each of the 4 types at each of the "
        f"{len(rows)} positions {distinct} times -> {'exact' if exact else 'NOT exact'}"
    )
    print(f"  position 1: {counts.get(1)}; position 16: {counts.get(16)}")


async def _warm(base: str, token: str, n: int) -> None:
    import aiohttp

    async def one(session) -> None:
        async with session.get(f"{base}/s/{token}/?PROLIFIC_PID=warm") as response:
            await response.read()

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(one(session) for _ in range(n)))


if __name__ == "__main__":
    main()
