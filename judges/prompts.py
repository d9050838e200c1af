"""Step-level judge prompts: templates, rendering and the hash stored with every verdict.

Django-free so that a prompt can be rendered and hashed in a notebook, in the batch-API export
and in a Celery worker identically.

Templates use ``string.Template`` (``$question``), not ``str.format``: a prompt that shows the
judge a JSON example is full of braces, and ``$$`` is the only escape an author has to know.

Placeholders (the complete set; anything else is rejected when the template is built):

``$question``      the question stem
``$options``       the answer options, one ``A. text`` line each ("(no options)" when none)
``$context``       the preceding steps, numbered; states explicitly when none are shown
``$step``          the step under assessment
``$categories``    the audit's error categories, one ``- name: description`` line each
``$final_answer``  the trace's final answer, or empty unless ``show_final_answer=True``

A **first-error** template (a run with ``label_mode: first_error`` asks for a whole trace's first
wrong step) has its own set: ``$question``, ``$options``, ``$final_answer``, ``$categories``,
``$steps`` (every step, one ``Step k: …`` line each; required in the user template) and
``$n_steps``. A template's kind is read from what it asks for: ``$steps`` makes it a
first-error one.

There is deliberately no placeholder for the condition, the model, or any trace / step id: the
judge is blinded like a clinician, and the template validation is what enforces it.
"""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

PLACEHOLDERS: frozenset[str] = frozenset(
    {"question", "options", "context", "step", "categories", "final_answer"}
)
FIRST_ERROR_PLACEHOLDERS: frozenset[str] = frozenset(
    {"question", "options", "steps", "n_steps", "categories", "final_answer"}
)
# The label modes a template can serve (``judges.models.LabelMode`` values) and what each needs.
STEPS, FIRST_ERROR = "steps", "first_error"
_KINDS = {STEPS: (PLACEHOLDERS, "step"), FIRST_ERROR: (FIRST_ERROR_PLACEHOLDERS, "steps")}

# Laid out for prefix caching (vLLM, SGLang, llama.cpp's slot cache, OpenAI's prompt caching):
# what every step of an audit shares (the instructions, the categories, the answer shape) is
# the system message; the user message starts with what the steps of one trace share (the
# question, its options, the final answer when shown, then the preceding steps in order) and
# ends with the step itself. Step k+1's prompt therefore repeats step k's up to its last
# preceding step, byte for byte, and a caching server computes that part once per trace.
DEFAULT_SYSTEM = """\
You are a meticulous domain expert auditing one step of another model's reasoning.
Judge only the step's own claim, not whether the reasoning as a whole reaches the right answer.

Is the step's own claim correct, an error, or impossible to assess from what is shown?
- "correct": the claim is true and follows from what precedes it.
- "error": the claim is false, unjustified, or a reasoning mistake.
- "abstain": the step makes no checkable claim, or it cannot be assessed from the text shown.

If the verdict is "error", choose the error category from:
$categories

Answer only with a single JSON object of this shape, and nothing else:
{"verdict": "correct" | "error" | "abstain", "error_category": "<category or null>", \
"rationale": "<one or two sentences>"}"""

DEFAULT_USER = """\
Question:
$question

Options:
$options
$final_answer
Preceding steps of the same reasoning:
$context

Step to assess:
<step>
$step
</step>"""


@dataclass(frozen=True)
class PromptTemplate:
    """A system and a user message template; validated on construction.

    Examples
    --------
    >>> PromptTemplate(system="", user="Judge $step for $model")
    Traceback (most recent call last):
    ...
    ValueError: unknown placeholder '$model' in user template; allowed: $categories, $context, \
$final_answer, $options, $question, $step
    """

    system: str = DEFAULT_SYSTEM
    user: str = DEFAULT_USER
    label_mode: str = STEPS  # what the template asks for: one step, or a whole trace

    def __post_init__(self) -> None:
        if self.label_mode not in _KINDS:
            raise ValueError(f"label_mode must be one of {', '.join(_KINDS)}")
        allowed, required = _KINDS[self.label_mode]
        for part in ("system", "user"):
            template_placeholders(getattr(self, part), part=part, allowed=allowed)
        if required not in template_placeholders(self.user, part="user", allowed=allowed):
            raise ValueError(f"the user template must contain ${required}")

    @classmethod
    def from_texts(cls, *, system: str, user: str) -> PromptTemplate:
        """The template of these texts, its kind read from them (``template_label_mode``)."""
        return cls(system=system, user=user, label_mode=template_label_mode(user))


def required_placeholder(label_mode: str) -> str:
    """What a template of ``label_mode`` must ask for: ``step``, or ``steps`` (first error)."""
    return _KINDS[label_mode][1]


def template_label_mode(user: str) -> str:
    """``first_error`` for a user template asking for ``$steps`` (a whole trace), else ``steps``.

    >>> template_label_mode("Step to assess: $step"), template_label_mode("<trace>$steps</trace>")
    ('steps', 'first_error')
    """
    try:
        used = set(string.Template(user).get_identifiers())
    except ValueError:
        used = set()
    return FIRST_ERROR if "steps" in used else STEPS


def template_placeholders(
    text: str, *, part: str = "template", allowed: frozenset[str] = PLACEHOLDERS
) -> set[str]:
    """Return the placeholders ``text`` uses; ``ValueError`` naming any unknown or malformed one."""
    template = string.Template(text)
    if not template.is_valid():
        # A lone "$" or "${" — find it for the message rather than echo Python's error.
        for match in template.pattern.finditer(text):
            if match.group("invalid") is not None:
                line = text.count("\n", 0, match.start()) + 1
                raise ValueError(
                    f"malformed placeholder in {part} template at line {line}; write $$ for a "
                    "literal dollar sign"
                )
    used = set(template.get_identifiers())
    unknown = sorted(used - allowed)
    if unknown:
        names = ", ".join(f"${name}" for name in sorted(allowed))
        raise ValueError(
            f"unknown placeholder '${unknown[0]}' in {part} template; allowed: {names}"
        )
    return used


DEFAULT_TEMPLATE = PromptTemplate()


def render_messages(
    template: PromptTemplate,
    *,
    question: str,
    options: Mapping[str, str] | Sequence[str] | None,
    context_steps: Sequence[str] | None,
    step: str,
    categories: Mapping[str, str] | Sequence[str],
    show_final_answer: bool = False,
    final_answer: str | None = None,
) -> list[dict[str, str]]:
    """Render the chat messages for one step.

    ``context_steps=None`` means the audit shows no context (step-only mode); ``[]`` means the
    step is the first of its trace. The two render differently so the judge is told which.

    Examples
    --------
    >>> msgs = render_messages(DEFAULT_TEMPLATE, question="2+2?", options={"A": "4", "B": "5"},
    ...                        context_steps=[], step="2+2=4.", categories=["arithmetic"])
    >>> [m["role"] for m in msgs]
    ['system', 'user']
    >>> "A. 4" in msgs[1]["content"] and "(this is the first step)" in msgs[1]["content"]
    True
    """
    if show_final_answer and final_answer is None:
        raise ValueError("show_final_answer=True needs final_answer")
    values = {
        "question": question.strip(),
        "options": _render_options(options),
        "context": _render_context(context_steps),
        "step": step.strip(),
        "categories": _render_categories(categories),
        "final_answer": (
            f"\nFinal answer the reasoning reached: {final_answer.strip()}\n"
            if show_final_answer and final_answer is not None
            else ""
        ),
    }
    return _messages(template, values)


def _messages(template: PromptTemplate, values: Mapping[str, str]) -> list[dict[str, str]]:
    """The system message (left out when empty) and the user message of ``template``."""
    messages: list[dict[str, str]] = []
    system = string.Template(template.system).substitute(values).strip()
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": string.Template(template.user).substitute(values)})
    return messages


def prompt_hash(messages: Sequence[Mapping[str, str]]) -> str:
    """sha256 hex of the messages as canonical JSON (sorted keys, no spaces, UTF-8).

    Examples
    --------
    >>> prompt_hash([{"role": "user", "content": "x"}]) == prompt_hash([{"content": "x",
    ...                                                                   "role": "user"}])
    True
    """
    canonical = json.dumps(
        [dict(m) for m in messages], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _render_options(options: Mapping[str, str] | Sequence[str] | None) -> str:
    if not options:
        return "(no options)"
    if isinstance(options, Mapping):
        items = list(options.items())
    else:
        items = [(string.ascii_uppercase[i], text) for i, text in enumerate(options)]
    return "\n".join(f"{label}. {str(text).strip()}" for label, text in items)


def _render_context(context_steps: Sequence[str] | None) -> str:
    if context_steps is None:
        return "(not shown)"
    if not context_steps:
        return "(this is the first step)"
    return "\n".join(f"Step {i}: {text.strip()}" for i, text in enumerate(context_steps, 1))


def _render_categories(categories: Mapping[str, str] | Sequence[str]) -> str:
    if not categories:
        return "(no categories defined; use null)"
    if isinstance(categories, Mapping):
        return "\n".join(
            f"- {name}: {desc.strip()}" if desc else f"- {name}"
            for name, desc in categories.items()
        )
    return "\n".join(f"- {name}" for name in categories)


# -- first-error mode: the whole trace in one request ------------------------------------------
# ProcessBench's task (Zheng et al. 2024): the earliest wrong step, or "none". The answer is
# stored as step verdicts (before it correct, it error, later steps none; judges.services).
FIRST_ERROR_PROMPT_NAME = "first-error-default@v1"
FIRST_ERROR_SYSTEM = """\
You are a meticulous domain expert auditing another model's step-by-step reasoning.
Find the FIRST step that is wrong: false, unjustified, or a reasoning mistake. Judge each
step's own claim given the steps before it, not whether the final answer is right. Steps
after the first wrong one do not matter.

If every step is correct, answer "none".

If there is a wrong step, choose its error category from:
$categories

Answer only with a single JSON object of this shape, and nothing else:
{"first_error_step": "<the number of the first wrong step, or none>", \
"error_category": "<category or null>", "rationale": "<one or two sentences>"}"""

FIRST_ERROR_USER = """\
Question:
$question

Options:
$options
$final_answer
The reasoning, one numbered step per line ($n_steps steps):
<trace>
$steps
</trace>"""


def render_first_error_messages(
    template: PromptTemplate | None = None,
    *,
    question: str,
    options: Mapping[str, str] | Sequence[str] | None,
    steps: Sequence[str],
    categories: Mapping[str, str] | Sequence[str],
    show_final_answer: bool = False,
    final_answer: str | None = None,
) -> list[dict[str, str]]:
    """The chat messages asking for a trace's first wrong step, from ``template`` (a
    first-error one; default ``FIRST_ERROR_TEMPLATE``, the shipped ``FIRST_ERROR_*``).

    Examples
    --------
    >>> msgs = render_first_error_messages(question="2+2?", options=None,
    ...                                    steps=["2+2=5.", "So 5."], categories=[])
    >>> "Step 1: 2+2=5.\\nStep 2: So 5." in msgs[1]["content"]
    True
    """
    template = template or FIRST_ERROR_TEMPLATE
    if template.label_mode != FIRST_ERROR:
        raise ValueError("a first-error request needs a first-error template ($steps)")
    if not steps:
        raise ValueError("a first-error request needs at least one step")
    if show_final_answer and final_answer is None:
        raise ValueError("show_final_answer=True needs final_answer")
    values = {
        "question": question.strip(),
        "options": _render_options(options),
        # One line per step: a step's own line breaks would blur where the next one starts.
        "steps": "\n".join(
            f"Step {i}: {' '.join(text.split())}" for i, text in enumerate(steps, 1)
        ),
        "n_steps": str(len(steps)),
        "categories": _render_categories(categories),
        "final_answer": (
            f"\nFinal answer the reasoning reached: {final_answer.strip()}\n"
            if show_final_answer and final_answer is not None
            else ""
        ),
    }
    return _messages(template, values)


FIRST_ERROR_TEMPLATE = PromptTemplate(
    system=FIRST_ERROR_SYSTEM, user=FIRST_ERROR_USER, label_mode=FIRST_ERROR
)
