import json
from datetime import datetime
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from annotations.models import Audit, Batch
from auditapp.exceptions import ApplicationError
from studies.models import Study
from studies.services.setup import study_configure, study_link_create


def _when(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--{name}: not an ISO date-time ({value!r})") from None
    return moment if moment.tzinfo else timezone.make_aware(moment, timezone.UTC)


def _settings_file(path: str) -> dict:
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {path}: {exc}") from None
    try:
        if source.suffix in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(text)
        return json.loads(text)
    except Exception as exc:
        raise CommandError(f"{path}: not valid {source.suffix[1:] or 'JSON'}: {exc}") from None


class Command(BaseCommand):
    help = (
        "Make an enrolment link for an audit (trace ratings or step labels): capacity, dates, "
        "the batch it draws "
        "from, the platform's id parameter and a completion code or URL. --study sets the "
        "consent, instructions, practice, attention checks and questionnaire (docs/studies.md)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--audit", required=True, metavar="SLUG")
        parser.add_argument("--batch", required=True, help="the batch's name")
        parser.add_argument("--capacity", type=int, required=True)
        parser.add_argument("--name", default="")
        parser.add_argument("--study", metavar="FILE", help="study settings (JSON or YAML)")
        parser.add_argument("--opens", help="ISO date-time (UTC unless it says)")
        parser.add_argument("--closes", help="ISO date-time (UTC unless it says)")
        parser.add_argument("--platform-param", default="PROLIFIC_PID")
        parser.add_argument("--completion-code", default="")
        parser.add_argument("--completion-url", default="")
        parser.add_argument("--items-per-participant", type=int)
        parser.add_argument("--base-url", default="http://localhost:8000")
        parser.add_argument("--json", action="store_true", help="print the ids made as JSON")

    def handle(self, *args, **o):
        audit = Audit.objects.filter(slug=o["audit"]).first()
        if audit is None:
            raise CommandError(f"no audit {o['audit']!r}")
        batch = Batch.objects.filter(audit=audit, name=o["batch"]).first()
        if batch is None:
            raise CommandError(f"audit {audit.slug!r} has no batch {o['batch']!r}")
        settings = _settings_file(o["study"]) if o["study"] else None
        if settings is None and not Study.objects.filter(audit=audit).exists():
            raise CommandError("the audit has no study yet: give --study FILE (consent etc.)")
        opens, closes = _when(o["opens"], "opens"), _when(o["closes"], "closes")
        try:
            with transaction.atomic():  # a bad link leaves no half-made study behind
                study = study_configure(audit=audit, settings=settings) if settings else None
                link = study_link_create(
                    audit=audit,
                    batch=batch,
                    capacity=o["capacity"],
                    name=o["name"],
                    opens_at=opens,
                    closes_at=closes,
                    platform_param=o["platform_param"],
                    completion_code=o["completion_code"],
                    completion_url=o["completion_url"],
                    items_per_participant=o["items_per_participant"],
                )
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        url = (
            o["base_url"].rstrip("/")
            + reverse("studies:entry", args=[link.token])
            + f"?{link.platform_param}={{{{%{link.platform_param}%}}}}"
        )
        if o["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "study_id": link.study_id,
                        "study_link_id": link.pk,
                        "token": link.token,
                        "url": url,
                        "study_configured": study is not None,
                    },
                    indent=2,
                )
            )
        else:
            self.stdout.write(
                f"study link {link.pk} for {audit.slug} ({link.capacity} places): {url}"
            )
