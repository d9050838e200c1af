"""The admin's side: create_study_link (--json), the link form, the study page and its CSV,
and every role against every new URL."""

import csv
import io
import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db.models import F
from django.utils import timezone
from study_data import STUDY_SETTINGS

from annotations.models import Audit
from annotations.services.labels import rating_save
from studies.models import Participant, Study, StudyLink
from studies.selectors.overview import excluded_assignment_ids, study_exclusions
from studies.services.enrolment import (
    instructions_done,
    participant_complete,
    participant_enrol,
    participant_progress,
    practice_answer,
    slot_answer,
)

pytestmark = pytest.mark.django_db


def _run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_create_study_link_prints_the_ids_and_the_link_works(
    tmp_path, study_audit, study_batch, client
):
    settings = tmp_path / "study.json"
    settings.write_text(json.dumps(STUDY_SETTINGS))
    printed = _run(
        "create_study_link",
        "--audit", study_audit.slug,
        "--batch", study_batch.name,
        "--capacity", "100",
        "--study", str(settings),
        "--completion-url", "https://app.prolific.com/submissions/complete?cc=ABC",
        "--closes", (timezone.now() + timedelta(days=7)).isoformat(),
        "--json",
    )  # fmt: skip
    result = json.loads(printed)
    link = StudyLink.objects.get(pk=result["study_link_id"])
    assert result["study_id"] == Study.objects.get(audit=study_audit).pk
    assert result["url"].endswith(f"/s/{link.token}/?PROLIFIC_PID={{{{%PROLIFIC_PID%}}}}")
    assert link.study.items.count() == 2 and link.capacity == 100
    assert client.get(f"/s/{link.token}/?PROLIFIC_PID=x1").status_code == 200


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({**STUDY_SETTINGS, "consnet": "typo"}, "consnet: unknown key"),
        ({**STUDY_SETTINGS, "consent": 3}, "consent: must be text"),
        (
            {**STUDY_SETTINGS, "practice": [{"text": "x", "answers": {"nope": 1}}]},
            "practice[1].answers",
        ),
        (
            {
                **STUDY_SETTINGS,
                "attention_checks": [
                    {"position": 0, "text": "x", "answers": {"interpretability": 5}}
                ],
            },
            "attention_checks[1].position",
        ),
        (
            {**STUDY_SETTINGS, "questionnaire": [{"key": "a", "text": "t", "kind": "essay"}]},
            "questionnaire[1].kind",
        ),
        ({**STUDY_SETTINGS, "max_attention_failures": -1}, "max_attention_failures"),
    ],
    ids=["unknown-key", "wrong-type", "likert-key", "position", "kind", "failures"],
)
def test_a_bad_study_file_names_the_field_and_creates_nothing(
    tmp_path, study_audit, study_batch, settings, message
):
    path = tmp_path / "study.json"
    path.write_text(json.dumps(settings))
    with pytest.raises(CommandError) as error:
        _run(
            "create_study_link", "--audit", study_audit.slug, "--batch", study_batch.name,
            "--capacity", "10", "--study", str(path), "--completion-code", "OK1",
        )  # fmt: skip
    assert message in str(error.value)
    assert Study.objects.count() == 0 and StudyLink.objects.count() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--completion-code", ""], "completion code or a completion URL"),
        (["--completion-code", "a b"], "completion_code"),
        (["--completion-code", "OK", "--platform-param", "bad param"], "platform_param"),
        (["--completion-code", "OK", "--items-per-participant", "6"], "multiple of the 4"),
        (["--completion-code", "OK", "--opens", "yesterday"], "--opens: not an ISO"),
    ],
    ids=["no-completion", "code", "param", "share", "date"],
)
def test_a_bad_link_option_is_one_line_and_no_link(study, study_audit, study_batch, args, message):
    with pytest.raises(CommandError) as error:
        _run(
            "create_study_link", "--audit", study_audit.slug, "--batch", study_batch.name,
            "--capacity", "10", *args,
        )  # fmt: skip
    assert message in str(error.value)
    assert StudyLink.objects.count() == 0


def test_a_step_label_audit_refuses_a_rating_study_file(demo_audit):
    """Likert-shaped practice (answers per Likert item) on a step audit: the field is named."""
    from studies.services.setup import study_configure

    with pytest.raises(Exception, match=r"practice\[1\]: unknown key 'answers'"):
        study_configure(audit=demo_audit, settings=STUDY_SETTINGS)


def _through(
    participant, *, fail_check: bool = False, finish: bool = True, upto: int | None = None
):
    """Drive a participant with the services (what the pages call)."""
    instructions_done(participant=participant)
    practice = participant.link.study.items.get(kind="practice")
    practice_answer(participant=participant, item=practice, answers={"interpretability": 5})
    while True:
        progress = participant_progress(participant=participant)
        if progress.stage != "items" or (upto is not None and progress.done >= upto):
            break
        slot = progress.slot
        answers = {"interpretability": 5, "cognitive_load": 1}
        if slot.check is not None and fail_check:
            answers = {"interpretability": 1, "cognitive_load": 5}
        slot_answer(participant=participant, slot=slot, answers=answers)
    if finish and participant_progress(participant=participant).stage == "questionnaire":
        from studies.services.enrolment import questionnaire_save

        questionnaire_save(participant=participant, answers={"age_band": "30+", "remarks": None})
        participant_complete(participant=participant)


def test_the_study_page_counts_times_dropout_and_exports_the_csv(client, admin_user, study_link):
    # given: two completed (one excluded), one stopped at item 3, one at the instructions,
    # one who declined
    a, _ = participant_enrol(link=study_link, platform_id="done1")
    b, _ = participant_enrol(link=study_link, platform_id="bad2")
    c, _ = participant_enrol(link=study_link, platform_id="mid3")
    participant_enrol(link=study_link, platform_id="idle4")
    _through(a)
    _through(b, fail_check=True)
    _through(c, finish=False, upto=2)
    StudyLink.objects.filter(pk=study_link.pk).update(declined_count=1, opened_count=5)
    Participant.objects.filter(pk=a.pk).update(
        consented_at=F("completed_at") - timedelta(minutes=12)
    )
    client.force_login(admin_user)
    # when
    page = client.get(f"/studies/{study_link.study.audit.slug}/")
    table = client.get(f"/studies/{study_link.study.audit.slug}/participants.csv")
    # then
    body = page.content.decode()
    assert page.status_code == 200
    for figure, value in [
        ("n-opened", 5), ("n-declined", 1), ("n-enrolled", 4), ("n-in-progress", 2),
        ("n-completed", 2), ("n-excluded", 1),
    ]:  # fmt: skip
        assert f'id="{figure}">{value}<' in body, figure
    assert "item 3" in body and "instructions" in body
    rows = {r["platform_id"]: r for r in csv.DictReader(io.StringIO(table.content.decode()))}
    assert set(rows) == {"done1", "bad2", "mid3", "idle4"}
    assert rows["done1"]["status"] == "completed" and float(rows["done1"]["minutes"]) == 12
    assert rows["bad2"]["excluded"] == "1" and rows["bad2"]["attention_checks"] == "5:fail"
    assert rows["done1"]["attention_checks"] == "5:pass"
    assert rows["mid3"]["stopped_at"] == "item 3" and rows["mid3"]["items_done"] == "2"
    # the report side: who is excluded, by assignment
    exclusions = study_exclusions(audit=study_link.study.audit)
    assert [e["platform_id"] for e in exclusions] == ["bad2"]
    assert excluded_assignment_ids(audit=study_link.study.audit) == {b.assignment_id}


def test_the_study_page_costs_a_fixed_number_of_queries(
    client, admin_user, study_link, django_assert_max_num_queries
):
    for i in range(6):
        p, _ = participant_enrol(link=study_link, platform_id=f"n{i}")
        rating_save(
            annotator=p.user,
            assignment_public_id=p.assignment.public_id,
            position=1,
            answers={"interpretability": 3, "cognitive_load": 3},
        )
    client.force_login(admin_user)
    client.get(f"/studies/{study_link.study.audit.slug}/")  # warm the role cache
    with django_assert_max_num_queries(12):
        assert client.get(f"/studies/{study_link.study.audit.slug}/").status_code == 200


def test_the_link_form_makes_a_link_and_the_close_button_closes_it(
    client, admin_user, study_audit, study_batch
):
    client.force_login(admin_user)
    url = f"/studies/{study_audit.slug}/links/new/"
    assert client.get(url).status_code == 200
    form = {
        "batch": study_batch.pk,
        "capacity": 20,
        "platform_param": "SONA_ID",
        "completion_code": "",
        "consent": "Consent text here.",
        "settings_json": json.dumps({"max_attention_failures": 1}),
    }
    refused = client.post(url, form)
    assert (
        refused.status_code == 400
        and "completion code or a completion URL" in refused.content.decode()
    )
    assert Study.objects.filter(audit=study_audit).count() == 0
    made = client.post(url, form | {"completion_code": "SONA1"})
    assert made.status_code == 302
    link = StudyLink.objects.get()
    assert (link.platform_param, link.study.max_attention_failures) == ("SONA_ID", 1)
    assert client.get(f"/s/{link.token}/?SONA_ID=s1").status_code == 200
    client.post(f"/study-links/{link.pk}/close/")
    assert client.get(f"/s/{link.token}/?SONA_ID=s2").status_code == 410


# --- every role against every new URL -------------------------------------------------------
ADMIN_URLS = [
    "/studies/study-test/",
    "/studies/study-test/participants.csv",
    "/studies/study-test/links/new/",
    "/people/new/",
]


@pytest.mark.parametrize(
    "role", ["anonymous", "clinician", "researcher", "participant", "enrolled"]
)
@pytest.mark.parametrize("url", ADMIN_URLS)
def test_admin_study_pages_are_for_admins_only(
    client, study_link, clinician, researcher, participant, admin_user, role, url
):
    # given a participant in the study and its data
    enrolled, _ = participant_enrol(link=study_link, platform_id="secret-pid-1")
    users = {"clinician": clinician, "researcher": researcher, "participant": participant,
             "enrolled": enrolled.user}  # fmt: skip
    if role in users:
        client.force_login(users[role])
    # when / then: redirected to the admin sign-in, no data
    response = client.get(url)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert client.post(url, {}).status_code == 302
    assert client.post(f"/study-links/{study_link.pk}/close/").status_code == 302
    assert StudyLink.objects.get(pk=study_link.pk).closed_at is None
    # and the admin does get the page
    client.force_login(admin_user)
    assert client.get(url).status_code == 200


@pytest.mark.parametrize("role", ["anonymous", "clinician", "researcher", "admin", "participant"])
def test_participant_pages_are_only_for_the_participant(
    client, study_link, clinician, researcher, participant, admin_user, role
):
    # given someone enrolled
    enrolled, _ = participant_enrol(link=study_link, platform_id="owner")
    users = {"clinician": clinician, "researcher": researcher, "participant": participant,
             "admin": admin_user}  # fmt: skip
    if role in users:
        client.force_login(users[role])
    token = study_link.token
    # when anyone else opens their pages without the platform id: not found, nothing shown
    pages = ("go", "instructions", "items/1", "practice/1", "questionnaire", "done")
    for url in [f"/s/{token}/{page}/" for page in pages]:
        response = client.get(url)
        assert response.status_code == 404, (role, url)
        assert "owner" not in response.content.decode()
    response = client.post(
        f"/s/{token}/items/1/", {"likert-interpretability": 5, "likert-cognitive_load": 1}
    )
    assert response.status_code == 404
    assert enrolled.assignment.ratings.count() == 0


def test_a_participant_account_works_like_a_clinician_on_its_own_assignments(
    client, participant, clinician, rating_batch_for_roles
):
    from annotations.services.batches import batch_assign

    (mine, theirs) = batch_assign(batch=rating_batch_for_roles, annotators=[participant, clinician])
    client.force_login(participant)
    assert client.get("/my/").status_code == 200
    assert client.get(f"/api/my/assignments/{mine.public_id}/").status_code == 200
    assert client.get(f"/api/my/assignments/{theirs.public_id}/").status_code == 404
    saved = client.put(
        f"/api/my/assignments/{mine.public_id}/items/1/rating/",
        {"answers": {"interpretability": 2, "cognitive_load": 3}},
        content_type="application/json",
    )
    assert saved.status_code == 200
    for url in ("/api/audits/", "/audits/study-test/batches/", "/reports/audits/study-test/"):
        assert client.get(url).status_code in (302, 403, 404), url


def test_link_enrolled_participants_are_not_offered_for_batch_assignment(
    client, admin_user, study_link, participant, clinician
):
    enrolled, _ = participant_enrol(link=study_link, platform_id="nolist")
    from annotations.views import _clinician_names

    names = _clinician_names()
    assert participant.username in names and clinician.username in names
    assert enrolled.user.username not in names


@pytest.fixture
def rating_batch_for_roles(study_audit):
    from study_data import make_batch

    return make_batch(study_audit, name="roles", per_type=1)


def test_an_audit_without_a_study_has_an_empty_study_page(client, admin_user, study_audit):
    client.force_login(admin_user)
    page = client.get(f"/studies/{study_audit.slug}/")
    assert page.status_code == 200 and "No study yet" in page.content.decode()
    assert client.get("/studies/no-such-audit/").status_code == 404
    assert Audit.objects.count() == 1


def test_the_admin_home_links_every_audit_to_its_study(client, admin_user, study_audit, demo_audit):
    client.force_login(admin_user)
    body = client.get("/").content.decode()
    assert f'href="/studies/{study_audit.slug}/"' in body
    assert f'href="/studies/{demo_audit.slug}/"' in body  # step-label audits have links too
