"""A Redis cache that never stops a request: while Redis is unreachable it behaves as empty.

Everything the app keeps in the cache has a source of truth elsewhere (sessions and users in
the database, progress counters recomputed, run status read from its row), so a miss is
always correct, only slower. While Redis is down:

* reads answer the default (a miss), writes and ``add`` do nothing and answer ``False``;
* after a failure the backend does not try Redis again for ``RETRY_S`` (one refused
  connection per second, not one per cache call);
* a ``delete`` that could not reach Redis is remembered (bounded) and replayed as soon as Redis
  answers again, so an invalidation made during the outage (a role removed, a session ended)
  still lands if Redis kept its data;
* the outage is logged once (``auditapp.outages``), and its end.

``cache_reachable()`` tells the health check (and the worker registry) whether Redis really
answered, which a miss cannot.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache, RedisCacheClient

from auditapp.outages import outage_log

RETRY_S = 1.0
_MAX_PENDING_DELETES = 10_000
_MISSING = object()


class ReusingRedisCacheClient(RedisCacheClient):
    """Django's client builds a new ``redis.Redis`` for every cache call (its constructor
    fills a table of ~200 response callbacks: about 50 µs, twice per labelling request for the
    session and the role check). One per connection pool is enough: a ``redis.Redis`` is
    thread-safe, and Django's cache backends are per thread anyway."""

    def __init__(self, servers, **options):
        super().__init__(servers, **options)
        self._clients: dict[int, Any] = {}

    def get_client(self, key=None, *, write=False):
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            pool = self._get_connection_pool(write)
            client = self._clients[index] = self._client(connection_pool=pool)
        return client


class FailSoftRedisCache(RedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = ReusingRedisCacheClient
        self._down_until = 0.0
        self._pending_deletes: set[str] = set()
        self._lock = threading.Lock()

    # -- the guard ---------------------------------------------------------------------------
    def _call(self, fallback: Any, fn, *args, **kwargs):
        import redis.exceptions

        if time.monotonic() < self._down_until:
            return fallback
        try:
            if self._pending_deletes:
                # First, so a value written now is not deleted by an older invalidation.
                self._replay_deletes()
            value = fn(*args, **kwargs)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            self._down_until = time.monotonic() + RETRY_S
            outage_log.down("cache", exc)
            return fallback
        if outage_log.is_down("cache"):
            outage_log.up("cache")
        return value

    def _replay_deletes(self) -> None:
        with self._lock:
            keys, self._pending_deletes = list(self._pending_deletes), set()
        try:
            self._cache.delete_many(keys)
        except Exception:
            with self._lock:  # down again: keep them for the next recovery
                self._pending_deletes.update(keys[:_MAX_PENDING_DELETES])
            raise

    def reachable(self) -> bool:
        """True only when Redis answered a PING just now."""
        return bool(self._call(False, lambda: self._cache.get_client(write=True).ping()))

    # -- the cache API -----------------------------------------------------------------------
    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        return self._call(False, super().add, key, value, timeout, version)

    def get(self, key, default=None, version=None):
        value = self._call(_MISSING, super().get, key, _MISSING, version)
        return default if value is _MISSING else value

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        self._call(None, super().set, key, value, timeout, version)

    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None):
        return self._call(False, super().touch, key, timeout, version)

    def delete(self, key, version=None):
        done = self._call(_MISSING, super().delete, key, version)
        if done is _MISSING:
            self._remember_delete(self.make_and_validate_key(key, version=version))
            return False
        return done

    def delete_many(self, keys, version=None):
        done = self._call(_MISSING, super().delete_many, keys, version)
        if done is _MISSING:
            for key in keys:
                self._remember_delete(self.make_and_validate_key(key, version=version))

    def get_many(self, keys, version=None):
        return self._call({}, super().get_many, keys, version)

    def set_many(self, data, timeout=DEFAULT_TIMEOUT, version=None):
        return self._call(list(data), super().set_many, data, timeout, version)

    def has_key(self, key, version=None):
        return self._call(False, super().has_key, key, version)

    def incr(self, key, delta=1, version=None):
        value = self._call(_MISSING, super().incr, key, delta, version)
        if value is _MISSING:
            raise ValueError(f"Key '{key}' not found (the cache is unreachable)")
        return value

    def clear(self):
        return self._call(False, super().clear)

    def _remember_delete(self, raw_key: str) -> None:
        with self._lock:
            if len(self._pending_deletes) < _MAX_PENDING_DELETES:
                self._pending_deletes.add(raw_key)


def cache_reachable() -> bool:
    """Whether the default cache answers (True for a backend without a server, e.g. files)."""
    from django.core.cache import caches

    reachable = getattr(caches["default"], "reachable", None)
    return bool(reachable()) if reachable else True
