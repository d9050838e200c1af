"""An async client for OpenAI-compatible chat-completions endpoints, built for judge runs.

Why aiohttp and not the openai SDK or httpx: against a fake endpoint at 100 ms latency and
concurrency 64 on the 2-core CI machine, bare aiohttp reached 0.92 of the concurrency/latency
bound, the openai SDK 0.51 and one shared httpx client 0.11 (issue 4; ``bench/client_bench.py``
measures this client). Per request we do one ``orjson`` encode, one decode, and nothing else
that grows with the pool.

Outcomes (``JudgeResult``), so a caller can store them without reading this code:

* ``ok=True`` and ``verdict`` in correct / error / abstain — store the verdict.
* ``ok=True`` and ``verdict='invalid'`` — the server answered but no verdict could be read after
  ``max_parse_retries`` re-asks; store it as ``invalid`` with ``raw_response`` (never dropped).
* ``ok=False``, ``verdict=None`` — no verdict; ``failure`` says why:
  ``client_error`` (a 4xx other than 408/409/429: bad model name, bad key… ``retryable=False``,
  retrying the same request cannot help: mark the step / run failed; a 5xx whose body says
  the request was invalid counts here too), ``context_overflow`` (the prompt does not fit the
  model's context, whatever status the server used: failed at once with the server's reason;
  a *re-ask* that overflows keeps the first answer as ``invalid`` instead),
  ``retries_exhausted`` (429 / 5xx / timeouts / dropped connections beyond ``max_retries``,
  ``retryable=True``: the Celery task may retry the chunk later), or
  ``stopped`` (``should_stop()`` became true before the request was sent or during its
  back-off; leave it for the resumed run; ``on_result`` is not called for these).

Retries: a transient failure sleeps ``uniform(0, min(backoff_max_s, backoff_base_s * 2**k))``
(exponential back-off with full jitter) or, when the server sent ``retry-after-ms`` or
``Retry-After`` (seconds or an HTTP date), at least that long; at most ``max_retries`` retries
per call. The semaphore is not held while sleeping, so a back-off does not cost a concurrency
slot.

Samples (``n_samples > 1``): one call with ``n``; if the server returns fewer choices (it ignores
``n``) the rest are asked by repeated calls and the batch stops sending ``n``. Aggregation is a
majority over the samples that parsed; **a tie is 'abstain'** (a split judge has not assessed the
step: abstain keeps the split out of the error rate's denominator instead of inventing an error
or a pass, and ``samples`` keeps the individual votes); no parsed sample at all is 'invalid'.

The API key is read from the environment variable *named* in the settings at the start of a
batch, lives only in that batch's session headers, and is scrubbed from every error message.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import dataclasses
import email.utils
import inspect
import math
import os
import queue
import random
import re
import threading
import time
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import aiohttp
import orjson

from judges.clients.egress import EgressPolicy, EgressRefused, PolicyResolver
from judges.clients.logprobs import verdict_error_probability
from judges.clients.parsing import (
    VERDICT_SCHEMA,
    ParsedFirstError,
    ParsedVerdict,
    ParseError,
    first_error_schema,
    parse_first_error,
    parse_verdict,
)
from judges.clients.ratelimit import NoopRateLimiter, RateLimiter, estimate_tokens

Verdict = Literal["correct", "error", "abstain", "invalid"]
FailureKind = Literal[
    "client_error", "context_overflow", "retries_exhausted", "stopped", "store_error"
]

# How the verdict shape is enforced, per server family (docs/judges.md, "Servers"):
#   json_schema         response_format {"type": "json_schema", ...}: OpenAI, vLLM, SGLang,
#                       llama-server (llama.cpp's own server)
#   json_object_schema  response_format {"type": "json_object", "schema": ...}: llama-cpp-python
#   ollama_format       "format": <schema>: Ollama
#   guided_json         "guided_json": <schema>: vLLM's (older) guided decoding, SGLang
#   grammar             "grammar": <GBNF>: llama.cpp / llama-cpp-python grammar sampling
#   json_object         response_format {"type": "json_object"}: JSON asked, shape not enforced
#   none                plain prompting
STRUCTURED_MODES = (
    "json_schema",
    "json_object_schema",
    "ollama_format",
    "guided_json",
    "grammar",
    "json_object",
    "none",
)
ENFORCING_MODES = frozenset(STRUCTURED_MODES[:5])
# When a server rejects a mode the batch steps down (without counting a retry): OpenAI's
# json_schema to llama-cpp-python's json_object + schema (what a server refusing the first
# most likely is), any other schema mode to plain JSON mode, JSON mode to plain prompting.
_FALLBACK = (
    {mode: "json_object" for mode in ENFORCING_MODES}
    | {"json_schema": "json_object_schema"}
    | {"json_object": "none"}
)
MAX_TOKENS_FIELDS = ("max_tokens", "max_completion_tokens")

# Statuses worth retrying: timeouts, conflicts, rate limits, every server error — unless the
# body says the request itself is at fault (below).
RETRYABLE_STATUSES = frozenset({408, 409, 429}) | frozenset(range(500, 600))
_JSON_MODE_REJECTED = re.compile(
    r"response_format|json_object|json_schema|json mode|structured output|guided_json|grammar"
    r"|\bschema\b",
    re.I,
)
# A prompt longer than the model's context: no retry can help (llama.cpp answers 500
# "llama_decode returned 1"; vLLM / OpenAI 400 "maximum context length").
_CONTEXT_OVERFLOW = re.compile(
    r"context[ _-]?(length|window|size|overflow)|maximum context|exceeds? (the )?(context|n_ctx)"
    r"|n_ctx|llama_decode returned|prompt is too long|too many tokens|input is too long"
    r"|context_length_exceeded|requested \d+ tokens",
    re.I,
)
# A 5xx that says the request was invalid (some servers report validation errors as 500).
_INVALID_REQUEST = re.compile(
    r"invalid[ _]request|validation error|unprocessable|unsupported|not supported|unrecognized"
    r"|extra (inputs|fields) (are )?not permitted|bad request|invalid value|must be one of",
    re.I,
)
_MAX_TOKENS_REJECTED = re.compile(r"max_completion_tokens", re.I)
_LOGPROBS_REJECTED = re.compile(r"logprobs", re.I)
# GBNF for llama.cpp's grammar sampling: exactly the schema's object, verdict first.
VERDICT_GRAMMAR = "\n".join(
    (
        r'root ::= "{\"verdict\": \"" verdict "\", \"error_category\": " category'
        r' ", \"rationale\": \"" text "\"}"',
        r'verdict ::= "correct" | "error" | "abstain"',
        r'category ::= "null" | "\"" [a-zA-Z0-9 _-]{1,60} "\""',
        r'text ::= [^"\\\x00-\x1f]{0,400}',
        "",
    )
)
PARSE_NUDGE = (
    "Your previous answer could not be read. Reply with only the JSON object "
    '{"verdict": "correct" | "error" | "abstain", "error_category": ..., "rationale": ...}.'
)


FIRST_ERROR_NUDGE = (
    "Your previous answer could not be read. Reply with only the JSON object "
    '{"first_error_step": "<the number of the first wrong step, or none>", '
    '"error_category": ..., "rationale": ...}.'
)


def first_error_grammar(n_steps: int) -> str:
    """GBNF for a first-error answer: exactly the schema's object, the step first."""
    steps = " | ".join(['"none"', *(f'"{k}"' for k in range(1, n_steps + 1))])
    return "\n".join(
        (
            r'root ::= "{\"first_error_step\": \"" step "\", \"error_category\": " category'
            r' ", \"rationale\": \"" text "\"}"',
            f"step ::= {steps}",
            r'category ::= "null" | "\"" [a-zA-Z0-9 _-]{1,60} "\""',
            r'text ::= [^"\\\x00-\x1f]{0,400}',
            "",
        )
    )


class JudgeConfigError(ValueError):
    """The settings cannot work at all (e.g. the key's environment variable is unset)."""


@dataclass(frozen=True)
class ClientSettings:
    base_url: str  # e.g. "https://api.example.com/v1"; "/chat/completions" is appended
    model: str
    api_key_env: str | None = None  # the NAME of the variable; None for keyless local servers
    timeout_s: float = 60.0  # per HTTP call, connect + answer
    concurrency: int = 8
    max_retries: int = 6  # transport retries per call
    max_parse_retries: int = 2  # re-asks per sample when the answer cannot be parsed
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 120.0  # a longer Retry-After fails the call as retryable
    use_json_mode: bool = True  # False: no response_format at all (structured_output "none")
    # How the verdict shape is asked for / enforced (STRUCTURED_MODES); the probe
    # (``judges.clients.probe``) says which ones a server honours.
    structured_output: str = "json_object"
    max_tokens_field: str = "max_tokens"  # "max_completion_tokens" for OpenAI reasoning models
    # Lower the number of calls in flight when the server is measured to queue them (it serves
    # fewer at a time than we send): requests waiting in the server's queue would count
    # against their timeout and their latency (issue 14). Never above ``concurrency``.
    adaptive_concurrency: bool = True
    extra_headers: Mapping[str, str] = field(default_factory=dict)
    # Server-specific request fields merged into every body (e.g. ``logit_bias``, ``top_k``);
    # they never replace the model, the messages or the structured-output fields.
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    # Where requests may go and which key names may be read (``judges.clients.egress``),
    # checked before the first request and on every connection. None only for code that
    # builds its own settings (benches, notebooks); the app always passes the deployment's.
    egress: EgressPolicy | None = None
    stop_poll_s: float = 0.25  # how often should_stop() is consulted (it may be a DB read)
    # Hedging of calls that look hung (see ``judge_many``), at any point of the run: a call in
    # flight for longer than ``hedge_after_latencies`` × the running median call (and at least
    # ``hedge_min_s``) is sent once more, within the concurrency bound; the first answer wins,
    # the other call is cancelled. At most ``hedge_max_fraction`` of the requests pulled so far
    # (at least 2) are duplicated. ``hedge_after_latencies=0`` turns it off.
    hedge_after_latencies: float = 4.0
    hedge_min_s: float = 0.25
    hedge_max_fraction: float = 0.015
    # Once every request has been handed out, a retry after a failure without Retry-After
    # waits at most this long (instead of its exponential back-off) while a slot is idle: the
    # run is only waiting for it, and the concurrency bound still holds. None: always back off.
    drain_backoff_max_s: float | None = 0.02
    # Ask for token log-probabilities (``logprobs``, ``top_logprobs`` alternatives per token)
    # and read the verdict's error probability from them (``judges.clients.logprobs``). A
    # server that refuses the parameter is asked without it for the rest of the batch.
    logprobs: bool = False
    top_logprobs: int = 10

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if self.structured_output not in STRUCTURED_MODES:
            raise ValueError(f"structured_output must be one of {', '.join(STRUCTURED_MODES)}")
        if self.max_tokens_field not in MAX_TOKENS_FIELDS:
            raise ValueError(f"max_tokens_field must be one of {', '.join(MAX_TOKENS_FIELDS)}")
        if self.max_retries < 0 or self.max_parse_retries < 0:
            raise ValueError("max_retries and max_parse_retries must be >= 0")
        if not 0 <= self.top_logprobs <= 20:
            raise ValueError("top_logprobs must lie in 0..20")
        if any(name.lower() in ("authorization", "api-key") for name in self.extra_headers):
            # Settings are stored with the judge; a key must only come from api_key_env.
            raise ValueError("put the API key in an environment variable named by api_key_env")

    @property
    def completions_url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    @property
    def mode(self) -> str:
        """The structured-output mode asked for first (``use_json_mode=False`` is "none")."""
        return self.structured_output if self.use_json_mode else "none"


@dataclass(frozen=True)
class JudgeRequest:
    key: str  # opaque id chosen by the caller (e.g. a step's public id), echoed in the result
    messages: list[dict[str, str]]
    max_tokens: int = 512
    temperature: float = 0.0
    n_samples: int = 1
    response_format_json: bool = True
    categories: tuple[str, ...] = ()  # the audit's error categories, to canonicalise answers
    # "step": a verdict on one step; "first_error": a whole trace of ``n_steps`` steps, answered
    # with its first wrong step or none (``JudgeResult.first_error_step``).
    answer: str = "step"
    n_steps: int = 0


@dataclass(frozen=True)
class JudgeResult:
    key: str
    ok: bool  # True: store ``verdict`` (possibly 'invalid'); False: see ``failure``
    verdict: Verdict | None
    category: str | None
    rationale: str
    raw_response: str  # every sample's raw text; re-asked answers included when unparseable
    attempts: int  # HTTP calls made, retries and re-asks included
    latency_ms: int  # the server's time: HTTP calls (re-asks too), no back-off, no slot wait
    prompt_tokens: int
    completion_tokens: int
    error: str | None = None  # short, never contains the key
    samples: tuple[str, ...] = ()  # per-sample verdicts, 'invalid' for unparseable samples
    failure: FailureKind | None = None
    retryable: bool = False
    json_mode: bool = False  # whether the answer was requested with response_format
    parse_methods: tuple[str, ...] = ()
    hedged: bool = False  # a duplicate was sent (a call looked hung); attempts count both
    structured: str = ""  # the structured-output mode of the (last) call that answered
    cached_tokens: int = 0  # prompt tokens the server reported served from its prefix cache
    reasoning: bool = False  # the answer held a reasoning part (kept in raw_response)
    elapsed_ms: int = 0  # wall time from the first send to the result, back-offs included
    # First-error requests: verdict "error" with the first wrong step (1-based) here, "correct"
    # for no error, "abstain" for samples split evenly, "invalid" when none could be read.
    first_error_step: int | None = None
    # With ``logprobs`` on and returned: per sample the verdict's error probability from its
    # token log-probabilities (None where it could not be read); empty when none came back.
    sample_error_probabilities: tuple[float | None, ...] = ()
    # With ``logprobs`` on: the server refused the parameter (its answer), so none were asked.
    logprobs_refused: str | None = None
    # The judge's stated confidence in ``verdict`` (its answer's ``confidence`` field), if any.
    stated_confidence: float | None = None


def aggregate_samples(
    parsed: Sequence[ParsedVerdict | None],
) -> tuple[Verdict, str | None, str]:
    """Majority verdict of samples; a tie is 'abstain'; no parsed sample is 'invalid'.

    Returns (verdict, category, rationale). The category is the most frequent one among the
    error samples (first seen wins a tie).

    Examples
    --------
    >>> v = lambda s: ParsedVerdict(s, None, "", "json")
    >>> aggregate_samples([v("error"), v("correct"), v("error")])[0]
    'error'
    >>> aggregate_samples([v("error"), v("correct"), None])[0]
    'abstain'
    >>> aggregate_samples([None, None])[0]
    'invalid'
    """
    valid = [p for p in parsed if p is not None]
    if not valid:
        return "invalid", None, ""
    counts = collections.Counter(p.verdict for p in valid)
    ranked = counts.most_common()
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        split = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
        return "abstain", None, f"samples split evenly ({split}); tie counts as abstain"
    winner = ranked[0][0]
    agreeing = [p for p in valid if p.verdict == winner]
    categories = collections.Counter(p.category for p in agreeing if p.category)
    category = categories.most_common(1)[0][0] if categories else None
    return winner, category, agreeing[0].rationale


class _CallFailed(Exception):
    def __init__(self, kind: FailureKind, message: str, *, retryable: bool, attempts: int) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retryable = retryable
        self.attempts = attempts


@dataclass
class _Reply:
    contents: list[str]
    prompt_tokens: int
    completion_tokens: int
    attempts: int
    json_mode: bool
    mode: str = "none"
    cached_tokens: int = 0
    server_s: float = 0.0  # time of the HTTP calls, without back-offs or waits for a slot
    reasoning: bool = False
    # Per choice its ``logprobs.content`` (None where absent); None when they were not asked.
    logprobs: list[Any] | None = None


@dataclass
class _Sample:
    parsed: ParsedVerdict | None
    raws: list[str]
    reason: str | None
    logprobs: Any = None  # the parsed answer's ``logprobs.content``, when asked and returned


class AdaptiveLimit:
    """A semaphore whose bound the batch lowers when the server is measured to queue calls.

    Why: a server that serves fewer requests at a time than we send (llama.cpp's one slot)
    queues the rest; their wait counts against their timeout (issue 14: timeout 0.8 s at
    concurrency 4 stored 9 of 33 verdicts in 208 s, concurrency 1 all 33 in 31 s) and their
    latency. From the last calls (each: start, end, calls in flight when it was sent) the
    server's parallelism is estimated by Little's law as throughput × service time, the service
    time being the fastest call's duration (a call that did not queue); when calls are sent at
    clearly more than that, the bound drops to it. A timeout halves the bound (a call that timed
    out while others were in flight most likely waited in the server's queue). The bound never
    rises above ``limit`` and never falls below 1.
    """

    WINDOW = 24

    def __init__(self, limit: int, *, adaptive: bool = True) -> None:
        self.max_limit = limit
        self.limit = limit
        self.adaptive = adaptive
        self.in_use = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._calls: collections.deque[tuple[float, float, int]] = collections.deque(
            maxlen=self.WINDOW
        )
        self._alone: collections.deque[float] = collections.deque(maxlen=16)
        self.lowered: list[tuple[int, str]] = []  # (new bound, why), for the run's record

    def locked(self) -> bool:
        return self.in_use >= self.limit

    async def __aenter__(self) -> int:
        while self.in_use >= self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # woken, then cancelled: pass the free slot on
                raise
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
        self.in_use += 1  # no await between the check and here: the bound holds
        return self.in_use

    async def __aexit__(self, *exc: object) -> None:
        # No await: a call cancelled here (a hedge's loser) must still free its slot.
        self.in_use -= 1
        self._wake()

    def _wake(self) -> None:
        free = self.limit - self.in_use
        for waiter in list(self._waiters):
            if free <= 0:
                break
            if not waiter.done():
                waiter.set_result(None)
                free -= 1

    def observe(self, start: float, end: float, in_flight: int) -> None:
        if in_flight == 1:
            self._alone.append(end - start)
        if not self.adaptive or self.limit <= 1 or not self._alone:
            return
        self._calls.append((start, end, in_flight))
        if len(self._calls) < max(8, 3 * self.limit):
            return
        calls = list(self._calls)
        span = max(e for _, e, _ in calls) - min(s for s, _, _ in calls)
        service = _median(self._alone)  # a call sent alone did not wait in a server queue
        typical = _median(e - s for s, e, _ in calls)
        if span <= 0 or service <= 0:
            return
        parallel = len(calls) / span * service
        sent = sum(k for _, _, k in calls) / len(calls)
        # Both signs, with margins wide enough for latency jitter: calls take much longer than
        # a call alone, and far more are sent than the server completes in parallel.
        if typical > 2 * service and sent > 2 * parallel:
            self._lower(max(1, round(parallel)), f"server served ~{parallel:.1f} at a time")

    def timed_out(self, in_flight: int) -> None:
        if self.adaptive and in_flight > 1 and self.limit > 1:
            self._lower(max(1, self.limit // 2), "a call timed out with others in flight")

    def _lower(self, limit: int, why: str) -> None:
        if limit < self.limit:
            self.limit = limit
            self.lowered.append((limit, why))
            self._calls.clear()


class _Batch:
    """Shared state of one ``judge_many`` call: session, limit, server quirks learned."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        settings: ClientSettings,
        limiter: RateLimiter,
        secret: str | None,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        self.session = session
        self.settings = settings
        self.limiter = limiter
        self.secret = secret
        self.semaphore = AdaptiveLimit(settings.concurrency, adaptive=settings.adaptive_concurrency)
        self.mode = settings.mode  # steps down when the server rejects it (``_FALLBACK``)
        self.max_tokens_field = settings.max_tokens_field
        self.n_supported: bool | None = None  # unknown until a call with n > 1 answers
        self._should_stop = should_stop
        self._stopped = False
        self._last_poll = 0.0
        # Durations of recent successful calls, for the hedging threshold.
        self.latencies: collections.deque[float] = collections.deque(maxlen=256)
        self.hedges = 0
        self.fallbacks: list[str] = []  # structured-output modes the server refused
        self.logprobs = settings.logprobs  # False once the server refuses the parameter
        self.logprobs_refused: str | None = None
        self.draining = False  # every request has been handed out; the run waits for the rest

    def stopped(self) -> bool:
        if self._stopped or self._should_stop is None:
            return self._stopped
        now = time.monotonic()
        if now - self._last_poll >= self.settings.stop_poll_s:
            self._last_poll = now
            self._stopped = bool(self._should_stop())
        return self._stopped

    def scrub(self, text: str) -> str:
        if self.secret:
            text = text.replace(self.secret, "***")
        text = " ".join(text.split())
        return text[:300]

    def connection_problem(self, exc: aiohttp.ClientError) -> str:
        """``connection error to HOST:PORT: cause`` — which server, and why it did not answer."""
        url = aiohttp.client.URL(self.settings.completions_url)
        host = getattr(exc, "host", None) or url.host
        port = getattr(exc, "port", None) or url.port
        cause = getattr(exc, "os_error", None) or exc.__cause__ or exc
        detail = getattr(cause, "strerror", None) or str(cause) or type(cause).__name__
        return self.scrub(f"connection error to {host}:{port}: {type(exc).__name__}: {detail}")

    # -- one logical call, with transport retries ----------------------------------------------

    async def call(
        self,
        request: JudgeRequest,
        messages: list[dict[str, str]],
        n: int,
        first_send: list[float] | None = None,
    ) -> _Reply:
        s = self.settings
        attempts = 0
        retries = 0
        while True:
            estimate = estimate_tokens(messages, max_tokens=request.max_tokens, n=n)
            await self.limiter.acquire(estimate)
            attempts += 1
            delay: float | None = None
            problem = ""
            async with self.semaphore as in_flight:
                if self.stopped():
                    # Queued behind the bound while the run was paused or cancelled: don't send.
                    await self.limiter.reconcile(estimate, 0)
                    raise _CallFailed(
                        "stopped", "stopped before sending", retryable=True, attempts=attempts - 1
                    )
                if first_send is not None and not first_send:
                    first_send.append(time.monotonic())
                # Decided here, not before queueing: a request that waited for the slot must
                # see a JSON-mode fallback learned meanwhile.
                mode = self.mode if request.response_format_json else "none"
                json_mode = mode != "none"
                logprobs = self.logprobs and request.answer == "step"
                payload = _payload(
                    s, request, messages, n=n, mode=mode, max_tokens_field=self.max_tokens_field
                )
                if logprobs:
                    payload["logprobs"] = True
                    payload["top_logprobs"] = s.top_logprobs
                flight = _FLIGHT.get(None)
                sent_at = time.monotonic()
                if flight is not None:
                    flight.attempts += 1
                    flight.http_since = sent_at
                    flight.first_send = flight.first_send or sent_at
                try:
                    # Never follow a redirect: the key would go to a host nobody checked.
                    async with self.session.post(
                        s.completions_url, data=orjson.dumps(payload), allow_redirects=False
                    ) as r:
                        status = r.status
                        body = await r.read()
                        retry_after = retry_after_from(r.headers)
                except TimeoutError:
                    status, body, retry_after = 0, b"", None
                    problem = f"timeout after {s.timeout_s:g}s"
                    self.semaphore.timed_out(in_flight)
                except aiohttp.ClientError as exc:
                    status, body, retry_after = 0, b"", None
                    problem = self.connection_problem(exc)
                    refused = getattr(exc, "os_error", None)
                    if isinstance(refused, EgressRefused):
                        problem = f"refused: {refused}"
                finally:
                    if flight is not None and flight.http_since == sent_at:
                        flight.http_since = None
                ended_at = time.monotonic()
                if status == 200:
                    self.latencies.append(ended_at - sent_at)
                    self.semaphore.observe(sent_at, ended_at, in_flight)
            if problem.startswith("refused: "):
                # The host resolved to an address the egress policy refuses: no retry helps.
                await self.limiter.reconcile(estimate, 0)
                raise _CallFailed("client_error", problem, retryable=False, attempts=attempts)
            if status == 200:
                try:
                    reply = _read_completion(body, attempts=attempts, mode=mode, logprobs=logprobs)
                    reply.server_s = ended_at - sent_at
                except ValueError as exc:
                    await self.limiter.reconcile(estimate, estimate)
                    problem = f"malformed response: {exc}"
                else:
                    used = reply.prompt_tokens + reply.completion_tokens
                    await self.limiter.reconcile(estimate, used or estimate)
                    return reply
            elif status:
                await self.limiter.reconcile(estimate, 0)  # nothing was generated
                text = self.scrub(body.decode("utf-8", "replace"))
                problem = f"HTTP {status}: {text}" if text else f"HTTP {status}"
                request_refused = status in (400, 422) or (
                    status >= 500 and bool(_INVALID_REQUEST.search(text))
                )
                if _CONTEXT_OVERFLOW.search(text) and (status >= 400):
                    # The prompt does not fit the model's context: no retry can help.
                    raise _CallFailed(
                        "context_overflow",
                        f"context overflow: {problem}",
                        retryable=False,
                        attempts=attempts,
                    )
                if logprobs and request_refused and _LOGPROBS_REJECTED.search(text):
                    # The server has no log-probabilities: the verdicts stand without them
                    # (the uncertainty falls back to votes); not counted as a retry.
                    self.logprobs = False
                    self.logprobs_refused = problem[:200]
                    continue
                if json_mode and request_refused and _JSON_MODE_REJECTED.search(text):
                    # The server lacks this structured-output mode: step down for the rest of
                    # the batch (json_schema → json_object → none); not counted as a retry.
                    self.mode = _FALLBACK[mode] if self.mode == mode else self.mode
                    self.fallbacks.append(f"{mode} → {self.mode}: {problem[:120]}")
                    continue
                if (
                    request_refused
                    and self.max_tokens_field == "max_tokens"
                    and _MAX_TOKENS_REJECTED.search(text)
                ):
                    self.max_tokens_field = "max_completion_tokens"  # OpenAI reasoning models
                    continue
                if 300 <= status < 400:
                    problem = f"HTTP {status}: redirects are not followed; use the final URL"
                if status not in RETRYABLE_STATUSES or request_refused:
                    raise _CallFailed("client_error", problem, retryable=False, attempts=attempts)
                delay = retry_after
            if retries >= s.max_retries:
                raise _CallFailed(
                    "retries_exhausted",
                    f"gave up after {attempts} attempts; last: {problem}",
                    retryable=True,
                    attempts=attempts,
                )
            if delay is not None and delay > s.retry_after_max_s:
                raise _CallFailed(
                    "retries_exhausted",
                    f"Retry-After {delay:.0f}s exceeds {s.retry_after_max_s:g}s; last: {problem}",
                    retryable=True,
                    attempts=attempts,
                )
            if self.stopped():
                raise _CallFailed(
                    "stopped", "stopped before retry", retryable=True, attempts=attempts
                )
            wait = backoff_delay(retries, s, retry_after_s=delay)
            if (
                delay is None  # a Retry-After is honoured as the server gave it
                and self.draining
                and s.drain_backoff_max_s is not None
                and not self.semaphore.locked()
            ):
                # Nothing is left to hand out and a slot is idle: the back-off would only
                # delay the end of the run; the retry stays within the concurrency bound.
                wait = min(wait, s.drain_backoff_max_s)
            await asyncio.sleep(wait)
            retries += 1

    # -- one request: samples, parse re-asks, aggregation -------------------------------------

    async def judge(self, request: JudgeRequest) -> JudgeResult:
        first_send: list[float] = []
        counters: dict[str, Any] = {
            "attempts": 0,
            "prompt": 0,
            "completion": 0,
            "cached": 0,
            "server_s": 0.0,
            "json_mode": False,
            "mode": "",
            "reasoning": False,
        }
        reask_failures: list[str] = []

        async def call(messages: list[dict[str, str]], n: int) -> list[tuple[str, Any]]:
            reply = await self.call(request, messages, n, first_send)
            counters["attempts"] += reply.attempts
            counters["prompt"] += reply.prompt_tokens
            counters["completion"] += reply.completion_tokens
            counters["cached"] += reply.cached_tokens
            counters["server_s"] += reply.server_s
            counters["json_mode"] = counters["json_mode"] or reply.json_mode
            counters["mode"] = reply.mode
            counters["reasoning"] = counters["reasoning"] or reply.reasoning
            if reply.logprobs is None:
                return [(text, None) for text in reply.contents]
            return list(zip(reply.contents, reply.logprobs, strict=False))

        async def sample(first: tuple[str, Any] | None) -> _Sample:
            raws: list[str] = []
            raw, logprobs = first if first is not None else (await call(request.messages, 1))[0]
            for reask in range(self.settings.max_parse_retries + 1):
                raws.append(raw)
                try:
                    enforced = counters["mode"] in ENFORCING_MODES
                    parsed = parse_answer(raw, request, enforced=enforced)
                    return _Sample(parsed, raws, None, logprobs)
                except ParseError as exc:
                    reason = exc.reason
                if reask == self.settings.max_parse_retries:
                    break
                # Ask again with the unreadable answer shown: plain repetition at temperature 0
                # would reproduce it.
                nudged = [
                    *request.messages,
                    {"role": "assistant", "content": raw},
                    {
                        "role": "user",
                        "content": FIRST_ERROR_NUDGE
                        if request.answer == "first_error"
                        else PARSE_NUDGE,
                    },
                ]
                try:
                    raw, logprobs = (await call(nudged, 1))[0]
                except _CallFailed as exc:
                    if exc.retryable:
                        raise
                    # The re-ask itself cannot work (it overflows the context, say): the
                    # first answer stands, as 'invalid' with its raw text (issue 14).
                    counters["attempts"] += exc.attempts
                    reask_failures.append(exc.message)
                    break
            return _Sample(None, raws, reason)

        try:
            samples = await self._samples(request, call, sample)
        except _CallFailed as exc:
            return JudgeResult(
                key=request.key,
                ok=False,
                verdict=None,
                category=None,
                rationale="",
                raw_response="",
                attempts=counters["attempts"] + exc.attempts,
                latency_ms=round(counters["server_s"] * 1000),
                elapsed_ms=_elapsed_ms(first_send),
                prompt_tokens=counters["prompt"],
                completion_tokens=counters["completion"],
                error=exc.message,
                failure=exc.kind,
                retryable=exc.retryable,
                json_mode=bool(counters["json_mode"]),
                structured=str(counters["mode"]),
            )
        verdict, category, rationale = aggregate_samples([x.parsed for x in samples])
        first_error_step = None
        if request.answer == "first_error" and verdict not in ("invalid", "abstain"):
            # The vote was on "none" or the step number; as a trace verdict it is one of two.
            first_error_step = None if verdict == "none" else int(verdict)
            verdict = "correct" if first_error_step is None else "error"
        extra: dict[str, Any] = {}
        if self.settings.logprobs:
            extra = _logprob_fields(request, samples, refused=self.logprobs_refused)
        confidence = stated_confidence_in([x.parsed for x in samples], verdict)
        if confidence is not None:
            extra["stated_confidence"] = confidence
        error = None
        if verdict == "invalid":
            reasons = "; ".join(sorted({x.reason or "" for x in samples}))
            asks = max(len(x.raws) for x in samples) - 1
            error = f"unparseable after {asks} re-asks: {reasons}"
            if reask_failures:
                error += f"; re-ask failed: {reask_failures[0]}"
        return JudgeResult(
            key=request.key,
            ok=True,
            verdict=verdict,
            category=category,
            rationale=rationale,
            raw_response=_join_raws(samples),
            attempts=int(counters["attempts"]),
            # The server's time: the HTTP calls, not waits for a slot or back-offs.
            latency_ms=round(counters["server_s"] * 1000),
            elapsed_ms=_elapsed_ms(first_send),
            prompt_tokens=int(counters["prompt"]),
            completion_tokens=int(counters["completion"]),
            error=error,
            samples=tuple(x.parsed.verdict if x.parsed else "invalid" for x in samples),
            json_mode=bool(counters["json_mode"]),
            parse_methods=tuple(x.parsed.method for x in samples if x.parsed),
            structured=str(counters["mode"]),
            cached_tokens=int(counters["cached"]),
            reasoning=bool(counters["reasoning"]),
            first_error_step=first_error_step,
            **extra,
        )

    async def _samples(
        self,
        request: JudgeRequest,
        call: Callable[[list[dict[str, str]], int], Awaitable[list[tuple[str, Any]]]],
        sample: Callable[[tuple[str, Any] | None], Awaitable[_Sample]],
    ) -> list[_Sample]:
        n = max(1, request.n_samples)
        firsts: list[tuple[str, Any] | None] = []
        if n > 1 and self.n_supported is not False:
            firsts = list(await call(request.messages, n))[:n]
            if len(firsts) < n:
                self.n_supported = False  # the server ignores n: repeated calls from now on
            else:
                self.n_supported = True
        elif n == 1:
            firsts = [None]
        firsts += [None] * (n - len(firsts))
        return list(await asyncio.gather(*(sample(raw) for raw in firsts)))


def _logprob_fields(
    request: JudgeRequest, samples: Sequence[_Sample], *, refused: str | None
) -> dict[str, Any]:
    """``JudgeResult`` fields from the samples' log-probabilities (only when they were asked)."""
    fields: dict[str, Any] = {}
    if refused is not None:
        fields["logprobs_refused"] = refused
    if request.answer != "step" or all(x.logprobs is None for x in samples):
        return fields  # nothing came back (or a first-error answer): nothing to read
    fields["sample_error_probabilities"] = tuple(
        verdict_error_probability(x.logprobs, verdict=x.parsed.verdict)
        if x.parsed is not None and x.logprobs is not None
        else None
        for x in samples
    )
    return fields


def stated_confidence_in(parsed: Sequence[Any], verdict: str) -> float | None:
    """The judge's stated confidence in ``verdict``: over the parsed samples that stated one
    on a correct / error verdict, the mean probability of error they imply, as confidence in
    ``verdict`` (None for other verdicts or when no sample stated one).

    Examples
    --------
    >>> v = lambda s, c: ParsedVerdict(s, None, "", "json", confidence=c)
    >>> round(stated_confidence_in([v("error", 0.9), v("correct", 0.7), None], "error"), 3)
    0.6
    """
    if verdict not in ("correct", "error"):
        return None
    implied = [
        c if x.verdict == "error" else 1.0 - c
        for x in parsed
        if x is not None
        and x.verdict in ("correct", "error")
        and (c := getattr(x, "confidence", None)) is not None
    ]
    if not implied:
        return None
    p_error = sum(implied) / len(implied)
    return p_error if verdict == "error" else 1.0 - p_error


def parse_answer(
    raw: str, request: JudgeRequest, *, enforced: bool
) -> ParsedVerdict | ParsedFirstError:
    """The answer read as the request asked: a step verdict or a first-error step."""
    if request.answer == "first_error":
        return parse_first_error(
            raw, n_steps=request.n_steps, categories=request.categories, enforced=enforced
        )
    return parse_verdict(raw, categories=request.categories, enforced=enforced)


def structured_fields(mode: str, *, answer: str = "step", n_steps: int = 0) -> dict[str, Any]:
    """The request fields that ask for the answer's shape in ``mode`` (see STRUCTURED_MODES):
    the step verdict, or (``answer="first_error"``) a trace's first wrong step."""
    first_error = answer == "first_error"
    schema = first_error_schema(n_steps) if first_error else VERDICT_SCHEMA
    if mode == "json_schema":
        name = "first_error" if first_error else "step_verdict"
        return {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": name, "strict": True, "schema": schema},
            }
        }
    if mode == "json_object_schema":
        return {"response_format": {"type": "json_object", "schema": schema}}
    if mode == "ollama_format":
        return {"format": schema}
    if mode == "guided_json":
        return {"guided_json": schema}
    if mode == "grammar":
        return {"grammar": first_error_grammar(n_steps) if first_error else VERDICT_GRAMMAR}
    if mode == "json_object":
        return {"response_format": {"type": "json_object"}}
    return {}


def _payload(
    settings: ClientSettings,
    request: JudgeRequest,
    messages: list[dict[str, str]],
    *,
    n: int,
    mode: str,
    max_tokens_field: str = "max_tokens",
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "model": settings.model,
        "messages": messages,
        max_tokens_field: request.max_tokens,
        "temperature": request.temperature,
    }
    if n > 1:
        payload["n"] = n
    for key, value in settings.extra_body.items():
        payload.setdefault(key, value)
    payload.update(structured_fields(mode, answer=request.answer, n_steps=request.n_steps))
    return payload


def _elapsed_ms(first_send: list[float]) -> int:
    return int((time.monotonic() - first_send[0]) * 1000) if first_send else 0


def _join_raws(samples: Sequence[_Sample]) -> str:
    def one(x: _Sample) -> str:
        return "\n\n--- re-asked ---\n\n".join(x.raws) if x.parsed is None else x.raws[-1]

    if len(samples) == 1:
        return one(samples[0])
    return "\n\n".join(f"--- sample {i} ---\n{one(x)}" for i, x in enumerate(samples, 1))


def _message_text(message: Mapping[str, Any]) -> tuple[str, bool]:
    """The answer with a reasoning part (``reasoning_content`` / ``reasoning``) put first as a
    ``<think>`` block: kept with the raw response, set aside by the parser."""
    content = str(message.get("content") or "")
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning.strip():
        return f"<think>{reasoning}</think>\n{content}", True
    return content, content.lstrip().lower().startswith(("<think>", "<thinking>"))


def cached_tokens_of(data: Mapping[str, Any]) -> int:
    """Prompt tokens served from the server's prefix cache, where it says so.

    OpenAI / vLLM / SGLang: ``usage.prompt_tokens_details.cached_tokens``; llama.cpp's server:
    ``timings.cache_n``; DeepSeek: ``usage.prompt_cache_hit_tokens``.
    """
    usage = data.get("usage") or {}
    details = usage.get("prompt_tokens_details") or {}
    for value in (
        details.get("cached_tokens") if isinstance(details, Mapping) else None,
        usage.get("prompt_cache_hit_tokens"),
        (data.get("timings") or {}).get("cache_n")
        if isinstance(data.get("timings"), Mapping)
        else None,
    ):
        if isinstance(value, int | float) and value > 0:
            return int(value)
    return 0


def _read_completion(body: bytes, *, attempts: int, mode: str, logprobs: bool = False) -> _Reply:
    try:
        data = orjson.loads(body)
        choices = data["choices"]
        texts = [_message_text(c.get("message") or {}) for c in choices]
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a chat completion ({type(exc).__name__})") from None
    if not texts:
        raise ValueError("no choices")
    usage = data.get("usage") or {}
    contents = None
    if logprobs:  # only when asked: nothing more per call otherwise
        contents = []
        for choice in choices:
            lp = choice.get("logprobs")
            content = lp.get("content") if isinstance(lp, Mapping) else None
            contents.append(content if isinstance(content, list) and content else None)
    return _Reply(
        contents=[text for text, _ in texts],
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        attempts=attempts,
        json_mode=mode != "none",
        mode=mode,
        cached_tokens=cached_tokens_of(data),
        reasoning=any(flag for _, flag in texts),
        logprobs=contents,
    )


def retry_after_from(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked us to wait: ``retry-after-ms`` when sent, else ``Retry-After``.

    Why the millisecond header first: OpenAI and Azure OpenAI send it beside ``Retry-After``,
    whose delta-seconds can only say whole seconds — a server that means 200 ms must round up
    to ``1``, and a client reading only that waits five times longer than asked (the openai
    SDK and Azure's client libraries read ``retry-after-ms`` first for the same reason).

    Examples
    --------
    >>> retry_after_from({"Retry-After": "1", "retry-after-ms": "250"})
    0.25
    >>> retry_after_from({"Retry-After": "2"})
    2.0
    >>> retry_after_from({"retry-after-ms": "soon", "Retry-After": "1"})
    1.0
    """
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        value = headers.get(name)
        if value:
            try:
                ms = float(value.strip())
            except ValueError:
                continue
            if math.isfinite(ms):
                return max(0.0, ms / 1000)
    return parse_retry_after(headers.get("Retry-After"))


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date).

    Examples
    --------
    >>> parse_retry_after("2")
    2.0
    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:05 GMT",
    ...                   now=datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC))
    5.0
    >>> parse_retry_after("soon") is None
    True
    """
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_delay(
    retry: int, settings: ClientSettings, *, retry_after_s: float | None = None
) -> float:
    """Full-jitter exponential back-off; at least ``retry_after_s`` when the server gave one."""
    if retry_after_s is not None:
        # A little jitter above the server's figure so that workers told the same second do
        # not all come back in the same millisecond.
        return retry_after_s + random.uniform(0, min(1.0, 0.1 * retry_after_s + 0.05))
    cap = min(settings.backoff_max_s, settings.backoff_base_s * (2**retry))
    return random.uniform(0, cap)


def _read_api_key(env_name: str | None) -> str | None:
    if env_name is None:
        return None
    value = os.environ.get(env_name)
    if not value:
        raise JudgeConfigError(f"environment variable {env_name} is not set or empty")
    return value


def _stopped_result(request: JudgeRequest) -> JudgeResult:
    return JudgeResult(
        key=request.key,
        ok=False,
        verdict=None,
        category=None,
        rationale="",
        raw_response="",
        attempts=0,
        latency_ms=0,
        prompt_tokens=0,
        completion_tokens=0,
        error="stopped before sending",
        failure="stopped",
        retryable=True,
    )


def request_headers(settings: ClientSettings) -> tuple[dict[str, str], str]:
    """The headers of every request to the endpoint and the key they carry, after the egress
    policy allowed both the key's name and the URL (``JudgeConfigError`` otherwise: nothing
    is sent)."""
    if settings.egress is not None:
        try:
            settings.egress.check_key_env(settings.api_key_env)
            settings.egress.check_url(settings.completions_url)
        except EgressRefused as exc:
            raise JudgeConfigError(str(exc)) from None
    secret = _read_api_key(settings.api_key_env)
    headers = {"Content-Type": "application/json", **settings.extra_headers}
    if secret:
        headers["Authorization"] = f"Bearer {secret}"
    return headers, secret


async def judge_many(
    requests: Iterable[JudgeRequest] | AsyncIterable[JudgeRequest],
    *,
    settings: ClientSettings,
    on_result: Callable[[JudgeResult], Awaitable[None] | None] | None = None,
    rate_limiter: RateLimiter | None = None,
    should_stop: Callable[[], bool] | None = None,
    keep_results: bool = True,
    stats: dict[str, int] | None = None,
) -> list[JudgeResult]:
    """Judge every request concurrently; return one result per request, in request order.

    ``requests`` may be an async iterable: a *stream*, pulled one request at a time as a
    worker frees up, so a long run keeps every slot busy without being cut into batches that
    each wait for their slowest request. Once ``should_stop`` is true a stream is no longer
    pulled (no ``stopped`` results are made for requests it never yielded).
    ``keep_results=False`` returns ``[]`` and keeps nothing (a stream may be very long; the
    caller stores results in ``on_result``). ``stats``, when given, receives ``requests``
    (pulled) and ``hedges`` (duplicates sent by hedging).

    Hedging (``settings.hedge_*``), at any point of the run: a call that has been in flight
    for over ``hedge_after_latencies`` (4) × the running median call, and at least
    ``hedge_min_s`` (0.25 s), is sent once more — it waits for a slot like any call, so the
    concurrency bound and the rate limit hold — and the first successful answer wins; the
    other call is cancelled (its connection closed, its slot freed). At most
    ``hedge_max_fraction`` (1.5%) of the requests pulled so far (at least 2) are duplicated; a
    hedged result says so (``hedged``) and its ``attempts`` count both calls. Calls sleeping on
    a back-off or ``Retry-After`` are never hedged: only an HTTP call in flight is.

    Draining (``settings.drain_backoff_max_s``): once every request has been pulled, a retry
    after a failure without ``Retry-After`` waits at most 0.02 s instead of its back-off while
    a slot is idle; ``Retry-After`` is always honoured as given.

    ``on_result`` is called (and awaited when it returns an awaitable) as each result is
    ready — store verdicts there so a crash loses only what is in flight; it is not called for
    ``stopped`` results. An exception from it cancels the batch and propagates. ``should_stop``
    is consulted at most every ``settings.stop_poll_s``; once true no new request is sent and
    back-offs end, in-flight calls finish. It runs inside the event loop, so it must not block:
    from synchronous (Django) code use ``judge_many_sync``. The rate limiter's leased permits are
    returned at the end (``close()``); the same limiter may be used again.
    """
    limiter = rate_limiter or NoopRateLimiter()
    headers, secret = request_headers(settings)
    connector = aiohttp.TCPConnector(
        limit=settings.concurrency,
        limit_per_host=0,
        resolver=PolicyResolver(settings.egress) if settings.egress is not None else None,
    )
    timeout = aiohttp.ClientTimeout(total=settings.timeout_s)
    results: dict[int, JudgeResult] = {}
    stream = isinstance(requests, AsyncIterable)
    if stream:
        source = aiter(requests)  # type: ignore[arg-type]
        pull_lock = asyncio.Lock()
        counter = iter(range(1 << 62))
    else:
        pending = enumerate(requests)  # type: ignore[arg-type]

    hedging = settings.hedge_after_latencies > 0
    flights: set[_Flight] = set()
    tally = {"started": 0, "exhausted": False}

    async def next_request() -> tuple[int, JudgeRequest] | None:
        item = await pull()
        if item is None:
            tally["exhausted"] = True
            batch.draining = True
        else:
            tally["started"] += 1
        return item

    async def pull() -> tuple[int, JudgeRequest] | None:
        if not stream:
            return next(pending, None)
        # One puller at a time: an async generator cannot be advanced concurrently.
        async with pull_lock:
            if batch.stopped():
                return None
            try:
                request = await anext(source)
            except StopAsyncIteration:
                return None
            return next(counter), request

    async def hedge_hung() -> None:
        # Why: a hung call holds its slot until the timeout (10× a normal call in the
        # benchmark) and then still needs a retry; the result is late and the slot idle all
        # that time. A call in flight for several times the median is almost surely hung, so
        # it is sent again (within the concurrency bound: the duplicate waits for a slot like
        # any call) and the first answer wins; the loser is cancelled, which frees its slot.
        # Calls sleeping on a back-off or Retry-After have no HTTP call in flight
        # (``http_since`` is None) and are never duplicated.
        s = settings
        while True:
            await asyncio.sleep(0.02)
            if len(batch.latencies) < 20 or batch.stopped():
                continue
            cap = max(2, math.ceil(s.hedge_max_fraction * tally["started"]))
            if batch.hedges >= cap:
                continue
            threshold = max(s.hedge_min_s, s.hedge_after_latencies * _median(batch.latencies))
            now = time.monotonic()
            for flight in list(flights):
                if batch.hedges >= cap:
                    break
                since = flight.http_since
                if flight.hedge is None and since is not None and now - since > threshold:
                    batch.hedges += 1
                    flight.start_hedge(batch)

    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=headers, raise_for_status=False
    ) as session:
        batch = _Batch(
            session=session,
            settings=settings,
            limiter=limiter,
            secret=secret,
            should_stop=should_stop,
        )
        del secret, headers  # the session holds the key for this batch; nothing else does

        async def worker() -> None:
            # Workers pull from one shared iterator: no task per request, and requests are
            # launched lazily so should_stop takes effect at once.
            while (item := await next_request()) is not None:
                index, request = item
                if batch.stopped():
                    if keep_results:
                        results[index] = _stopped_result(request)
                    continue
                if hedging:
                    flight = _Flight(request)
                    flights.add(flight)
                    try:
                        result = await flight.run(batch)
                    finally:
                        flights.discard(flight)
                else:
                    result = await batch.judge(request)
                if keep_results:
                    results[index] = result
                if on_result is not None and result.failure != "stopped":
                    maybe = on_result(result)
                    if inspect.isawaitable(maybe):
                        await maybe

        # More workers than HTTP slots: a request sleeping on a back-off or a Retry-After does
        # not hold a slot, so a queued request takes it (a 429 with Retry-After 1 s would
        # otherwise idle a slot for ten 100 ms calls), and parsing and on_result of one
        # request overlap the next call. The semaphore alone bounds the HTTP concurrency.
        n_workers = settings.concurrency + max(4, settings.concurrency // 2)
        workers = [asyncio.create_task(worker()) for _ in range(n_workers)]
        hedger = asyncio.create_task(hedge_hung()) if hedging else None
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
        finally:
            if hedger is not None:
                hedger.cancel()
                await asyncio.gather(hedger, return_exceptions=True)
            with contextlib.suppress(Exception):
                await limiter.close()
            if stats is not None:
                stats.update(requests=tally["started"], hedges=batch.hedges)
    return [results[i] for i in sorted(results)]


_DONE = object()
_FEED = object()
_FLIGHT: contextvars.ContextVar[_Flight] = contextvars.ContextVar("judge_flight")


def _median(values: Iterable[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


class _Flight:
    """One request being judged, when hedging may send it twice (see ``judge_many``)."""

    def __init__(self, request: JudgeRequest) -> None:
        self.request = request
        self.attempts = 0  # HTTP calls of the primary and the hedge together
        self.first_send = 0.0
        self.http_since: float | None = None  # start of the call now in flight, if any
        self.hedge: asyncio.Task[JudgeResult] | None = None
        self._pending: set[asyncio.Task[JudgeResult]] = set()
        self._changed: asyncio.Future[None] | None = None

    def _spawn(self, batch: _Batch) -> asyncio.Task[JudgeResult]:
        token = _FLIGHT.set(self)  # the task copies this context: its calls update the flight
        try:
            task = asyncio.create_task(batch.judge(self.request))
        finally:
            _FLIGHT.reset(token)
        self._pending.add(task)
        return task

    def start_hedge(self, batch: _Batch) -> None:
        self.hedge = self._spawn(batch)
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)

    async def run(self, batch: _Batch) -> JudgeResult:
        """The first successful result of the primary or its hedge (else the last failure)."""
        self._spawn(batch)
        last: JudgeResult | None = None
        try:
            while self._pending:
                self._changed = asyncio.get_running_loop().create_future()
                done, _ = await asyncio.wait(
                    {*self._pending, self._changed}, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done & self._pending:
                    self._pending.discard(task)
                    last = task.result()
                    if last.ok:
                        return self._final(last)
            assert last is not None
            return self._final(last)
        finally:
            for task in self._pending:
                task.cancel()  # the loser: its connection is closed, its slot freed
            await asyncio.gather(*self._pending, return_exceptions=True)
            self._pending.clear()

    def _final(self, result: JudgeResult) -> JudgeResult:
        if self.hedge is None:
            return result
        latency = int((time.monotonic() - self.first_send) * 1000) if self.first_send else 0
        return dataclasses.replace(result, hedged=True, attempts=self.attempts, elapsed_ms=latency)


def judge_many_sync(
    requests: Iterable[JudgeRequest],
    *,
    settings: ClientSettings,
    on_result: Callable[[JudgeResult], None] | None = None,
    rate_limiter: RateLimiter | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[JudgeResult]:
    """Synchronous ``judge_many`` for Celery tasks and management commands.

    The event loop runs in a helper thread; ``on_result`` and ``should_stop`` run in the
    *calling* thread, so they may use the Django ORM (which refuses to run inside an event
    loop). Verdict writes then overlap with the HTTP calls still in flight. If ``on_result``
    raises, no new request is sent, the in-flight ones finish, and the exception propagates.
    """
    requests = list(requests)  # materialise here: a lazy queryset must not run in the thread
    return _run_in_thread(
        lambda results_q, stop: judge_many(
            requests,
            settings=settings,
            on_result=results_q.put,
            rate_limiter=rate_limiter,
            should_stop=stop.is_set,
        ),
        settings=settings,
        on_result=on_result,
        should_stop=should_stop,
    )


def judge_stream_sync(
    feed: Callable[[int], Sequence[JudgeRequest]],
    *,
    settings: ClientSettings,
    feed_size: int | None = None,
    on_result: Callable[[JudgeResult], None] | None = None,
    rate_limiter: RateLimiter | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, int]:
    """Judge a stream of requests that ``feed(n)`` supplies on demand, until it returns none.

    ``feed``, ``on_result`` and ``should_stop`` all run in the calling thread (so they may use
    the Django ORM); the HTTP calls run in a helper thread's event loop. The loop asks for the
    next ``feed_size`` requests (default: half the concurrency) while it still holds about
    that many, so the call to ``feed`` overlaps with requests in flight and no slot waits for
    it. Results go to ``on_result`` as they complete; the return value is ``judge_many``'s
    ``stats``. A ``feed`` that raises stops the stream (in-flight calls finish) and the
    exception propagates.
    """
    size = max(1, feed_size or settings.concurrency // 2)
    stats: dict[str, int] = {}

    def start(results_q: queue.Queue[Any], stop: threading.Event) -> Awaitable[Any]:
        return judge_many(
            _fed_stream(results_q, stop, size, stats),
            settings=settings,
            on_result=results_q.put,
            rate_limiter=rate_limiter,
            should_stop=stop.is_set,
            keep_results=False,
            stats=stats,
        )

    _run_in_thread(
        start, settings=settings, on_result=on_result, should_stop=should_stop, feed=feed
    )
    return stats


async def _fed_stream(
    results_q: queue.Queue[Any], stop: threading.Event, size: int, stats: dict[str, Any]
) -> AsyncIterator[JudgeRequest]:
    """Requests from the calling thread's ``feed``, asked one batch ahead (see above).

    ``stats["starved_ms"]`` adds up the time a request was wanted and the buffer was empty
    while ``feed`` had not answered yet (the calling thread was busy or the feed slow).
    """
    loop = asyncio.get_running_loop()
    stats["starved_ms"] = 0
    buffer: collections.deque[JudgeRequest] = collections.deque()
    asked: asyncio.Future[Sequence[JudgeRequest]] | None = None
    exhausted = False
    while True:
        if asked is None and not exhausted and not stop.is_set() and len(buffer) <= size:
            asked = loop.create_future()
            results_q.put((_FEED, size, asked, loop))
        if asked is not None and (asked.done() or not buffer):
            if not asked.done():
                waited = time.monotonic()
                await asyncio.wait([asked])
                stats["starved_ms"] += round((time.monotonic() - waited) * 1000)
            batch = await asked
            asked = None
            exhausted = exhausted or not batch
            buffer.extend(batch)
        if not buffer:
            if exhausted or stop.is_set():
                return
            continue
        yield buffer.popleft()


def _resolve(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _run_in_thread(
    start: Callable[[queue.Queue[Any], threading.Event], Awaitable[Any]],
    *,
    settings: ClientSettings,
    on_result: Callable[[JudgeResult], None] | None,
    should_stop: Callable[[], bool] | None,
    feed: Callable[[int], Sequence[JudgeRequest]] | None = None,
) -> Any:
    """Run ``start``'s coroutine in a helper thread; serve its results and feed requests here."""
    results_q: queue.Queue[Any] = queue.Queue()
    stop = threading.Event()

    def run() -> None:
        try:
            outcome: Any = asyncio.run(start(results_q, stop))  # type: ignore[arg-type]
        except BaseException as exc:
            outcome = exc
        results_q.put((_DONE, outcome))

    thread = threading.Thread(target=run, name="judge-many", daemon=True)
    thread.start()
    failure: BaseException | None = None
    last_poll = 0.0
    while True:
        try:
            item = results_q.get(timeout=settings.stop_poll_s)
        except queue.Empty:
            item = None
        now = time.monotonic()
        if (
            should_stop is not None
            and not stop.is_set()
            and now - last_poll >= settings.stop_poll_s
        ):
            last_poll = now
            if should_stop():
                stop.set()
        if isinstance(item, tuple) and item and item[0] is _DONE:
            thread.join()
            outcome = item[1]
            if failure is not None:
                raise failure
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        if isinstance(item, tuple) and item and item[0] is _FEED:
            _, n, future, loop = item
            batch: Sequence[JudgeRequest] = ()
            if failure is None and not stop.is_set() and feed is not None:
                try:
                    batch = list(feed(n))
                except BaseException as exc:  # end the stream, finish in-flight, re-raise
                    failure = exc
                    stop.set()
                    batch = ()
            with contextlib.suppress(RuntimeError):  # the loop has already closed
                loop.call_soon_threadsafe(_resolve, future, batch)
            continue
        if item is not None and on_result is not None and failure is None:
            try:
                on_result(item)
            except BaseException as exc:  # finish in-flight calls, then re-raise
                failure = exc
                stop.set()
