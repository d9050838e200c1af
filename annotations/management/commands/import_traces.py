from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError, transaction
from django.db.models import Max
from tqdm import tqdm

from annotations.models import Audit
from annotations.services.audits import audit_create
from annotations.services.import_formats import FILE_FORMATS
from annotations.services.imports import import_run, import_validate
from annotations.services.segmenters import SEGMENTER_NAMES
from auditapp.commands import JsonOutputMixin
from auditapp.exceptions import ImportRejected


class Command(JsonOutputMixin, BaseCommand):
    help = "Import traces (JSONL or CSV, one trace per record) into an audit. See docs/formats.md."

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--audit", required=True, help="the audit's slug")
        parser.add_argument("--create", action="store_true", help="create the audit if missing")
        parser.add_argument(
            "--segmenter",
            action="append",
            dest="segmenters",
            metavar="NAME",
            help=f"one of {', '.join(SEGMENTER_NAMES)}; repeat (or comma-separate) for several "
            "segmentations. Default: 'given' when every record has steps, else 'paragraphs'.",
        )
        parser.add_argument(
            "--skip-existing",
            action="store_true",
            help="leave out trace ids already in the audit instead of failing",
        )
        parser.add_argument(
            "--format",
            dest="file_format",
            choices=["auto", *FILE_FORMATS],
            default="auto",
            help="how to read the file (default: from its name and first record): the "
            "StepAudit jsonl/csv fields, an Inspect AI eval log (inspect), lm-evaluation-harness "
            "--log_samples JSONL (lm-eval), or chat JSONL with messages (chat)",
        )
        parser.add_argument(
            "--condition",
            default="",
            help="the arm: needed for lm-eval samples (they name no model); for inspect and "
            "chat files it replaces the model's name",
        )
        parser.add_argument("--no-progress", action="store_true")
        self.add_json_argument(parser)

    def handle(
        self,
        *args,
        file: Path,
        audit: str,
        create: bool,
        segmenters,
        skip_existing,
        no_progress,
        file_format="auto",
        condition="",
        **options,
    ):
        self.json_setup(options)
        if not file.is_file():
            raise CommandError(f"{file}: no such file")
        audit_obj = Audit.objects.filter(slug=audit).first()
        if audit_obj is None and not create:
            raise CommandError(f"no audit {audit!r}; pass --create to create it")
        names = [n.strip() for value in segmenters or [] for n in value.split(",") if n.strip()]
        try:
            # A new audit is validated unsaved and created in the import's transaction, so a
            # rejected file (in either pass) leaves no empty audit behind.
            plan = import_validate(
                audit=audit_obj or Audit(slug=audit, name=audit),
                path=file,
                segmenter_names=names,
                skip_existing=skip_existing,
                file_format=file_format,
                condition=condition,
            )
            if plan.format_detected and plan.file_format not in ("jsonl", "csv"):
                self.stderr.write(
                    f"{file}: read as {plan.file_format} (detected from the file; "
                    "pass --format to choose)"
                )
            with (
                transaction.atomic(),
                tqdm(
                    total=plan.n_records, unit="trace", disable=no_progress, file=self.stderr._out
                ) as bar,
            ):
                created = audit_obj is None
                if audit_obj is None:
                    audit_obj = self._create(audit)
                # Ids only grow: what is above the largest one now is what this import made.
                before = audit_obj.traces.aggregate(last=Max("pk"))["last"] or 0
                result = import_run(
                    audit=audit_obj,
                    plan=plan,
                    progress=lambda done, total: bar.update(done - bar.n),
                )
        except ImportRejected as exc:
            for problem in exc.problems:
                self.stderr.write(f"{file}: {problem}")
            raise CommandError(exc.message) from None
        new_traces = audit_obj.traces.filter(pk__gt=before).order_by("pk")
        skipped = result.n_skipped + result.n_samples_skipped
        samples = f", {result.n_samples} answer-only samples" if plan.n_samples else ""
        self.finish(
            {
                "audit_id": audit_obj.pk,
                "audit": audit_obj.slug,
                "audit_created": created,
                "trace_ids": list(new_traces.values_list("pk", flat=True)),
                "traces": result.n_traces,
                "steps": result.n_steps,
                "samples": result.n_samples,
                "skipped": skipped,
                "segmentations": list(result.segmenters),
            },
            f"Imported {result.n_traces} traces, {result.n_steps} steps{samples} "
            f"(segmentations: {', '.join(result.segmenters)}) into {audit_obj.slug}"
            + (f"; skipped {skipped} already imported" if skipped else ""),
            self.style.SUCCESS,
        )

    def _create(self, slug: str) -> Audit:
        try:
            return audit_create(slug=slug, name=slug)
        except IntegrityError:
            # Validated as new, but another process created the slug since.
            raise CommandError(
                f"audit {slug!r} was created meanwhile; run the import again"
            ) from None
