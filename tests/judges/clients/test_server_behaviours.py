"""The client against the fake server's profiles of real servers' behaviours (issue 14)."""

import statistics

import pytest

from judges.clients.fake_server import _prompt_tokens, fake_server, free_port
from judges.clients.openai_compat import PARSE_NUDGE, ClientSettings, JudgeRequest, judge_many_sync
from judges.prompts import DEFAULT_TEMPLATE, render_messages


def _request(step: str, key: str | None = None, *, context=(), **kwargs) -> JudgeRequest:
    messages = render_messages(
        DEFAULT_TEMPLATE,
        question="What is 2 + 2?",
        options={"A": "4", "B": "5"},
        context_steps=list(context),
        step=step,
        categories=["reasoning", "factual"],
    )
    return JudgeRequest(
        key=key or step, messages=messages, categories=("reasoning", "factual"), **kwargs
    )


def _settings(server, **overrides) -> ClientSettings:
    values = {
        "base_url": server.base_url,
        "model": "fake-judge",
        "timeout_s": 5.0,
        "concurrency": 4,
        "max_retries": 3,
        "max_parse_retries": 1,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
    }
    values.update(overrides)
    return ClientSettings(**values)


def test_with_the_schema_enforced_a_garbage_model_still_gives_verdicts():
    # given a server whose model answers garbage unless the schema is enforced
    requests = [_request(f"2 + 2 = 4, step {i}") for i in range(12)]
    with fake_server(latency_ms=1, garbage_unless_enforced=True) as server:
        # when judged with plain JSON mode, then with json_schema
        loose = judge_many_sync(
            requests, settings=_settings(server, structured_output="json_object")
        )
        strict = judge_many_sync(
            requests, settings=_settings(server, structured_output="json_schema")
        )
    # then garbage never became a verdict, and the enforced run parsed every step
    assert {r.verdict for r in loose} == {"invalid"}
    assert all(r.raw_response is not None for r in loose)
    assert [r.verdict for r in strict] == ["correct"] * 12
    assert {r.structured for r in strict} == {"json_schema"}


def test_llama_cpp_python_500_on_json_schema_steps_down_to_its_schema_extension():
    # given llama-cpp-python's behaviour: json_schema → HTTP 500, json_object + schema works
    with fake_server(profile="llama-cpp-python", latency_ms=1, slots=None) as server:
        # when
        results = judge_many_sync(
            [_request(f"step {i}") for i in range(4)],
            settings=_settings(server, structured_output="json_schema", concurrency=1),
        )
        bodies = server.recent_requests()
    # then the batch stepped down once and every answer parsed under the schema extension
    assert [r.verdict for r in results] == ["correct"] * 4
    assert {r.structured for r in results} == {"json_object_schema"}
    kinds = [b.get("response_format", {}).get("type") for b in bodies]
    assert kinds.count("json_schema") == 1 and "schema" in bodies[-1]["response_format"]


def test_a_500_that_says_the_request_was_invalid_triggers_the_json_mode_fallback():
    # given a server without JSON mode that reports it as a 500
    with fake_server(latency_ms=1, json_mode_unsupported=True, invalid_as_500=True) as server:
        # when
        (result,) = judge_many_sync([_request("2 + 2 = 4")], settings=_settings(server))
    # then plain prompting answered at once: the refused call and the answered one, no retries
    assert result.ok and result.verdict == "correct" and not result.json_mode
    assert result.attempts == 2


@pytest.mark.parametrize("profile", ["llama-cpp-python", "openai"])
def test_a_context_overflow_fails_at_once_with_the_servers_reason(profile):
    # given a prompt longer than the model's context
    long_step = "word " * 3000
    with fake_server(
        profile=profile,
        latency_ms=1,
        context_tokens=500,
        slots=None,
        served_models=("local-model",),
    ) as server:
        # when
        (result,) = judge_many_sync(
            [_request(long_step, key="long")],
            settings=_settings(server, model="local-model", max_retries=6),
        )
        requests = server.stats()["requests"]
    # then one request, a permanent failure naming the reason
    assert not result.ok and result.failure == "context_overflow" and not result.retryable
    assert requests == 1 and result.attempts == 1
    assert "llama_decode returned 1" in result.error or "maximum context length" in result.error


def test_a_re_ask_that_overflows_keeps_the_first_answer_as_invalid():
    # given a garbage answer whose re-ask (answer + nudge added) no longer fits the context
    request = _request("2 + 2 = 4")
    fits = _prompt_tokens(request.messages)
    with fake_server(
        latency_ms=1, garbage_unless_enforced=True, context_tokens=fits + 5, invalid_as_500=True
    ) as server:
        # when
        (result,) = judge_many_sync(
            [request], settings=_settings(server, structured_output="none", max_parse_retries=2)
        )
    # then the first answer is stored as invalid with its raw text and the reason
    assert result.ok and result.verdict == "invalid"
    assert "re-ask failed" in result.error and "llama_decode returned 1" in result.error
    assert PARSE_NUDGE not in result.raw_response


def test_nul_characters_in_answers_are_kept_raw_and_parsed():
    # given a server whose answers hold raw NULs
    with fake_server(profile="nul", latency_ms=1) as server:
        # when
        (result,) = judge_many_sync([_request("2 + 2 = 5 [wrong]")], settings=_settings(server))
    # then the verdict parsed and the NUL is still in what the client returns (the store escapes)
    assert (
        result.verdict == "error" and "\x00" in result.raw_response and "\x00" in result.rationale
    )


def test_reasoning_is_kept_with_the_raw_response_and_not_taken_as_the_verdict():
    # given a reasoning model whose reasoning_content names another verdict
    with fake_server(latency_ms=1, reasoning=True) as server:
        # when
        (result,) = judge_many_sync([_request("2 + 2 = 5 [wrong]")], settings=_settings(server))
    # then
    assert result.verdict == "error" and result.reasoning
    assert result.raw_response.startswith("<think>") and "abstain" in result.raw_response


def test_a_connection_error_names_host_port_and_cause():
    # given nothing listening on a port
    port = free_port()
    settings = ClientSettings(
        base_url=f"http://127.0.0.1:{port}/v1", model="m", max_retries=0, timeout_s=2
    )
    # when
    (result,) = judge_many_sync([_request("x")], settings=settings)
    # then
    assert not result.ok
    assert f"127.0.0.1:{port}" in result.error
    assert "refused" in result.error.lower() or "connect call failed" in result.error.lower()


def test_concurrency_adapts_to_a_server_that_serves_one_at_a_time():
    # given a one-slot server (llama.cpp's default) and a judge sending 4 at a time
    requests = [_request(f"2 + 2 = 4, step {i}") for i in range(48)]
    with fake_server(latency_ms=40, jitter_ms=0, slots=1) as server:
        # when judged with and without adaptation
        fixed = judge_many_sync(requests, settings=_settings(server, adaptive_concurrency=False))
        adaptive = judge_many_sync(requests, settings=_settings(server))
    # then without it a call's latency includes the server's queue (about 4 × 40 ms); with it the
    # bound drops to one and the recorded latency is the server's own work again
    tail_fixed = statistics.median(r.latency_ms for r in fixed[-16:])
    tail_adaptive = statistics.median(r.latency_ms for r in adaptive[-16:])
    assert tail_fixed >= 120
    assert tail_adaptive < 80
    assert all(r.verdict == "correct" for r in adaptive)


def test_cached_prompt_tokens_are_reported_where_the_server_says_so():
    # given two steps of one trace: the second's prompt starts with the first's shared prefix
    first = _request("Step one.", key="a", context=[])
    second = _request("Step two.", key="b", context=["Step one."])
    with fake_server(latency_ms=1, report_cached=True) as server:
        # when
        results = judge_many_sync([first, second], settings=_settings(server, concurrency=1))
    # then the server's cached-token count is kept
    assert results[1].cached_tokens > 0


def test_a_server_that_wants_max_completion_tokens_gets_it():
    # given a server refusing max_tokens (OpenAI's reasoning models)
    with fake_server(latency_ms=1, wants_max_completion_tokens=True) as server:
        # when
        results = judge_many_sync(
            [_request(f"step {i}") for i in range(3)], settings=_settings(server, concurrency=1)
        )
        bodies = server.recent_requests()
    # then the client switched once, for the batch, without a retry counted as transient
    assert [r.verdict for r in results] == ["correct"] * 3
    assert sum("max_tokens" in b for b in bodies) == 1
    assert all("max_completion_tokens" in b for b in bodies[1:])


def test_the_adaptive_limit_holds_its_bound_and_a_cancelled_call_frees_its_slot():
    import asyncio

    from judges.clients.openai_compat import AdaptiveLimit

    async def scenario():
        limit = AdaptiveLimit(2)
        peak = 0

        async def call(hold: float):
            nonlocal peak
            async with limit:
                peak = max(peak, limit.in_use)
                await asyncio.sleep(hold)

        # a call cancelled while holding a slot (a hedge's loser) and one cancelled while waiting
        holders = [asyncio.create_task(call(10)) for _ in range(3)]
        await asyncio.sleep(0.01)
        for task in holders:
            task.cancel()
        await asyncio.gather(*holders, return_exceptions=True)
        assert limit.in_use == 0
        await asyncio.wait_for(asyncio.gather(*(call(0.01) for _ in range(6))), 1)
        return peak

    assert asyncio.run(scenario()) == 2
