"""Answer-only import throughput on PostgreSQL (issue 17).

Writes the SC@64 shape — 64 sampled answers × 3 arms × 1,000 questions = 192,000 answer-only
records (`record_type: answer`, with final answer and confidence; the first record of each
question states it) — imports the file into a fresh audit (validation and write, as
`import_traces` does) and prints records per second. Target: ≥ 200,000 records/s.

`--audited` makes sample 0 of each question and arm an audited trace instead (the paper's
shape: 3,000 traces segmented into steps beside 189,000 samples), reported for information.

    .venv/bin/python bench/answer_import_bench.py [--questions 1000] [--samples 64] [--audited]
"""

import argparse
import random
import time
from pathlib import Path

import orjson
from _setup import ROOT, backend_cpu_seconds, django_setup, peak_rss_mib

ARMS = ("teacher", "student-before", "student-after")
TARGET = 200_000


def write_file(path: Path, *, questions: int, samples: int, audited: bool, seed: int = 17) -> int:
    rng = random.Random(seed)
    n = 0
    with path.open("wb") as out:
        for q in range(questions):
            gold = "ABCD"[q % 4]
            for a, arm in enumerate(ARMS):
                skill = 0.5 + 0.15 * a
                for s in range(samples):
                    answer = gold if rng.random() < skill else rng.choice("ABCD")
                    record = {
                        "record_type": "answer",
                        "question_id": f"q{q:05d}",
                        "condition": arm,
                        "sample_index": s,
                        "final_answer": answer,
                        "confidence": round(rng.random(), 3),
                    }
                    # The question once per question, and on every audited trace (a trace
                    # always states its question).
                    if s == 0 and (a == 0 or audited):
                        record |= {
                            "question": f"Question {q}: which finding is most specific?",
                            "options": {"A": "one", "B": "two", "C": "three", "D": "four"},
                            "gold_answer": gold,
                        }
                    if audited and s == 0:
                        record["record_type"] = "trace"
                        record["trace_id"] = f"t{q:05d}-{a}"
                        record["trace"] = "\n\n".join(
                            f"Step {i}: the finding {rng.randrange(10**6)} is considered."
                            for i in range(8)
                        )
                    out.write(orjson.dumps(record) + b"\n")
                    n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--audited", action="store_true")
    args = parser.parse_args()
    django_setup(fresh=True)
    # pyarrow loads pandas the first time it converts arrays (~1 s): the app's web and worker
    # processes have it loaded already (the reports use it), so it is loaded before the clock.
    import pandas  # noqa: F401

    from annotations.services.audits import audit_create
    from annotations.services.imports import import_run, import_validate

    kind = "mixed" if args.audited else "answers"
    path = ROOT / "var" / "bench" / f"{kind}-{args.questions}x{args.samples}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    n = write_file(path, questions=args.questions, samples=args.samples, audited=args.audited)
    print(
        f"generated {path.name} ({path.stat().st_size / 2**20:.0f} MiB, {n:,} records) "
        f"in {time.perf_counter() - t0:.1f}s"
    )
    audit = audit_create(slug="bench-answers", name="Answer import benchmark")
    s0 = backend_cpu_seconds()
    t0, c0 = time.perf_counter(), time.process_time()
    plan = import_validate(audit=audit, path=path, segmenter_names=["paragraphs"])
    t1, c1 = time.perf_counter(), time.process_time()
    result = import_run(audit=audit, plan=plan)
    t2, c2 = time.perf_counter(), time.process_time()
    s2 = backend_cpu_seconds()
    rate = result.n_records / (t2 - t0)
    print(f"records imported     {result.n_records:>12,}")
    print(f"answer-only samples  {result.n_samples:>12,}")
    print(f"audited traces       {result.n_traces:>12,}  ({result.n_steps:,} steps)")
    # CPU seconds of this process beside the wall clock: on a shared machine the wall clock
    # also counts the time other processes held the cores.
    print(f"validate (pass 1)    {t1 - t0:>11.2f}s   (CPU {c1 - c0:.2f}s)")
    print(f"write (pass 2)       {t2 - t1:>11.2f}s   (CPU {c2 - c1:.2f}s, the rest is the server)")
    verdict = "OK" if rate >= TARGET else "BELOW TARGET"
    print(f"records per second   {rate:>12,.0f}   (target ≥ {TARGET:,})  {verdict}")
    if s0 is not None and s2 is not None:
        cpu = (c2 - c0) + (s2 - s0)
        print(
            f"CPU seconds          {cpu:>11.2f}s   (this process {c2 - c0:.2f}s + its PostgreSQL "
            f"backend {s2 - s0:.2f}s)"
        )
        print(
            f"records per CPU-s    {result.n_records / cpu:>12,.0f}   (the rate with a core each "
            "for Python and the server and nothing else running, run one after the other)"
        )
    print(f"peak RSS             {peak_rss_mib():>10,.0f} MiB")


if __name__ == "__main__":
    main()
