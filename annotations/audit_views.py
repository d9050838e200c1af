"""The "New audit" / "Edit audit" pages (admins): the settings of annotations/audit_spec.py as a
form, lists edited as rows, validated by the same serializer as files and the API.

The scalar settings are drawn from the serializer's own fields (a checkbox for a boolean, a
select for choices, a number input for numbers), so a setting added to ``AUDIT_SPEC_FIELDS``
appears here without touching this module. The list settings have a row layout each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.db import IntegrityError, transaction
from django.shortcuts import get_object_or_404, redirect, render
from rest_framework import serializers

from annotations.audit_spec import AuditSpecSerializer, spec_errors_flat
from annotations.models import Audit
from annotations.services.audits import DEFAULT_ERROR_CATEGORIES
from annotations.services.markdown import markdown_to_html
from auditapp.exceptions import ApplicationError

# List settings edited as rows: name -> the columns of a row ("" for a list of plain strings).
ROW_LISTS: dict[str, tuple[str, ...]] = {
    "error_categories": ("",),
    "likert_items": ("key", "label", "min", "max", "min_label", "max_label"),
    "normaliser_rules": ("pattern", "replacement", "example", "note"),
    "probe_arms": ("label", "condition"),
    "hedging_terms": ("",),
}
LIST_TITLES = {
    "error_categories": ("Error categories", "Category"),
    "likert_items": ("Likert items", "Item"),
    "normaliser_rules": ("Normaliser rules", "Rule"),
    "probe_arms": ("Blinding probe: neutral labels and the condition each stands for", "Arm"),
    "hedging_terms": ("Hedging terms the report counts besides its lexicon", "Term"),
}
COLUMN_LABELS = {
    "key": "Key",
    "label": "Question",
    "min": "Lowest point",
    "max": "Highest point",
    "min_label": "Low anchor",
    "max_label": "High anchor",
    "pattern": "Pattern (regex)",
    "replacement": "Replacement",
    "example": "Example",
    "note": "Note",
}
# Where a column means something else in one list.
LIST_COLUMN_LABELS = {
    ("probe_arms", "label"): "Label shown (neutral)",
    ("probe_arms", "condition"): "Condition it stands for",
}
NUMERIC_COLUMNS = {"min", "max"}
WIDE_FIELDS = {"guidelines"}
# Created with the audit, fixed after (found by it / derived from it).
CREATE_ONLY = {"slug"}


@dataclass
class FieldView:
    name: str
    label: str
    widget: str  # text, textarea, checkbox, select, number
    value: Any
    help_text: str = ""
    errors: list[str] = field(default_factory=list)
    choices: list[tuple[str, str]] = field(default_factory=list)
    step: str = ""
    required: bool = False


@dataclass
class RowView:
    index: int
    cells: list[FieldView]
    errors: list[str]


@dataclass
class ListView:
    name: str
    title: str
    row_name: str
    help_text: str
    rows: list[RowView]
    template: RowView
    errors: list[str]


def _widget(f: serializers.Field, name: str) -> tuple[str, str]:
    if isinstance(f, serializers.BooleanField):
        return "checkbox", ""
    if isinstance(f, serializers.ChoiceField):
        return "select", ""
    if isinstance(f, serializers.IntegerField):
        return "number", "1"
    if isinstance(f, serializers.FloatField):
        return "number", "any"
    return ("textarea" if name in WIDE_FIELDS else "text"), ""


def _form_data(post, *, creating: bool) -> dict[str, Any]:
    """The POSTed form as a spec dict (strings; the serializer parses them leniently)."""
    fields = AuditSpecSerializer().fields
    data: dict[str, Any] = {}
    for name, f in fields.items():
        if name in ROW_LISTS or (name in CREATE_ONLY and not creating):
            continue
        if isinstance(f, serializers.BooleanField):
            data[name] = name in post
        elif name in post:
            value = post[name]
            if f.allow_null and value == "":
                value = None
            data[name] = value
    for name, columns in ROW_LISTS.items():
        indices = sorted(
            {int(k.split("-")[1]) for k in post if k.startswith(f"{name}-") and _indexed(k)}
        )
        rows = []
        for i in indices:
            if columns == ("",):
                value = post.get(f"{name}-{i}", "").strip()
                if value:
                    rows.append(value)
                continue
            row = {c: post.get(f"{name}-{i}-{c}", "") for c in columns}
            if not any(v.strip() for v in row.values()):
                continue  # an empty row: left blank, or cleared to remove it
            rows.append({c: v for c, v in row.items() if v != "" or c not in NUMERIC_COLUMNS})
        data[name] = rows
    return data


def _indexed(key: str) -> bool:
    parts = key.split("-")
    return len(parts) >= 2 and parts[1].isdigit()


def _errors_by_path(errors: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for path, message in errors:
        out.setdefault(path, []).append(message)
    return out


def _row(name: str, index: int, values: Any, errors: dict[str, list[str]]) -> RowView:
    columns = ROW_LISTS[name]
    cells = []
    for column in columns:
        key = f"{name}-{index}" + (f"-{column}" if column else "")
        path = f"{name}[{index}]" + (f".{column}" if column else "")
        if column:
            value = values.get(column, "") if isinstance(values, dict) else ""
        else:
            value = values if isinstance(values, str) else ""
        cells.append(
            FieldView(
                name=key,
                label=LIST_COLUMN_LABELS.get((name, column))
                or COLUMN_LABELS.get(column, LIST_TITLES[name][1]),
                widget="number" if column in NUMERIC_COLUMNS else "text",
                value=value,
                errors=errors.get(path, []),
                step="1" if column in NUMERIC_COLUMNS else "",
            )
        )
    row_errors = errors.get(f"{name}[{index}]", []) if columns != ("",) else []
    return RowView(index=index, cells=cells, errors=row_errors)


def _page_context(data: dict[str, Any], errors: dict[str, list[str]], *, creating: bool):
    serializer = AuditSpecSerializer()
    scalars, lists = [], []
    for name, f in serializer.fields.items():
        if name in ROW_LISTS:
            values = list(data.get(name) or [])
            rows = [_row(name, i, v, errors) for i, v in enumerate(values)]
            # One blank row to fill in, so a list can grow without scripts.
            rows.append(_row(name, len(values), {} if ROW_LISTS[name] != ("",) else "", {}))
            title, row_name = LIST_TITLES[name]
            lists.append(
                ListView(
                    name=name,
                    title=title,
                    row_name=row_name,
                    help_text=str(f.help_text or ""),
                    rows=rows,
                    template=_row(name, "__index__", {} if ROW_LISTS[name] != ("",) else "", {}),
                    errors=errors.get(name, []),
                )
            )
            continue
        if name in CREATE_ONLY and not creating:
            continue
        widget, step = _widget(f, name)
        value = data.get(name, "")
        scalars.append(
            FieldView(
                name=name,
                label=str(f.label or name.replace("_", " ").capitalize()),
                widget=widget,
                value="" if value is None else value,
                help_text=str(f.help_text or ""),
                errors=errors.get(name, []),
                choices=[(str(k), str(v)) for k, v in getattr(f, "choices", {}).items()],
                step=step,
                required=f.required,
            )
        )
    return {"scalars": scalars, "lists": lists, "form_errors": errors.get("", [])}


def _defaults() -> dict[str, Any]:
    audit = Audit()
    data = dict(AuditSpecSerializer(audit).data)
    data["error_categories"] = list(DEFAULT_ERROR_CATEGORIES)
    return data


def _audit_form(request, audit: Audit | None):
    creating = audit is None
    status = 200
    preview = None
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        data = _form_data(request.POST, creating=creating)
        if request.POST.get("action") == "preview":
            preview = markdown_to_html(str(data.get("guidelines", "")))
        else:
            serializer = AuditSpecSerializer(
                instance=audit, data=data, partial=not creating, context={"from_form": True}
            )
            if serializer.is_valid():
                try:
                    with transaction.atomic():
                        saved = serializer.save()
                except ApplicationError as exc:
                    errors = {str(exc.extra.get("field", "")): [exc.message]}
                except IntegrityError:
                    errors = {"slug": ["An audit with this slug was created meanwhile."]}
                else:
                    verb = "created" if creating else "saved"
                    messages.success(request, f"Audit {saved.slug!r} {verb}.")
                    return redirect("annotations:audit-edit", slug=saved.slug)
            else:
                errors = _errors_by_path(spec_errors_flat(serializer.errors))
            status = 400
        shown = data
    else:
        shown = _defaults() if creating else dict(AuditSpecSerializer(audit).data)
    context = _page_context(shown, errors, creating=creating)
    context.update(
        {
            "audit": audit,
            "creating": creating,
            "preview": preview,
            "n_errors": sum(len(v) for v in errors.values()),
        }
    )
    return render(request, "annotations/audit_form.html", context, status=status)


@staff_member_required
def audit_new_page(request):
    return _audit_form(request, None)


@staff_member_required
def audit_edit_page(request, slug: str):
    return _audit_form(request, get_object_or_404(Audit, slug=slug))
