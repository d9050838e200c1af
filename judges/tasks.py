"""Celery tasks of judge runs: thin, taking ids, idempotent, safe to run twice.

Judge work goes to its own queue (``Queue.JUDGES``) so a long run does not hold up imports.
Both queues are declared in settings (``CELERY_TASK_QUEUES``): ``celery -A auditapp worker``
consumes them all; ``-Q`` narrows a worker down on purpose.

Delivery guarantees and what covers each gap:

* a task that runs twice (redelivery, a duplicate enqueue): a lane skips claimed steps that
  have a verdict and the (run, step) unique constraint drops a racing duplicate;
* a worker killed mid-lane: ``acks_late`` + ``reject_on_worker_lost`` make the broker keep the
  message — but Redis hands it out again only after the visibility timeout (an hour here) and
  kombu's filesystem transport never does. The honest mechanism is therefore
  ``judge_run_reconcile_task`` (every 5 s from beat, and from ``run_judge --wait``): a run
  silent for ``stale_after_s`` gets its missing steps enqueued again under a new generation
  (the steps the dead lane had claimed are exactly those without verdicts);
* an unreachable database or Redis: the lane rides it out in process (``lanes``), so no
  Celery retry and no reconcile is needed for an outage of seconds or minutes;
* steps the endpoint did not answer (429 / 5xx / timeouts beyond the client's own retries):
  the lane gives them back to the run's list and raises ``TransientJudgeError``; Celery
  retries it with back-off; on the last try they are recorded as failures and the run ends
  ``failed`` (``resume`` asks them again). While a retry waits for its countdown the run's
  heartbeat is set to the countdown's end, so reconcile does not mistake the wait for a dead
  lane (and start a fresh lane with its retries reset, which would never let the run fail).
"""

from __future__ import annotations

import contextlib
import random
from datetime import timedelta
from enum import StrEnum

from celery import shared_task
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from judges.services import (
    DEFAULT_STALE_AFTER_S,
    TransientJudgeError,
    judge_chunk_run,
    judge_lane_run,
    run_enqueue_missing,
    run_reconcile,
    runs_reconcile,
)


class Queue(StrEnum):
    DEFAULT = "celery"
    JUDGES = "judges"


# Errors that may pass: the endpoint's (after the client's own retries) and a dropped or
# locked database. Anything else is a bug and must not be retried blindly.
TRANSIENT_ERRORS = (TransientJudgeError, OperationalError, InterfaceError)
LANE_MAX_RETRIES = 5
CHUNK_MAX_RETRIES = LANE_MAX_RETRIES
RETRY_BACKOFF_S = 2
RETRY_BACKOFF_MAX_S = 120


def _retry_later(task, run_id: int, exc: Exception):
    """Retry ``task`` with jittered exponential back-off, the run's heartbeat promised until
    then; past the last retry the error propagates (as ``autoretry_for`` would)."""
    if task.request.retries >= task.max_retries:
        raise exc
    ceiling = min(RETRY_BACKOFF_MAX_S, RETRY_BACKOFF_S * 2**task.request.retries)
    countdown = random.uniform(0, ceiling)
    from judges.models import JudgeRun

    # If the database is down, reconcile may start the lane afresh, which is also fine.
    with contextlib.suppress(OperationalError, InterfaceError):
        JudgeRun.objects.filter(pk=run_id).update(
            heartbeat_at=timezone.now() + timedelta(seconds=countdown)
        )
    raise task.retry(exc=exc, countdown=countdown)


def enqueue_run_start(run_id: int) -> None:
    """Start the run's lanes. With the broker unreachable the run stays queued (its row is
    committed) and reconcile starts it once the broker is back: the request that created it
    does not fail, so nobody creates it twice."""
    from kombu.exceptions import OperationalError as BrokerError

    from auditapp.outages import outage_log

    try:
        judge_run_start_task.apply_async((run_id,), queue=Queue.JUDGES)
    except BrokerError as exc:
        outage_log.down("broker", exc, where=f"starting judge run {run_id}")


def enqueue_lane(
    run_id: int, lane: int, generation: int, step_ids: list[int] | None = None
) -> None:
    judge_lane_run_task.apply_async(
        (run_id, lane), {"generation": generation, "step_ids": step_ids}, queue=Queue.JUDGES
    )


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=5,
)
def judge_run_start_task(run_id: int) -> int:
    """Put the run's missing steps where its lanes claim them, and start the lanes."""
    return run_enqueue_missing(run_id=run_id)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=LANE_MAX_RETRIES)
def judge_lane_run_task(
    self,
    run_id: int,
    lane: int,
    generation: int | None = None,
    step_ids: list[int] | None = None,
):
    """Stream the run's steps through one lane until none is left (see ``judge_lane_run``)."""
    try:
        outcome = judge_lane_run(
            run_id=run_id,
            lane=lane,
            step_ids=step_ids,
            generation=generation,
            final_attempt=self.request.retries >= LANE_MAX_RETRIES,
        )
    except TRANSIENT_ERRORS as exc:
        _retry_later(self, run_id, exc)
    return {"stored": outcome.stored, "failed": outcome.failed, "skipped": outcome.skipped}


# The per-chunk task of earlier releases, kept so messages already queued still run.
@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=CHUNK_MAX_RETRIES)
def judge_chunk_run_task(self, run_id: int, step_ids: list[int], generation: int | None = None):
    """Judge the chunk's steps that have no verdict yet (see ``judge_chunk_run``)."""
    try:
        outcome = judge_chunk_run(
            run_id=run_id,
            step_ids=step_ids,
            generation=generation,
            final_attempt=self.request.retries >= CHUNK_MAX_RETRIES,
        )
    except TRANSIENT_ERRORS as exc:
        _retry_later(self, run_id, exc)
    return {"stored": outcome.stored, "failed": outcome.failed, "skipped": outcome.skipped}


@shared_task(acks_late=True, expires=4)
def judge_run_reconcile_task(
    run_id: int | None = None, stale_after_s: float = DEFAULT_STALE_AFTER_S
) -> int:
    """Re-enqueue the missing steps of silent runs (one run, or every active run)."""
    if run_id is not None:
        return run_reconcile(run_id=run_id, stale_after_s=stale_after_s)
    return runs_reconcile(stale_after_s=stale_after_s)
