"""Segmenters cut a trace's text into steps; each is a pure function of the text.

Every segment keeps its character span in the raw trace text, so a step can always be shown
in place and two segmentations of the same trace can be compared.

- ``given``: the steps shipped with the record (pre-segmented, e.g. rule-decomposed traces).
- ``paragraphs``: blocks separated by one or more blank lines.
- ``sentences``: sentence boundaries (., ?, ! followed by space and a capital, digit or quote),
  not after common abbreviations (e.g., i.e., Dr., vs.) and not inside decimals (3.5).
- ``numbered``: numbered or bulleted items ("1.", "2)", "Step 3:", "-", "*", "•"); text before
  the first item is a step of its own; lines that continue an item belong to it.
"""

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Segment:
    text: str
    start: int | None
    end: int | None


def _trimmed(text: str, start: int, end: int) -> Segment | None:
    """The segment text[start:end] without surrounding whitespace, or None if blank."""
    chunk = text[start:end]
    stripped_left = len(chunk) - len(chunk.lstrip())
    stripped = chunk.strip()
    if not stripped:
        return None
    s = start + stripped_left
    return Segment(stripped, s, s + len(stripped))


_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")


def segment_paragraphs(text: str) -> list[Segment]:
    segments: list[Segment] = []
    position = 0
    for match in _PARAGRAPH_BREAK.finditer(text):
        if (segment := _trimmed(text, position, match.start())) is not None:
            segments.append(segment)
        position = match.end()
    if (segment := _trimmed(text, position, len(text))) is not None:
        segments.append(segment)
    return segments


# Words whose trailing period rarely ends a sentence. Units (mg, ml) and "no" are left out on
# purpose: in reasoning traces "… 5 mg." and "No." end sentences far more often than not.
_ABBREVIATIONS = frozenset(
    [
        "e.g",
        "i.e",
        "etc",
        "vs",
        "dr",
        "mr",
        "mrs",
        "ms",
        "prof",
        "st",
        "fig",
        "approx",
        "al",
        "cf",
        "resp",
    ]
)
# A candidate boundary: terminal punctuation, optional closing quote/bracket, then whitespace.
_SENTENCE_END = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s+|$)")
_NEXT_STARTS_SENTENCE = re.compile(r"\s+[\"'“‘(\[]*[A-Z0-9]")


def segment_sentences(text: str) -> list[Segment]:
    segments: list[Segment] = []
    position = 0
    for match in _SENTENCE_END.finditer(text):
        end = match.end()
        if end < len(text):
            # A blank line always ends a sentence; otherwise the next word must look like a start.
            rest = text[end : end + 3]
            if "\n\n" not in rest and not _NEXT_STARTS_SENTENCE.match(text, end):
                continue
        word = re.search(r"([A-Za-z.]+)\.$", text[position : match.start() + 1])
        if match.group().startswith(".") and word and word.group(1).lower() in _ABBREVIATIONS:
            continue
        if match.group() == "." and re.search(r"(^|\s)\d+\.$", text[position : match.end()]):
            # "1." at the start of a numbered line is a list marker, not a sentence end.
            line_start = text.rfind("\n", 0, match.start()) + 1
            if text[line_start : match.end()].strip().rstrip(".").isdigit():
                continue
        if (segment := _trimmed(text, position, end)) is not None:
            segments.append(segment)
        position = end
    if (segment := _trimmed(text, position, len(text))) is not None:
        segments.append(segment)
    # Paragraph breaks inside a "sentence" without punctuation (headings, lists) split it too.
    result: list[Segment] = []
    for segment in segments:
        assert segment.start is not None
        for part in segment_paragraphs(segment.text):
            assert part.start is not None and part.end is not None
            result.append(Segment(part.text, segment.start + part.start, segment.start + part.end))
    return result


_ITEM_MARKER = re.compile(
    r"^[ \t]*(?:"
    r"(?:step|stage)\s*\d+\s*[:.)-]"  # Step 3:
    r"|\(?\d{1,3}[.)]"  # 1.  2)  (3)
    r"|\(?[a-z][.)](?=\s)"  # a)  (b)
    r"|[-*•+](?=\s)"  # bullets
    r")",
    re.IGNORECASE | re.MULTILINE,
)


def segment_numbered(text: str) -> list[Segment]:
    starts = [m.start() for m in _ITEM_MARKER.finditer(text)]
    if not starts:
        return []
    bounds = [0, *starts] if starts[0] != 0 else starts
    segments: list[Segment] = []
    for start, end in zip(bounds, [*bounds[1:], len(text)], strict=True):
        if (segment := _trimmed(text, start, end)) is not None:
            segments.append(segment)
    return segments


def segment_given(text: str, steps: Sequence[str]) -> list[Segment]:
    """Keep the given steps; locate each in the trace text, in order, when it appears verbatim."""
    segments: list[Segment] = []
    cursor = 0
    for step in steps:
        stripped = step.strip()
        if not stripped:
            continue
        found = text.find(stripped, cursor)
        if found >= 0:
            segments.append(Segment(stripped, found, found + len(stripped)))
            cursor = found + len(stripped)
        else:
            segments.append(Segment(stripped, None, None))
    return segments


TextSegmenter = Callable[[str], list[Segment]]

TEXT_SEGMENTERS: dict[str, TextSegmenter] = {
    "paragraphs": segment_paragraphs,
    "sentences": segment_sentences,
    "numbered": segment_numbered,
}
SEGMENTER_NAMES: tuple[str, ...] = ("given", *TEXT_SEGMENTERS)


def segment_trace(name: str, *, text: str, given_steps: Sequence[str] | None) -> list[Segment]:
    """Segment one trace with the named segmenter (``given`` needs the record's steps)."""
    if name == "given":
        return segment_given(text, given_steps or [])
    try:
        segmenter = TEXT_SEGMENTERS[name]
    except KeyError:
        raise ValueError(
            f"unknown segmenter {name!r}; choose one of {', '.join(SEGMENTER_NAMES)}"
        ) from None
    return segmenter(text)
