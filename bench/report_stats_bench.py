"""Micro benchmark of the pure statistics: report_compute on 1M judge + 10k expert labels.

Builds the labels long table in pandas (no database): 1,000,000 judge verdicts over 100,000
traces of 10 steps in 3 conditions, and 10,000 expert labels (two experts on 5,000 sampled
steps, with inclusion probabilities), then times ``report_compute`` with 2,000 bootstrap
resamples and prints the wall time and the process's peak RSS against the issue's target
(under 10 s and 2 GiB for the whole report).

Run: ``.venv/bin/python bench/report_stats_bench.py [--resamples N] [--seed N]``
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from auditapp.agreement.report import report_compute

TARGET_SECONDS = 10.0
TARGET_GIB = 2.0


def build_labels(
    *,
    judge_rows: int = 1_000_000,
    expert_rows: int = 10_000,
    steps_per_trace: int = 10,
    seed: int = 0,
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_traces = judge_rows // steps_per_trace
    conditions = np.array(["teacher", "student-before", "student-after"])
    trace_condition = rng.integers(0, 3, n_traces)
    trace_of_step = np.repeat(np.arange(n_traces), steps_per_trace)
    propensity = rng.beta(2.0, 4.0, n_traces) * np.array([0.8, 1.0, 1.4])[trace_condition]
    truth = rng.random(judge_rows) < np.clip(propensity, 0, 1)[trace_of_step]
    judge_error = np.where(rng.random(judge_rows) < 0.9, truth, ~truth)
    judge_verdict = np.where(judge_error, "error", "correct").astype(object)
    judge_verdict[rng.random(judge_rows) < 0.02] = "abstain"
    step_id = np.char.add("s", np.arange(judge_rows).astype(str))
    trace_id = np.char.add("t", trace_of_step.astype(str))
    question_id = np.char.add("q", (trace_of_step % 5000).astype(str))
    condition = conditions[trace_condition][trace_of_step]
    frames = [
        pd.DataFrame(
            {
                "step_id": step_id,
                "trace_id": trace_id,
                "question_id": question_id,
                "condition": condition,
                "evaluator": "judge-gpt",
                "evaluator_kind": "judge",
                "verdict": judge_verdict,
            }
        )
    ]
    sampled = rng.choice(judge_rows, expert_rows // 2, replace=False)
    for expert in ("dr-a", "dr-b"):
        agrees = rng.random(sampled.size) < 0.95
        verdict = np.where(np.where(agrees, truth[sampled], ~truth[sampled]), "error", "correct")
        frames.append(
            pd.DataFrame(
                {
                    "step_id": step_id[sampled],
                    "trace_id": trace_id[sampled],
                    "question_id": question_id[sampled],
                    "condition": condition[sampled],
                    "evaluator": expert,
                    "evaluator_kind": "expert",
                    "verdict": verdict,
                    "inclusion_probability": sampled.size / judge_rows,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def peak_rss_gib() -> float:
    # ru_maxrss is KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    labels = build_labels(seed=args.seed)
    rss_after_build = peak_rss_gib()
    start = time.perf_counter()
    report = report_compute(labels, rng=np.random.default_rng(args.seed), resamples=args.resamples)
    seconds = time.perf_counter() - start
    peak = peak_rss_gib()

    judge_rows = sum(r["n"] for r in report["error_rates"] if r["evaluator"] == "judge-gpt")
    print(f"labels: {len(labels):,} rows ({judge_rows:,} judge); resamples: {args.resamples}")
    print(f"report_compute: {seconds:.2f} s (target < {TARGET_SECONDS:.0f} s)")
    print(
        f"peak RSS: {peak:.2f} GiB (target < {TARGET_GIB:.0f} GiB; "
        f"{rss_after_build:.2f} GiB after building the table)"
    )
    ok = seconds < TARGET_SECONDS and peak < TARGET_GIB
    print("OK" if ok else "OVER TARGET")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
