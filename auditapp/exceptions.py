"""One error tree for the whole app, and the DRF handler that turns it into a 4xx.

Services raise ApplicationError subclasses (never DRF or HTTP errors); the handler answers
``{"code", "message", "extra"}`` with the status the subclass names.
"""

from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler


class ApplicationError(Exception):
    """A failure the user can act on. ``code`` is stable; ``message`` is for people."""

    status_code = 400
    code = "invalid"
    headers: dict[str, str] | None = None

    def __init__(self, message: str, *, code: str | None = None, extra: dict | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.extra = extra or {}


class NotFoundError(ApplicationError):
    status_code = 404
    code = "not_found"


class ConflictError(ApplicationError):
    status_code = 409
    code = "conflict"


class ForbiddenError(ApplicationError):
    status_code = 403
    code = "forbidden"


class AuthenticationError(ApplicationError):
    """Credentials were given and are wrong, revoked, expired or not accepted here."""

    status_code = 401
    code = "not_authenticated"
    # The scheme a client should use instead (RFC 9110 asks a 401 to name one).
    headers = {"WWW-Authenticate": "Token"}


class LockedOutError(ApplicationError):
    """Too many failed sign-ins for this account or address (django-axes); see docs/deploy.md."""

    status_code = 429
    code = "locked_out"


class ImportRejected(ApplicationError):
    """A whole import file was refused; ``problems`` lists every problem with its place."""

    code = "import_rejected"

    def __init__(self, problems: list[Any], *, message: str | None = None):
        self.problems = problems
        count = len(problems)
        super().__init__(
            message
            or f"The file was rejected: {count} problem{'s' if count != 1 else ''}. "
            "Nothing was imported.",
            extra={"problems": [p.as_dict() if hasattr(p, "as_dict") else p for p in problems]},
        )


class ImportTooLarge(ImportRejected):
    """An upload over the size limit (STEPAUDIT_MAX_UPLOAD_BYTES), refused before validation."""

    status_code = 413
    code = "import_too_large"


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, ApplicationError):
        return Response(
            {"code": exc.code, "message": exc.message, "extra": exc.extra},
            status=exc.status_code,
            headers=getattr(exc, "headers", None),
        )
    if isinstance(exc, DjangoValidationError):
        exc = drf_exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "message_dict") else exc.messages
        )
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    if isinstance(exc, PermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data
    if isinstance(exc, drf_exceptions.ValidationError):
        payload = {"code": "invalid", "message": "The request is not valid.", "extra": detail}
    else:
        message = detail.get("detail") if isinstance(detail, dict) else detail
        code = getattr(exc, "default_code", "error")
        payload = {"code": code, "message": str(message), "extra": {}}
    response.data = payload
    return response
