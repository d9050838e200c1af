import pytest

from annotations.services.segmenters import (
    SEGMENTER_NAMES,
    segment_given,
    segment_numbered,
    segment_paragraphs,
    segment_sentences,
    segment_trace,
)


def _texts(segments):
    return [s.text for s in segments]


def _spans_point_into(text, segments):
    return all(s.start is None or text[s.start : s.end] == s.text for s in segments)


def test_paragraphs_split_on_blank_lines_and_keep_spans():
    # given
    text = "First idea.\nStill first.\n\n  Second idea.  \n\n\n\nThird."
    # when
    segments = segment_paragraphs(text)
    # then
    assert _texts(segments) == ["First idea.\nStill first.", "Second idea.", "Third."]
    assert _spans_point_into(text, segments)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The dose is 2.5 mg. Then stop.", ["The dose is 2.5 mg.", "Then stop."]),
        ("Give it, e.g. orally. Then wait!", ["Give it, e.g. orally.", "Then wait!"]),
        ("Is it A? No. It is B.", ["Is it A?", "No.", "It is B."]),
        ('He said "stop." Then left.', ['He said "stop."', "Then left."]),
        ("lowercase after. it continues", ["lowercase after. it continues"]),
        ("Dr. Smith agrees. Fine.", ["Dr. Smith agrees.", "Fine."]),
        ("Heading\n\nBody text.", ["Heading", "Body text."]),
    ],
    ids=[
        "decimal",
        "abbreviation",
        "question-marks",
        "closing-quote",
        "no-capital",
        "title",
        "paragraph",
    ],
)
def test_sentences(text, expected):
    # when
    segments = segment_sentences(text)
    # then
    assert _texts(segments) == expected
    assert _spans_point_into(text, segments)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "1. First\n2. Second\n   continued\n3) Third",
            ["1. First", "2. Second\n   continued", "3) Third"],
        ),
        ("Intro line\n- a\n- b", ["Intro line", "- a", "- b"]),
        ("Step 1: read\nStep 2: think", ["Step 1: read", "Step 2: think"]),
        ("• one\n• two", ["• one", "• two"]),
        ("no markers at all", []),
    ],
    ids=["numbers-with-continuation", "preamble-and-bullets", "step-n", "unicode-bullets", "none"],
)
def test_numbered(text, expected):
    # when
    segments = segment_numbered(text)
    # then
    assert _texts(segments) == expected
    assert _spans_point_into(text, segments)


def test_given_steps_are_located_in_order_or_left_without_span():
    # given
    text = "A then B then A again"
    # when
    segments = segment_given(text, ["A", "B", "A", "not in text", "  "])
    # then
    assert _texts(segments) == ["A", "B", "A", "not in text"]
    assert [s.start for s in segments] == [0, 7, 14, None]


def test_unknown_segmenter_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown segmenter 'words'"):
        segment_trace("words", text="x", given_steps=None)


def test_every_named_segmenter_runs():
    for name in SEGMENTER_NAMES:
        segments = segment_trace(name, text="1. One.\n\n2. Two.", given_steps=["One.", "Two."])
        assert segments, name
