"""Study links for step-label audits: a participant enrolled through a link labels the steps
of an assignment drawn from the link's batch on the labelling page clinicians use (blinded
the same way), after practice steps with feedback; attention checks are the batch's gold
items (a known verdict) at set places; the code comes after submitting. Hostile cases: only
one's own items, and another link's token does nothing."""

import csv
import io
import json

import pytest

from annotations.models import Assignment, AssignmentItem, Label
from studies.models import Participant, StudyResponse

pytestmark = pytest.mark.django_db

CONSENT = "You will judge single reasoning steps. Taking part is voluntary."
PRACTICE_STEP = "The patient's sodium is 128 mmol/L, so the sodium is high."
CODE = "STEPS-DONE-7"
STEP_SETTINGS = {
    "consent": CONSENT,
    "instructions": "Judge each step on its own terms.",
    "practice": [
        {"text": PRACTICE_STEP, "verdict": "error", "feedback": "128 mmol/L is low, not high."}
    ],
    "attention_checks": [{"position": 2}, {"position": 5}],
    "questionnaire": [{"key": "years", "text": "Years in practice", "kind": "text"}],
    "max_attention_failures": 0,
}


@pytest.fixture
def step_batch(demo_audit):
    from annotations.services.batches import batch_build

    return batch_build(audit=demo_audit, name="wave-steps", size=6, segmentation="given", gold=2)


@pytest.fixture
def step_link(demo_audit, step_batch, admin_user):
    from studies.services.setup import study_configure, study_link_create

    study_configure(audit=demo_audit, settings=STEP_SETTINGS)
    return study_link_create(
        audit=demo_audit, batch=step_batch, capacity=6, completion_code=CODE, created_by=admin_user
    )


@pytest.fixture
def other_link(demo_audit, step_batch):
    from studies.services.setup import study_link_create

    return study_link_create(audit=demo_audit, batch=step_batch, capacity=6, completion_code="X2")


def _enrol(client, link, pid):
    assert client.get(f"/s/{link.token}/?PROLIFIC_PID={pid}").status_code == 200
    response = client.post(
        f"/s/{link.token}/consent/", {"platform_id": pid, "decision": "accept"}, follow=True
    )
    assert response.request["PATH_INFO"].endswith("/instructions/")
    return Participant.objects.select_related("assignment").get(link=link, platform_id=pid)


def _practise(client, link, verdict="correct"):
    response = client.post(f"/s/{link.token}/instructions/", follow=True)
    assert response.request["PATH_INFO"] == f"/s/{link.token}/practice/1/"
    assert "128 mmol/L, so the sodium is high." in response.content.decode()
    feedback = client.post(
        response.request["PATH_INFO"], {"likert-verdict": verdict, "shown_at": "0"}
    )
    return feedback.content.decode()


def _label_all(client, participant, *, wrong_checks=0):
    """Label every item through the labelling page's API (what its script does): the gold
    verdict on checks (the first ``wrong_checks`` of them wrongly), 'correct' elsewhere."""
    items = AssignmentItem.objects.filter(assignment=participant.assignment).select_related(
        "batch_item"
    )
    wrong = 0
    for item in items.order_by("position"):
        verdict = "correct"
        if item.batch_item.is_gold:
            verdict = item.batch_item.gold_verdict
            if wrong < wrong_checks:
                verdict = "abstain" if verdict != "abstain" else "correct"
                wrong += 1
        body = {"verdict": verdict, "error_category": "factual error"}
        saved = client.put(
            f"/api/my/assignments/{participant.assignment.public_id}/items/{item.position}/label/",
            json.dumps(body),
            content_type="application/json",
        )
        assert saved.status_code == 200, saved.content
    submitted = client.post(f"/api/my/assignments/{participant.assignment.public_id}/submit/")
    assert submitted.status_code == 200, submitted.content


def test_a_participant_labels_steps_on_the_labelling_page_and_gets_the_code(client, step_link):
    # when a visitor consents and practises with a wrong verdict
    participant = _enrol(client, step_link, "stepper1")
    feedback = _practise(client, step_link, verdict="correct")
    # then the feedback gives the expected verdict against theirs, and the explanation
    assert "Not quite" in feedback and "expected error, you chose correct" in feedback
    assert "128 mmol/L is low, not high." in feedback
    # when they continue: the labelling page, on their first item
    page = client.get(f"/s/{step_link.token}/go/", follow=True)
    assert page.request["PATH_INFO"] == f"/s/{step_link.token}/steps/1/"
    body = page.content.decode()
    assert 'id="label-app"' in body and "js/label_page.js" in body
    data = json.loads(
        body.split('id="item-data" type="application/json">')[1].split("</script>")[0]
    )
    assert data["urls"]["list"] == f"/s/{step_link.token}/go/"
    assert data["urls"]["page"] == f"/s/{step_link.token}/steps/"
    assert 'href="/my/"' not in body  # the way out is the study's, not the assignment list
    # blinded as for clinicians: the annotator-facing title, no internal name or arm names
    assert "Demo for tests" not in body
    assert not any(arm in body for arm in ("student-before", "student-after", "teacher"))
    # the assignment: the batch's six steps and its two gold items at the checks' places
    items = list(participant.assignment.items.select_related("batch_item").order_by("position"))
    assert [i.position for i in items if i.batch_item.is_gold] == [2, 5]
    assert len(items) == participant.n_items == 8
    # when they label every step and submit on the page
    _label_all(client, participant)
    # then the questionnaire, then the code; both checks passed
    after = client.get(data["urls"]["list"], follow=True)
    assert after.request["PATH_INFO"].endswith("/questionnaire/")
    done = client.post(after.request["PATH_INFO"], {"q-years": "4"}, follow=True)
    assert CODE in done.content.decode()
    participant.refresh_from_db()
    assert participant.completed_at is not None and participant.excluded_at is None
    results = StudyResponse.objects.filter(participant=participant, item__kind="attention")
    assert sorted(r.passed for r in results) == [True, True]
    assert Label.objects.filter(assignment=participant.assignment).count() == 8


def test_a_wrong_verdict_on_a_check_flags_the_participant(client, admin_user, step_link):
    participant = _enrol(client, step_link, "stepper2")
    _practise(client, step_link, verdict="error")
    _label_all(client, participant, wrong_checks=1)
    client.get(f"/s/{step_link.token}/go/", follow=True)
    # a second visit scores nothing twice
    client.get(f"/s/{step_link.token}/go/", follow=True)
    participant.refresh_from_db()
    assert participant.attention_failures == 1
    assert (
        participant.excluded_at is not None and "1 attention check" in participant.excluded_reason
    )
    # the labels stay; the study CSV shows the failed check at its place
    assert Label.objects.filter(assignment=participant.assignment).count() == 8
    client.force_login(admin_user)
    rows = list(
        csv.DictReader(
            io.StringIO(
                client.get(
                    f"/studies/{step_link.study.audit.slug}/participants.csv"
                ).content.decode()
            )
        )
    )
    (row,) = rows
    assert row["attention_checks"] == "2:fail 5:pass" and row["excluded"] == "1"
    assert row["items_done"] == "8" and row["stopped_at"] == "questionnaire"


def test_labels_of_a_flagged_participant_leave_the_report(client, step_link):
    from reports.services import report_build

    participant = _enrol(client, step_link, "stepper3")
    _practise(client, step_link)
    _label_all(client, participant, wrong_checks=2)
    audit = step_link.study.audit
    before = report_build(audit=audit, resamples=20)
    assert before["exclusions"]["participants"] == []
    # when the checks are scored (the page after submitting)
    client.get(f"/s/{step_link.token}/go/", follow=True)
    after = report_build(audit=audit, resamples=20)
    # then the participant is listed, and their six sampled steps' labels are not used (the
    # gold items never are)
    (listed,) = after["exclusions"]["participants"]
    assert listed["platform_id"] == "stepper3" and listed["rater"] == participant.user.username
    assert "attention check" in listed["reason"]
    participant.refresh_from_db()
    assert participant.attention_failures == 2
    assert before["audit"]["n_labels_used"] - after["audit"]["n_labels_used"] == 6
    # and the annotator table still lists them, marked with why, so the exclusion can be checked
    rows = {r["evaluator"]: r for r in after["annotators"]["quality"]}
    assert "attention check" in rows[participant.user.username]["excluded"]
    assert rows[participant.user.username]["n_labels"] == 6
    assert all(not r["excluded"] for name, r in rows.items() if name != participant.user.username)
    before_rows = {r["evaluator"]: r for r in before["annotators"]["quality"]}
    assert before_rows[participant.user.username]["excluded"] == ""


def test_a_participant_sees_and_changes_only_their_own_items(client, step_link):
    from django.test import Client

    mine = _enrol(client, step_link, "own1")
    _practise(client, step_link)
    other_client = Client()
    theirs = _enrol(other_client, step_link, "own2")
    theirs_api = f"/api/my/assignments/{theirs.assignment.public_id}/items/1/"
    # another participant's item, page and label: not found, nothing saved
    assert client.get(theirs_api).status_code == 404
    put = client.put(
        theirs_api + "label/", json.dumps({"verdict": "correct"}), content_type="application/json"
    )
    assert put.status_code == 404
    assert (
        client.post(f"/api/my/assignments/{theirs.assignment.public_id}/submit/").status_code == 404
    )
    assert client.get(f"/my/{theirs.assignment.public_id}/1/").status_code == 404
    assert not Label.objects.filter(assignment=theirs.assignment).exists()
    # their own list holds their one assignment only
    listed = client.get("/api/my/assignments/").json()
    assert [a["id"] for a in listed] == [mine.assignment.public_id]


def test_the_token_of_another_link_does_nothing(client, step_link, other_link):
    _enrol(client, step_link, "tok1")
    _practise(client, step_link)
    before = (Participant.objects.count(), Assignment.objects.count())
    for path in (
        "go/",
        "steps/",
        "steps/1/",
        "instructions/",
        "practice/1/",
        "questionnaire/",
        "done/",
    ):
        response = client.get(f"/s/{other_link.token}/{path}")
        assert response.status_code == 404, path
        assert "Open the study link" in response.content.decode()
    # a tampered token is not valid either, on every page
    tampered = step_link.token[:-1] + ("A" if step_link.token[-1] != "A" else "B")
    assert client.get(f"/s/{tampered}/steps/1/").status_code == 404
    assert (Participant.objects.count(), Assignment.objects.count()) == before


@pytest.mark.parametrize(
    ("change", "text"), [({"capacity": 0}, "full"), ({"closed_at": "now"}, "closed")]
)
def test_a_step_link_that_takes_nobody_says_why(client, step_link, change, text):
    from django.utils import timezone

    from studies.models import StudyLink

    if change.get("closed_at") == "now":
        change = {"closed_at": timezone.now()}
    StudyLink.objects.filter(pk=step_link.pk).update(**change)
    page = client.get(f"/s/{step_link.token}/?PROLIFIC_PID=late")
    assert page.status_code == 410 and text in page.content.decode()
    posted = client.post(
        f"/s/{step_link.token}/consent/", {"platform_id": "late", "decision": "accept"}
    )
    assert posted.status_code == 410 and not Participant.objects.exists()


def test_participants_get_their_share_and_the_gold_items_at_the_checks(demo_audit, step_batch):
    from studies.services.enrolment import participant_enrol
    from studies.services.setup import study_configure, study_link_create

    study_configure(audit=demo_audit, settings=STEP_SETTINGS)
    link = study_link_create(
        audit=demo_audit,
        batch=step_batch,
        capacity=3,
        completion_code=CODE,
        items_per_participant=3,
    )
    seen = []
    for pid in ("a1", "a2"):
        participant, _ = participant_enrol(link=link, platform_id=pid)
        items = list(participant.assignment.items.select_related("batch_item").order_by("position"))
        assert [i.batch_item.is_gold for i in items] == [False, True, False, False, True]
        seen.append({i.batch_item_id for i in items if not i.batch_item.is_gold})
    # consecutive shares of the dealt batch: the first two participants share nothing
    assert not seen[0] & seen[1] and all(len(s) == 3 for s in seen)


def test_a_step_link_needs_a_gold_item_per_check(demo_audit):
    from annotations.services.batches import batch_build
    from auditapp.exceptions import ApplicationError
    from studies.services.setup import study_configure, study_link_create

    batch = batch_build(audit=demo_audit, name="no-gold", size=4, segmentation="given")
    study_configure(audit=demo_audit, settings=STEP_SETTINGS)
    with pytest.raises(ApplicationError, match="2 attention checks but the batch only 0 gold"):
        study_link_create(audit=demo_audit, batch=batch, capacity=3, completion_code=CODE)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"attention_checks": [{"position": 2, "text": "x"}]}, "attention_checks[1]"),
        ({"practice": [{"text": "x", "verdict": "wrong"}]}, "practice[1].verdict"),
        ({"practice": [{"text": "x", "answers": {"a": 1}}]}, "practice[1]"),
    ],
    ids=["check-text", "verdict", "likert-answers"],
)
def test_a_step_study_file_of_the_wrong_shape_names_the_field(demo_audit, change, field):
    from auditapp.exceptions import ApplicationError
    from studies.models import Study
    from studies.services.setup import study_configure

    with pytest.raises(ApplicationError) as error:
        study_configure(audit=demo_audit, settings={**STEP_SETTINGS, **change})
    assert error.value.message.startswith(field)
    assert not Study.objects.exists()


@pytest.fixture
def repeat_link(demo_audit, admin_user):
    from annotations.services.batches import batch_build
    from studies.services.setup import study_configure, study_link_create

    batch = batch_build(
        audit=demo_audit,
        name="wave-repeats",
        size=6,
        segmentation="given",
        gold=2,
        hidden_repeat_share=0.34,
        repeat_min_gap=3,
    )
    study_configure(audit=demo_audit, settings=STEP_SETTINGS)
    return study_link_create(
        audit=demo_audit, batch=batch, capacity=6, completion_code=CODE, created_by=admin_user
    )


def test_a_step_participant_gets_the_batchs_hidden_repeats(client, repeat_link):
    from reports.services import report_build

    # given a batch asking for a third of hidden repeats, at least 3 items apart
    participant = _enrol(client, repeat_link, "repeater1")
    items = list(
        participant.assignment.items.select_related("batch_item", "repeat_of").order_by("position")
    )
    # then 6 steps, round(0.34 × 6) = 2 repeats and the 2 gold items at the checks' places
    repeats = [i for i in items if i.is_hidden_repeat]
    assert len(items) == participant.n_items == 10 and len(repeats) == 2
    assert [i.position for i in items if i.batch_item.is_gold] == [2, 5]
    for repeat in repeats:
        original = repeat.repeat_of
        assert original.batch_item_id == repeat.batch_item_id and not original.is_hidden_repeat
        assert repeat.position - original.position >= 3 and not repeat.batch_item.is_gold
    # when they label everything, the repeats differently from their originals
    _practise(client, repeat_link)
    flip = {r.position for r in repeats[:1]}
    for item in items:
        verdict = item.batch_item.gold_verdict if item.batch_item.is_gold else "correct"
        if item.position in flip:
            verdict = "error"
        saved = client.put(
            f"/api/my/assignments/{participant.assignment.public_id}/items/{item.position}/label/",
            json.dumps({"verdict": verdict, "error_category": "factual error"}),
            content_type="application/json",
        )
        assert saved.status_code == 200, saved.content
    assert (
        client.post(f"/api/my/assignments/{participant.assignment.public_id}/submit/").status_code
        == 200
    )
    client.get(f"/s/{repeat_link.token}/go/", follow=True)
    # then both checks passed (the gold items were found in order), and the report reads the
    # pairs: one of two agrees; the repeats' labels count in no estimate
    participant.refresh_from_db()
    assert participant.attention_failures == 0 and participant.excluded_at is None
    report = report_build(audit=repeat_link.study.audit, resamples=20)
    row = next(
        r for r in report["annotators"]["quality"] if r["evaluator"] == participant.user.username
    )
    assert row["repeat_pairs"] == 2 and row["repeat_agreement"] == pytest.approx(0.5)
    assert row["n_labels"] == 8  # the 6 steps and 2 repeats; gold left out
    # the only "error" was on a repeat: no estimate counts it
    experts = [r for r in report["error_rates"] if r["evaluator_kind"] == "expert"]
    assert experts and sum(r["n_error"] for r in experts) == 0


def test_step_participants_get_their_own_repeat_places(client, repeat_link):
    from django.test import Client

    first = _enrol(client, repeat_link, "repeater2")
    second = _enrol(Client(), repeat_link, "repeater3")

    def layout(p):
        return [
            (i.batch_item_id, i.is_hidden_repeat) for i in p.assignment.items.order_by("position")
        ]

    # each gets repeats; the orders are their own (seeded per participant)
    assert sum(r for _, r in layout(first)) == sum(r for _, r in layout(second)) == 2
    assert layout(first) != layout(second)
