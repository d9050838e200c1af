"""``python manage.py agreement_stats``: agreement coefficients for any long CSV table."""

import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from auditapp.exceptions import ApplicationError
from reports.services import agreement_stats_from_csv


class Command(BaseCommand):
    help = (
        "Print percent_agreement, cohen_kappa (null unless exactly two raters), fleiss_kappa, "
        "krippendorff_alpha and gwet_ac1 of a long CSV table (one row per unit × rater) as JSON."
    )

    def add_arguments(self, parser):
        parser.add_argument("--input", type=Path, required=True, metavar="FILE.csv")
        parser.add_argument("--unit", required=True, metavar="COL", help="unit column")
        parser.add_argument("--rater", required=True, metavar="COL", help="rater column")
        parser.add_argument("--value", required=True, metavar="COL", help="value column")
        parser.add_argument(
            "--level",
            choices=["nominal", "ordinal", "interval", "ratio"],
            default="nominal",
            help="measurement level for Krippendorff's alpha (default nominal)",
        )

    def handle(self, *args, **options):
        path = Path(options["input"])
        try:
            with path.open("rb") as handle:
                result = agreement_stats_from_csv(
                    handle,
                    unit=options["unit"],
                    rater=options["rater"],
                    value=options["value"],
                    level=options["level"],
                    name=str(path),
                )
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from None
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
