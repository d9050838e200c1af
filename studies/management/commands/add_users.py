import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from auditapp.exceptions import ApplicationError, ImportRejected
from studies.services.people import (
    DEFAULT_VALID_HOURS,
    links_csv,
    people_create,
    people_parse,
)


class Command(BaseCommand):
    help = (
        "Create everyone in a CSV (username, role, optional email and display_name) in one go "
        "and write a CSV of one-time sign-in links (no passwords are made or printed)."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="CSV with a header: username,role[,email][,display_name]")
        parser.add_argument(
            "--out", help="where to write the links CSV (default: FILE with -links.csv)"
        )
        parser.add_argument("--valid-hours", type=int, default=DEFAULT_VALID_HOURS)
        parser.add_argument(
            "--base-url",
            default="http://localhost:8000",
            help="the site's address, the links start with it",
        )
        parser.add_argument("--json", action="store_true", help="print the ids made as JSON")

    def handle(self, *args, file, out, valid_hours, base_url, json: bool, **options):
        source = Path(file)
        try:
            text = source.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {file}: {exc}") from None
        target = Path(out) if out else source.with_name(source.stem + "-links.csv")
        if target.resolve() == source.resolve():
            raise CommandError("--out must not be the input file")
        try:
            rows = people_parse(text=text)
            issued = people_create(rows=rows, base_url=base_url, valid_hours=valid_hours)
        except ImportRejected as exc:
            lines = "; ".join(f"line {p['line']}: {p['message']}" for p in exc.extra["problems"])
            raise CommandError(f"{exc.message} {lines}") from None
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        # The links are secrets: the file is readable by its owner only.
        target.touch(mode=0o600, exist_ok=True)
        target.chmod(0o600)
        target.write_text(links_csv(issued=issued), encoding="utf-8")
        if json:
            self.stdout.write(
                _dumps(
                    {
                        "users": [
                            {"id": i.user_id, "username": i.username, "role": i.role}
                            for i in issued
                        ],
                        "links_file": str(target),
                        "expires_at": issued[0].expires_at.isoformat(timespec="seconds"),
                    }
                )
            )
        else:
            self.stdout.write(
                f"{len(issued)} accounts created; sign-in links (valid {valid_hours} h, single "
                f"use) written to {target}"
            )


def _dumps(value) -> str:
    return json.dumps(value, indent=2)
