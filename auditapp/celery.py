"""The Celery application: broker from REDIS_URL, or kombu's filesystem transport under var/."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "auditapp.settings.base")

app = Celery("auditapp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Periodic jobs, declared in one place; each expires before its next run so a backlog of
# beats never piles up. Run `celery -A auditapp beat` beside the workers in production.
app.conf.beat_schedule = {
    "judges-reconcile-silent-runs": {
        # Re-enqueues the missing steps of judge runs whose workers died (judges/tasks.py).
        "task": "judges.tasks.judge_run_reconcile_task",
        "schedule": 60.0,
        "options": {"queue": "judges", "expires": 50},
    },
}
