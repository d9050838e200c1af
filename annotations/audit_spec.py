"""An audit's settings as one declarative schema (docs/formats.md, "Audit files").

``create_audit FILE``, ``/api/audits/`` and the "New audit" / "Edit audit" pages all validate
through :class:`AuditSpecSerializer`, so they accept and refuse exactly the same things. The
schema is the ``AUDIT_SPEC_FIELDS`` list: a model field named there is read, validated (its
type, choices, limits and model validators) and written back, so a new audit setting is one
line. JSON-valued fields (lists of categories, Likert items, rules) get a nested serializer.

Files and API bodies are strict: an unknown key or a value of the wrong JSON type (``"5"``
for a number, ``1`` for text, ``"yes"`` for a boolean) is an error naming the field by its path
(``likert_items[1].max_label``). The page posts strings, and is parsed leniently
(``context={"from_form": True}``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from django.db import models
from rest_framework import serializers

from annotations.models import Audit
from annotations.services.audits import audit_create, audit_update
from annotations.services.normalise import MAX_RULES, RuleError, rules_compile
from auditapp.agreement.hedging import MAX_EXTRA_TERMS, hedging_terms_check

# The audit settings a file, the API and the page carry, in the order docs and pages show them.
# A model field named here is in the schema; JSON fields also need a nested serializer below.
AUDIT_SPEC_FIELDS = (
    "slug",
    "kind",
    "name",
    "annotator_title",
    "guidelines",
    "error_categories",
    "likert_items",
    "labelling_mode",
    "context_mode",
    "context_window",
    "show_step_numbers",
    "show_final_answer",
    "style_normalisation",
    "normaliser_version",
    "normaliser_rules",
    "probe_arms",
    "probe_mode",
    "probe_every",
    "probe_end_items",
    "hidden_repeat_share",
    "repeat_min_gap",
    "leak_threshold",
    "hedging_terms",
    "seed",
)

MAX_LIST_ENTRIES = 50
MAX_LIKERT_POINTS = 11


def _lenient(field: serializers.Field) -> bool:
    return bool(field.context.get("from_form"))


class StrictCharField(serializers.CharField):
    default_error_messages = {
        "invalid": "Must be a string.",
        "not_text": "Must be text (a lone surrogate such as \\ud800 is not).",
    }

    def to_internal_value(self, data):
        if not isinstance(data, str) and not _lenient(self):
            self.fail("invalid")
        value = super().to_internal_value(data)
        try:
            value.encode("utf-8")  # JSON allows "\ud800"; the database's UTF-8 does not
        except UnicodeEncodeError:
            self.fail("not_text")
        return value


class StrictSlugField(serializers.SlugField):
    _SLUG = re.compile(r"[-a-zA-Z0-9_]+")

    def to_internal_value(self, data):
        if not isinstance(data, str) and not _lenient(self):
            raise serializers.ValidationError("Must be a string.", code="invalid")
        value = super().to_internal_value(data)
        # Checked here, before the validators: the slug's uniqueness check queries the
        # database, which must never see a NUL or a lone surrogate.
        if not self._SLUG.fullmatch(value):
            self.fail("invalid")
        return value


class StrictBooleanField(serializers.BooleanField):
    default_error_messages = {"invalid": "Must be true or false."}

    def to_internal_value(self, data):
        if not isinstance(data, bool) and not _lenient(self):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    default_error_messages = {"invalid": "Must be a whole number."}

    def to_internal_value(self, data):
        if (not isinstance(data, int) or isinstance(data, bool)) and not _lenient(self):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictFloatField(serializers.FloatField):
    default_error_messages = {"invalid": "Must be a number."}

    def to_internal_value(self, data):
        if (not isinstance(data, int | float) or isinstance(data, bool)) and not _lenient(self):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictChoiceField(serializers.ChoiceField):
    def to_internal_value(self, data):
        if not isinstance(data, str) and not _lenient(self):
            self.fail("invalid_choice", input=data)
        return super().to_internal_value(data)


class _StrictKeys:
    """Refuse keys the serializer doesn't know (read-only output keys are ignored)."""

    def to_internal_value(self, data):
        errors: dict[str, Any] = {}
        if isinstance(data, Mapping):
            known = set(self.fields)
            errors = {
                str(key): [f"Unknown key (known: {', '.join(self._writable())})."]
                for key in data
                if key not in known
            }
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            detail = (
                exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
            )
            raise serializers.ValidationError({**detail, **errors}) from None
        if errors:
            raise serializers.ValidationError(errors)
        return value

    def _writable(self) -> list[str]:
        return [name for name, field in self.fields.items() if not field.read_only]


def _whole_item(item: serializers.Serializer, attrs: dict) -> dict:
    """An item of a list is a whole value even in a PATCH: DRF's partial mode (inherited from
    the root) skips its missing required keys and its defaults; put both back."""
    missing = {}
    for name, f in item.fields.items():
        if name in attrs or f.read_only:
            continue
        if f.default is not serializers.empty:
            attrs[name] = f.default() if callable(f.default) else f.default
        elif f.required:
            missing[name] = [serializers.Field.default_error_messages["required"]]
    if missing:
        raise serializers.ValidationError(missing)
    return attrs


class LikertItemSerializer(_StrictKeys, serializers.Serializer):
    """One rating question: its scale (``min``..``max``) and the anchors at both ends."""

    key = StrictSlugField(max_length=64, help_text="Stable name of the answer in exports.")
    label = StrictCharField(max_length=300, help_text="The question the rater reads.")
    min = StrictIntegerField(min_value=0, max_value=10, default=1)
    max = StrictIntegerField(min_value=1, max_value=100, default=5)
    min_label = StrictCharField(
        max_length=120, allow_blank=True, default="", help_text="Anchor at the low end."
    )
    max_label = StrictCharField(
        max_length=120, allow_blank=True, default="", help_text="Anchor at the high end."
    )

    def to_representation(self, instance):
        # Items stored before this schema may lack keys: shown as the rating page reads them.
        item = dict(instance) if isinstance(instance, Mapping) else {}
        item.setdefault("key", "")
        item.setdefault("label", item["key"])
        return super().to_representation(item)

    def validate(self, attrs):
        attrs = _whole_item(self, attrs)
        low, high = attrs["min"], attrs["max"]
        if high <= low:
            raise serializers.ValidationError({"max": "Must be greater than min."})
        if high - low + 1 > MAX_LIKERT_POINTS:
            raise serializers.ValidationError(
                {"max": f"At most {MAX_LIKERT_POINTS} points on a scale."}
            )
        return attrs


class NormaliserRuleSerializer(_StrictKeys, serializers.Serializer):
    pattern = StrictCharField(max_length=500, trim_whitespace=False)
    replacement = StrictCharField(
        max_length=200, allow_blank=True, default="", trim_whitespace=False
    )
    example = StrictCharField(allow_blank=True, default="", trim_whitespace=False)
    note = StrictCharField(allow_blank=True, default="", max_length=500)

    def validate(self, attrs):
        return _whole_item(self, attrs)

    def to_representation(self, instance):
        rule = dict(instance) if isinstance(instance, Mapping) else {}
        rule.setdefault("pattern", "")
        return super().to_representation(rule)


class ProbeArmSerializer(_StrictKeys, serializers.Serializer):
    label = StrictCharField(max_length=60, help_text="Neutral: names no condition.")
    condition = StrictCharField(max_length=120, help_text="The condition this label stands for.")

    def validate(self, attrs):
        return _whole_item(self, attrs)

    def to_representation(self, instance):
        arm = dict(instance) if isinstance(instance, Mapping) else {}
        arm.setdefault("label", "")
        arm.setdefault("condition", "")
        return super().to_representation(arm)


def _text_list(*, help_text: str, **kwargs) -> serializers.ListField:
    return serializers.ListField(
        child=StrictCharField(max_length=120),
        max_length=MAX_LIST_ENTRIES,
        required=False,
        help_text=help_text,
        **kwargs,
    )


def _no_duplicates(values: list[str], what: str) -> list[str]:
    seen: set[str] = set()
    for value in values:
        if value.casefold() in seen:
            raise serializers.ValidationError(f"{what} {value!r} is listed twice.")
        seen.add(value.casefold())
    return values


class AuditSpecSerializer(_StrictKeys, serializers.ModelSerializer):
    """Every setting of an audit; read, create (``save()``) and update (``partial=True``)."""

    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.CharField: StrictCharField,
        models.TextField: StrictCharField,
        models.SlugField: StrictSlugField,
        models.BooleanField: StrictBooleanField,
        models.FloatField: StrictFloatField,
        models.IntegerField: StrictIntegerField,
        models.PositiveIntegerField: StrictIntegerField,
        models.PositiveSmallIntegerField: StrictIntegerField,
        models.SmallIntegerField: StrictIntegerField,
    }
    serializer_choice_field = StrictChoiceField

    error_categories = _text_list(
        help_text="What an annotator may name as a step's error. Default for a new step-label "
        "audit: factual, calculation, logical, misread question, unsupported claim, other."
    )
    likert_items = LikertItemSerializer(
        many=True, required=False, max_length=20, help_text="Trace ratings: the questions."
    )
    normaliser_rules = NormaliserRuleSerializer(
        many=True,
        required=False,
        max_length=MAX_RULES,
        help_text="Regex → replacement, in order after the normaliser; checked on save.",
    )
    probe_arms = ProbeArmSerializer(
        many=True,
        required=False,
        max_length=20,
        help_text="The blinding probe's answers: neutral labels, each mapped to a condition "
        "('no idea' is added); empty: no probe.",
    )
    hedging_terms = serializers.ListField(
        child=StrictCharField(max_length=120),
        max_length=MAX_EXTRA_TERMS,
        required=False,
        help_text="Words or phrases the report's hedging rate counts besides its lexicon "
        "(hedging-v1), e.g. 'not convinced'. Letters, spaces, apostrophes, hyphens.",
    )
    seed = StrictCharField(
        max_length=200,
        allow_blank=True,
        required=False,
        help_text="Optional. The audit's secret is derived from it (HMAC-SHA256 of seed and "
        "slug), so the same files and seeds give the same samples, orders and ids. Anyone "
        "with the seed can reproduce the blinding. Empty: a random secret.",
    )

    class Meta:
        model = Audit
        fields = AUDIT_SPEC_FIELDS
        extra_kwargs = {
            "hidden_repeat_share": {"min_value": 0.0, "max_value": 0.5},
            "repeat_min_gap": {"min_value": 0, "max_value": 1000},
            "context_window": {"max_value": 100},
            "guidelines": {"trim_whitespace": False},
            "slug": {"help_text": "The audit's name in URLs and commands; can't change."},
            "name": {
                "help_text": "Internal: may state the hypothesis. Annotators see the annotator "
                "title instead."
            },
        }
        ref_name = "AuditSpec"

    def get_fields(self):
        fields = super().get_fields()
        if self.instance is not None:
            # An audit is found by its slug: a file or PATCH may repeat it, not change it.
            fields["slug"].validators = []
        return fields

    def validate_slug(self, value: str) -> str:
        if self.instance is not None and value != self.instance.slug:
            raise serializers.ValidationError("An audit's slug can't change.")
        return value

    def validate_error_categories(self, value: list[str]) -> list[str]:
        if any(not v.strip() for v in value):
            raise serializers.ValidationError("A category can't be empty.")
        return _no_duplicates(value, "Category")

    def validate_hedging_terms(self, value: list[str]) -> list[str]:
        # Literal words and phrases only (no patterns), checked by the statistics' own rule.
        try:
            return hedging_terms_check(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate_probe_arms(self, value: list) -> list[dict]:
        arms = [{"label": a["label"], "condition": a["condition"]} for a in value]
        _no_duplicates([a["label"] for a in arms], "Label")
        _no_duplicates([a["condition"] for a in arms], "Condition")
        named = [a["condition"].casefold() for a in arms if len(a["condition"]) >= 3]
        for arm in arms:
            if any(name in arm["label"].casefold() for name in named):
                raise serializers.ValidationError(
                    f"Label {arm['label']!r} names a condition; use a neutral label such as "
                    "'Source 1'."
                )
        if self.instance is not None:
            # Neutral labels and existing conditions, checked against the audit's conditions.
            from annotations.services.probe import probe_arms_check

            probe = type(self.instance)(pk=self.instance.pk, probe_arms=arms)
            problems = probe_arms_check(probe)
            if problems:
                raise serializers.ValidationError(problems)
        return arms

    def validate_likert_items(self, value: list) -> list[dict]:
        _no_duplicates([item["key"] for item in value], "Key")
        return [dict(item) for item in value]

    def validate_normaliser_rules(self, value: list) -> list[dict]:
        # An empty example or note is left out, as it would be written by hand.
        rules = [
            {k: v for k, v in dict(rule).items() if v != "" or k in ("pattern", "replacement")}
            for rule in value
        ]
        try:
            rules_compile(rules)
        except RuleError as exc:
            raise serializers.ValidationError(str(exc)) from None
        return rules

    def validate(self, attrs):
        current = self.instance
        kind = attrs.get("kind", current.kind if current else Audit.Kind.STEP_LABELS)
        likert = attrs.get("likert_items", current.likert_items if current else [])
        if kind == Audit.Kind.TRACE_RATINGS and not likert:
            raise serializers.ValidationError(
                {"likert_items": "A trace-rating audit needs at least one Likert item."}
            )
        return attrs

    def create(self, validated_data):
        if validated_data.get("kind") == Audit.Kind.TRACE_RATINGS:
            validated_data.setdefault("error_categories", [])  # no verdicts, no categories
        return audit_create(**validated_data)

    def update(self, instance, validated_data):
        # Only what differs as the schema sees it: stored lists written before this schema
        # (a rule without "note", an item without anchors) are not changes, so saving the page
        # unchanged never trips the refusals of audit_update.
        # (Compared through a non-partial serializer: a partial one skips missing keys.)
        by_source = {f.source: f for f in AuditSpecSerializer().fields.values()}
        changes = {
            key: value
            for key, value in validated_data.items()
            if _shown(by_source[key], value) != _shown(by_source[key], getattr(instance, key))
        }
        return audit_update(audit=instance, changes=changes)


def _shown(field: serializers.Field, value: Any) -> Any:
    return None if value is None else field.to_representation(value)


# --- files and errors ----------------------------------------------------------------------
class AuditFileError(ValueError):
    """A file that is not a readable YAML or JSON object."""


def audit_file_load(path: Path) -> dict:
    """The mapping in an audit file: YAML for ``.yaml`` / ``.yml``, JSON otherwise."""
    if not path.is_file():
        raise AuditFileError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise AuditFileError(f"{path}: not UTF-8 text") from None
    is_yaml = path.suffix.lower() in (".yaml", ".yml")
    try:
        data = yaml.safe_load(text) if is_yaml else json.loads(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        kind = "YAML" if is_yaml else "JSON"
        raise AuditFileError(f"{path}: not valid {kind}: {exc}".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise AuditFileError(f"{path}: must hold one object (key: value pairs) at the top")
    return data


def spec_errors_flat(detail: Any, path: str = "") -> list[tuple[str, str]]:
    """DRF's nested errors as ``(path, message)`` pairs: ``likert_items[1].max``, ``seed``."""
    if isinstance(detail, Mapping):
        out = []
        for key, value in detail.items():
            if key == "non_field_errors" or key == serializers.api_settings.NON_FIELD_ERRORS_KEY:
                sub = path
            elif isinstance(key, int):
                sub = f"{path}[{key}]"
            else:
                sub = f"{path}.{key}" if path else str(key)
            out.extend(spec_errors_flat(value, sub))
        return out
    if isinstance(detail, list | tuple):
        if all(isinstance(v, str) for v in detail):
            return [(path, str(v)) for v in detail]
        out = []
        for index, value in enumerate(detail):
            if value:
                out.extend(spec_errors_flat(value, f"{path}[{index}]"))
        return out
    return [(path, str(detail))]
