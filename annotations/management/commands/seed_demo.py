from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from annotations.models import Audit
from annotations.services.demo import DEMO_SLUG, demo_seed


class Command(BaseCommand):
    help = (
        "Create the demo audit (slug 'demo') with example traces and the demo accounts. "
        "Idempotent: a second run changes nothing and prints the same accounts."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--credentials-file",
            type=Path,
            default=Path(settings.VAR_DIR) / "demo-accounts.txt",
            help="where generated passwords are kept (outside git)",
        )

    def handle(self, *args, credentials_file: Path, **options):
        accounts = demo_seed(credentials_file=credentials_file)
        audit = Audit.objects.get(slug=DEMO_SLUG)
        self.stdout.write(
            f"Demo audit '{audit.slug}': {audit.traces.count()} traces, {audit.steps.count()} steps"
        )
        self.stdout.write("Demo accounts (username / password / role):")
        for username, password, role in accounts:
            self.stdout.write(f"  {username:<12} {password:<20} {role}")
