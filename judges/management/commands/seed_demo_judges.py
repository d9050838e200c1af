from django.core.management.base import BaseCommand, CommandError

from annotations.models import Audit
from judges.services.demo import DEMO_FAKE_PORT, DEMO_JUDGE_SPEC, demo_judges_seed


class Command(BaseCommand):
    help = (
        "Give the demo audit its judges: the imported reference verdicts as a run, and "
        f"'{DEMO_JUDGE_SPEC['name']}' on the local fake server (port {DEMO_FAKE_PORT}). "
        "Idempotent. Run after seed_demo."
    )

    def handle(self, *args, **options):
        audit = Audit.objects.filter(slug="demo").first()
        if audit is None:
            raise CommandError("no demo audit: run `python manage.py seed_demo` first")
        created = demo_judges_seed(audit=audit)
        self.stdout.write("Demo judges: " + (", ".join(created) if created else "already there"))
