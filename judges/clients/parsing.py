"""Robust parsing of a judge's answer into a verdict.

Judges are asked for ``{"verdict", "error_category", "rationale"}`` but real servers answer in
many shapes: strict JSON, JSON in a Markdown fence, JSON after a sentence of prose, JSON cut off
by ``max_tokens``, or a single word. The strategies below are tried from the most to the least
trustworthy; the first that yields a recognised verdict wins, and ``ParsedVerdict.method`` says
which one it was so a report can count how often the lenient paths were needed.

Only what can be read with confidence is accepted: free prose such as "the step looks fine" is a
``ParseError`` (the client then asks again), never a guessed verdict.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Verdict = Literal["correct", "error", "abstain"]
ParseMethod = Literal["json", "fenced", "embedded", "truncated", "key_value", "bare_word"]

VERDICT_KEYS = ("verdict", "label", "answer", "judgment", "judgement", "decision", "result")
CATEGORY_KEYS = ("error_category", "category", "error_type", "errorcategory", "errortype", "type")
RATIONALE_KEYS = ("rationale", "reason", "reasoning", "explanation", "justification", "comment")

# Normalised (lower case, single spaces, no punctuation) synonyms of the three verdicts.
# "invalid" from the model means "the step is invalid", i.e. an error; our own 'invalid'
# verdict (unparseable answer) is never produced by this module.
_SYNONYMS: dict[str, Verdict] = {
    **dict.fromkeys(
        ("correct", "right", "valid", "true", "yes", "ok", "accurate", "sound", "no error"),
        "correct",
    ),
    **dict.fromkeys(
        (
            "error",
            "incorrect",
            "wrong",
            "invalid",
            "false",
            "mistake",
            "erroneous",
            "not correct",
            "flawed",
        ),
        "error",
    ),
    **dict.fromkeys(
        (
            "abstain",
            "abstention",
            "unknown",
            "cannot assess",
            "can not assess",
            "cant assess",
            "cannot be assessed",
            "impossible to assess",
            "not assessable",
            "unassessable",
            "cannot determine",
            "cannot judge",
            "undetermined",
            "uncertain",
            "unsure",
            "not sure",
            "na",
            "n a",
        ),
        "abstain",
    ),
}

_FENCE_RE = re.compile(r"```[ \t]*(?:json|JSON|javascript)?[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)
# "verdict: error" / "Label = correct" on a line of its own, for answers in key-value prose.
_KEY_VALUE_RE = re.compile(
    r"^\W*(?:"
    + "|".join(VERDICT_KEYS)
    + r")\W*\s*[:=]\s*[\"'*]*([A-Za-z' /_-]{2,40}?)[\"'*.]*\s*$",
    re.IGNORECASE | re.MULTILINE,
)
_WORD_RE = re.compile(r"[^a-z]+")


@dataclass(frozen=True)
class ParsedVerdict:
    verdict: Verdict
    category: str | None  # canonical category when the verdict is 'error', else None
    rationale: str
    method: ParseMethod
    category_raw: str | None = None  # what the judge wrote, kept when it matched no category


class ParseError(ValueError):
    """The answer holds no recognisable verdict; ``reason`` says why, for the stored record."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def normalise_verdict(value: Any) -> Verdict | None:
    """Map a judge's verdict word or phrase onto correct / error / abstain, or None."""
    if isinstance(value, bool):
        return "correct" if value else "error"
    if not isinstance(value, str):
        return None
    words = _WORD_RE.sub(" ", value.lower()).strip()
    return _SYNONYMS.get(words)


def parse_verdict(text: str, *, categories: Sequence[str] = ()) -> ParsedVerdict:
    """Parse a judge's answer; raise ``ParseError`` when no verdict can be read with confidence.

    ``categories`` are the audit's error categories: a category the judge names is matched to
    one of them case- and punctuation-insensitively; an unknown one becomes ``None`` with the
    judge's text kept in ``category_raw``.

    Examples
    --------
    >>> parse_verdict('{"Verdict": "Incorrect", "error_category": "factual"}').verdict
    'error'
    >>> parse_verdict('Sure!\\n```json\\n{"label": "correct"}\\n```').method
    'fenced'
    >>> parse_verdict('{"verdict": "cannot assess", "rationale": "needs the ima').verdict
    'abstain'
    """
    if not isinstance(text, str) or not text.strip():
        raise ParseError("empty answer")
    stripped = text.strip()
    reasons: list[str] = []
    for method, candidates in _candidates(stripped):
        for obj in candidates:
            parsed = _from_object(obj, method=method, categories=categories)
            if parsed is not None:
                return parsed
            reasons.append(f"{method}: no recognisable verdict key")
    word = _bare_word(stripped)
    if word is not None:
        return ParsedVerdict(verdict=word[0], category=None, rationale="", method=word[1])
    if reasons:
        raise ParseError(reasons[0])
    raise ParseError("no JSON object and no verdict word found")


def _candidates(text: str) -> Iterable[tuple[ParseMethod, list[Any]]]:
    """Yield JSON values found in ``text``, most trustworthy strategy first (lazily)."""
    strict = _loads(text)
    if strict is not None:
        yield "json", [strict]
    fenced = [obj for block in _FENCE_RE.findall(text) if (obj := _loads(block.strip()))]
    if fenced:
        yield "fenced", fenced
    embedded = [obj for chunk in _balanced_objects(text) if (obj := _loads(chunk)) is not None]
    if embedded:
        yield "embedded", embedded
    start = text.find("{")
    if start >= 0:
        repaired = _repair_truncated(text[start:])
        if repaired is not None:
            yield "truncated", [repaired]


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _balanced_objects(text: str) -> Iterable[str]:
    """Yield each top-level balanced ``{...}`` substring, aware of JSON strings and escapes."""
    depth = 0
    start = -1
    in_string = False
    escaped = False
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"' and depth > 0:
            in_string = True
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                yield text[start : i + 1]


def _repair_truncated(fragment: str) -> Any:
    """Close an object cut off mid-way (``max_tokens`` reached) so its complete keys survive.

    Walks the fragment tracking open strings and brackets, then tries the closings from the
    longest prefix to shorter ones: a dangling key or a half-written number is dropped by
    cutting back to the last comma at the top of the stack.
    """
    stack: list[str] = []
    in_string = False
    escaped = False
    safe_cuts: list[tuple[int, list[str], bool]] = []  # (end index, open brackets, in string)
    for i, ch in enumerate(fragment):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]":
            if not stack:
                return None
            stack.pop()
            if not stack:
                return _loads(fragment[: i + 1])
        elif ch == ",":
            safe_cuts.append((i, list(stack), False))
    attempts: list[str] = []
    tail = fragment.rstrip()
    if in_string:
        body = tail[:-1] if tail.endswith("\\") else tail
        attempts.append(body + '"' + "".join(reversed(stack)))
    attempts.append(tail + "".join(reversed(stack)))
    for end, open_stack, _ in reversed(safe_cuts):
        attempts.append(fragment[:end] + "".join(reversed(open_stack)))
    for attempt in attempts:
        obj = _loads(attempt)
        if obj is not None:
            return obj
    return None


def _norm_key(key: str) -> str:
    return re.sub(r"[^a-z]", "", key.lower())


def _lookup(obj: Mapping[str, Any], keys: Sequence[str]) -> Any:
    wanted = {_norm_key(k) for k in keys}
    for key, value in obj.items():
        if isinstance(key, str) and _norm_key(key) in wanted:
            return value
    return None


def _from_object(
    obj: Any, *, method: ParseMethod, categories: Sequence[str]
) -> ParsedVerdict | None:
    if isinstance(obj, list):
        obj = next((item for item in obj if isinstance(item, dict)), None)
    if not isinstance(obj, dict):
        return None
    verdict = normalise_verdict(_lookup(obj, VERDICT_KEYS))
    if verdict is None:
        # One level of nesting, e.g. {"result": {"verdict": ...}} or {"assessment": {...}}.
        for value in obj.values():
            if isinstance(value, dict):
                nested = _from_object(value, method=method, categories=categories)
                if nested is not None:
                    return nested
        return None
    rationale = _lookup(obj, RATIONALE_KEYS)
    raw_category = _lookup(obj, CATEGORY_KEYS) if verdict == "error" else None
    category_raw = str(raw_category).strip() if raw_category not in (None, "") else None
    category = _match_category(category_raw, categories)
    return ParsedVerdict(
        verdict=verdict,
        category=category,
        rationale=str(rationale).strip() if rationale is not None else "",
        method=method,
        category_raw=category_raw if category is None else None,
    )


def _match_category(raw: str | None, categories: Sequence[str]) -> str | None:
    if raw is None:
        return None
    if not categories:
        return raw
    wanted = _norm_key(raw)
    for category in categories:
        if _norm_key(category) == wanted:
            return category
    return None


def _bare_word(text: str) -> tuple[Verdict, ParseMethod] | None:
    """Last resort: the whole answer is one verdict word, or a ``verdict: X`` line."""
    verdict = normalise_verdict(text) if len(text) <= 40 else None
    if verdict is not None:
        return verdict, "bare_word"
    matches = {normalise_verdict(m) for m in _KEY_VALUE_RE.findall(text)} - {None}
    if len(matches) == 1:  # two different "verdict:" lines are a contradiction, not an answer
        return matches.pop(), "key_value"  # type: ignore[return-value]
    return None
