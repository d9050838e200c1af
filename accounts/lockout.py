"""django-axes hooks: the client address behind a proxy, the parameters a failure counts
against, and the error an API client gets when locked out."""

from django.conf import settings
from django.http import HttpRequest

import auditapp.exceptions as app_errors  # by name: see authentication.py


def client_ip_address(request: HttpRequest) -> str:
    """The address a failure is counted against (AXES_CLIENT_IP_CALLABLE).

    Without a proxy it is the peer's address. Behind one (STEPAUDIT_BEHIND_PROXY=1) the peer is
    the proxy, so it is the address the proxy appended to X-Forwarded-For, counted from the
    right: entries further left are whatever the client sent and can be forged.
    """
    remote = request.META.get("REMOTE_ADDR", "") or ""
    if not settings.STEPAUDIT_BEHIND_PROXY:
        return remote
    forwarded = [
        part.strip()
        for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
        if part.strip()
    ]
    hops = settings.STEPAUDIT_PROXY_COUNT
    if len(forwarded) >= hops:
        return forwarded[-hops]
    return remote


def lockout_parameters(request: HttpRequest, credentials: dict | None) -> list[str]:
    """AXES_LOCKOUT_PARAMETERS: by account and by address, separately; a failure with no
    account (a wrong API token naming no one) counts against the address only — otherwise all
    such failures would share one "no username" bucket and lock every token out together."""
    parameters = list(settings.STEPAUDIT_LOGIN_LOCKOUT_BY)
    if not (credentials or {}).get("username"):
        parameters = [p for p in parameters if p != "username"] or ["ip_address"]
    return parameters


def locked_out_error() -> "app_errors.LockedOutError":
    minutes = settings.STEPAUDIT_LOGIN_COOLOFF_MINUTES
    error = app_errors.LockedOutError(
        "Too many failed sign-in attempts for this account or from this address. "
        f"Try again in {minutes} minutes, or ask an admin to unlock it.",
        extra={"cooloff_minutes": minutes},
    )
    error.headers = {"Retry-After": str(minutes * 60)}
    return error


def lockout_response(request, original_response=None, credentials=None):
    """AXES_LOCKOUT_CALLABLE: what the sign-in forms answer once locked out — a page saying
    why and what to do (429), or the API's JSON error when the client asked for JSON."""
    from django.http import JsonResponse
    from django.shortcuts import render

    error = locked_out_error()
    wants_json = request.META.get(
        "HTTP_X_REQUESTED_WITH"
    ) == "XMLHttpRequest" or "application/json" in request.META.get("HTTP_ACCEPT", "")
    if wants_json:
        response = JsonResponse(
            {"code": error.code, "message": error.message, "extra": error.extra},
            status=error.status_code,
        )
    else:
        context = {
            "failure_limit": settings.AXES_FAILURE_LIMIT,
            "cooloff_minutes": settings.STEPAUDIT_LOGIN_COOLOFF_MINUTES,
        }
        response = render(request, "accounts/locked_out.html", context, status=error.status_code)
    for name, value in error.headers.items():
        response[name] = value
    return response
