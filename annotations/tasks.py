from celery import shared_task

from annotations.services.import_jobs import import_job_run


# Not autoretried: an import is one transaction, so a failed attempt left nothing behind, and
# a redelivered message finds the job no longer queued (import_job_run checks), so no row is
# written twice.
@shared_task(acks_late=True, reject_on_worker_lost=True)
def import_job_run_task(job_id: int) -> None:
    import_job_run(job_id=job_id)


@shared_task
def ping_task(token: str) -> str:
    """A round trip for the smoke test and health checks."""
    from django.core.cache import cache

    cache.set(f"ping:{token}", "pong", 300)
    return token
