"""Writing verdicts and failures: exactly one per (run, step), counters grown by what was new."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from django.db import connection, models, transaction
from django.db.models import F
from django.utils import timezone

from judges.clients import (
    JudgeResult,
)
from judges.models import JudgeFailure, JudgeRun, JudgeVerdict
from judges.rendering import RenderedStep
from judges.services.uncertainty import stated_error_probability

logger = logging.getLogger(__name__)

# Verdict rows per INSERT and the longest a verdict waits in memory before it is written.
FLUSH_ROWS = 100
FLUSH_AGE_S = 0.5

# What PostgreSQL refuses in text and jsonb: NUL, and lone surrogates (not encodable as UTF-8;
# JSON's "\ud800" decodes to one). A model's answer may hold either (issue 14: one NUL stalled
# a run forever), so they are written as the visible escape ``\u0000`` / ``\ud800``.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    r"""``text`` with the characters PostgreSQL refuses written as ``\uXXXX`` escapes.

    Examples
    --------
    >>> storable("a\x00b\ud800")
    'a\\u0000b\\ud800'
    """
    if not text:
        return text
    return _UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def storable_json(value: Any) -> Any:
    """``storable`` applied to every string (keys too) of a JSON-like value."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {storable(str(k)): storable_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable_json(v) for v in value]
    return value


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


def verdicts_store(
    *, run_id: int, verdicts: list[JudgeVerdict], skipped_after: dict[int, int] | None = None
) -> int:
    """Insert verdicts that do not exist yet and grow the counters by those; returns that count.

    ``skipped_after`` (first-error mode): first step id of a trace → how many of its steps
    come after its first error and get no verdict; when that first step's verdict is new, the
    run's ``total`` shrinks by them in the same transaction, so done + failed still reaches
    total and the run can end.
    """
    if not verdicts:
        return 0
    with transaction.atomic():
        rows = _insert_ignore(
            JudgeVerdict,
            verdicts,
            ["verdict", "prompt_tokens", "completion_tokens", "cached_tokens", "step_id"],
        )
        if rows:
            skipped = sum((skipped_after or {}).get(r[4], 0) for r in rows)
            JudgeRun.objects.filter(pk=run_id).update(
                total=F("total") - skipped,
                done=F("done") + len(rows),
                invalid=F("invalid") + sum(1 for r in rows if r[0] == "invalid"),
                prompt_tokens=F("prompt_tokens") + sum(r[1] for r in rows),
                completion_tokens=F("completion_tokens") + sum(r[2] for r in rows),
                cached_tokens=F("cached_tokens") + sum(r[3] for r in rows),
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
        fresh = [f for f in failures if f.step_id not in have]
        for failure in fresh:
            failure.error = storable(failure.error)
        rows = _insert_ignore(JudgeFailure, fresh, ["step_id"])
        if rows:
            JudgeRun.objects.filter(pk=run_id).update(failed=F("failed") + len(rows))
    return len(rows)


def first_error_verdicts(
    *, run_id: int, rendered: RenderedStep, result: JudgeResult
) -> tuple[list[JudgeVerdict], int]:
    """A first-error answer as step verdicts, and how many steps it leaves without one.

    "none" (``correct``): every step correct. Step k (``error``): steps before k correct, k
    an error with the category, later steps no verdict. Samples split evenly (``abstain``):
    every step abstain. The raw response, rationale, tokens and latency go on the trace's
    first step (so the run's sums count the request once); every row's prompt record says
    which answer made it.
    """
    steps = rendered.unit_step_ids
    k = result.first_error_step
    if result.verdict == "error" and k is not None:
        verdicts = ["correct"] * (k - 1) + ["error"]
    else:
        verdicts = [result.verdict or "abstain"] * len(steps)
    base = verdict_from_result(run_id=run_id, rendered=rendered, result=result)
    base.prompt_record = {
        **base.prompt_record,
        "first_error_step": k,
        "first_error_answer": "none" if result.verdict == "correct" else (k or result.verdict),
    }
    rows = []
    for i, (step_id, verdict) in enumerate(zip(steps, verdicts, strict=False)):
        first = i == 0
        rows.append(
            JudgeVerdict(
                run_id=run_id,
                step_id=step_id,
                verdict=verdict,
                category=base.category if verdict == "error" else "",
                rationale=base.rationale if first or verdict == "error" else "",
                raw_response=base.raw_response if first else "",
                attempts=base.attempts if first else 0,
                latency_ms=base.latency_ms if first else 0,
                prompt_tokens=base.prompt_tokens if first else 0,
                completion_tokens=base.completion_tokens if first else 0,
                cached_tokens=base.cached_tokens if first else 0,
                prompt_hash=base.prompt_hash,
                prompt_record={**base.prompt_record, "trace_position": i + 1},
            )
        )
    return rows, len(steps) - len(rows)


def error_probability_of(samples: Sequence[str] | None) -> float | None:
    """The share of a judge's samples that say "error", over those that said correct or
    error; None unless at least two did (one plain verdict states no probability)."""
    votes = [v for v in samples or () if v in ("correct", "error")]
    if len(votes) < 2:
        return None
    return sum(v == "error" for v in votes) / len(votes)


def verdict_from_result(
    *, run_id: int, rendered: RenderedStep, result: JudgeResult
) -> JudgeVerdict:
    record = dict(rendered.prompt_record)
    record["json_mode"] = result.json_mode
    if result.structured:
        record["structured_output"] = result.structured
    if result.reasoning:
        record["reasoning"] = True
    if result.elapsed_ms:
        record["elapsed_ms"] = result.elapsed_ms
    if result.samples and len(result.samples) > 1:
        record["sample_verdicts"] = list(result.samples)
    if result.parse_methods:
        record["parse_methods"] = list(result.parse_methods)
    if result.error:
        record["error"] = result.error
    if result.hedged:
        record["hedged"] = True
    if result.sample_error_probabilities:
        # The judge's token probability of "error" per sample, and their mean: the active
        # design's uncertainty (judges.services.uncertainty).
        probabilities = [
            None if p is None else round(p, 6) for p in result.sample_error_probabilities
        ]
        record["sample_error_probabilities"] = probabilities
        known = [p for p in probabilities if p is not None]
        if known:
            record["error_probability"] = round(sum(known) / len(known), 6)
    if result.logprobs_refused:
        record["logprobs"] = "unsupported"
        record["logprobs_refused"] = result.logprobs_refused
    if result.stated_confidence is not None:
        record["stated_confidence"] = round(result.stated_confidence, 6)
    return JudgeVerdict(
        run_id=run_id,
        step_id=rendered.step_id,
        verdict=result.verdict or JudgeVerdict.Verdict.INVALID,
        category=storable((result.category or "")[:120]),
        rationale=storable(result.rationale),
        raw_response=storable(result.raw_response),
        attempts=result.attempts,
        latency_ms=result.latency_ms,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        cached_tokens=result.cached_tokens,
        prompt_hash=rendered.prompt_hash,
        prompt_record=storable_json(record),
        error_probability=_stated_probability(record, result),
    )


def _stated_probability(record: dict, result: JudgeResult) -> float | None:
    """The column ``error_probability``: what the judge stated itself (its token probability
    of "error", else its stated confidence; ``stated_error_probability``), else the share of
    several samples."""
    stated = stated_error_probability(record, result.verdict or "")
    if stated is not None:
        return stated[1]
    return error_probability_of(result.samples)
