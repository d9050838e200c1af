"""Where a run's lanes claim their steps: one shared Redis list per (run, generation).

``run_enqueue_missing`` pushes the run's missing steps (shuffled) onto the list and starts the
lanes; every lane pops a few steps at a time (``LPOP key count``) as its request slots free
up, so lanes stay balanced until the list is empty — a fast lane simply takes more. A claimed
step that is never answered (the lane was killed, paused or stopped) is not lost: it has no
verdict, and ``run_reconcile`` / ``run_resume`` enqueue the steps without verdicts again under
a new generation, which gets a new list.

Without Redis (the embedded default), the lanes get a static interleaved partition of the
missing steps in their task messages instead (``StaticSource``).

A Redis restart loses the list. An empty answer alone cannot tell "all claimed" from "lost",
so the fill also sets a *marker* key beside the list: an empty list whose marker is gone was
lost, and the lane that sees it first rebuilds it from the database (``ListLost``,
``run_queue_rebuild``) — seconds, instead of waiting for reconcile to notice a silent run.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterable
from functools import cache as memoize
from typing import Protocol

from django.conf import settings

from judges.models import JudgeRun

# The list outlives any plausible run; reconcile and the run's end delete it earlier.
QUEUE_TTL_S = 7 * 24 * 3600
_PUSH_BATCH = 10_000


class StepSource(Protocol):
    def claim(self, n: int) -> list[int]:
        """Up to ``n`` step ids; an empty list when the source is exhausted."""
        ...

    def give_back(self, step_ids: list[int]) -> None:
        """Return claimed steps that got no answer, for a later try (this lane's or another's)."""
        ...


class StaticSource:
    """A fixed list of step ids, for one lane only (no Redis, or an explicit chunk)."""

    def __init__(self, step_ids: Iterable[int]) -> None:
        self._ids = deque(step_ids)

    def claim(self, n: int) -> list[int]:
        return [self._ids.popleft() for _ in range(min(n, len(self._ids)))]

    def give_back(self, step_ids: list[int]) -> None:
        # The task's retry carries the same ids in its message and re-asks the missing ones.
        pass


class ListLost(Exception):
    """The run's list is gone with its marker (Redis lost its data): rebuild it."""


class RedisListSource:
    """The run's shared list in Redis (see the module docstring)."""

    def __init__(self, key: str) -> None:
        self.key = key

    def claim(self, n: int) -> list[int]:
        pipe = _redis().pipeline(transaction=True)
        pipe.lpop(self.key, n)
        pipe.exists(_marker_key(self.key))
        items, marked = pipe.execute()
        if not items and not marked:
            raise ListLost(self.key)
        return [int(i) for i in items or ()]

    def give_back(self, step_ids: list[int]) -> None:
        if step_ids:
            pipe = _redis().pipeline()
            pipe.rpush(self.key, *step_ids)
            pipe.expire(self.key, QUEUE_TTL_S)
            pipe.execute()


def shared_queue_available() -> bool:
    return bool(settings.REDIS_URL)


def run_queue_key(run: JudgeRun, generation: int) -> str:
    # The seed makes the key unique to this run even where ids are reused (a test database).
    return f"judges:todo:{run.pk}:{run.seed}:{generation}"


def _marker_key(list_key: str) -> str:
    return list_key + ":filled"


def run_queue_fill(*, run: JudgeRun, generation: int, step_ids: list[int]) -> None:
    """Replace the generation's list with ``step_ids`` and drop the previous generation's."""
    key = run_queue_key(run, generation)
    pipe = _redis().pipeline(transaction=True)
    pipe.delete(key)
    if generation > 0:
        old = run_queue_key(run, generation - 1)
        pipe.delete(old, _marker_key(old))
    for start in range(0, len(step_ids), _PUSH_BATCH):
        pipe.rpush(key, *step_ids[start : start + _PUSH_BATCH])
    pipe.expire(key, QUEUE_TTL_S)
    pipe.set(_marker_key(key), "1", ex=QUEUE_TTL_S)
    pipe.execute()


REBUILD_LOCK_S = 30


def run_queue_rebuild(*, run: JudgeRun, generation: int, missing: Callable[[], list[int]]) -> bool:
    """Refill a lost list with ``missing()`` (the steps still without an answer), once.

    One lane wins a short lock and refills; the others find the marker back on their next
    claim (they retry meanwhile). Returns whether this call refilled it.
    """
    key = run_queue_key(run, generation)
    client = _redis()
    if not client.set(key + ":rebuilding", "1", nx=True, ex=REBUILD_LOCK_S):
        return False
    try:
        if client.exists(_marker_key(key)):
            return False  # another lane rebuilt it meanwhile
        ids = missing()
        pipe = client.pipeline(transaction=True)
        for start in range(0, len(ids), _PUSH_BATCH):
            pipe.rpush(key, *ids[start : start + _PUSH_BATCH])
        pipe.expire(key, QUEUE_TTL_S)
        pipe.set(_marker_key(key), "1", ex=QUEUE_TTL_S)
        pipe.execute()
        return True
    finally:
        client.delete(key + ":rebuilding")


def run_queue_drop(run: JudgeRun) -> None:
    """Delete the run's list (at its end). Best effort: an unreachable Redis keeps it until
    its TTL, and nothing claims from an ended run's list."""
    if shared_queue_available():
        import redis.exceptions

        key = run_queue_key(run, run.generation)
        with contextlib.suppress(redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            _redis().delete(key, _marker_key(key))


def run_queue_length(run: JudgeRun) -> int:
    if not shared_queue_available():
        return 0
    return int(_redis().llen(run_queue_key(run, run.generation)))


def source_for(run: JudgeRun, generation: int, step_ids: list[int] | None) -> StepSource:
    if step_ids is not None:
        return StaticSource(step_ids)
    return RedisListSource(run_queue_key(run, generation))


@memoize
def _client(url: str):
    import redis

    # Short timeouts: a lane notices a dead Redis in seconds and rides the outage out.
    return redis.Redis.from_url(
        url, socket_connect_timeout=1, socket_timeout=5, health_check_interval=5
    )


def _redis():
    return _client(settings.REDIS_URL)
