"""drf-spectacular: describe this app's authentication classes (its own extensions match the
parent classes only)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.ApiTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": 'Token from "My API tokens", sent as `Authorization: Token <token>`.',
        }


class ThrottledBasicScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.ThrottledBasicAuthentication"
    name = "basicAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "basic"}
