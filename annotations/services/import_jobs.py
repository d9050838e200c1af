"""Imports through the API: validate in the request (a bad file is a 400 at once), write in a
worker with progress the page can poll."""

import uuid
from collections.abc import Iterable
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from annotations.models import Audit, ImportJob
from annotations.services.import_formats import ImportProblem
from annotations.services.imports import import_run, import_validate
from auditapp.exceptions import ImportRejected, ImportTooLarge, NotFoundError

UPLOAD_DIR_NAME = "imports"
# What a multipart body may carry beyond the file itself (boundaries, part headers, the
# segmenter and skip_existing fields) before its declared length alone refuses it.
MULTIPART_SLACK_BYTES = 64 * 1024


def _too_large(what: str) -> ImportTooLarge:
    limit = settings.STEPAUDIT_MAX_UPLOAD_BYTES
    return ImportTooLarge(
        [
            ImportProblem(
                None,
                f"{what} over the upload limit of {limit:,} bytes (STEPAUDIT_MAX_UPLOAD_BYTES); "
                "import larger files with manage.py import_traces",
            )
        ],
        message=f"The file is over the upload limit of {limit:,} bytes. Nothing was imported.",
    )


def import_upload_check_declared_size(*, content_length: str | None) -> None:
    """Refuse a request whose declared body length is already over the upload limit.

    Called before the body is parsed, so a client that says how much it sends is turned away
    before the server spools it; the bytes themselves are counted again in import_job_create.
    """
    try:
        declared = int(content_length or "")
    except ValueError:
        return  # no usable length (chunked): the count while storing decides
    if declared > settings.STEPAUDIT_MAX_UPLOAD_BYTES + MULTIPART_SLACK_BYTES:
        raise _too_large(f"the request declares {declared:,} bytes,")


def import_job_create(
    *,
    audit: Audit,
    user,
    filename: str,
    chunks: Iterable[bytes],
    segmenter_names: list[str],
    skip_existing: bool,
    file_format: str | None = None,
    condition: str = "",
) -> ImportJob:
    """Store the upload, validate it whole (ImportRejected → 400), and queue the import.

    An upload over STEPAUDIT_MAX_UPLOAD_BYTES is refused (ImportTooLarge → 413) as soon as
    the count passes the limit, without storing the rest.
    """
    suffix = Path(filename).suffix.lower()[:8]
    path = Path(settings.VAR_DIR) / UPLOAD_DIR_NAME / f"{uuid.uuid4().hex}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    limit = settings.STEPAUDIT_MAX_UPLOAD_BYTES
    size = 0
    with path.open("wb") as out:
        for chunk in chunks:
            size += len(chunk)
            if size > limit:
                break
            out.write(chunk)
    if size > limit:
        path.unlink(missing_ok=True)
        raise _too_large("the file is")
    try:
        # Checked here, written by the worker (which checks again and keeps the samples).
        plan = import_validate(
            audit=audit,
            path=path,
            segmenter_names=segmenter_names,
            skip_existing=skip_existing,
            keep_samples=False,
            file_format=file_format,
            condition=condition,
        )
    except ImportRejected:
        path.unlink(missing_ok=True)
        raise
    job = ImportJob.objects.create(
        audit=audit,
        created_by=user,
        filename=filename[:255],
        path=str(path),
        file_format=plan.file_format,
        segmenters=plan.segmenters,
        skip_existing=skip_existing,
        total_records=plan.n_records,
        condition=condition[:120],
    )
    from annotations.tasks import import_job_run_task

    transaction.on_commit(lambda: import_job_run_task.delay(job.pk))
    return job


def import_job_run(*, job_id: int) -> None:
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().get(pk=job_id)
        if job.status != ImportJob.Status.QUEUED:
            return  # a redelivered message: the job already ran (or is running)
        job.status = ImportJob.Status.RUNNING
        job.started_at = timezone.now()
        job.save(update_fields=["status", "started_at"])

    def progress(done: int, total: int) -> None:
        # Outside the import's transaction would be ideal; an UPDATE by pk is cheap either way,
        # but readers only see it after commit on PostgreSQL, so the count is also kept in the
        # cache for the progress bar.
        from django.core.cache import cache

        cache.set(f"import-progress:{job_id}", done, 3600)

    path = Path(job.path)
    try:
        plan = import_validate(
            audit=job.audit,
            path=path,
            segmenter_names=job.segmenters,
            skip_existing=job.skip_existing,
            file_format=job.file_format,
            condition=job.condition,
        )
        result = import_run(audit=job.audit, plan=plan, job=job, progress=progress)
    except ImportRejected as exc:
        _finish(
            job,
            ImportJob.Status.FAILED,
            message=exc.message,
            problems=exc.extra.get("problems", []),
        )
        return
    except Exception as exc:  # the job must end visibly failed, never stuck "running"
        _finish(job, ImportJob.Status.FAILED, message=f"internal error: {type(exc).__name__}")
        raise
    _finish(
        job,
        ImportJob.Status.DONE,
        message="",
        n_traces=result.n_traces,
        n_steps=result.n_steps,
        n_skipped=result.n_skipped + result.n_samples_skipped,
        n_samples=result.n_samples,
        done_records=result.n_records,
    )
    path.unlink(missing_ok=True)


def _finish(
    job: ImportJob, status: str, *, message: str, problems: list | None = None, **counts: int
) -> None:
    job.status = status
    job.message = message
    job.problems = problems or []
    job.finished_at = timezone.now()
    for name, value in counts.items():
        setattr(job, name, value)
    job.save()


def import_job_progress(job: ImportJob) -> dict:
    from django.core.cache import cache

    done = job.done_records
    if job.status == ImportJob.Status.RUNNING:
        done = cache.get(f"import-progress:{job.pk}", 0)
    return {
        "id": job.pk,
        "status": job.status,
        "filename": job.filename,
        "total_records": job.total_records,
        "done_records": done,
        "fraction": (done / job.total_records) if job.total_records else 0.0,
        "n_traces": job.n_traces,
        "n_steps": job.n_steps,
        "n_skipped": job.n_skipped,
        "n_samples": job.n_samples,
        "segmenters": job.segmenters,
        "message": job.message,
        "problems": job.problems,
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


def import_job_get(*, job_id: int) -> ImportJob:
    job = ImportJob.objects.select_related("audit").filter(pk=job_id).first()
    if job is None:
        raise NotFoundError("No such import.")
    return job
