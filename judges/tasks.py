"""Celery tasks of judge runs: thin, taking ids, idempotent, safe to run twice.

Judge work goes to its own queue (``Queue.JUDGES``) so a long run does not hold up imports;
start workers with ``-Q celery,judges`` (``scripts/demo`` does).

Delivery guarantees and what covers each gap:

* a task that runs twice (redelivery, a duplicate enqueue): ``judge_chunk_run`` skips steps that
  have a verdict and the (run, step) unique constraint drops a racing duplicate;
* a worker killed mid-chunk: ``acks_late`` + ``reject_on_worker_lost`` make the broker keep the
  message — but Redis hands it out again only after the visibility timeout (an hour here) and
  kombu's filesystem transport never does. The honest mechanism is therefore
  ``judge_run_reconcile_task`` (every minute from beat, and from ``run_judge --wait``): a run
  silent for ``stale_after_s`` gets its missing steps enqueued again under a new generation;
* steps the endpoint did not answer (429 / 5xx / timeouts beyond the client's own retries):
  the chunk raises ``TransientJudgeError`` and Celery retries it with back-off; on the last
  try they are recorded as failures and the run ends ``failed`` (``resume`` asks them again).
"""

from __future__ import annotations

from enum import StrEnum

from celery import shared_task
from django.db import InterfaceError, OperationalError

from judges.services import (
    DEFAULT_STALE_AFTER_S,
    TransientJudgeError,
    judge_chunk_run,
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
CHUNK_MAX_RETRIES = 5


def enqueue_run_start(run_id: int) -> None:
    judge_run_start_task.apply_async((run_id,), queue=Queue.JUDGES)


def enqueue_chunk(run_id: int, step_ids: list[int], generation: int) -> None:
    judge_chunk_run_task.apply_async(
        (run_id, step_ids), {"generation": generation}, queue=Queue.JUDGES
    )


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=5,
)
def judge_run_start_task(run_id: int) -> int:
    """Cut the run's missing steps into chunks and enqueue them."""
    return run_enqueue_missing(run_id=run_id)


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=2,
    retry_backoff_max=120,
    retry_jitter=True,
    max_retries=CHUNK_MAX_RETRIES,
)
def judge_chunk_run_task(self, run_id: int, step_ids: list[int], generation: int | None = None):
    """Judge the chunk's steps that have no verdict yet (see ``judge_chunk_run``)."""
    outcome = judge_chunk_run(
        run_id=run_id,
        step_ids=step_ids,
        generation=generation,
        final_attempt=self.request.retries >= CHUNK_MAX_RETRIES,
    )
    return {"stored": outcome.stored, "failed": outcome.failed, "skipped": outcome.skipped}


@shared_task(acks_late=True, expires=50)
def judge_run_reconcile_task(
    run_id: int | None = None, stale_after_s: float = DEFAULT_STALE_AFTER_S
) -> int:
    """Re-enqueue the missing steps of silent runs (one run, or every active run)."""
    if run_id is not None:
        return run_reconcile(run_id=run_id, stale_after_s=stale_after_s)
    return runs_reconcile(stale_after_s=stale_after_s)
