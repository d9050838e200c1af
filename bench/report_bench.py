"""The agreement report at scale: 1,000,000 judge verdicts + 10,000 expert labels, 3 conditions.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/stepaudit_report_bench \
        .venv/bin/python bench/report_bench.py [--steps 1000000] [--labels 10000] \
        [--resamples 2000] [--keep] [--synthetic]

Fills the real tables of a PostgreSQL database (created if missing, migrated) with
``INSERT … SELECT generate_series`` — questions, 20,000 traces, 1,000,000 steps, one judge run
with a verdict on every step, a batch of 5,000 steps labelled by two clinicians (10,000
labels, inclusion probability recorded) — then times, in one process:

- collect: ``audit_tables_collect`` (PostgreSQL COPY into pandas);
- compute: ``report_build`` on those tables, 2,000 cluster-bootstrap resamples, including the
  blinding classifier on a seeded sample of 10,000 blinded step texts;
- total, and the process's peak RSS;

against the targets of issue 5: under 10 s and under 2 GiB. ``--synthetic`` skips the database
and times compute on an equivalent frame built in memory (for machines without PostgreSQL or
before the labels/judges models exist). The data is reused on a second run unless the sizes
change; ``--fresh`` rebuilds it.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _setup import cpu_seconds  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "auditapp.settings.base")

SLUG = "bench-report"
TARGET_SECONDS = 10.0
TARGET_BYTES = 2 * 1024**3
RATES = (0.20, 0.28, 0.35)  # true step error rate per condition


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def ensure_database() -> None:
    import psycopg

    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        sys.exit("set DATABASE_URL=postgres://…/stepaudit_report_bench (or use --synthetic)")
    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def fill(*, n_steps: int, n_labels: int, fresh: bool) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from annotations.models import Audit, Condition

    steps_per_trace = 50
    n_traces = n_steps // steps_per_trace
    audit = Audit.objects.filter(slug=SLUG).first()
    if audit is not None and not fresh and audit.steps.count() == n_steps:
        from annotations.models.labels import Label

        if Label.objects.filter(step__audit=audit).count() == n_labels:
            print(f"reusing {n_steps:,} steps and {n_labels:,} labels in {SLUG}")
            fill_texts(audit=audit)
            fill_covariates(audit=audit)
            return
    if audit is not None:
        with connection.cursor() as cursor:
            # Faster than the ORM cascade for a million rows.
            for table, column in (
                (
                    "annotations_label",
                    "step_id IN (SELECT id FROM annotations_step WHERE audit_id = %s)",
                ),
                (
                    "judges_judgeverdict",
                    "run_id IN (SELECT id FROM judges_judgerun WHERE audit_id = %s)",
                ),
            ):
                cursor.execute(f"DELETE FROM {table} WHERE {column}", [audit.pk])
        audit.delete()

    started = time.perf_counter()
    with transaction.atomic():
        audit = Audit.objects.create(slug=SLUG, name="Report benchmark")
        conditions = [
            Condition.objects.create(audit=audit, name=name, blind_code=code)
            for name, code in (
                ("teacher", "Arm A"),
                ("student-before", "Arm B"),
                ("student-after", "Arm C"),
            )
        ]
        ids = [c.pk for c in conditions]
        with connection.cursor() as c:
            c.execute("SELECT setseed(0.42)")
            c.execute(
                """INSERT INTO annotations_question
                   (audit_id, external_id, stem, options, gold_answer, dataset, metadata)
                   SELECT %s, 'q' || g, 'stem', '{}'::jsonb, 'A', 'bench', '{}'::jsonb
                   FROM generate_series(1, 1000) g""",
                [audit.pk],
            )
            c.execute("SELECT min(id) FROM annotations_question WHERE audit_id = %s", [audit.pk])
            q0 = c.fetchone()[0]
            c.execute(
                """INSERT INTO annotations_trace
                   (audit_id, question_id, condition_id, external_id, sample_index, text,
                    final_answer, blinded_final_answer, answer_correct, confidence, trace_type,
                    metadata)
                   SELECT %s, %s + (g %% 1000), (ARRAY[%s, %s, %s])[1 + g %% 3], 't' || g,
                          (g / 3000) %% 3, '', CASE WHEN random() < 0.8 THEN 'A' ELSE 'B' END,
                          '', NULL, round((0.5 + random() / 2)::numeric, 2), 'cot', '{}'::jsonb
                   FROM generate_series(0, %s - 1) g""",
                [audit.pk, q0, *ids, n_traces],
            )
            c.execute(
                """INSERT INTO annotations_step
                   (audit_id, trace_id, segmentation, index, text, blinded_text,
                    blinding_version, public_id, kind)
                   SELECT %s, t.id, 'given', s, '', '', 'raw', 'b' || t.id || '-' || s, ''
                   FROM annotations_trace t, generate_series(0, %s - 1) s
                   WHERE t.audit_id = %s""",
                [audit.pk, steps_per_trace, audit.pk],
            )
        from judges.models import Judge, JudgeRun

        judge, _ = Judge.objects.get_or_create(name="bench-judge")
        run = JudgeRun.objects.create(judge=judge, audit=audit, total=n_steps, status="done")
        with connection.cursor() as c:
            # The judge says error with the condition's rate (+ noise); 3% abstain.
            c.execute(
                """INSERT INTO judges_judgeverdict
                   (run_id, step_id, verdict, category, rationale, raw_response, attempts,
                    latency_ms, prompt_tokens, completion_tokens, cached_tokens, prompt_hash,
                    prompt_record, created_at)
                   SELECT %s, s.id,
                          CASE WHEN r < 0.03 THEN 'abstain'
                               WHEN r < 0.03 + 0.97 * (CASE t.condition_id WHEN %s THEN %s
                                    WHEN %s THEN %s ELSE %s END) THEN 'error'
                               ELSE 'correct' END,
                          '', '', '', 1, 0, 0, 0, 0, '', '{}'::jsonb, now()
                   FROM (SELECT id, trace_id, random() AS r FROM annotations_step
                         WHERE audit_id = %s) s
                   JOIN annotations_trace t ON t.id = s.trace_id""",
                [run.pk, ids[0], RATES[0], ids[1], RATES[1], RATES[2], audit.pk],
            )
        fill_labels(audit=audit, n_labels=n_labels, n_steps=n_steps, user_model=get_user_model())
    fill_texts(audit=audit)
    fill_covariates(audit=audit)
    with connection.cursor() as c:
        c.execute("ANALYZE")
    print(
        f"filled {n_steps:,} steps/verdicts, {n_labels:,} labels in "
        f"{time.perf_counter() - started:.1f} s"
    )


# Blinded step texts for the blinding classifier: 8-27 words of clinical reasoning vocabulary.
_WORDS = [
    "the",
    "patient",
    "has",
    "renal",
    "failure",
    "so",
    "the",
    "dose",
    "of",
    "the",
    "drug",
    "must",
    "be",
    "reduced",
    "because",
    "clearance",
    "falls",
    "therefore",
    "sodium",
    "and",
    "potassium",
    "are",
    "checked",
    "hence",
    "the",
    "most",
    "likely",
    "answer",
    "is",
    "option",
    "B",
    "given",
    "the",
    "acute",
    "rise",
    "in",
    "creatinine",
    "and",
    "low",
    "urine",
    "output",
    "which",
    "suggests",
    "prerenal",
    "injury",
    "from",
    "fluid",
    "loss",
]


def fill_texts(*, audit) -> None:
    """Give every step a blinded text (earlier benchmark databases had empty ones)."""
    from django.db import connection

    if not audit.steps.filter(blinded_text="").exists():
        return
    started = time.perf_counter()
    with connection.cursor() as c:
        c.execute(
            """UPDATE annotations_step s SET blinded_text = (
                   SELECT string_agg(w[1 + floor(random() * array_length(w, 1))::int], ' ')
                   FROM generate_series(1, 8 + s.id %% 20) g, (SELECT %s::text[] AS w) a
                   WHERE s.id > 0)
               WHERE s.audit_id = %s""",
            [_WORDS, audit.pk],
        )
        c.execute("VACUUM ANALYZE annotations_step")
    print(f"filled blinded texts in {time.perf_counter() - started:.1f} s")


def fill_covariates(*, audit) -> None:
    """Two datasets and stored answer correctness (earlier benchmark databases had one
    dataset and none), so the report runs three controls: answer correctness, dataset and
    step position (2 + 2 + 3 levels)."""
    from django.db import connection

    if not audit.traces.filter(answer_correct__isnull=True).exists():
        return
    with connection.cursor() as c:
        c.execute(
            """UPDATE annotations_question SET dataset = CASE WHEN id %% 2 = 0 THEN 'bench-a'
               ELSE 'bench-b' END WHERE audit_id = %s""",
            [audit.pk],
        )
        c.execute(
            "UPDATE annotations_trace SET answer_correct = (final_answer = 'A') "
            "WHERE audit_id = %s",
            [audit.pk],
        )
    print("filled datasets and answer correctness")


def fill_labels(*, audit, n_labels: int, n_steps: int, user_model) -> None:
    from django.db import connection

    from annotations.models.batches import Assignment, Batch

    per_expert = n_labels // 2
    batch = Batch.objects.create(audit=audit, name="bench", segmentation="given", seed="1")
    experts = [user_model.objects.get_or_create(username=f"bench-clinician-{i}")[0] for i in (1, 2)]
    with connection.cursor() as c:
        # A simple random sample of steps: inclusion probability = sample / population.
        c.execute(
            """INSERT INTO annotations_batchitem
               (batch_id, step_id, trace_id, stratum, inclusion_probability, is_gold, wave)
               SELECT %s, id, NULL, 'all', %s, false, 1 FROM annotations_step
               WHERE audit_id = %s ORDER BY md5(id::text) LIMIT %s""",
            [batch.pk, per_expert / n_steps, audit.pk, per_expert],
        )
        for n, expert in enumerate(experts):
            assignment = Assignment.objects.create(
                batch=batch, annotator=expert, public_id=f"bench-as-{audit.pk}-{n}"
            )
            c.execute(
                """INSERT INTO annotations_assignmentitem
                   (assignment_id, position, batch_item_id, is_hidden_repeat, repeat_of_id)
                   SELECT %s, row_number() OVER (ORDER BY id), id, false, NULL
                   FROM annotations_batchitem WHERE batch_id = %s""",
                [assignment.pk, batch.pk],
            )
            # The expert agrees with the judge 85% of the time, abstains 2%.
            c.execute(
                """INSERT INTO annotations_label
                   (assignment_item_id, assignment_id, step_id, verdict, error_category,
                    comment, probe_guess, elapsed_ms, shown, revision, created_at, updated_at)
                   SELECT ai.id, %s, bi.step_id,
                          CASE WHEN random() < 0.02 THEN 'abstain'
                               WHEN random() < 0.85 THEN
                                    CASE WHEN v.verdict = 'abstain' THEN 'correct'
                                         ELSE v.verdict END
                               WHEN v.verdict = 'error' THEN 'correct' ELSE 'error' END,
                          '', '', '', 0, '{}'::jsonb, 1, now(), now()
                   FROM annotations_assignmentitem ai
                   JOIN annotations_batchitem bi ON bi.id = ai.batch_item_id
                   JOIN judges_judgeverdict v ON v.step_id = bi.step_id
                   WHERE ai.assignment_id = %s""",
                [assignment.pk, assignment.pk],
            )


def synthetic_tables(n_steps: int, n_labels: int):
    import numpy as np
    import pandas as pd

    from reports.collect import AuditTables

    rng = np.random.default_rng(0)
    steps_per_trace = 50
    step = np.arange(n_steps)
    trace = step // steps_per_trace
    condition = trace % 3
    rate = np.asarray(RATES)[condition]
    r = rng.random(n_steps)
    verdict = np.where(r < 0.03, "abstain", np.where(r < 0.03 + 0.97 * rate, "error", "correct"))
    judge = pd.DataFrame(
        {
            "step_id": step.astype(str),
            "trace_id": ("t" + pd.Series(trace).astype(str)).to_numpy(),
            "question_id": (trace % 1000).astype(str),
            "condition": np.asarray(["Arm A", "Arm B", "Arm C"])[condition],
            "evaluator": "bench-judge",
            "evaluator_kind": "judge",
            "verdict": verdict,
        }
    )
    sample = rng.choice(n_steps, n_labels // 2, replace=False)
    experts = []
    for name in ("bench-clinician-1", "bench-clinician-2"):
        part = judge.iloc[sample].copy()
        flip = rng.random(len(part)) > 0.85
        part.loc[flip, "verdict"] = np.where(
            part.loc[flip, "verdict"] == "error", "correct", "error"
        )
        part["evaluator"], part["evaluator_kind"] = name, "expert"
        part["inclusion_probability"] = len(sample) / n_steps
        experts.append(part)
    labels = pd.concat([judge, *experts], ignore_index=True)
    answers = pd.DataFrame(
        {
            "trace_id": "t" + pd.Series(np.arange(n_steps // steps_per_trace)).astype(str),
            "question_id": (np.arange(n_steps // steps_per_trace) % 1000).astype(str),
            "condition": np.asarray(["Arm A", "Arm B", "Arm C"])[
                np.arange(n_steps // steps_per_trace) % 3
            ],
            "sample_index": (np.arange(n_steps // steps_per_trace) // 3000) % 3,
            "answer": np.where(rng.random(n_steps // steps_per_trace) < 0.8, "A", "B"),
            "gold": "A",
            "confidence": rng.uniform(0.5, 1.0, n_steps // steps_per_trace).round(2),
        }
    )
    from auditapp.agreement.blinding import CLASSIFIER_MAX_TEXTS

    sampled = np.sort(rng.choice(n_steps, min(CLASSIFIER_MAX_TEXTS, n_steps), replace=False))
    words = np.asarray(_WORDS)
    texts = pd.DataFrame(
        {
            "trace_id": judge["trace_id"].to_numpy()[sampled],
            "condition": judge["condition"].to_numpy()[sampled],
            "text": [" ".join(rng.choice(words, 8 + i % 20)) for i in sampled],
        }
    )
    texts.attrs["n_population"] = n_steps
    return AuditTables(
        labels=labels,
        answers=answers,
        ratings=pd.DataFrame(),
        sources={"synthetic": len(labels)},
        texts=texts,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--labels", type=int, default=10_000)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--fresh", action="store_true", help="rebuild the data")
    parser.add_argument("--synthetic", action="store_true", help="no database")
    args = parser.parse_args()

    if not args.synthetic:
        ensure_database()
    import django

    django.setup()
    from django.core.management import call_command

    from annotations.models import Audit
    from reports.collect import audit_tables_collect
    from reports.services import report_build

    collect_server_cpu = 0.0
    if args.synthetic:
        t0, c0 = time.perf_counter(), time.process_time()
        tables = synthetic_tables(args.steps, args.labels)
        collect_s, collect_cpu = time.perf_counter() - t0, time.process_time() - c0
        print("synthetic tables (no database): collect = building the frame in memory")
        from reports.services import ReportParams, _compute

        t1, c1 = time.perf_counter(), time.process_time()
        report = _compute(
            tables.labels,
            tables.answers,
            None,
            ReportParams(resamples=args.resamples),
            texts=tables.texts,
        )
    else:
        call_command("migrate", verbosity=0)
        fill(n_steps=args.steps, n_labels=args.labels, fresh=args.fresh)
        audit = Audit.objects.get(slug=SLUG)
        rss_before = peak_rss_bytes()
        database = os.environ["DATABASE_URL"].rsplit("/", 1)[1]
        # PostgreSQL backends show "postgres <database> <address>" in their process title.
        server_cpu = cpu_seconds(f"postgres {database} ")
        t0, c0 = time.perf_counter(), time.process_time()
        tables = audit_tables_collect(audit)
        collect_s, collect_cpu = time.perf_counter() - t0, time.process_time() - c0
        collect_server_cpu = cpu_seconds(f"postgres {database} ") - server_cpu
        print(f"collected {tables.sources} (peak RSS before collect {rss_before / 2**20:.0f} MiB)")
        t1, c1 = time.perf_counter(), time.process_time()
        report = report_build(audit=audit, tables=tables, resamples=args.resamples)
    compute_s, compute_cpu = time.perf_counter() - t1, time.process_time() - c1
    total = collect_s + compute_s
    rss = peak_rss_bytes()
    rows = [r for r in report["error_rates"] if not r.get("pooled")]
    for r in rows:
        print(
            f"  {r['evaluator']:<20} {r['condition']:<8} n={r['n']:>8,} "
            f"rate={r['error_rate']:.4f} CI=[{r['ci_low']:.4f}, {r['ci_high']:.4f}]"
        )
    classifier = report["blinding"]["classifier"]
    if classifier:
        print(
            f"  blinding classifier AUC {classifier['auc']:.3f} "
            f"[{classifier['ci_low']:.3f}, {classifier['ci_high']:.3f}] on {classifier['n']:,} "
            f"of {classifier.get('n_population', classifier['n']):,} steps"
        )
    print(f"labels rows {len(tables.labels):,}; resamples {args.resamples}")
    controls = (report.get("controls") or {}).get("controls") or []
    print("controls " + ", ".join(f"{c['control']} ({len(c['levels'])})" for c in controls))
    print(
        f"collect  {collect_s:6.2f} s wall, {collect_cpu:5.2f} s CPU "
        f"(+ {collect_server_cpu:.2f} s PostgreSQL)"
    )
    print(f"compute  {compute_s:6.2f} s wall, {compute_cpu:5.2f} s CPU")
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    print(
        f"total    {total:6.2f} s   (target < {TARGET_SECONDS:.0f} s: "
        f"{'OK' if total < TARGET_SECONDS else 'MISSED'})"
    )
    print(
        f"peak RSS {rss / 2**20:6.0f} MiB (target < 2048 MiB: "
        f"{'OK' if rss < TARGET_BYTES else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
