"""``/healthz`` (liveness) and ``/readyz`` (readiness), answered before any other middleware.

* ``/healthz``: 200 ``{"status": "ok"}`` while the process serves requests; it touches no
  service, so an outage never gets the web process restarted.
* ``/readyz``: each check with its outcome, 200 when all pass, else 503 — ``database``
  (``SELECT 1``), ``cache`` (Redis PING), ``broker`` (a connection to it), ``workers`` (a live
  worker consumes each of the app's queues, ``auditapp.workers``). ``?check=database,cache``
  limits it to those (docker-compose's web healthcheck asks for the database only: the
  clinician's path needs nothing else).

The middleware sits first so neither host validation, the HTTPS redirect nor the session is in
the way of a probe from inside the container network (docs/deploy.md, "Health").
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from auditapp.outages import RETRY_AFTER_S

CHECKS = ("database", "cache", "broker", "workers")
TIMEOUT_S = 2.0


def _check_database() -> tuple[bool, str]:
    from django.db import connection

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return True, connection.vendor
    except Exception as exc:
        with contextlib.suppress(Exception):
            connection.close()
        return False, _reason(exc)


def _check_cache() -> tuple[bool, str]:
    from auditapp.cache import cache_reachable

    return (True, "reachable") if cache_reachable() else (False, "unreachable")


def _check_broker() -> tuple[bool, str]:
    from auditapp.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=TIMEOUT_S)
        return True, app.conf.broker_url.split("://", 1)[0]
    except Exception as exc:
        return False, _reason(exc)


def _check_workers() -> tuple[bool, str]:
    from auditapp.workers import app_queues, queue_consumers

    parts, ok = [], True
    for queue in app_queues():
        consumers = queue_consumers(queue)
        if consumers is None:
            return False, "unknown: the cache is unreachable"
        ok = ok and bool(consumers)
        parts.append(f"{queue}: {len(consumers)}")
    return ok, ", ".join(parts)


_RUN: dict[str, Callable[[], tuple[bool, str]]] = {
    "database": _check_database,
    "cache": _check_cache,
    "broker": _check_broker,
    "workers": _check_workers,
}


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:200]


def readiness(checks: list[str] | None = None) -> dict:
    results = {}
    for name in checks or CHECKS:
        started = time.monotonic()
        ok, detail = _RUN[name]()
        results[name] = {
            "ok": ok,
            "detail": detail,
            "ms": round((time.monotonic() - started) * 1000, 1),
        }
    return {"ready": all(r["ok"] for r in results.values()), "checks": results}


def _json(data: dict, status: int) -> HttpResponse:
    response = JsonResponse(data, status=status)
    response["Cache-Control"] = "no-store"
    if status == 503:
        response["Retry-After"] = str(RETRY_AFTER_S)
    return response


class HealthMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path == "/healthz":
            return _json({"status": "ok"}, 200)
        if request.path == "/readyz":
            wanted = [c for c in request.GET.get("check", "").split(",") if c]
            unknown = [c for c in wanted if c not in _RUN]
            if unknown:
                return _json(
                    {
                        "code": "invalid",
                        "message": f"unknown check {unknown[0]!r}; choose from "
                        + ", ".join(CHECKS),
                        "extra": {"choices": list(CHECKS)},
                    },
                    400,
                )
            report = readiness(wanted or None)
            return _json(report, 200 if report["ready"] else 503)
        return self.get_response(request)
