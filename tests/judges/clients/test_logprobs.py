"""Token log-probabilities (issue 15): the verdict's error probability read from OpenAI-format
``logprobs.content``, asked for only when the judge says so, and a server without them."""

import math

import pytest

from judges.clients.fake_server import fake_logprobs, fake_server
from judges.clients.logprobs import verdict_error_probability, verdict_offset
from judges.clients.openai_compat import ClientSettings, JudgeRequest, judge_many_sync
from judges.clients.parsing import parse_verdict, stated_confidence
from judges.prompts import DEFAULT_TEMPLATE, render_messages


def _tok(token: str, p: float = 1.0, alternatives: dict[str, float] | None = None) -> dict:
    top = [{"token": t, "logprob": math.log(q)} for t, q in (alternatives or {token: p}).items()]
    return {"token": token, "logprob": math.log(p), "top_logprobs": top}


def _plain(text: str) -> list[dict]:
    return [_tok(ch) for ch in text]


# -- reading the probability -------------------------------------------------------------------


def test_the_verdict_token_gives_the_share_of_error_against_correct():
    # given "error" chosen with 0.7, "correct" 0.2, "abstain" 0.1 (left out)
    content = [
        *_plain('{"verdict": "'),
        _tok("error", 0.7, {"error": 0.7, "correct": 0.2, "abstain": 0.1}),
        *_plain('", "rationale": "x"}'),
    ]
    # when / then
    assert verdict_error_probability(content, verdict="error") == pytest.approx(0.7 / 0.9)


def test_a_verdict_split_into_tokens_is_read_at_its_first_token():
    # given a tokenizer that splits "error" as "err" + "or" and "correct" as "cor" + "rect"
    content = [
        _tok('{"'),
        _tok("verdict"),
        _tok('":'),
        _tok(' "'),
        _tok("err", 0.55, {"err": 0.55, "cor": 0.4, "Error": 0.05}),
        _tok("or"),
        _tok('"}'),
    ]
    # then the alternatives that begin either word count, whatever their letter case
    assert verdict_error_probability(content, verdict="error") == pytest.approx(0.6 / 1.0)


def test_a_token_that_carries_the_opening_quote_is_compared_after_it():
    # given the quote and the verdict in one token (' "correct'), alternatives with the quote
    content = [
        _tok("{"),
        _tok('"verdict"'),
        _tok(":"),
        _tok(' "correct', 0.8, {' "correct': 0.8, ' "error': 0.2, '"error': 0.5}),
        _tok('"}'),
    ]
    # then only alternatives sharing the lead count (the quote without its blank is another path)
    assert verdict_error_probability(content, verdict="correct") == pytest.approx(0.2)


def test_json_with_blanks_and_a_fence_is_found():
    # given a fenced answer with blanks around the colon and a rationale quoting the key first
    text_before = '```json\n{ "rationale": "the \\"verdict\\": \\"x\\" said", "Verdict" :  "'
    content = [*_plain(text_before), _tok("error", 0.9, {"error": 0.9, "correct": 0.1})]
    content += _plain('"}\n```')
    # then
    assert verdict_error_probability(content, verdict="error") == pytest.approx(0.9)
    assert verdict_offset('{"verdict" : "correct"}', verdict="correct") == 14


def test_no_probability_when_neither_verdict_is_among_the_alternatives():
    # given the top alternatives hold neither word (an "abstain" chosen, prose alternatives)
    content = [
        *_plain('{"verdict": "'),
        _tok("abstain", 0.9, {"abstain": 0.9, "unsure": 0.1}),
        *_plain('"}'),
    ]
    # then
    assert verdict_error_probability(content, verdict="abstain") is None
    # and none without a verdict field, tokens or content at all
    assert verdict_error_probability(_plain('{"answer": "error"}')) is None
    assert verdict_error_probability(_plain('{"verdict": "')) is None
    assert verdict_error_probability([]) is None
    assert verdict_error_probability(None) is None


def test_the_chosen_token_counts_when_the_server_lists_no_alternatives():
    # given top_logprobs missing at the verdict (top_logprobs 0)
    content = [*_plain('{"verdict":"'), {"token": "correct", "logprob": -0.1}, *_plain('"}')]
    # then the chosen word alone: certainly correct
    assert verdict_error_probability(content, verdict="correct") == 0.0


def test_the_fake_servers_tokens_give_back_its_probability():
    # given the fake's answer and log-probabilities for p = 0.83
    content = '{"verdict":"error","error_category":"reasoning","rationale":"r"}'
    lp = fake_logprobs(content, p_error=0.83, top_logprobs=3)["content"]
    # then the verdict is its own token and the alternatives give p back
    assert "".join(t["token"] for t in lp) == content
    assert "error" in [t["token"] for t in lp]
    assert verdict_error_probability(lp, verdict="error") == pytest.approx(0.83)
    # with one alternative only the chosen word is seen
    one = fake_logprobs(content, p_error=0.83, top_logprobs=1)["content"]
    assert verdict_error_probability(one, verdict="error") == 1.0


@pytest.mark.parametrize(
    ("answer", "confidence"),
    [
        ('{"verdict": "error", "confidence": 0.8}', 0.8),
        ('{"verdict": "error", "Confidence": 85}', 0.85),
        ('{"verdict": "correct", "confidence": "70%"}', 0.7),
        ('{"verdict": "correct", "confidence": "high"}', None),
        ('{"verdict": "correct", "confidence": 250}', None),
        ('{"verdict": "correct", "confidence": true}', None),
        ('{"verdict": "correct"}', None),
    ],
)
def test_a_stated_confidence_is_read_as_a_probability(answer, confidence):
    assert parse_verdict(answer).confidence == confidence


def test_stated_confidence_edges():
    assert stated_confidence(1) == 1.0 and stated_confidence(0) == 0.0
    assert stated_confidence(100) == 1.0 and stated_confidence(-0.1) is None
    assert stated_confidence(float("nan")) is None


# -- the client against the fake server ------------------------------------------------------


def _request(step: str, **kwargs) -> JudgeRequest:
    messages = render_messages(
        DEFAULT_TEMPLATE,
        question="What is 2 + 2?",
        options={"A": "4", "B": "5"},
        context_steps=[],
        step=step,
        categories=["reasoning"],
    )
    return JudgeRequest(key=step, messages=messages, categories=("reasoning",), **kwargs)


def _settings(server, **overrides) -> ClientSettings:
    values = {
        "base_url": server.base_url,
        "model": "fake-judge",
        "timeout_s": 5.0,
        "concurrency": 4,
        "max_retries": 2,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
    }
    return ClientSettings(**{**values, **overrides})


STEPS = ["2 + 2 = 4 [p_error=0.2]", "2 + 2 = 5 [p_error=0.83]", "Maybe 4 [p_error=0.5]"]


def test_a_judge_asking_for_log_probabilities_gets_the_verdicts_probabilities():
    # given
    with fake_server(latency_ms=1, jitter_ms=0) as server:
        # when
        results = judge_many_sync(
            [_request(s) for s in STEPS],
            settings=_settings(server, logprobs=True, top_logprobs=4),
        )
        bodies = server.recent_requests()
    # then each request asked for them, and each verdict has its probability
    assert all(b["logprobs"] is True and b["top_logprobs"] == 4 for b in bodies)
    assert [r.verdict for r in results] == ["correct", "error", "error"]
    assert [r.sample_error_probabilities for r in results] == [
        pytest.approx((0.2,)),
        pytest.approx((0.83,)),
        pytest.approx((0.5,)),
    ]
    assert all(r.logprobs_refused is None for r in results)


def test_every_sample_gets_its_probability_also_from_repeated_calls():
    # given a server that ignores n (asked 3 times) and steps whose samples disagree
    with fake_server(latency_ms=1, jitter_ms=0, ignore_n=True) as server:
        (result,) = judge_many_sync(
            [_request("2 + 2 = 5 [vote:e,c,e] [p_error=0.6]", n_samples=3)],
            settings=_settings(server, logprobs=True),
        )
    # then
    assert result.samples == ("error", "correct", "error")
    assert result.sample_error_probabilities == pytest.approx((0.6, 0.6, 0.6))


def test_without_the_setting_nothing_is_asked_or_read():
    with fake_server(latency_ms=1, jitter_ms=0) as server:
        (result,) = judge_many_sync([_request(STEPS[1])], settings=_settings(server))
        (body,) = server.recent_requests()
    assert "logprobs" not in body and "top_logprobs" not in body
    assert result.sample_error_probabilities == () and result.logprobs_refused is None


def test_a_server_that_returns_none_leaves_the_verdicts_as_they_are():
    with fake_server(latency_ms=1, jitter_ms=0, logprobs_ignored=True) as server:
        results = judge_many_sync(
            [_request(s) for s in STEPS], settings=_settings(server, logprobs=True)
        )
    assert [r.verdict for r in results] == ["correct", "error", "error"]
    assert all(r.ok and r.sample_error_probabilities == () for r in results)


@pytest.mark.parametrize("profile", [None, "llama-cpp-python"])
def test_a_server_that_refuses_them_is_asked_again_without_once_per_batch(profile):
    # given a server answering a request with logprobs 400 (500 with llama-cpp-python's habit)
    overrides = {"structured_output": "json_object_schema"} if profile else {}
    with fake_server(profile, latency_ms=1, jitter_ms=0, logprobs_unsupported=True) as server:
        # when
        results = judge_many_sync(
            [_request(s) for s in STEPS],
            settings=_settings(server, logprobs=True, concurrency=1, **overrides),
        )
        bodies = server.recent_requests()
    # then the run goes on: every verdict, none with probabilities, the refusal recorded
    assert [r.verdict for r in results] == ["correct", "error", "error"]
    assert all(r.ok and r.error is None for r in results)
    assert all(r.sample_error_probabilities == () for r in results)
    assert all("logprobs" in (r.logprobs_refused or "") for r in results)
    # one refused request, then none asks again, and no retry was counted
    assert ["logprobs" in b for b in bodies] == [True] + [False] * len(STEPS)
    assert sorted(r.attempts for r in results) == [1, 1, 2]


def test_a_stated_confidence_reaches_the_result_as_confidence_in_the_verdict():
    # given a server whose answers state a confidence, and 3 samples split 2-1 on one step
    with fake_server(latency_ms=1, jitter_ms=0, state_confidence=True) as server:
        results = judge_many_sync(
            [_request(STEPS[0]), _request("4 [vote:e,e,c] [p_error=0.9]", n_samples=3)],
            settings=_settings(server),
        )
    # then one sample: its confidence; several: the mean error probability they imply, as
    # confidence in the majority verdict (0.9, 0.9 and 1 - 0.1 → 0.9 on "error")
    assert results[0].verdict == "correct" and results[0].stated_confidence == pytest.approx(0.8)
    assert results[1].verdict == "error"
    assert results[1].stated_confidence == pytest.approx((0.9 + 0.9 + 0.9) / 3)


def test_a_first_error_request_does_not_ask_for_them():
    # given a whole-trace request (its answer is a step number, not a verdict word)
    trace = "<trace>\nStep 1: 2 + 2 = 4\nStep 2: so 5 [wrong]\n</trace>"
    request = JudgeRequest(
        key="t", messages=[{"role": "user", "content": trace}], answer="first_error", n_steps=2
    )
    with fake_server(latency_ms=1, jitter_ms=0) as server:
        (result,) = judge_many_sync([request], settings=_settings(server, logprobs=True))
        (body,) = server.recent_requests()
    # then
    assert result.first_error_step == 2 and "logprobs" not in body
    assert result.sample_error_probabilities == ()
