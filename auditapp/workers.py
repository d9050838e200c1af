"""Which queues live Celery workers consume: a small registry in the shared cache.

Every worker (``auditapp/celery.py``, on ``worker_ready``) writes the queues it consumes under
its host name every ``BEAT_S`` seconds; an entry older than ``ALIVE_S`` is a dead worker. The
run page, ``run_judge --wait`` and ``/readyz`` read it to say "no worker consumes 'judges'"
within seconds instead of leaving a run queued in silence. While the cache is unreachable the
answer is ``None`` (unknown), never a false "no worker".
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)

BEAT_S = 3.0
ALIVE_S = 12.0
_KEY = "stepaudit:workers:{queue}"


def app_queues() -> list[str]:
    """Every queue the app sends tasks to (CELERY_TASK_QUEUES)."""
    return [q.name for q in settings.CELERY_TASK_QUEUES]


def _key(queue: str) -> str:
    # The database name keeps test runs and deployments sharing one Redis apart.
    return _KEY.format(queue=queue) + ":" + str(settings.DATABASES["default"]["NAME"])


def worker_announce(hostname: str, queues: list[str], *, alive: bool = True) -> None:
    """Record (or, ``alive=False``, remove) ``hostname`` as consuming ``queues`` now."""
    now = time.time()
    for queue in queues:
        key = _key(queue)
        entries = cache.get(key) or {}
        entries = {h: t for h, t in entries.items() if now - t < ALIVE_S}
        if alive:
            entries[hostname] = now
        else:
            entries.pop(hostname, None)
        cache.set(key, entries, int(ALIVE_S * 2))


def queue_consumers(queue: str) -> list[str] | None:
    """Host names of live workers consuming ``queue``; ``None`` when the cache cannot tell."""
    from auditapp.cache import cache_reachable

    entries = cache.get(_key(queue))
    if entries is None and not cache_reachable():
        return None
    now = time.time()
    return sorted(h for h, t in (entries or {}).items() if now - t < ALIVE_S)


def queues_without_consumer(queues: list[str] | None = None) -> list[str] | None:
    """The queues among ``queues`` (default: all the app's) that no live worker consumes."""
    missing = []
    for queue in queues or app_queues():
        consumers = queue_consumers(queue)
        if consumers is None:
            return None
        if not consumers:
            missing.append(queue)
    return missing


def no_consumer_message(queue: str) -> str:
    return (
        f"no worker is consuming the {queue!r} queue: start one with "
        f"`celery -A auditapp worker` (it consumes every queue of the app)"
    )


class WorkerAnnouncer:
    """A daemon thread in the worker's main process that keeps its registry entry fresh."""

    def __init__(self, hostname: str, queues: list[str]) -> None:
        self.hostname, self.queues = hostname, queues
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stepaudit-announce", daemon=True)

    def start(self) -> WorkerAnnouncer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            worker_announce(self.hostname, self.queues, alive=False)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                worker_announce(self.hostname, self.queues)
            except Exception:
                logger.debug("worker registry write failed", exc_info=True)
            self._stop.wait(BEAT_S)
