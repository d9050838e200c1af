import json

from django.core.management.base import BaseCommand

from auditapp.exceptions import ApplicationError
from judges.services import judge_get
from judges.services.probe import judge_check

from ._common import command_error


class Command(BaseCommand):
    help = (
        "Probe a judge's endpoint: models served, structured-output modes that work, whether n "
        "is honoured, usage, one-request-at-a-time behaviour, latency; suggests max_concurrency, "
        "timeout_s and structured_output (docs/judges.md, 'Servers')."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="judge name, or name@vN")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args, name: str, **options):
        try:
            report = judge_check(judge=judge_get(name=name))
        except ApplicationError as exc:
            raise command_error(exc) from None
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2, default=str))
            return
        self.stdout.write(f"judge {report['judge']}")
        for line in report["lines"]:
            self.stdout.write(line)
        configured, suggested = report["configured"], report["suggested"]
        changes = [
            f"{key}: {configured[key]} → {suggested[key]}"
            for key in suggested
            if configured.get(key) != suggested[key]
        ]
        if changes:
            self.stdout.write("differs from the spec: " + "; ".join(changes))
