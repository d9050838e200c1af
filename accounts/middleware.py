"""Session idle timeout and Cache-Control: no-store."""

import time
from collections.abc import Callable

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import SESSION_KEY, logout
from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers

LAST_SEEN_KEY = "stepaudit_last_seen"
SIGNED_IN_KEY = "stepaudit_signed_in_at"

# The stored time is refreshed only when it is older than this, so the labelling loop (one
# save & next every few seconds) writes its session once a minute, not on every request. The
# idle timeout is therefore exact to within this many seconds.
REFRESH_SECONDS = 60


def session_mark_signed_in(*, request: HttpRequest) -> None:
    """Called at sign-in (a write that happens anyway): the clocks start here."""
    now = int(time.time())
    request.session[LAST_SEEN_KEY] = now
    request.session[SIGNED_IN_KEY] = now


class SessionIdleTimeoutMiddleware:
    """Signs out a session idle for STEPAUDIT_SESSION_IDLE_MINUTES, or older than
    STEPAUDIT_SESSION_MAX_HOURS since sign-in; the request then goes on as anonymous (pages
    send it to the sign-in form, the API answers 401/403)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        session = request.session
        # Only signed-in sessions: an anonymous visitor creates no session row here.
        if SESSION_KEY in session:
            now = int(time.time())
            last_seen = session.get(LAST_SEEN_KEY)
            signed_in = session.get(SIGNED_IN_KEY, last_seen)
            idle = settings.STEPAUDIT_SESSION_IDLE_MINUTES * 60
            limit = settings.STEPAUDIT_SESSION_MAX_HOURS * 3600
            if last_seen is None:
                # A session from before this middleware: start its clocks now.
                session_mark_signed_in(request=request)
            elif now - last_seen > idle or now - signed_in > limit:
                logout(request)
                reason = (
                    f"after {settings.STEPAUDIT_SESSION_IDLE_MINUTES} minutes without activity"
                    if now - last_seen > idle
                    else f"{settings.STEPAUDIT_SESSION_MAX_HOURS} hours after signing in"
                )
                messages.info(request, f"You were signed out {reason}. Please sign in again.")
            elif now - last_seen >= REFRESH_SECONDS:
                session[LAST_SEEN_KEY] = now
        return self.get_response(request)


class NoStoreMiddleware:
    """``Cache-Control: no-store`` on every answer Django itself makes: clinician pages, JSON,
    exports, admin. Static files are served by WhiteNoise before this and keep their long cache
    lifetime. An answer that already says no-store keeps its own header."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "no-store" not in response.get("Cache-Control", ""):
            add_never_cache_headers(response)
        return response
