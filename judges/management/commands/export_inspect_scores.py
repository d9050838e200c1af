from pathlib import Path

import orjson
from django.core.management.base import BaseCommand, CommandError

from judges.models import JudgeRun
from judges.services.inspect_scores import inspect_score_rows, inspect_scores_csv


class Command(BaseCommand):
    help = (
        "Write a judge run's verdicts as an Inspect-readable score table: one Inspect Score "
        "per trace (C / I / N with counts), keyed by eval_id, sample_id and epoch. JSON (a list "
        "of rows with a 'score' object) or CSV (flat), from the --out suffix. See docs/formats.md."
    )

    def add_arguments(self, parser):
        parser.add_argument("--run", type=int, required=True)
        parser.add_argument("--out", type=Path, required=True, help="a .json or .csv file")

    def handle(self, *args, run: int, out: Path, **options):
        run_obj = JudgeRun.objects.select_related("judge").filter(pk=run).first()
        if run_obj is None:
            raise CommandError(f"no judge run {run}")
        suffix = out.suffix.lower()
        if suffix not in (".json", ".csv"):
            raise CommandError(f"{out}: name the file .json or .csv")
        rows = inspect_score_rows(run=run_obj)
        if suffix == ".json":
            out.write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2))
        else:
            out.write_text(inspect_scores_csv(rows))
        self.stdout.write(f"{len(rows)} scores of run {run} written to {out}")
