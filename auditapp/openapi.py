"""OpenAPI: the error body every endpoint answers, the schema and Swagger UI views, and the hook
that documents the answers every endpoint can give (docs/api.md).

Every API view names its request and response serializers with ``extend_schema``; the errors
only some endpoints give (400, 404 of a missing object, 409) are listed there with
:func:`error_responses`. What any endpoint may answer is added here once by
:func:`postprocess_common_errors`, so the schema stays true when a permission or throttle
changes: 401/403 (not signed in / not allowed), 404 when a path value matches no route, 414
when the URL is too long for the web server, 429 when throttles are configured.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiResponse
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework import exceptions as drf_exceptions
from rest_framework import serializers
from rest_framework.settings import api_settings


class ErrorSerializer(serializers.Serializer):
    """What every 4xx answers (auditapp/exceptions.py)."""

    code = serializers.CharField(help_text="Stable, for programs: e.g. invalid, not_found.")
    message = serializers.CharField(help_text="For people.")
    extra = serializers.JSONField(
        help_text="Details: for code 'invalid' the field errors (an object keyed by field, or "
        "a list); otherwise an object, often empty."
    )

    class Meta:
        ref_name = "Error"


ERROR_DESCRIPTIONS = {
    400: "The request is not valid ({code, message, extra}).",
    401: "Not signed in (HTTP Basic challenge).",
    403: "Signed in without the role this endpoint needs, or no CSRF token on a session write.",
    404: "No such object, or a path value that matches no route.",
    409: "The object's state does not allow this (e.g. already locked, already submitted).",
    413: "The upload is too large.",
    414: "The URL is longer than the web server accepts (gunicorn: 4094 bytes of request "
    "line); answered by the server, before the app, as text/html.",
    429: "Too many requests; retry after the Retry-After header's seconds.",
}


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    """``{code: OpenApiResponse(ErrorSerializer)}`` for ``extend_schema(responses=...)``."""
    return {
        code: OpenApiResponse(response=ErrorSerializer, description=ERROR_DESCRIPTIONS[code])
        for code in codes
    }


# The component the hook points at; the same shape ErrorSerializer renders.
_ERROR_COMPONENT = {
    "type": "object",
    "description": "What every 4xx answers.",
    "properties": {
        "code": {"type": "string"},
        "message": {"type": "string"},
        "extra": {},
    },
    "required": ["code", "message", "extra"],
}


def postprocess_common_errors(result: dict[str, Any], generator, request, public) -> dict:
    """Add the answers every API operation can give to each one that does not list them."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Error", _ERROR_COMPONENT)
    ref = {"$ref": "#/components/schemas/Error"}
    throttled = bool(api_settings.DEFAULT_THROTTLE_CLASSES)
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in {"get", "put", "post", "patch", "delete"}:
                continue
            codes = [401, 403]
            where = {p.get("in") for p in operation.get("parameters", [])}
            if "path" in where:
                codes.append(404)
            if throttled:
                codes.append(429)
            responses = operation.setdefault("responses", {})
            if where & {"path", "query"}:
                responses.setdefault(
                    "414",
                    {
                        "description": ERROR_DESCRIPTIONS[414],
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    },
                )
            for code in codes:
                responses.setdefault(
                    str(code),
                    {
                        "description": ERROR_DESCRIPTIONS[code],
                        "content": {"application/json": {"schema": ref}},
                    },
                )
    return result


# --- views ----------------------------------------------------------------------------------
class SchemaView(SpectacularAPIView):
    """The OpenAPI document (YAML; ``?format=json`` for JSON). Admins and researchers."""


class SwaggerView(SpectacularSwaggerSplitView):
    """Swagger UI from the sidecar's static files; its init script is a separate same-origin
    request (the split view), so no inline script is needed under the Content-Security-Policy.

    Someone not signed in is sent to the login page (it is a page, not an API answer);
    a signed-in user without the role gets 403.
    """

    url_name = "api-schema"

    def handle_exception(self, exc):
        if isinstance(exc, drf_exceptions.NotAuthenticated | drf_exceptions.AuthenticationFailed):
            return redirect_to_login(self.request.get_full_path())
        return super().handle_exception(exc)


@csrf_exempt  # it changes nothing; a POST without a CSRF token must still get the JSON 404
def api_not_found(request, *args, **kwargs) -> JsonResponse:
    """Any ``/api/`` URL no route matches: the JSON error body, not Django's HTML page (which
    DEBUG would turn into its technical page), so API clients always get {code, message}."""
    return JsonResponse(
        {"code": "not_found", "message": "No such API endpoint.", "extra": {}}, status=404
    )
