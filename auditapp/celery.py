"""The Celery application: broker from REDIS_URL, or kombu's filesystem transport under var/.

The queues are declared in settings (``CELERY_TASK_QUEUES``), so a worker started as
``celery -A auditapp worker`` consumes every one of them; each worker records what it consumes
in the shared cache (``auditapp.workers``) so a run nobody picks up says so.
"""

import os

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "auditapp.settings.base")

app = Celery("auditapp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Periodic jobs, declared in one place; each expires before its next run so a backlog of
# beats never piles up. Run `celery -A auditapp beat` beside the workers in production.
app.conf.beat_schedule = {
    "judges-reconcile-silent-runs": {
        # Re-enqueues the missing steps of judge runs whose lanes died (judges/tasks.py). Every
        # few seconds, so a killed worker's run is picked up again within seconds of a worker
        # being there to take it; the check is one indexed query when nothing is silent.
        "task": "judges.tasks.judge_run_reconcile_task",
        "schedule": 5.0,
        "options": {"queue": "judges", "expires": 4},
    },
}

_announcer = None


@worker_ready.connect
def _announce_queues(sender=None, **kwargs):
    global _announcer
    from auditapp.workers import WorkerAnnouncer

    consume_from = sender.app.amqp.queues.consume_from or {}
    queues = sorted(getattr(q, "name", name) for name, q in consume_from.items())
    _announcer = WorkerAnnouncer(sender.hostname, queues).start()


@worker_shutdown.connect
def _withdraw_queues(**kwargs):
    if _announcer is not None:
        _announcer.stop()
