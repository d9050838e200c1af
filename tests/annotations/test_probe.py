"""The blinding probe (issue 11): neutral arm labels mapped explicitly to conditions, asked once
per assignment after its last item (default) or on every Nth item — tested as an annotator
trying to learn the arms from it, and as a researcher reading the guesses back."""

import json

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from annotations.models import Audit, Condition, Label, ProbeAnswer
from annotations.services.labels import PROBE_NO_IDEA, label_save
from annotations.services.probe import end_probe_get, end_probe_save
from auditapp.exceptions import ApplicationError, ConflictError
from reports.collect import guesses_collect

ARMS = {"teacher": "Source 2", "student-before": "Source 3", "student-after": "Source 1"}


def _arm(audit: Audit, mode: str = "end", every: int = 5, end_items: int = 4) -> Audit:
    audit.probe_arms = [{"label": label, "condition": name} for name, label in ARMS.items()]
    audit.probe_mode, audit.probe_every, audit.probe_end_items = mode, every, end_items
    audit.full_clean()
    audit.save()
    return audit


def _label_all(assignment, who) -> None:
    for item in assignment.items.order_by("position"):
        label_save(
            annotator=who,
            assignment_public_id=assignment.public_id,
            position=item.position,
            verdict="correct",
        )


def _tells(audit: Audit) -> list[str]:
    return [
        t
        for c in Condition.objects.filter(audit=audit)
        for t in (c.name, c.blind_code, c.description)
        if t
    ]


# --- the mapping, checked on save ------------------------------------------------------------
@pytest.mark.parametrize(
    "label",
    ["teacher", "Teacher model", "the student-after arm"],
    ids=["name", "name-in-words", "hyphenated-name"],
)
def test_a_label_that_names_a_condition_is_refused(demo_audit, label):
    demo_audit.probe_arms = [{"label": label, "condition": "teacher"}]
    with pytest.raises(ValidationError, match="names a condition"):
        demo_audit.full_clean()


def test_a_label_with_a_blind_code_or_description_is_refused(demo_audit):
    condition = Condition.objects.get(audit=demo_audit, name="teacher")
    condition.description = "large reasoning model"
    condition.save()
    for label in (f"Style {condition.blind_code}", "A large reasoning model?"):
        demo_audit.probe_arms = [{"label": label, "condition": "teacher"}]
        with pytest.raises(ValidationError, match="names a condition"):
            demo_audit.full_clean()


@pytest.mark.parametrize(
    "arms, message",
    [
        ([{"label": "Source 1", "condition": "nobody"}], "no condition named 'nobody'"),
        (
            [
                {"label": "Source 1", "condition": "teacher"},
                {"label": "Source 2", "condition": "teacher"},
            ],
            "has two labels",
        ),
        (
            [
                {"label": "Source 1", "condition": "teacher"},
                {"label": "source 1", "condition": "student-after"},
            ],
            "used twice",
        ),
        ([{"label": "Source 1"}], "exactly 'label' and 'condition'"),
        ([{"label": "", "condition": "teacher"}], "1 to 60 characters"),
        ("Source 1", "A list"),
    ],
    ids=["unknown-condition", "condition-twice", "label-twice", "missing-key", "empty", "not-list"],
)
def test_bad_arms_are_refused_with_the_entry_named(demo_audit, arms, message):
    demo_audit.probe_arms = arms
    with pytest.raises(ValidationError, match=message):
        demo_audit.full_clean()


# --- 'end' mode: once per assignment --------------------------------------------------------
def test_end_mode_asks_nothing_on_items_and_only_after_the_last(
    demo_audit, assigned, clinician, client
):
    _arm(demo_audit, mode="end", end_items=4)
    mine, _ = assigned
    client.force_login(clinician)
    # label forms carry no probe
    body = client.get(f"/api/my/assignments/{mine.public_id}/items/1/").json()
    assert body["probe_options"] == []
    with pytest.raises(ApplicationError, match="blinding question"):
        label_save(
            annotator=clinician,
            assignment_public_id=mine.public_id,
            position=1,
            verdict="correct",
            probe_guess="Source 1",
        )
    # before the end: not available, and answers are refused
    probe = client.get(f"/api/my/assignments/{mine.public_id}/question/").json()
    assert probe["available"] is False and probe["items"] == []
    with pytest.raises(ConflictError, match="after the assignment's last item"):
        end_probe_save(annotator=clinician, assignment_public_id=mine.public_id, answers={1: "x"})
    listing = client.get("/api/my/assignments/").json()
    assert listing[0]["probe_pending"] is False
    # after the last item: four items, neutral options, nothing that names an arm
    _label_all(mine, clinician)
    listing = client.get("/api/my/assignments/").json()
    assert listing[0]["probe_pending"] is True
    response = client.get(f"/api/my/assignments/{mine.public_id}/question/")
    probe = response.json()
    assert probe["available"] is True and len(probe["items"]) == 4
    assert probe["options"] == ["Source 2", "Source 3", "Source 1", PROBE_NO_IDEA]
    page = client.get(f"/my/{mine.public_id}/question/")
    assert page.status_code == 200
    for text in (response.content.decode(), page.content.decode()):
        for tell in _tells(demo_audit):
            assert tell not in text, tell
    # the items are the assignment's own, reproducible, never a hidden repeat or gold item
    again = end_probe_get(annotator=clinician, assignment_public_id=mine.public_id)
    assert [i.position for i in again.items] == [i["position"] for i in probe["items"]]
    chosen = mine.items.filter(position__in=[i["position"] for i in probe["items"]])
    assert not chosen.filter(is_hidden_repeat=True).exists()
    assert not chosen.filter(batch_item__is_gold=True).exists()


def test_end_answers_are_validated_whole_and_replace_earlier_ones(
    demo_audit, assigned, clinician, other_clinician, client
):
    _arm(demo_audit, mode="end", end_items=3)
    mine, _ = assigned
    _label_all(mine, clinician)
    positions = [
        i.position
        for i in end_probe_get(annotator=clinician, assignment_public_id=mine.public_id).items
    ]
    url = f"/api/my/assignments/{mine.public_id}/question/"
    client.force_login(clinician)
    # one bad answer: nothing stored
    bad = [{"position": p, "guess": "Source 1"} for p in positions[:-1]]
    bad.append({"position": positions[-1], "guess": "teacher"})
    response = client.put(url, {"answers": bad}, content_type="application/json")
    assert response.status_code == 400 and response.json()["code"] == "probe_guess"
    assert ProbeAnswer.objects.count() == 0
    # a position the question does not ask about
    other = next(p for p in range(1, 25) if p not in positions)
    response = client.put(
        url,
        {"answers": [{"position": other, "guess": "Source 1"}]},
        content_type="application/json",
    )
    assert response.status_code == 400 and response.json()["code"] == "probe_position"
    # the same position twice
    twice = [{"position": positions[0], "guess": "Source 1"}] * 2
    response = client.put(url, {"answers": twice}, content_type="application/json")
    assert response.status_code == 400
    # good answers, then a change of mind: one row per item
    good = [{"position": p, "guess": "Source 1"} for p in positions]
    assert client.put(url, {"answers": good}, content_type="application/json").status_code == 200
    good[0]["guess"] = PROBE_NO_IDEA
    body = client.put(url, {"answers": good}, content_type="application/json").json()
    assert body["answered"] is True
    assert ProbeAnswer.objects.count() == len(positions)
    assert ProbeAnswer.objects.filter(guess=PROBE_NO_IDEA).count() == 1
    assert client.get("/api/my/assignments/").json()[0]["probe_pending"] is False
    # another annotator cannot read or answer it
    client.force_login(other_clinician)
    assert client.get(url).status_code == 404
    assert client.put(url, {"answers": good}, content_type="application/json").status_code == 404


def test_the_question_page_saves_a_plain_form(demo_audit, assigned, clinician, client):
    _arm(demo_audit, mode="end", end_items=2)
    mine, _ = assigned
    _label_all(mine, clinician)
    client.force_login(clinician)
    url = f"/my/{mine.public_id}/question/"
    probe = end_probe_get(annotator=clinician, assignment_public_id=mine.public_id)
    # one text left unanswered: a 400 page that says so, nothing stored
    first = probe.items[0].position
    response = client.post(url, {f"guess-{first}": "Source 3"})
    assert response.status_code == 400 and "every text" in response.content.decode()
    assert ProbeAnswer.objects.count() == 0
    answers = {f"guess-{i.position}": "Source 3" for i in probe.items}
    response = client.post(url, answers)
    assert response.status_code == 302
    assert ProbeAnswer.objects.filter(guess="Source 3").count() == 2


def test_no_question_page_when_the_audit_asks_none(demo_audit, assigned, clinician, client):
    mine, _ = assigned
    client.force_login(clinician)
    assert client.get(f"/my/{mine.public_id}/question/").status_code == 404
    response = client.get(f"/api/my/assignments/{mine.public_id}/question/")
    assert response.status_code == 404 and response.json()["code"] == "no_probe"


# --- 'every' mode ----------------------------------------------------------------------------
def test_every_mode_asks_on_items_n_2n_only(demo_audit, assigned, clinician, client):
    _arm(demo_audit, mode="every", every=5)
    mine, _ = assigned
    client.force_login(clinician)
    asked = [
        p
        for p in range(1, 25)
        if client.get(f"/api/my/assignments/{mine.public_id}/items/{p}/").json()["probe_options"]
    ]
    assert asked == [5, 10, 15, 20]
    label_save(
        annotator=clinician,
        assignment_public_id=mine.public_id,
        position=5,
        verdict="abstain",
        probe_guess="Source 2",
    )
    with pytest.raises(ApplicationError, match="blinding question"):
        label_save(
            annotator=clinician,
            assignment_public_id=mine.public_id,
            position=6,
            verdict="abstain",
            probe_guess="Source 2",
        )
    assert (
        Label.objects.get(assignment_item__assignment=mine, assignment_item__position=5).probe_guess
        == "Source 2"
    )


# --- the report reads guesses through the explicit mapping ----------------------------------
def test_report_guesses_follow_the_mapping_from_both_modes(
    demo_audit, assigned, clinician, other_clinician
):
    _arm(demo_audit, mode="end", end_items=5)
    mine, theirs = assigned
    for assignment, who in ((mine, clinician), (theirs, other_clinician)):
        _label_all(assignment, who)
        probe = end_probe_get(annotator=who, assignment_public_id=assignment.public_id)
        truth = {
            i.position: i.batch_item.step.trace.condition.name
            for i in assignment.items.select_related("batch_item__step__trace__condition")
        }
        # the first clinician guesses right every time, the second always says no idea
        answers = {
            item.position: ARMS[truth[item.position]] if who == clinician else PROBE_NO_IDEA
            for item in probe.items
        }
        end_probe_save(annotator=who, assignment_public_id=assignment.public_id, answers=answers)
    guesses = guesses_collect(demo_audit)
    assert len(guesses) == 10
    right = guesses[guesses["evaluator"] == clinician.username]
    assert (right["guess"] == right["condition"]).all() and right["guess"].notna().all()
    assert guesses.loc[guesses["evaluator"] == other_clinician.username, "guess"].isna().all()
    # while blinded, conditions are blind codes, not names
    codes = set(demo_audit.conditions.values_list("blind_code", flat=True))
    assert set(guesses["condition"]) <= codes


# --- older audits keep what they had -------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_migration_maps_old_options_to_conditions_and_keeps_every_item_mode():
    executor = MigrationExecutor(connection)
    old, new = [("annotations", "0005_leak_gate")], [("annotations", "0006_probe_arms")]
    executor.migrate(old)
    apps = executor.loader.project_state(old).apps
    OldAudit = apps.get_model("annotations", "Audit")
    OldCondition = apps.get_model("annotations", "Condition")
    audit = OldAudit.objects.create(
        slug="old", name="old", blinding_probe_options=["teacher model", "student", "mystery"]
    )
    OldCondition.objects.create(
        audit=audit, name="teacher", blind_code="K1", description="Teacher model"
    )
    OldCondition.objects.create(audit=audit, name="student", blind_code="K2")
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(new)
    migrated = (
        executor.loader.project_state(new)
        .apps.get_model("annotations", "Audit")
        .objects.get(slug="old")
    )
    assert migrated.probe_mode == "every" and migrated.probe_every == 1
    assert migrated.probe_arms == [
        {"label": "teacher model", "condition": "teacher"},
        {"label": "student", "condition": "student"},
        {"label": "mystery", "condition": "?"},
    ]
    # back to the latest state for the tests that follow
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert json.dumps(migrated.probe_arms)
