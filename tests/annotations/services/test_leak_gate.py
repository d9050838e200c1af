"""The leak gate as an attacker sees it: the styled two-arm fixture under norm-v1 leaks (the gate
refuses to assign without a logged confirmation), under norm-v2 it does not (assigns freely).

The arms are the fixture's verbose reasoner and terse numbered list with the same claims
(tests/annotations/fixtures/styled_arms.py); the texts checked are what the clinician page shows.
"""

import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from annotations.models import Audit, Batch, Step
from annotations.selectors.blinded import item_get_blinded
from annotations.services.audits import audit_create
from annotations.services.batches import batch_assign, batch_build
from annotations.services.imports import import_file
from annotations.services.leak_gate import batch_leak_check, shown_texts
from annotations.services.normalise import NORMALISER_V1, NORMALISER_V2
from auditapp.exceptions import ConflictError
from tests.annotations.fixtures.styled_arms import styled_jsonl


def _styled_batch(tmp_path, version: str, *, questions: int = 60, **audit_options) -> Batch:
    path = styled_jsonl(tmp_path / f"styled-{version}.jsonl", questions=questions)
    audit = audit_create(
        slug=f"styled-{version}", name="Styled arms", normaliser_version=version, **audit_options
    )
    import_file(audit=audit, path=path, segmenter_names=["paragraphs"])
    n_steps = Step.objects.filter(audit=audit, segmentation="paragraphs").count()
    return batch_build(audit=audit, name="all", size=n_steps, segmentation="paragraphs")


@pytest.fixture
def v1_batch(db, tmp_path):
    return _styled_batch(tmp_path, NORMALISER_V1, show_final_answer=True)


@pytest.fixture
def v2_batch(db, tmp_path):
    return _styled_batch(tmp_path, NORMALISER_V2, show_final_answer=True)


def test_the_checked_text_is_what_the_clinician_page_shows(v1_batch, clinician):
    # given: a v1 audit showing context (K=2) and the final answer, assigned with confirmation
    audit = v1_batch.audit
    assert audit.context_mode == Audit.ContextMode.PRECEDING
    (assignment,) = batch_assign(
        batch=v1_batch, annotators=[clinician], confirm_leak=True, confirmed_by=clinician
    )
    # when
    checked = sorted(text for text, _, _ in shown_texts(batch=v1_batch))
    page = []
    for position in assignment.items.order_by("position").values_list("position", flat=True):
        item = item_get_blinded(
            clinician=clinician, assignment_public_id=assignment.public_id, position=position
        )
        page.append("\n".join([*item.context, item.step, item.final_answer]))
    # then: the same texts, item for item (the order differs: the page is shuffled)
    assert checked == sorted(page)


def test_norm_v1_leaks_and_the_gate_says_so_with_the_features(v1_batch):
    # when
    check = batch_leak_check(batch=v1_batch)
    # then
    assert check.n_items == v1_batch.items.count()
    assert check.threshold == pytest.approx(0.6)
    assert check.ci_low > 0.9 and check.above
    codes = set(v1_batch.audit.conditions.values_list("blind_code", flat=True))
    assert set(check.top_features) == codes
    # what separates the arms is the reasoner's markup: some arm's top n-grams carry it
    ngrams = [f.ngram for features in check.top_features.values() for f in features]
    assert any(any(mark in g for mark in ("*", "\\", "$", "box")) for g in ngrams), ngrams
    for features in check.top_features.values():
        assert 0 < len(features) <= 10
        assert all(f.count > f.other for f in features)


def test_norm_v2_passes_the_gate(v2_batch):
    # when
    check = batch_leak_check(batch=v2_batch)
    # then
    assert check.ci_low <= check.threshold and not check.above
    assert check.auc < 0.7


def test_the_threshold_is_the_audits(v2_batch):
    # given: a strict audit (any sign of the arm blocks)
    Audit.objects.filter(pk=v2_batch.audit_id).update(leak_threshold=0.5)
    v2_batch.refresh_from_db()
    # when
    check = batch_leak_check(batch=v2_batch)
    # then: the figures are the same; only the decision follows the threshold
    assert check.threshold == 0.5
    assert check.above == (check.ci_low > 0.5)


def test_a_tiny_batch_is_not_gated(db, tmp_path):
    # given: 2 questions x 2 arms x 5 paragraphs — too few per arm for a trustworthy interval
    batch = _styled_batch(tmp_path, NORMALISER_V1, questions=2)
    # when
    check = batch_leak_check(batch=batch)
    # then
    assert not check.above
    assert check.as_dict()["auc"] is None


def test_v1_assignment_refused_without_confirmation(v1_batch, clinician):
    # when
    with pytest.raises(ConflictError) as caught:
        batch_assign(batch=v1_batch, annotators=[clinician])
    # then: nothing assigned, the figures come with the refusal
    assert caught.value.code == "leak_gate"
    assert caught.value.extra["above"] is True
    assert caught.value.extra["ci_low"] > 0.6
    assert not v1_batch.assignments.exists()
    v1_batch.refresh_from_db()
    assert v1_batch.leak_gate == {}


def test_v1_assignment_with_confirmation_is_recorded(v1_batch, admin_user, clinician):
    # when
    batch_assign(batch=v1_batch, annotators=[clinician], confirm_leak=True, confirmed_by=admin_user)
    # then
    v1_batch.refresh_from_db()
    assert v1_batch.assignments.count() == 1
    gate = v1_batch.leak_gate
    assert gate["confirmed_by"] == admin_user.get_username()
    assert gate["confirmed_at"]
    assert gate["check"]["above"] is True and gate["check"]["ci_low"] > 0.6


def test_v2_assignment_needs_no_confirmation(v2_batch, clinician):
    # when
    (assignment,) = batch_assign(batch=v2_batch, annotators=[clinician])
    # then
    assert assignment.items.exists()
    v2_batch.refresh_from_db()
    gate = v2_batch.leak_gate
    assert gate["check"]["above"] is False and gate["check"]["ci_high"] < 0.6
    assert gate["confirmed_by"] == "" and gate["confirmed_at"] is None and gate["checked_at"]


# --- the API and the staff page ------------------------------------------------------------


def test_the_api_refuses_with_409_leak_gate_then_assigns_when_confirmed(
    v1_batch, api_client, admin_user, clinician
):
    # given
    api_client.force_authenticate(admin_user)
    url = f"/api/batches/{v1_batch.pk}/assign/"
    # when
    refused = api_client.post(url, {"annotators": [clinician.username]}, format="json")
    confirmed = api_client.post(
        url, {"annotators": [clinician.username], "confirm_leak": True}, format="json"
    )
    # then
    assert refused.status_code == 409
    body = refused.json()
    assert body["code"] == "leak_gate"
    assert body["extra"]["above"] is True and body["extra"]["ci_low"] > 0.6
    assert body["extra"]["top_features"]
    assert confirmed.status_code == 201
    v1_batch.refresh_from_db()
    assert v1_batch.leak_gate["confirmed_by"] == admin_user.username


def test_the_api_assigns_a_v2_batch_without_confirmation(
    v2_batch, api_client, admin_user, clinician
):
    # given
    api_client.force_authenticate(admin_user)
    # when
    response = api_client.post(
        f"/api/batches/{v2_batch.pk}/assign/", {"annotators": [clinician.username]}, format="json"
    )
    # then
    assert response.status_code == 201


def test_the_page_shows_the_figures_and_asks_to_assign_anyway(
    v1_batch, client, admin_user, clinician
):
    # given
    client.force_login(admin_user)
    url = f"/batches/{v1_batch.pk}/"
    check = batch_leak_check(batch=v1_batch)
    # when
    page = client.get(url).content.decode()
    refused = client.post(url, {"assign": "1", "annotators": [clinician.username]}, follow=True)
    after_refusal = v1_batch.assignments.count()
    client.post(url, {"assign": "1", "annotators": [clinician.username], "confirm_leak": "on"})
    # then: the figures, a top n-gram and the checkbox before assignment
    assert f"AUC {check.auc:.3f} [{check.ci_low:.3f}, {check.ci_high:.3f}]" in page
    assert "above the threshold" in page
    assert "Assign anyway" in page and 'name="confirm_leak"' in page
    assert "leak" in refused.content.decode().lower() and after_refusal == 0
    assert v1_batch.assignments.count() == 1
    assert "confirmed by admin1" in client.get(url).content.decode()


def test_the_page_has_no_checkbox_when_the_gate_passes(v2_batch, client, admin_user):
    # given
    client.force_login(admin_user)
    # when
    page = client.get(f"/batches/{v2_batch.pk}/").content.decode()
    # then
    assert "Leak gate" in page and "not above the threshold" in page
    assert 'name="confirm_leak"' not in page


# --- create_batch ----------------------------------------------------------------------------


def _styled_audit(tmp_path, version: str):
    path = styled_jsonl(tmp_path / f"cmd-{version}.jsonl")
    audit = audit_create(slug=f"cmd-{version}", name="Styled", normaliser_version=version)
    import_file(audit=audit, path=path, segmenter_names=["paragraphs"])
    return audit


def _create_batch(audit, *extra: str) -> str:
    out = StringIO()
    call_command(
        "create_batch",
        "--audit",
        audit.slug,
        "--size",
        "600",
        "--segmentation",
        "paragraphs",
        "--name",
        "all",
        *extra,
        stdout=out,
    )
    return out.getvalue()


def test_create_batch_dry_run_prints_the_gate_and_stores_nothing(db, tmp_path):
    # given
    audit = _styled_audit(tmp_path, NORMALISER_V1)
    # when
    text = _create_batch(audit, "--dry-run")
    # then
    # (the figures move a little with the audit's random secret: bounds, not exact values)
    found = re.search(r"leak gate: AUC ([\d.]+) \[([\d.]+), ([\d.]+)\] on 600 items", text)
    assert found, text
    auc, low, high = map(float, found.groups())
    assert 0.9 < low <= auc <= high <= 1.0
    assert "threshold 0.60: ABOVE the threshold" in text
    for code in audit.conditions.values_list("blind_code", flat=True):
        assert f"  {code} (items of this arm/others): '" in text
    assert not Batch.objects.filter(audit=audit).exists()


def test_create_batch_refuses_a_leaking_batch_unless_confirmed(db, tmp_path, clinician):
    # given
    audit = _styled_audit(tmp_path, NORMALISER_V1)
    # when: refused, nothing left behind
    with pytest.raises(CommandError, match="--confirm-leak"):
        _create_batch(audit, "--annotators", clinician.username)
    assert not Batch.objects.filter(audit=audit).exists()
    # when: confirmed
    text = _create_batch(audit, "--annotators", clinician.username, "--confirm-leak")
    # then
    batch = Batch.objects.get(audit=audit, name="all")
    assert batch.assignments.count() == 1
    assert batch.leak_gate["check"]["above"] is True and batch.leak_gate["confirmed_at"]
    assert "ABOVE the threshold" in text


def test_create_batch_assigns_a_norm_v2_batch_without_confirmation(db, tmp_path, clinician):
    # given
    audit = _styled_audit(tmp_path, NORMALISER_V2)
    # when
    text = _create_batch(audit, "--annotators", clinician.username)
    # then
    assert "not above the threshold" in text
    assert Batch.objects.get(audit=audit, name="all").assignments.count() == 1


def test_the_api_shows_the_figures_before_assignment_to_admins_only(
    v1_batch, api_client, admin_user, researcher, clinician
):
    # given
    url = f"/api/batches/{v1_batch.pk}/leak-check/"
    # when
    api_client.force_authenticate(clinician)
    as_clinician = api_client.get(url)
    api_client.force_authenticate(researcher)
    as_researcher = api_client.get(url)
    api_client.force_authenticate(admin_user)
    as_admin = api_client.get(url)
    # then
    assert as_clinician.status_code == 403 and as_researcher.status_code == 403
    body = as_admin.json()
    assert body == batch_leak_check(batch=v1_batch).as_dict() | {
        "top_features": body["top_features"]
    }
    assert body["above"] is True and body["ci_low"] > 0.6
    codes = set(v1_batch.audit.conditions.values_list("blind_code", flat=True))
    assert set(body["top_features"]) == codes
    assert all(
        set(f) == {"ngram", "count", "other"} for fs in body["top_features"].values() for f in fs
    )
    assert not v1_batch.assignments.exists()


def test_the_report_shows_each_batchs_gate_as_recorded(v1_batch, admin_user, clinician):
    from reports.exports import report_tables
    from reports.render import report_context
    from reports.services import report_build

    # given: the leaking batch assigned with confirmation, and a second batch not assigned
    audit = v1_batch.audit
    batch_assign(batch=v1_batch, annotators=[clinician], confirm_leak=True, confirmed_by=admin_user)
    batch_build(audit=audit, name="later", size=10, segmentation="paragraphs")
    v1_batch.refresh_from_db()
    gate = v1_batch.leak_gate["check"]
    # when
    report = report_build(audit=audit, resamples=20)
    # then the JSON carries the recorded figures per batch, arms by blind code
    rows = {r["batch"]: r for r in report["blinding"]["batches"]}
    assert rows["all"]["recorded"] and rows["all"]["assigned"]
    for key in ("n_items", "auc", "ci_low", "ci_high", "threshold", "above"):
        assert rows["all"][key] == gate[key]
    assert rows["all"]["confirmed_by"] == admin_user.get_username()
    codes = set(audit.conditions.values_list("blind_code", flat=True))
    assert set(rows["all"]["top_features"]) == codes
    assert rows["later"] == {"batch": "later", "assigned": False, "recorded": False}
    # and the table on the page and in the export say the same
    table = report_context(report, standalone=True)["tables"]["blinding_batches"]
    row = next(r for r in table.rows if r[0] == "all")
    assert row[2] == f"{gate['auc']:.3f}" and row[5] == "yes"
    assert next(r for r in table.rows if r[0] == "later")[-1] == "not assigned yet"
    frame = report_tables(report)["blinding_batches"]
    assert frame.loc[frame["batch"] == "all", "auc"].item() == gate["auc"]
