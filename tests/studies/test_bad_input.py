"""Bad input on a study link: a clear page with a 4xx, and nothing created or lost."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from annotations.models import Assignment
from studies.models import Participant, StudyLink
from studies.services.enrolment import participant_enrol

pytestmark = pytest.mark.django_db


def _nothing_made(django_user_model, users_before: int) -> None:
    assert Participant.objects.count() == 0
    assert Assignment.objects.count() == 0
    assert django_user_model.objects.count() == users_before


@pytest.mark.parametrize(
    ("query", "status", "text"),
    [
        ("", 400, "lacks your participant id"),
        ("?PROLIFIC_PID=" + "a" * 65, 400, "too long"),
        ("?PROLIFIC_PID=%3Cscript%3E", 400, "characters an id never has"),
        ("?PROLIFIC_PID=a%20b", 400, "characters an id never has"),
        ("?PROLIFIC_PID=a%00b", 400, "characters an id never has"),
        ("?PROLIFIC_PID=../../etc", 400, "characters an id never has"),
        ("?PROLIFIC_PID=%3DSUM(A1)", 400, "characters an id never has"),
    ],
    ids=["missing", "too-long", "markup", "space", "nul", "path", "formula"],
)
def test_a_bad_platform_id_is_a_clear_page(
    client, study_link, django_user_model, query, status, text
):
    users = django_user_model.objects.count()
    page = client.get(f"/s/{study_link.token}/{query}")
    assert page.status_code == status
    assert text in page.content.decode()
    # and the same id posted to consent directly is refused the same way
    raw = query.partition("=")[2]
    posted = client.post(
        f"/s/{study_link.token}/consent/", {"platform_id": raw, "decision": "accept"}
    )
    assert posted.status_code == 400
    _nothing_made(django_user_model, users)


@pytest.mark.parametrize(
    "token",
    ["x" * 22, "short", "a" * 200, "%00" * 8, "' OR 1=1 --xxxxxxxxxxxxx"],
    ids=["unknown", "short", "long", "nul", "sql"],
)
def test_a_tampered_token_is_not_found(client, study_link, django_user_model, token):
    users = django_user_model.objects.count()
    for url in (f"/s/{token}/?PROLIFIC_PID=abc", f"/s/{token}/go/", f"/s/{token}/items/1/"):
        page = client.get(url)
        assert page.status_code == 404, url
        assert (
            "not valid" in page.content.decode() or "Open the study link" in page.content.decode()
        )
    assert (
        client.post(
            f"/s/{token}/consent/", {"platform_id": "abc", "decision": "accept"}
        ).status_code
        == 404
    )
    # a token one character off the real one is as unknown as any other
    near = study_link.token[:-1] + ("A" if study_link.token[-1] != "A" else "B")
    assert client.get(f"/s/{near}/?PROLIFIC_PID=abc").status_code == 404
    _nothing_made(django_user_model, users)


@pytest.mark.parametrize(
    ("change", "text"),
    [
        ({"closed_at": timezone.now()}, "closed"),
        ({"closes_at": timezone.now() - timedelta(minutes=1)}, "expired"),
        ({"opens_at": timezone.now() + timedelta(days=2)}, "opens on"),
        ({"capacity": 0}, "full"),
    ],
    ids=["closed", "expired", "not-yet-open", "full"],
)
def test_a_link_that_takes_nobody_now_says_why(client, study_link, django_user_model, change, text):
    StudyLink.objects.filter(pk=study_link.pk).update(**change)
    users = django_user_model.objects.count()
    page = client.get(f"/s/{study_link.token}/?PROLIFIC_PID=late1")
    assert page.status_code == 410 and text in page.content.decode()
    posted = client.post(
        f"/s/{study_link.token}/consent/", {"platform_id": "late1", "decision": "accept"}
    )
    assert posted.status_code == 410 and text in posted.content.decode()
    _nothing_made(django_user_model, users)


def test_a_full_link_still_lets_its_participants_back_in(client, study_link):
    # given a link whose eight places are taken
    for i in range(8):
        participant_enrol(link=study_link, platform_id=f"f{i}")
    # when a ninth person arrives, and one of the eight comes back
    ninth = client.get(f"/s/{study_link.token}/?PROLIFIC_PID=f9")
    back = client.get(f"/s/{study_link.token}/?PROLIFIC_PID=f3", follow=True)
    # then the ninth is told it is full, the returning one resumes
    assert ninth.status_code == 410 and "full" in ninth.content.decode()
    assert back.status_code == 200 and back.request["PATH_INFO"].endswith("/instructions/")
    assert Participant.objects.count() == 8


def test_a_missing_answer_keeps_the_item_and_says_what_is_missing(client, study_link):
    client.get(f"/s/{study_link.token}/?PROLIFIC_PID=partial")
    client.post(f"/s/{study_link.token}/consent/", {"platform_id": "partial", "decision": "accept"})
    client.post(f"/s/{study_link.token}/instructions/")
    practice = client.post(f"/s/{study_link.token}/practice/1/", {"likert-interpretability": "9"})
    assert practice.status_code == 400
    client.post(
        f"/s/{study_link.token}/practice/1/",
        {"likert-interpretability": "5", "likert-cognitive_load": "1"},
    )
    page = client.post(f"/s/{study_link.token}/items/1/", {"likert-interpretability": "3"})
    assert page.status_code == 400 and "How much effort" in page.content.decode()
    assert Participant.objects.get().assignment.ratings.count() == 0


def test_consent_without_a_decision_is_refused(client, study_link):
    page = client.post(f"/s/{study_link.token}/consent/", {"platform_id": "undecided"})
    assert page.status_code == 400
    assert Participant.objects.count() == 0


def test_consent_posted_twice_enrols_once_and_lands_where_they_are(client, study_link):
    # given a participant who consented
    consent = {"platform_id": "double", "decision": "accept"}
    client.get(f"/s/{study_link.token}/?PROLIFIC_PID=double")
    first = client.post(f"/s/{study_link.token}/consent/", consent)
    assert first.status_code == 302
    # when the form is posted again (a double click, the back button, another tab, another
    # browser with the same platform id)
    again = client.post(f"/s/{study_link.token}/consent/", consent, follow=True)
    elsewhere = type(client)().post(f"/s/{study_link.token}/consent/", consent, follow=True)
    # then both land on the participant's current page; one participant, one assignment
    for response in (again, elsewhere):
        assert response.status_code == 200
        assert response.request["PATH_INFO"].endswith("/instructions/")
    assert Participant.objects.count() == 1 and Assignment.objects.count() == 1
    assert StudyLink.objects.get(pk=study_link.pk).enrolled_count == 1
    # and declining afterwards neither counts as a decline nor removes anything
    client.post(f"/s/{study_link.token}/consent/", {"platform_id": "double", "decision": "decline"})
    assert StudyLink.objects.get(pk=study_link.pk).declined_count == 0
    assert Participant.objects.count() == 1


def test_an_old_tab_changes_nothing_already_answered(client, study_link):
    from annotations.models import TraceRating
    from studies.models import StudyResponse

    token = study_link.token
    client.get(f"/s/{token}/?PROLIFIC_PID=tabs")
    client.post(f"/s/{token}/consent/", {"platform_id": "tabs", "decision": "accept"})
    client.post(f"/s/{token}/instructions/")
    # the practice answered in one tab, then again from the other: the first answer stands
    good = {"likert-interpretability": "5", "likert-cognitive_load": "1"}
    bad = {"likert-interpretability": "1", "likert-cognitive_load": "5"}
    assert client.post(f"/s/{token}/practice/1/", good).status_code == 200
    client.post(f"/s/{token}/practice/1/", bad)
    (practice,) = StudyResponse.objects.filter(item__kind="practice")
    assert practice.passed and practice.answers == {"interpretability": 5, "cognitive_load": 1}
    # item 1 answered in tab A; tab B, still showing item 1, posts other answers
    assert client.post(f"/s/{token}/items/1/", good).status_code == 302
    stale = client.post(f"/s/{token}/items/1/", bad)
    # then tab B is sent to the current item, and the one rating keeps tab A's answers
    assert stale.status_code == 302 and stale["Location"].endswith("/items/2/")
    (rating,) = TraceRating.objects.all()
    assert rating.answers == {"interpretability": 5, "cognitive_load": 1}
    # an item ahead of the current one is not answerable either
    ahead = client.post(f"/s/{token}/items/4/", good)
    assert ahead.status_code == 302 and TraceRating.objects.count() == 1


# --- concurrency, on the real database -------------------------------------------------------
def _in_threads(target, n: int) -> list:
    results, errors = [], []
    barrier = threading.Barrier(n)

    def run(i):
        try:
            barrier.wait()
            results.append(target(i))
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results + errors


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_tabs_posting_consent_at_once_enrol_once(study_link):
    # when six tabs post consent for the same platform id at the same moment
    outcomes = _in_threads(lambda i: participant_enrol(link=study_link, platform_id="twin"), 6)
    # then one participant, one assignment; every tab got that same participant
    assert all(not isinstance(o, Exception) for o in outcomes), outcomes
    assert {o[0].pk for o in outcomes} == {Participant.objects.get().pk}
    assert sum(created for _, created in outcomes) == 1
    assert Assignment.objects.count() == 1
    assert StudyLink.objects.get(pk=study_link.pk).enrolled_count == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_rush_on_the_last_places_never_overfills(study_link):
    # when twelve people enrol at once on a link of eight places
    outcomes = _in_threads(lambda i: participant_enrol(link=study_link, platform_id=f"r{i}"), 12)
    # then exactly eight got in, with indices 0..7, and four were told it is full
    enrolled = [o for o in outcomes if not isinstance(o, Exception)]
    refused = [o for o in outcomes if isinstance(o, Exception)]
    assert len(enrolled) == 8 and len(refused) == 4
    assert all(getattr(e, "code", "") == "full" for e in refused), refused
    assert sorted(Participant.objects.values_list("enrolment_index", flat=True)) == list(range(8))
    assert Assignment.objects.count() == 8
    assert StudyLink.objects.get(pk=study_link.pk).enrolled_count == 8
