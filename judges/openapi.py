"""OpenAPI description of ``JudgeListCreateApi`` kept beside it rather than on it, while the
view's behaviour (judge versions, allowed keys and hosts) is being changed (issue 9).

drf-spectacular applies this extension when it builds the schema; judges/apps.py imports it.
"""

from drf_spectacular.extensions import OpenApiViewExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view

from auditapp.openapi import error_responses
from judges.serializers import JudgeOutputSerializer


class JudgeListCreateApiSchema(OpenApiViewExtension):
    target_class = "judges.apis.JudgeListCreateApi"

    def view_replacement(self):
        @extend_schema_view(
            get=extend_schema(responses={200: JudgeOutputSerializer(many=True)}),
            post=extend_schema(
                description="Save a judge from a spec (docs/judges.md); the service checks "
                "every field, the allowed key names and the allowed hosts.",
                request={"application/json": OpenApiTypes.OBJECT},
                examples=[
                    OpenApiExample(
                        "An OpenAI-compatible judge",
                        value={
                            "name": "my-judge",
                            "base_url": "http://127.0.0.1:8000/v1",
                            "model": "gpt-4o-mini",
                            "api_key_env": "OPENAI_API_KEY",
                        },
                        request_only=True,
                    )
                ],
                responses={
                    200: JudgeOutputSerializer,
                    201: JudgeOutputSerializer,
                    **error_responses(400, 409),
                },
            ),
        )
        class Fixed(self.target_class):
            pass

        return Fixed
