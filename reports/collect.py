"""Collect an audit's labels, answers and ratings from the database into the long formats.

The three frames have exactly the columns of ``auditapp.agreement.formats`` (plus a few
extra columns the statistics ignore), so the report computed from the database and the report
computed from an exported CSV are the same report.

Blinding: every ``condition`` value is the condition's blind code until the audit is
unblinded, and its name afterwards. Condition ids are read as integers and mapped once per
frame, so a condition name never passes through a row while the audit is blinded. Trace and
question ids are the same: while blinded, every ``trace_id`` / ``question_id`` is the id's
pseudonym (``annotations.selectors.pseudonyms``: ``T-…``, ``Q-…``), computed once per unique id
of a frame and mapped over it before any row is built from it; afterwards the imported ids.

Speed: rows are never turned into model instances. On PostgreSQL a query is streamed with
``COPY (SELECT …) TO STDOUT`` straight into pandas' C CSV parser (1,000,000 verdict rows in
about a second); elsewhere ``values_list`` tuples are transposed into column arrays.

Sources that do not exist yet (the labels models, the judges app) are empty, not errors: the
report then runs on whatever the audit has, e.g. the reference verdicts of imported steps.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from django.apps import apps
from django.core.exceptions import FieldError
from django.db import connection
from django.db.models import Case, Count, IntegerField, Max, Model, QuerySet, Value, When
from django.db.models.functions import Cast

from annotations.models import (
    AnswerSample,
    AssignmentItem,
    Audit,
    Batch,
    BatchItem,
    Condition,
    Step,
    Trace,
)
from annotations.selectors.pseudonyms import IdKind, id_pseudonyms, pseudonym_map_list
from auditapp.agreement.blinding import CLASSIFIER_MAX_TEXTS, DONT_KNOW
from auditapp.agreement.controls import POSITION_LEVELS
from auditapp.agreement.formats import ANSWER_COLUMNS, LABEL_COLUMNS, RATING_COLUMNS
from auditapp.agreement.report import primary_segmentation

logger = logging.getLogger(__name__)

__all__ = [
    "AuditTables",
    "answers_collect",
    "audit_tables_collect",
    "blinded_texts_collect",
    "condition_labels",
    "guesses_collect",
    "ids_pseudonymised",
    "ids_shown",
    "labels_collect",
    "probe_mapping",
    "pseudonyms_collect",
    "ratings_collect",
]

# Extra label columns we add; the statistics ignore them but exports keep them.
LABEL_EXTRA_COLUMNS = (
    "segmentation",
    "error_category",
    "inclusion_probability",
    # Expert labels only (missing for judges and the reference): flagged for review by the
    # annotator, their note, and whether they skipped the item before labelling it.
    "flagged",
    "flag_note",
    "skipped",
    # Covariates of the controls (auditapp.agreement.controls).
    "answer_correct",
    "dataset",
    "trace_type",
    "step_position",
    "style_blind",
    # The labelling mode of the expert label's batch: "steps", "trace" or "first_error" (empty
    # for judges and the reference), and the step's 0-based index in its trace. A first-error
    # trace reads back as: first error = lowest step_index labelled error; none: all correct.
    "mode",
    "step_index",
    # Judges only: the judge's probability that the step is an error where it stated one
    # (JudgeVerdict.error_probability); the prediction of the prediction-powered estimates.
    "judge_probability",
)
ANSWER_EXTRA_COLUMNS = ("trace_type", "dataset", "audited")


@dataclass(frozen=True)
class AuditTables:
    """The three long tables of one audit, and how many rows each source gave."""

    labels: pd.DataFrame
    answers: pd.DataFrame
    ratings: pd.DataFrame
    sources: dict[str, int] = field(default_factory=dict)
    # For the blinding section: a sample of blinded step texts and the probe answers.
    texts: pd.DataFrame | None = None
    guesses: pd.DataFrame | None = None


def condition_labels(audit: Audit) -> dict[int, str]:
    """Condition id → what a report may show: blind code while blinded, name afterwards."""
    column = "blind_code" if audit.unblinded_at is None else "name"
    return dict(Condition.objects.filter(audit=audit).values_list("pk", column))


def ids_pseudonymised(values: pd.Series, *, seed: str, kind: IdKind) -> pd.Series:
    """A column of external ids as their pseudonyms (missing ids stay missing).

    One HMAC per unique id, then one vectorised take over the column (20,000 traces under a
    million verdicts cost ~40 ms, not a call per row).
    """
    codes, uniques = pd.factorize(values)
    pseudonyms = id_pseudonyms(seed=seed, kind=kind, external_ids=uniques)
    # A trailing None is what code -1 (a missing id) picks.
    table = np.asarray([*pseudonyms, None], dtype=object)
    shown = pd.Series(table[codes], index=values.index, name=values.name)
    if values.dtype != object:
        # Keep an Arrow-backed column in Arrow, as the unblinded column is (see _attach).
        shown = shown.astype(values.dtype)
    return shown


def ids_shown(values: pd.Series, *, audit: Audit, kind: IdKind) -> pd.Series:
    """A column of external ids as a report shows it: pseudonyms while the audit is blinded,
    the ids themselves once it is unblinded."""
    if audit.unblinded_at is not None:
        return values
    return ids_pseudonymised(values, seed=audit.blinding_seed, kind=kind)


def _ids_shown(frame: pd.DataFrame, audit: Audit) -> pd.DataFrame:
    for column, kind in (("trace_id", "trace"), ("question_id", "question")):
        if column in frame:
            frame[column] = ids_shown(frame[column], audit=audit, kind=kind)
    return frame


def pseudonyms_collect(audit: Audit) -> pd.DataFrame:
    """``kind, pseudonym, external_id`` of every trace and question: the id mapping a
    researcher gets once the audit is unblinded (``ConflictError`` while it is blinded)."""
    rows = pseudonym_map_list(audit=audit)
    return pd.DataFrame(rows, columns=["kind", "pseudonym", "external_id"]).astype(object)


# --- frames from querysets ------------------------------------------------------------------
def _frame(queryset: QuerySet, columns: list[str], *, text: Iterable[str] = ()) -> pd.DataFrame:
    """A values_list queryset as a DataFrame built from column arrays.

    ``text`` columns keep their values as strings (an answer "3" stays "3"); SQL NULL and the
    empty string both arrive as missing.
    """
    text = set(text)
    if connection.vendor == "postgresql":
        return _frame_copy(queryset, columns, text)
    rows = list(queryset.iterator(chunk_size=20_000))
    if not rows:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})
    arrays = list(zip(*rows, strict=True))
    frame = pd.DataFrame(
        {c: np.asarray(a, dtype=object) for c, a in zip(columns, arrays, strict=True)}
    )
    for column in columns:
        if column in text:
            frame[column] = frame[column].where(frame[column].notna() & (frame[column] != ""))
        else:
            # Not numbers after all (an odd column): keep the objects.
            with contextlib.suppress(TypeError, ValueError):
                frame[column] = pd.to_numeric(frame[column])
    return frame


def _frame_copy(queryset: QuerySet, columns: list[str], text: set[str]) -> pd.DataFrame:
    sql, params = queryset.query.sql_with_params()
    buffer = io.BytesIO()
    # The raw psycopg cursor: Django's wrapper has no copy(). Parameters are bound
    # client-side by psycopg for COPY, so the queryset's own params are safe here.
    statement = f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)"
    with connection.cursor() as cursor, cursor.cursor.copy(statement, params) as copy:
        for block in copy:
            buffer.write(block)
    buffer.seek(0)
    if buffer.getbuffer().nbytes == 0:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})
    dtypes = {c: str for c in text}
    # pyarrow's multi-threaded parser: 3x the C engine on a million rows.
    # Both SQL NULL and "" arrive as missing.
    return pd.read_csv(buffer, names=columns, header=None, dtype=dtypes, engine="pyarrow")


def _map_conditions(frame: pd.DataFrame, labels: dict[int, str]) -> pd.Series:
    ids = pd.to_numeric(frame["condition_id"], errors="coerce")
    return ids.map(labels).astype(object)


def _model(app_label: str, name: str) -> type[Model] | None:
    if not apps.is_installed(app_label) and app_label != "annotations":
        return None
    try:
        return apps.get_model(app_label, name)
    except LookupError:
        return None


def _field_name(model: type[Model], *candidates: str) -> str | None:
    names = {f.name for f in model._meta.get_fields()}
    return next((c for c in candidates if c in names), None)


# --- labels -----------------------------------------------------------------------------------
# Each source gives narrow rows keyed by the step's primary key; step and trace columns are
# attached once, by integer position, from one scan of the audit's steps and traces. (Joining
# them in SQL for every verdict cost 4 s of 7 at 1,000,000 verdicts; this way it is ~2 s.)
_SOURCE_COLUMNS = ["step_pk", "evaluator", "verdict", "error_category", "inclusion_probability"]


def _steps_frame(audit: Audit) -> pd.DataFrame:
    queryset = (
        Step.objects.filter(audit=audit)
        .order_by()
        .values_list("pk", "public_id", "trace_id", "segmentation", "reference_verdict", "index")
    )
    frame = _frame(
        queryset,
        ["step_pk", "step_id", "trace_pk", "segmentation", "reference_verdict", "index"],
        text=["step_id", "segmentation", "reference_verdict"],
    )
    frame["step_position"] = _step_positions(frame)
    return frame


def _step_positions(steps: pd.DataFrame) -> pd.Series:
    """First / middle / last third of its trace (under its segmentation) for every step."""
    if steps.empty:
        return pd.Series([], dtype=object)
    # Integer keys: rank within (trace, segmentation) by index, and the group's size.
    seg_code = pd.factorize(steps["segmentation"])[0]
    trace = pd.to_numeric(steps["trace_pk"]).to_numpy()
    index = pd.to_numeric(steps["index"]).to_numpy()
    order = np.lexsort((index, trace, seg_code))
    group = np.empty(len(steps), dtype=np.int64)
    key = np.stack([seg_code[order], trace[order]])
    starts = np.r_[True, np.any(key[:, 1:] != key[:, :-1], axis=0)]
    group[order] = np.cumsum(starts) - 1
    first_of_group = np.flatnonzero(starts)
    sizes = np.diff(np.r_[first_of_group, len(steps)])
    rank = np.empty(len(steps), dtype=np.int64)
    rank[order] = np.arange(len(steps)) - np.repeat(first_of_group, sizes)
    third = np.minimum(3 * rank // sizes[group], 2)
    labels = np.asarray(POSITION_LEVELS, dtype=object)
    return pd.Series(labels[third], index=steps.index)


def _traces_frame(audit: Audit, labels: dict[int, str]) -> pd.DataFrame:
    queryset = (
        Trace.objects.filter(audit=audit)
        .order_by()
        .values_list(
            "pk",
            "external_id",
            "question__external_id",
            "condition_id",
            "question__dataset",
            "trace_type",
            # Stored at import by the documented rule (trimmed, ignoring case); None when
            # the trace has no answer or its question no gold: in neither level.
            "answer_correct",
        )
    )
    frame = _frame(
        queryset,
        [
            "trace_pk",
            "trace_id",
            "question_id",
            "condition_id",
            "dataset",
            "trace_type",
            "answer_correct",
        ],
        text=["trace_id", "question_id", "dataset", "trace_type"],
    )
    frame["condition"] = _map_conditions(frame, labels)
    frame["answer_correct"] = _booleans(frame["answer_correct"])
    return _ids_shown(frame, audit)


def _booleans(values: pd.Series) -> pd.Series:
    """True / False / None from a boolean column, whichever way it arrived (COPY gives the
    text ``t`` / ``f``; SQLite gives 0 / 1 or booleans)."""
    table = {True: True, False: False, "t": True, "f": False}  # 1 and 0 hash as True, False
    return values.astype(object).map(lambda v: table.get(v) if v is not None else None)


def _attach(rows: pd.DataFrame, steps: pd.DataFrame, traces: pd.DataFrame) -> pd.DataFrame:
    """Add step_id, trace_id, question_id, condition, segmentation to rows keyed by step_pk.

    ``Series.take`` keeps Arrow-backed strings in Arrow; going through ``to_numpy()`` would
    build a million Python strings per column (about 2 s at the benchmark's size).
    """
    at = pd.Index(steps["step_pk"]).get_indexer(pd.to_numeric(rows["step_pk"]))
    keep = at >= 0
    rows = rows[keep].reset_index(drop=True)
    at = at[keep]
    trace_at = pd.Index(traces["trace_pk"]).get_indexer(steps["trace_pk"].to_numpy()[at])

    def take(frame: pd.DataFrame, column: str, where: np.ndarray) -> pd.Series:
        return frame[column].take(where).reset_index(drop=True)

    out = {
        "step_id": take(steps, "step_id", at),
        "trace_id": take(traces, "trace_id", trace_at),
        "question_id": take(traces, "question_id", trace_at),
        "condition": take(traces, "condition", trace_at),
        "segmentation": take(steps, "segmentation", at),
        "step_position": take(steps, "step_position", at),
        "step_index": pd.to_numeric(take(steps, "index", at)),
        "dataset": take(traces, "dataset", trace_at),
        "trace_type": take(traces, "trace_type", trace_at),
        "answer_correct": take(traces, "answer_correct", trace_at),
    }
    for column in (
        "evaluator",
        "evaluator_kind",
        "verdict",
        "error_category",
        "inclusion_probability",
        "flagged",
        "flag_note",
        "skipped",
        "style_blind",
        "mode",
        "judge_probability",
    ):
        out[column] = rows[column] if column in rows else pd.Series(None, index=rows.index)
    return pd.DataFrame(out)


def _reference_labels(steps: pd.DataFrame) -> pd.DataFrame:
    rows = steps.loc[steps["reference_verdict"].notna(), ["step_pk", "reference_verdict"]]
    rows = rows.rename(columns={"reference_verdict": "verdict"})
    return rows.assign(evaluator="reference", evaluator_kind="reference")


def _expert_labels(audit: Audit) -> pd.DataFrame | None:
    """Expert labels with the inclusion probability of the batch item they label.

    Hidden repeats (an item shown again to measure consistency) and gold items (mixed in on
    purpose, not drawn from the population) are left out: they are not a sample of steps.
    """
    label_model = _model("annotations", "Label")
    if label_model is None:
        return None
    queryset = (
        label_model.objects.filter(
            step__audit=audit,
            assignment_item__is_hidden_repeat=False,
            assignment_item__batch_item__is_gold=False,
        )
        .order_by("pk")
        .annotate(
            # 0/1 rather than booleans: the same through COPY (csv 't'/'f') and SQLite.
            flagged_int=Cast("flagged", IntegerField()),
            skipped_int=Case(
                When(assignment_item__skipped_at__isnull=False, then=Value(1)),
                default=Value(0),
                output_field=IntegerField(),
            ),
        )
        .values_list(
            "step_id",
            "assignment__annotator__username",
            "verdict",
            "error_category",
            "assignment_item__batch_item__inclusion_probability",
            "flagged_int",
            "flag_note",
            "skipped_int",
            "assignment__batch__mode",
        )
    )
    frame = _frame(
        queryset,
        [*_SOURCE_COLUMNS, "flagged", "flag_note", "skipped", "mode"],
        text=["evaluator", "verdict", "error_category", "flag_note", "mode"],
    )
    for column in ("flagged", "skipped"):
        frame[column] = pd.to_numeric(frame[column]).eq(1)
    frame["evaluator_kind"] = "expert"
    # One label per (step, expert): the latest wins when the same expert met the step in two
    # batches; a second vote by the same person is not a second rater.
    return frame.drop_duplicates(["step_pk", "evaluator"], keep="last")


def _judge_labels_fast(audit: Audit) -> pd.DataFrame | None:
    """Judge and reference verdicts read as columns, with the selector's rules.

    ``judges.selectors.verdicts_long_table`` is the reference definition (one dict per row);
    at 1,000,000 verdicts building dicts costs more than the statistics, so the same rules
    are applied here on arrays: evaluator = judge name, kind = reference/judge by
    ``Judge.is_reference``, and when a judge has several runs over a step, the most recent
    run (highest id) wins. ``tests/reports`` checks both give the same table.
    """
    verdict_model = _model("judges", "JudgeVerdict")
    run_model = _model("judges", "JudgeRun")
    if verdict_model is None or run_model is None:
        return None
    runs = list(
        run_model.objects.filter(audit=audit).values_list(
            "pk",
            "judge_id",
            "judge__name",
            "judge__is_reference",
            "judge__version",
            "judge__style_blind",
        )
    )
    if not runs:
        return pd.DataFrame(columns=[*_SOURCE_COLUMNS, "evaluator_kind"])
    queryset = (
        verdict_model.objects.filter(run__audit=audit)
        .order_by()
        .values_list("run_id", "step_id", "verdict", "category", "error_probability")
    )
    frame = _frame(
        queryset,
        ["run_id", "step_pk", "verdict", "error_category", "judge_probability"],
        text=["verdict", "error_category"],
    )
    # An all-missing column arrives as objects; the statistics want floats with NaN.
    frame["judge_probability"] = pd.to_numeric(frame["judge_probability"], errors="coerce")
    run_at = pd.Index([r[0] for r in runs]).get_indexer(pd.to_numeric(frame["run_id"]))
    frame["judge_id"] = np.asarray([r[1] for r in runs])[run_at]
    # Each judge version is its own evaluator: ``name``, ``name@v2`` (judges.models.judge_label).
    labels = [r[2] if r[4] == 1 else f"{r[2]}@v{r[4]}" for r in runs]
    frame["evaluator"] = np.asarray(labels, dtype=object)[run_at]
    reference = np.asarray([bool(r[3]) for r in runs])[run_at]
    frame["evaluator_kind"] = np.where(reference, "reference", "judge")
    frame["style_blind"] = np.asarray([bool(r[5]) for r in runs], dtype=object)[run_at]
    if len({r[1] for r in runs}) < len(runs):
        # Some judge has several runs: keep each step's verdict from its latest run.
        frame = frame.sort_values("run_id", ascending=False, kind="stable")
        frame = frame.drop_duplicates(["judge_id", "step_pk"], keep="first")
    # An "invalid" judge answer (unparseable) is no verdict at all: it is not a label.
    return frame[frame["verdict"].isin(["correct", "error", "abstain"])]


def _judge_labels_selector(audit: Audit, names: dict[str, str]) -> pd.DataFrame | None:
    """Fallback when the judges models are not the shape the fast path expects."""
    try:
        from judges.selectors import verdicts_long_table
    except ImportError:
        return None
    frame = pd.DataFrame(list(verdicts_long_table(audit)))
    if frame.empty:
        return None
    frame["condition"] = frame["condition"].astype(str).map(names).fillna(frame["condition"])
    return frame[frame["verdict"].isin(["correct", "error", "abstain"])]


def labels_collect(audit: Audit) -> tuple[pd.DataFrame, dict[str, int]]:
    """The labels long table of an audit, and the number of rows from each source."""
    labels = condition_labels(audit)
    steps = _steps_frame(audit)
    traces = _traces_frame(audit, labels)
    sources: dict[str, int] = {"expert": 0, "judge": 0, "reference": 0}
    keyed: list[pd.DataFrame] = []  # rows keyed by step_pk
    ready: list[pd.DataFrame] = []  # rows already in the long format

    experts = _expert_labels(audit)
    if experts is not None and not experts.empty:
        keyed.append(experts)
        sources["expert"] = len(experts)

    judges = None
    if apps.is_installed("judges"):
        try:
            judges = _judge_labels_fast(audit)
            if judges is not None and not judges.empty:
                keyed.append(judges)
        except FieldError:
            logger.warning("judge models of another shape; using the selector", exc_info=True)
            judges = _judge_labels_selector(audit, _condition_aliases(audit, labels))
            if judges is not None:
                ready.append(judges)
    if judges is not None and not judges.empty:
        is_reference = judges["evaluator_kind"] == "reference"
        sources["judge"] = int((~is_reference).sum())
        sources["reference"] = int(is_reference.sum())
    if sources["reference"] == 0:
        # No reference run: the imported Step.reference_verdict is the 'reference' evaluator.
        reference = _reference_labels(steps)
        if not reference.empty:
            keyed.append(reference)
            sources["reference"] = len(reference)

    columns = [*LABEL_COLUMNS, *LABEL_EXTRA_COLUMNS]
    parts = [_attach(k, steps, traces) for k in keyed] + ready
    if not parts:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in columns}), sources
    frame = pd.concat([p.reindex(columns=columns) for p in parts], ignore_index=True)
    return frame, sources


def _condition_aliases(audit: Audit, labels: dict[int, str]) -> dict[str, str]:
    """Every way a selector might name a condition (id, name, code) → the label to show."""
    aliases: dict[str, str] = {}
    for pk, name, code in Condition.objects.filter(audit=audit).values_list(
        "pk", "name", "blind_code"
    ):
        for alias in (str(pk), name, code):
            aliases[alias] = labels[pk]
    return aliases


# --- answers and ratings ------------------------------------------------------------------
def answers_collect(audit: Audit) -> pd.DataFrame:
    """One row per answer: ``trace_id, question_id, condition, sample_index, answer, gold,
    confidence``, ``trace_type``, ``dataset`` and ``audited``.

    Audited traces and answer-only samples alike (``audited`` says which): every sample
    counts in the answer metrics. A sample has no trace id of its own; its ``trace_id`` is
    ``question/condition/sample_index`` (the condition as shown, and the whole id under a
    pseudonym while the audit is blinded, like every trace id).
    """
    columns = [
        "trace_id",
        "question_id",
        "condition_id",
        "sample_index",
        "answer",
        "gold",
        "confidence",
        "trace_type",
        "dataset",
    ]
    fields = [
        "question__external_id",
        "condition_id",
        "sample_index",
        "final_answer",
        "question__gold_answer",
        "confidence",
        "trace_type",
        "question__dataset",
    ]
    text = ["trace_id", "question_id", "answer", "gold", "trace_type", "dataset"]
    traces = _frame(
        Trace.objects.filter(audit=audit).order_by("pk").values_list("external_id", *fields),
        columns,
        text=text,
    )
    traces["audited"] = True
    samples = _frame(
        AnswerSample.objects.filter(audit=audit)
        .order_by("question_id", "condition_id", "sample_index")
        .values_list(*fields),
        columns[1:],
        text=text[1:],
    )
    labels = condition_labels(audit)
    if not samples.empty:
        samples["audited"] = False
        shown = _map_conditions(samples, labels)
        samples["trace_id"] = (
            samples["question_id"].astype(str)
            + "/"
            + shown.astype(str)
            + "/"
            + samples["sample_index"].astype(str)
        )
        frame = pd.concat([traces, samples], ignore_index=True) if not traces.empty else samples
    else:
        frame = traces
    frame["condition"] = _map_conditions(frame, labels)
    frame["confidence"] = pd.to_numeric(frame["confidence"], errors="coerce")
    frame = _ids_shown(frame, audit)
    return frame.reindex(columns=[*ANSWER_COLUMNS, *ANSWER_EXTRA_COLUMNS])


def ratings_collect(audit: Audit) -> pd.DataFrame:
    """Likert answers: ``trace_id, trace_type, rater, item, value`` (empty when none).

    A TraceRating holds all items of one trace as a JSON object; it is spread into one row
    per item here. Ratings are thousands, not millions, so a Python loop is fine.
    """
    columns = list(RATING_COLUMNS)
    rating_model = _model("annotations", "TraceRating")
    rows: list[tuple[str, str, str, str, Any]] = []
    if rating_model is not None:
        queryset = (
            rating_model.objects.filter(trace__audit=audit)
            .order_by("pk")
            .values_list(
                "trace__external_id",
                "trace__trace_type",
                "assignment__annotator__username",
                "answers",
            )
        )
        for trace_id, trace_type, rater, answers in queryset.iterator(chunk_size=5000):
            for item, value in (answers or {}).items():
                if value is None or value == "":
                    continue
                rows.append((trace_id, trace_type or "(none)", rater, item, value))
    if not rows:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})
    frame = _ids_shown(pd.DataFrame(rows, columns=columns), audit)
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce")
    return frame.dropna(subset=["value"]).reset_index(drop=True)


# --- blinding: step texts and probe answers -------------------------------------------------
def long_tables_collect(audit: Audit) -> dict[str, pd.DataFrame]:
    """The audit's long tables, in the formats ``agreement_report --labels/--answers/--ratings``
    reads back: ``labels``, ``answers``, ``ratings``; the complete record ``expert_labels``,
    ``revisions`` and ``steps``; once the audit is unblinded also ``pseudonyms``, the mapping
    from the pseudonyms earlier exports carried to the ids."""
    labels, _ = labels_collect(audit)
    tables = {
        "labels": labels,
        "answers": answers_collect(audit),
        "ratings": ratings_collect(audit),
        "expert_labels": expert_labels_collect(audit),
        "revisions": revisions_collect(audit),
        "steps": steps_collect(audit),
    }
    if audit.unblinded_at is not None:
        tables["pseudonyms"] = pseudonyms_collect(audit)
    return tables


def blinded_texts_collect(
    audit: Audit, *, segmentation: str | None, seed: int, limit: int = CLASSIFIER_MAX_TEXTS
) -> pd.DataFrame:
    """Blinded step texts of one segmentation: ``trace_id, question_id, condition, text``.

    With more than ``limit`` steps, whole traces are sampled: the traces (in primary-key
    order) are shuffled by a generator seeded with ``seed`` (a stream of its own, so the
    report's other numbers do not move) and taken in that order while their steps fit in
    ``limit``. Whole traces keep the classifier's cross-validation grouped by trace honest
    and its fold split fast (sklearn's StratifiedGroupKFold loops over groups in Python:
    1.4 s for 5,700 traces, 0.05 s for 200). ``attrs["n_population"]`` holds the number of
    steps sampled from. ``segmentation`` None takes the segmentation with the most steps.
    """
    steps = Step.objects.filter(audit=audit).order_by()
    if segmentation is None:
        counts = steps.values("segmentation").annotate(n=Count("pk")).order_by("-n", "segmentation")
        first = counts.first()
        if first is None:
            return pd.DataFrame(columns=["trace_id", "question_id", "condition", "text"])
        segmentation = first["segmentation"]
    steps = steps.filter(segmentation=segmentation)
    per_trace = np.asarray(
        steps.values_list("trace_id").annotate(n=Count("pk")).order_by("trace_id"),
        dtype=np.int64,
    ).reshape(-1, 2)
    population = int(per_trace[:, 1].sum())
    if population > limit:
        order = np.random.default_rng([seed, 0xB11D]).permutation(len(per_trace))
        fits = np.cumsum(per_trace[order, 1]) <= limit
        chosen = np.sort(per_trace[order[fits], 0]).tolist()
        steps = steps.filter(trace_id__in=chosen)
    fields = [
        "trace__external_id",
        "trace__question__external_id",
        "trace__condition_id",
        "blinded_text",
    ]
    frame = _frame(
        steps.order_by("pk").values_list(*fields),
        ["trace_id", "question_id", "condition_id", "text"],
        text=["trace_id", "question_id", "text"],
    )
    if frame.empty:
        return pd.DataFrame(columns=["trace_id", "question_id", "condition", "text"])
    frame["condition"] = _map_conditions(frame, condition_labels(audit))
    frame = _ids_shown(frame, audit)
    frame["text"] = frame["text"].fillna("")
    out = frame[["trace_id", "question_id", "condition", "text"]]
    out.attrs["n_population"] = population
    out.attrs["segmentation"] = segmentation
    return out


def probe_mapping(audit: Audit) -> dict[str, int]:
    """Probe answer (an arm's neutral label) → condition id, from the audit's explicit
    mapping (``Audit.probe_arms``); a label whose condition does not exist maps to nothing."""
    ids = dict(Condition.objects.filter(audit=audit).values_list("name", "pk"))
    return {
        str(arm["label"]): ids[str(arm["condition"])]
        for arm in audit.probe_arms or []
        if str(arm.get("condition")) in ids
    }


def guesses_collect(audit: Audit) -> pd.DataFrame | None:
    """Annotators' answers to the blinding question: ``condition, evaluator, option, guess``.

    From both ways of asking: with the label (``Label.probe_guess``, 'every' mode) and once
    per assignment (``ProbeAnswer``, 'end' mode). ``condition`` is the label the report shows
    for the item's true condition; ``guess`` the label of the condition the answer is mapped
    to (see :func:`probe_mapping`), missing for a don't-know or an unmapped answer. Hidden
    repeats and gold items are left out, as for the expert labels. None when the labels model
    does not exist.
    """
    label_model = _model("annotations", "Label")
    answer_model = _model("annotations", "ProbeAnswer")
    if label_model is None:
        return None
    queryset = (
        label_model.objects.filter(
            step__audit=audit,
            assignment_item__is_hidden_repeat=False,
            assignment_item__batch_item__is_gold=False,
        )
        .exclude(probe_guess="")
        .order_by("pk")
        .values_list("step__trace__condition_id", "assignment__annotator__username", "probe_guess")
    )
    frame = _frame(queryset, ["condition_id", "evaluator", "option"], text=["evaluator", "option"])
    if answer_model is not None:
        answers = _frame(
            answer_model.objects.filter(
                assignment__batch__audit=audit,
                assignment_item__is_hidden_repeat=False,
                assignment_item__batch_item__is_gold=False,
            )
            .order_by("pk")
            .values_list(
                "assignment_item__batch_item__step__trace__condition_id",
                "assignment_item__batch_item__trace__condition_id",
                "assignment__annotator__username",
                "guess",
            ),
            ["step_condition_id", "trace_condition_id", "evaluator", "option"],
            text=["evaluator", "option"],
        )
        if not answers.empty:
            answers["condition_id"] = answers["step_condition_id"].fillna(
                answers["trace_condition_id"]
            )
            parts = [f for f in (frame, answers[["condition_id", "evaluator", "option"]]) if len(f)]
            frame = pd.concat(parts, ignore_index=True)
    labels = condition_labels(audit)
    frame["condition"] = _map_conditions(frame, labels)
    mapping = {k.strip().casefold(): labels[v] for k, v in probe_mapping(audit).items()}
    dont_know = {d.strip().casefold() for d in DONT_KNOW}
    keys = frame["option"].astype(object).map(lambda o: str(o).strip().casefold())
    frame["guess"] = keys.map(lambda k: None if k in dont_know else mapping.get(k)).astype(object)
    return frame[["condition", "evaluator", "option", "guess"]]


def audit_tables_collect(
    audit: Audit, *, seed: int = 0, blinding_texts: int = CLASSIFIER_MAX_TEXTS
) -> AuditTables:
    """All three long tables of an audit, plus the blinding section's texts and guesses.

    The texts are those of the segmentation the report's main sections use (the one with
    the most labels), sampled down to ``blinding_texts`` steps from ``seed``.
    """
    labels, sources = labels_collect(audit)
    answers = answers_collect(audit)
    ratings = ratings_collect(audit)
    segmented = labels.dropna(subset=["segmentation"])
    segmentation = primary_segmentation(segmented) if not segmented.empty else None
    texts = blinded_texts_collect(audit, segmentation=segmentation, seed=seed, limit=blinding_texts)
    guesses = guesses_collect(audit)
    sources = {**sources, "answers": len(answers), "ratings": len(ratings)}
    return AuditTables(
        labels=labels,
        answers=answers,
        ratings=ratings,
        sources=sources,
        texts=texts,
        guesses=guesses,
    )


def tables_fingerprint(audit: Audit) -> dict[str, Any]:
    """Cheap aggregates that change whenever a table the report reads changes (cache key)."""
    parts: dict[str, Any] = {
        "unblinded_at": audit.unblinded_at.isoformat() if audit.unblinded_at else None,
        "steps": Step.objects.filter(audit=audit, reference_verdict__isnull=False).aggregate(
            n=Count("pk"), m=Max("pk")
        ),
        "traces": Trace.objects.filter(audit=audit).aggregate(n=Count("pk"), m=Max("pk")),
        # The waves section shows how many waves are out: a release changes the report.
        "batches": list(
            Batch.objects.filter(audit=audit)
            .order_by("pk")
            .values_list("pk", "waves", "waves_released")
        ),
        # Samples are only ever added, by imports: their count is enough.
        "answer_samples": AnswerSample.objects.filter(audit=audit).aggregate(
            n=Count("sample_index")
        ),
    }
    # Batches: the leak gate's record is shown; items carry inclusion probabilities, gold
    # and hidden-repeat flags (annotator quality). Items are only added, never changed.
    gates = Batch.objects.filter(audit=audit).order_by("pk").values_list("pk", "leak_gate")
    parts["batches"] = hashlib.sha256(
        json.dumps(list(gates), sort_keys=True, default=str).encode()
    ).hexdigest()
    parts["batch_items"] = BatchItem.objects.filter(batch__audit=audit).aggregate(
        n=Count("pk"), m=Max("pk")
    )
    parts["assignment_items"] = AssignmentItem.objects.filter(
        assignment__batch__audit=audit
    ).aggregate(n=Count("pk"), m=Max("pk"), t=Max("skipped_at"))
    run_model = _model("judges", "JudgeRun")
    if run_model is not None:
        # A judge renamed or re-flagged (style-blind) changes the report's evaluators.
        parts["judge_runs"] = run_model.objects.filter(audit=audit).aggregate(
            n=Count("pk"), m=Max("pk"), judge=Max("judge__updated_at"), done=Max("finished_at")
        )
    for app_label, name, audit_path in (
        ("annotations", "Label", "step__audit"),
        ("annotations", "LabelRevision", "label__step__audit"),
        ("annotations", "TraceRating", "trace__audit"),
        ("judges", "JudgeVerdict", "step__audit"),
    ):
        model = _model(app_label, name)
        if model is None:
            continue
        aggregates = {"n": Count("pk"), "m": Max("pk")}
        # Rows revised in place (an upserted verdict) move their timestamp, not the count.
        stamp = _field_name(model, "updated_at", "modified_at", "revised_at")
        if stamp:
            aggregates["t"] = Max(stamp)
        try:
            parts[name] = model.objects.filter(**{audit_path: audit}).aggregate(**aggregates)
        except FieldError:  # a model of another shape: no cache key part, never a crash
            logger.warning("no fingerprint for %s", name, exc_info=True)
            parts[name] = None
    return parts


# --- waves ---------------------------------------------------------------------------------
def _batch_units(batch) -> pd.DataFrame:
    """One row per labelled sampled unit of ``batch``: ``item, unit, wave, stratum,
    inclusion_probability, trace, y`` (``unit``: the step's pk) with y the share of its
    non-abstaining expert labels that say "error" (units every expert abstained on are left
    out, as missing at random).
    Gold items and hidden repeats are not a sample of steps and are left out."""
    from annotations.models import Label

    rows = list(
        Label.objects.filter(
            assignment_item__batch_item__batch=batch,
            assignment_item__is_hidden_repeat=False,
            assignment_item__batch_item__is_gold=False,
        )
        .exclude(verdict="abstain")
        .order_by()
        .values_list(
            "assignment_item__batch_item_id",
            "assignment_item__batch_item__step_id",
            "assignment_item__batch_item__wave",
            "assignment_item__batch_item__stratum",
            "assignment_item__batch_item__inclusion_probability",
            "step__trace_id",
            "verdict",
        )
    )
    frame = pd.DataFrame(
        rows, columns=["item", "unit", "wave", "stratum", "pi", "trace", "verdict"]
    )
    frame["error"] = (frame["verdict"] == "error").astype(float)
    return (
        frame.groupby("item", sort=True)
        .agg(
            unit=("unit", "first"),
            wave=("wave", "first"),
            stratum=("stratum", "first"),
            inclusion_probability=("pi", "first"),
            trace=("trace", "first"),
            y=("error", "mean"),
        )
        .reset_index()
    )


def batch_units_collect(
    audit: Audit, *, waves_only: bool = False, design: str | None = None
) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """Per batch (in waves, or of one sampling design): its design facts and its labelled
    units (:func:`_batch_units`). Arms are named as a report may show them."""
    # The strata name arms by blind code; a report shows the code until unblinding.
    column = "blind_code" if audit.unblinded_at is None else "name"
    shown = dict(Condition.objects.filter(audit=audit).values_list("blind_code", column))
    batches = Batch.objects.filter(audit=audit).order_by("created_at", "pk")
    if waves_only:
        batches = batches.filter(waves__gt=1)
    out = []
    for batch in batches:
        if design and (batch.design.get("sampling") or {}).get("design") != design:
            continue
        info = {
            "name": batch.name,
            "waves": batch.waves,
            "waves_released": batch.waves_released,
            "strata": batch.design.get("strata", []),
            "sampling": batch.design.get("sampling") or {},
            "condition_labels": shown,
        }
        out.append((info, _batch_units(batch)))
    return out


# --- annotator quality -------------------------------------------------------------------
def annotator_items_collect(audit: Audit) -> pd.DataFrame:
    """Every expert label with what annotator quality needs: ``evaluator, unit, verdict,
    is_gold, gold_verdict, is_repeat, elapsed_ms`` — gold items and hidden repeats included
    (``_expert_labels`` leaves them out of the estimates)."""
    columns = ["evaluator", "unit", "verdict", "is_gold", "gold_verdict", "is_repeat", "elapsed_ms"]
    label_model = _model("annotations", "Label")
    if label_model is None:
        return pd.DataFrame(columns=columns)
    rows = list(
        label_model.objects.filter(step__audit=audit)
        .order_by("pk")
        .values_list(
            "assignment__annotator__username",
            "step_id",
            "verdict",
            "assignment_item__batch_item__is_gold",
            "assignment_item__batch_item__gold_verdict",
            "assignment_item__is_hidden_repeat",
            "elapsed_ms",
        )
    )
    return pd.DataFrame(rows, columns=columns)


# --- complete exports: everything the experts entered, every revision, every step --------
EXPERT_LABEL_COLUMNS = [
    "step_id", "trace_id", "question_id", "condition", "segmentation", "evaluator", "verdict",
    "error_category", "comment", "probe_guess", "flagged", "flag_note", "skipped",
    "seconds_on_task", "first_saved", "last_saved", "revisions", "batch", "assignment",
    "position", "is_gold", "gold_verdict", "is_hidden_repeat", "shown", "mode",
]  # fmt: skip


def _with_step_ids(frame: pd.DataFrame, audit: Audit) -> pd.DataFrame:
    """Replace ``step_pk`` by the step's public id, trace/question ids as shown, condition."""
    steps = _steps_frame(audit)[["step_pk", "step_id", "trace_pk", "segmentation"]]
    traces = _traces_frame(audit, condition_labels(audit))
    out = frame.merge(steps, on="step_pk", how="left").merge(traces, on="trace_pk", how="left")
    return out


def expert_labels_collect(audit: Audit) -> pd.DataFrame:
    """One row per expert label with all the expert entered and how it was shown: comment,
    category, probe guess, seconds on task, first and last saved, revisions, batch,
    assignment and position, gold and hidden-repeat flags, and ``shown`` (JSON). Gold items
    and repeats are included (flagged): this is the record, not the analysis sample."""
    label_model = _model("annotations", "Label")
    if label_model is None:
        return pd.DataFrame(columns=EXPERT_LABEL_COLUMNS)
    rows = list(
        label_model.objects.filter(step__audit=audit)
        .order_by("pk")
        .values_list(
            "step_id",
            "assignment__annotator__username",
            "verdict",
            "error_category",
            "comment",
            "probe_guess",
            "flagged",
            "flag_note",
            "assignment_item__skipped_at",
            "elapsed_ms",
            "created_at",
            "updated_at",
            "revision",
            "assignment__batch__name",
            "assignment__public_id",
            "assignment_item__position",
            "assignment_item__batch_item__is_gold",
            "assignment_item__batch_item__gold_verdict",
            "assignment_item__is_hidden_repeat",
            "shown",
            "assignment__batch__mode",
        )
    )
    names = [
        "step_pk", "evaluator", "verdict", "error_category", "comment", "probe_guess",
        "flagged", "flag_note", "skipped", "elapsed_ms", "first_saved", "last_saved",
        "revisions", "batch", "assignment",
        "position", "is_gold", "gold_verdict", "is_hidden_repeat", "shown", "mode",
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=names)
    if frame.empty:
        return pd.DataFrame(columns=EXPERT_LABEL_COLUMNS)
    frame["seconds_on_task"] = frame.pop("elapsed_ms").astype(float) / 1000
    frame["skipped"] = frame["skipped"].notna()  # skipped before it was labelled
    for column in ("first_saved", "last_saved"):
        frame[column] = pd.to_datetime(frame[column], utc=True).dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    frame["shown"] = frame["shown"].map(
        lambda v: json.dumps(v if not isinstance(v, str) else json.loads(v), sort_keys=True)
    )
    return _with_step_ids(frame, audit).reindex(columns=EXPERT_LABEL_COLUMNS)


REVISION_COLUMNS = [
    "step_id", "evaluator", "revision", "verdict", "error_category", "comment", "probe_guess",
    "seconds_on_task", "changed_by", "changed_at",
]  # fmt: skip


def revisions_collect(audit: Audit) -> pd.DataFrame:
    """Every revision of every expert label (the history behind ``expert_labels``)."""
    model = _model("annotations", "LabelRevision")
    if model is None:
        return pd.DataFrame(columns=REVISION_COLUMNS)
    rows = list(
        model.objects.filter(label__step__audit=audit)
        .order_by("label_id", "revision")
        .values_list(
            "label__step_id",
            "label__assignment__annotator__username",
            "revision",
            "verdict",
            "error_category",
            "comment",
            "probe_guess",
            "elapsed_ms",
            "changed_by__username",
            "changed_at",
        )
    )
    names = ["step_pk", *REVISION_COLUMNS[1:7], "elapsed_ms", "changed_by", "changed_at"]
    frame = pd.DataFrame(rows, columns=names)
    if frame.empty:
        return pd.DataFrame(columns=REVISION_COLUMNS)
    frame["seconds_on_task"] = frame.pop("elapsed_ms").astype(float) / 1000
    frame["changed_at"] = pd.to_datetime(frame["changed_at"], utc=True).dt.strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ"
    )
    return _with_step_ids(frame, audit).reindex(columns=REVISION_COLUMNS)


STEP_COLUMNS = [
    "audit", "segmentation", "trace_id", "position", "step_id", "blinded_text",
    "reference_verdict",
]  # fmt: skip


def steps_collect(audit: Audit) -> pd.DataFrame:
    """Every step of the audit as clinicians and judges see it, with its public id: outside
    verdicts can be joined on ``step_id`` and imported back (``position`` is 1-based)."""
    frame = _frame(
        Step.objects.filter(audit=audit)
        .order_by("segmentation", "trace_id", "index")
        .values_list(
            "trace__external_id",
            "segmentation",
            "index",
            "public_id",
            "blinded_text",
            "reference_verdict",
        ),
        ["trace_id", "segmentation", "position", "step_id", "blinded_text", "reference_verdict"],
        text=["trace_id", "segmentation", "step_id", "blinded_text", "reference_verdict"],
    )
    frame["audit"] = audit.slug
    frame["position"] = pd.to_numeric(frame["position"]) + 1
    frame = _ids_shown(frame, audit)
    return frame.reindex(columns=STEP_COLUMNS)


# --- first-error section: step positions and the modes evaluators labelled in ----------------
def step_positions_collect(audit: Audit) -> pd.DataFrame:
    """Every step's 1-based position in its trace (under its segmentation) and the trace's
    length: ``step_id, position, n_steps`` — what reading a first-error index needs."""
    steps = _steps_frame(audit)
    if steps.empty:
        return pd.DataFrame({"step_id": [], "position": [], "n_steps": []})
    keys = [steps["segmentation"], pd.to_numeric(steps["trace_pk"])]
    index = pd.to_numeric(steps["index"])
    # A rank, not the stored index: positions stay dense whatever the import wrote.
    position = index.groupby(keys).rank(method="first").astype(np.int64)
    n_steps = index.groupby(keys).transform("size").astype(np.int64)
    return pd.DataFrame(
        {"step_id": steps["step_id"].astype(str), "position": position, "n_steps": n_steps}
    )


def judge_modes_collect(audit: Audit) -> dict[str, str]:
    """Judge evaluator (``name`` / ``name@vN``) → the labelling mode of its latest run in the
    audit (``steps`` or ``first_error``; the latest run's verdicts are the ones reported)."""
    run_model = _model("judges", "JudgeRun")
    if run_model is None or _field_name(run_model, "label_mode") is None:
        return {}
    modes: dict[str, str] = {}
    for name, version, mode in (
        run_model.objects.filter(audit=audit)
        .order_by("pk")
        .values_list("judge__name", "judge__version", "label_mode")
    ):
        modes[name if version == 1 else f"{name}@v{version}"] = mode or "steps"
    return modes
