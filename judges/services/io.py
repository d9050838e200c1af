"""Reference runs, verdicts imported from a file, and the provider batch-API round trip."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from annotations.models import Audit
from auditapp.exceptions import ApplicationError, ImportRejected
from judges.clients import (
    JudgeResult,
    aggregate_samples,
    parse_verdict,
)
from judges.clients.logprobs import verdict_error_probability
from judges.clients.openai_compat import stated_confidence_in
from judges.clients.parsing import ParseError
from judges.models import Judge, JudgeFailure, JudgeRun, JudgeVerdict
from judges.rendering import batch_request_body, requests_for_steps
from judges.services.runs import (
    _run_end,
    _run_new,
    _scope_steps,
    label_mode_check,
    run_finish_if_complete,
    run_missing_step_ids,
    run_scope_steps,
)
from judges.services.store import failures_store, verdict_from_result, verdicts_store

logger = logging.getLogger(__name__)

# -- reference runs, imported verdicts, provider batch API -----------------------------------

REFERENCE_JUDGE_NAME = "reference"


@transaction.atomic
def reference_run_create(
    *, audit: Audit, segmentation: str = "", judge_name: str = REFERENCE_JUDGE_NAME, user=None
) -> JudgeRun:
    """A finished run of the reference judge holding every imported ``Step.reference_verdict``."""
    judge = Judge.objects.filter(name=judge_name).order_by("-version").first()
    if judge is None:
        judge = Judge.objects.create(
            name=judge_name,
            is_reference=True,
            description="Imported reference verdicts (no HTTP).",
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
         "completion_tokens": 0, "error_probability": null}

    ``error_probability`` (optional, in [0, 1]): the judge's probability that the step is an
    error (its share of samples saying so, or its token probability), used as the prediction
    of the report's prediction-powered estimates. The whole file is checked first; any problem
    rejects it with line numbers (``ImportRejected``) and nothing is written. The judge is
    created (endpoint-less) if it does not exist.
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
            "error_probability",
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
        probability = obj.get("error_probability")
        if probability is not None and (
            isinstance(probability, bool)
            or not isinstance(probability, int | float)
            or not 0.0 <= probability <= 1.0
        ):
            problems.append(LineProblem(number, "error_probability", "must be a number in [0, 1]"))
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
        judge = Judge.objects.filter(name=judge_name).order_by("-version").first()
        judge = judge or Judge.objects.create(
            name=judge_name, description="Verdicts imported from a file."
        )
        # Imported verdicts are step verdicts: never mixed into a first-error judge's runs.
        label_mode_check(audit=audit, judge=judge, label_mode="steps")
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
                    error_probability=obj.get("error_probability"),
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
    if judge.label_mode != "steps":
        raise ApplicationError(
            f"judge {judge.label} is in {judge.label_mode} mode; the batch API round trip asks "
            "about single steps only",
            code="label_mode",
            extra={"field": "label_mode"},
        )
    label_mode_check(audit=audit, judge=judge, label_mode="steps")
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
        choices = [c for c in body["choices"] if isinstance(c, dict)]
        contents = [str((c.get("message") or {}).get("content") or "") for c in choices]
        samples = []
        for content in contents:
            try:
                samples.append(parse_verdict(content, categories=categories))
            except ParseError:
                samples.append(None)
        verdict, category, rationale = aggregate_samples(samples)
        usage = body.get("usage") or {}
        extra: dict[str, Any] = {"stated_confidence": stated_confidence_in(samples, verdict)}
        if run.judge.logprobs:
            logprobs = [_choice_logprobs(c) for c in choices]
            if any(lp is not None for lp in logprobs):
                extra["sample_error_probabilities"] = tuple(
                    verdict_error_probability(lp, verdict=s.verdict) if s and lp else None
                    for s, lp in zip(samples, logprobs, strict=True)
                )
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
            **extra,
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


def _choice_logprobs(choice: dict) -> list | None:
    """A batch answer's ``logprobs.content`` (OpenAI's format), when it has one."""
    logprobs = choice.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    return content if isinstance(content, list) and content else None
