"""The demo's judges: the reference verdicts as a finished run, and an LLM judge pointed at the
local fake OpenAI-compatible server that ``scripts/demo`` starts (no network, no key)."""

from django.db import transaction

from annotations.models import Audit
from judges.models import Judge, JudgeRun
from judges.services.io import reference_run_create
from judges.services.specs import judge_create_or_update

DEMO_FAKE_PORT = 8799
DEMO_JUDGE_SPEC = {
    "name": "demo-judge",
    "description": "The fake OpenAI-compatible server started by scripts/demo on 127.0.0.1.",
    "base_url": f"http://127.0.0.1:{DEMO_FAKE_PORT}/v1",
    "model": "fake-judge",
    "api_key_env": None,
    "max_concurrency": 16,
    "timeout_s": 10,
    "prompt": "default",
}


@transaction.atomic
def demo_judges_seed(*, audit: Audit) -> list[str]:
    """Create what is missing; never touch what exists. Returns what was created."""
    created = []
    if not Judge.objects.filter(name=DEMO_JUDGE_SPEC["name"]).exists():
        judge_create_or_update(spec=DEMO_JUDGE_SPEC)
        created.append(f"judge {DEMO_JUDGE_SPEC['name']}")
    if not JudgeRun.objects.filter(audit=audit, mode=JudgeRun.Mode.REFERENCE).exists():
        run = reference_run_create(audit=audit, segmentation="given")
        created.append(f"reference run {run.pk}")
    return created
