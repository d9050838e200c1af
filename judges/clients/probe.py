"""A capability probe of an OpenAI-compatible endpoint: what it serves and how to judge with it.

``probe(settings)`` makes a few small calls (about 17) and reports:

* the models ``/models`` lists and whether the configured one is among them (llama-cpp-python
  answers any name, so a typo goes unnoticed otherwise);
* per structured-output mode (``STRUCTURED_MODES``): accepted (HTTP 200) and *enforced*. The
  enforcement test asks the model to answer the single word ``banana``: only a server that
  constrains the answer to the verdict schema returns a verdict object anyway. That tells
  enforcement apart from a model that merely follows instructions, and works on a random model;
* whether ``n`` is honoured (choices returned for ``n=3``), whether usage and cached tokens are
  reported, and whether answers carry a reasoning part;
* whether token log-probabilities come back when asked (``logprobs``: returned, ignored or
  refused) and, if so, the verdict's error probability read from them
  (``judges.clients.logprobs``);
* latency: the median of calls sent alone, and the server's parallelism from 4 calls sent at
  once (4 × alone / wall time; about 1 means it serves one request at a time);
* suggested settings: ``structured_output`` (the first enforced mode in ``PREFERENCE``, else
  ``json_object`` when accepted, else ``none``), ``max_concurrency`` (the measured parallelism,
  never more than configured) and ``timeout_s`` (a margin over a call at that concurrency).

Every call goes through the deployment's egress policy like a judge run's: the URL and key
name are checked first and the connector's resolver refuses addresses the policy refuses.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import orjson

from judges.clients.egress import PolicyResolver
from judges.clients.logprobs import verdict_error_probability
from judges.clients.openai_compat import (
    ENFORCING_MODES,
    STRUCTURED_MODES,
    ClientSettings,
    _message_text,
    cached_tokens_of,
    request_headers,
    structured_fields,
)
from judges.clients.parsing import ParseError, parse_verdict

# The order in which an enforced mode is recommended: the most widely implemented first.
PREFERENCE = ("json_schema", "json_object_schema", "grammar", "guided_json", "ollama_format")
PROBE_MAX_TOKENS = 96

_VERDICT_MESSAGES = [
    {
        "role": "system",
        "content": 'Answer only with JSON: {"verdict": "correct" | "error" | "abstain", '
        '"error_category": null, "rationale": "<one sentence>"}.',
    },
    {"role": "user", "content": "Question: What is 2 + 2?\n<step>\n2 + 2 = 4.\n</step>"},
]
_BANANA_MESSAGES = [{"role": "user", "content": "Reply with the single word banana, nothing else."}]


@dataclass
class ModeResult:
    accepted: bool = False
    enforced: bool = False
    status: int = 0
    error: str = ""
    answer: str = ""  # the start of what came back, for the report


@dataclass
class ProbeReport:
    base_url: str
    model: str
    models: list[str] | None = None
    models_error: str = ""
    model_served: bool | None = None
    modes: dict[str, ModeResult] = field(default_factory=dict)
    n_requested: int = 3
    n_returned: int | None = None
    usage_reported: bool = False
    cached_reported: bool = False
    reasoning_seen: bool = False
    logprobs: str = ""  # "returned", "ignored" or "refused (…)" when asked; "" not probed
    logprobs_error_probability: float | None = None  # read at the verdict, when returned
    latency_alone_ms: float | None = None
    parallel_calls: int = 4
    parallel_wall_ms: float | None = None
    parallelism: float | None = None
    one_at_a_time: bool | None = None
    suggested: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def n_honoured(self) -> bool | None:
        return None if self.n_returned is None else self.n_returned >= self.n_requested

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["n_honoured"] = self.n_honoured
        return out


class _Prober:
    def __init__(
        self, session: aiohttp.ClientSession, settings: ClientSettings, secret: str | None
    ):
        self.session = session
        self.settings = settings
        self.secret = secret

    def scrub(self, text: str) -> str:
        if self.secret:
            text = text.replace(self.secret, "***")
        return " ".join(text.split())[:200]

    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        mode: str,
        n: int = 1,
        temperature: float = 0.0,
        extra: dict[str, Any] | None = None,
    ) -> tuple[int, dict[str, Any] | None, str, float]:
        """(status, body or None, error text, seconds)."""
        s = self.settings
        payload: dict[str, Any] = {
            "model": s.model,
            "messages": messages,
            s.max_tokens_field: PROBE_MAX_TOKENS,
            "temperature": temperature,
            **structured_fields(mode),
        }
        if n > 1:
            payload["n"] = n
        payload.update(extra or {})
        started = time.monotonic()
        try:
            async with self.session.post(
                s.completions_url, data=orjson.dumps(payload), allow_redirects=False
            ) as r:
                raw = await r.read()
                status = r.status
        except TimeoutError:
            return 0, None, f"timeout after {s.timeout_s:g}s", time.monotonic() - started
        except aiohttp.ClientError as exc:
            cause = getattr(exc, "os_error", None) or exc
            return 0, None, self.scrub(f"{type(exc).__name__}: {cause}"), time.monotonic() - started
        elapsed = time.monotonic() - started
        if status != 200:
            return status, None, self.scrub(raw.decode("utf-8", "replace")), elapsed
        try:
            body = orjson.loads(raw)
            body["choices"][0]["message"]
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
            return status, None, "not a chat completion", elapsed
        return status, body, "", elapsed

    async def models(self, report: ProbeReport) -> None:
        url = self.settings.base_url.rstrip("/") + "/models"
        try:
            async with self.session.get(url, allow_redirects=False) as r:
                raw = await r.read()
                if r.status != 200:
                    report.models_error = (
                        f"HTTP {r.status}: {self.scrub(raw.decode('utf-8', 'replace'))}"
                    )
                    return
            data = orjson.loads(raw).get("data") or []
            report.models = [str(m.get("id")) for m in data if isinstance(m, dict)]
            report.model_served = self.settings.model in report.models
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError, AttributeError) as exc:
            report.models_error = self.scrub(f"{type(exc).__name__}: {exc}")


def _first_text(body: dict[str, Any]) -> tuple[str, bool]:
    return _message_text(body["choices"][0].get("message") or {})


async def _probe(
    session: aiohttp.ClientSession, settings: ClientSettings, secret: str | None
) -> ProbeReport:
    p = _Prober(session, settings, secret)
    report = ProbeReport(base_url=settings.base_url, model=settings.model)
    await p.models(report)
    if report.model_served is False:
        report.notes.append(
            f"{settings.model!r} is not among the models served ({', '.join(report.models or [])});"
            " a server that answers any name (llama-cpp-python) would judge with another model"
        )
    timings: dict[str, list[float]] = {}
    for mode in STRUCTURED_MODES:
        status, body, error, elapsed = await p.chat(_BANANA_MESSAGES, mode=mode)
        result = ModeResult(status=status, error=error, accepted=body is not None)
        if body is not None:
            text, reasoning = _first_text(body)
            report.reasoning_seen = report.reasoning_seen or reasoning
            result.answer = text[:80]
            usage = body.get("usage") or {}
            report.usage_reported = report.usage_reported or bool(usage.get("prompt_tokens"))
            if mode in ENFORCING_MODES:
                try:
                    parse_verdict(text, enforced=True)
                    result.enforced = True
                except ParseError:
                    result.enforced = False
            timings.setdefault(mode, []).append(elapsed)
        report.modes[mode] = result
    if not any(r.accepted for r in report.modes.values()):
        first = next(iter(report.modes.values()))
        report.notes.append(
            f"the server answered no chat completion: {first.error or first.status}"
        )
    mode = _suggest_mode(report)
    # n: asked once; a server that ignores it returns one choice.
    status, body, _, _ = await p.chat(_VERDICT_MESSAGES, mode=mode, n=3, temperature=1.0)
    if body is not None:
        report.n_returned = len(body.get("choices") or [])
        report.cached_reported = report.cached_reported or cached_tokens_of(body) > 0
    await _probe_logprobs(p, report, mode)
    # Latency alone: three calls one after another (the second and third may hit a cache).
    alone: list[float] = []
    for _ in range(3):
        status, body, _, elapsed = await p.chat(_VERDICT_MESSAGES, mode=mode)
        if body is not None:
            alone.append(elapsed)
            report.cached_reported = report.cached_reported or cached_tokens_of(body) > 0
    if alone:
        report.latency_alone_ms = round(statistics.median(alone) * 1000, 1)
        started = time.monotonic()
        replies = await asyncio.gather(
            *(p.chat(_VERDICT_MESSAGES, mode=mode) for _ in range(report.parallel_calls))
        )
        wall = time.monotonic() - started
        if all(body is not None for _, body, _, _ in replies) and wall > 0:
            report.parallel_wall_ms = round(wall * 1000, 1)
            report.parallelism = round(
                min(report.parallel_calls, report.parallel_calls * statistics.median(alone) / wall),
                2,
            )
            report.one_at_a_time = report.parallelism < 1.5
    report.suggested = _suggest(report, settings, mode)
    if report.n_honoured is False:
        report.notes.append(
            "n is ignored: samples are asked by repeated calls (the client does so by itself);"
            " at temperature 0 repeated samples are usually identical"
        )
    if not report.usage_reported:
        report.notes.append("no usage reported: token counts and tpm limits cannot be exact")
    if report.logprobs and report.logprobs != "returned":
        report.notes.append(
            f"token log-probabilities {report.logprobs.split(' ')[0]}: with logprobs on, the "
            "client asks without them once refused, and the uncertainty falls back to votes"
        )
    if report.reasoning_seen:
        report.notes.append(
            "answers carry a reasoning part: it is kept with the raw response, never parsed;"
            " give max_tokens room for it (OpenAI reasoning models: max_completion_tokens)"
        )
    return report


async def _probe_logprobs(p: _Prober, report: ProbeReport, mode: str) -> None:
    status, body, error, _ = await p.chat(
        _VERDICT_MESSAGES, mode=mode, extra={"logprobs": True, "top_logprobs": 5}
    )
    if body is None:
        report.logprobs = f"refused ({status or 'no answer'}: {error[:80]})"
        return
    logprobs = body["choices"][0].get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not content:
        report.logprobs = "ignored"
        return
    report.logprobs = "returned"
    text, _ = _first_text(body)
    try:
        verdict = parse_verdict(text).verdict
    except ParseError:
        return
    report.logprobs_error_probability = verdict_error_probability(content, verdict=verdict)


def _suggest_mode(report: ProbeReport) -> str:
    for mode in PREFERENCE:
        if report.modes.get(mode, ModeResult()).enforced:
            return mode
    if report.modes.get("json_object", ModeResult()).accepted:
        return "json_object"
    return "none"


def _suggest(report: ProbeReport, settings: ClientSettings, mode: str) -> dict[str, Any]:
    concurrency = settings.concurrency
    if report.parallelism is not None:
        if report.one_at_a_time:
            concurrency = 1
        elif report.parallelism < 0.6 * report.parallel_calls:  # else: no queue seen at 4
            concurrency = max(1, min(concurrency, round(report.parallelism)))
    timeout = settings.timeout_s
    if report.latency_alone_ms is not None:
        # A call at the suggested concurrency takes about alone × concurrency / parallelism;
        # five times that (at least 10 s) leaves room for long answers without waiting for ever.
        share = concurrency / max(1.0, report.parallelism or 1.0)
        per_call_s = report.latency_alone_ms / 1000 * max(1.0, share)
        timeout = float(min(3600, max(10, math.ceil(5 * per_call_s))))
    return {"structured_output": mode, "max_concurrency": concurrency, "timeout_s": timeout}


async def probe(settings: ClientSettings) -> ProbeReport:
    """Probe the endpoint of ``settings`` (see the module docstring)."""
    headers, secret = request_headers(settings)
    connector = aiohttp.TCPConnector(
        limit=8,
        resolver=PolicyResolver(settings.egress) if settings.egress is not None else None,
    )
    timeout = aiohttp.ClientTimeout(total=settings.timeout_s)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=headers, raise_for_status=False
    ) as session:
        return await _probe(session, settings, secret)


def probe_sync(settings: ClientSettings) -> ProbeReport:
    return asyncio.run(probe(settings))


def format_report(report: ProbeReport) -> list[str]:
    """The report as lines of text (the command prints them; the page shows the same)."""
    lines = [f"endpoint {report.base_url}  model {report.model}"]
    if report.models is not None:
        served = "yes" if report.model_served else "NO"
        lines.append(
            f"models served: {', '.join(report.models) or '(none)'}; configured one: {served}"
        )
    else:
        lines.append(f"models: not listed ({report.models_error})")
    for mode, r in report.modes.items():
        if not r.accepted:
            state = f"refused ({r.status or 'no answer'}: {r.error[:80]})"
        elif mode in ENFORCING_MODES:
            state = "enforced" if r.enforced else "accepted, NOT enforced"
        else:
            state = "accepted"
        lines.append(f"  {mode:<19} {state}")
    if report.n_returned is not None:
        lines.append(
            f"n: asked {report.n_requested}, got {report.n_returned} "
            f"({'honoured' if report.n_honoured else 'ignored'})"
        )
    lines.append(
        f"usage reported: {'yes' if report.usage_reported else 'no'}; "
        f"cached tokens reported: {'yes' if report.cached_reported else 'no'}"
    )
    if report.logprobs:
        read = report.logprobs_error_probability
        shown = f"; verdict's p(error) {read:.3g}" if read is not None else ""
        lines.append(f"token log-probabilities: {report.logprobs}{shown}")
    if report.latency_alone_ms is not None:
        lines.append(f"latency alone: {report.latency_alone_ms:g} ms")
    if report.parallelism is not None:
        lines.append(
            f"{report.parallel_calls} at once: {report.parallel_wall_ms:g} ms wall, parallelism "
            f"{report.parallelism:g}{' (one request at a time)' if report.one_at_a_time else ''}"
        )
    s = report.suggested
    if s:
        lines.append(
            f"suggested: structured_output={s['structured_output']} "
            f"max_concurrency={s['max_concurrency']} timeout_s={s['timeout_s']:g}"
        )
    lines.extend(f"note: {note}" for note in report.notes)
    return lines
