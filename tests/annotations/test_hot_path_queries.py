"""Statements per request in the label loop, through the whole middleware stack (session,
sign-in, role check, CSRF) as the labelling page calls it: first load (GET next/), "save &
next" (PUT label/?next=unlabelled), a revision, a trace rating. Upper bounds, so a regression
(an N+1, a second read of the item, a look-up per request in a middleware) fails here; each
also checks that the count does not grow with the labels already saved.

PostgreSQL counts the prepared statements of the loop too (logged like any other,
annotations.selectors.access._fetchone). Savepoints count: the test runs in a transaction, so
each atomic block is a SAVEPOINT and a RELEASE where a server says BEGIN and COMMIT.
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotations.models import Label, LabelRevision, TraceRating

pytestmark = pytest.mark.django_db

# user, item (with unit, question, own label and counts), its preceding steps
MAX_NEXT = 3
# user; savepoint, locked item, first label and revision (PostgreSQL: one statement; SQLite:
# a read and two inserts), release; the next item, its preceding steps
MAX_SAVE_AND_NEXT = {"postgresql": 7, "sqlite": 9}
# user; savepoint, locked item, (PostgreSQL: the first-label insert, which finds the label),
# label read, label update, revision insert, release; done count
MAX_REVISION = {"postgresql": 9, "sqlite": 8}
# user; savepoint, locked item, first rating and revision (PostgreSQL: one statement; SQLite:
# a read and two inserts), release; done count
MAX_RATING = {"postgresql": 6, "sqlite": 8}


def _bound(bound) -> int:
    return bound[connection.vendor] if isinstance(bound, dict) else bound


def _call(fn):
    """The response and the statements it took."""
    with CaptureQueriesContext(connection) as queries:
        response = fn()
    return response, [q["sql"] for q in queries.captured_queries]


def _assert_at_most(statements: list[str], bound) -> None:
    bound = _bound(bound)
    listing = "\n".join(f"  {s[:160]}" for s in statements)
    assert len(statements) <= bound, f"{len(statements)} statements > {bound}:\n{listing}"


def _signed_in(client, user):
    client.force_login(user)
    client.get("/api/my/assignments/")  # the role lands in the cache, as after any first page
    return client


def test_first_load_and_save_and_next_cost_a_fixed_number_of_statements(
    client, assigned, clinician
):
    mine, _ = assigned
    api = f"/api/my/assignments/{mine.public_id}"
    _signed_in(client, clinician)
    response, statements = _call(lambda: client.get(f"{api}/next/"))
    assert response.status_code == 200
    _assert_at_most(statements, MAX_NEXT)
    item = response.json()
    counts = []
    for _ in range(6):
        response, statements = _call(
            lambda item=item: client.put(
                f"{api}/items/{item['position']}/label/?next=unlabelled",
                {"verdict": "correct", "elapsed_ms": 3000},
                content_type="application/json",
            )
        )
        assert response.status_code == 200
        _assert_at_most(statements, MAX_SAVE_AND_NEXT)
        item = response.json()["next"]
        # Only a first step has no preceding steps to read: compare like with like.
        counts.append(len(statements) + (item["context"] == []))
    # The sixth save costs what the first did: nothing read per label already saved.
    assert len(set(counts)) == 1, counts
    assert Label.objects.filter(assignment=mine).count() == 6


def test_a_revision_costs_a_fixed_number_of_statements(client, assigned, clinician):
    mine, _ = assigned
    url = f"/api/my/assignments/{mine.public_id}/items/3/label/"
    _signed_in(client, clinician)
    client.put(url, {"verdict": "correct"}, content_type="application/json")
    response, statements = _call(
        lambda: client.put(url, {"verdict": "abstain"}, content_type="application/json")
    )
    assert response.status_code == 200 and response.json()["revision"] == 2
    _assert_at_most(statements, MAX_REVISION)
    assert LabelRevision.objects.filter(label__assignment=mine).count() == 2


def test_a_trace_rating_costs_a_fixed_number_of_statements(client, rating_assigned, clinician):
    mine, _ = rating_assigned
    api = f"/api/my/assignments/{mine.public_id}"
    _signed_in(client, clinician)
    counts = []
    for position in (1, 2, 3):
        response, statements = _call(
            lambda p=position: client.put(
                f"{api}/items/{p}/rating/",
                {"answers": {"interpretability": 4, "cognitive_load": 2}},
                content_type="application/json",
            )
        )
        assert response.status_code == 200, response.content
        assert response.json()["done"] == position
        _assert_at_most(statements, MAX_RATING)
        counts.append(len(statements))
    assert len(set(counts)) == 1, counts
    assert TraceRating.objects.filter(assignment=mine).count() == 3
