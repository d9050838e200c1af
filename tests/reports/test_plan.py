import hashlib
import json

import pytest
from django.urls import reverse

from annotations.selectors.pseudonyms import id_pseudonyms
from auditapp.exceptions import ApplicationError, ConflictError, ForbiddenError
from reports.models import AnalysisPlan, ImmutableRecordError
from reports.services import (
    analysis_plan_lock,
    audit_unblind,
    plan_hash,
    report_build,
)

PLAN = {
    "metrics": ["error_rates", "orderings", "ordering_agreement"],
    "abstain_rule": "exclude",
    "bootstrap": {"resamples": 40, "confidence_level": 0.9},
    "ece_bins": 5,
    "seed": 7,
    "exclusions": {"trace_ids": ["tr-da590e"]},
}


def test_lock_stores_the_sha256_of_the_canonical_plan(demo_audit, researcher):
    # given / when
    plan = analysis_plan_lock(audit=demo_audit, user=researcher, plan=PLAN)
    # then the hash is over sorted, space-free JSON of the completed plan
    canonical = json.dumps(plan.plan, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert plan.sha256 == hashlib.sha256(canonical.encode()).hexdigest() == plan_hash(plan.plan)
    assert plan.plan["exclusions"]["evaluators"] == []  # defaults written out
    assert plan.locked_by == researcher


def test_locked_plan_is_immutable(demo_audit, researcher):
    # given a locked plan
    plan = analysis_plan_lock(audit=demo_audit, user=researcher, plan=PLAN)
    # when changed or deleted / then refused
    plan.plan = {**plan.plan, "seed": 8}
    with pytest.raises(ImmutableRecordError):
        plan.save()
    with pytest.raises(ImmutableRecordError):
        plan.delete()
    # and a second lock is a conflict
    with pytest.raises(ConflictError):
        analysis_plan_lock(audit=demo_audit, user=researcher, plan=PLAN)
    assert AnalysisPlan.objects.get().plan["seed"] == 7


def test_lock_refused_after_unblinding_and_for_clinicians(demo_audit, admin_user, clinician):
    # given a clinician / then forbidden
    with pytest.raises(ForbiddenError):
        analysis_plan_lock(audit=demo_audit, user=clinician, plan=PLAN)
    # given an unblinded audit / then a conflict
    audit_unblind(audit=demo_audit, user=admin_user, confirm_slug=demo_audit.slug)
    with pytest.raises(ConflictError):
        analysis_plan_lock(audit=demo_audit, user=admin_user, plan=PLAN)


@pytest.mark.parametrize(
    "bad",
    [
        {"seeed": 1},
        {"metrics": ["error_rates", "vibes"]},
        {"exclusions": {"conditions": ["teacher"]}},
        {"bootstrap": {"resamples": 0}},
        {"abstain_rule": "ignore"},
    ],
    ids=["typo", "metric", "exclusion", "resamples", "abstain"],
)
def test_lock_refuses_bad_plans(demo_audit, researcher, bad):
    with pytest.raises(ApplicationError) as info:
        analysis_plan_lock(audit=demo_audit, user=researcher, plan=bad)
    assert info.value.code == "invalid_plan"
    assert not AnalysisPlan.objects.exists()


def _blind_plan(audit) -> dict:
    """PLAN as a researcher writes it while blinded: the trace under its pseudonym."""
    (pseudonym,) = id_pseudonyms(seed=audit.blinding_seed, kind="trace", external_ids=["tr-da590e"])
    return {**PLAN, "exclusions": {"trace_ids": [pseudonym]}}


def test_report_follows_the_plan_and_names_deviations(demo_audit, researcher, admin_user):
    # given a locked plan
    analysis_plan_lock(audit=demo_audit, user=researcher, plan=_blind_plan(demo_audit))
    # when built with the plan's settings (defaults come from it)
    followed = report_build(audit=demo_audit)
    # then followed, settings and exclusions applied
    assert followed["analysis_plan"]["followed"] is True
    assert followed["parameters"]["resamples"] == 40
    assert followed["parameters"]["seed"] == 7
    assert followed["audit"]["n_labels_used"] == 264 - 5  # the excluded trace's 5 steps
    # when unblinded (the tables now carry imported ids) / then the same trace stays excluded
    audit_unblind(audit=demo_audit, user=admin_user, confirm_slug=demo_audit.slug)
    demo_audit.refresh_from_db()
    assert report_build(audit=demo_audit)["audit"]["n_labels_used"] == 264 - 5


def test_plan_exclusion_is_no_oracle_for_guessed_ids(demo_audit, researcher):
    # given a researcher who guessed an imported id and excludes it in the blind plan
    analysis_plan_lock(audit=demo_audit, user=researcher, plan=PLAN)
    # when the report is built / then nothing is excluded: which arm lost labels tells nothing
    assert report_build(audit=demo_audit)["audit"]["n_labels_used"] == 264
    # when built with other settings / then deviations listed
    deviated = report_build(audit=demo_audit, resamples=30, ece_bins=10)
    plan = deviated["analysis_plan"]
    assert plan["followed"] is False
    assert {d["setting"] for d in plan["deviations"]} == {"resamples", "ece_bins"}


def test_plan_api_lock_get_and_409(api_client, demo_audit, researcher, clinician):
    url = reverse("reports-api:plan", args=[demo_audit.slug])
    # given a clinician / then 403
    api_client.force_authenticate(clinician)
    assert api_client.post(url, {"plan": PLAN}, format="json").status_code == 403
    # given a researcher / when locked / then 201 with the hash, then 409
    api_client.force_authenticate(researcher)
    assert api_client.get(url).json() == {"locked": False}
    response = api_client.post(url, {"plan": PLAN}, format="json")
    assert response.status_code == 201
    assert len(response.json()["sha256"]) == 64
    assert api_client.get(url).json()["sha256"] == response.json()["sha256"]
    assert api_client.post(url, {"plan": PLAN}, format="json").status_code == 409
    # and bad input is a 400
    other = api_client.post(url, {"plan": "not an object"}, format="json")
    assert other.status_code in (400, 409)


def test_plan_page_form_locks(client, demo_audit, researcher):
    # given / when
    client.force_login(researcher)
    response = client.post(
        reverse("reports:audit-plan", args=[demo_audit.slug]),
        {
            "metrics": ["error_rates"],
            "abstain_rule": "exclude",
            "resamples": 30,
            "confidence_level": 0.95,
            "ece_bins": 10,
            "seed": 3,
            "exclude_evaluators": "",
            "exclude_trace_ids": "",
            "notes": "primary: reference",
        },
    )
    # then
    assert response.status_code == 302
    plan = AnalysisPlan.objects.get(audit=demo_audit)
    assert plan.plan["seed"] == 3 and plan.plan["notes"] == "primary: reference"
