"""Strict parsing of a judge's answer into a verdict.

Judges are asked for ``{"verdict", "error_category", "rationale"}``. A verdict is accepted only
from the schema's own field, ``verdict``, holding exactly one of ``correct`` / ``error`` /
``abstain`` (any letter case, surrounding blanks ignored). Nothing else counts: no synonyms
("wrong", "yes"), no other key ("label"), no repair of a cut-off object into one whose missing
parts are guessed. An earlier lenient parser stored ``{ ", unknown…`` as *abstain* and ``"} yes``
as *correct* (issue 14); garbage must end as ``invalid`` with the raw response kept.

What is read (``ParsedVerdict.method`` says which shape it was):

``json``
    the whole answer is the JSON object (what a server with structured output returns).
``fenced``
    the whole answer is one Markdown code fence holding the object.
``embedded``
    (only when the verdict shape was *not* enforced by the server) prose around exactly one
    balanced, valid JSON object with a ``verdict`` field.
``prefix``
    the answer *starts* with ``{"verdict": "<one of the three>"`` followed by ``,`` or ``}`` and
    was cut off later (``max_tokens`` reached inside the rationale): the verdict itself is
    complete; the category is read only if its string is complete too.

Before that, a reasoning block the model wrote first (``<think>…</think>``, as DeepSeek-R1 /
Qwen3 style models emit) is set aside: it is kept in the raw response, never parsed as the
verdict; an unclosed one (the answer ended while thinking) is unparseable.

Control characters: raw control characters inside JSON strings (newlines, tabs, even NUL) are
accepted (``json.loads(strict=False)``) — a valid object must not be rejected because a
rationale holds a raw tab. They are never a reason to accept anything else.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Verdict = Literal["correct", "error", "abstain"]
ParseMethod = Literal["json", "fenced", "embedded", "prefix"]
VERDICTS: tuple[Verdict, ...] = ("correct", "error", "abstain")

# The JSON schema servers enforce (``response_format`` json_schema, Ollama ``format``,
# llama-cpp-python's ``schema``). ``verdict`` comes first: grammar-constrained decoding follows
# the property order, so a cut-off answer still holds a complete verdict (the ``prefix`` shape).
VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "verdict": {"type": "string", "enum": list(VERDICTS)},
        "error_category": {"type": ["string", "null"]},
        "rationale": {"type": "string"},
    },
    "required": ["verdict", "error_category", "rationale"],
    "additionalProperties": False,
}

_THINK_RE = re.compile(r"^\s*<(think|thinking|reasoning)>(.*?)</\1>\s*", re.DOTALL | re.I)
_THINK_OPEN_RE = re.compile(r"^\s*<(think|thinking|reasoning)>", re.I)
_FENCE_RE = re.compile(r"\A```[ \t]*(?:json|JSON)?[ \t]*\n(.*?)\n?[ \t]*```\Z", re.DOTALL)
_PREFIX_RE = re.compile(r'\A\{\s*"verdict"\s*:\s*"\s*(correct|error|abstain)\s*"\s*[,}]', re.I)
_PREFIX_CATEGORY_RE = re.compile(r'"error_category"\s*:\s*(null|"((?:[^"\\]|\\.)*)")', re.DOTALL)


@dataclass(frozen=True)
class ParsedVerdict:
    verdict: Verdict
    category: str | None  # canonical category when the verdict is 'error', else None
    rationale: str
    method: ParseMethod
    category_raw: str | None = None  # what the judge wrote, kept when it matched no category
    # A ``confidence`` the answer states in its verdict, as a probability (see
    # ``stated_confidence``); None when it states none. Only whole objects carry one.
    confidence: float | None = None


class ParseError(ValueError):
    """The answer holds no verdict in the schema's field; ``reason`` says why (it is stored)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def normalise_verdict(value: Any) -> Verdict | None:
    """``value`` as one of the three verdicts if it is exactly one (case and blanks aside).

    Examples
    --------
    >>> normalise_verdict(" Error "), normalise_verdict("wrong"), normalise_verdict(True)
    ('error', None, None)
    """
    if not isinstance(value, str):
        return None
    word = value.strip().lower()
    return word if word in VERDICTS else None  # type: ignore[return-value]


_PERCENT_RE = re.compile(r"\A\s*(\d{1,3}(?:\.\d+)?)\s*%\s*\Z")


def stated_confidence(value: Any) -> float | None:
    """A stated confidence as a probability: a number in [0, 1] as it is, a percentage
    (a number in (1, 100], or a string such as ``"85%"``) over 100; anything else None.

    Examples
    --------
    >>> stated_confidence(0.8), stated_confidence(85), stated_confidence("70%")
    (0.8, 0.85, 0.7)
    >>> stated_confidence(True), stated_confidence(140), stated_confidence("high")
    (None, None, None)
    """
    if isinstance(value, str):
        match = _PERCENT_RE.match(value)
        if match is None:
            try:
                value = float(value)
            except ValueError:
                return None
        else:
            value = float(match.group(1))
            return value / 100 if 0 <= value <= 100 else None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return None
    if 0 <= value <= 1:
        return float(value)
    if 1 < value <= 100:
        return float(value) / 100
    return None


def split_reasoning(text: str) -> tuple[str, str]:
    """(reasoning, answer): a leading ``<think>…</think>`` block apart from the answer.

    Examples
    --------
    >>> split_reasoning('<think>hm</think>{"verdict": "error"}')
    ('hm', '{"verdict": "error"}')
    """
    match = _THINK_RE.match(text)
    if match is None:
        return "", text
    return match.group(2).strip(), text[match.end() :]


def parse_verdict(
    text: str, *, categories: Sequence[str] = (), enforced: bool = False
) -> ParsedVerdict:
    """Parse a judge's answer; raise ``ParseError`` unless the schema's field holds a verdict.

    ``categories`` are the audit's error categories: the category the judge names is matched
    to one of them case-insensitively; an unknown one becomes ``None`` with the judge's text in
    ``category_raw``. ``enforced``: the server constrained the answer to the schema, so only
    the whole answer (or its complete prefix) counts — prose around an object is not read.

    Examples
    --------
    >>> parse_verdict('{"verdict": "Error", "error_category": "factual"}').verdict
    'error'
    >>> parse_verdict('```json\\n{"verdict": "correct"}\\n```').method
    'fenced'
    >>> parse_verdict('{ ", unknown')
    Traceback (most recent call last):
    ...
    judges.clients.parsing.ParseError: not a JSON object with a verdict field
    """
    if not isinstance(text, str):
        raise ParseError("empty answer")
    if _THINK_OPEN_RE.match(text) and not _THINK_RE.match(text):
        raise ParseError("the answer ended inside its reasoning block")
    _, answer = split_reasoning(text)
    answer = answer.strip()
    if not answer:
        raise ParseError("empty answer")
    whole = _loads(answer)
    if whole is not None:
        return _from_object(whole, method="json", categories=categories)
    fence = _FENCE_RE.match(answer)
    if fence is not None:
        inner = _loads(fence.group(1).strip())
        if inner is not None:
            return _from_object(inner, method="fenced", categories=categories)
    prefix = _PREFIX_RE.match(answer)
    if prefix is not None:
        return _from_prefix(answer, prefix.group(1), categories=categories)
    if not enforced:
        found = [
            obj
            for chunk in _balanced_objects(answer)
            if isinstance(obj := _loads(chunk), dict) and _has_verdict_key(obj)
        ]
        if len(found) > 1:
            raise ParseError(f"{len(found)} objects with a verdict field; which one is meant?")
        if found:
            return _from_object(found[0], method="embedded", categories=categories)
    raise ParseError("not a JSON object with a verdict field")


def _loads(text: str) -> Any:
    if not text.startswith(("{", "[")):
        return None
    try:
        # strict=False: raw control characters inside strings are accepted (issue 14).
        return json.loads(text, strict=False)
    except (ValueError, RecursionError):
        return None


def _has_verdict_key(obj: Mapping[Any, Any]) -> bool:
    return any(isinstance(k, str) and k.strip().lower() == "verdict" for k in obj)


def _field(obj: Mapping[Any, Any], name: str) -> Any:
    for key, value in obj.items():
        if isinstance(key, str) and key.strip().lower() == name:
            return value
    return None


def _from_object(obj: Any, *, method: ParseMethod, categories: Sequence[str]) -> ParsedVerdict:
    if not isinstance(obj, dict):
        raise ParseError(f"the answer is JSON but a {type(obj).__name__}, not an object")
    if not _has_verdict_key(obj):
        raise ParseError("the object has no verdict field")
    raw_verdict = _field(obj, "verdict")
    verdict = normalise_verdict(raw_verdict)
    if verdict is None:
        shown = json.dumps(raw_verdict, ensure_ascii=True)[:60]
        raise ParseError(f"verdict {shown} is not one of correct, error, abstain")
    rationale = _field(obj, "rationale")
    raw_category = _field(obj, "error_category") if verdict == "error" else None
    parsed = _verdict(
        verdict,
        raw_category,
        rationale if isinstance(rationale, str) else "",
        method=method,
        categories=categories,
    )
    confidence = _field(obj, "confidence")
    if confidence is not None:
        confidence = stated_confidence(confidence)
        if confidence is not None:
            return dataclasses.replace(parsed, confidence=confidence)
    return parsed


def _from_prefix(answer: str, word: str, *, categories: Sequence[str]) -> ParsedVerdict:
    verdict: Verdict = word.lower()  # type: ignore[assignment]
    raw_category: str | None = None
    if verdict == "error":
        match = _PREFIX_CATEGORY_RE.search(answer)
        if match is not None and match.group(2) is not None:
            decoded = _loads(f'["{match.group(2)}"]')
            raw_category = decoded[0] if decoded else None
    return _verdict(verdict, raw_category, "", method="prefix", categories=categories)


def _verdict(
    verdict: Verdict,
    raw_category: Any,
    rationale: str,
    *,
    method: ParseMethod,
    categories: Sequence[str],
) -> ParsedVerdict:
    category_raw = (
        str(raw_category).strip()
        if isinstance(raw_category, str) and raw_category.strip()
        else None
    )
    category = _match_category(category_raw, categories)
    return ParsedVerdict(
        verdict=verdict,
        category=category,
        rationale=rationale.strip(),
        method=method,
        category_raw=category_raw if category is None else None,
    )


def _match_category(raw: str | None, categories: Sequence[str]) -> str | None:
    if raw is None:
        return None
    if not categories:
        return raw
    wanted = " ".join(raw.lower().split())
    for category in categories:
        if " ".join(category.lower().split()) == wanted:
            return category
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


# -- first-error answers -----------------------------------------------------------------------
# ``{"first_error_step": "<k or none>", "error_category", "rationale"}``, the step first so a
# cut-off answer still holds it. The schema's enum holds exactly the trace's step numbers, so a
# server that enforces it cannot answer out of range; others are checked here.
FIRST_ERROR_FIELD = "first_error_step"
_FE_PREFIX_RE = re.compile(
    r'\A\{\s*"first_error_step"\s*:\s*("?)\s*([A-Za-z0-9 ]{1,20}?)\s*\1\s*[,}]'
)
_FE_STEP_RE = re.compile(r"\A(?:step\s*)?(\d{1,6})\Z", re.I)


def first_error_schema(n_steps: int) -> dict[str, Any]:
    """The JSON schema of a first-error answer for a trace of ``n_steps`` steps."""
    return {
        "type": "object",
        "properties": {
            FIRST_ERROR_FIELD: {
                "type": "string",
                "enum": ["none", *(str(k) for k in range(1, n_steps + 1))],
            },
            "error_category": {"type": ["string", "null"]},
            "rationale": {"type": "string"},
        },
        "required": [FIRST_ERROR_FIELD, "error_category", "rationale"],
        "additionalProperties": False,
    }


@dataclass(frozen=True)
class ParsedFirstError:
    """A first-error answer. ``verdict`` is the vote samples are aggregated on: ``"none"`` or
    the step number as text; ``step`` the number (None for none)."""

    verdict: str
    step: int | None
    category: str | None
    rationale: str
    method: ParseMethod
    category_raw: str | None = None


def _first_error_value(value: Any, n_steps: int) -> int | None:
    """The step number ``value`` names (None for "none"); ``ParseError`` otherwise."""
    if isinstance(value, bool) or value is None:
        raise ParseError(f'{FIRST_ERROR_FIELD} must be a step number or "none", got {value!r}')
    if isinstance(value, int):
        step = value
    elif isinstance(value, str):
        word = value.strip()
        if word.lower() == "none":
            return None
        match = _FE_STEP_RE.match(word)
        if match is None:
            shown = json.dumps(value, ensure_ascii=True)[:60]
            raise ParseError(f'{FIRST_ERROR_FIELD} {shown} is not a step number or "none"')
        step = int(match.group(1))
    else:
        raise ParseError(f'{FIRST_ERROR_FIELD} must be a step number or "none"')
    if not 1 <= step <= n_steps:
        raise ParseError(
            f"{FIRST_ERROR_FIELD} {step} is out of range: the trace has steps 1..{n_steps}"
        )
    return step


def parse_first_error(
    text: str, *, n_steps: int, categories: Sequence[str] = (), enforced: bool = False
) -> ParsedFirstError:
    """Parse a first-error answer for a trace of ``n_steps`` steps, in the shapes
    ``parse_verdict`` reads (whole object, one fence, complete prefix, and — only when not
    enforced — one embedded object); an out-of-range step is a ``ParseError`` naming it.

    Examples
    --------
    >>> parse_first_error('{"first_error_step": "2", "error_category": null}', n_steps=3).step
    2
    >>> parse_first_error('{"first_error_step": "none"}', n_steps=3).verdict
    'none'
    >>> parse_first_error('{"first_error_step": 7}', n_steps=3)
    Traceback (most recent call last):
    ...
    judges.clients.parsing.ParseError: first_error_step 7 is out of range: the trace has steps 1..3
    """
    if not isinstance(text, str):
        raise ParseError("empty answer")
    if _THINK_OPEN_RE.match(text) and not _THINK_RE.match(text):
        raise ParseError("the answer ended inside its reasoning block")
    _, answer = split_reasoning(text)
    answer = answer.strip()
    if not answer:
        raise ParseError("empty answer")

    def from_object(obj: Any, method: ParseMethod) -> ParsedFirstError:
        if not isinstance(obj, dict):
            raise ParseError(f"the answer is JSON but a {type(obj).__name__}, not an object")
        if not any(isinstance(k, str) and k.strip().lower() == FIRST_ERROR_FIELD for k in obj):
            raise ParseError(f"the object has no {FIRST_ERROR_FIELD} field")
        step = _first_error_value(_field(obj, FIRST_ERROR_FIELD), n_steps)
        rationale = _field(obj, "rationale")
        raw_category = _field(obj, "error_category") if step is not None else None
        return _first_error(step, raw_category, rationale, method, categories)

    whole = _loads(answer)
    if whole is not None:
        return from_object(whole, "json")
    fence = _FENCE_RE.match(answer)
    if fence is not None:
        inner = _loads(fence.group(1).strip())
        if inner is not None:
            return from_object(inner, "fenced")
    prefix = _FE_PREFIX_RE.match(answer)
    if prefix is not None:
        raw = prefix.group(2)
        step = _first_error_value(
            int(raw) if prefix.group(1) == "" and raw.isdigit() else raw, n_steps
        )
        raw_category = None
        if step is not None:
            match = _PREFIX_CATEGORY_RE.search(answer)
            if match is not None and match.group(2) is not None:
                decoded = _loads(f'["{match.group(2)}"]')
                raw_category = decoded[0] if decoded else None
        return _first_error(step, raw_category, "", "prefix", categories)
    if not enforced:
        found = [
            obj
            for chunk in _balanced_objects(answer)
            if isinstance(obj := _loads(chunk), dict)
            and any(isinstance(k, str) and k.strip().lower() == FIRST_ERROR_FIELD for k in obj)
        ]
        if len(found) > 1:
            raise ParseError(f"{len(found)} objects with a {FIRST_ERROR_FIELD} field")
        if found:
            return from_object(found[0], "embedded")
    raise ParseError(f"not a JSON object with a {FIRST_ERROR_FIELD} field")


def _first_error(
    step: int | None,
    raw_category: Any,
    rationale: Any,
    method: ParseMethod,
    categories: Sequence[str],
) -> ParsedFirstError:
    category_raw = (
        str(raw_category).strip()
        if isinstance(raw_category, str) and raw_category.strip()
        else None
    )
    category = _match_category(category_raw, categories)
    return ParsedFirstError(
        verdict="none" if step is None else str(step),
        step=step,
        category=category,
        rationale=rationale.strip() if isinstance(rationale, str) else "",
        method=method,
        category_raw=category_raw if category is None else None,
    )
