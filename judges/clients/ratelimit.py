"""Request- and token-per-minute limits shared by every worker through Redis.

Algorithm: two token buckets (requests, tokens) in one Redis hash per judge, refilled at
``limit / 60`` per second up to a capacity of ``burst_s`` seconds of budget, updated by one
atomic Lua script that reads the clock with ``TIME`` on the Redis server (so clock skew between
worker machines does not matter). In any 60 s window a judge therefore sends at most
``limit * (1 + burst_s / 60)`` — the default ``burst_s=1`` keeps that within 2% of the limit.

Why leases: at 640 requests/s one Redis round trip per request would cost a large share of a
core in a 2-core worker. Each process therefore takes a *lease* of several permits per call —
about ``lease_s`` (0.1 s) worth of its budget, at most ``max_lease`` — and hands them out
locally. One ``asyncio.Lock`` makes a single coroutine refill while the others wait, so 64
waiting coroutines cause one Redis call, not 64. Unused permits go back to Redis on ``close()``.

Token counts are not known before the answer: ``acquire`` takes an estimate and ``reconcile``
books the difference to the real usage. Differences accumulate locally and ride along with the
next Lua call (or ``close()``), so reconciling costs no extra round trip.
"""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import dataclass
from typing import Protocol

# KEYS[1] bucket hash. ARGV: req_rate/s, req_cap, tok_rate/s, tok_cap,
# min_req, want_req, min_tok, want_tok, tok_adjust, req_refund, ttl_ms.
# A limit of 0 means "unlimited" for that bucket. Returns {granted_req, granted_tok, wait_ms}.
_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local req_rate, req_cap = tonumber(ARGV[1]), tonumber(ARGV[2])
local tok_rate, tok_cap = tonumber(ARGV[3]), tonumber(ARGV[4])
local min_req, want_req = tonumber(ARGV[5]), tonumber(ARGV[6])
local min_tok, want_tok = tonumber(ARGV[7]), tonumber(ARGV[8])
local adjust, refund = tonumber(ARGV[9]), tonumber(ARGV[10])
local s = redis.call('HMGET', KEYS[1], 'req', 'tok', 'ts')
local req = tonumber(s[1]) or req_cap
local tok = tonumber(s[2]) or tok_cap
local ts = tonumber(s[3]) or now
local dt = math.max(0, now - ts)
req = math.min(req_cap, req + dt * req_rate + refund)
-- tokens may go negative after a reconcile that found real usage above the estimate
tok = math.min(tok_cap, tok + dt * tok_rate - adjust)
local g_req, g_tok, wait = 0, 0, 0
if req_rate <= 0 then req = want_req end
if tok_rate <= 0 then tok = want_tok end
-- a request larger than the whole bucket is let through when the bucket is full
local need_tok = math.min(min_tok, tok_cap)
if req >= min_req and tok >= need_tok then
  g_req = math.min(want_req, math.floor(req))
  g_tok = math.max(min_tok, math.min(want_tok, math.floor(tok)))
  if min_req == 0 then g_req = 0 end
  if min_tok == 0 and want_tok == 0 then g_tok = 0 end
  req = req - g_req
  tok = tok - g_tok
else
  if req < min_req then wait = math.max(wait, (min_req - req) / req_rate) end
  if tok < need_tok then wait = math.max(wait, (need_tok - tok) / tok_rate) end
end
if req_rate <= 0 then req = req_cap end
if tok_rate <= 0 then tok = tok_cap end
redis.call('HSET', KEYS[1], 'req', req, 'tok', tok, 'ts', now)
redis.call('PEXPIRE', KEYS[1], ARGV[11])
return {g_req, g_tok, math.ceil(wait * 1000)}
"""


class RateLimiter(Protocol):
    async def acquire(self, tokens_estimate: int) -> None:
        """Wait until one request of about ``tokens_estimate`` tokens may be sent."""

    async def reconcile(self, tokens_estimate: int, tokens_used: int) -> None:
        """Book the difference between the estimate and the tokens really used."""

    async def close(self) -> None:
        """Return unused leased permits and flush pending reconciliation."""


class NoopRateLimiter:
    """The limiter used when a judge has no request or token limit."""

    async def acquire(self, tokens_estimate: int) -> None:
        return None

    async def reconcile(self, tokens_estimate: int, tokens_used: int) -> None:
        return None

    async def close(self) -> None:
        return None


@dataclass(frozen=True)
class RateLimits:
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    burst_s: float = 1.0  # bucket capacity in seconds of budget (see the module docstring)
    lease_s: float = 0.1  # how much budget one Redis call leases to this process
    max_lease: int = 32

    @property
    def unlimited(self) -> bool:
        return not self.requests_per_minute and not self.tokens_per_minute


class RedisRateLimiter:
    """A limiter whose budget is shared by every process using the same ``judge_id``.

    The Redis client is created lazily inside the running event loop (and again if the loop
    changes), so an instance can be built in synchronous code and used by ``judge_many_sync``.
    """

    KEY_PREFIX = "stepaudit:ratelimit:"

    def __init__(self, *, redis_url: str, judge_id: str, limits: RateLimits) -> None:
        if limits.unlimited:
            raise ValueError("no limit set; use NoopRateLimiter (see limiter_for)")
        self._url = redis_url
        self.key = f"{self.KEY_PREFIX}{judge_id}"
        self._limits = limits
        rpm = limits.requests_per_minute or 0
        tpm = limits.tokens_per_minute or 0
        self._req_rate = rpm / 60.0
        self._tok_rate = tpm / 60.0
        self._req_cap = max(1.0, self._req_rate * limits.burst_s)
        self._tok_cap = max(1.0, self._tok_rate * limits.burst_s)
        self._lease_req = max(1, min(limits.max_lease, int(self._req_rate * limits.lease_s)))
        self._local_req = 0
        self._local_tok = 0
        self._pending_adjust = 0
        self._lock: asyncio.Lock | None = None
        self._client = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._script = None
        self.redis_calls = 0  # for tests and the benchmark: round trips actually made

    def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        import redis.asyncio as aioredis  # imported here: the no-op path needs no Redis

        self._loop = loop
        self._client = aioredis.Redis.from_url(self._url)
        self._script = self._client.register_script(_LUA)
        self._lock = asyncio.Lock()

    async def acquire(self, tokens_estimate: int) -> None:
        self._bind()
        assert self._lock is not None
        tokens_estimate = max(0, int(tokens_estimate)) if self._tok_rate else 0
        while True:
            if self._take_local(tokens_estimate):
                return
            async with self._lock:
                if self._take_local(tokens_estimate):
                    return
                wait_ms = await self._refill(tokens_estimate)
                if wait_ms == 0:
                    continue
            # Sleep outside the lock with a little jitter so processes do not wake in step.
            await asyncio.sleep(wait_ms / 1000 * (1 + 0.1 * random.random()))

    def _take_local(self, tokens: int) -> bool:
        need_req = 1 if self._req_rate else 0
        if self._local_req >= need_req and self._local_tok >= tokens:
            self._local_req -= need_req
            self._local_tok -= tokens
            return True
        return False

    async def _refill(self, tokens: int) -> int:
        min_req = 1 if self._req_rate and self._local_req < 1 else 0
        min_tok = max(0, tokens - self._local_tok) if self._tok_rate else 0
        want_req = self._lease_req if min_req else 0
        # Lease tokens for as many requests as we lease, sized by the current estimate.
        want_tok = max(min_tok, tokens * max(1, want_req)) if self._tok_rate else 0
        want_tok = min(want_tok, max(min_tok, int(self._tok_cap)))
        granted_req, granted_tok, wait_ms = await self._call(
            min_req=min_req, want_req=want_req, min_tok=min_tok, want_tok=want_tok, refund=0
        )
        self._local_req += granted_req
        self._local_tok += granted_tok
        return wait_ms

    async def _call(
        self, *, min_req: int, want_req: int, min_tok: int, want_tok: int, refund: int
    ) -> tuple[int, int, int]:
        assert self._script is not None
        adjust, self._pending_adjust = self._pending_adjust, 0
        ttl_ms = int(max(60.0, self._limits.burst_s * 2) * 1000)
        self.redis_calls += 1
        try:
            result = await self._script(
                keys=[self.key],
                args=[
                    self._req_rate,
                    self._req_cap,
                    self._tok_rate,
                    self._tok_cap,
                    min_req,
                    want_req,
                    min_tok,
                    want_tok,
                    adjust,
                    refund,
                    ttl_ms,
                ],
            )
        except BaseException:
            self._pending_adjust += adjust  # not booked; keep it for the next call
            raise
        return int(result[0]), int(result[1]), int(result[2])

    async def reconcile(self, tokens_estimate: int, tokens_used: int) -> None:
        if self._tok_rate:
            self._pending_adjust += int(tokens_used) - int(tokens_estimate)

    async def close(self) -> None:
        if self._loop is not asyncio.get_running_loop() or self._client is None:
            return
        refund_req, self._local_req = self._local_req, 0
        refund_tok, self._local_tok = self._local_tok, 0
        if refund_req or refund_tok or self._pending_adjust:
            # A negative adjust credits tokens back; refund goes to the request bucket.
            self._pending_adjust -= refund_tok
            await self._call(min_req=0, want_req=0, min_tok=0, want_tok=0, refund=refund_req)
        await self._client.aclose()
        self._client = None
        self._loop = None


def limiter_for(*, redis_url: str | None, judge_id: str, limits: RateLimits) -> RateLimiter:
    """The limiter a judge needs: no-op without limits, Redis-backed otherwise."""
    if limits.unlimited:
        return NoopRateLimiter()
    if not redis_url:
        raise ValueError("a judge with rate limits needs a Redis URL (REDIS_URL)")
    return RedisRateLimiter(redis_url=redis_url, judge_id=judge_id, limits=limits)


def estimate_tokens(messages: list[dict[str, str]], *, max_tokens: int, n: int = 1) -> int:
    """A cheap upper-ish estimate: ~4 characters per prompt token plus the completion budget."""
    chars = sum(len(str(m.get("content", ""))) for m in messages)
    return math.ceil(chars / 4) + 4 * len(messages) + max_tokens * n
