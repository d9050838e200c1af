from django.apps import AppConfig


class JudgesConfig(AppConfig):
    name = "judges"
    verbose_name = "LLM judges"

    def ready(self) -> None:
        # Registers the OpenAPI description of the judge list/create view (drf-spectacular).
        from judges import openapi  # noqa: F401
