from django.apps import AppConfig


class JudgesConfig(AppConfig):
    name = "judges"
    verbose_name = "LLM judges"

    def ready(self) -> None:
        # Registers the OpenAPI description of the judge list/create view (drf-spectacular).
        # The active expert-sample design reads the judge's uncertainty through this source
        # (annotations may not import judges).
        from annotations.services.active_design import (
            register_prediction_source,
            register_uncertainty_source,
        )
        from judges import openapi  # noqa: F401
        from judges.services.uncertainty import judge_runs_predictions, judge_runs_source

        register_uncertainty_source("judge-runs", judge_runs_source)
        # And the batch page's planner reads the judge's predictions through this one.
        register_prediction_source("judge-runs", judge_runs_predictions)
