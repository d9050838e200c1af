import pytest
from django.apps import apps
from django.utils import timezone

from auditapp.agreement.formats import answers_validate, labels_validate
from reports.collect import (
    answers_collect,
    audit_tables_collect,
    labels_collect,
    ratings_collect,
)
from reports.services import audit_unblind

CONDITION_NAMES = ("teacher", "student-before", "student-after")
needs_judges = pytest.mark.skipif(
    "judges.JudgeVerdict" not in {m._meta.label for m in apps.get_models()},
    reason="judges models not installed yet",
)


def test_collect_demo_audit_reference_verdicts_flow_in(demo_audit):
    # given the demo audit: steps with reference verdicts, no labels or judges
    # when
    tables = audit_tables_collect(demo_audit)
    # then every reference verdict is a 'reference' row, valid in the long format
    labels = labels_validate(tables.labels)
    assert tables.sources["reference"] == 264
    assert len(labels) == 264
    assert set(labels["evaluator"]) == {"reference"}
    assert set(labels["evaluator_kind"]) == {"reference"}
    assert set(labels["verdict"]) <= {"correct", "error"}
    assert labels["trace_id"].nunique() == 60
    # and the answers: one row per trace, valid
    answers = answers_validate(tables.answers)
    assert len(answers) == 60
    assert answers["confidence"].notna().all()


def test_collect_shows_blind_codes_until_unblinded(demo_audit, admin_user):
    # given
    codes = set(demo_audit.conditions.values_list("blind_code", flat=True))
    # when collected blinded
    labels, _ = labels_collect(demo_audit)
    answers = answers_collect(demo_audit)
    # then only blind codes
    assert set(labels["condition"]) == codes
    assert set(answers["condition"]) == codes
    # when unblinded
    audit_unblind(audit=demo_audit, user=admin_user, confirm_slug=demo_audit.slug)
    demo_audit.refresh_from_db()
    labels, _ = labels_collect(demo_audit)
    # then names
    assert set(labels["condition"]) == set(CONDITION_NAMES)


def test_collect_ratings_empty_without_ratings(demo_audit):
    # given no trace ratings / when / then
    assert ratings_collect(demo_audit).empty


def test_collect_expert_labels_carry_inclusion_probability(expert_labels):
    # given two clinicians labelling every 'given' step
    # when
    labels, sources = labels_collect(expert_labels)
    # then
    experts = labels[labels["evaluator_kind"] == "expert"]
    assert sources["expert"] == 2 * 264
    assert set(experts["evaluator"]) == {"clinician1", "clinician2"}
    assert (experts["inclusion_probability"] == 0.5).all()
    labels_validate(labels)


@needs_judges
def test_judge_fast_path_matches_the_selector(demo_audit):
    # given a reference run and an older + newer run of one judge
    from judges.selectors import verdicts_long_table
    from judges.services import reference_run_create

    reference_run_create(audit=demo_audit, segmentation="given")
    # when
    labels, sources = labels_collect(demo_audit)
    expected = list(verdicts_long_table(demo_audit))
    # then our column path gives exactly the selector's rows
    got = {
        (r.step_id, r.evaluator, r.evaluator_kind, r.verdict, r.condition)
        for r in labels.itertuples()
    }
    want = {
        (r["step_id"], r["evaluator"], r["evaluator_kind"], r["verdict"], r["condition"])
        for r in expected
        if r["verdict"] != "invalid"
    }
    assert got == want
    # and the reference run replaces Step.reference_verdict (no double reference rows)
    assert sources["reference"] == len(want)
    assert labels.duplicated(["step_id", "evaluator"]).sum() == 0


@pytest.mark.postgres
def test_collect_on_postgres_uses_copy_and_matches(demo_audit):
    # given PostgreSQL / when
    tables = audit_tables_collect(demo_audit)
    # then the COPY path parses the same shapes
    assert len(tables.labels) == 264
    assert tables.answers["sample_index"].dtype.kind == "i"
    assert set(tables.labels["verdict"]) <= {"correct", "error"}


def test_collect_expert_labels_carry_flag_note_and_skip(expert_labels):
    from annotations.models import Label

    # given one expert label flagged with a note, and one labelled after a skip
    first, second = Label.objects.filter(assignment__batch__audit=expert_labels).order_by("pk")[:2]
    Label.objects.filter(pk=first.pk).update(flagged=True, flag_note="unclear dose")
    second.assignment_item.skipped_at = timezone.now()
    second.assignment_item.save(update_fields=["skipped_at"])
    # when
    labels, _ = labels_collect(expert_labels)
    # then the three columns say so for those two and only those
    experts = labels[labels["evaluator_kind"] == "expert"]
    flagged = experts[experts["flagged"].astype(bool)]
    assert list(flagged["flag_note"]) == ["unclear dose"]
    assert int(experts["skipped"].astype(bool).sum()) == 1
    assert set(experts["flagged"]) == {True, False}
    # and the other evaluators leave them empty
    others = labels[labels["evaluator_kind"] != "expert"]
    assert others[["flagged", "flag_note", "skipped"]].isna().all().all()
    labels_validate(labels)
