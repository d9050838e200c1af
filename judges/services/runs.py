"""Runs: creation and scope, the life cycle (pause / resume / cancel / finish), reconcile.

How a run executes (``run_create`` → tasks → ``judges.services.lanes``):

1. ``run_create`` stores the run (scope, total) and, on commit, enqueues
   ``judge_run_start_task``, which calls ``run_enqueue_missing``: the scope's steps without a
   verdict (or a recorded failure) are shuffled by the run's seed and put where the lanes
   claim them (``judges.services.worksource``), and one lane task per
   ``Judge.parallel_chunks`` is enqueued.
2. Each lane (``judge_lane_run``) keeps its share of the judge's concurrency busy for the
   whole run, claiming steps as slots free up and rendering blinded prompts
   (``judges.rendering``) as it claims them.
3. Verdicts are written in small batches with ``INSERT … ON CONFLICT DO NOTHING RETURNING``
   (``judges.services.store``): the counters grow by what was really inserted, in the same
   transaction, so a lane that runs twice neither duplicates a verdict nor double-counts it.
4. The lane that leaves nothing remaining marks the run done (under a row lock, after an
   exact recount). A run whose workers died is found by ``run_reconcile`` (periodic task): no
   heartbeat for ``stale_after_s`` → the run's *generation* is bumped and the missing steps are
   enqueued again; lanes of an older generation stop at their next poll.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections.abc import Callable
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.db import models, transaction
from django.db.models import Count, F, Q, Sum
from django.utils import timezone

from annotations.models import Audit, Step
from auditapp.exceptions import ApplicationError, ConflictError, NotFoundError
from judges.clients import (
    RateLimits,
)
from judges.models import Judge, JudgeFailure, JudgePrompt, JudgeRun, JudgeVerdict, LabelMode
from judges.services import worksource
from judges.services.specs import egress_check, run_prompt

logger = logging.getLogger(__name__)

# A lane writes its heartbeat every HEARTBEAT_S (2 s) while it runs, and rides database and
# Redis outages out itself; a run silent this long has lost its lanes (a killed worker).
DEFAULT_STALE_AFTER_S = 8.0


# -- runs: creation and scope ----------------------------------------------------------------


def _scope_steps(
    *, audit: Audit, segmentation: str = "", batch_name: str = "", whole_traces: bool = False
) -> models.QuerySet[Step]:
    """The steps a run covers. ``whole_traces`` (first-error mode): a batch's traces with all
    their steps under the batch's segmentations, since the judge reads a trace whole."""
    steps = Step.objects.filter(audit=audit)
    if batch_name:
        from django.apps import apps

        try:
            batch_model = apps.get_model("annotations", "Batch")
        except LookupError:
            raise ApplicationError("batches are not available yet", code="no_batches") from None
        batch = batch_model.objects.filter(audit=audit, name=batch_name).first()
        if batch is None:
            raise NotFoundError(f"no batch named {batch_name!r} in audit {audit.slug}")
        if whole_traces:
            chosen = Step.objects.filter(pk__in=batch.items.values("step_id"))
            steps = steps.filter(
                trace_id__in=chosen.values("trace_id"),
                segmentation__in=chosen.values("segmentation"),
            )
        else:
            steps = steps.filter(pk__in=batch.items.values("step_id"))
    if segmentation:
        steps = steps.filter(segmentation=segmentation)
    return steps


def run_scope_steps(run: JudgeRun) -> models.QuerySet[Step]:
    return _scope_steps(
        audit=run.audit,
        segmentation=run.segmentation,
        batch_name=run.batch_name,
        whole_traces=run.label_mode == LabelMode.FIRST_ERROR,
    ).filter(pk__lte=run.scope_max_step_id)


def _run_new(
    *,
    audit: Audit,
    judge: Judge,
    mode: str,
    segmentation: str = "",
    batch_name: str = "",
    user=None,
    status: str = JudgeRun.Status.QUEUED,
    label_mode: str = LabelMode.STEPS,
) -> JudgeRun:
    steps = _scope_steps(
        audit=audit,
        segmentation=segmentation,
        batch_name=batch_name,
        whole_traces=label_mode == LabelMode.FIRST_ERROR,
    )
    if segmentation and not steps.exists():
        raise ApplicationError(
            f"audit {audit.slug} has no steps in segmentation {segmentation!r}",
            code="empty_scope",
            extra={"field": "segmentation"},
        )
    agg = steps.aggregate(n=Count("id"), max_id=models.Max("id"))
    scope = (
        JudgeRun.Scope.BATCH
        if batch_name
        else JudgeRun.Scope.SEGMENTATION
        if segmentation
        else JudgeRun.Scope.AUDIT
    )
    # Runs that ask the judge use the prompt of their mode; imported and reference verdicts
    # were written by no prompt of ours, and the run just names the judge's.
    asks = mode in (JudgeRun.Mode.WORKERS, JudgeRun.Mode.BATCH_API) and judge.prompt_id
    prompt = run_prompt(judge, label_mode) if asks else judge.prompt
    if prompt is not None and prompt.used_at is None:
        # From now on this version is immutable (the model's save enforces it too).
        JudgePrompt.objects.filter(pk=prompt.pk, used_at=None).update(used_at=timezone.now())
    return JudgeRun.objects.create(
        judge=judge,
        judge_settings=judge.settings_record(),
        audit=audit,
        prompt=prompt,
        mode=mode,
        label_mode=label_mode,
        scope=scope,
        segmentation=segmentation,
        batch_name=batch_name,
        scope_max_step_id=agg["max_id"] or 0,
        total=agg["n"],
        status=status,
        seed=secrets.token_hex(16),
        created_by=user if getattr(user, "is_authenticated", False) else None,
    )


@transaction.atomic
def run_create(
    *,
    audit: Audit,
    judge: Judge,
    segmentation: str = "",
    batch_name: str = "",
    user=None,
    label_mode: str | None = None,
) -> JudgeRun:
    """A run of ``judge`` over the scope; its lanes start once this commits.

    ``label_mode`` (default: the judge's): ``steps`` asks about each step; ``first_error``
    asks for each trace's first wrong step (docs/judges.md, "First-error mode").
    """
    if judge.is_reference:
        raise ApplicationError(
            f"{judge.name} is a reference judge: use reference_run_create", code="reference_judge"
        )
    label_mode = label_mode or judge.label_mode or LabelMode.STEPS
    label_mode_check(audit=audit, judge=judge, label_mode=label_mode)
    _check_runnable(judge)
    run = _run_new(
        audit=audit,
        judge=judge,
        mode=JudgeRun.Mode.WORKERS,
        segmentation=segmentation,
        batch_name=batch_name,
        user=user,
        label_mode=label_mode,
    )
    if run.total == 0:
        _run_end(run, JudgeRun.Status.DONE, "the scope has no steps")
        return run
    from judges.tasks import enqueue_run_start

    transaction.on_commit(lambda: enqueue_run_start(run.pk))
    return run


def label_mode_check(*, audit: Audit, judge: Judge, label_mode: str) -> None:
    """Refuse an unknown mode, and a mode other than the one this judge version already ran
    in on the audit: reports take each step's verdict from the judge's latest run, so steps
    and first-error verdicts of one evaluator would mix."""
    if label_mode not in LabelMode.values:
        raise ApplicationError(
            f"label_mode must be one of {', '.join(LabelMode.values)}, got {label_mode!r}",
            code="invalid",
            extra={"field": "label_mode"},
        )
    other = (
        JudgeRun.objects.filter(audit=audit, judge=judge)
        .exclude(label_mode=label_mode)
        .values_list("label_mode", flat=True)
        .first()
    )
    if other is not None:
        raise ConflictError(
            f"judge {judge.label} already ran in {other} mode on audit {audit.slug}; its "
            f"{label_mode} verdicts would mix with those in the report. Save the spec with "
            f'"label_mode": "{label_mode}" (a new version, its own evaluator) instead',
            code="label_mode_mixed",
            extra={"field": "label_mode"},
        )


def _check_runnable(judge: Judge) -> None:
    if judge.prompt_id is None:
        raise ApplicationError(f"judge {judge.name} has no prompt", code="no_prompt")
    if not judge.base_url or not judge.model:
        raise ApplicationError(f"judge {judge.name} has no endpoint", code="no_endpoint")
    # The deployment's policy may have changed since the judge was saved.
    egress_check(base_url=judge.base_url, api_key_env=judge.api_key_env or None)
    limits = RateLimits(requests_per_minute=judge.rpm_limit, tokens_per_minute=judge.tpm_limit)
    if not limits.unlimited and not settings.REDIS_URL:
        raise ApplicationError(
            f"judge {judge.name} has rate limits, which are shared through Redis: set REDIS_URL",
            code="rate_limit_needs_redis",
        )


def run_missing_step_ids(run: JudgeRun) -> list[int]:
    """Step ids of the run's scope with neither a verdict nor a recorded failure.

    First-error mode: the first step of each trace (under its segmentation) none of whose
    steps has a verdict or a failure — a trace is asked, and answered, as a whole.
    """
    if run.label_mode == LabelMode.FIRST_ERROR:
        return _missing_trace_heads(run)
    return list(
        run_scope_steps(run)
        .exclude(pk__in=JudgeVerdict.objects.filter(run=run).values("step_id"))
        .exclude(pk__in=JudgeFailure.objects.filter(run=run).values("step_id"))
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def _missing_trace_heads(run: JudgeRun) -> list[int]:
    scope = run_scope_steps(run)
    answered = set(
        scope.filter(
            Q(pk__in=JudgeVerdict.objects.filter(run=run).values("step_id"))
            | Q(pk__in=JudgeFailure.objects.filter(run=run).values("step_id"))
        ).values_list("trace_id", "segmentation")
    )
    heads: dict[tuple[int, str], int] = {}
    rows = scope.order_by("trace_id", "segmentation", "index", "pk").values_list(
        "pk", "trace_id", "segmentation"
    )
    for pk, trace_id, segmentation in rows.iterator():
        heads.setdefault((trace_id, segmentation), pk)
    return sorted(pk for unit, pk in heads.items() if unit not in answered)


def _shuffled_by_trace(run: JudgeRun, step_ids: list[int], rng: random.Random) -> list[int]:
    """The traces in random order, each trace's steps together and in order.

    Why not the steps shuffled one by one: consecutive requests of one trace share their prompt
    up to the last preceding step (``judges.prompts``), which a prefix-caching server computes
    once — but only if they arrive close together. Shuffling traces still spreads the
    conditions evenly over a run cut short.
    """
    wanted = set(step_ids)
    # Over the run's scope, not ``pk IN (…)``: a long id list exceeds SQLite's parameter limit.
    rows = run_scope_steps(run).values_list("pk", "trace_id", "index").iterator()
    by_trace: dict[int, list[tuple[int, int]]] = {}
    for pk, trace_id, index in rows:
        if pk in wanted:
            by_trace.setdefault(trace_id, []).append((index, pk))
    traces = sorted(by_trace)
    rng.shuffle(traces)
    return [pk for trace in traces for _, pk in sorted(by_trace[trace])]


def run_enqueue_missing(*, run_id: int) -> int:
    """Start the lanes of a queued or running run over its missing steps; returns lanes started.

    The missing steps, shuffled by the run's seed and generation (so a cancelled run's
    verdicts cover the conditions evenly, not the first-imported traces), go to the run's
    shared list in Redis, and ``Judge.parallel_chunks`` lane tasks claim from it; without
    Redis, each lane task carries an interleaved share of them.
    """
    from judges.tasks import enqueue_lane

    run = JudgeRun.objects.select_related("audit", "judge").get(pk=run_id)
    if run.status not in JudgeRun.ACTIVE:
        return 0
    ids = run_missing_step_ids(run)
    if not ids:
        run_finish_if_complete(run_id=run.pk)
        return 0
    ids = _shuffled_by_trace(run, ids, random.Random(f"{run.seed}:{run.generation}"))
    lanes = max(1, min(run.judge.parallel_chunks, len(ids)))
    if worksource.shared_queue_available():
        worksource.run_queue_fill(run=run, generation=run.generation, step_ids=ids)
        for lane in range(lanes):
            enqueue_lane(run.pk, lane, run.generation)
    else:
        for lane in range(lanes):
            enqueue_lane(run.pk, lane, run.generation, ids[lane::lanes])
    JudgeRun.objects.filter(pk=run.pk).update(chunks_enqueued=F("chunks_enqueued") + lanes)
    return lanes


# -- runs: status changes --------------------------------------------------------------------


def _status_cache_key(run_id: int, seed: str) -> str:
    # The seed makes the key unique to this run even where ids are reused (a test database).
    return f"judges:run-status:{run_id}:{seed}"


def _publish_status(run: JudgeRun) -> None:
    cache.set(_status_cache_key(run.pk, run.seed), (run.status, run.generation), 60)


def run_status_cached(run_id: int, seed: str) -> tuple[str, int] | None:
    """(status, generation), from the shared cache (set on every change) or the database.

    Chunks poll this several times a second; the cache spares the database those reads.
    """
    key = _status_cache_key(run_id, seed)
    value = cache.get(key)
    if value is not None:
        return (value[0], value[1])
    row = JudgeRun.objects.filter(pk=run_id).values_list("status", "generation").first()
    if row is not None:
        cache.set(key, row, 5)
    return row


def _active_seconds(run: JudgeRun, now: datetime) -> float:
    extra = (now - run.running_since).total_seconds() if run.running_since else 0.0
    return run.active_seconds + max(0.0, extra)


def _run_end(run: JudgeRun, status: str, message: str = "") -> None:
    now = timezone.now()
    run.active_seconds = _active_seconds(run, now)
    run.running_since = None
    run.status = status
    run.finished_at = now
    if message:
        run.message = message
    run.save(update_fields=["status", "finished_at", "message", "active_seconds", "running_since"])
    _publish_status(run)
    # Whatever the lanes had not claimed is not wanted any more (resume fills a new list).
    transaction.on_commit(lambda: worksource.run_queue_drop(run))


def _locked(run_id: int) -> JudgeRun:
    run = JudgeRun.objects.select_for_update().filter(pk=run_id).first()
    if run is None:
        raise NotFoundError(f"no judge run {run_id}")
    return run


def run_pause(*, run: JudgeRun) -> JudgeRun:
    """Stop sending: in-flight requests finish and are stored; resume asks the rest."""
    with transaction.atomic():
        run = _locked(run.pk)
        if run.status not in JudgeRun.ACTIVE:
            raise ConflictError(
                f"run {run.pk} is {run.status}; only a queued or running run can be paused",
                code="not_running",
            )
        run.active_seconds = _active_seconds(run, timezone.now())
        run.running_since = None
        run.status = JudgeRun.Status.PAUSED
        run.save(update_fields=["status", "active_seconds", "running_since"])
    _publish_status(run)
    return run


def run_resume(*, run: JudgeRun) -> JudgeRun:
    """Continue a paused run, or ask the failed steps of a failed run again."""
    with transaction.atomic():
        run = _locked(run.pk)
        if run.mode != JudgeRun.Mode.WORKERS:
            raise ConflictError(
                "only runs executed by workers can be resumed", code="not_resumable"
            )
        if run.status not in (JudgeRun.Status.PAUSED, JudgeRun.Status.FAILED):
            raise ConflictError(
                f"run {run.pk} is {run.status}; only a paused or failed run can be resumed",
                code="not_resumable",
            )
        _check_runnable(run.judge)
        JudgeFailure.objects.filter(run=run).delete()
        _recount(run)
        run.status = JudgeRun.Status.RUNNING
        run.running_since = timezone.now()
        run.heartbeat_at = run.running_since
        run.finished_at = None
        run.message = ""
        # Chunks still queued from before the pause belong to the old generation: they exit.
        run.generation += 1
        run.save()
        from judges.tasks import enqueue_run_start

        run_id = run.pk
        transaction.on_commit(lambda: enqueue_run_start(run_id))
    _publish_status(run)
    return run


def run_cancel(*, run: JudgeRun) -> JudgeRun:
    with transaction.atomic():
        run = _locked(run.pk)
        if run.status in JudgeRun.ENDED:
            raise ConflictError(f"run {run.pk} has already ended ({run.status})", code="ended")
        _run_end(run, JudgeRun.Status.CANCELLED, "cancelled")
    return run


def _mark_running(run: JudgeRun, generation: int) -> None:
    now = timezone.now()
    changed = JudgeRun.objects.filter(
        pk=run.pk, status=JudgeRun.Status.QUEUED, generation=generation
    ).update(status=JudgeRun.Status.RUNNING, started_at=now, running_since=now, heartbeat_at=now)
    if changed:
        cache.set(_status_cache_key(run.pk, run.seed), (JudgeRun.Status.RUNNING, generation), 60)


def _recount(run: JudgeRun) -> None:
    agg = JudgeVerdict.objects.filter(run=run).aggregate(
        done=Count("id"),
        invalid=Count("id", filter=Q(verdict=JudgeVerdict.Verdict.INVALID)),
        prompt_tokens=Sum("prompt_tokens"),
        completion_tokens=Sum("completion_tokens"),
    )
    run.done = agg["done"]
    run.invalid = agg["invalid"]
    run.prompt_tokens = agg["prompt_tokens"] or 0
    run.completion_tokens = agg["completion_tokens"] or 0
    run.failed = JudgeFailure.objects.filter(run=run).count()


def run_finish_if_complete(*, run_id: int) -> JudgeRun | None:
    """Mark a running run done (or failed) when no step remains; exact recount under a lock."""
    counters = (
        JudgeRun.objects.filter(pk=run_id).values("status", "total", "done", "failed").first()
    )
    if counters is None or counters["status"] not in JudgeRun.ACTIVE:
        return None
    if counters["done"] + counters["failed"] < counters["total"]:
        return None
    with transaction.atomic():
        run = _locked(run_id)
        if run.status not in JudgeRun.ACTIVE:
            return None
        # A step may have a late verdict after a recorded failure (a duplicated chunk): the
        # verdict wins, the failure goes.
        JudgeFailure.objects.filter(
            run=run, step_id__in=JudgeVerdict.objects.filter(run=run).values("step_id")
        ).delete()
        _recount(run)
        run.save(update_fields=["done", "invalid", "failed", "prompt_tokens", "completion_tokens"])
        if run.done + run.failed < run.total:
            return None
        if run.failed:
            _run_end(
                run,
                JudgeRun.Status.FAILED,
                f"{run.failed} of {run.total} steps got no verdict; resume asks them again",
            )
        else:
            _run_end(run, JudgeRun.Status.DONE)
    return run


def run_fail(*, run_id: int, message: str) -> None:
    with transaction.atomic():
        run = _locked(run_id)
        if run.status in JudgeRun.ENDED:
            return
        _run_end(run, JudgeRun.Status.FAILED, message)


def run_reconcile(*, run_id: int, stale_after_s: float = DEFAULT_STALE_AFTER_S) -> int:
    """Re-enqueue the missing steps of a run that has gone silent; returns chunks enqueued.

    Silent = running (or queued) with no heartbeat for ``stale_after_s``: its worker was
    killed, or its message was lost (kombu's filesystem transport has no redelivery; Redis
    redelivers an unacked message only after the visibility timeout, an hour here). The
    generation is bumped first, so an old chunk that is merely slow stops at its next poll
    and a late redelivery of it exits at once; verdict uniqueness covers the overlap.
    """
    with transaction.atomic():
        run = JudgeRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.status not in JudgeRun.ACTIVE or run.mode != JudgeRun.Mode.WORKERS:
            return 0
        now = timezone.now()
        last = run.heartbeat_at or run.created_at
        if (now - last).total_seconds() < stale_after_s:
            return 0
        run.generation += 1
        run.heartbeat_at = now
        if run.status == JudgeRun.Status.QUEUED:
            run.status = JudgeRun.Status.RUNNING
            run.started_at = run.started_at or now
            run.running_since = now
        run.save(
            update_fields=["generation", "heartbeat_at", "status", "started_at", "running_since"]
        )
    _publish_status(run)
    logger.warning(
        "judge run %s was silent for %.0fs: re-enqueueing its missing steps",
        run_id,
        (now - last).total_seconds(),
    )
    return run_enqueue_missing(run_id=run_id)


def runs_reconcile(*, stale_after_s: float = DEFAULT_STALE_AFTER_S) -> int:
    ids = JudgeRun.objects.filter(
        status__in=JudgeRun.ACTIVE, mode=JudgeRun.Mode.WORKERS
    ).values_list("pk", flat=True)
    return sum(run_reconcile(run_id=i, stale_after_s=stale_after_s) for i in list(ids))


def wait_poll(
    *,
    run_id: int,
    every_s: float = 1.0,
    on_progress: Callable[[JudgeRun], None] | None = None,
    timeout_s: float | None = None,
    stale_after_s: float = DEFAULT_STALE_AFTER_S,
    on_outage: Callable[[str, BaseException, float], None] | None = None,
) -> JudgeRun:
    """Poll a run until it ends (for ``run_judge --wait``); reconciles it when it goes silent.

    An unreachable database or Redis does not end the wait: each read is retried with back-off
    (``on_outage(service, error, delay)`` says what it waits for) until the service is back.
    """
    from auditapp.outages import ride_out

    deadline = None if timeout_s is None else time.monotonic() + timeout_s

    def ride(fn):
        return ride_out(fn, what=f"waiting for judge run {run_id}", on_wait=on_outage)

    while True:
        run = ride(lambda: JudgeRun.objects.select_related("judge", "audit").get(pk=run_id))
        if on_progress:
            ride(lambda: on_progress(run))  # noqa: B023
        if run.status in JudgeRun.ENDED:
            return run
        if deadline is not None and time.monotonic() > deadline:
            return run
        ride(lambda: run_reconcile(run_id=run_id, stale_after_s=stale_after_s))
        time.sleep(every_s)
