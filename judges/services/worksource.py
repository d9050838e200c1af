"""Where a run's lanes claim their steps: one shared Redis list per (run, generation).

``run_enqueue_missing`` pushes the run's missing steps (shuffled) onto the list and starts the
lanes; every lane pops a few steps at a time (``LPOP key count``) as its request slots free
up, so lanes stay balanced until the list is empty — a fast lane simply takes more. A claimed
step that is never answered (the lane was killed, paused or stopped) is not lost: it has no
verdict, and ``run_reconcile`` / ``run_resume`` enqueue the steps without verdicts again under
a new generation, which gets a new list.

Without Redis (the embedded default), the lanes get a static interleaved partition of the
missing steps in their task messages instead (``StaticSource``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
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


class RedisListSource:
    """The run's shared list in Redis (see the module docstring)."""

    def __init__(self, key: str) -> None:
        self.key = key

    def claim(self, n: int) -> list[int]:
        items = _redis().lpop(self.key, n)
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


def run_queue_fill(*, run: JudgeRun, generation: int, step_ids: list[int]) -> None:
    """Replace the generation's list with ``step_ids`` and drop the previous generation's."""
    key = run_queue_key(run, generation)
    pipe = _redis().pipeline()
    pipe.delete(key)
    if generation > 0:
        pipe.delete(run_queue_key(run, generation - 1))
    for start in range(0, len(step_ids), _PUSH_BATCH):
        pipe.rpush(key, *step_ids[start : start + _PUSH_BATCH])
    pipe.expire(key, QUEUE_TTL_S)
    pipe.execute()


def run_queue_drop(run: JudgeRun) -> None:
    if shared_queue_available():
        _redis().delete(run_queue_key(run, run.generation))


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

    return redis.Redis.from_url(url)


def _redis():
    return _client(settings.REDIS_URL)
