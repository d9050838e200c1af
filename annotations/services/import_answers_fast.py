"""Pass 1's fast path for answer-only samples in JSONL: parsed and checked as columns.

An SC@k file is mostly lines of six fields (record type, question, condition, sample index,
answer, confidence). Checking them one by one in Python cost ~2.5 µs a line; here pyarrow's
JSON reader parses the whole file into columns and numpy checks them at once. The columns
check is conservative: a line it cannot clear (any other field, an unusual value, a text the
byte-level tests cannot vouch for) is left to the reference reader (import_formats), which
checks it exactly as before and says what is wrong with it. Whatever about the file itself the
columns cannot state as exactly as the reference reader — not UTF-8, a NUL, a control
character, a blank line, a line that is not an object, a value of another JSON type, an
unknown field — makes the fast path decline the whole file (``None``), and the reference
reader reads it all, so every message is the one it always gave.

Pure of Django, like import_formats.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from annotations.services.import_formats import (
    ALL_FIELDS,
    MAX_ID_LENGTH,
    MAX_SAMPLE_INDEX,
    RECORD_TYPE_FIELD,
    TEXT_LIMITS,
)

# Below this many answer records the per-line reader is as quick; above this size the file
# is not read into memory whole (the reference reader streams it): the bytes and their
# columns take about twice the file's size while pass 1 runs, in the web process for an
# upload. 128 MiB is a million samples; the SC@64 study of the bench is 24 MiB.
MIN_ANSWER_RECORDS = 1000
MAX_FILE_BYTES = 128 * 2**20
# The head read to decide whether a file is worth it (an SC@k file says "answer" at once).
SNIFF_BYTES = 2**20

_STRING_FIELDS = (
    RECORD_TYPE_FIELD,
    "question_id",
    "condition",
    "final_answer",
    "question",
    "gold_answer",
    "dataset",
    "trace",
    "trace_type",
    "trace_id",
)
# The scalar fields get their type from here: a line that gives another JSON type (a number
# for an id, a string for the index) fails the parse, and the reference reader takes over.
_SCHEMA = pa.schema(
    [(name, pa.string()) for name in _STRING_FIELDS]
    + [("sample_index", pa.int64()), ("confidence", pa.float64())]
)
# Any of these given (not null) sends the line to the reference reader: its checks of them
# (texts, options, metadata, the question a sample states) and its record are the reference.
_OTHER_FIELDS = (
    "question",
    "options",
    "gold_answer",
    "dataset",
    "trace",
    "trace_type",
    "trace_id",
    "steps",
    "metadata",
)


@dataclass
class FastSamples:
    """The lines the columns cleared, as columns; ``other_lines`` are for the reference reader.

    ``line`` is each cleared sample's physical line; ``question`` and ``condition`` index
    ``question_ids`` and ``conditions`` (in the order the cleared lines first name them).
    """

    line: np.ndarray
    question: np.ndarray
    condition: np.ndarray
    sample_index: np.ndarray
    confidence: np.ndarray  # NaN: none given
    answer: pa.Array
    question_ids: list[str]
    conditions: list[str]
    other_lines: set[int]

    def __len__(self) -> int:
        return len(self.line)


def answers_fast(path: Path) -> FastSamples | None:
    """The file's plain answer-only lines as checked columns, or None (read it line by line)."""
    try:
        with path.open("rb") as stream:
            head = stream.read(SNIFF_BYTES)
            if b'"answer"' not in head or path.stat().st_size > MAX_FILE_BYTES:
                return None
            data = head + stream.read()
    except OSError:
        return None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if data.count(b'"answer"') < MIN_ANSWER_RECORDS:
        return None
    # "\u0000" (a NUL, or a backslash before "u0000": the reader decides) and bytes that are
    # not UTF-8: their messages name the line and column.
    if b"\\u0000" in data or not _utf8(data):
        return None
    raw = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(raw == 0x0A)
    # No control character but the line breaks: a tab or a CR is legal JSON whitespace, but
    # the columns cannot say where it was (and a raw one in a string is the reader's error).
    if np.count_nonzero(raw < 0x20) != len(newlines):
        return None
    starts = np.concatenate(([0], newlines + 1))
    if starts[-1] == len(data):
        starts = starts[:-1]  # the file ends with a line break
    # Every line an object: no blank line, so the n-th row is the n-th line.
    if len(starts) == 0 or not np.all(raw[starts] == ord("{")):
        return None
    try:
        table = pa_json.read_json(
            pa.py_buffer(data),
            read_options=pa_json.ReadOptions(use_threads=True, block_size=16 * 2**20),
            parse_options=pa_json.ParseOptions(
                explicit_schema=_SCHEMA,
                unexpected_field_behavior="infer",
                newlines_in_values=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    # Two objects on one line would be two rows: the count keeps rows and lines in step.
    if table.num_rows != len(starts) or set(table.column_names) - set(ALL_FIELDS):
        return None
    return _cleared(table)


def _utf8(data: bytes) -> bool:
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _cleared(table: pa.Table) -> FastSamples:
    ok = _filled(pc.equal(table.column(RECORD_TYPE_FIELD), "answer"))
    for name in _OTHER_FIELDS:
        if name in table.column_names:
            ok &= _filled(pc.is_null(table.column(name)), default=True)
    question_id = _combined(table.column("question_id"))
    condition = _combined(table.column("condition"))
    answer = _combined(table.column("final_answer"))
    ok &= _plain_text(question_id, MAX_ID_LENGTH)
    ok &= _plain_text(condition, TEXT_LIMITS["condition"])  # type: ignore[arg-type]
    # A final answer may be empty or absent; in bytes, at most the limit in characters.
    answer_bytes = _byte_lengths(answer)
    ok &= answer_bytes <= TEXT_LIMITS["final_answer"]
    sample_index = _combined(table.column("sample_index"))
    index_given = ~_filled(pc.is_null(sample_index), default=True)
    index = pc.fill_null(sample_index, 0).to_numpy(zero_copy_only=False).astype(np.int64)
    ok &= index_given & (index >= 0) & (index <= MAX_SAMPLE_INDEX)
    confidence = (
        _combined(table.column("confidence")).to_numpy(zero_copy_only=False).astype(np.float64)
    )
    # NaN stands for "not given" (pyarrow's null); the literal NaN or Infinity that pyarrow
    # reads but JSON does not have arrives as a value: the null mask tells them apart.
    confidence_given = ~_filled(pc.is_null(table.column("confidence")), default=True)
    ok &= ~confidence_given | ((confidence >= 0.0) & (confidence <= 1.0))
    rows = np.flatnonzero(ok)
    others = np.flatnonzero(~ok)
    questions = pc.dictionary_encode(question_id.take(pa.array(rows)))
    conditions = pc.dictionary_encode(condition.take(pa.array(rows)))
    return FastSamples(
        line=rows + 1,
        question=_indices(questions),
        condition=_indices(conditions),
        sample_index=index[rows],
        confidence=np.where(confidence_given[rows], confidence[rows], np.nan),
        answer=pc.fill_null(answer.take(pa.array(rows)), ""),
        question_ids=questions.dictionary.to_pylist(),
        conditions=conditions.dictionary.to_pylist(),
        other_lines=set((others + 1).tolist()),
    )


def _combined(column: pa.ChunkedArray) -> pa.Array:
    return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)


def _filled(mask: pa.ChunkedArray | pa.Array, *, default: bool = False) -> np.ndarray:
    """A boolean column as numpy, null read as ``default``."""
    if isinstance(mask, pa.ChunkedArray):
        mask = _combined(mask)
    return pc.fill_null(mask, default).to_numpy(zero_copy_only=False).astype(bool)


def _byte_lengths(strings: pa.Array) -> np.ndarray:
    """UTF-8 bytes per value (0 for null): never fewer than its characters."""
    return pc.fill_null(pc.binary_length(strings), 0).to_numpy(zero_copy_only=False)


def _plain_text(strings: pa.Array, limit: int) -> np.ndarray:
    """Given, at most ``limit`` bytes, and starting with a printable ASCII character (so
    neither empty nor all whitespace for Python's str.isspace, whatever follows)."""
    lengths = _byte_lengths(strings)
    first = pc.fill_null(pc.utf8_slice_codeunits(strings, 0, 1), "")
    printable = pc.fill_null(pc.match_substring_regex(first, r"^[\x21-\x7e]$"), False).to_numpy(
        zero_copy_only=False
    )
    return (lengths >= 1) & (lengths <= limit) & printable.astype(bool)


def _indices(encoded: pa.DictionaryArray) -> np.ndarray:
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
