from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from auditapp.exceptions import ApplicationError
from judges.models import JudgeRun
from judges.selectors import run_progress
from judges.services import batch_results_import

from ._common import command_error


class Command(BaseCommand):
    help = "Read a provider's batch-API output (JSONL) into the verdicts of a batch-API run."

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--run", type=int, required=True)

    def handle(self, *args, file: Path, run: int, **options):
        if not file.is_file():
            raise CommandError(f"{file}: no such file")
        run_obj = JudgeRun.objects.select_related("judge", "audit", "prompt").filter(pk=run).first()
        if run_obj is None:
            raise CommandError(f"no run {run}")
        try:
            with file.open("rb") as lines:
                run_obj = batch_results_import(run=run_obj, lines=lines)
        except ApplicationError as exc:
            raise command_error(exc) from None
        p = run_progress(run_obj)
        self.stdout.write(
            f"run {run_obj.pk}: {p['status']}, {p['done']}/{p['total']} verdicts, "
            f"{p['failed']} failed, {p['remaining']} remaining"
        )
