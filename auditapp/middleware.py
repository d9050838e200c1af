"""Outages answer 503 with ``Retry-After``, never a 500 with a traceback (docs/deploy.md, "Faults").

An exception that says the database, the cache or the broker is unreachable
(``auditapp.outages.outage_service``) becomes:

* for the API (``/api/…``) and any request that asks for JSON: ``503
  {"code": "service_unavailable", "message", "extra": {"service", "retry_after_s"}}``;
* for pages: a plain "temporarily unavailable, nothing was lost" page, also 503;

both with ``Retry-After``. Views raise through ``process_exception``; an outage inside another
middleware (a session read or save) is turned into Django's 500 before it gets here, so the
``got_request_exception`` signal marks the request and ``__call__`` swaps that 500 for the 503.
The outage is logged once per process (``outage_log``), and Django's per-request
"Internal Server Error" traceback for it is filtered out (``QuietOutages``, in LOGGING).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from django.core.signals import got_request_exception
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string

from auditapp.outages import RETRY_AFTER_S, outage_log, outage_service

_MARK = "_stepaudit_outage"

_WHAT = {
    "database": "The database",
    "cache": "The cache",
    "broker": "The task queue",
}


def _wants_json(request: HttpRequest) -> bool:
    if request.path.startswith("/api/"):
        return True
    accept = request.headers.get("Accept", "")
    content_type = request.headers.get("Content-Type", "")
    return "application/json" in accept or "application/json" in content_type


def service_unavailable_response(request: HttpRequest, service: str) -> HttpResponse:
    what = _WHAT.get(service, "A service")
    if _wants_json(request):
        response: HttpResponse = JsonResponse(
            {
                "code": "service_unavailable",
                "message": f"{what} is temporarily unavailable; nothing was saved by this "
                f"request and nothing already saved was lost. Try again in {RETRY_AFTER_S} s.",
                "extra": {"service": service, "retry_after_s": RETRY_AFTER_S},
            },
            status=503,
        )
    else:
        # No request context: the context processors would read the session and the database.
        html = render_to_string(
            "503.html", {"what": what, "retry_after_s": RETRY_AFTER_S, "path": request.path}
        )
        response = HttpResponse(html, status=503, content_type="text/html; charset=utf-8")
    response["Retry-After"] = str(RETRY_AFTER_S)
    response["Cache-Control"] = "no-store"
    # The swap in __call__ happens outside the header middlewares: the same strict headers here.
    response.setdefault("X-Content-Type-Options", "nosniff")
    response.setdefault("X-Frame-Options", "DENY")
    response.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; script-src 'none'; object-src 'none'; frame-ancestors 'none'",
    )
    # Django logs every 5xx answer ("Service Unavailable: /path"); the outage is logged once.
    response._has_been_logged = True
    return response


@receiver(got_request_exception)
def _mark_outage(sender, request=None, **kwargs) -> None:
    service = outage_service(sys.exc_info()[1])
    if service and request is not None:
        setattr(request, _MARK, service)
        outage_log.down(service, sys.exc_info()[1], where=request.path)


class ServiceUnavailableMiddleware:
    """Outermost (after the health checks): see the module docstring."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        service = getattr(request, _MARK, None)
        if service and response.status_code >= 500:
            return service_unavailable_response(request, service)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception):
        service = outage_service(exception)
        if service is None:
            return None  # a bug: Django's 500, logged with its traceback
        outage_log.down(service, exception, where=request.path)
        return service_unavailable_response(request, service)


class QuietOutages(logging.Filter):
    """Drop django.request's per-request traceback for an outage (already logged once)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and outage_service(exc):
            return False
        request = getattr(record, "request", None)
        return not (request is not None and getattr(request, _MARK, None))
