"""Judge runs end to end: steps per second through Celery workers, as a share of the ideal.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/stepaudit_bench \\
    REDIS_URL=redis://127.0.0.1:6379/3 .venv/bin/python bench/judge_bench.py [--steps 5000]

What runs: N steps in PostgreSQL (a fresh audit each time); the fake OpenAI-compatible endpoint
as its own process at 100 ms latency; two ``celery worker --concurrency=1`` processes on the
``judges`` queue; real Redis as broker, cache and the rate limiter (an rpm limit far above the
load is set so every request goes through the shared limiter). The judge's concurrency is 64 in
total — two lanes of 32, one per worker (``parallel_chunks=2``) — so the ideal is
concurrency / latency = 640 steps/s. The clock runs from ``run_create`` to the run's
``finished_at``: queueing, prompt rendering, parsing and verdict writes are all inside.

Then the same with a 5% fault mix (500, 429, malformed body, truncated answer, hang for 30 s,
dropped connection), once per fault seed (``--fault-seeds``, default 3,4,5,6,7: where the
faults fall decides how long the run's end waits, so one seed is one draw) and in two styles
of 429: as OpenAI and Azure send it, ``retry-after-ms: 250``
beside ``Retry-After: 1`` (whole seconds, rounded up, as the header must be); and with only
``Retry-After: 1``. The judge's timeout is 1 s (10× the endpoint's latency); its back-off base
is min(0.5, timeout / 4) = 0.25 s (``judges.rendering``); every wait the server asks for is
honoured. Targets: ≥ 0.9 clean, ≥ 0.8 with faults (median over the seeds, OpenAI-style 429s).
The whole-second style is printed beside it: there one 429 in the run's last second holds the
end of an 8-second run for a full second (docs/judges.md, "Throughput").

For each run it prints the endpoint's view too: calls in flight per 0.5 s (the share of the
concurrency bound the client kept busy) and the slot-seconds the calls held, hung ones apart.
Everything listens on 127.0.0.1; each run is bounded by ``--run-deadline-s``.

The fault phase (``--phases faults``; private servers only, never the shared ones): a private
PostgreSQL (initdb in a temporary folder) and Redis on ports of STEPAUDIT_FAULT_PORTS
(default 21100-21199), two plain workers, beat and gunicorn (tests/support/faults.py). Each
drill starts a run of 264 steps at 300 ms per request and, once it has 40 verdicts, breaks one
thing: Redis killed (every key lost) and restarted after 2 s; PostgreSQL crashed
(``pg_ctl -m immediate``) for 10 s; every worker SIGKILLed and one new one started; every
worker killed together with a Redis restart. It prints the time from the service being back
to 16 more verdicts stored (target < 15 s), and checks each run ends done with exactly one
verdict per step. ``--fault-repeats`` drills per fault (median and worst printed).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _setup import django_setup  # noqa: E402

SLUG = "judge-bench"


def seed_steps(n_steps: int, steps_per_trace: int = 10) -> None:
    """A fresh audit with ``n_steps`` steps (2 conditions, one question per trace)."""
    from annotations.models import Audit, Condition, Question, Step, Trace
    from annotations.services.audits import audit_create
    from annotations.services.randomness import public_ids, seeded_random

    # Traces protect their condition: delete them (their steps and verdicts go with them) first.
    Trace.objects.filter(audit__slug=SLUG).delete()
    Audit.objects.filter(slug=SLUG).delete()
    audit = audit_create(slug=SLUG, name="Judge benchmark")
    conditions = [
        Condition.objects.create(audit=audit, name=name, blind_code=code)
        for name, code in (("teacher", "Arm Q"), ("student", "Arm W"))
    ]
    n_traces = (n_steps + steps_per_trace - 1) // steps_per_trace
    questions = Question.objects.bulk_create(
        Question(
            audit=audit,
            external_id=f"q{i}",
            stem=f"Question {i}: which drug is first line for condition {i % 37}?",
            options={"A": "Drug A", "B": "Drug B", "C": "Drug C", "D": "Drug D"},
            gold_answer="B",
        )
        for i in range(n_traces)
    )
    traces = Trace.objects.bulk_create(
        Trace(
            audit=audit,
            question=q,
            condition=conditions[i % 2],
            external_id=f"t{i}",
            text="…",
            final_answer="B",
        )
        for i, q in enumerate(questions)
    )
    ids = iter(public_ids(seeded_random(audit.blinding_seed, "bench"), n_steps))
    steps = []
    for t in traces:
        for k in range(steps_per_trace):
            if len(steps) == n_steps:
                break
            text = f"Step {k + 1} of trace {t.pk}: the finding points to mechanism {k * 7 % 11}."
            steps.append(
                Step(
                    audit=audit,
                    trace=t,
                    segmentation="given",
                    index=k,
                    text=text,
                    blinded_text=text,
                    blinding_version="raw",
                    public_id=next(ids),
                )
            )
    Step.objects.bulk_create(steps, batch_size=2000)


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "auditapp.settings.base",
        "LOG_LEVEL": "WARNING",
    }


@contextlib.contextmanager
def processes(cmds: list[list[str]], logs: list[Path]) -> Iterator[list[subprocess.Popen]]:
    procs = []
    try:
        for cmd, log in zip(cmds, logs, strict=True):
            procs.append(
                subprocess.Popen(
                    cmd,
                    cwd=ROOT,
                    env=_env(),
                    stdout=log.open("wb"),
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        yield procs
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, 15)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)


def cpu_seconds(pgid: int) -> float:
    """CPU time (user + system) of every live process in a process group, from /proc."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # field 5 (pgrp) is index 2 after the command name
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def wait_log(path: Path, needle: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and needle in path.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise RuntimeError(f"no {needle!r} in {path}:\n{path.read_text(errors='replace')[-2000:]}")


def one_run(*, name: str, base_url: str, args, ideal: float) -> float:
    from annotations.models import Audit
    from judges.models import JudgeRun
    from judges.services import judge_create_or_update, run_create, run_reconcile

    judge = judge_create_or_update(
        spec={
            "name": name,
            "base_url": base_url,
            "model": "fake-judge",
            "max_concurrency": args.concurrency,
            "parallel_chunks": args.workers,
            "rpm_limit": 10_000_000,
            "timeout_s": 1.0,
            "max_retries": 8,
            "max_parse_retries": 2,
        }
    )
    audit = Audit.objects.get(slug=SLUG)
    started = time.perf_counter()
    run = run_create(audit=audit, judge=judge)
    deadline = time.monotonic() + args.run_deadline_s
    polls = 0
    while time.monotonic() < deadline:
        # Light polling: this process shares the two cores with everything it measures.
        status = JudgeRun.objects.filter(pk=run.pk).values_list("status", flat=True).first()
        if status in JudgeRun.ENDED:
            break
        polls += 1
        if polls % 20 == 0:
            run_reconcile(run_id=run.pk, stale_after_s=30)
        time.sleep(0.1)
    wall = time.perf_counter() - started
    run.refresh_from_db()
    clock = (run.finished_at - run.created_at).total_seconds() if run.finished_at else wall
    rate = run.done / clock if clock else 0.0
    stats = orjson.loads(
        urllib.request.urlopen(base_url.removesuffix("/v1") + "/_stats", timeout=5).read()
    )
    print(
        f"{name:<14} {run.status:<6} {run.done}/{run.total} verdicts ({run.invalid} invalid, "
        f"{run.failed} failed) in {clock:6.2f}s: {rate:6.1f} steps/s, ratio {rate / ideal:.3f}; "
        f"requests={stats['requests']} max_in_flight={stats['max_in_flight']} "
        f"faults={stats['by_fault']}",
        flush=True,
    )
    from judges.models import JudgeVerdict

    hedged = JudgeVerdict.objects.filter(run=run, prompt_record__hedged=True).count()
    print("  " + timeline(run), flush=True)
    print("  " + occupancy(base_url, args.concurrency, run), flush=True)
    print(
        f"  tail hedging: {hedged} steps hedged, i.e. {hedged} duplicate requests "
        f"({hedged / max(1, stats['requests']):.2%} of the {stats['requests']} sent)",
        flush=True,
    )
    return rate / ideal


def occupancy(base_url: str, concurrency: int, run) -> str:
    """Calls in flight at the endpoint per 0.5 s, from its first call: the share of the
    concurrency bound used, and the slot-seconds that hung calls held until the timeout."""
    url = base_url.removesuffix("/v1") + "/_timeline?bucket_s=0.5"
    data = orjson.loads(urllib.request.urlopen(url, timeout=5).read())
    cells = " ".join(f"{x:.0f}" for x in data["in_flight"])
    first = data.get("first_call_epoch", 0) - run.created_at.timestamp()
    return (
        f"first call {first:.2f}s after run_create; in flight per 0.5 s: [{cells}] of "
        f"{concurrency}; slot-seconds {data['slot_s']:.1f} "
        f"(hung calls {data['hang_slot_s']:.1f}) = {data['slot_s'] / concurrency:.2f} s "
        "at full concurrency"
    )


def timeline(run) -> str:
    """When the share of verdicts was stored, from run_create (verdicts are stored in batches
    of at most 0.5 s, so these are late by up to that): where the start and the tail go."""
    from judges.models import JudgeVerdict

    stamps = sorted(
        (t - run.created_at).total_seconds()
        for t in JudgeVerdict.objects.filter(run=run).values_list("created_at", flat=True)
    )
    if not stamps:
        return "no verdicts"
    marks = [(q, stamps[min(len(stamps) - 1, int(q * len(stamps)))]) for q in (0.0, 0.5, 0.9, 0.98)]
    parts = [f"{q:.0%} at {t:.2f}s" for q, t in marks] + [f"100% at {stamps[-1]:.2f}s"]
    return "verdicts stored: first " + ", ".join(parts)[len("0% at ") :]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fault-rate", type=float, default=0.05)
    parser.add_argument(
        "--fault-seeds", default="3,4,5,6,7", help="seeds of the fake server's faults"
    )
    parser.add_argument(
        "--retry-after-ms", type=int, default=250, help="what an OpenAI-style 429 asks to wait"
    )
    parser.add_argument("--run-deadline-s", type=float, default=60)
    parser.add_argument("--only", default="", help="run only the endpoints whose name has this")
    parser.add_argument(
        "--phases", default="throughput,faults", help="throughput, faults or both (comma)"
    )
    parser.add_argument("--fault-repeats", type=int, default=2)
    args = parser.parse_args()
    phases = {p.strip() for p in args.phases.split(",") if p.strip()}
    if "throughput" in phases:
        throughput_phase(args)
    if "faults" in phases:
        fault_phase(args)


FAULT_OUTAGES = {"redis": 2.0, "postgres": 10.0, "worker": 1.0, "worker+redis": 2.0}
RECOVERY_TARGET_S = 15.0


def fault_phase(args) -> None:
    """Time to recover per fault, on private servers (see the module docstring)."""
    import tempfile

    sys.path.insert(0, str(ROOT / "tests" / "support"))
    from faults import FaultStack, drill, servers_missing

    missing = servers_missing()
    if missing:
        print(f"fault phase skipped: {missing}")
        return
    results: dict[str, list[dict]] = {}
    with FaultStack(
        Path(tempfile.mkdtemp(prefix="judge-bench-faults-")), fake_latency_ms=300
    ) as stack:
        # A clean run first: how long 264 steps take with nothing broken.
        from faults import run_start

        run_id = run_start(stack)
        started = time.monotonic()
        while stack.run_row(run_id)["status"] not in ("done", "failed", "cancelled"):
            time.sleep(0.1)
        print(f"faults: clean run of 264 steps {time.monotonic() - started:.1f}s", flush=True)
        for fault, outage_s in FAULT_OUTAGES.items():
            for _ in range(args.fault_repeats):
                result = drill(stack, fault, outage_s=outage_s)
                results.setdefault(fault, []).append(result)
                print(
                    f"  {fault:>12}: down {outage_s:g}s, verdicts again "
                    f"{result['recovered_s']}s after it was back; run {result['status']} in "
                    f"{result['run_s']}s, {result['steps_with_verdict']}/{result['steps']} steps "
                    f"judged, {result['steps_with_duplicates']} duplicated",
                    flush=True,
                )
    print("time to recover (service back -> verdicts flowing), target < 15 s:")
    for fault, runs in results.items():
        times = [r["recovered_s"] for r in runs]
        clean = all(
            r["status"] == "done"
            and r["steps_with_verdict"] == r["steps"]
            and not r["steps_with_duplicates"]
            for r in runs
        )
        worst = max((t for t in times if t is not None), default=float("inf"))
        ok = None not in times and worst < RECOVERY_TARGET_S and clean
        median = round(statistics.median(times), 2) if None not in times else None
        print(
            f"  {fault:>12}: median {median}s, worst {worst}s over {len(runs)} drills; "
            f"one verdict per step: {'yes' if clean else 'NO'} — {'OK' if ok else 'BELOW TARGET'}"
        )


def throughput_phase(args) -> None:
    if not os.environ.get("REDIS_URL"):
        os.environ["REDIS_URL"] = "redis://127.0.0.1:6379/3"
    django_setup()
    from judges.clients.fake_server import free_port

    ideal = args.concurrency / (args.latency_ms / 1000)
    seed_steps(args.steps)
    print(
        f"steps={args.steps} concurrency={args.concurrency} latency={args.latency_ms:g}ms "
        f"workers={args.workers} ideal={ideal:.0f} steps/s",
        flush=True,
    )
    logs = ROOT / "var" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    fake = [py, "-m", "judges.clients.fake_server", "--latency-ms", str(args.latency_ms)]
    # One endpoint per run, so its statistics and timeline are that run's alone.
    styles = {
        "ms": ["--retry-after-ms", str(args.retry_after_ms)],  # 429s as OpenAI / Azure send them
        "s": ["--retry-after-s", "1"],  # 429s with only a whole-second Retry-After
    }
    endpoints = {"clean": []}
    for seed in (int(x) for x in args.fault_seeds.split(",")):
        for style, extra in styles.items():
            faults = ["--fault-rate", str(args.fault_rate), "--seed", str(seed), *extra]
            endpoints[f"faults-{style}-seed{seed}"] = faults
    endpoints = {k: v for k, v in endpoints.items() if args.only in k}
    ports = {name: free_port() for name in endpoints}
    cmds = [[*fake, "--port", str(ports[name]), *extra] for name, extra in endpoints.items()]
    cmds += [
        [py, "-m", "celery", "-A", "auditapp", "worker", "-Q", "judges", "--concurrency=1",
         "--pool=prefork", f"--hostname=bench{i}@%h", "--without-gossip", "--without-mingle",
         "--without-heartbeat", "--loglevel=INFO"]
        for i in range(args.workers)
    ]  # fmt: skip
    paths = [logs / f"fake-{name}.log" for name in endpoints]
    paths += [logs / f"worker-{i}.log" for i in range(args.workers)]
    ratios: dict[str, float] = {}
    with processes(cmds, paths) as procs:
        for port in ports.values():
            wait_http(f"http://127.0.0.1:{port}/v1/models")
        for path in paths[len(endpoints) :]:
            wait_log(path, "ready")
        for name, port in ports.items():
            before = [cpu_seconds(p.pid) for p in procs]
            ratios[name] = one_run(
                name=f"bench-{name}", base_url=f"http://127.0.0.1:{port}/v1", args=args, ideal=ideal
            )
            used = [a - b for a, b in zip([cpu_seconds(p.pid) for p in procs], before, strict=True)]
            print(
                f"  CPU seconds: endpoint {used[list(ports).index(name)]:.1f}, workers "
                + ", ".join(f"{u:.1f}" for u in used[len(endpoints) :]),
                flush=True,
            )
    clean = ratios.get("clean", float("nan"))
    by_style = {
        style: statistics.median(
            [r for n, r in ratios.items() if n.startswith(f"faults-{style}-")] or [float("nan")]
        )
        for style in styles
    }
    print(
        f"ratio clean {clean:.3f} (target 0.9): {'OK' if clean >= 0.9 else 'BELOW TARGET'}\n"
        f"ratio with 5% faults, 429s with retry-after-ms {args.retry_after_ms} "
        f"(median of {len(args.fault_seeds.split(','))} seeds) {by_style['ms']:.3f} "
        f"(target 0.8): {'OK' if by_style['ms'] >= 0.8 else 'BELOW TARGET'}\n"
        f"ratio with 5% faults, 429s with only Retry-After: 1 (median) {by_style['s']:.3f} "
        "(each 429 in the run's last second holds the end for a full second: see docs/judges.md)"
    )


if __name__ == "__main__":
    main()
