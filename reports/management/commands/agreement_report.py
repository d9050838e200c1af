"""``python manage.py agreement_report``: the agreement report from the database or from files.

Output by ``--format``:

- ``json`` (default): the whole report.
- ``csv``: with ``--out FILE.csv`` or no ``--out`` the ``error_rates`` table; with ``--out`` an
  existing directory (or a path ending in ``/``) every table as ``<name>.csv`` plus
  ``report.json`` in it; with ``--out FILE.zip`` the same files in one zip. From ``--audit`` the
  long tables ``labels.csv``, ``answers.csv`` and ``ratings.csv`` come along, so the same report
  can be recomputed from the files with ``--labels/--answers/--ratings`` (and, once the audit is
  unblinded, ``pseudonyms.csv``: pseudonym → imported id). Every CSV has its formula-like text
  cells neutralised (``exports.csv_safe``); the readers undo it.
- ``html``: the stand-alone HTML report, figures embedded as data URIs.
"""

import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotations.models import Audit
from auditapp.exceptions import ApplicationError
from reports.collect import long_tables_collect
from reports.exports import frame_to_csv, report_tables, tables_zip
from reports.render import report_html
from reports.services import report_build, report_from_files


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise CommandError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise CommandError(f"expected a positive integer, got {text!r}")
    return value


class Command(BaseCommand):
    help = (
        "Compute the agreement report of an audit (--audit SLUG) or of long-format CSV files "
        "(--labels FILE [--answers FILE] [--ratings FILE]) as JSON, CSV or stand-alone HTML."
    )

    def add_arguments(self, parser):
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--audit", metavar="SLUG", help="read the audit from the database")
        source.add_argument("--labels", type=Path, metavar="FILE.csv", help="labels long format")
        parser.add_argument("--answers", type=Path, metavar="FILE.csv")
        parser.add_argument("--ratings", type=Path, metavar="FILE.csv")
        parser.add_argument("--format", choices=["json", "csv", "html"], default="json")
        parser.add_argument(
            "--out",
            metavar="PATH",
            help="file to write (default: standard output); for csv a directory or .zip "
            "gets every table",
        )
        parser.add_argument(
            "--seed",
            type=int,
            default=None,
            help="bootstrap seed (default 0, or the locked plan's)",
        )
        parser.add_argument(
            "--resamples",
            type=_positive,
            default=None,
            help="bootstrap resamples (default 2000, or the locked plan's)",
        )
        parser.add_argument(
            "--ece-bins",
            type=_positive,
            default=None,
            help="equal-width ECE bins (default 10, or the locked plan's)",
        )
        parser.add_argument(
            "--abstain-rule",
            choices=["exclude", "error", "correct"],
            default=None,
            help="how error_rate treats abstentions",
        )

    def handle(self, *args, **options):
        if options["audit"] and (options["answers"] or options["ratings"]):
            raise CommandError("--answers/--ratings go with --labels, not with --audit")
        settings = {
            "seed": options["seed"],
            "resamples": options["resamples"],
            "ece_bins": options["ece_bins"],
            "abstain_rule": options["abstain_rule"],
        }
        long_tables: dict = {}
        try:
            if options["audit"]:
                audit = Audit.objects.filter(slug=options["audit"]).first()
                if audit is None:
                    raise CommandError(f"no audit with slug {options['audit']!r}")
                report = report_build(audit=audit, **settings)
                if options["format"] == "csv":
                    # The long tables ride along, so the files can be re-read with --labels.
                    long_tables = long_tables_collect(audit)
            else:
                report = report_from_files(
                    options["labels"], options["answers"], options["ratings"], **settings
                )
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        self._write(report, options["format"], options["out"], long_tables)

    def _write(self, report: dict, fmt: str, out: str | None, long_tables: dict) -> None:
        if fmt == "json":
            self._emit(json.dumps(report, indent=2, ensure_ascii=False) + "\n", out)
        elif fmt == "html":
            self._emit(report_html(report), out)
        elif out and out.endswith(".zip"):
            self._write_bytes(Path(out), tables_zip(report, long_tables))
        elif out and (out.endswith(("/", "\\")) or Path(out).is_dir()):
            folder = Path(out)
            tables = {**report_tables(report), **long_tables}
            try:
                folder.mkdir(parents=True, exist_ok=True)
                for name, frame in tables.items():
                    (folder / f"{name}.csv").write_bytes(frame_to_csv(frame).encode("utf-8"))
                (folder / "report.json").write_text(
                    json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8"
                )
            except OSError as exc:
                raise CommandError(f"cannot write {folder}: {exc}") from None
            self.stderr.write(f"wrote {len(tables) + 1} files to {folder}")
        else:
            self._emit(frame_to_csv(report_tables(report)["error_rates"]), out)

    def _emit(self, text: str, out: str | None) -> None:
        if out is None:
            sys.stdout.write(text)
            sys.stdout.flush()
            return
        self._write_bytes(Path(out), text.encode("utf-8"))

    def _write_bytes(self, path: Path, data: bytes) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        except OSError as exc:
            raise CommandError(f"cannot write {path}: {exc}") from None
        self.stderr.write(f"wrote {path} ({len(data):,} bytes)")
