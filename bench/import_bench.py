"""Trace import throughput on PostgreSQL (issue: foundation).

Generates a synthetic JSONL file of N traces (default 100,000, about 10 steps each, as
paragraphs), imports it into a fresh audit with the 'paragraphs' segmenter — validation,
segmentation, style-blinding and public ids included — and prints steps per second and the
peak RSS of the process. Target: ≥ 30,000 steps/s, peak RSS < 1 GiB.

    .venv/bin/python bench/import_bench.py [--traces 100000] [--steps 10]
"""

import argparse
import random
import time
from pathlib import Path

import orjson
from _setup import ROOT, backend_cpu_seconds, django_setup, peak_rss_mib

FILLERS = ["Okay, so ", "Hmm, ", "", "", "Wait, ", "", "So "]
CLAIMS = [
    "the anaemia is microcytic, which points to iron deficiency or thalassaemia",
    "a low ferritin is specific for depleted iron stores",
    "ST elevation in II, III and aVF indicates an **inferior** infarction",
    "the right coronary artery supplies the inferior wall in most people",
    "exophthalmos is specific to Graves disease among causes of hyperthyroidism",
    "metformin is contraindicated when the eGFR falls below 30 mL/min",
    "needle-shaped negatively birefringent crystals are monosodium urate",
    "intramuscular adrenaline is the first-line treatment for anaphylaxis",
]


def write_file(path: Path, *, traces: int, steps: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    conditions = ["teacher", "student-before", "student-after"]
    with path.open("wb") as out:
        for i in range(traces):
            paragraphs = [
                f"{rng.choice(FILLERS)}{rng.choice(CLAIMS)} (note {rng.randrange(10**6)})."
                for _ in range(steps)
            ]
            record = {
                "question_id": f"q{i // 6}",
                "question": f"Question {i // 6}: which finding is most specific?",
                "options": {"A": "one", "B": "two", "C": "three", "D": "four"},
                "gold_answer": "B",
                "condition": conditions[i % 3],
                "trace_id": f"t{i:07d}",
                "sample_index": (i // 3) % 2,
                "trace": "\n\n".join(paragraphs),
                "final_answer": rng.choice("ABCD"),
                "confidence": round(rng.random(), 3),
                "trace_type": "cot",
            }
            out.write(orjson.dumps(record) + b"\n")


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    django_setup(fresh=True)
    from annotations.services.audits import audit_create
    from annotations.services.imports import import_run, import_validate

    path = ROOT / "var" / "bench" / f"traces-{args.traces}x{args.steps}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        t0 = time.perf_counter()
        write_file(path, traces=args.traces, steps=args.steps)
        print(
            f"generated {path.name} ({path.stat().st_size / 2**20:.0f} MiB) "
            f"in {time.perf_counter() - t0:.1f}s"
        )
    audit = audit_create(slug="bench-import", name="Import benchmark")
    s0 = backend_cpu_seconds()
    t0, c0 = time.perf_counter(), time.process_time()
    plan = import_validate(audit=audit, path=path, segmenter_names=["paragraphs"])
    t1, c1 = time.perf_counter(), time.process_time()
    result = import_run(audit=audit, plan=plan)
    t2, c2 = time.perf_counter(), time.process_time()
    s2 = backend_cpu_seconds()
    total = t2 - t0
    rate = result.n_steps / total
    print(f"traces imported      {result.n_traces:>12,}")
    print(f"steps imported       {result.n_steps:>12,}")
    # CPU seconds beside the wall clock: on a shared machine the wall clock also counts the
    # time other processes held the cores. process_time() counts every thread of this process
    # (the normaliser's workers are processes: their CPU is in the children's figure).
    children = _children_cpu()
    print(f"validate (pass 1)    {t1 - t0:>11.1f}s   (CPU {c1 - c0:.1f}s)")
    print(
        f"write (pass 2)       {t2 - t1:>11.1f}s   (CPU {c2 - c1:.1f}s here"
        + (f" + {children:.1f}s in worker processes" if children else "")
        + ", the rest is the server)"
    )
    print(
        f"steps per second     {rate:>12,.0f}   (target ≥ 30,000)  "
        f"{'OK' if rate >= 30_000 else 'BELOW TARGET'}"
    )
    if s0 is not None and s2 is not None:
        cpu = (c2 - c0) + children + (s2 - s0)
        print(
            f"CPU seconds          {cpu:>11.1f}s   (this process {c2 - c0:.1f}s"
            + (f" + workers {children:.1f}s" if children else "")
            + f" + its PostgreSQL backend {s2 - s0:.1f}s)"
        )
        print(f"steps per CPU-s      {result.n_steps / cpu:>12,.0f}")
    rss = peak_rss_mib()
    print(
        f"peak RSS             {rss:>10,.0f} MiB (target < 1,024)  "
        f"{'OK' if rss < 1024 else 'ABOVE TARGET'}"
    )


if __name__ == "__main__":
    main()
