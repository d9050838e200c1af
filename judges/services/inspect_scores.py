"""Judge verdicts out as an Inspect-readable score table: one score per sample (trace).

Inspect AI scores a sample with a ``Score`` (``value``, ``answer``, ``explanation``,
``metadata``); the table gives each audited trace of a run one such score, keyed the way
Inspect keys samples (``eval_id``, ``sample_id``, ``epoch``), so it joins back to the eval log
the trace was imported from (and to ``inspect_ai.analysis.samples_df``). Traces that did not come
from an Inspect log are keyed by their trace id, epoch = sample index + 1.

value: ``"C"`` (Inspect's CORRECT) when the judge found no error among the steps it judged,
``"I"`` (INCORRECT) when it found one, ``"N"`` (NOANSWER) when every verdict abstained or was
invalid. The counts and the first wrong step are in ``metadata``.

This table names traces and conditions as imported: it is for whoever holds the Inspect logs
(an admin at the command line), not for blinded readers.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from typing import Any

from judges.models import JudgeRun, JudgeVerdict

SCORE_CORRECT, SCORE_INCORRECT, SCORE_NOANSWER = "C", "I", "N"
CSV_COLUMNS = (
    "eval_id",
    "sample_id",
    "epoch",
    "trace_id",
    "condition",
    "scorer",
    "value",
    "answer",
    "explanation",
    "steps",
    "errors",
    "abstentions",
    "invalid",
    "first_error_step",
    "error_share",
)


def inspect_score_rows(*, run: JudgeRun) -> list[dict[str, Any]]:
    """One row per trace the run judged: Inspect keys, the condition, and the score."""
    verdicts = (
        JudgeVerdict.objects.filter(run=run)
        .order_by("step__trace_id", "step__index")
        .values_list(
            "step__trace_id",
            "step__trace__external_id",
            "step__trace__sample_index",
            "step__trace__final_answer",
            "step__trace__metadata",
            "step__trace__condition__name",
            "step__index",
            "verdict",
        )
    )
    traces: dict[int, dict[str, Any]] = {}
    kinds: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    first_error: dict[int, int] = {}
    for pk, external_id, sample_index, answer, metadata, condition, index, verdict in verdicts:
        traces.setdefault(
            pk,
            {
                "external_id": external_id,
                "sample_index": sample_index,
                "answer": answer,
                "inspect": (metadata or {}).get("inspect") or {},
                "condition": condition,
            },
        )
        kinds[pk][verdict] += 1
        if verdict == JudgeVerdict.Verdict.ERROR and pk not in first_error:
            first_error[pk] = index
    scorer = f"stepaudit/{run.judge.name}"
    rows = []
    for pk, trace in traces.items():
        counts = kinds[pk]
        errors, correct = counts.get("error", 0), counts.get("correct", 0)
        judged = errors + correct
        value = SCORE_INCORRECT if errors else SCORE_CORRECT if correct else SCORE_NOANSWER
        steps = sum(counts.values())
        first = first_error.get(pk)
        explanation = (
            f"{errors} of {judged} judged steps wrong; first wrong step {first}"
            if errors
            else f"no wrong step among {judged} judged steps"
        )
        inspect = trace["inspect"]
        rows.append(
            {
                "eval_id": inspect.get("eval_id", ""),
                "sample_id": inspect.get("sample_id", trace["external_id"]),
                "epoch": inspect.get("epoch", trace["sample_index"] + 1),
                "trace_id": trace["external_id"],
                "condition": trace["condition"],
                "scorer": scorer,
                "score": {
                    "value": value,
                    "answer": trace["answer"] or None,
                    "explanation": explanation,
                    "metadata": {
                        "steps": steps,
                        "errors": errors,
                        "abstentions": counts.get("abstain", 0),
                        "invalid": counts.get("invalid", 0),
                        "first_error_step": first,
                        "error_share": errors / judged if judged else None,
                        "run": run.pk,
                        "segmentation": run.segmentation,
                    },
                },
            }
        )
    return rows


def inspect_scores_csv(rows: list[dict[str, Any]]) -> str:
    """The rows flattened, one column per CSV_COLUMNS entry."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        score, meta = row["score"], row["score"]["metadata"]
        writer.writerow(
            {
                **{k: row[k] for k in ("eval_id", "sample_id", "epoch", "trace_id")},
                "condition": row["condition"],
                "scorer": row["scorer"],
                "value": score["value"],
                "answer": score["answer"] or "",
                "explanation": score["explanation"],
                **{k: meta[k] for k in ("steps", "errors", "abstentions", "invalid")},
                "first_error_step": ""
                if meta["first_error_step"] is None
                else meta["first_error_step"],
                "error_share": "" if meta["error_share"] is None else meta["error_share"],
            }
        )
    return out.getvalue()
