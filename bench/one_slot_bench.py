"""A judge against a server that serves one request at a time (llama.cpp's default), issue 14.

Reproduces the field report (timeout 0.8 s, concurrency 4, 33 steps, ~0.3 s a generation) on
the fake server's one-slot profile, with the client's adaptive concurrency off and on, and
prints verdicts stored, wall time, calls the server ran, and the median recorded latency.
Target: every step gets its verdict and the run takes about what concurrency 1 takes.

    python bench/one_slot_bench.py [--steps 33] [--latency-ms 300] [--timeout-s 0.8]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from judges.clients.fake_server import fake_server
from judges.clients.openai_compat import ClientSettings, JudgeRequest, judge_many_sync


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=33)
    parser.add_argument("--latency-ms", type=float, default=300)
    parser.add_argument("--timeout-s", type=float, default=0.8)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    requests = [
        JudgeRequest(key=str(i), messages=[{"role": "user", "content": f"<step>step {i}</step>"}])
        for i in range(args.steps)
    ]
    for label, adaptive, concurrency in (
        ("fixed", False, args.concurrency),
        ("adaptive", True, args.concurrency),
        ("by hand", False, 1),
    ):
        with fake_server(latency_ms=args.latency_ms, jitter_ms=0, slots=1) as server:
            settings = ClientSettings(
                base_url=server.base_url,
                model="fake-judge",
                timeout_s=args.timeout_s,
                concurrency=concurrency,
                max_retries=6,
                backoff_base_s=0.2,
                backoff_max_s=1.6,
                adaptive_concurrency=adaptive,
                hedge_after_latencies=0,
            )
            started = time.monotonic()
            results = judge_many_sync(requests, settings=settings)
            wall = time.monotonic() - started
            calls = server.stats()["requests"]
        stored = sum(r.ok for r in results)
        latency = statistics.median(r.latency_ms for r in results if r.ok) if stored else 0
        print(
            f"{label:>8}: concurrency {concurrency}, {stored}/{args.steps} verdicts "
            f"in {wall:.1f} s, "
            f"{calls} calls for {args.steps} needed, median latency {latency:.0f} ms"
        )


if __name__ == "__main__":
    main()
