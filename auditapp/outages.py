"""What an outage of the database, the cache or the broker looks like, and how it is logged.

``outage_service(exc)`` names the service an exception says is unreachable (``"database"``,
``"cache"``, ``"broker"``) or ``None`` for any other error (a bug, which must stay a 500).
``outage_log`` logs the first failure of a service and its recovery once per process, so an
outage makes two log lines, not one traceback per request (docs/deploy.md, "Faults").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

logger = logging.getLogger("auditapp.outages")

T = TypeVar("T")

# What a client is told to wait before trying again (seconds); the services come back in a few.
RETRY_AFTER_S = 5


def _classify_one(exc: BaseException) -> str | None:
    from django.db import InterfaceError as DjangoInterfaceError
    from django.db import OperationalError as DjangoOperationalError

    if isinstance(exc, (DjangoOperationalError, DjangoInterfaceError)):
        return "database"
    try:
        import psycopg

        if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
            return "database"
    except ImportError:  # pragma: no cover - psycopg is a dependency
        pass
    try:
        import redis.exceptions

        if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
            return "cache"
    except ImportError:  # pragma: no cover
        pass
    try:
        import kombu.exceptions

        if isinstance(exc, kombu.exceptions.OperationalError):
            return "broker"
    except ImportError:  # pragma: no cover
        pass
    return None


def outage_service(exc: BaseException | None) -> str | None:
    """The service ``exc`` (or an exception it was raised from) says is unreachable."""
    seen = 0
    while exc is not None and seen < 8:
        service = _classify_one(exc)
        if service:
            return service
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


class OutageLog:
    """Per process: one warning when a service starts failing, one line when it is back."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down_since: dict[str, float] = {}

    def down(self, service: str, exc: BaseException | str, *, where: str = "") -> None:
        with self._lock:
            if service in self._down_since:
                return
            self._down_since[service] = time.monotonic()
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        logger.warning(
            "%s unreachable%s: %s (logged once; requests answer 503 until it is back)",
            service,
            f" ({where})" if where else "",
            reason[:300],
        )

    def up(self, service: str) -> None:
        if service not in self._down_since:  # the common case: no lock taken
            return
        with self._lock:
            since = self._down_since.pop(service, None)
        if since is not None:
            logger.warning("%s reachable again after %.1fs", service, time.monotonic() - since)

    def is_down(self, service: str) -> bool:
        return service in self._down_since


outage_log = OutageLog()


def ride_out(
    fn: Callable[[], T],
    *,
    what: str,
    on_wait: Callable[[str, BaseException, float], None] | None = None,
    give_up_after_s: float | None = None,
    first_delay_s: float = 0.2,
    max_delay_s: float = 2.0,
) -> T:
    """Call ``fn`` until it returns, retrying with back-off while a service is unreachable.

    Any other exception propagates at once. ``on_wait(service, exc, delay)`` is called before
    each sleep (a command prints what it waits for). Django's connection is closed after a
    database error so the next try opens a fresh one. ``give_up_after_s`` bounds the wait (the
    last error propagates then); ``None`` waits as long as it takes.
    """
    delay = first_delay_s
    started = time.monotonic()
    failing: str | None = None
    while True:
        try:
            value = fn()
        except Exception as exc:
            service = outage_service(exc)
            if service is None:
                raise
            if give_up_after_s is not None and time.monotonic() - started >= give_up_after_s:
                raise
            failing = service
            outage_log.down(service, exc, where=what)
            if service == "database":
                _close_broken_connections()
            if on_wait:
                on_wait(service, exc, delay)
            time.sleep(delay)
            delay = min(max_delay_s, delay * 2)
            continue
        if failing:
            outage_log.up(failing)
        return value


def _close_broken_connections() -> None:
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        try:
            if conn.in_atomic_block:
                continue  # the caller's transaction: it must fail and be retried as a whole
            conn.close()
        except Exception:
            pass
