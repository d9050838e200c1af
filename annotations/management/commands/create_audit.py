from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError, transaction

from annotations.audit_spec import (
    AuditFileError,
    AuditSpecSerializer,
    audit_file_load,
    spec_errors_flat,
)
from annotations.models import Audit
from auditapp.commands import JsonOutputMixin
from auditapp.exceptions import ApplicationError


class Command(JsonOutputMixin, BaseCommand):
    help = (
        "Create an audit from a YAML or JSON file with all its settings (docs/formats.md, "
        "'Audit files'; examples in docs/examples/). --update changes an existing one."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument(
            "--update",
            action="store_true",
            help="change the audit with the file's slug (created if it doesn't exist yet); "
            "settings the file leaves out are kept",
        )
        self.add_json_argument(parser)

    def handle(self, *args, file: Path, update: bool, **options):
        self.json_setup(options)
        try:
            data = audit_file_load(file)
        except AuditFileError as exc:
            raise CommandError(str(exc)) from None
        slug = data.get("slug")
        existing = Audit.objects.filter(slug=slug).first() if isinstance(slug, str) else None
        if existing is not None and not update:
            raise CommandError(f"audit {slug!r} exists; pass --update to change it")
        serializer = AuditSpecSerializer(instance=existing, data=data, partial=existing is not None)
        if not serializer.is_valid():
            problems = spec_errors_flat(serializer.errors)
            lines = [f"{file}: {path or 'file'}: {message}" for path, message in problems]
            raise CommandError("\n".join([*lines, "nothing was created or changed"]))
        try:
            with transaction.atomic():
                audit = serializer.save()
        except ApplicationError as exc:
            field = exc.extra.get("field")
            raise CommandError(f"{file}: {field + ': ' if field else ''}{exc.message}") from None
        except IntegrityError:
            raise CommandError(f"audit {slug!r} was created meanwhile; run again") from None
        verb = "updated" if existing else "created"
        self.finish(
            {"audit_id": audit.pk, "audit": audit.slug, "created": existing is None},
            f"audit {audit.slug!r} {verb} (id {audit.pk}, {audit.get_kind_display()})",
            self.style.SUCCESS,
        )
