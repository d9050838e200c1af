import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from auditapp.exceptions import ApplicationError
from judges.models import JudgeRun
from judges.services import batch_requests_export, batch_run_create, judge_get

from ._common import audit_by_slug, command_error


class Command(BaseCommand):
    help = (
        "Write a judge run's requests as JSONL for a provider's batch API (custom_id = the "
        "step's public id). Creates a batch-API run, or re-exports the missing steps of --run."
    )

    def add_arguments(self, parser):
        parser.add_argument("--out", type=Path, required=True)
        parser.add_argument("--audit")
        parser.add_argument("--judge")
        parser.add_argument("--segmentation", default="")
        parser.add_argument("--batch", default="")
        parser.add_argument("--run", type=int, help="an existing batch-API run")
        parser.add_argument("--url", default="/v1/chat/completions")

    def handle(self, *args, **o):
        try:
            if o["run"]:
                run = (
                    JudgeRun.objects.select_related("judge", "audit", "prompt")
                    .filter(pk=o["run"])
                    .first()
                )
                if run is None:
                    raise CommandError(f"no run {o['run']}")
            else:
                if not o["audit"] or not o["judge"]:
                    raise CommandError("pass --run, or --audit and --judge")
                run = batch_run_create(
                    audit=audit_by_slug(o["audit"]),
                    judge=judge_get(name=o["judge"]),
                    segmentation=o["segmentation"],
                    batch_name=o["batch"],
                )
            n = 0
            with o["out"].open("w", encoding="utf-8") as out:
                for line in batch_requests_export(run=run, url=o["url"]):
                    out.write(json.dumps(line, ensure_ascii=False) + "\n")
                    n += 1
        except ApplicationError as exc:
            raise command_error(exc) from None
        self.stdout.write(f"run {run.pk}: {n} requests written to {o['out']}")
