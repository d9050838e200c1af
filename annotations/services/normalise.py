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
"""

import re

NORMALISER_VERSION = "norm-v1"
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


def blind_text(text: str, *, normalise: bool) -> tuple[str, str]:
    """The blinded text of a step and the version that produced it."""
    if normalise:
        return normalise_style(text), NORMALISER_VERSION
    return text.strip(), RAW_VERSION
