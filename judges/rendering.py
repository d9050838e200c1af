"""From steps in the database to blinded judge requests — the judge's one door to step data.

Everything a judge sees passes through ``requests_for_steps``: the question stem and options,
the preceding steps of the same trace (when the context mode shows them), the step, the audit's
error categories and, only when the judge asks for it, the trace's final answer. The queries
below never select the condition, the model, the trace's external id or any database id into
the prompt; the request key is the step's random ``public_id``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from annotations.models import Audit, Step
from judges.clients import ClientSettings, JudgeRequest
from judges.clients.egress import EgressPolicy
from judges.clients.openai_compat import structured_fields
from judges.models import Judge, JudgePrompt
from judges.prompts import (
    FIRST_ERROR,
    FIRST_ERROR_PROMPT_NAME,
    FIRST_ERROR_TEMPLATE,
    PromptTemplate,
    prompt_hash,
    render_first_error_messages,
    render_messages,
)


@dataclass(frozen=True)
class RenderedStep:
    step_id: int
    request: JudgeRequest
    prompt_hash: str
    prompt_record: dict[str, Any]
    # First-error mode: the trace's steps in the order shown (``step_id`` is the first); the
    # answer becomes verdicts on these. Empty in step mode.
    unit_step_ids: tuple[int, ...] = ()


def prompt_template(prompt: JudgePrompt) -> PromptTemplate:
    return PromptTemplate.from_texts(system=prompt.system_template, user=prompt.user_template)


def effective_context_mode(judge: Judge, audit: Audit) -> str:
    if judge.context_mode == Judge.ContextMode.AUDIT:
        return str(audit.context_mode)
    return str(judge.context_mode)


def audit_categories(audit: Audit) -> dict[str, str]:
    """The audit's error categories as name → description (descriptions may be empty)."""
    out: dict[str, str] = {}
    for item in audit.error_categories or []:
        if isinstance(item, Mapping):
            name = str(item.get("name") or "").strip()
            if name:
                out[name] = str(item.get("description") or "")
        elif str(item).strip():
            out[str(item).strip()] = ""
    return out


def egress_policy() -> EgressPolicy:
    """The deployment's judge hosts and key names (settings; docs/deploy.md, "Judges")."""
    return EgressPolicy.from_settings(
        settings.STEPAUDIT_JUDGE_ALLOWED_HOSTS, key_envs=settings.STEPAUDIT_JUDGE_KEY_ENVS
    )


def client_settings(judge: Judge, *, concurrency: int | None = None) -> ClientSettings:
    return ClientSettings(
        base_url=judge.base_url,
        model=judge.model,
        api_key_env=judge.api_key_env or None,
        egress=egress_policy(),  # checked again at request time, whatever was saved
        timeout_s=judge.timeout_s,
        concurrency=max(1, concurrency or judge.max_concurrency),
        max_retries=judge.max_retries,
        max_parse_retries=judge.max_parse_retries,
        use_json_mode=judge.use_json_mode,
        structured_output=judge.structured_output,
        max_tokens_field=judge.max_tokens_field,
        logprobs=judge.logprobs,
        top_logprobs=judge.top_logprobs,
        hedge_after_latencies=ClientSettings.hedge_after_latencies if judge.hedge_hung_calls else 0,
        # A back-off below the timeout: a hang costs one timeout, not a minute of back-off.
        backoff_base_s=min(0.5, judge.timeout_s / 4),
        backoff_max_s=max(1.0, min(30.0, judge.timeout_s * 2)),
    )


def requests_for_steps(
    *, judge: Judge, prompt: JudgePrompt, audit: Audit, step_ids: Iterable[int]
) -> list[RenderedStep]:
    """Blinded requests for ``step_ids`` in the given order (ids not in the audit are skipped)."""
    ids = list(step_ids)
    if not ids:
        return []
    text_field = "blinded_text" if judge.style_blind else "text"
    # Style-blind: the final answer blinded by the audit's normaliser, as annotators see it.
    answer_field = "trace__blinded_final_answer" if judge.style_blind else "trace__final_answer"
    rows = {
        row["id"]: row
        for row in Step.objects.filter(audit=audit, pk__in=ids).values(
            "id",
            "public_id",
            "trace_id",
            "segmentation",
            "index",
            text_field,
            answer_field,
            "trace__question__stem",
            "trace__question__options",
        )
    }
    mode = effective_context_mode(judge, audit)
    context = _preceding_texts(rows.values(), text_field) if mode == "preceding" else {}
    template = prompt_template(prompt)
    categories = audit_categories(audit)
    category_names = tuple(categories)
    out: list[RenderedStep] = []
    for step_id in ids:
        row = rows.get(step_id)
        if row is None:
            continue
        context_steps = (
            context.get((row["trace_id"], row["segmentation"]), [])[: row["index"]]
            if mode == "preceding"
            else None
        )
        final_answer = (row[answer_field] or "") if judge.show_final_answer else None
        messages = render_messages(
            template,
            question=row["trace__question__stem"],
            options=row["trace__question__options"],
            context_steps=context_steps,
            step=row[text_field],
            categories=categories,
            show_final_answer=judge.show_final_answer,
            final_answer=final_answer,
        )
        out.append(
            RenderedStep(
                step_id=step_id,
                request=JudgeRequest(
                    key=row["public_id"],
                    messages=messages,
                    max_tokens=judge.max_tokens,
                    temperature=judge.temperature,
                    n_samples=judge.samples_per_step,
                    response_format_json=judge.use_json_mode,
                    categories=category_names,
                ),
                prompt_hash=prompt_hash(messages),
                prompt_record={
                    "prompt": str(prompt),
                    "context_mode": mode,
                    "context_steps": len(context_steps) if context_steps is not None else 0,
                    "final_answer_shown": bool(judge.show_final_answer),
                    "style_blind": bool(judge.style_blind),
                    "samples": judge.samples_per_step,
                },
            )
        )
    return out


def requests_for_traces(
    *,
    judge: Judge,
    audit: Audit,
    step_ids: Iterable[int],
    max_step_id: int | None = None,
    prompt: JudgePrompt | None = None,
) -> list[RenderedStep]:
    """First-error requests: for each step id (the first step of a trace under its
    segmentation), the whole trace — every step of that trace and segmentation up to
    ``max_step_id`` (the run's scope), in order, blinded as in ``requests_for_steps``.

    A whole trace shows its length and its style to the judge; the style-blind text is the
    normalised one clinicians see. The request key is the first step's public id.

    ``prompt``: the run's first-error prompt; the shipped one (``FIRST_ERROR_*``) when it is
    None or a step prompt (runs made before first-error prompts could be chosen).
    """
    ids = list(step_ids)
    if not ids:
        return []
    text_field = "blinded_text" if judge.style_blind else "text"
    answer_field = "trace__blinded_final_answer" if judge.style_blind else "trace__final_answer"
    heads = {
        row["id"]: row
        for row in Step.objects.filter(audit=audit, pk__in=ids).values(
            "id",
            "public_id",
            "trace_id",
            "segmentation",
            answer_field,
            "trace__question__stem",
            "trace__question__options",
        )
    }
    wanted: dict[str, set[int]] = defaultdict(set)
    for row in heads.values():
        wanted[row["segmentation"]].add(row["trace_id"])
    units: dict[tuple[int, str], list[tuple[int, str]]] = defaultdict(list)
    for segmentation, trace_ids in wanted.items():
        query = Step.objects.filter(audit=audit, segmentation=segmentation, trace_id__in=trace_ids)
        if max_step_id is not None:
            query = query.filter(pk__lte=max_step_id)
        for trace_id, pk, text in query.order_by("trace_id", "index", "pk").values_list(
            "trace_id", "pk", text_field
        ):
            units[(trace_id, segmentation)].append((pk, text))
    categories = audit_categories(audit)
    template = prompt_template(prompt) if prompt is not None else FIRST_ERROR_TEMPLATE
    if template.label_mode != FIRST_ERROR:
        template, prompt = FIRST_ERROR_TEMPLATE, None
    prompt_name = str(prompt) if prompt is not None else FIRST_ERROR_PROMPT_NAME
    out: list[RenderedStep] = []
    for step_id in ids:
        row = heads.get(step_id)
        if row is None:
            continue
        unit = units.get((row["trace_id"], row["segmentation"]), [])
        if not unit or unit[0][0] != step_id:
            continue  # not the first step of its trace: nothing to ask for it
        final_answer = (row[answer_field] or "") if judge.show_final_answer else None
        messages = render_first_error_messages(
            template,
            question=row["trace__question__stem"],
            options=row["trace__question__options"],
            steps=[text for _, text in unit],
            categories=categories,
            show_final_answer=judge.show_final_answer,
            final_answer=final_answer,
        )
        out.append(
            RenderedStep(
                step_id=step_id,
                request=JudgeRequest(
                    key=row["public_id"],
                    messages=messages,
                    max_tokens=judge.max_tokens,
                    temperature=judge.temperature,
                    n_samples=judge.samples_per_step,
                    response_format_json=judge.use_json_mode,
                    categories=tuple(categories),
                    answer="first_error",
                    n_steps=len(unit),
                ),
                prompt_hash=prompt_hash(messages),
                prompt_record={
                    "prompt": prompt_name,
                    "label_mode": "first_error",
                    "trace_steps": len(unit),
                    "final_answer_shown": bool(judge.show_final_answer),
                    "style_blind": bool(judge.style_blind),
                    "samples": judge.samples_per_step,
                },
                unit_step_ids=tuple(pk for pk, _ in unit),
            )
        )
    return out


def _preceding_texts(
    rows: Iterable[Mapping[str, Any]], text_field: str
) -> dict[tuple[int, str], list[str]]:
    """Every step text of the traces (and segmentations) involved, in step order.

    Indexed by position, so ``texts[:index]`` are the steps before ``index`` (indexes are dense
    from 0 within a trace and segmentation — the import writes them so).
    """
    wanted: dict[str, set[int]] = defaultdict(set)
    for row in rows:
        wanted[row["segmentation"]].add(row["trace_id"])
    texts: dict[tuple[int, str], list[str]] = defaultdict(list)
    for segmentation, trace_ids in wanted.items():
        query = (
            Step.objects.filter(segmentation=segmentation, trace_id__in=trace_ids)
            .order_by("trace_id", "index")
            .values_list("trace_id", "index", text_field)
        )
        for trace_id, index, text in query:
            bucket = texts[(trace_id, segmentation)]
            if index != len(bucket):  # a gap: keep positions right, never shift a text
                bucket.extend([""] * (index - len(bucket)))
            bucket.append(text)
    return texts


def batch_request_body(judge: Judge, rendered: RenderedStep) -> dict[str, Any]:
    """The chat-completions body for a provider's batch API (the same prompt, the same hash)."""
    body: dict[str, Any] = {
        "model": judge.model,
        "messages": rendered.request.messages,
        judge.max_tokens_field: judge.max_tokens,
        "temperature": judge.temperature,
    }
    if judge.samples_per_step > 1:
        body["n"] = judge.samples_per_step
    if judge.logprobs:
        body["logprobs"] = True
        body["top_logprobs"] = judge.top_logprobs
    body.update(structured_fields(judge.structured_output if judge.use_json_mode else "none"))
    return body
