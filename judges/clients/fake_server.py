"""A fake OpenAI-compatible chat-completions server for tests and benchmarks.

Run it as a process::

    python -m judges.clients.fake_server --port 8765 --latency-ms 100 --fault-rate 0.05

or in-process from a test::

    with fake_server(latency_ms=0) as server:
        judge_many_sync(..., settings=ClientSettings(base_url=server.base_url, ...))
        assert server.stats()["max_in_flight"] <= 8

Verdicts are deterministic functions of the step text (see ``expected_verdict``) so tests can
check what a run stored. The step is the text between ``<step>`` and ``</step>`` in the first
user message (the default prompt delimits it so), else that whole message. Markers in the step:

``[wrong]`` → error, ``[abstain]`` → abstain, ``[unparseable]`` → always prose,
``[vote:c,e,a]`` → the k-th sample generated for this prompt answers the k-th listed verdict
(cycling), which drives the n-samples tests; ``[p_error=0.83]`` → the judge's probability that
the step is an error (its answer is error at 0.5 and above, unless another marker says).

Log-probabilities: a request with ``"logprobs": true`` gets ``choices[i].logprobs.content`` in
OpenAI's format, the answer split into plausible tokens (the verdict word one token) and, at the
verdict, the ``top_logprobs`` alternatives "error", "correct" and "abstain" with probabilities
``0.98 p``, ``0.98 (1 - p)`` and 0.02, p from ``expected_error_probability`` (the marker, else
derived from a hash of the step, on the side of the verdict given). ``logprobs_unsupported``
answers such a request 400 (as servers without them do), ``logprobs_ignored`` answers without.
``state_confidence`` adds a ``confidence`` in its verdict to each answer (p or 1 - p).

A first-error request (the whole trace inside ``<trace>``, one ``Step k: …`` line per step) is
answered with the first step marked ``[wrong]``, or ``none`` (``expected_first_error``);
``[fe-out-of-range]`` anywhere makes it name a step past the last; ``[unparseable]`` prose.

Otherwise the ``--verdict-policy`` decides: ``marker`` (default: correct) or ``hash:RATE`` (error
for a stable ``RATE`` share of step texts, by sha256).

Faults: with probability ``--fault-rate`` a request gets one of ``--faults`` (uniformly), and
``push_faults`` / ``POST /_faults`` queues faults for the next requests, for deterministic tests.
Kinds: ``500``, ``503``, ``429`` (with ``Retry-After``, and ``retry-after-ms`` when
``--retry-after-ms`` is given), ``400``, ``malformed`` (a 200 whose body is
not JSON), ``truncated`` (valid envelope, the answer cut in half), ``prose`` (no JSON at all),
``hang`` (answers nothing for ``--hang-s``), ``drop`` (closes the connection).

Server behaviours met in the field (issue 14), each a config field, bundled as ``--profile``:

``slots=N``                  serves N calls at a time, the rest wait in its queue (llama.cpp: 1)
``json_schema_unsupported``  ``response_format`` type ``json_schema`` → HTTP 500
                             (llama-cpp-python 0.3); its ``json_object`` + ``schema`` works
``invalid_as_500``           validation errors (unsupported mode, context overflow) are 500s
``context_tokens=N``         a prompt over N tokens → "llama_decode returned 1" (500) or
                             OpenAI's 400 "maximum context length"
``nul_answers``              answers hold raw NUL characters (in the rationale)
``garbage_unless_enforced``  without a schema mode it honours, the answer is random-model
                             garbage (truncated JSON, prose, control characters)
``served_models``            what ``/models`` lists; any model name is answered (echoed)
                             unless ``reject_unknown_model``
``ignore_n``                 one choice whatever ``n`` asks
``report_cached``            ``usage.prompt_tokens_details.cached_tokens``: the prompt prefix
                             shared with the previous call, as a prefix cache would reuse it
``reasoning``                a ``reasoning_content`` field beside the answer (DeepSeek-R1 style)

Profiles (``PROFILES``): ``llama-cpp-python``, ``llama-server``, ``vllm``, ``ollama``,
``openai``, ``nul``.

Control endpoints: ``GET /_stats``, ``POST /_reset``, ``GET /_requests`` (the last N bodies),
``POST /_faults`` (a JSON list of fault kinds), ``GET /_timeline?bucket_s=0.1`` (calls in flight
over time and slot-seconds held by hung calls, for benchmarks).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import hashlib
import math
import random
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

# The fault picked for a request, kept on it for the timeline (see ``FakeServer.chat``).
FAULT_KEY = web.RequestKey("fault", str)
FAULT_KINDS = ("500", "503", "429", "400", "malformed", "truncated", "prose", "hang", "drop")
DEFAULT_FAULTS = ("500", "429", "malformed", "truncated", "hang", "drop")

_STEP_RE = re.compile(r"<step>\s*(.*?)\s*</step>", re.DOTALL)
_TRACE_RE = re.compile(r"<trace>\s*(.*?)\s*</trace>", re.DOTALL)
_TRACE_STEP_RE = re.compile(r"^Step (\d+): ?(.*)$", re.M)
_VOTE_RE = re.compile(r"\[vote:([a-z,]+)\]")
_VOTE_CODES = {"c": "correct", "e": "error", "a": "abstain"}
_P_ERROR_RE = re.compile(r"\[p_error=([01](?:\.\d+)?)\]")
# Plausible tokens: words, a blank with the word after it, runs of punctuation.
_TOKEN_RE = re.compile(r" ?[A-Za-z]+|\d+|\s+|[^A-Za-z\d\s]+")
ABSTAIN_MASS = 0.02  # the fake's probability of "abstain" at the verdict token


@dataclass
class FakeConfig:
    latency_ms: float = 100.0
    jitter_ms: float = 10.0  # uniform ±jitter around the latency
    fault_rate: float = 0.0
    faults: tuple[str, ...] = DEFAULT_FAULTS
    json_mode_unsupported: bool = False
    ignore_n: bool = False  # answer one choice whatever ``n`` asks, like some servers
    verdict_policy: str = "marker"
    retry_after_s: str = "1"
    # When set, a 429 also carries ``retry-after-ms`` (as OpenAI and Azure send it), and
    # ``Retry-After`` is that rounded up to whole seconds, as delta-seconds must be.
    retry_after_ms: int | None = None
    hang_s: float = 30.0
    keep_requests: int = 200
    seed: int = 0
    slots: int | None = None
    json_schema_unsupported: bool = False
    invalid_as_500: bool = False
    context_tokens: int | None = None
    nul_answers: bool = False
    garbage_unless_enforced: bool = False
    served_models: tuple[str, ...] = ("fake-judge",)
    reject_unknown_model: bool = False
    report_cached: bool = False
    reasoning: bool = False
    wants_max_completion_tokens: bool = False  # refuses max_tokens, like OpenAI's o-series
    # Which schema modes the server enforces (when garbage_unless_enforced).
    enforces: tuple[str, ...] = ("json_schema",)
    logprobs_unsupported: bool = False  # "logprobs" in a request → 400, like some servers
    logprobs_ignored: bool = False  # "logprobs" asked, none returned
    # Answers state a "confidence" in their verdict: p (error) or 1 - p (correct) with p from
    # ``expected_error_probability``.
    state_confidence: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.faults) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kind(s): {', '.join(sorted(unknown))}")
        _policy_rate(self.verdict_policy)


# Behaviours of real servers (see the module docstring), for ``fake_server(profile=...)``.
PROFILES: dict[str, dict[str, Any]] = {
    "llama-cpp-python": {
        "slots": 1,
        "json_schema_unsupported": True,
        "invalid_as_500": True,
        "ignore_n": True,
        "served_models": ("local-model",),
        "context_tokens": 2048,
        "garbage_unless_enforced": True,
        "enforces": ("json_object_schema", "grammar"),
    },
    "llama-server": {
        "slots": 1,
        "invalid_as_500": True,
        "ignore_n": True,
        "context_tokens": 4096,
        "report_cached": True,
        "garbage_unless_enforced": True,
        "enforces": ("json_schema", "json_object_schema", "grammar"),
    },
    "vllm": {
        "reject_unknown_model": True,
        "report_cached": True,
        "context_tokens": 8192,
        "enforces": ("json_schema", "guided_json"),
    },
    "ollama": {"ignore_n": True, "enforces": ("ollama_format", "json_schema")},
    "openai": {"report_cached": True, "reject_unknown_model": True, "context_tokens": 128000},
    "nul": {"nul_answers": True},
}

_SCHEMA_MODES = {
    "json_schema": lambda b: (b.get("response_format") or {}).get("type") == "json_schema",
    "json_object_schema": lambda b: (
        (b.get("response_format") or {}).get("type") == "json_object"
        and "schema" in (b.get("response_format") or {})
    ),
    "ollama_format": lambda b: isinstance(b.get("format"), dict),
    "guided_json": lambda b: "guided_json" in b,
    "grammar": lambda b: "grammar" in b,
}
_GARBAGE = (
    '{ ", unknown',
    '"} yes',
    '{"verdict": "corr',
    "The step is fine I think",
    "\x01\x02{{",
    '```json\n{"verdict"',
    "",
)


def config_for(profile: str | None = None, **overrides: Any) -> FakeConfig:
    """A ``FakeConfig`` from a profile's behaviours, with ``overrides`` on top."""
    if profile is not None and profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; one of {', '.join(PROFILES)}")
    return FakeConfig(**{**(PROFILES[profile] if profile else {}), **overrides})


def _policy_rate(policy: str) -> float | None:
    if policy == "marker":
        return None
    if policy.startswith("hash:"):
        rate = float(policy.split(":", 1)[1])
        if not 0 <= rate <= 1:
            raise ValueError("hash:RATE needs 0 <= RATE <= 1")
        return rate
    raise ValueError(f"unknown verdict policy {policy!r}; use 'marker' or 'hash:RATE'")


def step_text(messages: list[dict[str, Any]]) -> str:
    """The step the fake judges: inside <step> tags of the first user message, else all of it."""
    first_user = next((m for m in messages if m.get("role") == "user"), None)
    content = str(first_user.get("content", "")) if first_user else ""
    match = _STEP_RE.search(content)
    return match.group(1) if match else content


def expected_verdict(step: str, *, policy: str = "marker", sample_index: int = 0) -> str:
    """The verdict the fake server gives ``step`` — tests use it to check stored verdicts."""
    vote = _VOTE_RE.search(step)
    if vote:
        codes = vote.group(1).split(",")
        return _VOTE_CODES[codes[sample_index % len(codes)]]
    if "[wrong]" in step:
        return "error"
    if "[abstain]" in step:
        return "abstain"
    marked = _P_ERROR_RE.search(step)
    if marked:
        return "error" if float(marked.group(1)) >= 0.5 else "correct"
    rate = _policy_rate(policy)
    if rate is not None:
        bucket = int.from_bytes(hashlib.sha256(step.encode()).digest()[:4], "big") % 10_000
        return "error" if bucket < rate * 10_000 else "correct"
    return "correct"


def expected_error_probability(step: str, verdict: str) -> float:
    """The fake judge's probability that ``step`` is an error, as its log-probabilities say:
    the ``[p_error=X]`` marker, else a stable value from the step's hash on the side of
    ``verdict`` (0.55..0.95 for error, 0.05..0.45 for correct, 0.5 otherwise)."""
    marked = _P_ERROR_RE.search(step)
    if marked:
        return min(1.0, float(marked.group(1)))
    if verdict not in ("error", "correct"):
        return 0.5
    bucket = int.from_bytes(hashlib.sha256(step.encode()).digest()[4:8], "big") % 1000
    spread = 0.05 + 0.4 * bucket / 1000
    return 1.0 - spread if verdict == "error" else spread


def fake_logprobs(content: str, *, p_error: float, top_logprobs: int) -> dict[str, Any]:
    """``choices[i].logprobs`` for ``content`` in OpenAI's format (see the module doc)."""
    tokens = _TOKEN_RE.findall(content)
    offset = content.find('"verdict":"')
    verdict_at = offset + len('"verdict":"') if offset >= 0 else -1
    k = max(0, min(20, top_logprobs))
    out: list[dict[str, Any]] = []
    position = 0
    for token in tokens:
        entry: dict[str, Any]
        if position == verdict_at:
            alternatives = {
                "error": 0.98 * p_error,
                "correct": 0.98 * (1.0 - p_error),
                "abstain": ABSTAIN_MASS,
            }
            alternatives.setdefault(token, ABSTAIN_MASS)
            ranked = sorted(alternatives.items(), key=lambda kv: -kv[1])
            entry = {
                "token": token,
                "logprob": _log(alternatives[token]),
                "bytes": list(token.encode()),
                "top_logprobs": [
                    {"token": t, "logprob": _log(q), "bytes": list(t.encode())}
                    for t, q in ranked[:k]
                    if q > 0
                ],
            }
        else:
            entry = {
                "token": token,
                "logprob": -0.0001,
                "bytes": list(token.encode()),
                "top_logprobs": [
                    {"token": token, "logprob": -0.0001, "bytes": list(token.encode())}
                ][:k],
            }
        out.append(entry)
        position += len(token)
    return {"content": out, "refusal": None}


def _log(probability: float) -> float:
    return math.log(probability) if probability > 0 else -9999.0


def trace_steps(messages: list[dict[str, Any]]) -> list[str] | None:
    """The numbered steps of a first-error request (inside ``<trace>`` of the first user
    message), or None when the request is about one step."""
    first_user = next((m for m in messages if m.get("role") == "user"), None)
    match = _TRACE_RE.search(str(first_user.get("content", ""))) if first_user else None
    if match is None:
        return None
    return [text for _, text in _TRACE_STEP_RE.findall(match.group(1))]


def expected_first_error(steps: list[str]) -> str:
    """The fake's first-error answer for a trace: the number of the first step marked
    ``[wrong]``, else ``none``; a step marked ``[fe-out-of-range]`` makes it answer one past
    the last step (an answer the client must refuse)."""
    if any("[fe-out-of-range]" in s for s in steps):
        return str(len(steps) + 1)
    return next((str(i) for i, s in enumerate(steps, 1) if "[wrong]" in s), "none")


def _first_error_answer(steps: list[str], answer: str) -> str:
    return orjson.dumps(
        {
            "first_error_step": answer,
            "error_category": None if answer == "none" else "reasoning",
            "rationale": f"Fake judge: {len(steps)} steps, first error {answer}.",
        }
    ).decode()


def _answer(step: str, verdict: str, *, confidence: bool = False) -> str:
    category = "reasoning" if verdict == "error" else None
    answer: dict[str, Any] = {
        "verdict": verdict,
        "error_category": category,
        "rationale": f"Fake judge: the step is {verdict} ({len(step)} characters).",
    }
    if confidence and verdict in ("error", "correct"):
        p = expected_error_probability(step, verdict)
        answer["confidence"] = round(p if verdict == "error" else 1.0 - p, 4)
    return orjson.dumps(answer).decode()


class FakeServer:
    """The aiohttp application and its statistics; one instance per server."""

    def __init__(self, config: FakeConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)
        self._queued_faults: collections.deque[str] = collections.deque()
        self._sample_counters: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()  # stats are read from other threads in tests
        self._slots = asyncio.Semaphore(config.slots) if config.slots else None
        self._last_prompt = ""
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.requests = 0
            self.completions = 0
            self.by_fault: collections.Counter[str] = collections.Counter()
            self.in_flight = 0
            self.max_in_flight = 0
            self.auth_headers: collections.Counter[str] = collections.Counter()
            self.bodies: collections.deque[dict[str, Any]] = collections.deque(
                maxlen=self.config.keep_requests
            )
            # (start, end, fault) of each chat call, for /_timeline (benchmarks' diagnosis).
            self.calls: collections.deque[tuple[float, float, str]] = collections.deque(
                maxlen=200_000
            )
            self._sample_counters.clear()
            self._queued_faults.clear()

    def push_faults(self, faults: list[str]) -> None:
        unknown = set(faults) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kind(s): {', '.join(sorted(unknown))}")
        with self._lock:
            self._queued_faults.extend(faults)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "completions": self.completions,
                "by_fault": dict(self.by_fault),
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
                "auth_headers": dict(self.auth_headers),
            }

    def recent_requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.bodies)

    def timeline(self, bucket_s: float = 0.1) -> dict[str, Any]:
        """Mean calls in flight per ``bucket_s`` from the first call since the last reset, with
        the slot-seconds spent on hung calls: where a client loses its concurrency."""
        with self._lock:
            calls = list(self.calls)
        if not calls:
            return {"bucket_s": bucket_s, "in_flight": [], "slot_s": 0.0, "hang_slot_s": 0.0}
        t0 = min(c[0] for c in calls)
        n = int((max(c[1] for c in calls) - t0) / bucket_s) + 1
        occupancy = [0.0] * n
        for start, end, _fault in calls:
            a, b = start - t0, end - t0
            i = int(a / bucket_s)
            while a < b:
                edge = min(b, (i + 1) * bucket_s)
                occupancy[i] += edge - a
                a, i = edge, i + 1
        return {
            "bucket_s": bucket_s,
            "first_call_epoch": time.time() - (time.monotonic() - t0),
            "in_flight": [round(x / bucket_s, 2) for x in occupancy],
            "slot_s": round(sum(e - s for s, e, _ in calls), 3),
            "hang_slot_s": round(sum(e - s for s, e, f in calls if f == "hang"), 3),
        }

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024**2)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/models", self.models)
        app.router.add_get("/_stats", self._stats_view)
        app.router.add_post("/_reset", self._reset_view)
        app.router.add_get("/_requests", self._requests_view)
        app.router.add_get("/_timeline", self._timeline_view)
        app.router.add_post("/_faults", self._faults_view)
        return app

    # -- handlers -------------------------------------------------------------------------

    async def chat(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.auth_headers[request.headers.get("Authorization", "")] += 1
        started = time.monotonic()
        try:
            return await self._chat(request)
        finally:
            with self._lock:
                self.in_flight -= 1
                self.calls.append((started, time.monotonic(), request.get(FAULT_KEY, "")))

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
            messages = body["messages"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return _error(400, "invalid_request_error", "body must be JSON with 'messages'")
        with self._lock:
            self.bodies.append(body)
        fault = self._pick_fault()
        request[FAULT_KEY] = fault or ""
        refused = self._refusal(body, messages)
        if refused is not None:
            return refused
        if self._slots is not None:
            # One generation at a time (llama.cpp's default): the others wait in our queue,
            # and that wait is part of what the client measures.
            async with self._slots:
                return await self._generate(request, body, messages, fault)
        return await self._generate(request, body, messages, fault)

    def _refusal(self, body: dict[str, Any], messages: list[dict[str, Any]]) -> web.Response | None:
        cfg = self.config
        invalid = 500 if cfg.invalid_as_500 else 400
        model = body.get("model")
        if cfg.reject_unknown_model and model not in cfg.served_models:
            return _error(404, "model_not_found", f"The model `{model}` does not exist.")
        if cfg.wants_max_completion_tokens and "max_tokens" in body:
            return _error(
                400,
                "unsupported_parameter",
                "Unsupported parameter: 'max_tokens' is not supported with this model. "
                "Use 'max_completion_tokens' instead.",
            )
        fmt = body.get("response_format") or {}
        if cfg.json_schema_unsupported and fmt.get("type") == "json_schema":
            # llama-cpp-python 0.3 answers OpenAI's json_schema with a 500.
            return _error(
                500, "server_error", "Invalid request: response_format json_schema is unsupported"
            )
        if cfg.context_tokens is not None and _prompt_tokens(messages) > cfg.context_tokens:
            if cfg.invalid_as_500:
                return _error(500, "server_error", "llama_decode returned 1")
            return _error(
                400,
                "context_length_exceeded",
                f"This model's maximum context length is {cfg.context_tokens} tokens. However, "
                f"your messages resulted in {_prompt_tokens(messages)} tokens.",
            )
        if cfg.logprobs_unsupported and ("logprobs" in body or "top_logprobs" in body):
            return _error(
                invalid,
                "invalid_request_error",
                "Unsupported parameter: 'logprobs' is not supported by this server.",
            )
        if body.get("response_format") and cfg.json_mode_unsupported:
            return _error(
                invalid, "invalid_request_error", "response_format is not supported by this model"
            )
        return None

    async def _generate(
        self,
        request: web.Request,
        body: dict[str, Any],
        messages: list[dict[str, Any]],
        fault: str | None,
    ) -> web.StreamResponse:
        cfg = self.config
        delay = max(0.0, cfg.latency_ms + self._rng.uniform(-cfg.jitter_ms, cfg.jitter_ms)) / 1000
        if fault == "hang":
            await asyncio.sleep(cfg.hang_s)
            return _error(504, "timeout", "hung")
        if delay:
            await asyncio.sleep(delay)
        if fault == "drop":
            assert request.transport is not None
            request.transport.abort()  # the client sees the connection die without an answer
            return web.Response(status=500)
        if fault in ("500", "503"):
            return _error(int(fault), "server_error", "injected fault")
        if fault == "400":
            return _error(400, "invalid_request_error", "injected bad request")
        if fault == "429":
            return _error(429, "rate_limit_exceeded", "slow down", self._retry_headers())
        if fault == "malformed":
            return web.Response(
                body=b'{"id": "chatcmpl-x", "choices": [{"mess', content_type="application/json"
            )
        return web.Response(
            body=orjson.dumps(self._completion(body, messages, fault)),
            content_type="application/json",
        )

    def _retry_headers(self) -> dict[str, str]:
        ms = self.config.retry_after_ms
        if ms is None:
            return {"Retry-After": self.config.retry_after_s}
        return {"Retry-After": str(max(1, math.ceil(ms / 1000))), "retry-after-ms": str(ms)}

    def _pick_fault(self) -> str | None:
        with self._lock:
            fault = self._queued_faults.popleft() if self._queued_faults else None
        cfg = self.config
        if fault is None and cfg.fault_rate and cfg.faults and self._rng.random() < cfg.fault_rate:
            fault = self._rng.choice(cfg.faults)
        if fault is not None:
            with self._lock:
                self.by_fault[fault] += 1
        return fault

    def _completion(
        self, body: dict[str, Any], messages: list[dict[str, Any]], fault: str | None
    ) -> dict[str, Any]:
        step = step_text(messages)
        n = 1 if self.config.ignore_n else max(1, int(body.get("n") or 1))
        prompt_key = hashlib.sha1(step.encode()).hexdigest()
        with self._lock:
            first = self._sample_counters[prompt_key]
            self._sample_counters[prompt_key] += n
            self.completions += 1
        choices = []
        completion_tokens = 0
        cfg = self.config
        enforced = any(_SCHEMA_MODES[mode](body) for mode in cfg.enforces)
        steps = trace_steps(messages)
        logprobs = bool(body.get("logprobs")) and not cfg.logprobs_ignored
        for i in range(n):
            verdict = expected_verdict(step, policy=cfg.verdict_policy, sample_index=first + i)
            content = _answer(step, verdict, confidence=cfg.state_confidence)
            if steps is not None:
                verdict = expected_first_error(steps)
                content = _first_error_answer(steps, verdict)
            if cfg.nul_answers:
                content = _answer(step, verdict).replace("Fake judge:", "Fake\x00judge:")
            if "[unparseable]" in step or fault == "prose":
                content = "After careful thought, I believe the step holds up reasonably well."
            elif fault == "truncated":
                content = content[: len(content) // 2 - 12]
            elif cfg.garbage_unless_enforced and not enforced:
                content = self._rng.choice(_GARBAGE)
            completion_tokens += max(1, len(content) // 4)
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if cfg.reasoning:
                message["reasoning_content"] = f'Thinking: "verdict": "abstain"? No, {verdict}.'
            choice: dict[str, Any] = {
                "index": i,
                "message": message,
                "finish_reason": "length" if fault == "truncated" else "stop",
            }
            if logprobs:
                choice["logprobs"] = fake_logprobs(
                    content,
                    p_error=expected_error_probability(step, verdict),
                    top_logprobs=int(body.get("top_logprobs") or 0),
                )
            choices.append(choice)
        prompt_tokens = _prompt_tokens(messages)
        usage: dict[str, Any] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        if cfg.report_cached:
            text = "".join(str(m.get("content", "")) for m in messages)
            with self._lock:
                shared = _shared_prefix(text, self._last_prompt)
                self._last_prompt = text
            usage["prompt_tokens_details"] = {"cached_tokens": shared // 4}
        return {
            "id": f"chatcmpl-fake-{self.requests}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": choices,
            "usage": usage,
        }

    async def models(self, request: web.Request) -> web.Response:
        data = [{"id": name, "object": "model"} for name in self.config.served_models]
        return web.json_response({"object": "list", "data": data})

    async def _stats_view(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _reset_view(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    async def _requests_view(self, request: web.Request) -> web.Response:
        return web.Response(
            body=orjson.dumps(self.recent_requests()), content_type="application/json"
        )

    async def _timeline_view(self, request: web.Request) -> web.Response:
        bucket_s = float(request.query.get("bucket_s", "0.1"))
        return web.json_response(self.timeline(bucket_s))

    async def _faults_view(self, request: web.Request) -> web.Response:
        try:
            self.push_faults(list(orjson.loads(await request.read())))
        except (ValueError, TypeError) as exc:
            return _error(400, "invalid_request_error", str(exc))
        return web.json_response({"queued": len(self._queued_faults)})


def _shared_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def _prompt_tokens(messages: list[dict[str, Any]]) -> int:
    prompt_chars = sum(len(str(m.get("content", ""))) for m in messages)
    return max(1, prompt_chars // 4) + 4 * len(messages)


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"error": {"message": message, "type": code, "code": code}}
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


@dataclass
class RunningServer:
    """What ``fake_server()`` yields: the base URL and the live server for stats and faults."""

    base_url: str
    server: FakeServer
    _stop: Any = field(repr=False, default=None)

    def stats(self) -> dict[str, Any]:
        return self.server.stats()

    def reset(self) -> None:
        self.server.reset()

    def push_faults(self, faults: list[str]) -> None:
        self.server.push_faults(faults)

    def recent_requests(self) -> list[dict[str, Any]]:
        return self.server.recent_requests()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def fake_server(profile: str | None = None, **config: Any) -> Iterator[RunningServer]:
    """Start a fake server on a free 127.0.0.1 port in a background thread (own event loop).

    ``profile`` names a bundle of real servers' behaviours (``PROFILES``); keywords override.
    """
    server = FakeServer(config_for(profile, **config))
    port = free_port()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop: asyncio.Future[None] | None = None
    errors: list[BaseException] = []

    async def main() -> None:
        nonlocal stop
        # handler_cancellation: a hung handler ends when the client gives up, so in-flight
        # counts reflect the client's real concurrency.
        runner = web.AppRunner(
            server.app(), handler_cancellation=True, access_log=None, shutdown_timeout=0.5
        )
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        stop = loop.create_future()
        started.set()
        try:
            await stop
        finally:
            await runner.cleanup()

    def run() -> None:
        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # surfaced to the test thread below
            errors.append(exc)
            started.set()
        finally:
            loop.close()

    thread = threading.Thread(target=run, name=f"fake-openai-{port}", daemon=True)
    thread.start()
    started.wait(10)
    if errors:
        raise errors[0]
    try:
        yield RunningServer(base_url=f"http://127.0.0.1:{port}/v1", server=server)
    finally:
        loop.call_soon_threadsafe(lambda: stop.done() or stop.set_result(None))  # type: ignore[union-attr]
        thread.join(10)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--jitter-ms", type=float, default=10.0)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--faults", default=",".join(DEFAULT_FAULTS))
    parser.add_argument("--json-mode-unsupported", action="store_true")
    parser.add_argument("--ignore-n", action="store_true")
    parser.add_argument("--logprobs-unsupported", action="store_true", help="400 on logprobs")
    parser.add_argument("--logprobs-ignored", action="store_true", help="never return logprobs")
    parser.add_argument("--state-confidence", action="store_true", help="answers state one")
    parser.add_argument("--verdict-policy", default="marker", help="marker | hash:RATE")
    parser.add_argument("--retry-after-s", default="1")
    parser.add_argument(
        "--retry-after-ms", type=int, default=None, help="also send retry-after-ms, like OpenAI"
    )
    parser.add_argument("--hang-s", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", choices=sorted(PROFILES), default=None)
    args = parser.parse_args(argv)
    overrides = {
        "latency_ms": args.latency_ms,
        "jitter_ms": args.jitter_ms,
        "fault_rate": args.fault_rate,
        "faults": tuple(f for f in args.faults.split(",") if f),
        "verdict_policy": args.verdict_policy,
        "retry_after_s": args.retry_after_s,
        "retry_after_ms": args.retry_after_ms,
        "hang_s": args.hang_s,
        "seed": args.seed,
    }
    # A flag left off keeps the profile's behaviour.
    for flag in (
        "json_mode_unsupported",
        "ignore_n",
        "logprobs_unsupported",
        "logprobs_ignored",
        "state_confidence",
    ):
        if getattr(args, flag):
            overrides[flag] = True
    config = config_for(args.profile, **overrides)
    with contextlib.suppress(ImportError):
        import uvloop  # optional: only when already installed; not a project dependency

        uvloop.install()
    runner_app = FakeServer(config).app()
    web.run_app(
        runner_app,
        host=args.host,
        port=args.port,
        access_log=None,
        handler_cancellation=True,
        print=lambda *_: print(
            f"fake OpenAI server on http://{args.host}:{args.port}/v1", flush=True
        ),
    )


if __name__ == "__main__":
    main()
