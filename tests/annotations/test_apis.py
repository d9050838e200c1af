import pytest
from django.urls import reverse

from annotations.models import Label, LabelRevision


def _login(api_client, user):
    api_client.force_authenticate(user)
    return api_client


def _item_url(assignment, position, suffix=""):
    base = f"/api/my/assignments/{assignment.public_id}/items/{position}/"
    return base + suffix


def test_clinician_lists_own_assignments_only(api_client, assigned, clinician):
    # given
    mine, _ = assigned
    # when
    response = _login(api_client, clinician).get("/api/my/assignments/")
    # then
    assert response.status_code == 200
    assert [a["id"] for a in response.json()] == [mine.public_id]
    assert response.json()[0]["total"] == 24
    assert response.json()[0]["first_open_position"] == 1


def test_assignment_list_query_count_is_flat(
    api_client, assigned, clinician, django_assert_max_num_queries
):
    _login(api_client, clinician)
    with django_assert_max_num_queries(6):
        assert api_client.get("/api/my/assignments/").status_code == 200


@pytest.mark.parametrize("suffix", ["", "next/", "items/1/", "submit/"], ids=str)
def test_others_assignment_is_404(api_client, assigned, clinician, suffix):
    # given
    _, theirs = assigned
    url = f"/api/my/assignments/{theirs.public_id}/{suffix}"
    # when
    client = _login(api_client, clinician)
    response = client.post(url) if suffix == "submit/" else client.get(url)
    # then
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_others_item_cannot_be_labelled(api_client, assigned, clinician):
    _, theirs = assigned
    response = _login(api_client, clinician).put(
        _item_url(theirs, 1, "label/"), {"verdict": "correct"}, format="json"
    )
    assert response.status_code == 404
    assert not Label.objects.exists()


def test_next_item_then_save_label_then_next(api_client, assigned, clinician):
    # given
    mine, _ = assigned
    client = _login(api_client, clinician)
    first = client.get(f"/api/my/assignments/{mine.public_id}/next/").json()
    assert first["position"] == 1
    assert first["label"] is None
    # when
    saved = client.put(
        _item_url(mine, 1, "label/"),
        {"verdict": "error", "error_category": "factual error", "elapsed_ms": 1200},
        format="json",
    )
    # then
    assert saved.status_code == 200
    assert saved.json() == {"position": 1, "revision": 1, "elapsed_ms": 1200, "done": 1}
    again = client.get(_item_url(mine, 1)).json()
    assert again["label"]["verdict"] == "error"
    assert client.get(f"/api/my/assignments/{mine.public_id}/next/").json()["position"] == 2


def _save_next(client, mine, position, mode, verdict="correct"):
    response = client.put(
        _item_url(mine, position, f"label/?next={mode}"),
        {"verdict": verdict, "elapsed_ms": 900},
        format="json",
    )
    assert response.status_code == 200, response.content
    return response.json()


def test_save_and_next_answers_the_saved_label_and_the_next_open_item(
    api_client, assigned, clinician
):
    # given items 2 and 3 are already labelled
    mine, _ = assigned
    client = _login(api_client, clinician)
    for position in (2, 3):
        client.put(_item_url(mine, position, "label/"), {"verdict": "abstain"}, format="json")
    # when item 1 is saved with ?next=unlabelled
    data = _save_next(client, mine, 1, "unlabelled")
    # then the answer holds the save and the next open item (4), blinded like GET items/4/
    assert {k: data[k] for k in ("position", "revision", "elapsed_ms")} == {
        "position": 1,
        "revision": 1,
        "elapsed_ms": 900,
    }
    assert data["next"] == client.get(_item_url(mine, 4)).json()
    assert data["next"]["done"] == 3
    assert data["next"] == client.get(f"/api/my/assignments/{mine.public_id}/next/").json()


def test_save_and_next_wraps_to_the_first_open_item_then_answers_null(
    api_client, assigned, clinician
):
    mine, _ = assigned
    client = _login(api_client, clinician)
    # saving the last item while item 1 is open goes back to item 1
    assert _save_next(client, mine, 24, "unlabelled")["next"]["position"] == 1
    for position in range(1, 23):
        client.put(_item_url(mine, position, "label/"), {"verdict": "correct"}, format="json")
    assert _save_next(client, mine, 5, "unlabelled")["next"]["position"] == 23
    # the last open item saved: nothing left
    assert _save_next(client, mine, 23, "unlabelled")["next"] is None


def test_save_and_next_when_revising_goes_to_the_following_position(
    api_client, assigned, clinician
):
    mine, _ = assigned
    client = _login(api_client, clinician)
    for position in (1, 2, 3, 24):
        client.put(_item_url(mine, position, "label/"), {"verdict": "correct"}, format="json")
    # revising item 1: the following position (2, labelled), not the first open one (4)
    data = _save_next(client, mine, 1, "following", verdict="abstain")
    assert data["revision"] == 2
    assert data["next"]["position"] == 2
    assert data["next"]["label"]["verdict"] == "correct"
    # past the last position: the first open item
    assert _save_next(client, mine, 24, "following")["next"]["position"] == 4


def test_save_and_next_refuses_an_unknown_mode_and_others_items(api_client, assigned, clinician):
    mine, theirs = assigned
    client = _login(api_client, clinician)
    bad = client.put(_item_url(mine, 1, "label/?next=any"), {"verdict": "correct"}, format="json")
    assert bad.status_code == 400
    assert bad.json()["code"] == "next"
    response = client.put(
        _item_url(theirs, 1, "label/?next=unlabelled"), {"verdict": "correct"}, format="json"
    )
    assert response.status_code == 404
    assert not Label.objects.exists()


def test_save_and_next_query_count(api_client, assigned, clinician, django_assert_max_num_queries):
    mine, _ = assigned
    client = _login(api_client, clinician)
    # the save (as below) plus the next item and its preceding steps
    with django_assert_max_num_queries(11):
        _save_next(client, mine, 5, "unlabelled")


def test_put_label_twice_is_idempotent(api_client, assigned, clinician):
    mine, _ = assigned
    client = _login(api_client, clinician)
    for _ in range(3):
        response = client.put(_item_url(mine, 4, "label/"), {"verdict": "abstain"}, format="json")
        assert response.status_code == 200
    assert Label.objects.count() == 1
    assert LabelRevision.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"verdict": "perhaps"}, "verdict"),
        ({"verdict": "error", "error_category": "nope"}, "error_category"),
        ({}, "invalid"),
        ({"verdict": "correct", "elapsed_ms": -5}, "invalid"),
    ],
    ids=["bad-verdict", "bad-category", "empty", "negative-time"],
)
def test_bad_label_is_a_4xx_with_code(api_client, assigned, clinician, body, code):
    mine, _ = assigned
    response = _login(api_client, clinician).put(_item_url(mine, 1, "label/"), body, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert set(response.json()) == {"code", "message", "extra"}


def test_submit_incomplete_is_409_then_ok(api_client, assigned, clinician):
    mine, _ = assigned
    client = _login(api_client, clinician)
    response = client.post(f"/api/my/assignments/{mine.public_id}/submit/")
    assert response.status_code == 409
    assert response.json()["code"] == "incomplete"
    for position in range(1, 25):
        client.put(_item_url(mine, position, "label/"), {"verdict": "correct"}, format="json")
    response = client.post(f"/api/my/assignments/{mine.public_id}/submit/")
    assert response.status_code == 200
    assert response.json()["submitted"] is True
    assert client.get(f"/api/my/assignments/{mine.public_id}/next/").status_code == 204
    locked = client.put(_item_url(mine, 1, "label/"), {"verdict": "abstain"}, format="json")
    assert locked.status_code == 409


def test_item_query_count(api_client, assigned, clinician, django_assert_max_num_queries):
    mine, _ = assigned
    client = _login(api_client, clinician)
    # session, user, role, item (with unit, question, own label), counts, preceding steps
    with django_assert_max_num_queries(6):
        assert client.get(_item_url(mine, 5)).status_code == 200
    with django_assert_max_num_queries(6):
        assert client.get(f"/api/my/assignments/{mine.public_id}/next/").status_code == 200
    # session, user, role, locked item, label, insert label, insert revision (+ savepoints)
    with django_assert_max_num_queries(9):
        client.put(_item_url(mine, 5, "label/"), {"verdict": "correct"}, format="json")


def test_rating_api(api_client, rating_assigned, clinician):
    mine, _ = rating_assigned
    client = _login(api_client, clinician)
    item = client.get(f"/api/my/assignments/{mine.public_id}/next/").json()
    assert item["kind"] == "trace"
    assert item["trace"]
    assert [i["key"] for i in item["likert_items"]] == ["interpretability", "cognitive_load"]
    response = client.put(
        _item_url(mine, 1, "rating/"),
        {"answers": {"interpretability": 4, "cognitive_load": 2}, "elapsed_ms": 3000},
        format="json",
    )
    assert response.status_code == 200
    wrong = client.put(_item_url(mine, 1, "label/"), {"verdict": "correct"}, format="json")
    assert wrong.status_code == 400


# --- admin endpoints ---------------------------------------------------------------------
ADMIN_CALLS = [
    ("post", "/api/audits/demo-test/batches/preview/", {"size": 12, "segmentation": "given"}),
    ("post", "/api/audits/demo-test/batches/", {"size": 12, "segmentation": "given", "name": "x"}),
    ("get", "/api/audits/demo-test/progress/", None),
]


@pytest.mark.parametrize(("method", "url", "body"), ADMIN_CALLS, ids=lambda v: str(v)[:40])
def test_clinician_cannot_reach_admin_endpoints(
    api_client, demo_audit, clinician, method, url, body
):
    response = getattr(_login(api_client, clinician), method)(url, body, format="json")
    assert response.status_code == 403


def test_researcher_cannot_build_batches(api_client, demo_audit, researcher):
    response = _login(api_client, researcher).post(
        "/api/audits/demo-test/batches/",
        {"size": 12, "segmentation": "given", "name": "x"},
        format="json",
    )
    assert response.status_code == 403


def test_clinician_endpoints_refuse_other_roles(api_client, assigned, researcher):
    response = _login(api_client, researcher).get("/api/my/assignments/")
    assert response.status_code == 403


def test_admin_previews_builds_assigns_and_follows_progress(
    api_client, demo_audit, admin_user, clinician, other_clinician, django_assert_max_num_queries
):
    client = _login(api_client, admin_user)
    preview = client.post(
        "/api/audits/demo-test/batches/preview/",
        {"size": 30, "segmentation": "given", "stratify_by": ["answer_correct"]},
        format="json",
    )
    assert preview.status_code == 200, preview.json()
    assert preview.json()["sample_size"] == 30
    created = client.post(
        "/api/audits/demo-test/batches/",
        {"size": 30, "segmentation": "given", "name": "first", "overlap": 2},
        format="json",
    )
    assert created.status_code == 201
    batch_id = created.json()["id"]
    assigned = client.post(
        f"/api/batches/{batch_id}/assign/",
        {"annotators": [clinician.username, other_clinician.username]},
        format="json",
    )
    assert assigned.status_code == 201, assigned.json()
    assert [r["total"] for r in assigned.json()] == [30, 30]
    with django_assert_max_num_queries(5):
        progress = client.get(f"/api/batches/{batch_id}/progress/")
    assert progress.status_code == 200
    unknown = client.post(
        f"/api/batches/{batch_id}/assign/", {"annotators": ["nobody"]}, format="json"
    )
    assert unknown.status_code in (400, 409)
    audit_progress = client.get("/api/audits/demo-test/progress/").json()
    assert audit_progress["total"] == 60


def test_admin_reassigns_unfinished_work(api_client, assigned, admin_user, clinician, db):
    from annotations.roles import Role
    from annotations.services.users import user_create_or_update

    mine, _ = assigned
    _login(api_client, clinician).put(
        _item_url(mine, 1, "label/"), {"verdict": "correct"}, format="json"
    )
    third = user_create_or_update(username="clinician3", role=Role.CLINICIAN, password="x" * 12)
    response = _login(api_client, admin_user).post(
        f"/api/assignments/{mine.public_id}/reassign/",
        {"annotator": third.username},
        format="json",
    )
    assert response.status_code == 201, response.json()
    totals = sorted((r["annotator"], r["total"], r["done"]) for r in response.json())
    assert totals == [("clinician1", 1, 1), ("clinician3", 23, 0)]


def test_unknown_url_names_resolve():
    assert reverse("annotations-api:api-my-assignments") == "/api/my/assignments/"
