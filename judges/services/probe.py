"""The capability probe of a judge's endpoint (``judges.clients.probe``) for the app."""

from __future__ import annotations

from typing import Any

from auditapp.exceptions import ApplicationError
from judges.clients import JudgeConfigError
from judges.clients.probe import format_report, probe_sync
from judges.models import Judge
from judges.rendering import client_settings


class JudgeCheckError(ApplicationError):
    code = "judge_check"


def judge_check(*, judge: Judge) -> dict[str, Any]:
    """Probe ``judge``'s endpoint (through the deployment's egress policy); the report as a
    dict with its text lines under ``lines``. A reference judge has no endpoint to probe."""
    if judge.is_reference:
        raise JudgeCheckError(f"{judge.label} is a reference judge: it has no endpoint")
    try:
        report = probe_sync(client_settings(judge))
    except JudgeConfigError as exc:
        raise JudgeCheckError(f"judge configuration: {exc}") from None
    out = report.as_dict()
    out["judge"] = judge.label
    out["configured"] = {
        "structured_output": judge.structured_output if judge.use_json_mode else "none",
        "max_concurrency": judge.max_concurrency,
        "timeout_s": judge.timeout_s,
    }
    out["lines"] = format_report(report)
    return out
