"""The long formats the statistics read, as constants, loaders and validators.

One row per (unit, rater, value), so the same code serves the database, a CSV export and a
notebook. Extra columns are ignored; a bad value raises a ``ValueError`` naming the table,
the row (0-based position in the frame; CSV line = row + 2) and the column.

Examples
--------
>>> import pandas as pd
>>> labels = pd.DataFrame({
...     "step_id": ["s1", "s2"], "trace_id": ["t1", "t1"], "question_id": ["q1", "q1"],
...     "condition": ["A", "A"], "evaluator": ["judge-1", "judge-1"],
...     "evaluator_kind": ["judge", "judge"], "verdict": ["correct", "error"],
...     "notes": ["ignored", "ignored"]})
>>> list(labels_validate(labels).columns)
['step_id', 'trace_id', 'question_id', 'condition', 'evaluator', 'evaluator_kind', 'verdict']
>>> labels_validate(labels.assign(verdict=["correct", "wrong"]))
Traceback (most recent call last):
...
ValueError: labels row 1, column 'verdict': 'wrong' is not one of 'correct', 'error', 'abstain'
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "ANSWER_COLUMNS",
    "CSV_RISKY_STARTS",
    "EVALUATOR_KINDS",
    "LABEL_COLUMNS",
    "LABEL_OPTIONAL_COLUMNS",
    "RATING_COLUMNS",
    "VERDICTS",
    "answers_read",
    "answers_validate",
    "csv_cell_safe",
    "csv_text_restore",
    "labels_read",
    "labels_validate",
    "ratings_read",
    "ratings_validate",
]

LABEL_COLUMNS: tuple[str, ...] = (
    "step_id",
    "trace_id",
    "question_id",
    "condition",
    "evaluator",
    "evaluator_kind",
    "verdict",
)
LABEL_OPTIONAL_COLUMNS: tuple[str, ...] = (
    "error_category",
    "weight",
    "inclusion_probability",
    # A judge's probability that the step is an error (in [0, 1], missing where it stated
    # none): the prediction-powered estimates use it instead of the 0/1 verdict.
    "judge_probability",
    "segmentation",
    # Covariates for the controls (auditapp.agreement.controls); all may be missing.
    "answer_correct",
    "dataset",
    "trace_type",
    "step_position",
    "style_blind",
    # The labelling mode an expert label was given in ("steps", "trace", "first_error"; empty
    # for judges and the reference) and the step's 0-based place in its trace: together they
    # read a trace's step labels as a first-error index (docs/labelling.md, "Modes").
    "mode",
    "step_index",
)
LABELLING_MODES: tuple[str, ...] = ("steps", "trace", "first_error")
_CONTROL_TEXT_COLUMNS = ("dataset", "trace_type", "step_position")
_BOOLEAN_COLUMNS = ("answer_correct", "style_blind")
_TRUE = {"true", "1", "yes", "t", "1.0"}
_FALSE = {"false", "0", "no", "f", "0.0"}
EVALUATOR_KINDS: tuple[str, ...] = ("expert", "judge", "reference")
VERDICTS: tuple[str, ...] = ("correct", "error", "abstain")

ANSWER_COLUMNS: tuple[str, ...] = (
    "trace_id",
    "question_id",
    "condition",
    "sample_index",
    "answer",
    "gold",
    "confidence",
)
# Kept when present: whether the row is an audited trace (else an answer-only sample) and
# the columns the answer metrics are broken down by.
ANSWER_OPTIONAL_COLUMNS: tuple[str, ...] = ("audited", "dataset", "trace_type")
RATING_COLUMNS: tuple[str, ...] = ("trace_id", "trace_type", "rater", "item", "value")

PathOrBuffer = str | os.PathLike[str] | IO[str]


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], *, table: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{table} must be a pandas DataFrame, not {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{table} is missing column(s) {', '.join(map(repr, missing))}; "
            f"expected {', '.join(columns)}"
        )


def _first_bad(mask: np.ndarray | pd.Series) -> int | None:
    positions = np.flatnonzero(np.asarray(mask, dtype=bool))
    return int(positions[0]) if positions.size else None


def _require_present(frame: pd.DataFrame, columns: Iterable[str], *, table: str) -> None:
    for column in columns:
        bad = _first_bad(frame[column].isna())
        if bad is not None:
            raise ValueError(f"{table} row {bad}, column {column!r}: value is missing")


def _as_text(series: pd.Series) -> pd.Series:
    """``series`` as trimmed text; ids may arrive as ints (CSV) or strings (database).

    Cheap when the column is already clean: Arrow-backed strings are trimmed in Arrow (about
    10 ms per million), an object column of Python strings is converted to Arrow text without
    ``astype(str)`` first, and a categorical column trims its categories only. Numbers become
    their decimal text (there is nothing to trim).
    """
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        categories = pd.Series(dtype.categories)
        categories = _as_text(categories) if len(categories) else categories.astype("str")
        codes = series.cat.codes.to_numpy()
        text = categories.take(np.where(codes < 0, 0, codes)).reset_index(drop=True)
        return text.where(codes >= 0, None).set_axis(series.index)
    if isinstance(dtype, pd.StringDtype):
        return series.str.strip()
    if pd.api.types.is_object_dtype(dtype):
        if pd.api.types.infer_dtype(series, skipna=False) != "string":
            series = series.astype(str)  # mixed objects: each one's str(), as before
        return series.astype("str").str.strip()
    return series.astype("str")


def _codes(series: pd.Series) -> np.ndarray:
    """Integer codes of a text column (equal values, equal codes), for hashing keys.

    Arrow text is dictionary-encoded in Arrow; ``pd.factorize`` would also build a Python
    string for each of a million distinct step ids, which is most of its cost.
    """
    if isinstance(series.dtype, pd.StringDtype) and series.dtype.storage == "pyarrow":
        encoded = pc.dictionary_encode(pa.array(series.array))
        if isinstance(encoded, pa.ChunkedArray):
            encoded = encoded.combine_chunks()
        return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    return pd.factorize(series)[0].astype(np.int64)


def _key_codes(codes: Sequence[np.ndarray]) -> np.ndarray:
    """One int64 code per row for a combination of code columns (mixed radix)."""
    key = np.zeros(len(codes[0]), dtype=np.int64)
    for column in codes:
        radix = int(column.max(initial=0)) + 1
        if int(key.max(initial=0)) >= (2**62) // radix:  # would overflow: renumber first
            key = pd.factorize(key)[0].astype(np.int64)
        key = key * radix + column
    return key


def _require_in(series: pd.Series, allowed: Sequence[str], *, table: str, column: str) -> None:
    bad = _first_bad(~series.isin(allowed))
    if bad is not None:
        allowed_text = ", ".join(map(repr, allowed))
        raise ValueError(
            f"{table} row {bad}, column {column!r}: {series.iloc[bad]!r} is not one of "
            f"{allowed_text}"
        )


def _as_number(frame: pd.DataFrame, column: str, *, table: str) -> pd.Series:
    numbers = pd.to_numeric(frame[column], errors="coerce")
    bad = _first_bad(numbers.isna() & frame[column].notna())
    if bad is not None:
        raise ValueError(
            f"{table} row {bad}, column {column!r}: {frame[column].iloc[bad]!r} is not a number"
        )
    return numbers.astype(float)


def _require_range(
    numbers: pd.Series, *, low: float, high: float, low_open: bool, table: str, column: str
) -> None:
    below = numbers <= low if low_open else numbers < low
    bad = _first_bad((below | (numbers > high)) & numbers.notna())
    if bad is not None:
        bracket = "(" if low_open else "["
        raise ValueError(
            f"{table} row {bad}, column {column!r}: {float(numbers.iloc[bad])!r} is outside "
            f"{bracket}{low:g}, {high:g}]"
        )


def labels_validate(labels: pd.DataFrame) -> pd.DataFrame:
    """Check a labels table and return it with only the known columns, ids as text.

    Parameters
    ----------
    labels : pandas.DataFrame
        One row per (step, evaluator): ``step_id, trace_id, question_id, condition,
        evaluator, evaluator_kind, verdict`` and optionally ``error_category``, ``weight``,
        ``inclusion_probability`` (in (0, 1]), ``judge_probability`` (in [0, 1]),
        ``segmentation``. Extra columns are ignored.

    Returns
    -------
    pandas.DataFrame
        A new frame (new index 0..n-1). ``weight``/``inclusion_probability`` are floats;
        ``segmentation`` is text with missing values as ``"default"``.

    Raises
    ------
    ValueError
        On a missing column, a missing value in a required column, a verdict or evaluator
        kind outside the vocabulary, a trace under two conditions, or an evaluator labelling
        the same step twice. The message names the row and the column.

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"step_id": [1], "trace_id": [1], "question_id": [1],
    ...     "condition": ["A"], "evaluator": ["e"], "evaluator_kind": ["doctor"],
    ...     "verdict": ["error"]})
    >>> labels_validate(frame)
    Traceback (most recent call last):
    ...
    ValueError: labels row 0, column 'evaluator_kind': 'doctor' is not one of 'expert', 'judge', 'reference'
    """  # noqa: E501
    table = "labels"
    _require_columns(labels, LABEL_COLUMNS, table=table)
    columns = list(LABEL_COLUMNS) + [c for c in LABEL_OPTIONAL_COLUMNS if c in labels.columns]
    out = labels.loc[:, columns].reset_index(drop=True)
    _require_present(out, LABEL_COLUMNS, table=table)
    for column in LABEL_COLUMNS:
        out[column] = _as_text(out[column])
    _require_in(out["verdict"], VERDICTS, table=table, column="verdict")
    _require_in(out["evaluator_kind"], EVALUATOR_KINDS, table=table, column="evaluator_kind")
    if "error_category" in out.columns:
        out["error_category"] = out["error_category"].where(out["error_category"].notna(), None)
    # weights in (0, ∞), inclusion probabilities in (0, 1], a judge's probability in [0, 1]
    for column, high, low_open in (
        ("weight", np.inf, True),
        ("inclusion_probability", 1.0, True),
        ("judge_probability", 1.0, False),
    ):
        if column in out.columns:
            out[column] = _as_number(out, column, table=table)
            _require_range(
                out[column], low=0.0, high=high, low_open=low_open, table=table, column=column
            )
    if "segmentation" in out.columns:
        out["segmentation"] = _as_text(out["segmentation"].fillna("default"))
    for column in _CONTROL_TEXT_COLUMNS:
        if column in out.columns:
            present = out[column].notna()
            text = _as_text(out[column])  # stays Arrow text when it arrives so (the database)
            out[column] = text.where(present & (text != ""), None)
    for column in _BOOLEAN_COLUMNS:
        if column in out.columns:
            out[column] = _as_boolean(out[column], table=table, column=column)
    if "mode" in out.columns:
        present = out["mode"].notna()
        text = _as_text(out["mode"])
        out["mode"] = text.where(present & (text != ""), None)
        _require_in(out["mode"].dropna(), LABELLING_MODES, table=table, column="mode")
    if "step_index" in out.columns:
        out["step_index"] = _as_number(out, "step_index", table=table)

    _require_consistent(out, key="evaluator", attribute="evaluator_kind", table=table)
    _require_consistent(out, key="trace_id", attribute="condition", table=table)
    keys = ["step_id", "evaluator"] + (["segmentation"] if "segmentation" in out.columns else [])
    # Integer codes (Arrow dictionary indices) hash faster than three text columns.
    duplicated = pd.Series(_key_codes([_codes(out[k]) for k in keys])).duplicated(keep="first")
    bad = _first_bad(duplicated)
    if bad is not None:
        raise ValueError(
            f"labels row {bad}: evaluator {out['evaluator'].iloc[bad]!r} labels step "
            f"{out['step_id'].iloc[bad]!r} a second time; keep one label per (step, evaluator)"
        )
    return out


def _as_boolean(series: pd.Series, *, table: str, column: str) -> pd.Series:
    """True / False / None from booleans or their text (``true``, ``1``, ``yes`` …)."""
    if pd.api.types.is_bool_dtype(series.dtype):
        return series.astype(object)
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    mapped = []
    for value in uniques:
        key = str(value).strip().casefold()
        if isinstance(value, bool | np.bool_):
            mapped.append(bool(value))
        elif key in _TRUE:
            mapped.append(True)
        elif key in _FALSE:
            mapped.append(False)
        elif key in ("", "nan", "none"):
            mapped.append(None)
        else:
            bad = int(np.flatnonzero(codes == len(mapped))[0])
            raise ValueError(
                f"{table} row {bad}, column {column!r}: {value!r} is not true or false"
            )
    table_values = np.asarray([*mapped, None], dtype=object)
    return pd.Series(table_values[codes], index=series.index, name=series.name)


def _require_consistent(frame: pd.DataFrame, *, key: str, attribute: str, table: str) -> None:
    """Raise when one ``key`` value carries two different ``attribute`` values."""
    # pandas' groupby on the text itself: measured faster than re-encoding both columns.
    first = frame.groupby(key, sort=False)[attribute].transform("first")
    bad = _first_bad(frame[attribute] != first)
    if bad is not None:
        value = frame[key].iloc[bad]
        raise ValueError(
            f"{table} row {bad}, column {attribute!r}: {key} {value!r} has "
            f"{frame[attribute].iloc[bad]!r} here but {first.iloc[bad]!r} on an earlier row"
        )


def answers_validate(answers: pd.DataFrame) -> pd.DataFrame:
    """Check an answers table and return it with only the known columns.

    Parameters
    ----------
    answers : pandas.DataFrame
        One row per trace: ``trace_id, question_id, condition, sample_index, answer, gold,
        confidence``. ``answer`` may be missing (no answer extracted: counted incorrect);
        ``confidence`` may be missing (left out of calibration metrics) and otherwise lies
        in [0, 1]. ``sample_index`` is a non-negative integer.

    Returns
    -------
    pandas.DataFrame
        A new frame with ids, ``answer`` and ``gold`` as trimmed text, ``sample_index`` as
        int and ``confidence`` as float, plus a boolean ``correct`` column
        (``answer == gold`` after trimming whitespace, ignoring case: the import's rule).

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"trace_id": ["t1", "t2"], "question_id": ["q1", "q1"],
    ...     "condition": ["A", "A"], "sample_index": [0, 1], "answer": ["B", None],
    ...     "gold": ["B", "B"], "confidence": [0.9, 1.2]})
    >>> answers_validate(frame)
    Traceback (most recent call last):
    ...
    ValueError: answers row 1, column 'confidence': 1.2 is outside [0, 1]
    >>> answers_validate(frame.assign(confidence=[0.9, None]))["correct"].tolist()
    [True, False]
    """
    table = "answers"
    _require_columns(answers, ANSWER_COLUMNS, table=table)
    out = answers.loc[:, list(ANSWER_COLUMNS)].reset_index(drop=True)
    _require_present(
        out, ["trace_id", "question_id", "condition", "sample_index", "gold"], table=table
    )
    for column in ("trace_id", "question_id", "condition", "gold"):
        out[column] = _as_text(out[column])
    index = _as_number(out, "sample_index", table=table)
    bad = _first_bad((index < 0) | (index != np.floor(index)))
    if bad is not None:
        raise ValueError(
            f"{table} row {bad}, column 'sample_index': {float(index.iloc[bad])!r} is not a "
            "non-negative integer"
        )
    out["sample_index"] = index.astype(np.int64)
    present = out["answer"].notna()
    out["answer"] = _as_text(out["answer"]).where(present, None)
    out["confidence"] = _as_number(out, "confidence", table=table)
    _require_range(
        out["confidence"], low=0.0, high=1.0, low_open=False, table=table, column="confidence"
    )
    duplicated = out.duplicated(["trace_id"], keep="first")
    bad = _first_bad(duplicated)
    if bad is not None:
        raise ValueError(
            f"{table} row {bad}, column 'trace_id': {out['trace_id'].iloc[bad]!r} appears twice"
        )
    # The import's rule (annotations.services.imports): trimmed, ignoring case.
    folded = out["answer"].where(present, "").astype(str).str.casefold()
    out["correct"] = present & (folded == out["gold"].astype(str).str.casefold())
    for column in ANSWER_OPTIONAL_COLUMNS:
        if column in answers:
            out[column] = answers[column].to_numpy()
    if "audited" in out:
        out["audited"] = _as_flag(out["audited"], table=table, column="audited")
    return out


_FLAG_WORDS = {"true": True, "false": False, "1": True, "0": False, "": True, "nan": True}


def _as_flag(values: pd.Series, *, table: str, column: str) -> pd.Series:
    """A yes/no column from booleans, 0/1 or the words true/false (a CSV round trip);
    missing means yes (an answer row is an audited trace unless it says otherwise)."""
    if values.dtype == bool:
        return values

    def flag(value: Any) -> bool | None:
        if isinstance(value, bool | np.bool_):
            return bool(value)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return True
        return _FLAG_WORDS.get(str(value).strip().casefold())

    flags = values.map(flag)
    bad = _first_bad(flags.isna())
    if bad is not None:
        raise ValueError(
            f"{table} row {bad}, column {column!r}: {values.iloc[bad]!r} is not true or false"
        )
    return flags.astype(bool)


def ratings_validate(ratings: pd.DataFrame) -> pd.DataFrame:
    """Check a ratings table (Likert answers) and return it with only the known columns.

    Parameters
    ----------
    ratings : pandas.DataFrame
        One row per (trace, rater, item): ``trace_id, trace_type, rater, item, value`` with a
        numeric ``value``.

    Returns
    -------
    pandas.DataFrame
        A new frame with ids as text and ``value`` as float.

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"trace_id": ["t1"], "trace_type": ["long"], "rater": ["r1"],
    ...     "item": ["interpretability"], "value": ["four"]})
    >>> ratings_validate(frame)
    Traceback (most recent call last):
    ...
    ValueError: ratings row 0, column 'value': 'four' is not a number
    """
    table = "ratings"
    _require_columns(ratings, RATING_COLUMNS, table=table)
    out = ratings.loc[:, list(RATING_COLUMNS)].reset_index(drop=True)
    _require_present(out, RATING_COLUMNS, table=table)
    for column in ("trace_id", "trace_type", "rater", "item"):
        out[column] = _as_text(out[column])
    out["value"] = _as_number(out, "value", table=table)
    return out


# --- spreadsheet-safe CSV cells ------------------------------------------------------------
# OWASP's CSV-injection starts, plus the apostrophe itself so the escape can be undone exactly.
CSV_RISKY_STARTS: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r", "'")


def csv_cell_safe(value: Any) -> Any:
    """A text cell a spreadsheet opens as text: a leading apostrophe before a risky start.

    >>> [csv_cell_safe(v) for v in ["=SUM(A1)", "-2+3", "'quoted", "ok", -2.0]]
    ["'=SUM(A1)", "'-2+3", "''quoted", 'ok', -2.0]
    """
    if isinstance(value, str) and value.startswith(CSV_RISKY_STARTS):
        return "'" + value
    return value


def csv_text_restore(frame: pd.DataFrame) -> pd.DataFrame:
    """Undo :func:`csv_cell_safe` in the text columns of a CSV read back (exact inverse).

    A cell is restored only when its apostrophe comes before a risky start, so a hand-made
    file whose cells never went through the escape reads as before.

    >>> csv_text_restore(pd.DataFrame({"t": ["'=1", "''x", "'plain", "ok"]}))["t"].tolist()
    ['=1', "'x", "'plain", 'ok']
    """
    out = frame
    for column in frame.columns:
        values = frame[column]
        if not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
            continue
        try:
            escaped = values.str.match(r"'[=+\-@\t\r']", na=False).astype(bool)
        except AttributeError:  # no strings in this column
            continue
        if escaped.any():
            if out is frame:
                out = frame.copy()
            restored = values.copy()
            restored[escaped] = values[escaped].str.slice(1)
            out[column] = restored
    return out


def _read_csv(source: PathOrBuffer, dtypes: dict[str, type]) -> pd.DataFrame:
    """A CSV the app exported (or one made by hand), its neutralised formulas restored."""
    return csv_text_restore(pd.read_csv(source, dtype=dtypes))


# Text columns are read as text so that "007" stays "007" and an answer "3" never becomes 3.0.
_LABEL_DTYPES = {c: str for c in ("step_id", "trace_id", "question_id", "condition", "evaluator")}
_ANSWER_DTYPES = {
    c: str
    for c in ("trace_id", "question_id", "condition", "answer", "gold", "dataset", "trace_type")
}
_RATING_DTYPES = {c: str for c in ("trace_id", "trace_type", "rater", "item")}


def labels_read(source: PathOrBuffer) -> pd.DataFrame:
    """Read and validate a labels CSV (see :func:`labels_validate`)."""
    return labels_validate(_read_csv(source, _LABEL_DTYPES))


def answers_read(source: PathOrBuffer) -> pd.DataFrame:
    """Read and validate an answers CSV (see :func:`answers_validate`)."""
    return answers_validate(_read_csv(source, _ANSWER_DTYPES))


def ratings_read(source: PathOrBuffer) -> pd.DataFrame:
    """Read and validate a ratings CSV (see :func:`ratings_validate`)."""
    return ratings_validate(_read_csv(source, _RATING_DTYPES))
