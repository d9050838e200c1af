from django.apps import AppConfig


class AnnotationsConfig(AppConfig):
    name = "annotations"
    verbose_name = "Audits and annotations"

    def ready(self) -> None:
        # Bind @shared_task to the project's Celery app in every Django process (web, commands,
        # tests), so .delay() uses the configured broker rather than Celery's default.
        from auditapp import celery  # noqa: F401
