"""A visitor's way through a study link, over HTTP: consent, instructions, practice with
feedback, the items with an attention check, the questionnaire, the completion code; resuming;
and the counterbalancing of assignments made in enrolment order."""

import re
from collections import Counter

import pytest
from study_data import CHECK_TEXT, COMPLETION_CODE, CONSENT, TRACE_TYPES, make_batch

from annotations.models import Assignment, AssignmentItem, TraceRating
from studies.models import Participant, StudyLink, StudyResponse
from studies.services.enrolment import participant_enrol

pytestmark = pytest.mark.django_db

GOOD = {"interpretability": 4, "cognitive_load": 2}
CHECK_PASS = {"interpretability": 5, "cognitive_load": 1}


def _answers(answers: dict, **extra) -> dict:
    return {f"likert-{k}": v for k, v in answers.items()} | extra


def enrol(client, link, pid: str):
    entry = client.get(f"/s/{link.token}/?PROLIFIC_PID={pid}")
    assert entry.status_code == 200
    return client.post(
        f"/s/{link.token}/consent/", {"platform_id": pid, "decision": "accept"}, follow=True
    )


def walk_items(client, link, *, check_answers=CHECK_PASS):
    """Answer every item page until the questionnaire; returns the pages seen in order."""
    seen = []
    response = client.get(f"/s/{link.token}/go/", follow=True)
    while "/items/" in response.request["PATH_INFO"]:
        body = response.content.decode()
        is_check = CHECK_TEXT in body
        seen.append("check" if is_check else "item")
        response = client.post(
            response.request["PATH_INFO"],
            _answers(check_answers if is_check else GOOD, shown_at="0"),
            follow=True,
        )
        assert response.status_code == 200
    return seen, response


def test_a_participant_goes_through_the_whole_study(client, study_link):
    # when a visitor opens the link from the platform
    page = client.get(f"/s/{study_link.token}/?PROLIFIC_PID=abc123")
    # then the consent text is shown, with the audit's annotator-facing title only
    body = page.content.decode()
    assert CONSENT in body and "Rating texts" in body
    assert "structured traces win" not in body
    # when they agree
    response = client.post(
        f"/s/{study_link.token}/consent/",
        {"platform_id": "abc123", "decision": "accept"},
        follow=True,
    )
    # then the instructions come next
    assert response.request["PATH_INFO"].endswith("/instructions/")
    response = client.post(response.request["PATH_INFO"], follow=True)
    # a practice item, with feedback after answering, not counted as a rating
    assert "/practice/1/" in response.request["PATH_INFO"]
    feedback = client.post(
        response.request["PATH_INFO"], _answers({"interpretability": 2, "cognitive_load": 3})
    )
    text = feedback.content.decode()
    assert "Not quite" in text and "expected 5, you chose 2" in text
    assert "very easy to follow" in text
    assert TraceRating.objects.count() == 0
    # the items: 16 traces and the attention check at position 5
    seen, response = walk_items(client, study_link)
    assert seen.index("check") == 4 and len(seen) == 17
    # the questionnaire, then the completion code
    assert response.request["PATH_INFO"].endswith("/questionnaire/")
    done = client.post(
        response.request["PATH_INFO"], {"q-age_band": "30+", "q-remarks": "fine"}, follow=True
    )
    assert COMPLETION_CODE in done.content.decode()
    participant = Participant.objects.get()
    assert participant.completed_at is not None and participant.excluded_at is None
    assert participant.questionnaire_answers == {"age_band": "30+", "remarks": "fine"}
    assert participant.assignment.submitted_at is not None
    assert TraceRating.objects.filter(assignment=participant.assignment).count() == 16
    assert StudyResponse.objects.filter(participant=participant).count() == 2
    # and reopening the link afterwards shows the code again, nothing new is made
    again = client.get(f"/s/{study_link.token}/?PROLIFIC_PID=abc123", follow=True)
    assert COMPLETION_CODE in again.content.decode()
    assert Participant.objects.count() == Assignment.objects.count() == 1


def test_reopening_the_link_resumes_on_another_device_without_a_second_assignment(
    client, study_link, django_user_model
):
    # given a participant who rated three items, then closed the browser
    enrol(client, study_link, "resume1")
    client.post(f"/s/{study_link.token}/instructions/")
    client.post(f"/s/{study_link.token}/practice/1/", _answers(CHECK_PASS))
    for number in (1, 2, 3):
        client.post(f"/s/{study_link.token}/items/{number}/", _answers(GOOD))
    users = django_user_model.objects.count()
    # when they open the link again in a fresh browser
    fresh = type(client)()
    page = fresh.get(f"/s/{study_link.token}/?PROLIFIC_PID=resume1", follow=True)
    # then they land on item 4, and nothing was created
    assert page.request["PATH_INFO"] == f"/s/{study_link.token}/items/4/"
    assert Participant.objects.count() == Assignment.objects.count() == 1
    assert django_user_model.objects.count() == users
    # and consent posted again (an old tab) does not enrol twice either
    fresh.post(f"/s/{study_link.token}/consent/", {"platform_id": "resume1", "decision": "accept"})
    assert Participant.objects.count() == 1
    # and an item done already, posted from an old tab, changes no count
    fresh.post(f"/s/{study_link.token}/items/2/", _answers(GOOD))
    assert TraceRating.objects.count() == 3


def test_declining_stores_a_count_and_nothing_else(client, study_link, django_user_model):
    users = django_user_model.objects.count()
    client.get(f"/s/{study_link.token}/?PROLIFIC_PID=nothanks")
    page = client.post(
        f"/s/{study_link.token}/consent/", {"platform_id": "nothanks", "decision": "decline"}
    )
    assert page.status_code == 200 and "Nothing about you was kept" in page.content.decode()
    link = StudyLink.objects.get(pk=study_link.pk)
    assert (link.declined_count, link.opened_count, link.enrolled_count) == (1, 1, 0)
    assert Participant.objects.count() == 0
    assert django_user_model.objects.count() == users
    assert "nothanks" not in str(list(StudyLink.objects.values()))


def test_failing_attention_checks_flags_the_participant_and_keeps_the_data(client, study_link):
    enrol(client, study_link, "careless")
    client.post(f"/s/{study_link.token}/instructions/")
    client.post(f"/s/{study_link.token}/practice/1/", _answers(CHECK_PASS))
    walk_items(client, study_link, check_answers={"interpretability": 1, "cognitive_load": 1})
    participant = Participant.objects.get()
    assert participant.excluded_at is not None
    assert participant.excluded_reason == "failed 1 attention check (allowed 0)"
    assert TraceRating.objects.filter(assignment=participant.assignment).count() == 16


def test_a_participant_page_of_another_participant_is_closed(client, study_link):
    enrol(client, study_link, "first")
    other = type(client)()
    enrol(other, study_link, "second")
    mine = Participant.objects.get(platform_id="first")
    # the other participant's session only ever reaches its own assignment
    page = other.get(f"/s/{study_link.token}/items/1/")
    assert page.status_code in (200, 302)
    assert Participant.objects.get(platform_id="second").user_id != mine.user_id
    # another user's assignment is not reachable through the annotator API either
    api = other.get(f"/api/my/assignments/{mine.assignment.public_id}/")
    assert api.status_code == 404


def test_assignments_made_in_enrolment_order_fill_the_williams_square(study_link):
    # when eight participants enrol (two full rounds of the 4-row square)
    people = [participant_enrol(link=study_link, platform_id=f"p{i}")[0] for i in range(8)]
    # then each position holds each trace type exactly twice
    per_position: dict[int, Counter] = {}
    for p in people:
        items = AssignmentItem.objects.filter(assignment=p.assignment).select_related(
            "batch_item__trace"
        )
        assert items.count() == 16
        for item in items:
            per_position.setdefault(item.position, Counter())[item.batch_item.trace.trace_type] += 1
    assert len(per_position) == 16
    assert all(counts == Counter({t: 2 for t in TRACE_TYPES}) for counts in per_position.values())
    # and enrolment indices are 0..7 in order, the link full
    assert [p.enrolment_index for p in people] == list(range(8))
    assert StudyLink.objects.get(pk=study_link.pk).enrolled_count == 8


def test_items_per_participant_deals_equal_shares_of_each_type(study, study_audit, admin_user):

    from studies.services.setup import study_link_create

    batch = make_batch(study_audit, name="big", per_type=12)
    link = study_link_create(
        audit=study_audit, batch=batch, capacity=6, completion_code="X1", items_per_participant=8
    )
    seen = Counter()
    for i in range(6):
        p, _ = participant_enrol(link=link, platform_id=f"q{i}")
        types = Counter(
            AssignmentItem.objects.filter(assignment=p.assignment).values_list(
                "batch_item__trace__trace_type", flat=True
            )
        )
        assert types == Counter({t: 2 for t in TRACE_TYPES})
        seen.update(
            AssignmentItem.objects.filter(assignment=p.assignment).values_list(
                "batch_item_id", flat=True
            )
        )
    # 6 people × 2 per type over 12 of each type: every trace exactly once
    assert len(seen) == 48 and set(seen.values()) == {1}


def test_the_flow_pages_carry_no_inline_script_or_style(client, study_link):
    enrol(client, study_link, "csp1")
    pages = [client.get(f"/s/{study_link.token}/?PROLIFIC_PID=csp2")]
    pages.append(client.get(f"/s/{study_link.token}/instructions/"))
    client.post(f"/s/{study_link.token}/instructions/")
    pages.append(client.get(f"/s/{study_link.token}/practice/1/"))
    for page in pages:
        body = page.content.decode()
        assert "<script" not in body and "style=" not in body and "<style" not in body
        assert not re.search(r"\son[a-z]+=", body)
