"""The style normaliser: the blinded text a clinician or a judge sees instead of the raw step.

Deterministic and documented (docs/formats.md, "Blinded text"). It removes surface cues of a
model's house style without touching content:

1. ``<think>`` / ``</think>`` tags and markdown headings markers (``#``), bold/italic markers,
   inline-code backticks and horizontal rules are removed; their text stays.
2. A leading list marker or numbering ("1.", "2)", "Step 3:", "-", "*", "•") is removed.
3. Filler openers ("Okay, so", "Alright,", "Hmm,", "Well,", "Let me think.", "Wait,", "So,")
   are removed from the start, repeatedly; the next letter is capitalised.
4. Curly quotes become straight, en/em dashes become "-", ellipsis "…" becomes "...".
5. Runs of spaces and tabs become one space; line breaks become one space (paragraph
   structure inside a step carries style, not content); leading/trailing space goes.

With normalisation off the blinded text is the raw step with whitespace trimmed (version "raw").

That is ``norm-v1``, kept byte for byte: audits imported with it keep it. ``norm-v2``
(annotations/services/normalise_v2.py) is the default for new audits; an audit's own
replacement rules (:func:`rules_compile`) run after it. :func:`blinder_for` puts the three
together for one audit, and names what it does in the step's ``blinding_version``.
"""

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from annotations.services.normalise_v2 import NORMALISER_V2, normalise_v2

NORMALISER_V1 = "norm-v1"
NORMALISER_VERSION = NORMALISER_V1  # what blind_text uses unless told (v1's callers and tests)
DEFAULT_NORMALISER = NORMALISER_V2  # new audits
RAW_VERSION = "raw"

_THINK_TAGS = re.compile(r"</?think>", re.IGNORECASE)
_HEADING = re.compile(r"^[ \t]*#{1,6}[ \t]+", re.MULTILINE)
_HRULE = re.compile(r"^[ \t]*(?:[-*_][ \t]*){3,}$", re.MULTILINE)
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1", re.DOTALL)
_ITALIC_STAR = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
_ITALIC_UNDERSCORE = re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])")
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_LINE_MARKER = re.compile(
    r"^[ \t]*(?:(?:step|stage)\s*\d+\s*[:.)-]|\(?\d{1,3}[.)](?=\s)"
    r"|\(?[a-z][.)](?=\s)|[-*•+](?=\s))[ \t]*",
    re.IGNORECASE | re.MULTILINE,
)
_FILLER = re.compile(
    r"^(?:okay|ok|alright|all right|hmm+|um+|uh+|well|so|wait|now|right|oh)\b[,.!:]?\s*"
    r"|^(?:let me (?:think|see|check)(?: about (?:this|it))?|let's see)\b[,.!:]?\s*",
    re.IGNORECASE,
)
_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'", "–": "-", "—": "-"})
_SPACE = re.compile(r"\s+")


def normalise_style(text: str) -> str:
    # Each rule runs only when its trigger character is present: most steps have no markdown,
    # and skipping the idle regexes doubles the import's throughput.
    out = text
    if "<" in out:
        out = _THINK_TAGS.sub(" ", out)
    if "*" in out or "_" in out or "-" in out:
        out = _HRULE.sub(" ", out)
    if "#" in out:
        out = _HEADING.sub("", out)
    if "*" in out or "_" in out:
        out = _BOLD.sub(r"\2", out)
        out = _ITALIC_STAR.sub(r"\1", out)
        out = _ITALIC_UNDERSCORE.sub(r"\1", out)
    if "`" in out:
        out = _INLINE_CODE.sub(r"\1", out)
    if "\n" in out:
        out = _LINE_MARKER.sub("", out)
    elif (marker := _LINE_MARKER.match(out)) is not None:
        out = out[marker.end() :]
    if not out.isascii():
        out = out.translate(_QUOTES).replace("…", "...")
    if "  " in out or "\n" in out or "\t" in out or "\r" in out:
        out = _SPACE.sub(" ", out)
    out = out.strip()
    while True:
        stripped = _FILLER.sub("", out, count=1)
        if stripped == out or not stripped:
            break
        out = stripped
    if out[:1].islower():
        out = out[0].upper() + out[1:]
    return out


normalise_v1 = normalise_style

NORMALISERS: dict[str, Callable[[str], str]] = {
    NORMALISER_V1: normalise_v1,
    NORMALISER_V2: normalise_v2,
}


# --- an audit's own replacement rules ------------------------------------------------------

MAX_RULES = 50
MAX_PATTERN_CHARS = 500
MAX_REPLACEMENT_CHARS = 200
# Typical step texts every rule set must leave idempotent, besides each rule's own example.
RULE_PROBES = (
    "The ferritin is low, which points to iron deficiency.",
    "ST elevation in II, III and aVF indicates an inferior infarction.",
    "Metformin is contraindicated when the eGFR falls below 30 mL/min.",
    "The dose is 5 mg/kg (max 200 mg) - given twice daily; see 1. above.",
    "It is B.",
    "A",
    "Sodium 128 mmol/L, potassium 5.9 mmol/L, pH 7.21, temperature 38.5 °C, SpO2 ≥ 94%.",
    'The "classic" triad: fever, jaundice and right upper quadrant pain... Or is it C?',
)
_GROUP_REFERENCE = re.compile(r"\\(\d+)|\\g<([^>]*)>")


class RuleError(ValueError):
    """An audit rule set that cannot be used; the message says which rule and why."""


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern[str]
    replacement: str


def _rule_fields(index: int, raw: Any) -> tuple[str, str, str]:
    where = f"rule {index + 1}"
    if not isinstance(raw, Mapping):
        raise RuleError(f"{where}: must be an object with 'pattern' and 'replacement'")
    unknown = set(raw) - {"pattern", "replacement", "example", "note"}
    if unknown:
        raise RuleError(f"{where}: unknown keys {', '.join(sorted(map(str, unknown)))}")
    pattern, replacement, example = (
        raw.get("pattern"),
        raw.get("replacement", ""),
        raw.get("example", ""),
    )
    if not isinstance(pattern, str) or not pattern:
        raise RuleError(f"{where}: 'pattern' must be a non-empty string")
    if not isinstance(replacement, str) or not isinstance(example, str):
        raise RuleError(f"{where}: 'replacement' and 'example' must be strings")
    if not isinstance(raw.get("note", ""), str):
        raise RuleError(f"{where}: 'note' must be a string")
    if len(pattern) > MAX_PATTERN_CHARS or len(replacement) > MAX_REPLACEMENT_CHARS:
        raise RuleError(
            f"{where}: at most {MAX_PATTERN_CHARS} characters of pattern and "
            f"{MAX_REPLACEMENT_CHARS} of replacement"
        )
    return pattern, replacement, example


def _rule_compile(index: int, raw: Any) -> tuple[Rule, str]:
    where = f"rule {index + 1}"
    pattern, replacement, example = _rule_fields(index, raw)
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise RuleError(f"{where}: {pattern!r} is not a regular expression ({exc})") from None
    if compiled.search("") is not None:
        raise RuleError(f"{where}: {pattern!r} matches the empty text (it would insert everywhere)")
    for number, name in _GROUP_REFERENCE.findall(replacement):
        known = (
            int(number) <= compiled.groups
            if number
            else (name in compiled.groupindex or (name.isdigit() and int(name) <= compiled.groups))
        )
        if not known:
            raise RuleError(f"{where}: the replacement refers to a group the pattern lacks")
    if example and compiled.search(example) is None:
        raise RuleError(f"{where}: the pattern does not match its own example {example!r}")
    return Rule(compiled, replacement), example


def rules_compile(
    rules: Iterable[Any] | None, *, version: str = DEFAULT_NORMALISER
) -> tuple[Rule, ...]:
    """Check an audit's rules (a list of {pattern, replacement, example?, note?}) and compile them.

    Refused with a :class:`RuleError` naming the rule: not a list of such objects, more than
    MAX_RULES, a pattern that is no regular expression or matches the empty text, a
    replacement naming a group the pattern lacks, an example the pattern does not match, or a
    rule set that is not idempotent — blinding a probe text (RULE_PROBES and every example)
    twice must give what blinding it once gives.
    """
    if rules is None:
        return ()
    if isinstance(rules, (str, bytes, Mapping)) or not isinstance(rules, Iterable):
        raise RuleError("rules must be a list of {pattern, replacement} objects")
    raw_rules = list(rules)
    if len(raw_rules) > MAX_RULES:
        raise RuleError(f"at most {MAX_RULES} rules; got {len(raw_rules)}")
    compiled = [_rule_compile(index, raw) for index, raw in enumerate(raw_rules)]
    out = tuple(rule for rule, _ in compiled)
    blind = _blinder(NORMALISERS[version], out)
    for probe in (*RULE_PROBES, *(example for _, example in compiled if example)):
        once = blind(probe)
        twice = blind(once)
        if twice != once:
            raise RuleError(
                "the rules are not idempotent: blinding "
                f"{probe!r} gives {once!r}, blinding that again gives {twice!r}"
            )
    return out


def rules_digest(rules: Iterable[Any] | None) -> str:
    """Eight hex digits naming a rule set (patterns and replacements, in order)."""
    canonical = [[str(r.get("pattern", "")), str(r.get("replacement", ""))] for r in rules or []]
    return hashlib.sha256(json.dumps(canonical).encode()).hexdigest()[:8]


def _blinder(normaliser: Callable[[str], str], rules: tuple[Rule, ...]) -> Callable[[str], str]:
    if not rules:
        return normaliser

    def blind(text: str) -> str:
        out = normaliser(text)
        for rule in rules:
            out = rule.pattern.sub(rule.replacement, out)
        # A rule that deletes a word leaves two spaces; the built-in rules never do.
        return _SPACE.sub(" ", out).strip()

    return blind


@dataclass(frozen=True)
class Blinder:
    """The blinding of one audit: ``blinder(text)`` is the blinded text, ``version`` its name.

    ``version`` is what a step's ``blinding_version`` records: ``raw``, ``norm-v1``,
    ``norm-v2``, or ``norm-v2+<8 hex>`` when the audit's rules (that digest) ran after it.
    """

    version: str
    apply: Callable[[str], str]

    def __call__(self, text: str) -> str:
        return self.apply(text)


def blinder_for(
    *, normalise: bool, version: str = NORMALISER_VERSION, rules: Iterable[Any] | None = None
) -> Blinder:
    """Compile once, blind many: the import calls this once per file."""
    if not normalise:
        return Blinder(RAW_VERSION, str.strip)
    try:
        normaliser = NORMALISERS[version]
    except KeyError:
        raise RuleError(
            f"unknown normaliser {version!r}; choose one of {', '.join(NORMALISERS)}"
        ) from None
    rule_list = list(rules or [])
    compiled = rules_compile(rule_list, version=version)
    label = f"{version}+{rules_digest(rule_list)}" if compiled else version
    return Blinder(label, _blinder(normaliser, compiled))


def blinder_for_audit(audit: Any) -> Blinder:
    """The audit's blinder: its style_normalisation switch, normaliser_version and rules."""
    return blinder_for(
        normalise=audit.style_normalisation,
        version=audit.normaliser_version,
        rules=audit.normaliser_rules,
    )


def final_answer_blinded(text: str, *, blinder: Blinder) -> str:
    """The final answer as an annotator or a style-blind judge sees it.

    norm-v1 never touched final answers, so its audits keep showing them as imported;
    from norm-v2 on the final answer is blinded like a step (``**Final Answer** \\boxed{A}``
    and ``A`` both show ``A``).
    """
    if blinder.version == RAW_VERSION or blinder.version.startswith(NORMALISER_V1):
        return text
    return blinder(text)


def normaliser_description(
    *,
    normalise: bool,
    version: str,
    rules: Iterable[Any] | None,
    step_versions: Mapping[str, int] | None = None,
) -> str:
    """One paragraph for a report's methods: what blinded the text annotators saw."""
    if not normalise:
        text = "Style normalisation off: annotators saw each step's raw text, trimmed."
    else:
        text = f"Blinded text by the {version} normaliser (docs/formats.md, 'Blinded text')" + (
            "; final answers as imported" if version == NORMALISER_V1 else ", final answers too"
        )
        rule_list = list(rules or [])
        if rule_list:
            shown = "; ".join(
                f"/{r.get('pattern', '')}/ → {r.get('replacement', '')!r}" for r in rule_list
            )
            text += (
                f", then the audit's {len(rule_list)} own rule(s) in order "
                f"(set {rules_digest(rule_list)}): {shown}"
            )
        text += "."
    if step_versions:
        counts = ", ".join(f"{v} {n:,}" for v, n in sorted(step_versions.items()))
        text += f" Steps by blinding version: {counts}."
    return text


def blind_text(
    text: str,
    *,
    normalise: bool,
    version: str = NORMALISER_VERSION,
    rules: Iterable[Any] | None = None,
) -> tuple[str, str]:
    """The blinded text of a step and the version that produced it."""
    blinder = blinder_for(normalise=normalise, version=version, rules=rules)
    return blinder(text), blinder.version
