"""Skip, flag and reopen through the API (issue 13), and who may do each."""

import pytest

from annotations.models import AssignmentEvent, AssignmentItem, Label, LabelRevision


def _as(api_client, user):
    api_client.force_authenticate(user)
    return api_client


def _url(assignment, position, suffix):
    return f"/api/my/assignments/{assignment.public_id}/items/{position}/{suffix}"


def _label_all(client, assignment, positions):
    for position in positions:
        response = client.put(_url(assignment, position, "label/"), {"verdict": "correct"})
        assert response.status_code == 200, response.json()


def test_skipped_items_come_back_after_the_unseen_ones(api_client, assigned, clinician):
    mine, _ = assigned
    client = _as(api_client, clinician)
    # when item 1 is skipped
    response = client.post(_url(mine, 1, "skip/?next=unlabelled"))
    # then it stays unlabelled, and the next item is the first one not yet seen
    assert response.status_code == 200
    assert response.json()["skipped"] is True
    assert response.json()["next"]["position"] == 2
    assert response.json()["next"]["n_skipped"] == 1
    assert not Label.objects.filter(assignment=mine).exists()
    # skipping twice is harmless
    assert client.post(_url(mine, 1, "skip/")).json()["skipped"] is True
    assert AssignmentItem.objects.filter(assignment=mine, skipped_at__isnull=False).count() == 1
    # when every other item is labelled, "save & next" brings the skipped one back
    total = mine.items.count()
    _label_all(client, mine, range(2, total))
    response = client.put(
        _url(mine, total, "label/?next=unlabelled"), {"verdict": "abstain"}, format="json"
    )
    assert response.json()["next"]["position"] == 1
    assert response.json()["next"]["skipped"] is True
    # and skipping it again leaves nothing: next is null
    response = client.post(_url(mine, 1, "skip/?next=unlabelled"))
    assert response.json()["next"] is None
    # the overview counts it as skipped, and the assignment may be submitted without it
    overview = client.get(f"/api/my/assignments/{mine.public_id}/").json()
    assert (overview["labelled"], overview["skipped"], overview["flagged"]) == (total - 1, 1, 0)
    assert [e["position"] for e in overview["items"] if e["skipped"]] == [1]
    assert client.post(f"/api/my/assignments/{mine.public_id}/submit/").status_code == 200


def test_a_labelled_item_is_not_marked_skipped(api_client, assigned, clinician):
    mine, _ = assigned
    client = _as(api_client, clinician)
    _label_all(client, mine, [1])
    assert client.post(_url(mine, 1, "skip/")).json()["skipped"] is False
    assert AssignmentItem.objects.get(assignment=mine, position=1).skipped_at is None


def test_unseen_items_still_block_submission(api_client, assigned, clinician):
    mine, _ = assigned
    client = _as(api_client, clinician)
    client.post(_url(mine, 1, "skip/"))
    response = client.post(f"/api/my/assignments/{mine.public_id}/submit/")
    assert response.status_code == 409
    assert response.json()["code"] == "incomplete"
    assert 1 not in response.json()["extra"]["positions"]


def test_others_item_cannot_be_skipped(api_client, assigned, clinician):
    _, theirs = assigned
    response = _as(api_client, clinician).post(_url(theirs, 1, "skip/"))
    assert response.status_code == 404
    assert not AssignmentItem.objects.filter(skipped_at__isnull=False).exists()


def test_flag_with_a_note_is_a_revision_and_shows_in_the_item(api_client, assigned, clinician):
    mine, _ = assigned
    client = _as(api_client, clinician)
    body = {"verdict": "correct", "flagged": True, "flag_note": "  odd unit  "}
    # when flagged twice with the same state
    assert client.put(_url(mine, 1, "label/"), body, format="json").status_code == 200
    assert client.put(_url(mine, 1, "label/"), body, format="json").status_code == 200
    # then one label, one revision, the note trimmed
    label = Label.objects.get(assignment=mine)
    assert (label.flagged, label.flag_note, label.revision) == (True, "odd unit", 1)
    item = client.get(_url(mine, 1, "")).json()
    assert (item["label"]["flagged"], item["label"]["flag_note"]) == (True, "odd unit")
    # when unflagged: a new revision, and the note goes with the flag
    client.put(_url(mine, 1, "label/"), {"verdict": "correct", "flag_note": "x"}, format="json")
    label.refresh_from_db()
    assert (label.flagged, label.flag_note, label.revision) == (False, "", 2)
    assert list(LabelRevision.objects.filter(label=label).values_list("flagged", flat=True)) == [
        True,
        False,
    ]


def test_flag_note_too_long_is_a_400(api_client, assigned, clinician):
    mine, _ = assigned
    body = {"verdict": "correct", "flagged": True, "flag_note": "x" * 501}
    response = _as(api_client, clinician).put(_url(mine, 1, "label/"), body, format="json")
    assert response.status_code == 400
    assert not Label.objects.exists()


@pytest.fixture
def submitted(api_client, assigned, clinician):
    mine, _ = assigned
    client = _as(api_client, clinician)
    _label_all(client, mine, range(1, mine.items.count() + 1))
    assert client.post(f"/api/my/assignments/{mine.public_id}/submit/").status_code == 200
    api_client.force_authenticate(None)
    mine.refresh_from_db()
    return mine


@pytest.mark.parametrize("who", ["clinician", "researcher", "anonymous"])
def test_only_admins_reopen(api_client, submitted, clinician, researcher, who):
    user = {"clinician": clinician, "researcher": researcher, "anonymous": None}[who]
    response = _as(api_client, user).post(f"/api/assignments/{submitted.public_id}/reopen/")
    assert response.status_code in (401, 403)
    submitted.refresh_from_db()
    assert submitted.submitted_at is not None
    assert not AssignmentEvent.objects.exists()


def test_admin_reopens_a_submitted_assignment_and_it_is_logged(
    api_client, submitted, admin_user, clinician
):
    submitted_at = submitted.submitted_at
    # when
    response = _as(api_client, admin_user).post(
        f"/api/assignments/{submitted.public_id}/reopen/", {"note": "asked by mail"}
    )
    # then
    assert response.status_code == 200
    assert response.json()["kind"] == "reopened" and response.json()["by"] == "admin1"
    event = AssignmentEvent.objects.get()
    assert (event.by, event.submitted_at, event.note) == (admin_user, submitted_at, "asked by mail")
    submitted.refresh_from_db()
    assert submitted.submitted_at is None
    # and the clinician can change a label again
    change = _as(api_client, clinician).put(
        _url(submitted, 1, "label/"), {"verdict": "error", "error_category": "factual error"}
    )
    assert change.status_code == 200
    # reopening an open assignment is a 409, nothing logged
    again = _as(api_client, admin_user).post(f"/api/assignments/{submitted.public_id}/reopen/")
    assert again.status_code == 409 and again.json()["code"] == "not_submitted"
    assert AssignmentEvent.objects.count() == 1


def test_reopen_unknown_assignment_is_404(api_client, admin_user):
    response = _as(api_client, admin_user).post("/api/assignments/nosuchid/reopen/")
    assert response.status_code == 404
