"""Judge services: judges and prompts from specs, runs and their life cycle, the chunk worker,
reference runs, verdict imports and the provider batch-API round trip.

How a run executes (``run_create`` → tasks → ``judge_chunk_run``):

1. ``run_create`` stores the run (scope, total) and, on commit, enqueues
   ``judge_run_start_task``, which calls ``run_enqueue_missing``: the scope's steps without a
   verdict (or a recorded failure), shuffled by the run's seed — so a cancelled run's verdicts
   cover the conditions evenly, not the first-imported traces — and cut into chunks.
2. ``judge_chunk_run`` (one Celery task per chunk) loads the chunk's steps that still have no
   verdict, renders blinded prompts (``judges.rendering``), and sends them through the client
   with the judge's share of concurrency, while holding one of the judge's *lanes*.
3. Verdicts are written in batches with ``INSERT … ON CONFLICT DO NOTHING RETURNING``: the
   counters grow by what was really inserted, in the same transaction, so a chunk that runs
   twice neither duplicates a verdict nor double-counts it.
4. The chunk that leaves nothing remaining marks the run done (under a row lock, after an
   exact recount). A run whose workers died is found by ``run_reconcile`` (periodic task): no
   heartbeat for ``stale_after_s`` → the run's *generation* is bumped and the missing steps are
   enqueued again; chunks of an older generation stop at their next poll.

Concurrency: ``Judge.max_concurrency`` is the judge's total of in-flight requests. It is split
over ``Judge.parallel_chunks`` lanes (a cache key each, ``SET NX`` with a short TTL refreshed
while the chunk runs); a chunk takes a lane before sending and runs at
``max_concurrency / parallel_chunks``. Set ``parallel_chunks`` to the number of worker
processes that should share a run. Rate limits (rpm / tpm) are shared through Redis by
``judges.clients.ratelimit``.
"""

from __future__ import annotations

import json
import logging
import math
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection, models, transaction
from django.db.models import Count, F, Q, Sum
from django.utils import timezone

from annotations.models import Audit, Step
from auditapp.exceptions import ApplicationError, ConflictError, ImportRejected, NotFoundError
from judges.clients import (
    JudgeConfigError,
    JudgeResult,
    RateLimits,
    aggregate_samples,
    judge_many_sync,
    limiter_for,
    parse_verdict,
)
from judges.clients.parsing import ParseError
from judges.models import Judge, JudgeFailure, JudgePrompt, JudgeRun, JudgeVerdict
from judges.prompts import DEFAULT_SYSTEM, DEFAULT_USER, PromptTemplate
from judges.rendering import RenderedStep, batch_request_body, client_settings, requests_for_steps

logger = logging.getLogger(__name__)

# Steps per chunk task, unless a run sets its own: the missing steps split into
# CHUNKS_PER_LANE chunks per lane, within [CHUNK_MIN, CHUNK_MAX]. Measured with
# bench/judge_bench.py (5,000 steps, 100 ms fake endpoint, concurrency 64 as 2 lanes of 32,
# 2 workers): every chunk ends with a "tail" — its last, partly filled round of requests, and
# with faults the slowest retry chain among its steps — during which the lane idles. Fixed
# chunks of 400 spent ~18% of the run in tails (ratio 0.68 clean); 2 chunks per lane, see
# docs/judges.md for the figures. Two per lane, not one, so a lane that finishes early takes
# over half of a slow one's work. Killed work is not the concern: verdicts are written as they
# come, so a killed chunk loses only its in-flight requests whatever its size.
CHUNKS_PER_LANE = 2
CHUNK_MIN = 50
CHUNK_MAX = 2000
# Verdict rows per INSERT and the longest a verdict waits in memory before it is written.
FLUSH_ROWS = 100
FLUSH_AGE_S = 0.5
# A chunk refreshes its lane and the run's heartbeat this often while it runs.
HEARTBEAT_S = 2.0
LANE_TTL_S = 15
DEFAULT_STALE_AFTER_S = 60.0
DEFAULT_PROMPT_NAME = "step-default"


class TransientJudgeError(Exception):
    """Some steps of a chunk got no answer for reasons that may pass (429 / 5xx / timeouts
    beyond the client's retries). The chunk task retries later; done steps are skipped."""


class JudgeSpecError(ApplicationError):
    code = "invalid_spec"

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}", extra={"field": field})
        self.field = field


# -- prompts -----------------------------------------------------------------------------------


def prompt_version_create(
    *, name: str, system_template: str, user_template: str, description: str = ""
) -> JudgePrompt:
    """The latest version of ``name`` if it has these templates, else a new version.

    An unused latest version is edited in place (nothing was judged with it); a used one is
    immutable, so different templates make version + 1.
    """
    try:
        PromptTemplate(system=system_template, user=user_template)
    except ValueError as exc:
        raise JudgeSpecError("prompt", str(exc)) from None
    with transaction.atomic():
        latest = (
            JudgePrompt.objects.select_for_update().filter(name=name).order_by("-version").first()
        )
        if latest is not None and (latest.system_template, latest.user_template) == (
            system_template,
            user_template,
        ):
            return latest
        if latest is not None and latest.used_at is None:
            latest.system_template = system_template
            latest.user_template = user_template
            latest.description = description or latest.description
            latest.save()
            return latest
        return JudgePrompt.objects.create(
            name=name,
            version=(latest.version + 1) if latest else 1,
            system_template=system_template,
            user_template=user_template,
            description=description,
        )


def prompt_update(*, prompt: JudgePrompt, system_template: str, user_template: str) -> JudgePrompt:
    """Edit a version in place — refused once a run has used it."""
    if prompt.used_at is not None:
        raise ConflictError(
            f"prompt {prompt} has been used by a run and cannot change; create a new version",
            code="prompt_immutable",
        )
    try:
        PromptTemplate(system=system_template, user=user_template)
    except ValueError as exc:
        raise JudgeSpecError("prompt", str(exc)) from None
    prompt.system_template = system_template
    prompt.user_template = user_template
    prompt.save()
    return prompt


def default_prompt_get() -> JudgePrompt:
    return prompt_version_create(
        name=DEFAULT_PROMPT_NAME,
        system_template=DEFAULT_SYSTEM,
        user_template=DEFAULT_USER,
        description="The shipped step-level prompt (judges.prompts).",
    )


# -- judges from a spec ----------------------------------------------------------------------

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
_KEY_LOOKING = re.compile(r"^(sk-|sk_|Bearer\s)|[A-Za-z0-9_\-]{40,}")

# field → (type(s), required for LLM judges, validator or None)
_NUM = (int, float)
SPEC_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "name": ((str,), True),
    "description": ((str,), False),
    "is_reference": ((bool,), False),
    "base_url": ((str,), True),
    "model": ((str,), True),
    "api_key_env": ((str, type(None)), False),
    "temperature": (_NUM, False),
    "max_tokens": ((int,), False),
    "samples_per_step": ((int,), False),
    "aggregation": ((str,), False),
    "max_concurrency": ((int,), False),
    "parallel_chunks": ((int,), False),
    "rpm_limit": ((int, type(None)), False),
    "tpm_limit": ((int, type(None)), False),
    "timeout_s": (_NUM, False),
    "max_retries": ((int,), False),
    "max_parse_retries": ((int,), False),
    "use_json_mode": ((bool,), False),
    "style_blind": ((bool,), False),
    "show_final_answer": ((bool,), False),
    "context_mode": ((str,), False),
    "prompt": ((dict, str, type(None)), False),
}
PROMPT_FIELDS = {"name", "system", "user", "description"}


def judge_spec_validate(spec: Any) -> dict[str, Any]:
    """Check a judge spec (see docs/judges.md); ``JudgeSpecError`` names the field at fault."""
    if not isinstance(spec, Mapping):
        raise JudgeSpecError("(spec)", "must be a JSON / YAML object")
    for key in spec:
        if key not in SPEC_FIELDS:
            allowed = ", ".join(sorted(SPEC_FIELDS))
            raise JudgeSpecError(str(key), f"unknown field; allowed: {allowed}")
    is_reference = spec.get("is_reference", False)
    if not isinstance(is_reference, bool):
        raise JudgeSpecError("is_reference", "must be true or false")
    clean: dict[str, Any] = {}
    for key, (types, required) in SPEC_FIELDS.items():
        if key not in spec:
            if required and not (is_reference and key in ("base_url", "model")):
                raise JudgeSpecError(key, "is required")
            continue
        value = spec[key]
        # bool is an int in Python; a number field must not accept true/false.
        if not isinstance(value, types) or (
            isinstance(value, bool) and bool not in types and value is not None
        ):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise JudgeSpecError(key, f"must be {names}, got {type(value).__name__}")
        clean[key] = value
    _check_spec_values(clean)
    return clean


def _check_spec_values(c: dict[str, Any]) -> None:
    name = c["name"]
    if not re.fullmatch(r"[-a-zA-Z0-9_]{1,80}", name):
        raise JudgeSpecError("name", "letters, digits, - and _ only (at most 80)")
    if "base_url" in c and not re.match(r"^https?://[^\s/]+", c["base_url"]):
        raise JudgeSpecError("base_url", "must be an http(s) URL, e.g. http://127.0.0.1:8000/v1")
    if "model" in c and not c["model"].strip():
        raise JudgeSpecError("model", "must not be empty")
    env = c.get("api_key_env")
    if env and (_KEY_LOOKING.search(env) or not _ENV_NAME.match(env)):
        raise JudgeSpecError(
            "api_key_env",
            "must be the NAME of an environment variable (e.g. OPENAI_API_KEY), never a key",
        )
    if "temperature" in c and not 0 <= c["temperature"] <= 2:
        raise JudgeSpecError("temperature", "must be between 0 and 2")
    for key, low, high in (
        ("max_tokens", 1, 32768),
        ("samples_per_step", 1, 25),
        ("max_concurrency", 1, 1024),
        ("parallel_chunks", 1, 64),
        ("max_retries", 0, 20),
        ("max_parse_retries", 0, 10),
        ("rpm_limit", 1, 10**8),
        ("tpm_limit", 1, 10**10),
    ):
        value = c.get(key)
        if value is not None and not low <= value <= high:
            raise JudgeSpecError(key, f"must be between {low} and {high}")
    if "timeout_s" in c and not 0 < c["timeout_s"] <= 3600:
        raise JudgeSpecError("timeout_s", "must be more than 0 and at most 3600")
    if c.get("aggregation", "majority") not in Judge.Aggregation.values:
        raise JudgeSpecError("aggregation", f"must be one of {', '.join(Judge.Aggregation)}")
    if c.get("context_mode", "audit") not in Judge.ContextMode.values:
        raise JudgeSpecError(
            "context_mode", f"must be one of {', '.join(Judge.ContextMode.values)}"
        )
    if c.get("parallel_chunks", 1) > c.get("max_concurrency", 8):
        raise JudgeSpecError("parallel_chunks", "must not exceed max_concurrency")
    prompt = c.get("prompt")
    if isinstance(prompt, str) and prompt != "default":
        raise JudgeSpecError("prompt", 'must be an object or "default"')
    if isinstance(prompt, Mapping):
        for key in prompt:
            if key not in PROMPT_FIELDS:
                raise JudgeSpecError(
                    f"prompt.{key}", "unknown field; allowed: " + ", ".join(sorted(PROMPT_FIELDS))
                )
        for key in ("name", "user"):
            if not isinstance(prompt.get(key), str) or not prompt[key].strip():
                raise JudgeSpecError(f"prompt.{key}", "is required (a non-empty string)")
        if not isinstance(prompt.get("system", ""), str):
            raise JudgeSpecError("prompt.system", "must be a string")
        try:
            PromptTemplate(system=prompt.get("system", DEFAULT_SYSTEM), user=prompt["user"])
        except ValueError as exc:
            raise JudgeSpecError("prompt", str(exc)) from None


@transaction.atomic
def judge_create_or_update(*, spec: Mapping[str, Any]) -> Judge:
    """Create or update the judge named in ``spec`` and the prompt version it uses."""
    clean = judge_spec_validate(spec)
    prompt_spec = clean.pop("prompt", None)
    if clean.get("is_reference"):
        prompt = None
    elif isinstance(prompt_spec, Mapping):
        prompt = prompt_version_create(
            name=prompt_spec["name"],
            system_template=prompt_spec.get("system", DEFAULT_SYSTEM),
            user_template=prompt_spec["user"],
            description=prompt_spec.get("description", ""),
        )
    else:
        prompt = default_prompt_get()
    name = clean.pop("name")
    defaults = {field.name: field.get_default() for field in _spec_model_fields()}
    defaults.update(clean)
    defaults["api_key_env"] = defaults.get("api_key_env") or ""
    defaults["prompt"] = prompt
    judge, _ = Judge.objects.update_or_create(name=name, defaults=defaults)
    return judge


def _spec_model_fields() -> list[models.Field]:
    names = set(SPEC_FIELDS) - {"name", "prompt"}
    return [f for f in Judge._meta.concrete_fields if f.name in names]


def judge_get(*, name: str) -> Judge:
    judge = Judge.objects.select_related("prompt").filter(name=name).first()
    if judge is None:
        raise NotFoundError(f"no judge named {name!r}")
    return judge


# -- runs: creation and scope ----------------------------------------------------------------


def _scope_steps(
    *, audit: Audit, segmentation: str = "", batch_name: str = ""
) -> models.QuerySet[Step]:
    steps = Step.objects.filter(audit=audit)
    if batch_name:
        from django.apps import apps

        try:
            batch_model = apps.get_model("annotations", "Batch")
        except LookupError:
            raise ApplicationError("batches are not available yet", code="no_batches") from None
        batch = batch_model.objects.filter(audit=audit, name=batch_name).first()
        if batch is None:
            raise NotFoundError(f"no batch named {batch_name!r} in audit {audit.slug}")
        steps = steps.filter(pk__in=batch.items.values("step_id"))
    if segmentation:
        steps = steps.filter(segmentation=segmentation)
    return steps


def run_scope_steps(run: JudgeRun) -> models.QuerySet[Step]:
    return _scope_steps(
        audit=run.audit, segmentation=run.segmentation, batch_name=run.batch_name
    ).filter(pk__lte=run.scope_max_step_id)


def _run_new(
    *,
    audit: Audit,
    judge: Judge,
    mode: str,
    segmentation: str = "",
    batch_name: str = "",
    user=None,
    status: str = JudgeRun.Status.QUEUED,
    chunk_size: int = 0,
) -> JudgeRun:
    steps = _scope_steps(audit=audit, segmentation=segmentation, batch_name=batch_name)
    if segmentation and not steps.exists():
        raise ApplicationError(
            f"audit {audit.slug} has no steps in segmentation {segmentation!r}",
            code="empty_scope",
            extra={"field": "segmentation"},
        )
    agg = steps.aggregate(n=Count("id"), max_id=models.Max("id"))
    scope = (
        JudgeRun.Scope.BATCH
        if batch_name
        else JudgeRun.Scope.SEGMENTATION
        if segmentation
        else JudgeRun.Scope.AUDIT
    )
    prompt = judge.prompt
    if prompt is not None and prompt.used_at is None:
        # From now on this version is immutable (the model's save enforces it too).
        JudgePrompt.objects.filter(pk=prompt.pk, used_at=None).update(used_at=timezone.now())
    return JudgeRun.objects.create(
        judge=judge,
        audit=audit,
        prompt=prompt,
        mode=mode,
        scope=scope,
        segmentation=segmentation,
        batch_name=batch_name,
        scope_max_step_id=agg["max_id"] or 0,
        total=agg["n"],
        status=status,
        chunk_size=chunk_size,
        seed=secrets.token_hex(16),
        created_by=user if getattr(user, "is_authenticated", False) else None,
    )


@transaction.atomic
def run_create(
    *,
    audit: Audit,
    judge: Judge,
    segmentation: str = "",
    batch_name: str = "",
    user=None,
    chunk_size: int | None = None,
) -> JudgeRun:
    """A run of ``judge`` over the scope; its chunks are enqueued once this commits."""
    if judge.is_reference:
        raise ApplicationError(
            f"{judge.name} is a reference judge: use reference_run_create", code="reference_judge"
        )
    _check_runnable(judge)
    run = _run_new(
        audit=audit,
        judge=judge,
        mode=JudgeRun.Mode.WORKERS,
        segmentation=segmentation,
        batch_name=batch_name,
        user=user,
        chunk_size=chunk_size or 0,
    )
    if run.total == 0:
        _run_end(run, JudgeRun.Status.DONE, "the scope has no steps")
        return run
    from judges.tasks import enqueue_run_start

    transaction.on_commit(lambda: enqueue_run_start(run.pk))
    return run


def _check_runnable(judge: Judge) -> None:
    if judge.prompt_id is None:
        raise ApplicationError(f"judge {judge.name} has no prompt", code="no_prompt")
    if not judge.base_url or not judge.model:
        raise ApplicationError(f"judge {judge.name} has no endpoint", code="no_endpoint")
    limits = RateLimits(requests_per_minute=judge.rpm_limit, tokens_per_minute=judge.tpm_limit)
    if not limits.unlimited and not settings.REDIS_URL:
        raise ApplicationError(
            f"judge {judge.name} has rate limits, which are shared through Redis: set REDIS_URL",
            code="rate_limit_needs_redis",
        )


def run_missing_step_ids(run: JudgeRun) -> list[int]:
    """Step ids of the run's scope with neither a verdict nor a recorded failure."""
    return list(
        run_scope_steps(run)
        .exclude(pk__in=JudgeVerdict.objects.filter(run=run).values("step_id"))
        .exclude(pk__in=JudgeFailure.objects.filter(run=run).values("step_id"))
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def chunk_size_for(n_steps: int, *, lanes: int) -> int:
    """The adaptive chunk size (see ``CHUNKS_PER_LANE``)."""
    per_chunk = math.ceil(n_steps / (max(1, lanes) * CHUNKS_PER_LANE))
    return max(CHUNK_MIN, min(CHUNK_MAX, per_chunk))


def run_enqueue_missing(*, run_id: int) -> int:
    """Enqueue chunk tasks for every missing step of a running or queued run; returns chunks."""
    import random

    from judges.tasks import enqueue_chunk

    run = JudgeRun.objects.select_related("audit", "judge").get(pk=run_id)
    if run.status not in JudgeRun.ACTIVE:
        return 0
    ids = run_missing_step_ids(run)
    if not ids:
        run_finish_if_complete(run_id=run.pk)
        return 0
    random.Random(f"{run.seed}:{run.generation}").shuffle(ids)
    size = run.chunk_size or chunk_size_for(len(ids), lanes=run.judge.parallel_chunks)
    chunks = [ids[i : i + size] for i in range(0, len(ids), size)]
    for chunk in chunks:
        enqueue_chunk(run.pk, chunk, run.generation)
    JudgeRun.objects.filter(pk=run.pk).update(chunks_enqueued=F("chunks_enqueued") + len(chunks))
    return len(chunks)


# -- runs: status changes --------------------------------------------------------------------


def _status_cache_key(run_id: int, seed: str) -> str:
    # The seed makes the key unique to this run even where ids are reused (a test database).
    return f"judges:run-status:{run_id}:{seed}"


def _publish_status(run: JudgeRun) -> None:
    cache.set(_status_cache_key(run.pk, run.seed), (run.status, run.generation), 60)


def run_status_cached(run_id: int, seed: str) -> tuple[str, int] | None:
    """(status, generation), from the shared cache (set on every change) or the database.

    Chunks poll this several times a second; the cache spares the database those reads.
    """
    key = _status_cache_key(run_id, seed)
    value = cache.get(key)
    if value is not None:
        return (value[0], value[1])
    row = JudgeRun.objects.filter(pk=run_id).values_list("status", "generation").first()
    if row is not None:
        cache.set(key, row, 5)
    return row


def _active_seconds(run: JudgeRun, now: datetime) -> float:
    extra = (now - run.running_since).total_seconds() if run.running_since else 0.0
    return run.active_seconds + max(0.0, extra)


def _run_end(run: JudgeRun, status: str, message: str = "") -> None:
    now = timezone.now()
    run.active_seconds = _active_seconds(run, now)
    run.running_since = None
    run.status = status
    run.finished_at = now
    if message:
        run.message = message
    run.save(update_fields=["status", "finished_at", "message", "active_seconds", "running_since"])
    _publish_status(run)


def _locked(run_id: int) -> JudgeRun:
    run = JudgeRun.objects.select_for_update().filter(pk=run_id).first()
    if run is None:
        raise NotFoundError(f"no judge run {run_id}")
    return run


def run_pause(*, run: JudgeRun) -> JudgeRun:
    """Stop sending: in-flight requests finish and are stored; resume asks the rest."""
    with transaction.atomic():
        run = _locked(run.pk)
        if run.status not in JudgeRun.ACTIVE:
            raise ConflictError(
                f"run {run.pk} is {run.status}; only a queued or running run can be paused",
                code="not_running",
            )
        run.active_seconds = _active_seconds(run, timezone.now())
        run.running_since = None
        run.status = JudgeRun.Status.PAUSED
        run.save(update_fields=["status", "active_seconds", "running_since"])
    _publish_status(run)
    return run


def run_resume(*, run: JudgeRun) -> JudgeRun:
    """Continue a paused run, or ask the failed steps of a failed run again."""
    with transaction.atomic():
        run = _locked(run.pk)
        if run.mode != JudgeRun.Mode.WORKERS:
            raise ConflictError(
                "only runs executed by workers can be resumed", code="not_resumable"
            )
        if run.status not in (JudgeRun.Status.PAUSED, JudgeRun.Status.FAILED):
            raise ConflictError(
                f"run {run.pk} is {run.status}; only a paused or failed run can be resumed",
                code="not_resumable",
            )
        _check_runnable(run.judge)
        JudgeFailure.objects.filter(run=run).delete()
        _recount(run)
        run.status = JudgeRun.Status.RUNNING
        run.running_since = timezone.now()
        run.heartbeat_at = run.running_since
        run.finished_at = None
        run.message = ""
        # Chunks still queued from before the pause belong to the old generation: they exit.
        run.generation += 1
        run.save()
        from judges.tasks import enqueue_run_start

        run_id = run.pk
        transaction.on_commit(lambda: enqueue_run_start(run_id))
    _publish_status(run)
    return run


def run_cancel(*, run: JudgeRun) -> JudgeRun:
    with transaction.atomic():
        run = _locked(run.pk)
        if run.status in JudgeRun.ENDED:
            raise ConflictError(f"run {run.pk} has already ended ({run.status})", code="ended")
        _run_end(run, JudgeRun.Status.CANCELLED, "cancelled")
    return run


def _mark_running(run: JudgeRun, generation: int) -> None:
    now = timezone.now()
    changed = JudgeRun.objects.filter(
        pk=run.pk, status=JudgeRun.Status.QUEUED, generation=generation
    ).update(status=JudgeRun.Status.RUNNING, started_at=now, running_since=now, heartbeat_at=now)
    if changed:
        cache.set(_status_cache_key(run.pk, run.seed), (JudgeRun.Status.RUNNING, generation), 60)


def _recount(run: JudgeRun) -> None:
    agg = JudgeVerdict.objects.filter(run=run).aggregate(
        done=Count("id"),
        invalid=Count("id", filter=Q(verdict=JudgeVerdict.Verdict.INVALID)),
        prompt_tokens=Sum("prompt_tokens"),
        completion_tokens=Sum("completion_tokens"),
    )
    run.done = agg["done"]
    run.invalid = agg["invalid"]
    run.prompt_tokens = agg["prompt_tokens"] or 0
    run.completion_tokens = agg["completion_tokens"] or 0
    run.failed = JudgeFailure.objects.filter(run=run).count()


def run_finish_if_complete(*, run_id: int) -> JudgeRun | None:
    """Mark a running run done (or failed) when no step remains; exact recount under a lock."""
    counters = (
        JudgeRun.objects.filter(pk=run_id).values("status", "total", "done", "failed").first()
    )
    if counters is None or counters["status"] not in JudgeRun.ACTIVE:
        return None
    if counters["done"] + counters["failed"] < counters["total"]:
        return None
    with transaction.atomic():
        run = _locked(run_id)
        if run.status not in JudgeRun.ACTIVE:
            return None
        # A step may have a late verdict after a recorded failure (a duplicated chunk): the
        # verdict wins, the failure goes.
        JudgeFailure.objects.filter(
            run=run, step_id__in=JudgeVerdict.objects.filter(run=run).values("step_id")
        ).delete()
        _recount(run)
        run.save(update_fields=["done", "invalid", "failed", "prompt_tokens", "completion_tokens"])
        if run.done + run.failed < run.total:
            return None
        if run.failed:
            _run_end(
                run,
                JudgeRun.Status.FAILED,
                f"{run.failed} of {run.total} steps got no verdict; resume asks them again",
            )
        else:
            _run_end(run, JudgeRun.Status.DONE)
    return run


def run_fail(*, run_id: int, message: str) -> None:
    with transaction.atomic():
        run = _locked(run_id)
        if run.status in JudgeRun.ENDED:
            return
        _run_end(run, JudgeRun.Status.FAILED, message)


def run_reconcile(*, run_id: int, stale_after_s: float = DEFAULT_STALE_AFTER_S) -> int:
    """Re-enqueue the missing steps of a run that has gone silent; returns chunks enqueued.

    Silent = running (or queued) with no heartbeat for ``stale_after_s``: its worker was
    killed, or its message was lost (kombu's filesystem transport has no redelivery; Redis
    redelivers an unacked message only after the visibility timeout, an hour here). The
    generation is bumped first, so an old chunk that is merely slow stops at its next poll
    and a late redelivery of it exits at once; verdict uniqueness covers the overlap.
    """
    with transaction.atomic():
        run = JudgeRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.status not in JudgeRun.ACTIVE or run.mode != JudgeRun.Mode.WORKERS:
            return 0
        now = timezone.now()
        last = run.heartbeat_at or run.created_at
        if (now - last).total_seconds() < stale_after_s:
            return 0
        run.generation += 1
        run.heartbeat_at = now
        if run.status == JudgeRun.Status.QUEUED:
            run.status = JudgeRun.Status.RUNNING
            run.started_at = run.started_at or now
            run.running_since = now
        run.save(
            update_fields=["generation", "heartbeat_at", "status", "started_at", "running_since"]
        )
    _publish_status(run)
    logger.warning(
        "judge run %s was silent for %.0fs: re-enqueueing its missing steps",
        run_id,
        (now - last).total_seconds(),
    )
    return run_enqueue_missing(run_id=run_id)


def runs_reconcile(*, stale_after_s: float = DEFAULT_STALE_AFTER_S) -> int:
    ids = JudgeRun.objects.filter(
        status__in=JudgeRun.ACTIVE, mode=JudgeRun.Mode.WORKERS
    ).values_list("pk", flat=True)
    return sum(run_reconcile(run_id=i, stale_after_s=stale_after_s) for i in list(ids))


# -- writing verdicts --------------------------------------------------------------------------


def _insert_ignore(
    model: type[models.Model], objs: list[models.Model], returning: list[str]
) -> list[tuple]:
    """``INSERT … ON CONFLICT (run_id, step_id) DO NOTHING RETURNING …``: the rows inserted.

    ``bulk_create(ignore_conflicts=True)`` cannot say which rows were new, and the counters
    must grow by exactly those. Both PostgreSQL and SQLite (3.35+) speak this statement.
    """
    if not objs:
        return []
    qn = connection.ops.quote_name
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    head = f"INSERT INTO {qn(model._meta.db_table)} ({', '.join(qn(f.column) for f in fields)}) "
    tail = (
        f" ON CONFLICT ({qn('run_id')}, {qn('step_id')}) DO NOTHING "
        f"RETURNING {', '.join(qn(c) for c in returning)}"
    )
    if connection.vendor == "postgresql":
        # One array parameter per column (unnest): the driver adapts 14 arrays instead of
        # 14 values per row, which cut the writer's CPU (and the GIL it takes from the HTTP
        # loop in the same process) by about half in bench/judge_bench.py.
        columns = [
            [f.get_db_prep_save(f.pre_save(obj, True), connection) for obj in objs] for f in fields
        ]
        casts = ", ".join(f"%s::{f.db_type(connection)}[]" for f in fields)
        with connection.cursor() as cursor:
            cursor.execute(f"{head}SELECT * FROM unnest({casts}){tail}", columns)
            return cursor.fetchall()
    placeholders = "(" + ", ".join(["%s"] * len(fields)) + ")"
    out: list[tuple] = []
    for start in range(0, len(objs), FLUSH_ROWS):
        part = objs[start : start + FLUSH_ROWS]
        params = [
            f.get_db_prep_save(f.pre_save(obj, True), connection) for obj in part for f in fields
        ]
        with connection.cursor() as cursor:
            cursor.execute(f"{head}VALUES {', '.join([placeholders] * len(part))}{tail}", params)
            out.extend(cursor.fetchall())
    return out


def verdicts_store(*, run_id: int, verdicts: list[JudgeVerdict]) -> int:
    """Insert verdicts that do not exist yet and grow the counters by those; returns that count."""
    if not verdicts:
        return 0
    with transaction.atomic():
        rows = _insert_ignore(
            JudgeVerdict, verdicts, ["verdict", "prompt_tokens", "completion_tokens"]
        )
        if rows:
            JudgeRun.objects.filter(pk=run_id).update(
                done=F("done") + len(rows),
                invalid=F("invalid") + sum(1 for r in rows if r[0] == "invalid"),
                prompt_tokens=F("prompt_tokens") + sum(r[1] for r in rows),
                completion_tokens=F("completion_tokens") + sum(r[2] for r in rows),
                heartbeat_at=timezone.now(),
            )
    return len(rows)


def failures_store(*, run_id: int, failures: list[JudgeFailure]) -> int:
    if not failures:
        return 0
    with transaction.atomic():
        # A step that meanwhile got a verdict (a duplicated chunk) is not a failure.
        have = set(
            JudgeVerdict.objects.filter(
                run_id=run_id, step_id__in=[f.step_id for f in failures]
            ).values_list("step_id", flat=True)
        )
        rows = _insert_ignore(
            JudgeFailure, [f for f in failures if f.step_id not in have], ["step_id"]
        )
        if rows:
            JudgeRun.objects.filter(pk=run_id).update(failed=F("failed") + len(rows))
    return len(rows)


def verdict_from_result(
    *, run_id: int, rendered: RenderedStep, result: JudgeResult
) -> JudgeVerdict:
    record = dict(rendered.prompt_record)
    record["json_mode"] = result.json_mode
    if result.samples and len(result.samples) > 1:
        record["sample_verdicts"] = list(result.samples)
    if result.parse_methods:
        record["parse_methods"] = list(result.parse_methods)
    if result.error:
        record["error"] = result.error
    return JudgeVerdict(
        run_id=run_id,
        step_id=rendered.step_id,
        verdict=result.verdict or JudgeVerdict.Verdict.INVALID,
        category=(result.category or "")[:120],
        rationale=result.rationale,
        raw_response=result.raw_response,
        attempts=result.attempts,
        latency_ms=result.latency_ms,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        prompt_hash=rendered.prompt_hash,
        prompt_record=record,
    )


class _VerdictWriter:
    """Buffers results from the client and writes them in batches (rows and age bounded)."""

    def __init__(self, run_id: int, rendered: dict[str, RenderedStep]) -> None:
        self.run_id = run_id
        self.rendered = rendered
        self.pending: list[JudgeVerdict] = []
        self.failures: list[tuple[RenderedStep, JudgeResult]] = []
        self.first_pending_at = 0.0
        self.inserted = 0

    def add(self, result: JudgeResult) -> None:
        item = self.rendered[result.key]
        if not result.ok:
            self.failures.append((item, result))
            return
        if not self.pending:
            self.first_pending_at = time.monotonic()
        self.pending.append(verdict_from_result(run_id=self.run_id, rendered=item, result=result))
        if len(self.pending) >= FLUSH_ROWS:
            self.flush()

    def flush_if_old(self) -> None:
        if self.pending and time.monotonic() - self.first_pending_at >= FLUSH_AGE_S:
            self.flush()

    def flush(self) -> None:
        batch, self.pending = self.pending, []
        self.inserted += verdicts_store(run_id=self.run_id, verdicts=batch)


# -- lanes: the judge's concurrency shared by the chunks running at once -------------------


class _Lane:
    def __init__(self, judge: Judge) -> None:
        stamp = judge.created_at.timestamp() if judge.created_at else 0
        self.prefix = f"judges:lane:{judge.pk}:{stamp}:"
        self.count = max(1, judge.parallel_chunks)
        self.token = uuid.uuid4().hex
        self.key: str | None = None

    def try_acquire(self) -> bool:
        for i in range(self.count):
            key = f"{self.prefix}{i}"
            if cache.add(key, self.token, LANE_TTL_S):
                self.key = key
                return True
        return False

    def refresh(self) -> None:
        if self.key and cache.get(self.key) == self.token:
            cache.touch(self.key, LANE_TTL_S)

    def release(self) -> None:
        if self.key and cache.get(self.key) == self.token:
            cache.delete(self.key)
        self.key = None


@dataclass(frozen=True)
class ChunkOutcome:
    skipped: bool = False  # the run was not running, or the chunk is of an older generation
    asked: int = 0
    stored: int = 0
    failed: int = 0
    transient: int = 0  # retryable failures left for a retry of the chunk


def _still_mine(run: JudgeRun, generation: int) -> bool:
    state = run_status_cached(run.pk, run.seed)
    return state is not None and state[0] == JudgeRun.Status.RUNNING and state[1] == generation


def judge_chunk_run(
    *,
    run_id: int,
    step_ids: list[int],
    generation: int | None = None,
    final_attempt: bool = True,
) -> ChunkOutcome:
    """Judge the steps of ``step_ids`` that have no verdict yet. Safe to run any number of times.

    ``final_attempt=False`` (a Celery try with retries left) raises ``TransientJudgeError``
    when steps are left without an answer for reasons that may pass; on the final attempt
    they are recorded as failures so the run can end.
    """
    run = JudgeRun.objects.select_related("judge", "prompt", "audit").filter(pk=run_id).first()
    if run is None:
        return ChunkOutcome(skipped=True)  # a message that outlived its run
    generation = run.generation if generation is None else generation
    if run.generation != generation:
        return ChunkOutcome(skipped=True)
    _mark_running(run, generation)
    if not _still_mine(run, generation):
        return ChunkOutcome(skipped=True)
    todo = (
        run_scope_steps(run)
        .filter(pk__in=step_ids)
        .exclude(pk__in=JudgeVerdict.objects.filter(run=run).values("step_id"))
        .exclude(pk__in=JudgeFailure.objects.filter(run=run).values("step_id"))
        .values_list("pk", flat=True)
    )
    wanted = set(todo)
    pending = [i for i in step_ids if i in wanted]
    if not pending:
        run_finish_if_complete(run_id=run_id)
        return ChunkOutcome()
    judge = run.judge
    lane = _Lane(judge)
    last_beat = 0.0

    def beat() -> None:
        nonlocal last_beat
        now = time.monotonic()
        if now - last_beat >= HEARTBEAT_S:
            last_beat = now
            lane.refresh()
            JudgeRun.objects.filter(pk=run_id).update(heartbeat_at=timezone.now())

    t_start = time.perf_counter()
    while not lane.try_acquire():
        if not _still_mine(run, generation):
            return ChunkOutcome(skipped=True)
        beat()
        time.sleep(0.2)
    try:
        rendered = requests_for_steps(
            judge=judge, prompt=run.prompt, audit=run.audit, step_ids=pending
        )
        by_key = {r.request.key: r for r in rendered}
        writer = _VerdictWriter(run_id, by_key)

        def should_stop() -> bool:
            writer.flush_if_old()
            beat()
            return not _still_mine(run, generation)

        per_lane = math.ceil(judge.max_concurrency / max(1, judge.parallel_chunks))
        t_http = time.perf_counter()
        try:
            results = judge_many_sync(
                [r.request for r in rendered],
                settings=client_settings(judge, concurrency=per_lane),
                on_result=writer.add,
                rate_limiter=_rate_limiter(judge),
                should_stop=should_stop,
            )
        except JudgeConfigError as exc:
            writer.flush()
            run_fail(run_id=run_id, message=f"judge configuration: {exc}")
            return ChunkOutcome(asked=len(rendered), stored=writer.inserted)
        t_done = time.perf_counter()
        writer.flush()
    finally:
        lane.release()
    del results  # every result went through writer.add (stopped ones are not reported)
    permanent = [(item, r) for item, r in writer.failures if not r.retryable]
    transient = [(item, r) for item, r in writer.failures if r.retryable]
    if final_attempt:
        permanent += transient
        transient = []
    n_failed = failures_store(
        run_id=run_id,
        failures=[
            JudgeFailure(
                run_id=run_id,
                step_id=item.step_id,
                kind=r.failure or "error",
                error=(r.error or "")[:2000],
                attempts=r.attempts,
            )
            for item, r in permanent
        ],
    )
    outcome = ChunkOutcome(
        asked=len(rendered), stored=writer.inserted, failed=n_failed, transient=len(transient)
    )
    run_finish_if_complete(run_id=run_id)
    logger.info(
        "judge run %s chunk: %d asked, %d stored; set-up %.3fs, requests %.3fs, finish %.3fs",
        run_id,
        len(rendered),
        writer.inserted,
        t_http - t_start,
        t_done - t_http,
        time.perf_counter() - t_done,
    )
    if transient and _still_mine(run, generation):
        first = transient[0][1].error
        raise TransientJudgeError(f"{len(transient)} steps without an answer yet; last: {first}")
    return outcome


def _rate_limiter(judge: Judge):
    limits = RateLimits(requests_per_minute=judge.rpm_limit, tokens_per_minute=judge.tpm_limit)
    return limiter_for(redis_url=settings.REDIS_URL or None, judge_id=str(judge.pk), limits=limits)


# -- reference runs, imported verdicts, provider batch API -----------------------------------

REFERENCE_JUDGE_NAME = "reference"


@transaction.atomic
def reference_run_create(
    *, audit: Audit, segmentation: str = "", judge_name: str = REFERENCE_JUDGE_NAME, user=None
) -> JudgeRun:
    """A finished run of the reference judge holding every imported ``Step.reference_verdict``."""
    judge, _ = Judge.objects.get_or_create(
        name=judge_name,
        defaults={"is_reference": True, "description": "Imported reference verdicts (no HTTP)."},
    )
    if not judge.is_reference:
        raise ApplicationError(f"judge {judge_name} is not a reference judge", code="not_reference")
    steps = _scope_steps(audit=audit, segmentation=segmentation).exclude(
        reference_verdict__isnull=True
    )
    run = _run_new(
        audit=audit,
        judge=judge,
        mode=JudgeRun.Mode.REFERENCE,
        segmentation=segmentation,
        user=user,
        status=JudgeRun.Status.RUNNING,
    )
    run.total = steps.count()
    run.started_at = run.running_since = timezone.now()
    run.save(update_fields=["total", "started_at", "running_since"])
    verdicts = [
        JudgeVerdict(
            run_id=run.pk,
            step_id=step_id,
            verdict=value,
            prompt_record={"source": "Step.reference_verdict"},
        )
        for step_id, value in steps.values_list("pk", "reference_verdict").iterator()
    ]
    verdicts_store(run_id=run.pk, verdicts=verdicts)
    run.refresh_from_db()
    _run_end(run, JudgeRun.Status.DONE)
    return run


@dataclass(frozen=True)
class LineProblem:
    line: int
    field: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "message": self.message}


def _json_lines(lines: Iterable[str | bytes]) -> Iterator[tuple[int, Any, LineProblem | None]]:
    for number, raw in enumerate(lines, 1):
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        if not text.strip():
            continue
        try:
            yield number, json.loads(text), None
        except json.JSONDecodeError as exc:
            yield number, None, LineProblem(number, "(line)", f"not JSON: {exc.msg}")


_MAX_PROBLEMS = 50


def verdicts_import(
    *,
    audit: Audit,
    judge_name: str,
    lines: Iterable[str | bytes],
    segmentation: str = "",
    user=None,
) -> JudgeRun:
    """A finished run from JSONL verdicts produced elsewhere (one object per line)::

        {"step_id": "<step public id>", "verdict": "correct|error|abstain|invalid",
         "error_category": null, "rationale": "", "raw_response": "", "prompt_tokens": 0,
         "completion_tokens": 0}

    The whole file is checked first; any problem rejects it with line numbers (``ImportRejected``)
    and nothing is written. The judge is created (endpoint-less) if it does not exist.
    """
    problems: list[LineProblem] = []
    records: list[tuple[int, dict[str, Any]]] = []
    seen: dict[str, int] = {}
    for number, obj, problem in _json_lines(lines):
        if problem:
            problems.append(problem)
            continue
        if not isinstance(obj, dict):
            problems.append(LineProblem(number, "(line)", "must be a JSON object"))
            continue
        unknown = set(obj) - {
            "step_id",
            "verdict",
            "error_category",
            "rationale",
            "raw_response",
            "prompt_tokens",
            "completion_tokens",
        }
        if unknown:
            problems.append(LineProblem(number, sorted(unknown)[0], "unknown field"))
        step = obj.get("step_id")
        if not isinstance(step, str) or not step:
            problems.append(LineProblem(number, "step_id", "required: the step's public id"))
        elif step in seen:
            problems.append(LineProblem(number, "step_id", f"duplicate of line {seen[step]}"))
        else:
            seen[step] = number
        if obj.get("verdict") not in JudgeVerdict.Verdict.values:
            problems.append(
                LineProblem(
                    number, "verdict", f"must be one of {', '.join(JudgeVerdict.Verdict.values)}"
                )
            )
        for key in ("error_category", "rationale", "raw_response"):
            if obj.get(key) is not None and not isinstance(obj[key], str):
                problems.append(LineProblem(number, key, "must be a string or null"))
        for key in ("prompt_tokens", "completion_tokens"):
            value = obj.get(key, 0)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                problems.append(LineProblem(number, key, "must be a non-negative integer"))
        records.append((number, obj))
    steps = _scope_steps(audit=audit, segmentation=segmentation)
    ids = dict(steps.filter(public_id__in=list(seen)).values_list("public_id", "pk"))
    for public_id, number in seen.items():
        if public_id not in ids:
            problems.append(
                LineProblem(
                    number,
                    "step_id",
                    "no such step in this audit"
                    + (f" / segmentation {segmentation}" if segmentation else ""),
                )
            )
    if not records and not problems:
        problems.append(LineProblem(0, "(file)", "no verdicts in the file"))
    if problems:
        problems.sort(key=lambda p: p.line)
        raise ImportRejected(problems[:_MAX_PROBLEMS])
    with transaction.atomic():
        judge = Judge.objects.filter(name=judge_name).first() or Judge.objects.create(
            name=judge_name, description="Verdicts imported from a file."
        )
        run = _run_new(
            audit=audit,
            judge=judge,
            mode=JudgeRun.Mode.IMPORTED,
            segmentation=segmentation,
            user=user,
            status=JudgeRun.Status.RUNNING,
        )
        run.total = len(records)
        run.started_at = run.running_since = timezone.now()
        run.save(update_fields=["total", "started_at", "running_since"])
        verdicts_store(
            run_id=run.pk,
            verdicts=[
                JudgeVerdict(
                    run_id=run.pk,
                    step_id=ids[obj["step_id"]],
                    verdict=obj["verdict"],
                    category=(obj.get("error_category") or "")[:120],
                    rationale=obj.get("rationale") or "",
                    raw_response=obj.get("raw_response") or "",
                    prompt_tokens=obj.get("prompt_tokens", 0),
                    completion_tokens=obj.get("completion_tokens", 0),
                    prompt_record={"source": "import", "line": number},
                )
                for number, obj in records
            ],
        )
        run.refresh_from_db()
        _run_end(run, JudgeRun.Status.DONE)
    return run


@transaction.atomic
def batch_run_create(
    *, audit: Audit, judge: Judge, segmentation: str = "", batch_name: str = "", user=None
) -> JudgeRun:
    """A run whose requests go through a provider's batch API (export → upload → import)."""
    if judge.is_reference:
        raise ApplicationError("a reference judge makes no requests", code="reference_judge")
    if judge.prompt_id is None:
        raise ApplicationError(f"judge {judge.name} has no prompt", code="no_prompt")
    run = _run_new(
        audit=audit,
        judge=judge,
        mode=JudgeRun.Mode.BATCH_API,
        segmentation=segmentation,
        batch_name=batch_name,
        user=user,
        status=JudgeRun.Status.RUNNING,
    )
    run.started_at = run.running_since = timezone.now()
    run.save(update_fields=["started_at", "running_since"])
    return run


def batch_requests_export(*, run: JudgeRun, url: str = "/v1/chat/completions") -> Iterator[dict]:
    """One OpenAI-Batch-API request per missing step; ``custom_id`` is the step's public id."""
    if run.mode != JudgeRun.Mode.BATCH_API:
        raise ApplicationError("only a batch-API run exports requests", code="not_batch_run")
    ids = run_missing_step_ids(run)
    for start in range(0, len(ids), 1000):
        for rendered in requests_for_steps(
            judge=run.judge, prompt=run.prompt, audit=run.audit, step_ids=ids[start : start + 1000]
        ):
            yield {
                "custom_id": rendered.request.key,
                "method": "POST",
                "url": url,
                "body": batch_request_body(run.judge, rendered),
            }


def batch_results_import(*, run: JudgeRun, lines: Iterable[str | bytes]) -> JudgeRun:
    """Read a provider's batch output (``{"custom_id", "response": {"status_code", "body"},
    "error"}`` per line) into verdicts; an errored line becomes a recorded failure."""
    if run.mode != JudgeRun.Mode.BATCH_API:
        raise ApplicationError("only a batch-API run imports results", code="not_batch_run")
    problems: list[LineProblem] = []
    parsed: list[tuple[int, str, dict | None, str]] = []  # line, custom_id, body, error
    seen: dict[str, int] = {}
    for number, obj, problem in _json_lines(lines):
        if problem:
            problems.append(problem)
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("custom_id"), str):
            problems.append(LineProblem(number, "custom_id", "required (a string)"))
            continue
        cid = obj["custom_id"]
        if cid in seen:
            problems.append(LineProblem(number, "custom_id", f"duplicate of line {seen[cid]}"))
            continue
        seen[cid] = number
        response = obj.get("response") or {}
        error = obj.get("error")
        if error or not isinstance(response, dict) or response.get("status_code") != 200:
            message = json.dumps(error) if error else f"status {response.get('status_code')}"
            parsed.append((number, cid, None, message[:2000]))
            continue
        body = response.get("body")
        if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
            problems.append(LineProblem(number, "response.body", "not a chat completion"))
            continue
        parsed.append((number, cid, body, ""))
    ids = dict(run_scope_steps(run).filter(public_id__in=list(seen)).values_list("public_id", "pk"))
    for cid, number in seen.items():
        if cid not in ids:
            problems.append(LineProblem(number, "custom_id", "no such step in this run"))
    if problems:
        problems.sort(key=lambda p: p.line)
        raise ImportRejected(problems[:_MAX_PROBLEMS])
    rendered = {
        r.step_id: r
        for r in requests_for_steps(
            judge=run.judge, prompt=run.prompt, audit=run.audit, step_ids=list(ids.values())
        )
    }
    categories = next(iter(rendered.values())).request.categories if rendered else ()
    verdicts: list[JudgeVerdict] = []
    failures: list[JudgeFailure] = []
    for _number, cid, body, error in parsed:
        step_id = ids[cid]
        if body is None:
            failures.append(
                JudgeFailure(
                    run_id=run.pk, step_id=step_id, kind="batch_error", error=error, attempts=1
                )
            )
            continue
        contents = [
            str((c.get("message") or {}).get("content") or "")
            for c in body["choices"]
            if isinstance(c, dict)
        ]
        samples = []
        for content in contents:
            try:
                samples.append(parse_verdict(content, categories=categories))
            except ParseError:
                samples.append(None)
        verdict, category, rationale = aggregate_samples(samples)
        usage = body.get("usage") or {}
        result = JudgeResult(
            key=cid,
            ok=True,
            verdict=verdict,
            category=category,
            rationale=rationale,
            raw_response="\n\n".join(contents),
            attempts=1,
            latency_ms=0,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            samples=tuple(s.verdict if s else "invalid" for s in samples),
            json_mode=run.judge.use_json_mode,
            parse_methods=tuple(s.method for s in samples if s),
        )
        verdicts.append(
            verdict_from_result(run_id=run.pk, rendered=rendered[step_id], result=result)
        )
    with transaction.atomic():
        verdicts_store(run_id=run.pk, verdicts=verdicts)
        failures_store(run_id=run.pk, failures=failures)
    run_finish_if_complete(run_id=run.pk)
    run.refresh_from_db()
    return run


def wait_poll(
    *,
    run_id: int,
    every_s: float = 1.0,
    on_progress: Callable[[JudgeRun], None] | None = None,
    timeout_s: float | None = None,
    stale_after_s: float = DEFAULT_STALE_AFTER_S,
) -> JudgeRun:
    """Poll a run until it ends (for ``run_judge --wait``); reconciles it when it goes silent."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        run = JudgeRun.objects.select_related("judge", "audit").get(pk=run_id)
        if on_progress:
            on_progress(run)
        if run.status in JudgeRun.ENDED:
            return run
        if deadline is not None and time.monotonic() > deadline:
            return run
        run_reconcile(run_id=run_id, stale_after_s=stale_after_s)
        time.sleep(every_s)
