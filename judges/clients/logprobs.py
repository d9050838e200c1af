"""The judge's own probability that a step is an error, read from token log-probabilities.

With ``logprobs`` on, an OpenAI-compatible server returns per generated token its log-probability
and the ``top_logprobs`` most likely alternatives at that position (``choices[i].logprobs.content``:
``[{"token", "logprob", "top_logprobs": [{"token", "logprob"}, ...]}, ...]``). At the position
where the verdict's value begins (after ``"verdict": "``), the alternatives are the verdicts the
judge could have written: a token is *error-ish* when its text (stripped, lower-cased, its
leading letters) is a non-empty prefix of "error" — ``"err"`` of a tokenizer that splits the
word counts — and *correct-ish* likewise for "correct". The verdict's error probability is

    p = P(error-ish) / (P(error-ish) + P(correct-ish))

over that position's ``top_logprobs`` alternatives (the chosen token alone when none are listed),
or None when neither is there.
"abstain" and anything else is left out: p is about error versus correct, as the expert label is.

Examples
--------
>>> import math
>>> lp = lambda p: math.log(p)
>>> content = [
...     {"token": '{"verdict": "', "logprob": 0.0, "top_logprobs": []},
...     {"token": "err", "logprob": lp(0.6),
...      "top_logprobs": [{"token": "err", "logprob": lp(0.6)},
...                       {"token": "correct", "logprob": lp(0.3)},
...                       {"token": "abst", "logprob": lp(0.1)}]},
...     {"token": 'or"}', "logprob": 0.0, "top_logprobs": []},
... ]
>>> round(verdict_error_probability(content, verdict="error"), 6)
0.666667
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

# Where the verdict's value begins in the generated text: after ``"verdict": "`` (any blanks,
# any letter case of the key; inside a fence or after a reasoning block alike).
_VERDICT_VALUE_RE = re.compile(r'"\s*verdict\s*"\s*:\s*"\s*', re.I)
_LEADING_WORD_RE = re.compile(r"[a-z]+")


def verdict_offset(text: str, *, verdict: str | None = None) -> int | None:
    """The character offset in ``text`` where the verdict's value begins, or None.

    With ``verdict`` given, the first ``"verdict": "`` whose value starts with it (a rationale
    quoting the key before the real field is passed over).

    Examples
    --------
    >>> verdict_offset('{ "Verdict" :  "error", "rationale": "x"}')
    16
    >>> verdict_offset('{"verdict": "correct"}', verdict="error") is None
    True
    """
    for match in _VERDICT_VALUE_RE.finditer(text):
        start = match.end()
        if verdict is None or text[start : start + len(verdict)].lower() == verdict:
            return start
    return None


def _kind(text: str) -> str | None:
    word = _LEADING_WORD_RE.match(text.strip().lower())
    if word is None:
        return None
    if "error".startswith(word.group(0)):
        return "error"
    if "correct".startswith(word.group(0)):
        return "correct"
    return None


def _probability(logprob: Any) -> float:
    if isinstance(logprob, bool) or not isinstance(logprob, int | float):
        return 0.0
    if not math.isfinite(logprob):
        return 0.0
    return math.exp(min(0.0, float(logprob)))


def verdict_error_probability(
    content: Sequence[Mapping[str, Any]] | None, *, verdict: str | None = None
) -> float | None:
    """p(error) / (p(error) + p(correct)) at the verdict's first token (module doc), or None.

    ``content`` is one choice's ``logprobs.content``; the generated text is the concatenation of
    its tokens (a reasoning part the server returns separately is not in it). ``verdict``: the
    parsed verdict, to find the right field (see ``verdict_offset``).
    """
    if not content:
        return None
    try:
        tokens = [str(item.get("token") or "") for item in content]
    except AttributeError:
        return None
    offset = verdict_offset("".join(tokens), verdict=verdict)
    if offset is None:
        return None
    index, start, end = 0, 0, 0
    while index < len(tokens):
        start, end = end, end + len(tokens[index])
        if end > offset:
            break
        index += 1
    else:
        return None  # the text ends where the verdict should begin
    # The token may begin before the verdict (``"error`` with its quote): an alternative counts
    # only if it shares that lead, and what follows it is what is compared.
    lead = tokens[index][: offset - start]
    chosen = content[index]
    alternatives: dict[str, float] = {}
    for alt in chosen.get("top_logprobs") or ():
        if isinstance(alt, Mapping) and isinstance(alt.get("token"), str):
            alternatives.setdefault(alt["token"], _probability(alt.get("logprob")))
    if not alternatives:
        # No alternatives listed: the chosen token is all there is. When they are listed the
        # chosen token is *not* added: a grammar can force a token the model itself found
        # unlikely (llama-cpp-python lists the unconstrained model's alternatives), and that
        # token alone would read as certainty.
        alternatives[tokens[index]] = _probability(chosen.get("logprob"))
    mass = {"error": 0.0, "correct": 0.0}
    for token, probability in alternatives.items():
        if not token.startswith(lead):
            continue
        kind = _kind(token[len(lead) :])
        if kind is not None:
            mass[kind] += probability
    total = mass["error"] + mass["correct"]
    if total <= 0:
        return None
    return mass["error"] / total
