"""The trace modes through the API (issue 13): the setting on audits and batches, the trace
read, the first-error PUT, step labels in trace mode, who may read and write, the long table."""

import pytest

from annotations.models import Audit, FirstErrorMark, Label, LabelRevision
from annotations.services.batches import batch_assign, batch_build


def _as(api_client, user):
    api_client.force_authenticate(user)
    return api_client


def _trace_url(assignment, number, suffix=""):
    return f"/api/my/assignments/{assignment.public_id}/traces/{number}/{suffix}"


@pytest.fixture
def first_error_pair(demo_audit, admin_user, clinician, other_clinician):
    batch = batch_build(
        audit=demo_audit,
        name="fe",
        size=3,
        segmentation="given",
        overlap=2,
        created_by=admin_user,
        mode="first_error",
    )
    return batch_assign(batch=batch, annotators=[clinician, other_clinician])


@pytest.fixture
def trace_assignment(demo_audit, admin_user, clinician):
    batch = batch_build(audit=demo_audit, name="tr", size=3, segmentation="given", mode="trace")
    (mine,) = batch_assign(batch=batch, annotators=[clinician])
    return mine


def test_the_mode_is_an_audit_setting_in_the_api(api_client, admin_user, demo_audit):
    client = _as(api_client, admin_user)
    # the default is the blinded one
    assert client.get("/api/audits/demo-test/").json()["labelling_mode"] == "steps"
    # it can be changed, and a bad value is a 400 naming the field
    response = client.patch("/api/audits/demo-test/", {"labelling_mode": "trace"}, format="json")
    assert response.status_code == 200, response.json()
    assert Audit.objects.get(pk=demo_audit.pk).labelling_mode == "trace"
    response = client.patch("/api/audits/demo-test/", {"labelling_mode": "all"}, format="json")
    assert response.status_code == 400
    assert "labelling_mode" in str(response.json())


def test_a_batch_takes_the_audit_mode_or_its_own(api_client, admin_user, demo_audit):
    client = _as(api_client, admin_user)
    demo_audit.labelling_mode = "trace"
    demo_audit.save()
    preview = client.post(
        "/api/audits/demo-test/batches/preview/",
        {"size": 3, "segmentation": "given"},
        format="json",
    ).json()
    assert (preview["unit"], preview["mode"]) == ("trace", "trace")
    created = client.post(
        "/api/audits/demo-test/batches/",
        {"size": 3, "segmentation": "given", "name": "fe", "mode": "first_error"},
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert created.json()["mode"] == "first_error"
    assert created.json()["design"]["unit"] == "trace"
    refused = client.post(
        "/api/audits/demo-test/batches/",
        {"size": 3, "segmentation": "given", "name": "g", "mode": "trace", "gold": 2},
        format="json",
    )
    assert refused.status_code == 400 and refused.json()["code"] == "gold"


def test_the_clinician_reads_a_blinded_trace(
    api_client, first_error_pair, clinician, django_assert_max_num_queries
):
    mine, _ = first_error_pair
    client = _as(api_client, clinician)
    with django_assert_max_num_queries(6):
        response = client.get(_trace_url(mine, 1))
    assert response.status_code == 200
    data = response.json()
    assert data["mode"] == "first_error" and data["number"] == 1 and data["n_traces"] == 3
    assert data["mark"] is None and all(s["label"] is None for s in data["steps"])
    # no step numbers unless the audit shows them, no ids or condition keys at all
    assert all(s["step_number"] is None for s in data["steps"])
    assert set(data) == {
        "assignment", "mode", "number", "n_traces", "traces_done", "question", "options",
        "steps", "final_answer", "error_categories", "guidelines", "locked", "mark",
    }  # fmt: skip
    assert set(data["steps"][0]) == {"position", "text", "step_number", "label"}
    assert client.get(_trace_url(mine, 4)).status_code == 404


def test_first_error_put_writes_the_step_labels(api_client, first_error_pair, clinician):
    mine, _ = first_error_pair
    client = _as(api_client, clinician)
    n = len(client.get(_trace_url(mine, 2)).json()["steps"])
    # when step 2 is marked
    response = client.put(
        _trace_url(mine, 2, "first-error/"), {"first_error": 2, "elapsed_ms": 500}, format="json"
    )
    assert response.status_code == 200, response.json()
    data = response.json()
    assert data["mark"]["first_error"] == 2 and data["revision"] == 1
    assert [s["label"]["verdict"] if s["label"] else None for s in data["steps"]] == [
        "correct",
        "error",
    ] + [None] * (n - 2)
    assert data["traces_done"] == 1
    # a retry of the same PUT changes nothing
    again = client.put(
        _trace_url(mine, 2, "first-error/"), {"first_error": 2, "elapsed_ms": 700}, format="json"
    )
    assert again.json()["revision"] == 1
    assert LabelRevision.objects.filter(label__assignment=mine).count() == 2
    # the overview counts the marked trace's steps as done, the unlabelled later ones too
    overview = client.get(f"/api/my/assignments/{mine.public_id}/").json()
    assert overview["labelled"] == n
    # "no error" marks every step correct
    none = client.put(_trace_url(mine, 2, "first-error/"), {"first_error": None}, format="json")
    assert [s["label"]["verdict"] for s in none.json()["steps"]] == ["correct"] * n
    assert none.json()["mark"]["first_error"] is None


def test_cannot_assess_labels_every_step_abstain_and_counts_as_done(
    api_client, first_error_pair, clinician, demo_audit
):
    from auditapp.agreement.first_error import first_error_indices
    from reports.collect import labels_collect

    mine, _ = first_error_pair
    client = _as(api_client, clinician)
    n = len(client.get(_trace_url(mine, 1)).json()["steps"])
    # given step 2 marked first, then the expert says they cannot assess the trace
    client.put(_trace_url(mine, 1, "first-error/"), {"first_error": 2}, format="json")
    response = client.put(
        _trace_url(mine, 1, "first-error/"),
        {"first_error": None, "cannot_assess": True},
        format="json",
    )
    # then every step abstains, the trace is done, and the revision history keeps both
    assert response.status_code == 200, response.json()
    data = response.json()
    assert data["mark"]["cannot_assess"] is True and data["mark"]["first_error"] is None
    assert [s["label"]["verdict"] for s in data["steps"]] == ["abstain"] * n
    assert data["traces_done"] == 1 and data["revision"] == 2
    mark = FirstErrorMark.objects.get(assignment=mine)
    assert mark.cannot_assess and not mark.no_error
    assert list(mark.revisions.values_list("cannot_assess", flat=True)) == [False, True]
    # and the report's reading: an undefined first error (abstain), neither "none" nor a step
    frame, _ = labels_collect(demo_audit)
    mine_rows = frame[(frame["evaluator"] == "clinician1") & (frame["mode"] == "first_error")]
    read = first_error_indices(
        mine_rows.rename(columns={"trace_id": "trace", "step_index": "position"}).assign(
            position=lambda f: f["position"] + 1
        ),
        n_steps={mine_rows["trace_id"].iloc[0]: n},
    )
    assert list(read["status"]) == ["undefined"] and list(read["reason"]) == ["abstain"]
    # a mark again replaces it
    again = client.put(_trace_url(mine, 1, "first-error/"), {"first_error": 1}, format="json")
    assert again.json()["mark"]["cannot_assess"] is False
    assert again.json()["steps"][0]["label"]["verdict"] == "error"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"first_error": 999}, 400),
        ({"first_error": "x"}, 400),
        ({}, 400),
        ({"first_error": 0}, 400),
        ({"first_error": 1, "cannot_assess": True}, 400),
        ({"first_error": None, "cannot_assess": "perhaps"}, 400),
    ],
    ids=["past-end", "text", "missing", "zero", "mark-and-cannot-assess", "not-a-boolean"],
)
def test_bad_marks_are_a_400_with_a_reason(api_client, first_error_pair, clinician, body, status):
    mine, _ = first_error_pair
    response = _as(api_client, clinician).put(
        _trace_url(mine, 1, "first-error/"), body, format="json"
    )
    assert response.status_code == status
    assert response.json()["message"]
    assert not FirstErrorMark.objects.exists()


def test_a_step_label_put_in_first_error_mode_is_a_409(api_client, first_error_pair, clinician):
    mine, _ = first_error_pair
    response = _as(api_client, clinician).put(
        f"/api/my/assignments/{mine.public_id}/items/1/label/", {"verdict": "correct"}
    )
    assert response.status_code == 409 and response.json()["code"] == "wrong_mode"


def test_trace_mode_saves_each_step_through_the_label_api(api_client, trace_assignment, clinician):
    client = _as(api_client, clinician)
    steps = client.get(_trace_url(trace_assignment, 1)).json()["steps"]
    for step in steps:
        response = client.put(
            f"/api/my/assignments/{trace_assignment.public_id}/items/{step['position']}/label/",
            {"verdict": "correct"},
        )
        assert response.status_code == 200
    data = client.get(_trace_url(trace_assignment, 1)).json()
    assert [s["label"]["verdict"] for s in data["steps"]] == ["correct"] * len(steps)
    assert data["traces_done"] == 1
    # a first-error PUT on a trace-mode assignment is refused
    response = client.put(
        _trace_url(trace_assignment, 1, "first-error/"), {"first_error": 1}, format="json"
    )
    assert response.status_code == 409


@pytest.mark.parametrize("who", ["other_clinician", "participant"])
def test_nobody_else_reads_or_writes_a_clinicians_trace(
    api_client, first_error_pair, clinician, who, request
):
    mine, _ = first_error_pair
    other = request.getfixturevalue(who)
    client = _as(api_client, other)
    # another annotator: the same 404 as a missing assignment
    assert client.get(_trace_url(mine, 1)).status_code in (403, 404)
    response = client.put(_trace_url(mine, 1, "first-error/"), {"first_error": 1}, format="json")
    assert response.status_code in (403, 404)
    response = client.put(
        f"/api/my/assignments/{mine.public_id}/items/1/label/", {"verdict": "correct"}
    )
    assert response.status_code in (403, 404)
    assert not FirstErrorMark.objects.exists() and not Label.objects.exists()


def test_an_anonymous_client_is_refused(api_client, first_error_pair):
    mine, _ = first_error_pair
    assert api_client.get(_trace_url(mine, 1)).status_code in (401, 403)


def test_the_long_table_carries_the_mode_and_reads_as_first_errors(
    api_client, first_error_pair, trace_assignment, clinician, other_clinician, demo_audit
):
    from reports.collect import labels_collect

    mine, theirs = first_error_pair
    _as(api_client, clinician).put(
        _trace_url(mine, 1, "first-error/"), {"first_error": 2}, format="json"
    )
    _as(api_client, other_clinician).put(
        _trace_url(theirs, 1, "first-error/"), {"first_error": None}, format="json"
    )
    step = _as(api_client, clinician).get(_trace_url(trace_assignment, 1)).json()["steps"][0]
    api_client.put(
        f"/api/my/assignments/{trace_assignment.public_id}/items/{step['position']}/label/",
        {"verdict": "abstain"},
    )
    frame, _ = labels_collect(demo_audit)
    experts = frame[frame["evaluator_kind"] == "expert"]
    assert set(experts["mode"]) == {"first_error", "trace"}
    assert frame.loc[frame["evaluator_kind"] != "expert", "mode"].isna().all()
    # ProcessBench's reading: first error = lowest step_index labelled error, per trace
    marked = experts[(experts["mode"] == "first_error") & (experts["evaluator"] == "clinician1")]
    assert marked["trace_id"].nunique() == 1
    errors = marked[marked["verdict"] == "error"]
    assert list(errors["step_index"]) == [marked["step_index"].min() + 1]
    assert sorted(marked["step_index"]) == sorted(marked["step_index"].min() + i for i in (0, 1))
    none = experts[(experts["mode"] == "first_error") & (experts["evaluator"] != "clinician1")]
    assert set(none["verdict"]) == {"correct"}


def test_the_trace_page_is_the_clinicians_own(client, first_error_pair, other_clinician, clinician):
    mine, _ = first_error_pair
    # another clinician: 404 for the page and for any step address of it
    client.force_login(other_clinician)
    assert client.get(f"/my/{mine.public_id}/trace/1/").status_code == 404
    assert client.get(f"/my/{mine.public_id}/1/").status_code == 404
    # the owner: the page, and a step's address sends them to its trace
    client.force_login(clinician)
    assert client.get(f"/my/{mine.public_id}/trace/1/").status_code == 200
    response = client.get(f"/my/{mine.public_id}/1/")
    assert response.status_code == 302 and response["Location"].endswith("/trace/1/")
