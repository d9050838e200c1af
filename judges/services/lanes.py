"""Lanes: each one a long-lived request stream over its share of the judge's concurrency.

A run is executed by ``Judge.parallel_chunks`` lane tasks (one per worker process that should
share it). A lane keeps ``max_concurrency / parallel_chunks`` requests in flight for as long
as the run has steps: the client (``judge_stream_sync``) asks the lane's ``feed`` for the next
few requests while it still holds some, so a slot that frees up is refilled at once; a retry
sleeping on its back-off or ``Retry-After`` holds no slot. There is no batch boundary at which
a lane waits for its slowest request — the only drain is at the very end of the run.

Steps are claimed from the run's shared work source (``judges.services.worksource``): a Redis
list that every lane pops from, so the lanes finish together; without Redis, a static share.
Verdicts are written by the calling thread in batches (``FLUSH_ROWS`` / ``FLUSH_AGE_S``) as
results complete, so a killed lane loses only what was in flight or claimed-but-unsent — and
those steps simply have no verdict, which is what reconcile and resume look for.

A lane also holds one of the judge's *lane slots* (a cache key, ``SET NX`` with a short TTL
refreshed while it runs), so two runs of one judge never exceed its total concurrency.

Outages: a lane rides out an unreachable database or Redis itself (``auditapp.outages.
ride_out``: retry with back-off, the outage logged once) instead of crashing and waiting for
a Celery retry or for reconcile. Claimed steps stay claimed across the wait, results wait in
the writer's buffer, and a Redis restart that lost the run's list is noticed at the next claim
and the list rebuilt from the database (``worksource.ListLost``). So verdicts flow again
within a second or two of the service being back (bench/judge_bench.py ``--faults``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone

from auditapp.outages import outage_log, outage_service, ride_out
from judges.clients import JudgeConfigError, JudgeResult, RateLimits, judge_stream_sync, limiter_for
from judges.clients.openai_compat import JudgeRequest
from judges.models import Judge, JudgeFailure, JudgeRun, JudgeVerdict, LabelMode
from judges.rendering import (
    RenderedStep,
    client_settings,
    requests_for_steps,
    requests_for_traces,
)
from judges.services import store
from judges.services.runs import (
    _mark_running,
    run_fail,
    run_finish_if_complete,
    run_scope_steps,
    run_status_cached,
)
from judges.services.store import (
    FLUSH_AGE_S,
    FLUSH_ROWS,
    failures_store,
    first_error_verdicts,
    verdict_from_result,
)
from judges.services.worksource import ListLost, StepSource, run_queue_rebuild, source_for

logger = logging.getLogger(__name__)

# A lane refreshes its slot and the run's heartbeat this often while it runs.
HEARTBEAT_S = 2.0
LANE_TTL_S = 15
# Steps a lane claims per feed call (the client asks again while it still holds this many).
# Small, so the last claims of a run spread over the lanes (a lane's unsent claims at the
# end are at most twice this); large enough that the per-call cost (an LPOP, one query to
# skip answered steps, the rendering queries) stays a small share of the calling thread:
# at 16, 2 lanes × 320 steps/s make ~40 feed calls/s in all. bench/judge_bench.py, see
# docs/judges.md.
FEED_SIZE = 16
# How long a lane waits for an unreachable database or Redis before it gives up (and its task
# is retried, or reconcile takes over).
OUTAGE_LIMIT_S = 600.0


class TransientJudgeError(Exception):
    """Some steps got no answer for reasons that may pass (429 / 5xx / timeouts beyond the
    client's retries). The lane task retries later; answered steps are skipped."""


@dataclass(frozen=True)
class LaneOutcome:
    skipped: bool = False  # the run was not running, or the lane is of an older generation
    asked: int = 0
    stored: int = 0
    failed: int = 0
    transient: int = 0  # retryable failures given back for a retry of the lane
    hedged: int = 0  # duplicate requests sent by the client's tail hedging


ChunkOutcome = LaneOutcome  # the name of the per-chunk era, kept for callers


# Tries per verdict row once its batch failed to write (a value the database refuses, a lost
# connection): then the step ends as a ``store_error`` failure with the database's reason, so
# no answer can keep a run from finishing (issue 14: one NUL kept a run "running 0/33").
WRITE_TRIES = 3
WRITE_RETRY_S = 0.2


class _VerdictWriter:
    """Buffers results from the client and writes them in batches (rows and age bounded)."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self.rendered: dict[str, RenderedStep] = {}
        self.pending: list[JudgeVerdict] = []
        self.sources: dict[int, tuple[RenderedStep, JudgeResult]] = {}
        self.failures: list[tuple[RenderedStep, JudgeResult]] = []
        self.first_pending_at = 0.0
        # First-error mode: a trace's first step id → its steps after the first error.
        self.skipped_after: dict[int, int] = {}
        self.inserted = 0
        self.slowest_flush_s = 0.0  # for the lane's log line: a slow write delays the feed

    def add(self, result: JudgeResult) -> None:
        item = self.rendered.pop(result.key, None)
        if item is None:
            return  # a second answer for a request already answered: the first one counts
        if not result.ok:
            self.failures.append((item, result))
            return
        if item.unit_step_ids and result.verdict == JudgeVerdict.Verdict.INVALID:
            # No first error could be read (unparseable, or a step out of range): a failure
            # of every step of the trace, with the reason; resume asks the trace again.
            reason = result.error or "no first-error step could be read"
            self.failures.append(
                (
                    item,
                    dataclasses.replace(
                        result, ok=False, failure="invalid_answer", retryable=False, error=reason
                    ),
                )
            )
            return
        if not self.pending:
            self.first_pending_at = time.monotonic()
        if item.unit_step_ids:
            rows, skipped = first_error_verdicts(run_id=self.run_id, rendered=item, result=result)
            self.skipped_after[item.step_id] = skipped
        else:
            rows = [verdict_from_result(run_id=self.run_id, rendered=item, result=result)]
        for row in rows:
            self.sources[row.step_id] = (item, result)
        self.pending.extend(rows)
        if len(self.pending) >= FLUSH_ROWS:
            self.flush()

    def _skips(self) -> dict:
        # Only in first-error mode, so a wrapped verdicts_store of the step mode still fits.
        return {"skipped_after": self.skipped_after} if self.skipped_after else {}

    def flush_if_old(self) -> None:
        if self.pending and time.monotonic() - self.first_pending_at >= FLUSH_AGE_S:
            self.flush()

    def flush(self) -> None:
        batch, self.pending = self.pending, []
        if not batch:
            return
        started = time.monotonic()
        try:
            # Looked up on the module at call time, so a test can wrap it. Retried while the
            # database is unreachable (the insert is idempotent: ON CONFLICT DO NOTHING); a
            # batch the database refuses for its content is written row by row instead.
            self.inserted += ride_out(
                lambda: store.verdicts_store(run_id=self.run_id, verdicts=batch, **self._skips()),
                what=f"judge run {self.run_id}: verdict write",
                give_up_after_s=OUTAGE_LIMIT_S,
            )
        except DatabaseError as exc:
            if outage_service(exc) is not None:
                raise  # still unreachable: the lane stops, reconcile resumes the steps
            logger.warning("judge run %s: a verdict batch did not write (%s)", self.run_id, exc)
            for verdict in batch:
                self._write_one(verdict)
        finally:
            for verdict in batch:
                self.sources.pop(verdict.step_id, None)
                self.skipped_after.pop(verdict.step_id, None)
        self.slowest_flush_s = max(self.slowest_flush_s, time.monotonic() - started)

    def _write_one(self, verdict: JudgeVerdict) -> None:
        """One row, ``WRITE_TRIES`` times; then the step is a failure carrying the reason."""
        problem = ""
        for attempt in range(WRITE_TRIES):
            if attempt:
                time.sleep(WRITE_RETRY_S)
                if not connection.in_atomic_block:
                    close_old_connections()  # a connection the last try broke is replaced
            try:
                self.inserted += store.verdicts_store(
                    run_id=self.run_id, verdicts=[verdict], **self._skips()
                )
                return
            except DatabaseError as exc:
                if outage_service(exc) is not None:
                    raise  # an outage is not this row's fault: reconcile resumes the step
                problem = f"{type(exc).__name__}: {' '.join(str(exc).split())[:500]}"
        item, result = self.sources[verdict.step_id]
        if item.unit_step_ids:
            # One row of a trace failed: the failure covers that step alone.
            item = dataclasses.replace(item, step_id=verdict.step_id, unit_step_ids=())
        reason = f"the verdict could not be stored after {WRITE_TRIES} tries: {problem}"
        self.failures.append(
            (
                item,
                dataclasses.replace(
                    result, ok=False, failure="store_error", retryable=False, error=reason
                ),
            )
        )


class _LaneSlot:
    def __init__(self, judge: Judge) -> None:
        stamp = judge.created_at.timestamp() if judge.created_at else 0
        self.prefix = f"judges:lane:{judge.pk}:{stamp}:"
        self.count = max(1, judge.parallel_chunks)
        self.token = uuid.uuid4().hex
        self.key: str | None = None

    def try_acquire(self) -> bool:
        for i in range(self.count):
            key = f"{self.prefix}{i}"
            if cache.add(key, self.token, LANE_TTL_S):
                self.key = key
                return True
        return False

    def refresh(self) -> None:
        if not self.key:
            return
        held = cache.get(self.key)
        if held == self.token:
            cache.touch(self.key, LANE_TTL_S)
        elif held is None:
            cache.add(self.key, self.token, LANE_TTL_S)  # lost with a Redis restart: take it back

    def release(self) -> None:
        if self.key and cache.get(self.key) == self.token:
            cache.delete(self.key)
        self.key = None


def _still_mine(run: JudgeRun, generation: int) -> bool:
    state = run_status_cached(run.pk, run.seed)
    return state is not None and state[0] == JudgeRun.Status.RUNNING and state[1] == generation


def _unanswered(run: JudgeRun, step_ids: list[int]) -> list[int]:
    """``step_ids`` in scope with neither a verdict nor a failure, in the given order.

    Every lookup is bounded by ``step_ids`` (the (run, step) unique indexes): a ``NOT IN``
    over the run's verdicts made PostgreSQL hash all of them on every feed call (EXPLAIN:
    "hashed SubPlan" over the run's verdicts), a cost that grew with the run.
    """
    answered = set(
        JudgeVerdict.objects.filter(run=run, step_id__in=step_ids).values_list("step_id", flat=True)
    )
    answered |= set(
        JudgeFailure.objects.filter(run=run, step_id__in=step_ids).values_list("step_id", flat=True)
    )
    todo = [i for i in step_ids if i not in answered]
    if not todo:
        return []
    in_scope = set(run_scope_steps(run).filter(pk__in=todo).values_list("pk", flat=True))
    return [i for i in todo if i in in_scope]


def _missing_now(run: JudgeRun, writer: _VerdictWriter) -> list[int]:
    """The run's steps still without an answer, minus those this lane holds in flight."""
    from judges.services.runs import run_missing_step_ids

    mine = {r.step_id for r in writer.rendered.values()} | {v.step_id for v in writer.pending}
    return [i for i in run_missing_step_ids(run) if i not in mine]


def judge_lane_run(
    *,
    run_id: int,
    lane: int = 0,
    step_ids: list[int] | None = None,
    generation: int | None = None,
    final_attempt: bool = True,
) -> LaneOutcome:
    """Stream the run's unanswered steps through the judge until the source is empty.

    ``step_ids=None`` claims from the run's shared Redis list; a list judges exactly those
    (the steps among them that have no verdict yet). Safe to run any number of times.
    ``final_attempt=False`` (a Celery try with retries left) gives steps left without an
    answer for reasons that may pass back to the source and raises ``TransientJudgeError``;
    on the final attempt they are recorded as failures so the run can end.
    """
    run = JudgeRun.objects.select_related("judge", "prompt", "audit").filter(pk=run_id).first()
    if run is None:
        return LaneOutcome(skipped=True)  # a message that outlived its run
    generation = run.generation if generation is None else generation
    if run.generation != generation:
        return LaneOutcome(skipped=True)
    _mark_running(run, generation)
    if not _still_mine(run, generation):
        return LaneOutcome(skipped=True)
    source: StepSource = source_for(run, generation, step_ids)
    judge = run.judge
    slot = _LaneSlot(judge)
    last_beat = 0.0

    def beat() -> None:
        nonlocal last_beat
        now = time.monotonic()
        if now - last_beat >= HEARTBEAT_S:
            last_beat = now
            slot.refresh()
            try:
                JudgeRun.objects.filter(pk=run_id).update(heartbeat_at=timezone.now())
            except Exception as exc:
                service = outage_service(exc)
                if service is None:
                    raise
                outage_log.down(service, exc, where=f"judge run {run_id}: heartbeat")
                last_beat = 0.0  # try again at the next poll

    def waiting(service: str, exc: BaseException, delay: float) -> None:
        if service != "database":
            beat()  # the database is up: keep the run from looking silent

    def ride(fn, what: str):
        return ride_out(
            fn, what=f"judge run {run_id}: {what}", on_wait=waiting,
            give_up_after_s=OUTAGE_LIMIT_S,
        )  # fmt: skip

    def claim(n: int) -> list[int]:
        while True:
            try:
                return ride(lambda: source.claim(n), "claim")
            except ListLost:
                logger.warning(
                    "judge run %s lane %s: the run's list in Redis is gone (a restart?); "
                    "rebuilding it from the database",
                    run_id,
                    lane,
                )
                ride(
                    lambda: run_queue_rebuild(
                        run=run, generation=generation, missing=lambda: _missing_now(run, writer)
                    ),
                    "rebuild",
                )
                time.sleep(0.05)

    t_start = time.perf_counter()
    while not slot.try_acquire():
        if not _still_mine(run, generation):
            return LaneOutcome(skipped=True)
        beat()
        time.sleep(0.2)
    writer = _VerdictWriter(run_id)
    asked = 0

    def feed(n: int) -> list[JudgeRequest]:
        nonlocal asked
        while claimed := claim(n):
            # A rebuilt list holds steps this lane already has in flight: never ask twice.
            in_flight = {r.step_id for r in writer.rendered.values()}
            claimed = [i for i in claimed if i not in in_flight]
            if not claimed:
                continue
            # Claimed steps are held across a database outage: the lookups are retried, the
            # claim is not repeated (that would lose these).
            todo = ride(lambda: _unanswered(run, claimed), "feed")  # noqa: B023
            if not todo:
                continue  # answered meanwhile (an older generation's lane, a duplicate task)
            if run.label_mode == LabelMode.FIRST_ERROR:
                rendered = ride(
                    lambda: requests_for_traces(
                        judge=judge,
                        prompt=run.prompt,
                        audit=run.audit,
                        step_ids=todo,  # noqa: B023
                        max_step_id=run.scope_max_step_id,
                    ),
                    "render",
                )
            else:
                rendered = ride(
                    lambda: requests_for_steps(
                        judge=judge,
                        prompt=run.prompt,
                        audit=run.audit,
                        step_ids=todo,  # noqa: B023
                    ),
                    "render",
                )
            writer.rendered.update((r.request.key, r) for r in rendered)
            asked += len(rendered)
            return [r.request for r in rendered]
        return []

    def should_stop() -> bool:
        writer.flush_if_old()
        beat()
        try:
            return not _still_mine(run, generation)
        except Exception as exc:
            service = outage_service(exc)
            if service is None:
                raise
            outage_log.down(service, exc, where=f"judge run {run_id}: status")
            return False  # keep going: the writes wait for the database anyway

    per_lane = math.ceil(judge.max_concurrency / max(1, judge.parallel_chunks))
    t_http = time.perf_counter()
    try:
        try:
            stats = judge_stream_sync(
                feed,
                settings=client_settings(judge, concurrency=per_lane),
                feed_size=min(FEED_SIZE, per_lane),
                on_result=writer.add,
                rate_limiter=_rate_limiter(judge),
                should_stop=should_stop,
            )
        except JudgeConfigError as exc:
            writer.flush()
            run_fail(run_id=run_id, message=f"judge configuration: {exc}")
            return LaneOutcome(asked=asked, stored=writer.inserted)
        t_done = time.perf_counter()
        writer.flush()
    finally:
        slot.release()
    permanent = [(item, r) for item, r in writer.failures if not r.retryable]
    transient = [(item, r) for item, r in writer.failures if r.retryable]
    if final_attempt:
        permanent += transient
        transient = []
    failure_rows = [
        JudgeFailure(
            run_id=run_id,
            step_id=step_id,
            kind=r.failure or "error",
            error=store.storable((r.error or "")[:2000]),
            attempts=r.attempts,
        )
        for item, r in permanent
        # A first-error request fails for every step of its trace.
        for step_id in (item.unit_step_ids or (item.step_id,))
    ]
    n_failed = ride(lambda: failures_store(run_id=run_id, failures=failure_rows), "failures")
    outcome = LaneOutcome(
        asked=asked,
        stored=writer.inserted,
        failed=n_failed,
        transient=len(transient),
        hedged=stats.get("hedges", 0),
    )
    ride(lambda: run_finish_if_complete(run_id=run_id), "finish")
    logger.info(
        "judge run %s lane %s: %d asked, %d stored, %d hedged; "
        "set-up %.3fs, stream %.3fs (waiting for feed %.3fs, slowest write %.3fs), finish %.3fs",
        run_id,
        lane,
        asked,
        writer.inserted,
        outcome.hedged,
        t_http - t_start,
        t_done - t_http,
        stats.get("starved_ms", 0) / 1000,
        writer.slowest_flush_s,
        time.perf_counter() - t_done,
    )
    if transient and ride(lambda: _still_mine(run, generation), "status"):
        ride(lambda: source.give_back([item.step_id for item, _ in transient]), "give back")
        first = transient[0][1].error
        raise TransientJudgeError(f"{len(transient)} steps without an answer yet; last: {first}")
    return outcome


def judge_chunk_run(
    *,
    run_id: int,
    step_ids: list[int],
    generation: int | None = None,
    final_attempt: bool = True,
) -> LaneOutcome:
    """Judge exactly the steps of ``step_ids`` that have no verdict yet (one lane's stream)."""
    return judge_lane_run(
        run_id=run_id, step_ids=list(step_ids), generation=generation, final_attempt=final_attempt
    )


def _rate_limiter(judge: Judge):
    limits = RateLimits(requests_per_minute=judge.rpm_limit, tokens_per_minute=judge.tpm_limit)
    return limiter_for(redis_url=settings.REDIS_URL or None, judge_id=str(judge.pk), limits=limits)
