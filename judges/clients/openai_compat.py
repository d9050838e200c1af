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
  retrying the same request cannot help: mark the step / run failed),
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
from judges.clients.parsing import ParsedVerdict, ParseError, parse_verdict
from judges.clients.ratelimit import NoopRateLimiter, RateLimiter, estimate_tokens

Verdict = Literal["correct", "error", "abstain", "invalid"]
FailureKind = Literal["client_error", "retries_exhausted", "stopped"]

# Statuses worth retrying: timeouts, conflicts, rate limits, every server error.
RETRYABLE_STATUSES = frozenset({408, 409, 429}) | frozenset(range(500, 600))
_JSON_MODE_REJECTED = re.compile(r"response_format|json_object|json mode|structured output", re.I)
PARSE_NUDGE = (
    "Your previous answer could not be read. Reply with only the JSON object "
    '{"verdict": "correct" | "error" | "abstain", "error_category": ..., "rationale": ...}.'
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
    use_json_mode: bool = True
    extra_headers: Mapping[str, str] = field(default_factory=dict)
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

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if self.max_retries < 0 or self.max_parse_retries < 0:
            raise ValueError("max_retries and max_parse_retries must be >= 0")
        if any(name.lower() in ("authorization", "api-key") for name in self.extra_headers):
            # Settings are stored with the judge; a key must only come from api_key_env.
            raise ValueError("put the API key in an environment variable named by api_key_env")

    @property
    def completions_url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"


@dataclass(frozen=True)
class JudgeRequest:
    key: str  # opaque id chosen by the caller (e.g. a step's public id), echoed in the result
    messages: list[dict[str, str]]
    max_tokens: int = 512
    temperature: float = 0.0
    n_samples: int = 1
    response_format_json: bool = True
    categories: tuple[str, ...] = ()  # the audit's error categories, to canonicalise answers


@dataclass(frozen=True)
class JudgeResult:
    key: str
    ok: bool  # True: store ``verdict`` (possibly 'invalid'); False: see ``failure``
    verdict: Verdict | None
    category: str | None
    rationale: str
    raw_response: str  # every sample's raw text; re-asked answers included when unparseable
    attempts: int  # HTTP calls made, retries and re-asks included
    latency_ms: int  # wall time from the first send to the result, back-offs included
    prompt_tokens: int
    completion_tokens: int
    error: str | None = None  # short, never contains the key
    samples: tuple[str, ...] = ()  # per-sample verdicts, 'invalid' for unparseable samples
    failure: FailureKind | None = None
    retryable: bool = False
    json_mode: bool = False  # whether the answer was requested with response_format
    parse_methods: tuple[str, ...] = ()
    hedged: bool = False  # a duplicate was sent (a call looked hung); attempts count both


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


@dataclass
class _Sample:
    parsed: ParsedVerdict | None
    raws: list[str]
    reason: str | None


class _Batch:
    """Shared state of one ``judge_many`` call: session, semaphore, server quirks learned."""

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
        self.semaphore = asyncio.Semaphore(settings.concurrency)
        self.json_mode = settings.use_json_mode
        self.n_supported: bool | None = None  # unknown until a call with n > 1 answers
        self._should_stop = should_stop
        self._stopped = False
        self._last_poll = 0.0
        # Durations of recent successful calls, for the hedging threshold.
        self.latencies: collections.deque[float] = collections.deque(maxlen=256)
        self.hedges = 0
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
            async with self.semaphore:
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
                json_mode = self.json_mode and request.response_format_json
                payload = _payload(s, request, messages, n=n, json_mode=json_mode)
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
                except aiohttp.ClientError as exc:
                    status, body, retry_after = 0, b"", None
                    problem = f"connection error: {type(exc).__name__}"
                    refused = getattr(exc, "os_error", None)
                    if isinstance(refused, EgressRefused):
                        problem = f"refused: {refused}"
                finally:
                    if flight is not None and flight.http_since == sent_at:
                        flight.http_since = None
                if status == 200:
                    self.latencies.append(time.monotonic() - sent_at)
            if problem.startswith("refused: "):
                # The host resolved to an address the egress policy refuses: no retry helps.
                await self.limiter.reconcile(estimate, 0)
                raise _CallFailed("client_error", problem, retryable=False, attempts=attempts)
            if status == 200:
                try:
                    reply = _read_completion(body, attempts=attempts, json_mode=json_mode)
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
                if json_mode and status in (400, 422) and _JSON_MODE_REJECTED.search(text):
                    # The server has no JSON mode: plain prompting for the rest of the batch;
                    # this does not count as a retry.
                    self.json_mode = False
                    continue
                problem = f"HTTP {status}: {text}" if text else f"HTTP {status}"
                if 300 <= status < 400:
                    problem = f"HTTP {status}: redirects are not followed; use the final URL"
                if status not in RETRYABLE_STATUSES:
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
        first_send: list[float] = []  # latency counts from the first send, not from queueing
        counters = {"attempts": 0, "prompt": 0, "completion": 0, "json_mode": False}

        async def call(messages: list[dict[str, str]], n: int) -> list[str]:
            reply = await self.call(request, messages, n, first_send)
            counters["attempts"] += reply.attempts
            counters["prompt"] += reply.prompt_tokens
            counters["completion"] += reply.completion_tokens
            counters["json_mode"] = counters["json_mode"] or reply.json_mode
            return reply.contents

        async def sample(first_raw: str | None) -> _Sample:
            raws: list[str] = []
            raw = first_raw if first_raw is not None else (await call(request.messages, 1))[0]
            for reask in range(self.settings.max_parse_retries + 1):
                raws.append(raw)
                try:
                    return _Sample(parse_verdict(raw, categories=request.categories), raws, None)
                except ParseError as exc:
                    reason = exc.reason
                if reask == self.settings.max_parse_retries:
                    break
                # Ask again with the unreadable answer shown: plain repetition at temperature 0
                # would reproduce it.
                nudged = [
                    *request.messages,
                    {"role": "assistant", "content": raw},
                    {"role": "user", "content": PARSE_NUDGE},
                ]
                raw = (await call(nudged, 1))[0]
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
                latency_ms=_elapsed_ms(first_send),
                prompt_tokens=counters["prompt"],
                completion_tokens=counters["completion"],
                error=exc.message,
                failure=exc.kind,
                retryable=exc.retryable,
                json_mode=bool(counters["json_mode"]),
            )
        verdict, category, rationale = aggregate_samples([x.parsed for x in samples])
        error = None
        if verdict == "invalid":
            reasons = "; ".join(sorted({x.reason or "" for x in samples}))
            error = f"unparseable after {self.settings.max_parse_retries} re-asks: {reasons}"
        return JudgeResult(
            key=request.key,
            ok=True,
            verdict=verdict,
            category=category,
            rationale=rationale,
            raw_response=_join_raws(samples),
            attempts=int(counters["attempts"]),
            latency_ms=_elapsed_ms(first_send),
            prompt_tokens=int(counters["prompt"]),
            completion_tokens=int(counters["completion"]),
            error=error,
            samples=tuple(x.parsed.verdict if x.parsed else "invalid" for x in samples),
            json_mode=bool(counters["json_mode"]),
            parse_methods=tuple(x.parsed.method for x in samples if x.parsed),
        )

    async def _samples(
        self,
        request: JudgeRequest,
        call: Callable[[list[dict[str, str]], int], Awaitable[list[str]]],
        sample: Callable[[str | None], Awaitable[_Sample]],
    ) -> list[_Sample]:
        n = max(1, request.n_samples)
        firsts: list[str | None] = []
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


def _payload(
    settings: ClientSettings,
    request: JudgeRequest,
    messages: list[dict[str, str]],
    *,
    n: int,
    json_mode: bool,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "model": settings.model,
        "messages": messages,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
    }
    if n > 1:
        payload["n"] = n
    if json_mode:
        payload["response_format"] = {"type": "json_object"}
    return payload


def _elapsed_ms(first_send: list[float]) -> int:
    return int((time.monotonic() - first_send[0]) * 1000) if first_send else 0


def _join_raws(samples: Sequence[_Sample]) -> str:
    def one(x: _Sample) -> str:
        return "\n\n--- re-asked ---\n\n".join(x.raws) if x.parsed is None else x.raws[-1]

    if len(samples) == 1:
        return one(samples[0])
    return "\n\n".join(f"--- sample {i} ---\n{one(x)}" for i, x in enumerate(samples, 1))


def _read_completion(body: bytes, *, attempts: int, json_mode: bool) -> _Reply:
    try:
        data = orjson.loads(body)
        choices = data["choices"]
        contents = [str((c.get("message") or {}).get("content") or "") for c in choices]
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a chat completion ({type(exc).__name__})") from None
    if not contents:
        raise ValueError("no choices")
    usage = data.get("usage") or {}
    return _Reply(
        contents=contents,
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        attempts=attempts,
        json_mode=json_mode,
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
        return dataclasses.replace(result, hedged=True, attempts=self.attempts, latency_ms=latency)


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
