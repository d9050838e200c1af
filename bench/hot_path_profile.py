"""The hot requests in one process: statements, wall and CPU per request, and a cProfile.

    .venv/bin/python bench/hot_path_profile.py label [--n 200] [--profile 25]
    .venv/bin/python bench/hot_path_profile.py study [--n 30] [--profile 25]

Every request goes through the whole middleware stack (Django's test client, production
settings, DEBUG off) on PostgreSQL:

* ``label``: "save & next" (PUT …/label/?next=unlabelled) on the label-loop bench's database
  (BENCH_DATABASE_URL, default stepaudit_labelbench: run bench/label_loop_bench.py once
  first); one bench clinician's assignment with a server-side session, as the bench does.
* ``study``: the enrolment bench's database (run bench/enrol_bench.py once first; its link
  gets a new link): for each of ``--n`` newcomers the link page, consent (enrolment), the
  instructions, then every item page and rating POST.

Prints per kind of request: count, statements per request, wall and CPU ms per request
(p50, mean), then the top functions by cumulative time under cProfile (``--profile`` rows)
over a second run of half as many.
"""

import argparse
import cProfile
import io
import os
import pstats
import secrets
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def _setup(url: str) -> None:
    os.environ.update(
        DATABASE_URL=url,
        DJANGO_SETTINGS_MODULE="auditapp.settings.base",
        DEBUG="0",
        SECRET_KEY=os.environ.get("BENCH_SECRET_KEY", "bench-" + "k" * 50),
        ALLOWED_HOSTS="testserver,127.0.0.1",
        SECURE_SSL_REDIRECT="0",
        SECURE_HSTS_SECONDS="0",
        LOG_LEVEL="WARNING",
    )
    import django

    django.setup()


_HANDLER = None


def _client(**defaults):
    """A test client sharing one handler: the middleware chain is built once, as in a
    server's worker (WhiteNoise scans the static files when it is built)."""
    global _HANDLER
    from django.test import Client
    from django.test.client import ClientHandler

    client = Client(enforce_csrf_checks=True, **defaults)
    if _HANDLER is None:
        _HANDLER = ClientHandler(enforce_csrf_checks=True)
    client.handler = _HANDLER
    return client


class Recorder:
    def __init__(self, profiler=None, only: str = "") -> None:
        self.rows: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
        self.profiler, self.only = profiler, only

    def call(self, kind: str, fn, *args, **kwargs):
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        w0, c0 = time.perf_counter(), time.process_time()
        with CaptureQueriesContext(connection) as queries:
            if self.only and kind == self.only:
                self.profiler.enable()
                response = fn(*args, **kwargs)
                self.profiler.disable()
            else:
                response = fn(*args, **kwargs)
        self.rows[kind].append(
            (time.perf_counter() - w0, time.process_time() - c0, len(queries.captured_queries))
        )
        return response

    def report(self) -> None:
        # CPU p10 as well: on a shared machine the low quantiles move least with the load.
        print(f"{'request':<28}{'n':>5}{'stmts':>7}{'wall p50':>10}{'CPU p50':>9}{'CPU p10':>9}")
        for kind, rows in self.rows.items():
            walls = sorted(r[0] * 1000 for r in rows)
            cpus = sorted(r[1] * 1000 for r in rows)
            stmts = sorted({r[2] for r in rows})
            shown = str(stmts[0]) if len(stmts) == 1 else f"{stmts[0]}-{stmts[-1]}"
            print(
                f"{kind:<28}{len(rows):>5}{shown:>7}{statistics.median(walls):>9.1f} "
                f"{statistics.median(cpus):>8.2f} {cpus[len(cpus) // 10]:>8.2f}"
            )


def _client_with_session(user):
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    csrf = secrets.token_hex(16)
    client = _client(HTTP_X_CSRFTOKEN=csrf, HTTP_REFERER="http://x/")
    client.cookies["sessionid"] = store.session_key
    client.cookies["csrftoken"] = csrf
    return client


def run_label(n: int, recorder: Recorder) -> None:
    import json

    from django.db.models import Count, Q

    from annotations.models import Assignment

    assignment = (
        Assignment.objects.filter(annotator__username__startswith="bench-clinician-")
        .annotate(open=Count("items", filter=Q(items__label__isnull=True)))
        .filter(open__gte=n + 1)
        .order_by("-pk")
        .select_related("annotator")
        .first()
    )
    if assignment is None:
        sys.exit("no bench assignment with room: run bench/label_loop_bench.py first")
    client = _client_with_session(assignment.annotator)
    api = f"/api/my/assignments/{assignment.public_id}"
    item = recorder.call("GET next/", client.get, f"{api}/next/").json()
    for i in range(n):
        body = {
            "verdict": ("correct", "error", "abstain")[i % 3],
            "error_category": item["error_categories"][0] if i % 3 == 1 else "",
            "comment": "",
            "elapsed_ms": 4000,
        }
        response = recorder.call(
            "PUT label/?next=unlabelled",
            client.put,
            f"{api}/items/{item['position']}/label/?next=unlabelled",
            json.dumps(body),
            content_type="application/json",
        )
        assert response.status_code == 200, response.content[:300]
        item = response.json()["next"]


def run_study(n: int, recorder: Recorder) -> None:
    import re

    from studies.models import StudyLink
    from studies.services.setup import study_link_create

    last = StudyLink.objects.select_related("study__audit", "batch").order_by("-pk").first()
    if last is None:
        sys.exit("no study link: run bench/enrol_bench.py first")
    # A new link on the bench's batch for each run (the bench's own is full).
    token = study_link_create(
        audit=last.study.audit, batch=last.batch, capacity=n, completion_code="PROFILED"
    ).token
    for p in range(n):
        csrf = secrets.token_hex(16)
        client = _client(HTTP_REFERER="http://x/")
        client.cookies["csrftoken"] = csrf
        pid = f"prof{p:04d}{secrets.token_hex(4)}"
        recorder.call("GET link", client.get, f"/s/{token}/?PROLIFIC_PID={pid}")
        response = recorder.call(
            "POST consent (enrolment)",
            client.post,
            f"/s/{token}/consent/",
            {"platform_id": pid, "decision": "accept"},
            HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value,
        )
        assert response.status_code == 302, response.content[:300]
        recorder.call("GET instructions", client.get, f"/s/{token}/instructions/")
        response = recorder.call(
            "POST instructions",
            client.post,
            f"/s/{token}/instructions/",
            {},
            HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value,
        )
        location = response["Location"]
        while re.search(r"/items/\d+/$", location):
            recorder.call("GET item page", client.get, location)
            response = recorder.call(
                "POST rating",
                client.post,
                location,
                {
                    "likert-interpretability": "3",
                    "likert-cognitive_load": "4",
                    "shown_at": str(int(time.time() * 1000) - 5000),
                },
                HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value,
            )
            assert response.status_code == 302, response.content[:300]
            location = response["Location"]
        recorder.call("GET done", client.get, location)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("label", "study"))
    parser.add_argument("--n", type=int, default=0)
    parser.add_argument("--profile", type=int, default=25, help="cProfile rows (0: none)")
    parser.add_argument("--only", default="", help="profile only this kind of request")
    args = parser.parse_args()
    default_db = "stepaudit_labelbench" if args.what == "label" else "h_enrol_bench"
    url = os.environ.get("BENCH_DATABASE_URL") or f"postgres://postgres@127.0.0.1:5432/{default_db}"
    _setup(url)
    run = run_label if args.what == "label" else run_study
    n = args.n or (200 if args.what == "label" else 30)
    warm = Recorder()
    run(2 if args.what == "label" else 1, warm)  # imports, prepared statements, caches
    recorder = Recorder()
    run(n, recorder)  # timed without the profiler's overhead
    recorder.report()
    if args.profile:
        # CPU time, not wall: on a shared machine waiting for a core is not our cost. With
        # --only, just the requests of that kind are profiled.
        profiler = cProfile.Profile(time.process_time)
        profiled = Recorder(profiler=profiler, only=args.only)
        if not args.only:
            profiler.enable()
        run(max(1, n // 2), profiled)
        profiler.disable()
        out = io.StringIO()
        order = os.environ.get("PROFILE_SORT", "cumulative")
        pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(args.profile)
        print(out.getvalue())


if __name__ == "__main__":
    main()
