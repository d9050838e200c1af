"""Statements per request on a participant's hot path, through the whole middleware stack
(session, sign-in, CSRF): the link page, consent (enrolment: account and assignment made),
an item page and a rating. Upper bounds, so a regression (an N+1, a look-up per item, a
second read of the participant) fails here; each also checks that the count does not grow
with the batch or with the ratings already made.

PostgreSQL counts the hot statements that run as prepared statements too (they are logged
like any other, annotations.selectors.access._fetchone). Savepoints count (the test runs in a
transaction, so each atomic block is a SAVEPOINT and a RELEASE where a server says BEGIN and
COMMIT)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from study_data import COMPLETION_CODE, make_batch

from studies.models import Participant

pytestmark = pytest.mark.django_db

GOOD = {"likert-interpretability": "4", "likert-cognitive_load": "2", "shown_at": "0"}

# On SQLite the first rating is a read and two inserts, on PostgreSQL one statement.
MAX_LINK_PAGE = 3  # link, participant?, opened count
# link, participant?, user, group membership, the batch's traces, the slot, assignment, its
# items (one insert), participant, the session; four savepoint statements
MAX_ENROLMENT = 14
MAX_ITEM_PAGE = 5  # user, participant + assignment, done sets, item, its trace's steps
MAX_RATING = {"postgresql": 7, "sqlite": 9}


def _statements(fn) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        fn()
    return [q["sql"] for q in queries.captured_queries]


def _assert_at_most(statements: list[str], bound: int) -> None:
    listing = "\n".join(f"  {s[:160]}" for s in statements)
    assert len(statements) <= bound, f"{len(statements)} statements > {bound}:\n{listing}"


def _vendor_bound(bound) -> int:
    return bound[connection.vendor] if isinstance(bound, dict) else bound


def _enrolled(client, link, pid: str):
    client.get(f"/s/{link.token}/?PROLIFIC_PID={pid}")
    client.post(f"/s/{link.token}/consent/", {"platform_id": pid, "decision": "accept"})
    client.post(f"/s/{link.token}/instructions/")
    client.post(
        f"/s/{link.token}/practice/1/",
        {"likert-interpretability": "5", "likert-cognitive_load": "1"},
    )
    return Participant.objects.get(link=link, platform_id=pid)


def test_the_link_page_and_enrolment_cost_a_fixed_number_of_statements(
    client, study_link, study_audit
):
    # given someone enrolled already (the first enrolment also makes the participant group)
    _enrolled(type(client)(), study_link, "warm0")
    link_page = _statements(
        lambda: client.get(f"/s/{study_link.token}/?PROLIFIC_PID=first1").status_code == 200
    )
    _assert_at_most(link_page, MAX_LINK_PAGE)
    responses = []
    enrolment = _statements(
        lambda: responses.append(
            client.post(
                f"/s/{study_link.token}/consent/", {"platform_id": "first1", "decision": "accept"}
            )
        )
    )
    assert responses[0].status_code == 302
    _assert_at_most(enrolment, _vendor_bound(MAX_ENROLMENT))
    # No password is hashed for someone who comes back through the link only.
    participant = Participant.objects.select_related("user").get(platform_id="first1")
    assert not participant.user.has_usable_password()
    # A link on a batch twice the size enrols in as many statements (no statement per item).
    from studies.services.setup import study_link_create

    bigger = study_link_create(
        audit=study_audit,
        batch=make_batch(study_audit, name="s32", per_type=8),
        capacity=4,
        completion_code=COMPLETION_CODE,
    )
    _enrolled(type(client)(), bigger, "warm1")
    other = type(client)()
    other.get(f"/s/{bigger.token}/?PROLIFIC_PID=second2")
    bigger_enrolment = _statements(
        lambda: other.post(
            f"/s/{bigger.token}/consent/", {"platform_id": "second2", "decision": "accept"}
        )
    )
    assert Participant.objects.get(platform_id="second2").n_items == 32
    assert len(bigger_enrolment) == len(enrolment)


def test_an_item_page_and_a_rating_cost_a_fixed_number_of_statements(client, study_link):
    participant = _enrolled(client, study_link, "rater1")
    token = study_link.token
    counts = []
    for number in (1, 2, 3, 4):  # the attention check is at 5
        page = _statements(lambda n=number: client.get(f"/s/{token}/items/{n}/"))
        _assert_at_most(page, MAX_ITEM_PAGE)
        responses = []
        rating = _statements(
            lambda n=number, out=responses: out.append(client.post(f"/s/{token}/items/{n}/", GOOD))
        )
        assert responses[0].status_code == 302
        assert responses[0]["Location"] == f"/s/{token}/items/{number + 1}/"
        _assert_at_most(rating, _vendor_bound(MAX_RATING))
        counts.append((len(page), len(rating)))
    # The fourth rating costs what the first did: nothing read per rating already made.
    assert len(set(counts)) == 1, counts
    assert participant.assignment.ratings.count() == 4
