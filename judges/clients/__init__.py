"""Django-free adapters the judge tasks call: the OpenAI-compatible client, verdict parsing and
the Redis-shared rate limiter. Nothing here imports Django, so it runs in notebooks and benches.
"""

from judges.clients.openai_compat import (
    ClientSettings,
    JudgeConfigError,
    JudgeRequest,
    JudgeResult,
    aggregate_samples,
    judge_many,
    judge_many_sync,
    judge_stream_sync,
)
from judges.clients.parsing import ParsedVerdict, ParseError, parse_verdict
from judges.clients.ratelimit import (
    NoopRateLimiter,
    RateLimiter,
    RateLimits,
    RedisRateLimiter,
    limiter_for,
)

__all__ = [
    "ClientSettings",
    "JudgeConfigError",
    "JudgeRequest",
    "JudgeResult",
    "NoopRateLimiter",
    "ParseError",
    "ParsedVerdict",
    "RateLimiter",
    "RateLimits",
    "RedisRateLimiter",
    "aggregate_samples",
    "judge_many",
    "judge_many_sync",
    "judge_stream_sync",
    "limiter_for",
    "parse_verdict",
]
