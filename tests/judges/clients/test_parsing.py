import pytest

from judges.clients.parsing import ParseError, normalise_verdict, parse_verdict

CATEGORIES = ["factual", "logical leap", "calculation"]


@pytest.mark.parametrize(
    ("text", "verdict", "method"),
    [
        ('{"verdict": "correct", "rationale": "ok"}', "correct", "json"),
        ('```json\n{"verdict": "error"}\n```', "error", "fenced"),
        ('```\n{"label": "abstain"}\n```', "abstain", "fenced"),
        ('The answer is: {"verdict": "wrong", "note": "{x}"} as requested.', "error", "embedded"),
        ('{"verdict": "correct", "rationale": "cut off mid-sent', "correct", "truncated"),
        ('{"verdict": "error", "rationale": "x", "error_cat', "error", "truncated"),
        ("Incorrect.", "error", "bare_word"),
        ("  cannot assess ", "abstain", "bare_word"),
        ("Verdict: **wrong**\nRationale: the sign flips", "error", "key_value"),
        ('[{"verdict": "correct"}]', "correct", "json"),
    ],
    ids=[
        "strict",
        "fenced-json",
        "fenced-bare",
        "embedded",
        "truncated-string",
        "truncated-key",
        "bare-word",
        "bare-phrase",
        "key-value",
        "list",
    ],
)
def test_parse_verdict_accepts_common_shapes(text, verdict, method):
    # given an answer in one of the shapes judges produce
    # when it is parsed
    parsed = parse_verdict(text)
    # then the verdict and the strategy that found it are reported
    assert parsed.verdict == verdict
    assert parsed.method == method


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("Correct", "correct"),
        ("INCORRECT", "error"),
        ("wrong", "error"),
        ("Cannot assess", "abstain"),
        ("unknown", "abstain"),
        ("abstain", "abstain"),
        ("not-correct", "error"),
        ("partially correct", None),
        (True, "correct"),
        (3, None),
    ],
)
def test_normalise_verdict_maps_synonyms(word, expected):
    # given / when / then
    assert normalise_verdict(word) == expected


def test_keys_are_case_insensitive_with_synonyms():
    # given keys in another case and synonym names
    text = '{"Label": "Wrong", "Error-Category": "FACTUAL", "Explanation": "Paris is not in Spain"}'
    # when
    parsed = parse_verdict(text, categories=CATEGORIES)
    # then
    assert parsed.verdict == "error"
    assert parsed.category == "factual"
    assert parsed.rationale == "Paris is not in Spain"


def test_unknown_category_is_kept_raw_not_invented():
    # given a category outside the audit's list
    text = '{"verdict": "error", "error_category": "hallucination"}'
    # when
    parsed = parse_verdict(text, categories=CATEGORIES)
    # then
    assert parsed.category is None
    assert parsed.category_raw == "hallucination"


def test_category_is_dropped_when_verdict_is_not_error():
    # given / when
    parsed = parse_verdict('{"verdict": "correct", "error_category": "factual"}')
    # then
    assert parsed.category is None


def test_nested_verdict_object_is_found():
    # given / when
    parsed = parse_verdict('{"assessment": {"answer": "Incorrect", "reason": "r"}}')
    # then
    assert (parsed.verdict, parsed.rationale) == ("error", "r")


def test_braces_and_quotes_inside_strings_do_not_confuse_the_scanner():
    # given prose, then an object whose rationale contains braces and escaped quotes
    text = 'Sure. {"verdict": "correct", "rationale": "set {1,2} and \\"x}\\""} Done.'
    # when
    parsed = parse_verdict(text)
    # then
    assert parsed.verdict == "correct"
    assert parsed.rationale == 'set {1,2} and "x}"'


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "After careful thought, the step seems to hold up.",
        '{"verdict": "erro',
        '{"verdict": "partially correct"}',
        '{"foo": "bar"}',
        "verdict: correct\nverdict: wrong",
    ],
    ids=[
        "empty",
        "blank",
        "prose",
        "truncated-inside-verdict",
        "unknown-word",
        "no-key",
        "contradiction",
    ],
)
def test_unreadable_answers_raise_parse_error_with_reason(text):
    # given an answer without a confident verdict
    # when / then
    with pytest.raises(ParseError) as info:
        parse_verdict(text)
    assert info.value.reason
