"""Throughput of the judge client against the fake endpoint, as a share of the ideal.

    .venv/bin/python bench/client_bench.py [--n 3000] [--concurrency 64] [--latency-ms 100]

Starts ``judges.clients.fake_server`` as a separate process (so server and client each get a
core of the 2-core machine), then runs N step prompts through ``judge_many`` clean and with a
5% fault mix (500, 429 with Retry-After 1 s, malformed body, truncated answer, hang, dropped
connection), and — if installed — through a plain httpx client and the openai SDK for
comparison. Prints requests/s and the ratio to the ideal concurrency / latency (640/s).

The fault run uses a 1 s client timeout (10x the latency) and a 0.05-1 s back-off: a hang costs
one timeout and a 429 its Retry-After, so these settings decide how much of the bound survives.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from judges.clients.fake_server import free_port  # noqa: E402
from judges.clients.openai_compat import ClientSettings, JudgeRequest, judge_many  # noqa: E402
from judges.prompts import DEFAULT_TEMPLATE, render_messages  # noqa: E402

with contextlib.suppress(ImportError):
    import uvloop  # optional: used only when already installed; not a project dependency

    uvloop.install()


@contextlib.contextmanager
def server_process(*args: str) -> Iterator[str]:
    port = free_port()
    cmd = [sys.executable, "-m", "judges.clients.fake_server", "--port", str(port), *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/v1/models", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("fake server did not start")
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


def server_stats(base: str) -> dict:
    return orjson.loads(urllib.request.urlopen(base + "/_stats", timeout=5).read())


def server_reset(base: str) -> None:
    urllib.request.urlopen(urllib.request.Request(base + "/_reset", method="POST"), timeout=5)


def make_requests(n: int) -> list[JudgeRequest]:
    return [
        JudgeRequest(
            key=f"step-{i}",
            messages=render_messages(
                DEFAULT_TEMPLATE,
                question=f"Question {i % 97}: which option is right?",
                options={"A": "first", "B": "second", "C": "third", "D": "fourth"},
                context_steps=[f"Earlier step {j} of trace {i % 50}." for j in range(i % 4)],
                step=f"Step {i}: therefore the answer follows." + (" [wrong]" if i % 3 else ""),
                categories=["factual", "reasoning", "calculation"],
            ),
            max_tokens=256,
        )
        for i in range(n)
    ]


def run_ours(base: str, requests: list[JudgeRequest], concurrency: int, faults: bool) -> dict:
    settings = ClientSettings(
        base_url=base + "/v1",
        model="fake-judge",
        concurrency=concurrency,
        timeout_s=1.0 if faults else 30.0,
        max_retries=8,
        backoff_base_s=0.05,
        backoff_max_s=1.0,
    )
    started = time.perf_counter()
    results = asyncio.run(judge_many(requests, settings=settings))
    elapsed = time.perf_counter() - started
    outcomes = Counter(r.verdict if r.ok else f"failed:{r.failure}" for r in results)
    return {"elapsed": elapsed, "outcomes": dict(outcomes)}


def run_httpx(base: str, requests: list[JudgeRequest], concurrency: int) -> dict | None:
    try:
        import httpx
    except ImportError:
        return None

    async def main() -> int:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        sem = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:

            async def one(req: JudgeRequest) -> int:
                body = {"model": "m", "messages": req.messages, "max_tokens": req.max_tokens}
                async with sem:
                    r = await client.post(base + "/v1/chat/completions", json=body)
                return r.status_code

            return sum(s == 200 for s in await asyncio.gather(*(one(r) for r in requests)))

    started = time.perf_counter()
    ok = asyncio.run(main())
    return {"elapsed": time.perf_counter() - started, "outcomes": {"http_200": ok}}


def run_openai(base: str, requests: list[JudgeRequest], concurrency: int) -> dict | None:
    try:
        import openai
    except ImportError:
        return None

    async def main() -> int:
        client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="x", max_retries=0)
        sem = asyncio.Semaphore(concurrency)

        async def one(req: JudgeRequest) -> int:
            async with sem:
                r = await client.chat.completions.create(
                    model="m", messages=req.messages, max_tokens=req.max_tokens
                )
            return len(r.choices)

        async with client:
            return sum(await asyncio.gather(*(one(r) for r in requests)))

    started = time.perf_counter()
    ok = asyncio.run(main())
    return {"elapsed": time.perf_counter() - started, "outcomes": {"answers": ok}}


def report(name: str, result: dict | None, n: int, ideal: float, stats: dict | None) -> None:
    if result is None:
        print(f"{name:<34} not installed")
        return
    rps = n / result["elapsed"]
    extra = f" max_in_flight={stats['max_in_flight']} faults={stats['by_fault']}" if stats else ""
    print(
        f"{name:<34} {rps:7.1f} req/s  ratio {rps / ideal:.3f}  "
        f"({result['elapsed']:.2f}s) {result['outcomes']}{extra}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--fault-rate", type=float, default=0.05)
    parser.add_argument("--skip-others", action="store_true", help="only this project's client")
    args = parser.parse_args()
    ideal = args.concurrency / (args.latency_ms / 1000)
    requests = make_requests(args.n)
    print(
        f"N={args.n} concurrency={args.concurrency} latency={args.latency_ms:g}ms "
        f"ideal={ideal:.0f} req/s",
        flush=True,
    )
    latency = ["--latency-ms", str(args.latency_ms)]
    with server_process(*latency) as base:
        report(
            "aiohttp judge client, clean",
            run_ours(base, requests, args.concurrency, False),
            args.n,
            ideal,
            server_stats(base),
        )
        if not args.skip_others:
            for name, runner in (("httpx (shared client)", run_httpx), ("openai SDK", run_openai)):
                server_reset(base)
                report(
                    f"{name}, clean", runner(base, requests, args.concurrency), args.n, ideal, None
                )
    mixes = {
        "all fault kinds": "500,429,malformed,truncated,hang,drop",
        # Faults whose cost is one latency + back-off, no 1 s wait imposed by the server or
        # the timeout: this isolates the client's own retry overhead.
        "fast fault kinds": "500,503,malformed,truncated,prose,drop",
    }
    for mix, kinds in mixes.items():
        faults = ["--fault-rate", str(args.fault_rate), "--faults", kinds]
        faults += ["--retry-after-s", "1", "--hang-s", "30"]
        with server_process(*latency, *faults) as base:
            report(
                f"aiohttp, {args.fault_rate:.0%} {mix}",
                run_ours(base, requests, args.concurrency, True),
                args.n,
                ideal,
                server_stats(base),
            )


if __name__ == "__main__":
    main()
