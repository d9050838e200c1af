"""The audit's normaliser at import, in what a clinician and a style-blind judge are shown, and
its own rules: checked on save, applied after the normaliser, re-blinding the audit."""

import json
import re

import pytest
from django.core.exceptions import ValidationError

from annotations.models import Audit, Step, Trace
from annotations.selectors.blinded import item_get_blinded
from annotations.services.audit_blinding import audit_normaliser_update
from annotations.services.audits import audit_create
from annotations.services.batches import batch_assign, batch_build
from annotations.services.imports import import_file
from annotations.services.labels import label_save
from annotations.services.normalise import (
    NORMALISER_V1,
    NORMALISER_V2,
    RuleError,
    normalise_v1,
    normalise_v2,
    rules_compile,
    rules_digest,
)
from auditapp.exceptions import ApplicationError, ConflictError
from judges.rendering import requests_for_steps
from judges.services.specs import default_prompt_get, judge_create_or_update

VERBOSE = (
    "**Okay, let me see. The ferritin is 8 µg/L.\n\nWait, so low ferritin confirms depleted "
    "iron stores.** ✅\n\n**Final Answer**\n\\boxed{B}"
)
RECORDS = [
    {
        "question_id": "q1",
        "question": "Which finding?",
        "options": {"A": "one", "B": "two"},
        "gold_answer": "B",
        "condition": "reasoner",
        "trace_id": "t1",
        "trace": VERBOSE,
        "final_answer": "**Final Answer**\n\\boxed{B}",
    },
    {
        "question_id": "q1",
        "question": "Which finding?",
        "options": {"A": "one", "B": "two"},
        "gold_answer": "B",
        "condition": "numbered",
        "trace_id": "t2",
        "trace": "1. The ferritin is 8 µg/L.\n\n2. Low ferritin confirms depleted iron stores.",
        "final_answer": "B",
    },
]


def _import(tmp_path, **audit_fields) -> Audit:
    path = tmp_path / "traces.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS), encoding="utf-8")
    audit = audit_create(slug=audit_fields.pop("slug", "norm"), name="Norm", **audit_fields)
    import_file(audit=audit, path=path, segmenter_names=["paragraphs"])
    return audit


def _steps(audit: Audit) -> list[tuple[str, str, str]]:
    return list(
        Step.objects.filter(audit=audit)
        .order_by("trace__external_id", "index")
        .values_list("text", "blinded_text", "blinding_version")
    )


def test_new_audits_blind_with_v2_and_their_final_answers_too(db, tmp_path):
    # when
    audit = _import(tmp_path)
    # then
    assert audit.normaliser_version == NORMALISER_V2
    steps = _steps(audit)
    assert [blinded for _, blinded, _ in steps] == [
        "The ferritin is 8 µg/L.",
        "Low ferritin confirms depleted iron stores.",
        "B",
        "The ferritin is 8 µg/L.",
        "Low ferritin confirms depleted iron stores.",
    ]
    assert {version for *_, version in steps} == {NORMALISER_V2}
    shown = dict(
        Trace.objects.filter(audit=audit).values_list("external_id", "blinded_final_answer")
    )
    assert shown == {"t1": "B", "t2": "B"}
    # the raw final answer is kept (answer metrics read it)
    assert (
        Trace.objects.get(audit=audit, external_id="t1").final_answer == RECORDS[0]["final_answer"]
    )


def test_a_v1_audit_is_blinded_exactly_as_before(db, tmp_path):
    # when
    audit = _import(tmp_path, normaliser_version=NORMALISER_V1)
    # then: every step is v1's output of its text, byte for byte; final answers as imported
    for text, blinded, version in _steps(audit):
        assert (blinded, version) == (normalise_v1(text), NORMALISER_V1)
    shown = dict(
        Trace.objects.filter(audit=audit).values_list("external_id", "blinded_final_answer")
    )
    assert shown == {"t1": RECORDS[0]["final_answer"], "t2": "B"}


def test_normalisation_off_shows_raw_text(db, tmp_path):
    audit = _import(tmp_path, style_normalisation=False)
    for text, blinded, version in _steps(audit):
        assert (blinded, version) == (text.strip(), "raw")


def test_audit_rules_run_after_the_normaliser_and_name_themselves(db, tmp_path):
    # given: a house phrase v2 does not know, and an abbreviation one arm spells out
    rules = [
        {"pattern": r"\bconfirms\b", "replacement": "shows", "example": "it confirms"},
        {"pattern": r"(?i)\bferritin\b", "replacement": "ferritin", "note": "case"},
    ]
    # when
    audit = _import(tmp_path, normaliser_rules=rules)
    # then
    steps = _steps(audit)
    assert steps[1][1] == "Low ferritin shows depleted iron stores."
    assert {version for *_, version in steps} == {f"norm-v2+{rules_digest(rules)}"}
    assert len(steps[0][2]) <= Step._meta.get_field("blinding_version").max_length


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ("not a list", "must be a list"),
        ([{"replacement": "x"}], "rule 1: 'pattern' must be a non-empty string"),
        ([{"pattern": "(unclosed", "replacement": ""}], "rule 1: '(unclosed' is not a regular"),
        ([{"pattern": "a*", "replacement": "b"}], "matches the empty text"),
        ([{"pattern": "x|", "replacement": "y"}], "matches the empty text"),
        ([{"pattern": "(a)", "replacement": r"\2"}], "refers to a group the pattern lacks"),
        ([{"pattern": "(a)", "replacement": r"\g<name>"}], "refers to a group"),
        ([{"pattern": "ferritin", "replacement": "x", "example": "sodium"}], "does not match"),
        ([{"pattern": "x", "replacement": "y", "color": "red"}], "unknown keys color"),
        ([{"pattern": "mg", "replacement": "mg mg"}], "not idempotent"),
        ([{"pattern": "low", "replacement": "Okay, low"}], "not idempotent"),
        ([{"pattern": "ab", "replacement": "b", "example": "the aab"}], "not idempotent"),
        ([{"pattern": "x", "replacement": "y"}] * 51, "at most 50 rules"),
    ],
    ids=[
        "not-a-list",
        "no-pattern",
        "bad-regex",
        "empty-match-star",
        "empty-match-alternative",
        "missing-group",
        "missing-named-group",
        "example-not-matched",
        "unknown-key",
        "grows-on-each-pass",
        "reintroduces-a-filler",
        "not-idempotent-on-its-example",
        "too-many",
    ],
)
def test_bad_rules_are_refused_with_the_reason(rules, message, db):
    # when / then: the pure check, and the model's validator (admin forms, full_clean)
    with pytest.raises(RuleError, match=re.escape(message)):
        rules_compile(rules)
    audit = Audit(slug="bad-rules", name="Bad", normaliser_rules=rules)
    with pytest.raises(ValidationError) as caught:
        audit.full_clean()
    assert message in str(caught.value.message_dict["normaliser_rules"])


def test_changing_the_rules_reblinds_steps_and_final_answers(db, tmp_path):
    # given
    audit = _import(tmp_path, normaliser_version=NORMALISER_V1)
    # when
    count = audit_normaliser_update(
        audit=audit,
        version=NORMALISER_V2,
        rules=[{"pattern": r"\bdepleted\b", "replacement": "low"}],
    )
    # then
    assert count == Step.objects.filter(audit=audit).count()
    for text, blinded, version in _steps(audit):
        assert blinded == normalise_v2(text).replace("depleted", "low")
        assert version.startswith("norm-v2+")
    assert set(
        Trace.objects.filter(audit=audit).values_list("blinded_final_answer", flat=True)
    ) == {"B"}


def test_bad_rules_leave_the_audit_and_its_text_alone(db, tmp_path):
    audit = _import(tmp_path)
    before = _steps(audit)
    with pytest.raises(ApplicationError) as caught:
        audit_normaliser_update(audit=audit, rules=[{"pattern": "(", "replacement": ""}])
    assert caught.value.code == "invalid_rules"
    audit.refresh_from_db()
    assert audit.normaliser_rules == []
    assert _steps(audit) == before


def test_blinding_cannot_change_once_labelled(db, tmp_path, admin_user, clinician):
    # given: one label saved on the audit
    audit = _import(tmp_path)
    batch = batch_build(audit=audit, name="b", size=2, segmentation="paragraphs")
    (assignment,) = batch_assign(batch=batch, annotators=[clinician])
    item = assignment.items.order_by("position").first()
    label_save(
        annotator=clinician,
        assignment_public_id=assignment.public_id,
        position=item.position,
        verdict="correct",
        error_category="",
        comment="",
        elapsed_ms=1000,
    )
    # when / then
    with pytest.raises(ConflictError):
        audit_normaliser_update(audit=audit, rules=[{"pattern": "x", "replacement": "y"}])


def test_clinicians_and_style_blind_judges_see_the_blinded_final_answer(db, tmp_path, clinician):
    # given: an audit that shows final answers
    audit = _import(tmp_path, show_final_answer=True)
    batch = batch_build(audit=audit, name="b", size=5, segmentation="paragraphs")
    (assignment,) = batch_assign(batch=batch, annotators=[clinician])
    # when
    shown = {
        item_get_blinded(
            clinician=clinician, assignment_public_id=assignment.public_id, position=position
        ).final_answer
        for position in assignment.items.values_list("position", flat=True)
    }
    blind = judge_create_or_update(
        spec={
            "name": "blind",
            "base_url": "http://127.0.0.1:9/v1",
            "model": "m",
            "show_final_answer": True,
            "style_blind": True,
        }
    )
    raw = judge_create_or_update(
        spec={
            "name": "raw",
            "base_url": "http://127.0.0.1:9/v1",
            "model": "m",
            "show_final_answer": True,
            "style_blind": False,
        }
    )
    step_ids = list(
        Step.objects.filter(audit=audit, trace__external_id="t1").values_list("pk", flat=True)
    )

    def sent(judge):
        rendered = requests_for_steps(
            judge=judge, prompt=default_prompt_get(), audit=audit, step_ids=step_ids
        )
        return json.dumps([r.request.messages for r in rendered])

    # then
    assert shown == {"B"}
    assert "boxed" not in sent(blind) and "Final Answer" not in sent(blind)
    assert "\\\\boxed{B}" in sent(raw)


def test_the_report_methods_say_what_blinded_the_text(db, tmp_path):
    from reports.services import report_build

    # given
    audit = _import(
        tmp_path, normaliser_rules=[{"pattern": r"\bconfirms\b", "replacement": "shows"}]
    )
    # when
    methods = report_build(audit=audit, resamples=10)["methods"]
    # then
    assert "norm-v2 normaliser" in methods["normaliser"]
    assert "/\\bconfirms\\b/ → 'shows'" in methods["normaliser"]
    assert f"norm-v2+{rules_digest(audit.normaliser_rules)} 5" in methods["normaliser"]


def _admin_form(audit: Audit, **changes):
    from django.forms.models import model_to_dict

    from annotations.admin import AuditAdminForm

    data = {
        key: json.dumps(value) if isinstance(value, list | dict) else value
        for key, value in model_to_dict(audit).items()
        if value is not None
    }
    data.update({k: json.dumps(v) if isinstance(v, list) else v for k, v in changes.items()})
    return AuditAdminForm(data=data, instance=audit)


def test_the_admin_form_refuses_bad_rules_and_changes_after_labelling(db, tmp_path, clinician):
    # given
    audit = _import(tmp_path)
    # then: a bad regex is a form error on the field, with the reason
    form = _admin_form(audit, normaliser_rules=[{"pattern": "(", "replacement": ""}])
    assert not form.is_valid()
    assert "not a regular expression" in str(form.errors["normaliser_rules"])
    # and good rules pass until someone has labelled
    good = [{"pattern": r"\bconfirms\b", "replacement": "shows"}]
    assert _admin_form(audit, normaliser_rules=good).is_valid()
    batch = batch_build(audit=audit, name="b", size=1, segmentation="paragraphs")
    (assignment,) = batch_assign(batch=batch, annotators=[clinician])
    label_save(
        annotator=clinician,
        assignment_public_id=assignment.public_id,
        position=assignment.items.first().position,
        verdict="correct",
    )
    form = _admin_form(audit, normaliser_rules=good)
    assert not form.is_valid()
    assert "can no longer change" in str(form.errors)
