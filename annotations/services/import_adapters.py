"""Traces in from the tools that make them: Inspect AI eval logs, lm-evaluation-harness
``--log_samples`` JSONL, and chat-format JSONL (``messages``, or vLLM / OpenAI batch outputs).

Each adapter turns one source record into a native record (the fields of docs/formats.md) and
hands it to the same checker as a native file, so every record is validated the same way, with
its place: the physical line for the JSONL formats, the sample's position in the log ("line" N
= the N-th sample) for Inspect logs. Pure of Django; ``inspect_ai`` is imported only when an
Inspect log is read.
"""

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

ADAPTER_FORMATS = ("inspect", "lm-eval", "chat")
# An assistant message's reasoning, where servers put it: vLLM / SGLang / DeepSeek
# ``reasoning_content``, OpenRouter / Ollama ``reasoning``, or <think>…</think> in the text.
REASONING_KEYS = ("reasoning_content", "reasoning")
_THINK = re.compile(r"<think>(.*?)</think>", re.S)
_LM_EVAL_TASK = re.compile(r"samples_(.+?)_\d{4}-\d{2}-\d{2}T")


class AdapterError(Exception):
    """The file cannot be read in the chosen format at all (one message, no line)."""


def sniff_adapter(path: Path, head: bytes) -> str | None:
    """The adapter a file's name or first record points to, or None for a native file."""
    if path.suffix.lower() == ".eval":
        return "inspect"
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if not text.startswith(b"{"):
        return None
    first = text.split(b"\n", 1)[0]
    try:
        record = orjson.loads(first)
    except orjson.JSONDecodeError:
        # One JSON document over many lines: an Inspect log written as JSON.
        return "inspect" if b'"eval"' in head and b'"samples"' in head else None
    if not isinstance(record, dict):
        return None
    if "doc_id" in record and "resps" in record:
        return "lm-eval"
    if "messages" in record or ("custom_id" in record and "response" in record):
        return "chat"
    if "eval" in record and "version" in record:
        return "inspect"
    return None


def _text(content: Any) -> str:
    """Text of a chat message's content: a string, or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and part.get("type") in (None, "text"):
                parts.append(str(part.get("text") or ""))
        return "\n".join(p for p in parts if p)
    return ""


def _join(*parts: str) -> str:
    return "\n\n".join(p.strip() for p in parts if p and p.strip())


def _assistant_trace(message: dict) -> str:
    """The assistant's reasoning, then its answer, as one trace."""
    content = _text(message.get("content"))
    reasoning = next(
        (message[k] for k in REASONING_KEYS if isinstance(message.get(k), str) and message[k]),
        "",
    )
    if not reasoning and (think := _THINK.search(content)):
        reasoning, content = think.group(1), _THINK.sub("", content)
    return _join(reasoning, content)


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- chat-format JSONL --------------------------------------------------------------------------
# Native fields a chat line may carry beside its messages (they win over what is derived).
CHAT_NATIVE_FIELDS = (
    "question_id",
    "question",
    "options",
    "gold_answer",
    "dataset",
    "condition",
    "trace_id",
    "sample_index",
    "final_answer",
    "confidence",
    "trace_type",
    "metadata",
)


def chat_record(raw: Any, line: int, *, condition: str = "") -> tuple[dict | None, str | None]:
    """A native record from one chat line, or (None, why not)."""
    if not isinstance(raw, dict):
        return None, f"a record must be a JSON object, not {type(raw).__name__}"
    messages = raw.get("messages")
    response = raw.get("response") if isinstance(raw.get("response"), dict) else None
    body = (response or {}).get("body") if isinstance((response or {}).get("body"), dict) else {}
    if messages is None and isinstance((raw.get("request") or {}).get("body"), dict):
        messages = raw["request"]["body"].get("messages")
    if messages is not None and not (
        isinstance(messages, list) and all(isinstance(m, dict) for m in messages)
    ):
        return None, "messages must be a list of objects with role and content"
    messages = list(messages or [])
    choices = body.get("choices") if isinstance(body.get("choices"), list) else []
    if choices and isinstance(choices[0], dict) and isinstance(choices[0].get("message"), dict):
        messages.append(choices[0]["message"])
    users = [m for m in messages if m.get("role") == "user"]
    assistants = [m for m in messages if m.get("role") == "assistant"]
    if not assistants:
        if raw.get("error"):
            return None, f"the request failed: {str(raw['error'])[:200]}"
        return None, "no assistant message: nothing to audit"
    question = raw.get("question") or (_text(users[-1].get("content")) if users else "")
    if not question:
        return None, (
            "no user message and no 'question': the question is missing (a batch output "
            "carries no request; add 'messages' or 'question' to the line)"
        )
    record: dict[str, Any] = {
        "question_id": _short_hash(question),
        "question": question,
        "condition": body.get("model") or raw.get("model") or condition,
        "trace_id": raw.get("custom_id") or raw.get("id") or f"line-{line}",
        "trace": _assistant_trace(assistants[-1]),
    }
    for name in CHAT_NATIVE_FIELDS:
        if raw.get(name) not in (None, ""):
            record[name] = raw[name]
    if condition:
        record["condition"] = condition
    return record, None


# --- lm-evaluation-harness --log_samples ------------------------------------------------------
_DOC_QUESTION_KEYS = ("question", "problem", "query", "input", "prompt", "text")


def lm_eval_records(
    raw: Any, line: int, *, task: str, condition: str
) -> tuple[list[dict], str | None]:
    """Native records (one per generated response) from one ``--log_samples`` line."""
    if not isinstance(raw, dict):
        return [], f"a record must be a JSON object, not {type(raw).__name__}"
    if "doc_id" not in raw or "resps" not in raw:
        return [], "not an lm-evaluation-harness sample (needs doc_id and resps)"
    if not condition:
        return [], (
            "lm-evaluation-harness samples do not name the model: give the condition "
            "(--condition NAME, or the condition field of the upload)"
        )
    responses = raw["resps"][0] if raw["resps"] and isinstance(raw["resps"], list) else []
    texts = responses if isinstance(responses, list) else [responses]
    if not texts or not all(isinstance(t, str) for t in texts):
        return [], (
            "resps holds no generated text (a loglikelihood task): nothing to audit; "
            "log a generate_until task"
        )
    doc = raw.get("doc") if isinstance(raw.get("doc"), dict) else {}
    question = next((doc[k] for k in _DOC_QUESTION_KEYS if isinstance(doc.get(k), str)), "")
    if not question:
        arguments = raw.get("arguments") or {}
        first = next(iter(arguments.values()), {}) if isinstance(arguments, dict) else {}
        question = first.get("arg_0", "") if isinstance(first, dict) else ""
    filtered = raw.get("filtered_resps")
    filtered = filtered if isinstance(filtered, list) else []
    metrics = {m: raw[m] for m in raw.get("metrics") or [] if m in raw}
    doc_id = str(raw["doc_id"])
    out = []
    for index, text in enumerate(texts):
        answer = filtered[index] if index < len(filtered) else ""
        if isinstance(answer, list):
            answer = answer[0] if answer else ""
        out.append(
            {
                "question_id": f"{task}:{doc_id}" if task else doc_id,
                "question": question,
                "gold_answer": str(raw.get("target", "")),
                "dataset": task,
                "condition": condition,
                "trace_id": f"{task}:{doc_id}:{index}" if task else f"{doc_id}:{index}",
                "sample_index": index,
                "trace": text,
                "final_answer": answer if isinstance(answer, str) else str(answer),
                "metadata": {
                    "lm_eval": {
                        "doc_id": raw["doc_id"],
                        "filter": raw.get("filter"),
                        "metrics": metrics,
                        "doc_hash": raw.get("doc_hash"),
                    }
                },
            }
        )
    return out, None


def lm_eval_task(path: Path) -> str:
    """The task's name from the harness's file name (``samples_<task>_<timestamp>.jsonl``)."""
    match = _LM_EVAL_TASK.search(path.name)
    return match.group(1) if match else ""


# --- Inspect AI eval logs -------------------------------------------------------------------------
def inspect_records(path: Path, *, condition: str = "") -> Iterator[tuple[int, dict]]:
    """(position, native record) for every sample of an Inspect log, read with inspect_ai's
    own log API (``.eval`` or ``.json``), streamed sample by sample."""
    try:
        from inspect_ai.log import read_eval_log, read_eval_log_samples
    except ImportError:  # pragma: no cover - the dependency is declared
        raise AdapterError("reading Inspect logs needs the inspect_ai package") from None
    try:
        header = read_eval_log(str(path), header_only=True)
    except Exception as exc:  # the library's own errors: a zip, JSON or schema problem
        raise AdapterError(f"not an Inspect eval log: {type(exc).__name__}: {exc}") from None
    spec = header.eval
    dataset = (spec.dataset.name if spec.dataset else "") or ""
    model = condition or spec.model
    eval_id = getattr(spec, "eval_id", "") or spec.run_id
    try:
        samples = read_eval_log_samples(str(path), all_samples_required=False)
        for position, sample in enumerate(samples, start=1):
            yield position, _inspect_record(sample, spec.task, eval_id, dataset, model)
    except AdapterError:
        raise
    except Exception as exc:
        raise AdapterError(f"unreadable Inspect log: {type(exc).__name__}: {exc}") from None


def _inspect_message_trace(message: Any) -> str:
    if message is None:
        return ""
    content = message.content
    if isinstance(content, str):
        reasoning, text = "", content
    else:
        reasoning = "\n\n".join(
            c.reasoning for c in content if getattr(c, "type", "") == "reasoning" and c.reasoning
        )
        text = "\n".join(c.text for c in content if getattr(c, "type", "") == "text")
    if not reasoning and (think := _THINK.search(text)):
        reasoning, text = think.group(1), _THINK.sub("", text)
    return _join(reasoning, text)


def _inspect_record(sample: Any, task: str, eval_id: str, dataset: str, model: str) -> dict:
    if isinstance(sample.input, str):
        question = sample.input
    else:
        users = [m for m in sample.input if m.role == "user"]
        question = users[-1].text if users else ""
    target = sample.target
    gold = target if isinstance(target, str) else ", ".join(target)
    scores = sample.scores or {}
    first = next(iter(scores.values()), None)
    answer = first.answer if first is not None and first.answer is not None else ""
    message = sample.output.message if sample.output and sample.output.choices else None
    return {
        "question_id": str(sample.id),
        "question": question,
        "options": list(sample.choices or []),
        "gold_answer": gold,
        "dataset": dataset,
        "condition": model,
        "trace_id": f"{eval_id}:{sample.id}:{sample.epoch}",
        "sample_index": max(sample.epoch - 1, 0),
        "trace": _inspect_message_trace(message),
        "final_answer": str(answer),
        "metadata": {
            "inspect": {
                "task": task,
                "eval_id": eval_id,
                "sample_id": sample.id,
                "epoch": sample.epoch,
                "scores": {name: _jsonable(s.value) for name, s in scores.items()},
            },
            **({"sample": sample.metadata} if sample.metadata else {}),
        },
    }


def _jsonable(value: Any) -> Any:
    try:
        return orjson.loads(orjson.dumps(value))
    except TypeError:
        return str(value)
