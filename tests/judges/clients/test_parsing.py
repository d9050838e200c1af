import pytest

from judges.clients.parsing import ParseError, normalise_verdict, parse_verdict, split_reasoning

CATEGORIES = ["factual", "logical leap", "calculation"]


@pytest.mark.parametrize(
    ("text", "verdict", "method"),
    [
        ('{"verdict": "correct", "rationale": "ok"}', "correct", "json"),
        ('  {"Verdict": " ERROR ", "error_category": null, "rationale": "x"}\n', "error", "json"),
        ('```json\n{"verdict": "error"}\n```', "error", "fenced"),
        ('```\n{"verdict": "abstain"}\n```', "abstain", "fenced"),
        ('The answer: {"verdict": "error", "note": "{x}"} as requested.', "error", "embedded"),
        ('{"verdict": "correct", "rationale": "cut off mid-sent', "correct", "prefix"),
        ('{ "verdict" : "abstain" , "error_category": nu', "abstain", "prefix"),
        ('<think>Is 2+2=5? No.</think>\n{"verdict": "error"}', "error", "json"),
    ],
    ids=[
        "strict",
        "case-and-blanks",
        "fenced-json",
        "fenced-bare",
        "embedded-in-prose",
        "cut-off-in-rationale",
        "cut-off-after-verdict",
        "after-reasoning-block",
    ],
)
def test_accepts_only_the_schema_field_in_known_shapes(text, verdict, method):
    # given an answer whose verdict field holds one of the three words
    # when it is parsed
    parsed = parse_verdict(text)
    # then the verdict and the shape it was read from are reported
    assert (parsed.verdict, parsed.method) == (verdict, method)


def test_a_raw_control_character_inside_a_string_does_not_reject_a_valid_answer():
    # given a valid error verdict whose rationale holds a raw tab, newline, bell and NUL (issue 14:
    # 7 of 20 such answers were rejected)
    text = '{"verdict": "error", "error_category": "factual", "rationale": "a\tb\nc\x07d\x00e"}'
    # when
    parsed = parse_verdict(text, categories=CATEGORIES)
    # then
    assert parsed.verdict == "error"
    assert parsed.category == "factual"
    assert parsed.rationale == "a\tb\nc\x07d\x00e"


# Real-looking garbage: what a random or a non-instruction-following model returns, truncations,
# fences that hold no object, prose, control characters, NULs, empty answers.
GARBAGE = {
    "issue-open-string-unknown": '{ ", unknown…',
    "issue-quote-brace-yes": '"} yes',
    "empty": "",
    "blank": " \n\t ",
    "nul-only": "\x00\x00",
    "control-chars": "\x01\x02\x1b[0m\x7f",
    "prose-with-verdict-words": "After careful thought the step is correct, not an error.",
    "bare-word": "correct",
    "bare-word-incorrect": "Incorrect.",
    "key-value-line": "Verdict: error\nRationale: the sign flips",
    "synonym-value": '{"verdict": "wrong", "rationale": "x"}',
    "other-key": '{"label": "correct"}',
    "nested": '{"assessment": {"verdict": "correct"}}',
    "list": '[{"verdict": "correct"}]',
    "number": "42",
    "string-json": '"correct"',
    "truncated-inside-verdict": '{"verdict": "erro',
    "truncated-before-value": '{"verdict": ',
    "truncated-key": '{"verd',
    "unknown-value": '{"verdict": "partially correct"}',
    "null-verdict": '{"verdict": null}',
    "bool-verdict": '{"verdict": true}',
    "empty-fence": "```json\n```",
    "fence-with-prose": "```\nthe step is correct\n```",
    "open-fence": '```json\n{"verdict": "corr',
    "two-disagreeing-objects": 'First {"verdict": "correct"} then {"verdict": "error"}',
    "unclosed-reasoning": '<think>the verdict is {"verdict": "correct"} I think',
    "reasoning-only": "<think>hmm</think>",
    "random-tokens": 'ĠĠ{"}{ verdict ,,: "abst',
    "brace-soup": "{{{{}}}}{}{",
    "json-with-trailing-garbage-first-key-not-verdict": '{"rationale": "x", "verdict": "er',
}


@pytest.mark.parametrize("text", list(GARBAGE.values()), ids=list(GARBAGE))
def test_garbage_is_never_a_verdict(text):
    # given an answer that does not hold a verdict in the schema's field
    # when / then it is a ParseError with a reason (stored with the raw answer as 'invalid')
    with pytest.raises(ParseError) as info:
        parse_verdict(text)
    assert info.value.reason


def test_with_enforced_structure_prose_around_an_object_is_not_read():
    # given a server that enforced the schema: anything but the object itself is a malfunction
    for text in ('Sure: {"verdict": "correct"} done', '\x00{"verdict": "correct"}x'):
        # when / then
        with pytest.raises(ParseError):
            parse_verdict(text, enforced=True)
        assert parse_verdict(text).method == "embedded"


def test_unknown_category_is_kept_raw_not_invented():
    # given a category outside the audit's list
    text = '{"verdict": "error", "error_category": "hallucination"}'
    # when
    parsed = parse_verdict(text, categories=CATEGORIES)
    # then
    assert parsed.category is None
    assert parsed.category_raw == "hallucination"


def test_category_matches_case_insensitively_and_is_dropped_unless_error():
    # given / when
    error = parse_verdict(
        '{"verdict": "error", "error_category": "Logical  Leap"}', categories=CATEGORIES
    )
    correct = parse_verdict('{"verdict": "correct", "error_category": "factual"}')
    # then
    assert error.category == "logical leap"
    assert correct.category is None


def test_a_cut_off_answer_keeps_a_complete_category_only():
    # given answers cut off after the verdict
    complete = '{"verdict": "error", "error_category": "calculation", "rationale": "7*8 is'
    partial = '{"verdict": "error", "error_category": "calcul'
    # when / then
    assert parse_verdict(complete, categories=CATEGORIES).category == "calculation"
    assert parse_verdict(partial, categories=CATEGORIES).category is None


def test_braces_and_quotes_inside_strings_do_not_confuse_the_scanner():
    # given prose, then an object whose rationale contains braces and escaped quotes
    text = 'Sure. {"verdict": "correct", "rationale": "set {1,2} and \\"x}\\""} Done.'
    # when
    parsed = parse_verdict(text)
    # then
    assert parsed.verdict == "correct"
    assert parsed.rationale == 'set {1,2} and "x}"'


def test_reasoning_is_split_from_the_answer_and_never_parsed_as_the_verdict():
    # given a reasoning block that names a verdict, then an answer with another
    text = '<think>{"verdict": "correct"}</think>{"verdict": "abstain"}'
    # when
    reasoning, answer = split_reasoning(text)
    # then
    assert reasoning == '{"verdict": "correct"}' and answer == '{"verdict": "abstain"}'
    assert parse_verdict(text).verdict == "abstain"


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("Correct", "correct"),
        (" error ", "error"),
        ("ABSTAIN", "abstain"),
        ("wrong", None),
        ("yes", None),
        ("unknown", None),
        (True, None),
        (3, None),
    ],
)
def test_normalise_verdict_takes_only_the_three_words(word, expected):
    assert normalise_verdict(word) == expected
