"""DRF authentication for the API: knox tokens and HTTP Basic, both throttled by django-axes.

Basic goes through django.contrib.auth.authenticate(), so axes' backend (first in
AUTHENTICATION_BACKENDS) refuses a locked-out account or address and counts each failure.
Knox tokens never call authenticate(), so the token class reports its failures to axes itself.
"""

from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from knox.auth import TokenAuthentication
from knox.models import AuthToken
from knox.settings import CONSTANTS
from rest_framework import exceptions
from rest_framework.authentication import BasicAuthentication, get_authorization_header

# auditapp.exceptions is imported by name at call time: it imports rest_framework.views, which
# imports this module (DEFAULT_AUTHENTICATION_CLASSES), so a from-import here would be circular.
import auditapp.exceptions as app_errors

from . import lockout, services


def _scheme(request) -> bytes:
    parts = get_authorization_header(request).split()
    return parts[0].lower() if parts else b""


class ApiTokenAuthentication(TokenAuthentication):
    """``Authorization: Token <token>`` with a token from the "My API tokens" page.

    A wrong, revoked or expired token counts as a failed sign-in from the address (and for the
    account whose token the first characters name, so an admin sees it under that name); while
    the address is locked out, even a good token is refused. An account lockout alone does not
    stop a good token: the token is not the password being guessed, and refusing it would let
    anyone who types a wrong password 10 times switch off a researcher's notebook.
    """

    def authenticate(self, request):
        if _scheme(request) != self.authenticate_header(request).lower().encode():
            return None
        if not AxesProxyHandler.is_allowed(request, {"username": None}):
            raise lockout.locked_out_error()
        try:
            user, token = super().authenticate(request)
        except exceptions.AuthenticationFailed as exc:
            self._count_failure(request)
            if getattr(request, "axes_locked_out", False):
                raise lockout.locked_out_error() from exc
            raise app_errors.AuthenticationError(
                "The token is not valid (wrong, revoked or expired)."
            ) from exc
        if not services.api_token_may_own(user=user):
            # The owner lost the researcher/admin role since: the token no longer works.
            raise app_errors.AuthenticationError("This account may not use API tokens.")
        services.api_token_touch(token=token)
        return user, token

    @staticmethod
    def _count_failure(request) -> None:
        parts = get_authorization_header(request).split()
        key = (
            parts[1].decode("utf-8", "replace")[: CONSTANTS.TOKEN_KEY_LENGTH]
            if len(parts) == 2
            else ""
        )
        owner = (
            AuthToken.objects.filter(token_key=key).values_list("user__username", flat=True).first()
            if key
            else None
        )
        user_login_failed.send(
            sender=ApiTokenAuthentication, credentials={"username": owner}, request=request
        )


class ThrottledBasicAuthentication(BasicAuthentication):
    """HTTP Basic, unless STEPAUDIT_API_BASIC_AUTH is off; a locked-out account or address is
    told so (429) instead of a plain "wrong password"."""

    def authenticate(self, request):
        if _scheme(request) != b"basic":
            return None
        if not settings.STEPAUDIT_API_BASIC_AUTH:
            raise app_errors.AuthenticationError(
                "HTTP Basic authentication is turned off on this server; "
                "send an API token (Authorization: Token …) from the My API tokens page.",
                code="basic_auth_disabled",
            )
        try:
            return super().authenticate(request)
        except exceptions.AuthenticationFailed as exc:
            if getattr(request, "axes_locked_out", False):
                raise lockout.locked_out_error() from exc
            raise app_errors.AuthenticationError(str(exc.detail)) from exc
