"""Reads of judges, runs, progress and verdicts.

How the report layer finds judge verdicts
-----------------------------------------
Every evaluator that is not a clinician is a ``Judge``; its labels are ``JudgeVerdict`` rows,
one per (run, step), reached through ``JudgeVerdict.run → JudgeRun.judge``:

* ``Judge.is_reference`` → evaluator_kind ``'reference'`` (a run made by
  ``reference_run_create`` from the imported ``Step.reference_verdict``, no HTTP);
* otherwise → evaluator_kind ``'judge'`` (an LLM judge run by workers, a provider batch run,
  or verdicts imported from a file);
* the evaluator's name is the judge's ``name``; when one judge has several runs covering the
  same step, the most recent run's verdict counts (later runs supersede earlier ones);
* runs that are still running, paused, cancelled or failed contribute the verdicts they hold;
* ``verdict`` is correct / error / abstain / invalid (an unparseable answer, kept raw — the
  statistics may treat it as missing); ``error_category`` is '' unless the verdict is error.

``verdicts_long_table(audit)`` yields exactly those rows in the shared long format; conditions
appear under their blind code until the audit is unblinded.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from django.db.models import Count, QuerySet
from django.utils import timezone

from annotations.models import Audit, Condition, Question, Step, Trace
from annotations.selectors.pseudonyms import audit_ids_shown
from judges.models import Judge, JudgeRun, JudgeVerdict, judge_label


def judge_list() -> QuerySet[Judge]:
    return Judge.objects.select_related("prompt").order_by("name", "-version")


def run_list(*, audit: Audit | None = None) -> QuerySet[JudgeRun]:
    runs = JudgeRun.objects.select_related("judge", "audit", "prompt")
    if audit is not None:
        runs = runs.filter(audit=audit)
    return runs.order_by("-created_at", "-id")


def run_get(*, run_id: int) -> JudgeRun | None:
    return JudgeRun.objects.select_related("judge", "audit", "prompt").filter(pk=run_id).first()


def condition_label(condition: Condition, *, audit: Audit) -> str:
    """The blind code until the audit is unblinded, then the condition's name."""
    return condition.name if audit.unblinded_at is not None else condition.blind_code


def run_progress(run: JudgeRun) -> dict[str, Any]:
    """Done / failed / remaining, steps per second (pauses excluded), tokens and ETA."""
    now = timezone.now()
    active = run.active_seconds
    if run.running_since is not None and run.status == JudgeRun.Status.RUNNING:
        active += max(0.0, (now - run.running_since).total_seconds())
    finished = run.done + run.failed
    remaining = max(0, run.total - finished)
    rate = finished / active if active > 0 and finished else 0.0
    eta = remaining / rate if rate > 0 and run.status == JudgeRun.Status.RUNNING else None
    return {
        "id": run.pk,
        "judge": run.judge.label,
        "evaluator_kind": "reference" if run.judge.is_reference else "judge",
        "audit": run.audit.slug,
        "mode": run.mode,
        "label_mode": run.label_mode,
        "scope": run.scope,
        "segmentation": run.segmentation,
        "batch": run.batch_name,
        "status": run.status,
        "message": run.message,
        "total": run.total,
        "done": run.done,
        "failed": run.failed,
        "invalid": run.invalid,
        "remaining": remaining,
        "fraction": (finished / run.total) if run.total else 1.0,
        "steps_per_s": round(rate, 2),
        "prompt_tokens": run.prompt_tokens,
        "completion_tokens": run.completion_tokens,
        "cached_tokens": run.cached_tokens,
        # Per step judged: what prefix caching saves shows as cached of prompt.
        "prompt_tokens_per_step": round(run.prompt_tokens / run.done) if run.done else 0,
        "cached_tokens_per_step": round(run.cached_tokens / run.done) if run.done else 0,
        "eta_s": None if eta is None or math.isinf(eta) else round(eta, 1),
        "elapsed_s": round(active, 1),
        "created_at": run.created_at.isoformat() if run.created_at else None,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "can_pause": run.mode == JudgeRun.Mode.WORKERS and run.status in JudgeRun.ACTIVE,
        "can_resume": run.mode == JudgeRun.Mode.WORKERS
        and run.status in (JudgeRun.Status.PAUSED, JudgeRun.Status.FAILED),
        "can_cancel": run.status not in JudgeRun.ENDED,
        "warning": run_warning(run),
    }


def run_warning(run: JudgeRun) -> str:
    """What keeps an active run from moving that the run itself cannot know: no worker."""
    if run.mode != JudgeRun.Mode.WORKERS or run.status not in JudgeRun.ACTIVE:
        return ""
    from auditapp.workers import no_consumer_message, queue_consumers
    from judges.tasks import Queue

    consumers = queue_consumers(Queue.JUDGES)
    if consumers is None:
        return (
            f"cannot tell whether a worker consumes the {Queue.JUDGES.value!r} queue: "
            "the cache is unreachable"
        )
    if not consumers:
        return no_consumer_message(Queue.JUDGES.value)
    return ""


def run_condition_summary(run: JudgeRun) -> list[dict[str, Any]]:
    """Verdict counts per condition (label: blind code until unblinded), sorted by label."""
    audit = run.audit
    counts: dict[int, dict[str, int]] = {}
    # Counted by the database: the runs page polls this every second while a run goes on.
    rows = (
        JudgeVerdict.objects.filter(run=run)
        .values_list("step__trace__condition_id", "verdict")
        .order_by()
        .annotate(n=Count("id"))
    )
    for condition_id, verdict, n in rows:
        counts.setdefault(condition_id, {})[verdict] = n
    out = []
    for condition in Condition.objects.filter(audit=audit):
        c = counts.get(condition.pk, {})
        judged = sum(c.values())
        non_abstain = judged - c.get("abstain", 0) - c.get("invalid", 0)
        out.append(
            {
                "condition": condition_label(condition, audit=audit),
                "judged": judged,
                "correct": c.get("correct", 0),
                "error": c.get("error", 0),
                "abstain": c.get("abstain", 0),
                "invalid": c.get("invalid", 0),
                "error_rate": (c.get("error", 0) / non_abstain) if non_abstain else None,
            }
        )
    return sorted(out, key=lambda r: r["condition"])


def trace_ids_shown(*, audit: Audit) -> tuple[dict[int, str], dict[int, str]]:
    """Trace pk → shown id and question pk → shown id: pseudonyms until the audit is unblinded.

    Rows read primary keys and map them through these, so an external id (which may name the
    arm, ``teacher-q03``) never passes through a researcher-facing row while blinded.
    """
    shown: list[dict[int, str]] = []
    for kind, model in (("trace", Trace), ("question", Question)):
        rows = list(
            model.objects.filter(audit=audit).order_by("pk").values_list("pk", "external_id")
        )
        ids = audit_ids_shown(audit=audit, kind=kind, external_ids=[e for _, e in rows])
        shown.append({pk: i for (pk, _), i in zip(rows, ids, strict=True)})
    return shown[0], shown[1]


def verdicts_long_table(audit: Audit) -> Iterator[dict[str, Any]]:
    """One row per (judge, step) of the audit, the long format the agreement module takes.

    Keys: ``step_id`` (the step's public id), ``trace_id`` and ``question_id`` (pseudonyms
    while the audit is blinded, the external ids afterwards: ``trace_ids_shown``),
    ``condition`` (blind code unless unblinded),
    ``evaluator`` (judge name), ``evaluator_kind`` ('judge' or 'reference'), ``verdict``,
    ``error_category`` ('' when none), ``judge_probability`` (``JudgeVerdict.error_probability``,
    None when the judge stated none), plus ``segmentation`` and ``run_id``. See the module
    docstring for which run wins when a judge has several. Streams; a few queries in all.
    """
    unblinded = audit.unblinded_at is not None
    labels = {
        c.pk: (c.name if unblinded else c.blind_code) for c in Condition.objects.filter(audit=audit)
    }
    traces, questions = trace_ids_shown(audit=audit)
    seen: set[tuple[int, int]] = set()
    rows = (
        JudgeVerdict.objects.filter(run__audit=audit)
        .order_by("-run_id", "step_id")
        .values_list(
            "run_id",
            "run__judge_id",
            "run__judge__name",
            "run__judge__version",
            "run__judge__is_reference",
            "step_id",
            "step__public_id",
            "step__segmentation",
            "step__trace_id",
            "step__trace__question_id",
            "step__trace__condition_id",
            "verdict",
            "category",
            "error_probability",
        )
    )
    for (
        run_id,
        judge_id,
        judge_name,
        judge_version,
        is_reference,
        step_pk,
        public_id,
        segmentation,
        trace_pk,
        question_pk,
        condition_id,
        verdict,
        category,
        probability,
    ) in rows.iterator(chunk_size=2000):
        key = (judge_id, step_pk)
        if key in seen:
            continue  # an older run of the same judge on the same step
        seen.add(key)
        yield {
            "step_id": public_id,
            "trace_id": traces.get(trace_pk, ""),
            "question_id": questions.get(question_pk, ""),
            "condition": labels.get(condition_id, ""),
            "evaluator": judge_label(judge_name, judge_version),
            "evaluator_kind": "reference" if is_reference else "judge",
            "verdict": verdict,
            "error_category": category or "",
            "segmentation": segmentation,
            "run_id": run_id,
            "judge_probability": probability,
        }


def step_count(*, audit: Audit, segmentation: str = "") -> int:
    steps = Step.objects.filter(audit=audit)
    if segmentation:
        steps = steps.filter(segmentation=segmentation)
    return steps.count()


def audit_segmentations(audit: Audit) -> list[str]:
    return list(
        Step.objects.filter(audit=audit)
        .order_by("segmentation")
        .values_list("segmentation", flat=True)
        .distinct()
    )
