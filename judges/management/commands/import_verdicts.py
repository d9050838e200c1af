from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from auditapp.commands import JsonOutputMixin
from auditapp.exceptions import ApplicationError
from judges.services import verdicts_import

from ._common import audit_by_slug, command_error


class Command(JsonOutputMixin, BaseCommand):
    help = (
        "Import verdicts produced elsewhere (JSONL: step_id, verdict, error_category, "
        "rationale…) as a finished run of JUDGE; the whole file is checked first. "
        "See docs/judges.md."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--audit", required=True)
        parser.add_argument("--judge", required=True, help="created (endpoint-less) if missing")
        parser.add_argument("--segmentation", default="")
        self.add_json_argument(parser)

    def handle(self, *args, file: Path, audit: str, judge: str, segmentation: str, **options):
        self.json_setup(options)
        if not file.is_file():
            raise CommandError(f"{file}: no such file")
        audit_obj = audit_by_slug(audit)
        try:
            with file.open("rb") as lines:
                run = verdicts_import(
                    audit=audit_obj, judge_name=judge, lines=lines, segmentation=segmentation
                )
        except ApplicationError as exc:
            raise command_error(exc) from None
        self.finish(
            {"run_id": run.pk, "judge": judge, "audit": audit_obj.slug, "verdicts": run.done},
            f"run {run.pk}: {run.done} verdicts imported for {judge}",
        )
