import asyncio
import threading
import time

import pytest

from judges.clients.fake_server import expected_verdict, fake_server
from judges.clients.openai_compat import (
    PARSE_NUDGE,
    ClientSettings,
    JudgeConfigError,
    JudgeRequest,
    aggregate_samples,
    backoff_delay,
    judge_many,
    judge_many_sync,
    judge_stream_sync,
    retry_after_from,
)
from judges.clients.parsing import ParsedVerdict
from judges.prompts import DEFAULT_TEMPLATE, render_messages


def _request(step: str, key: str | None = None, **kwargs) -> JudgeRequest:
    messages = render_messages(
        DEFAULT_TEMPLATE,
        question="What is 2 + 2?",
        options={"A": "4", "B": "5"},
        context_steps=[],
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
        "max_parse_retries": 2,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
    }
    values.update(overrides)
    return ClientSettings(**values)


def test_verdicts_follow_the_step_text():
    # given steps the fake judge marks correct, error and abstain
    steps = ["2 + 2 = 4", "2 + 2 = 5 [wrong]", "Let us think. [abstain]"]
    with fake_server(latency_ms=5) as server:
        # when
        results = judge_many_sync([_request(s) for s in steps], settings=_settings(server))
    # then
    assert [r.key for r in results] == steps
    assert [r.verdict for r in results] == [expected_verdict(s) for s in steps]
    assert all(r.ok and r.attempts == 1 and r.error is None for r in results)
    assert results[1].category == "reasoning"
    assert all(r.prompt_tokens > 0 and r.completion_tokens > 0 for r in results)
    assert all(r.json_mode and r.parse_methods == ("json",) for r in results)
    assert '"verdict"' in results[0].raw_response


@pytest.mark.parametrize("fault", ["500", "503", "429", "malformed", "drop", "prose"])
def test_each_fault_is_retried_and_recovered(fault):
    # given a server whose next answer is the fault
    with fake_server(latency_ms=1, retry_after_s="0") as server:
        server.push_faults([fault])
        # when
        (result,) = judge_many_sync([_request("2 + 2 = 5 [wrong]")], settings=_settings(server))
        stats = server.stats()
    # then one more call recovers the right verdict
    assert result.ok and result.verdict == "error"
    assert result.attempts == 2
    assert stats["by_fault"] == {fault: 1}


def test_truncated_answer_is_repaired_or_asked_again():
    # given an answer cut in half inside a valid envelope
    with fake_server(latency_ms=1) as server:
        server.push_faults(["truncated"])
        # when
        (result,) = judge_many_sync([_request("2 + 2 = 5 [wrong]")], settings=_settings(server))
    # then the verdict survives either by repair or by a re-ask
    assert result.ok and result.verdict == "error"
    assert result.parse_methods == ("prefix",) or result.attempts == 2


def test_retry_after_is_honoured():
    # given a 429 asking to wait one second, and a back-off that alone would be much shorter
    with fake_server(latency_ms=1, retry_after_s="1") as server:
        server.push_faults(["429"])
        started = time.monotonic()
        # when
        (result,) = judge_many_sync([_request("2 + 2 = 4")], settings=_settings(server))
        elapsed = time.monotonic() - started
    # then
    assert result.ok and result.attempts == 2
    assert 1.0 <= elapsed < 2.5


def test_hang_times_out_and_is_retried():
    # given a server that hangs far longer than the client's timeout
    with fake_server(latency_ms=1, hang_s=10) as server:
        server.push_faults(["hang"])
        started = time.monotonic()
        # when
        (result,) = judge_many_sync(
            [_request("2 + 2 = 4")], settings=_settings(server, timeout_s=0.5)
        )
        elapsed = time.monotonic() - started
    # then
    assert result.ok and result.verdict == "correct" and result.attempts == 2
    assert 0.5 <= elapsed < 3


def test_client_error_fails_at_once_without_retry():
    # given a 400 that is not about JSON mode
    with fake_server(latency_ms=1) as server:
        server.push_faults(["400"])
        # when
        (result,) = judge_many_sync([_request("2 + 2 = 4")], settings=_settings(server))
        stats = server.stats()
    # then
    assert not result.ok and result.verdict is None
    assert result.failure == "client_error" and not result.retryable
    assert result.attempts == 1 and stats["requests"] == 1
    assert "HTTP 400" in result.error and "injected bad request" in result.error


def test_transient_errors_beyond_max_retries_are_a_retryable_failure():
    # given more 500s than retries
    with fake_server(latency_ms=1) as server:
        server.push_faults(["500", "500", "500"])
        # when
        (result,) = judge_many_sync(
            [_request("2 + 2 = 4")], settings=_settings(server, max_retries=2)
        )
    # then
    assert not result.ok
    assert result.failure == "retries_exhausted" and result.retryable
    assert result.attempts == 3
    assert "HTTP 500" in result.error


def test_unparseable_answers_are_asked_again_then_stored_invalid_with_raw():
    # given a step the fake judge always answers in prose
    with fake_server(latency_ms=1) as server:
        # when
        (result,) = judge_many_sync(
            [_request("2 + 2 = 4 [unparseable]")], settings=_settings(server, max_parse_retries=2)
        )
        last_body = server.recent_requests()[-1]
    # then it is kept, not dropped, with every raw answer
    assert result.ok and result.verdict == "invalid"
    assert result.attempts == 3
    assert result.raw_response.count("After careful thought") == 3
    assert "unparseable after 2 re-asks" in result.error
    assert result.samples == ("invalid",)
    # and the re-ask showed the judge its unreadable answer
    assert last_body["messages"][-1]["content"] == PARSE_NUDGE
    assert last_body["messages"][-2]["role"] == "assistant"


def test_json_mode_falls_back_to_plain_prompting_for_the_batch():
    # given a server that rejects response_format
    with fake_server(latency_ms=1, json_mode_unsupported=True) as server:
        # when
        results = judge_many_sync(
            [_request(f"step {i}") for i in range(5)], settings=_settings(server, concurrency=1)
        )
        bodies = server.recent_requests()
    # then one rejected call, then plain prompting for everyone
    assert all(r.ok and r.verdict == "correct" for r in results)
    assert [r.attempts for r in results] == [2, 1, 1, 1, 1]
    assert not any(r.json_mode for r in results)
    assert sum("response_format" in b for b in bodies) == 1


@pytest.mark.parametrize("ignore_n", [False, True], ids=["n-honoured", "n-ignored"])
def test_samples_are_aggregated_by_majority(ignore_n):
    # given a step whose samples vote error, error, correct
    with fake_server(latency_ms=1, ignore_n=ignore_n) as server:
        # when
        results = judge_many_sync(
            [_request("x [vote:e,e,c]", n_samples=3), _request("y [vote:c,c,e]", n_samples=3)],
            settings=_settings(server, concurrency=1),
        )
        stats = server.stats()
    # then
    assert [r.verdict for r in results] == ["error", "correct"]
    assert results[0].samples == ("error", "error", "correct")
    assert results[0].raw_response.count("--- sample") == 3
    # one call each with n; without n: 1 + 2 calls, then repeated calls only
    assert stats["requests"] == (2 if not ignore_n else 3 + 3)


def test_sample_tie_is_abstain():
    # given two samples that disagree
    with fake_server(latency_ms=1) as server:
        # when
        (result,) = judge_many_sync(
            [_request("x [vote:c,e]", n_samples=2)], settings=_settings(server)
        )
    # then
    assert result.verdict == "abstain"
    assert result.samples == ("correct", "error")
    assert "tie" in result.rationale


def test_aggregate_ignores_unparseable_samples_and_takes_majority_category():
    # given
    def v(verdict, category=None):
        return ParsedVerdict(verdict, category, verdict, "json")

    samples = [v("error", "factual"), None, v("error", "reasoning"), v("error", "factual")]
    # when
    verdict, category, rationale = aggregate_samples(samples)
    # then
    assert (verdict, category, rationale) == ("error", "factual", "error")


def test_concurrency_bound_is_never_exceeded():
    # given many requests and a small bound
    with fake_server(latency_ms=20, jitter_ms=10) as server:
        # when
        results = judge_many_sync(
            [_request(f"step {i}") for i in range(120)], settings=_settings(server, concurrency=6)
        )
        stats = server.stats()
    # then
    assert len(results) == 120 and all(r.ok for r in results)
    assert stats["max_in_flight"] == 6


def test_concurrency_bound_holds_with_faults_and_samples():
    # given faults (no hangs: a hung handler outlives the client's timeout) and repeated samples
    with fake_server(
        latency_ms=5,
        fault_rate=0.3,
        faults=("500", "429", "drop", "malformed"),
        retry_after_s="0",
        ignore_n=True,
    ) as server:
        # when
        results = judge_many_sync(
            [_request(f"step {i}", n_samples=2) for i in range(60)],
            settings=_settings(server, concurrency=5, max_retries=10),
        )
        stats = server.stats()
    # then
    assert all(r.ok for r in results)
    assert stats["max_in_flight"] <= 5


def test_api_key_is_sent_as_bearer_and_never_in_errors(monkeypatch):
    # given a key in an environment variable named in the settings
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("STEPAUDIT_TEST_JUDGE_KEY", secret)
    with fake_server(latency_ms=1) as server:
        settings = _settings(
            server, api_key_env="STEPAUDIT_TEST_JUDGE_KEY", max_retries=0, concurrency=1
        )
        server.push_faults(["400", "500"])
        # when
        results = judge_many_sync([_request("a"), _request("b")], settings=settings)
        stats = server.stats()
    # then
    assert stats["auth_headers"] == {f"Bearer {secret}": 2}
    assert [r.failure for r in results] == ["client_error", "retries_exhausted"]
    assert all(secret not in repr(r) for r in results)
    assert secret not in repr(settings)


def test_key_in_an_error_body_is_scrubbed(monkeypatch):
    # given a server that echoes the key back in its error (some proxies do)
    from aiohttp import web

    from judges.clients.fake_server import FakeServer

    secret = "sk-echoed-key-42"
    monkeypatch.setenv("STEPAUDIT_TEST_JUDGE_KEY", secret)

    async def echo(self: FakeServer, request: web.Request) -> web.Response:
        return web.Response(status=401, text=f"bad key {request.headers['Authorization']}")

    monkeypatch.setattr(FakeServer, "chat", echo)
    with fake_server(latency_ms=1) as server:
        # when
        (result,) = judge_many_sync(
            [_request("a")], settings=_settings(server, api_key_env="STEPAUDIT_TEST_JUDGE_KEY")
        )
    # then
    assert result.failure == "client_error"
    assert secret not in result.error and "***" in result.error


def test_missing_key_variable_is_a_config_error_naming_the_variable(monkeypatch):
    # given
    monkeypatch.delenv("STEPAUDIT_MISSING_KEY", raising=False)
    settings = ClientSettings(
        base_url="http://127.0.0.1:9/v1", model="m", api_key_env="STEPAUDIT_MISSING_KEY"
    )
    # when / then
    with pytest.raises(JudgeConfigError, match="STEPAUDIT_MISSING_KEY"):
        judge_many_sync([_request("a")], settings=settings)


def test_authorization_in_extra_headers_is_rejected():
    # when / then
    with pytest.raises(ValueError, match="api_key_env"):
        ClientSettings(base_url="x", model="m", extra_headers={"Authorization": "Bearer k"})


def test_should_stop_stops_launching_new_requests():
    # given a long batch and a stop flag raised after a few results
    seen = []
    with fake_server(latency_ms=20) as server:
        settings = _settings(server, concurrency=2, stop_poll_s=0.0)
        # when
        results = judge_many_sync(
            [_request(f"step {i}") for i in range(200)],
            settings=settings,
            on_result=seen.append,
            should_stop=lambda: len(seen) >= 4,
        )
        requests_sent = server.stats()["requests"]
    # then in-flight calls finished, nothing else was sent, stopped ones are reported
    done = [r for r in results if r.ok]
    stopped = [r for r in results if r.failure == "stopped"]
    assert len(results) == 200
    assert 4 <= len(done) <= 8 and len(done) + len(stopped) == 200
    assert len(seen) == len(done) and requests_sent == len(done)


def test_sync_on_result_runs_in_the_calling_thread():
    # given
    threads = set()
    with fake_server(latency_ms=1) as server:
        # when
        judge_many_sync(
            [_request(f"s{i}") for i in range(10)],
            settings=_settings(server),
            on_result=lambda r: threads.add(threading.get_ident()),
        )
    # then (so Django ORM calls in on_result are safe)
    assert threads == {threading.get_ident()}


def test_async_on_result_is_awaited_and_its_error_propagates():
    # given an async callback that fails on the third result
    calls = []

    async def on_result(result):
        calls.append(result.key)
        if len(calls) == 3:
            raise RuntimeError("database down")

    # when / then
    with fake_server(latency_ms=1) as server, pytest.raises(RuntimeError, match="database down"):
        asyncio.run(
            judge_many(
                [_request(f"s{i}") for i in range(50)],
                settings=_settings(server, concurrency=1),
                on_result=on_result,
            )
        )
    assert len(calls) == 3


def test_sync_on_result_error_propagates_after_in_flight_calls():
    # given
    def on_result(result):
        raise RuntimeError("database down")

    with fake_server(latency_ms=5) as server:
        # when / then
        with pytest.raises(RuntimeError, match="database down"):
            judge_many_sync(
                [_request(f"s{i}") for i in range(100)],
                settings=_settings(server, stop_poll_s=0.01),
                on_result=on_result,
            )
        assert server.stats()["requests"] < 100


def test_backoff_is_full_jitter_and_capped():
    # given
    settings = ClientSettings(base_url="x", model="m", backoff_base_s=0.5, backoff_max_s=4)
    # when
    delays = [backoff_delay(10, settings) for _ in range(200)]
    # then
    assert all(0 <= d <= 4 for d in delays)
    assert min(delays) < 1 and max(delays) > 3
    assert 2.0 <= backoff_delay(0, settings, retry_after_s=2.0) <= 2.3


def test_requests_log_lets_tests_inspect_prompts():
    # given
    with fake_server(latency_ms=1) as server:
        # when
        judge_many_sync([_request("the step text")], settings=_settings(server))
        (body,) = server.recent_requests()
    # then
    assert body["model"] == "fake-judge"
    assert body["response_format"] == {"type": "json_object"}
    assert "the step text" in body["messages"][1]["content"]


def test_a_stream_is_fed_on_demand_from_the_calling_thread():
    # given a feed of 100 requests handed out in small batches
    todo = [_request(f"stream step {i}") for i in range(100)]
    fed_in: set[int] = set()
    results = []

    def feed(n: int) -> list[JudgeRequest]:
        fed_in.add(threading.get_ident())
        batch = todo[:n]
        del todo[:n]
        return batch

    with fake_server(latency_ms=5) as server:
        # when
        stats = judge_stream_sync(
            feed, settings=_settings(server, concurrency=8), feed_size=4, on_result=results.append
        )
        max_in_flight = server.stats()["max_in_flight"]
    # then every request was judged once, the feed ran here, the bound held
    assert sorted(r.key for r in results) == sorted(f"stream step {i}" for i in range(100))
    assert all(r.ok for r in results) and stats["requests"] == 100
    assert fed_in == {threading.get_ident()}
    assert max_in_flight <= 8


def test_a_stream_stops_pulling_when_asked():
    # given an endless feed and a stop after a few results
    results = []
    fed = []

    def feed(n: int) -> list[JudgeRequest]:
        batch = [_request(f"endless {len(fed) + i}") for i in range(n)]
        fed.extend(batch)
        return batch

    with fake_server(latency_ms=10) as server:
        settings = _settings(server, concurrency=2, stop_poll_s=0.0)
        # when
        judge_stream_sync(
            feed, settings=settings, on_result=results.append, should_stop=lambda: len(results) >= 5
        )
        sent = server.stats()["requests"]
    # then it ended, having sent only what was in flight when the stop came
    assert 5 <= len(results) <= 10 and sent == len(results)
    assert len(fed) < 40


def test_a_hung_call_at_the_tail_is_hedged_and_the_first_answer_wins():
    # given the first request hangs (3 s, under a 5 s timeout) and 39 quick ones follow
    with fake_server(latency_ms=5, jitter_ms=0, hang_s=3) as server:
        server.push_faults(["hang"])
        started = time.monotonic()
        # when
        results = judge_many_sync(
            [_request(f"tail step {i}") for i in range(40)], settings=_settings(server)
        )
        elapsed = time.monotonic() - started
        stats = server.stats()
    # then the hung one was sent again once the rest were done, and answered long before 3 s
    hedged = [r for r in results if r.hedged]
    assert all(r.ok for r in results)
    assert [r.key for r in hedged] == ["tail step 0"] and hedged[0].attempts == 2
    assert elapsed < 2.0
    assert stats["requests"] == 41 and stats["max_in_flight"] <= 4


def test_hedging_off_waits_for_the_hung_call():
    # given the same hang (1 s, then a 504) and hedging turned off
    with fake_server(latency_ms=5, jitter_ms=0, hang_s=1) as server:
        server.push_faults(["hang"])
        started = time.monotonic()
        # when
        results = judge_many_sync(
            [_request(f"tail step {i}") for i in range(40)],
            settings=_settings(server, hedge_after_latencies=0),
        )
        elapsed = time.monotonic() - started
    # then nothing was duplicated: the hung call was waited for, then retried after its 504
    assert not any(r.hedged for r in results)
    assert results[0].attempts == 2 and elapsed >= 1.0


def _judge_async(requests, settings):
    """judge_many in a fresh loop; returns (results in completion order, stats)."""
    done: list = []
    stats: dict[str, int] = {}
    asyncio.run(judge_many(requests, settings=settings, on_result=done.append, stats=stats))
    return done, stats


def test_a_hung_call_mid_run_is_hedged_answered_and_its_slot_freed():
    # given the first of 120 requests hangs (4.5 s, under a 5 s timeout); the rest take 20 ms
    with fake_server(latency_ms=20, jitter_ms=0, hang_s=4.5) as server:
        server.push_faults(["hang"])
        started = time.monotonic()
        # when
        done, stats = _judge_async(
            [_request(f"mid step {i}") for i in range(120)], settings=_settings(server)
        )
        elapsed = time.monotonic() - started
        server_stats = server.stats()
    # then it was sent again while most requests were still to come, and answered
    keys = [r.key for r in done]
    hedged = [r for r in done if r.hedged]
    assert [r.key for r in hedged] == ["mid step 0"] and hedged[0].ok and hedged[0].attempts == 2
    assert keys.index("mid step 0") < 60  # mid-run, not at the tail
    # well before the hang would have ended (the bounds leave room for a loaded CI machine)
    assert hedged[0].elapsed_ms < 2500 and elapsed < 3.5
    assert all(r.ok for r in done) and stats == {"requests": 120, "hedges": 1}
    # within the concurrency bound, the hung call cancelled (one duplicate, no retry)
    assert server_stats["requests"] == 121 and server_stats["max_in_flight"] <= 4


def test_hedging_is_capped():
    # given six hung calls (1 s, then a 504) among 40 and a cap of at least 2 duplicates
    with fake_server(latency_ms=20, jitter_ms=0, hang_s=1) as server:
        server.push_faults(["hang"] * 6)
        # when
        done, stats = _judge_async(
            [_request(f"capped step {i}") for i in range(40)],
            settings=_settings(server, concurrency=8, hedge_max_fraction=0.015),
        )
        server_stats = server.stats()
    # then two were hedged; the other four waited for their 504 and were retried
    assert stats["hedges"] == 2 and sum(r.hedged for r in done) == 2
    assert all(r.ok for r in done)
    assert sorted(r.attempts for r in done) == [1] * 34 + [2] * 6
    assert server_stats["requests"] == 40 + 2 + 4 and server_stats["max_in_flight"] <= 8


def test_a_call_sleeping_on_retry_after_is_never_hedged():
    # given the first request gets a 429 with Retry-After 1 s; 120 quick ones follow
    with fake_server(latency_ms=20, jitter_ms=0, retry_after_s="1") as server:
        server.push_faults(["429"])
        # when
        done, stats = _judge_async(
            [_request(f"patient step {i}") for i in range(120)], settings=_settings(server)
        )
        server_stats = server.stats()
    # then it waited the full second and was not duplicated
    (first,) = [r for r in done if r.key == "patient step 0"]
    assert first.ok and not first.hedged and first.attempts == 2 and first.elapsed_ms >= 1000
    assert stats["hedges"] == 0 and server_stats["requests"] == 121


def test_retry_after_ms_is_honoured_before_the_rounded_seconds():
    # given a 429 saying 300 ms in retry-after-ms and, rounded up as it must be, 1 s in Retry-After
    with fake_server(latency_ms=1, retry_after_ms=300) as server:
        server.push_faults(["429"])
        started = time.monotonic()
        # when
        (result,) = judge_many_sync([_request("2 + 2 = 4")], settings=_settings(server))
        elapsed = time.monotonic() - started
    # then the client waited the 300 ms asked for, not the whole second
    assert result.ok and result.attempts == 2
    assert 0.3 <= elapsed < 0.9


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "250", "Retry-After": "1"}, 0.25),
        ({"x-ms-retry-after-ms": "40"}, 0.04),
        ({"retry-after-ms": "nan", "Retry-After": "2"}, 2.0),
        ({"retry-after-ms": "-5"}, 0.0),
        ({"retry-after-ms": "", "Retry-After": "3"}, 3.0),
        ({}, None),
    ],
)
def test_retry_after_from_headers(headers, expected):
    assert retry_after_from(headers) == expected


def test_at_the_end_a_failed_call_retries_at_once_on_an_idle_slot(monkeypatch):
    # given back-offs that always take their maximum (2 s), and a 500 then a 429 (Retry-After
    # 1 s) on the last requests of a run: nothing left to hand out, slots idle
    from judges.clients import openai_compat

    monkeypatch.setattr(openai_compat.random, "uniform", lambda a, b: b)
    slow = {"backoff_base_s": 2.0, "backoff_max_s": 2.0}
    with fake_server(latency_ms=5, jitter_ms=0, retry_after_s="1") as server:
        server.push_faults(["500", "429"])
        # when
        done, _ = _judge_async(
            [_request(f"last step {i}") for i in range(2)], settings=_settings(server, **slow)
        )
    # then the 500 was retried without its 2 s back-off; the Retry-After was honoured
    by_key = {r.key: r for r in done}
    assert all(r.ok and r.attempts == 2 for r in done)
    assert by_key["last step 0"].elapsed_ms < 500
    assert by_key["last step 1"].elapsed_ms >= 1000


def test_mid_run_a_failed_call_keeps_its_back_off(monkeypatch):
    # given the same 2 s back-off and a 500 on the first of 40 requests (more to hand out)
    from judges.clients import openai_compat

    monkeypatch.setattr(openai_compat.random, "uniform", lambda a, b: b)
    with fake_server(latency_ms=5, jitter_ms=0) as server:
        server.push_faults(["500"])
        # when
        done, _ = _judge_async(
            [_request(f"busy step {i}") for i in range(40)],
            settings=_settings(server, backoff_base_s=2.0, backoff_max_s=2.0),
        )
    # then it slept its back-off: the server's protection while the run was busy
    (first,) = [r for r in done if r.key == "busy step 0"]
    assert first.ok and first.attempts == 2 and first.elapsed_ms >= 2000
