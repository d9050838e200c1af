"""Judges and their versioned prompts, from specs (JSON / YAML files, the API)."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from django.db import models, transaction

from auditapp.exceptions import ApplicationError, ConflictError, ForbiddenError, NotFoundError
from judges.clients.egress import EgressRefused
from judges.models import Judge, JudgePrompt, JudgeRun, LabelMode
from judges.prompts import (
    DEFAULT_SYSTEM,
    DEFAULT_USER,
    FIRST_ERROR_SYSTEM,
    FIRST_ERROR_USER,
    PromptTemplate,
    required_placeholder,
    template_label_mode,
)
from judges.rendering import egress_policy

logger = logging.getLogger(__name__)

DEFAULT_PROMPT_NAME = "step-default"
FIRST_ERROR_DEFAULT_PROMPT_NAME = "first-error-default"
SHIPPED_PROMPT_NAMES = frozenset({DEFAULT_PROMPT_NAME, FIRST_ERROR_DEFAULT_PROMPT_NAME})
# Made by the app from imported reference verdicts (``judges.services.io``), never by a spec.
RESERVED_JUDGE_NAMES = frozenset({"reference"})


def egress_check(*, base_url: str, api_key_env: str | None, resolve: bool = True) -> None:
    """Refuse a judge endpoint or key name the deployment does not allow (``JudgeSpecError``).

    ``resolve`` also checks every address the host resolves to now; the client checks again
    on every connection, so a later change of the DNS answer is caught there.
    """
    policy = egress_policy()
    try:
        policy.check_key_env(api_key_env)
    except EgressRefused as exc:
        raise JudgeSpecError(
            "api_key_env", f"{exc}; an admin lists key names in STEPAUDIT_JUDGE_KEY_ENVS"
        ) from None
    try:
        if resolve:
            policy.check_url_resolved(base_url)
        else:
            policy.check_url(base_url)
    except EgressRefused as exc:
        raise JudgeSpecError(
            "base_url", f"{exc}; an admin lists judge hosts in STEPAUDIT_JUDGE_ALLOWED_HOSTS"
        ) from None


class JudgeSpecError(ApplicationError):
    code = "invalid_spec"

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}", extra={"field": field})
        self.field = field


# -- prompts -----------------------------------------------------------------------------------


def prompt_version_create(
    *, name: str, system_template: str, user_template: str, description: str = ""
) -> JudgePrompt:
    """The latest version of ``name`` if it has these templates, else a new version.

    An unused latest version is edited in place (nothing was judged with it); a used one is
    immutable, so different templates make version + 1.
    """
    try:
        PromptTemplate.from_texts(system=system_template, user=user_template)
    except ValueError as exc:
        raise JudgeSpecError("prompt", str(exc)) from None
    with transaction.atomic():
        latest = (
            JudgePrompt.objects.select_for_update().filter(name=name).order_by("-version").first()
        )
        if latest is not None and (latest.system_template, latest.user_template) == (
            system_template,
            user_template,
        ):
            return latest
        if latest is not None and latest.used_at is None:
            latest.system_template = system_template
            latest.user_template = user_template
            latest.description = description or latest.description
            latest.save()
            return latest
        return JudgePrompt.objects.create(
            name=name,
            version=(latest.version + 1) if latest else 1,
            system_template=system_template,
            user_template=user_template,
            description=description,
        )


def prompt_update(*, prompt: JudgePrompt, system_template: str, user_template: str) -> JudgePrompt:
    """Edit a version in place — refused once a run has used it."""
    if prompt.used_at is not None:
        raise ConflictError(
            f"prompt {prompt} has been used by a run and cannot change; create a new version",
            code="prompt_immutable",
        )
    try:
        PromptTemplate.from_texts(system=system_template, user=user_template)
    except ValueError as exc:
        raise JudgeSpecError("prompt", str(exc)) from None
    if template_label_mode(user_template) != template_label_mode(prompt.user_template):
        # A judge saved with this prompt was checked against its kind; keep that true.
        raise JudgeSpecError(
            "prompt", "an edit cannot turn a step prompt into a first-error one or back"
        )
    prompt.system_template = system_template
    prompt.user_template = user_template
    prompt.save()
    return prompt


# The shipped prompt of each label mode: name, system and user templates, description.
SHIPPED_PROMPTS = {
    LabelMode.STEPS: (
        DEFAULT_PROMPT_NAME,
        DEFAULT_SYSTEM,
        DEFAULT_USER,
        "The shipped step-level prompt (judges.prompts).",
    ),
    LabelMode.FIRST_ERROR: (
        FIRST_ERROR_DEFAULT_PROMPT_NAME,
        FIRST_ERROR_SYSTEM,
        FIRST_ERROR_USER,
        "The shipped first-error prompt (judges.prompts.FIRST_ERROR_*).",
    ),
}


def shipped_prompt_get(label_mode: str = LabelMode.STEPS) -> JudgePrompt:
    """The current version of the shipped prompt of ``label_mode`` (made on first use)."""
    name, system, user, description = SHIPPED_PROMPTS[label_mode]
    return prompt_version_create(
        name=name, system_template=system, user_template=user, description=description
    )


def default_prompt_get() -> JudgePrompt:
    return shipped_prompt_get(LabelMode.STEPS)


def run_prompt(judge: Judge, label_mode: str) -> JudgePrompt:
    """The prompt a run of ``judge`` in ``label_mode`` uses: the judge's own when it is of
    that kind; the shipped prompt of the mode when the judge has a shipped one (a run may ask
    for the other mode than the judge's default); otherwise refused, never silently swapped."""
    prompt = judge.prompt
    if prompt is None:
        raise ApplicationError(f"judge {judge.name} has no prompt", code="no_prompt")
    kind = template_label_mode(prompt.user_template)
    if kind == label_mode:
        return prompt
    if prompt.name in SHIPPED_PROMPT_NAMES:
        return shipped_prompt_get(label_mode)
    wanted = "a first-error" if label_mode == LabelMode.FIRST_ERROR else "a step"
    raise ApplicationError(
        f"judge {judge.label}'s prompt {prompt} is a {kind} prompt; a {label_mode} run needs "
        f"{wanted} prompt (its user template has ${required_placeholder(label_mode)}). Save "
        f'the judge\'s spec with such a prompt and "label_mode": "{label_mode}", or with '
        '"prompt": "default"',
        code="prompt_label_mode",
        extra={"field": "label_mode"},
    )


# -- judges from a spec ----------------------------------------------------------------------

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
_KEY_LOOKING = re.compile(r"^(sk-|sk_|Bearer\s)|[A-Za-z0-9_\-]{40,}")

# field → (type(s), required for LLM judges, validator or None)
_NUM = (int, float)
SPEC_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "name": ((str,), True),
    "description": ((str,), False),
    "is_reference": ((bool,), False),
    "base_url": ((str,), True),
    "model": ((str,), True),
    "api_key_env": ((str, type(None)), False),
    "temperature": (_NUM, False),
    "max_tokens": ((int,), False),
    "samples_per_step": ((int,), False),
    "aggregation": ((str,), False),
    "max_concurrency": ((int,), False),
    "parallel_chunks": ((int,), False),
    "rpm_limit": ((int, type(None)), False),
    "tpm_limit": ((int, type(None)), False),
    "timeout_s": (_NUM, False),
    "max_retries": ((int,), False),
    "max_parse_retries": ((int,), False),
    "use_json_mode": ((bool,), False),
    "structured_output": ((str,), False),
    "max_tokens_field": ((str,), False),
    "hedge_hung_calls": ((bool,), False),
    "logprobs": ((bool,), False),
    "top_logprobs": ((int,), False),
    "style_blind": ((bool,), False),
    "show_final_answer": ((bool,), False),
    "context_mode": ((str,), False),
    "label_mode": ((str,), False),
    "prompt": ((dict, str, type(None)), False),
}
PROMPT_FIELDS = {"name", "system", "user", "description"}


def judge_spec_validate(spec: Any) -> dict[str, Any]:
    """Check a judge spec (see docs/judges.md); ``JudgeSpecError`` names the field at fault."""
    if not isinstance(spec, Mapping):
        raise JudgeSpecError("(spec)", "must be a JSON / YAML object")
    for key in spec:
        if key not in SPEC_FIELDS:
            allowed = ", ".join(sorted(SPEC_FIELDS))
            raise JudgeSpecError(str(key), f"unknown field; allowed: {allowed}")
    is_reference = spec.get("is_reference", False)
    if not isinstance(is_reference, bool):
        raise JudgeSpecError("is_reference", "must be true or false")
    clean: dict[str, Any] = {}
    for key, (types, required) in SPEC_FIELDS.items():
        if key not in spec:
            if required and not (is_reference and key in ("base_url", "model")):
                raise JudgeSpecError(key, "is required")
            continue
        value = spec[key]
        # bool is an int in Python; a number field must not accept true/false.
        if not isinstance(value, types) or (
            isinstance(value, bool) and bool not in types and value is not None
        ):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise JudgeSpecError(key, f"must be {names}, got {type(value).__name__}")
        clean[key] = value
    _check_spec_values(clean)
    return clean


def _check_spec_values(c: dict[str, Any]) -> None:
    name = c["name"]
    if not re.fullmatch(r"[-a-zA-Z0-9_]{1,80}", name):
        raise JudgeSpecError("name", "letters, digits, - and _ only (at most 80)")
    if "base_url" in c and not re.match(r"^https?://[^\s/]+", c["base_url"]):
        raise JudgeSpecError("base_url", "must be an http(s) URL, e.g. http://127.0.0.1:8000/v1")
    if "model" in c and not c["model"].strip():
        raise JudgeSpecError("model", "must not be empty")
    env = c.get("api_key_env")
    if env and (_KEY_LOOKING.search(env) or not _ENV_NAME.match(env)):
        raise JudgeSpecError(
            "api_key_env",
            "must be the NAME of an environment variable (e.g. OPENAI_API_KEY), never a key",
        )
    if "temperature" in c and not 0 <= c["temperature"] <= 2:
        raise JudgeSpecError("temperature", "must be between 0 and 2")
    for key, low, high in (
        ("max_tokens", 1, 32768),
        ("samples_per_step", 1, 25),
        ("max_concurrency", 1, 1024),
        ("parallel_chunks", 1, 64),
        ("max_retries", 0, 20),
        ("max_parse_retries", 0, 10),
        ("top_logprobs", 1, 20),
        ("rpm_limit", 1, 10**8),
        ("tpm_limit", 1, 10**10),
    ):
        value = c.get(key)
        if value is not None and not low <= value <= high:
            raise JudgeSpecError(key, f"must be between {low} and {high}")
    if "timeout_s" in c and not 0 < c["timeout_s"] <= 3600:
        raise JudgeSpecError("timeout_s", "must be more than 0 and at most 3600")
    if c.get("aggregation", "majority") not in Judge.Aggregation.values:
        raise JudgeSpecError("aggregation", f"must be one of {', '.join(Judge.Aggregation)}")
    if c.get("structured_output", "json_object") not in Judge.StructuredOutput.values:
        raise JudgeSpecError(
            "structured_output",
            f"must be one of {', '.join(Judge.StructuredOutput.values)} "
            "(manage.py judge_check NAME says which the server honours)",
        )
    if c.get("max_tokens_field", "max_tokens") not in ("max_tokens", "max_completion_tokens"):
        raise JudgeSpecError("max_tokens_field", "must be max_tokens or max_completion_tokens")
    if c.get("context_mode", "audit") not in Judge.ContextMode.values:
        raise JudgeSpecError(
            "context_mode", f"must be one of {', '.join(Judge.ContextMode.values)}"
        )
    if c.get("label_mode", "steps") not in LabelMode.values:
        raise JudgeSpecError("label_mode", f"must be one of {', '.join(LabelMode.values)}")
    if c.get("label_mode") == LabelMode.FIRST_ERROR and c.get("is_reference"):
        raise JudgeSpecError("label_mode", "a reference judge copies step verdicts: steps only")
    if c.get("parallel_chunks", 1) > c.get("max_concurrency", 8):
        raise JudgeSpecError("parallel_chunks", "must not exceed max_concurrency")
    prompt = c.get("prompt")
    if isinstance(prompt, str) and prompt != "default":
        raise JudgeSpecError("prompt", 'must be an object or "default"')
    if isinstance(prompt, Mapping):
        for key in prompt:
            if key not in PROMPT_FIELDS:
                raise JudgeSpecError(
                    f"prompt.{key}", "unknown field; allowed: " + ", ".join(sorted(PROMPT_FIELDS))
                )
        for key in ("name", "user"):
            if not isinstance(prompt.get(key), str) or not prompt[key].strip():
                raise JudgeSpecError(f"prompt.{key}", "is required (a non-empty string)")
        if not isinstance(prompt.get("system", ""), str):
            raise JudgeSpecError("prompt.system", "must be a string")
        if prompt["name"].strip() in SHIPPED_PROMPT_NAMES:
            raise JudgeSpecError(
                "prompt.name", f"{prompt['name']!r} is the shipped prompt's; choose another name"
            )
        kind = template_label_mode(prompt["user"])
        try:
            PromptTemplate.from_texts(
                system=prompt.get("system", SHIPPED_PROMPTS[kind][1]), user=prompt["user"]
            )
        except ValueError as exc:
            raise JudgeSpecError("prompt", str(exc)) from None
        label_mode = c.get("label_mode", LabelMode.STEPS)
        if kind != label_mode:
            raise JudgeSpecError(
                "prompt",
                f"a {kind} prompt (its user template has ${required_placeholder(kind)}) needs "
                f'"label_mode": "{kind}"; this spec\'s label_mode is {label_mode}',
            )


@transaction.atomic
def judge_create_or_update(*, spec: Mapping[str, Any], allow_reference: bool = False) -> Judge:
    """Save the judge named in ``spec`` and the prompt version it uses; returns the version.

    The latest version of the name is returned as it is when the spec matches it, edited in
    place while no run has used it, and otherwise left alone for a new version (``version +
    1``), so every run keeps naming exactly what produced its verdicts. Reference judges
    (imported verdicts, no endpoint) are made by the app; a spec may make one only with
    ``allow_reference`` (the ``create_judge`` command an admin runs), never over the API, and
    no spec may turn a reference judge into an endpoint or back.
    """
    clean = judge_spec_validate(spec)
    name = clean.pop("name")
    is_reference = bool(clean.get("is_reference"))
    if is_reference and not allow_reference:
        raise ForbiddenError(
            "reference judges hold imported verdicts and are made by the app, not by a spec",
            code="reference_judge",
            extra={"field": "is_reference"},
        )
    if name in RESERVED_JUDGE_NAMES and not allow_reference:
        raise ForbiddenError(f"the judge name {name!r} is reserved", code="reserved_name")
    if not is_reference:
        egress_check(base_url=clean["base_url"], api_key_env=clean.get("api_key_env"))
    latest = Judge.objects.select_for_update().filter(name=name).order_by("-version").first()
    if latest is not None and latest.is_reference != is_reference:
        raise ConflictError(
            f"judge {name} is {'a' if latest.is_reference else 'not a'} reference judge; a spec "
            "cannot change that (choose another name)",
            code="reference_judge",
        )
    prompt_spec = clean.pop("prompt", None)
    if is_reference:
        prompt = None
    elif isinstance(prompt_spec, Mapping):
        shipped_system = SHIPPED_PROMPTS[template_label_mode(prompt_spec["user"])][1]
        prompt = prompt_version_create(
            name=prompt_spec["name"],
            system_template=prompt_spec.get("system", shipped_system),
            user_template=prompt_spec["user"],
            description=prompt_spec.get("description", ""),
        )
    else:
        prompt = default_prompt_get()
    values = {field.name: field.get_default() for field in _spec_model_fields()}
    values.update(clean)
    values["api_key_env"] = values.get("api_key_env") or ""
    values["prompt"] = prompt
    if latest is None:
        return Judge.objects.create(name=name, version=1, **values)
    if all(getattr(latest, key) == value for key, value in values.items()):
        return latest
    if not JudgeRun.objects.filter(judge=latest).exists():
        for key, value in values.items():
            setattr(latest, key, value)
        latest.save()
        return latest
    return Judge.objects.create(name=name, version=latest.version + 1, **values)


def _spec_model_fields() -> list[models.Field]:
    names = set(SPEC_FIELDS) - {"name", "prompt"}
    return [f for f in Judge._meta.concrete_fields if f.name in names]


def judge_get(*, name: str) -> Judge:
    """The latest version of ``name``, or exactly ``name@vN``."""
    judges = Judge.objects.select_related("prompt").filter(name=name)
    base, _, version = name.rpartition("@v")
    if base and version.isdecimal() and len(version) < 10:
        judges = Judge.objects.select_related("prompt").filter(name=base, version=int(version))
    judge = judges.order_by("-version").first()
    if judge is None:
        raise NotFoundError(f"no judge named {name!r}")
    return judge
