"""The trace modes (issue 13): batches of whole traces, trace-ordered assignments, the
first-error mark and the step labels it writes, the leak gate on whole traces."""

import pytest
from django.db.models import Count

from annotations.models import (
    Batch,
    BatchItem,
    FirstErrorMark,
    FirstErrorMarkRevision,
    Label,
    LabelRevision,
    Step,
)
from annotations.selectors.blinded import assignment_list_for_clinician, trace_get_blinded
from annotations.services.batches import batch_assign, batch_build, batch_preview
from annotations.services.first_error import first_error_mark, first_error_targets
from annotations.services.labels import assignment_submit, item_skip, label_save
from annotations.services.leak_gate import shown_texts
from auditapp.exceptions import ApplicationError, ConflictError


def _trace_batch(audit, admin_user, *, mode, size=6, name="t1", overlap=1):
    return batch_build(
        audit=audit,
        name=name,
        size=size,
        segmentation="given",
        overlap=overlap,
        created_by=admin_user,
        mode=mode,
    )


@pytest.mark.parametrize("mode", ["trace", "first_error"])
def test_a_trace_mode_batch_holds_every_step_of_whole_traces(demo_audit, admin_user, mode):
    # when a batch is built in a trace mode
    batch = _trace_batch(demo_audit, admin_user, mode=mode, size=6)
    # then it records the mode and the trace unit, and draws whole traces by condition
    assert batch.mode == mode
    assert batch.design["unit"] == "trace" and batch.design["mode"] == mode
    items = BatchItem.objects.filter(batch=batch).select_related("step")
    traces = {i.step.trace_id for i in items}
    assert len(traces) == 6
    for trace_id in traces:
        all_steps = Step.objects.filter(trace_id=trace_id, segmentation="given").count()
        assert items.filter(step__trace_id=trace_id).count() == all_steps
    # each step carries its trace's inclusion probability: one per trace, its stratum's
    strata = {s["key"]: s for s in batch.design["strata"]}
    for trace_id in traces:
        probabilities = set(
            items.filter(step__trace_id=trace_id).values_list("inclusion_probability", flat=True)
        )
        (stratum,) = set(items.filter(step__trace_id=trace_id).values_list("stratum", flat=True))
        assert probabilities == {strata[stratum]["inclusion_probability"]}
        assert strata[stratum]["inclusion_probability"] == pytest.approx(
            strata[stratum]["sample"] / strata[stratum]["population"]
        )
    # stratified by condition as before: equal allocation, 2 traces per arm of 3
    assert sorted(s["sample"] for s in batch.design["strata"]) == [2, 2, 2]


def test_the_audit_mode_is_the_default_and_a_batch_may_override_it(demo_audit, admin_user):
    # given an audit in first-error mode
    demo_audit.labelling_mode = "first_error"
    demo_audit.save()
    # then a batch built without a mode takes it, and one with a mode overrides it
    assert _trace_batch(demo_audit, admin_user, mode="", name="a").mode == "first_error"
    assert _trace_batch(demo_audit, admin_user, mode="steps", name="b", size=9).mode == "steps"
    assert Batch.objects.get(name="b").design["unit"] == "step"


@pytest.mark.parametrize(
    ("options", "code"),
    [
        ({"mode": "sideways"}, "mode"),
        ({"mode": "trace", "gold": 1}, "gold"),
        ({"mode": "trace", "stratify_by": ["context_depth"]}, "stratifier"),
        ({"mode": "trace", "design": "active", "uncertainty": "judge-runs:1"}, "design"),
    ],
    ids=["unknown-mode", "gold", "depth", "active"],
)
def test_trace_modes_refuse_what_they_cannot_do(demo_audit, options, code):
    with pytest.raises(ApplicationError) as caught:
        batch_preview(audit=demo_audit, size=3, segmentation="given", **options)
    assert caught.value.code == code


def test_a_trace_mode_batch_excludes_traces_already_batched(demo_audit, admin_user):
    first = _trace_batch(demo_audit, admin_user, mode="trace", size=6, name="x")
    second = _trace_batch(demo_audit, admin_user, mode="trace", size=6, name="y")
    taken = set(first.items.values_list("step__trace_id", flat=True))
    again = set(second.items.values_list("step__trace_id", flat=True))
    assert taken.isdisjoint(again)


def test_trace_assignments_keep_each_trace_in_order_and_shuffle_traces(
    demo_audit, admin_user, clinician, other_clinician
):
    # given a trace batch with overlap 2
    batch = _trace_batch(demo_audit, admin_user, mode="trace", size=9, overlap=2)
    # when it is assigned to two clinicians
    mine, theirs = batch_assign(batch=batch, annotators=[clinician, other_clinician])
    orders = []
    for assignment in (mine, theirs):
        rows = list(
            assignment.items.order_by("position").values_list(
                "position", "batch_item__step__trace_id", "batch_item__step__index"
            )
        )
        # then every step of the batch is there once, no hidden repeats
        assert len(rows) == batch.items.count()
        # each trace's steps are consecutive positions, in their order in the trace
        traces = []
        for _, trace_id, index in rows:
            if not traces or traces[-1][0] != trace_id:
                assert trace_id not in [t for t, _ in traces], "a trace split in two"
                traces.append((trace_id, []))
            traces[-1][1].append(index)
        for _, indexes in traces:
            assert indexes == sorted(indexes)
        orders.append([t for t, _ in traces])
    # and the two orders of the same traces are independent shuffles
    assert sorted(orders[0]) == sorted(orders[1])
    assert orders[0] != orders[1]


@pytest.fixture
def first_error_assignment(demo_audit, admin_user, clinician, other_clinician):
    batch = _trace_batch(demo_audit, admin_user, mode="first_error", size=3, overlap=2)
    mine, theirs = batch_assign(batch=batch, annotators=[clinician, other_clinician])
    return mine, theirs


def _verdicts(assignment, number, clinician):
    trace = trace_get_blinded(
        clinician=clinician, assignment_public_id=assignment.public_id, number=number
    )
    return [s.label.verdict if s.label else None for s in trace.steps]


def test_targets_of_a_mark():
    assert first_error_targets(4, 1) == ["error", None, None, None]
    assert first_error_targets(4, 4) == ["correct"] * 3 + ["error"]
    assert first_error_targets(2, None) == ["correct", "correct"]


def test_a_first_error_mark_reads_as_step_labels_and_re_marks_revise(
    first_error_assignment, clinician
):
    mine, _ = first_error_assignment
    trace = trace_get_blinded(clinician=clinician, assignment_public_id=mine.public_id, number=1)
    n = len(trace.steps)
    assert n >= 3
    # when the clinician marks step 3 as the first wrong one
    mark = first_error_mark(
        annotator=clinician,
        assignment_public_id=mine.public_id,
        trace_number=1,
        first_error=3,
        error_category=mine.batch.audit.error_categories[0],
        comment="dose",
        elapsed_ms=900,
    )
    # then steps 1-2 are correct, 3 is an error with the category, the rest unlabelled
    assert _verdicts(mine, 1, clinician) == ["correct", "correct", "error"] + [None] * (n - 3)
    error = Label.objects.get(assignment_item_id=mark.first_error_item_id)
    assert error.error_category == mine.batch.audit.error_categories[0]
    assert error.comment == "dose"
    assert error.shown["mode"] == "first_error" and error.shown["first_error_mark"] is True
    # and the mark says where: the marked step's index in the trace (0-based), revision 1
    marked_step = Step.objects.get(pk=error.step_id)
    assert mark.first_error_index == marked_step.index
    assert (mark.revision, mark.n_steps, mark.no_error) == (1, n, False)
    # when the same mark is sent again (a retried PUT) nothing new is written
    first_error_mark(
        annotator=clinician,
        assignment_public_id=mine.public_id,
        trace_number=1,
        first_error=3,
        error_category=mine.batch.audit.error_categories[0],
        comment="dose",
        elapsed_ms=1200,
    )
    assert FirstErrorMarkRevision.objects.filter(mark=mark).count() == 1
    assert LabelRevision.objects.filter(label__assignment=mine).count() == 3
    mark.refresh_from_db()
    assert mark.elapsed_ms == 1200
    # when it is re-marked earlier (step 2): step 2 becomes the error, step 3 unlabelled
    mark = first_error_mark(
        annotator=clinician, assignment_public_id=mine.public_id, trace_number=1, first_error=2
    )
    assert _verdicts(mine, 1, clinician) == ["correct", "error"] + [None] * (n - 2)
    assert mark.revision == 2
    # and then "no error": every step correct, the mark kept with its history
    mark = first_error_mark(
        annotator=clinician, assignment_public_id=mine.public_id, trace_number=1, first_error=None
    )
    assert _verdicts(mine, 1, clinician) == ["correct"] * n
    assert mark.no_error and mark.first_error_index is None and mark.first_error_item_id is None
    history = list(
        FirstErrorMarkRevision.objects.filter(mark=mark).values_list("first_error_index", flat=True)
    )
    assert history == [marked_step.index, marked_step.index - 1, None]
    # the step that was an error and became correct kept its label's revisions
    step2 = Label.objects.get(assignment=mine, step__index=marked_step.index - 1)
    assert list(step2.revisions.values_list("verdict", flat=True)) == [
        "correct",
        "error",
        "correct",
    ]
    assert FirstErrorMark.objects.count() == 1


@pytest.mark.parametrize("bad", [0, 99, True, "2"], ids=["zero", "past-end", "bool", "text"])
def test_a_mark_outside_the_trace_is_refused(first_error_assignment, clinician, bad):
    mine, _ = first_error_assignment
    with pytest.raises(ApplicationError) as caught:
        first_error_mark(
            annotator=clinician,
            assignment_public_id=mine.public_id,
            trace_number=1,
            first_error=bad,
        )
    assert caught.value.code == "first_error"
    assert not Label.objects.exists()


def test_first_error_mode_refuses_single_step_labels_and_skips(first_error_assignment, clinician):
    mine, _ = first_error_assignment
    with pytest.raises(ConflictError) as caught:
        label_save(
            annotator=clinician, assignment_public_id=mine.public_id, position=1, verdict="error"
        )
    assert caught.value.code == "wrong_mode"
    with pytest.raises(ConflictError):
        item_skip(annotator=clinician, assignment_public_id=mine.public_id, position=1)


def test_a_mark_on_another_clinicians_trace_is_not_found(first_error_assignment, clinician):
    from auditapp.exceptions import NotFoundError

    _, theirs = first_error_assignment
    with pytest.raises(NotFoundError):
        first_error_mark(
            annotator=clinician,
            assignment_public_id=theirs.public_id,
            trace_number=1,
            first_error=1,
        )
    assert not FirstErrorMark.objects.exists()


def test_marked_traces_are_done_and_the_assignment_submits(first_error_assignment, clinician):
    mine, _ = first_error_assignment
    traces = mine.items.values("batch_item__step__trace_id").annotate(n=Count("pk")).count()
    for number in range(1, traces + 1):
        with pytest.raises(ConflictError):
            assignment_submit(annotator=clinician, assignment_public_id=mine.public_id)
        first_error_mark(
            annotator=clinician,
            assignment_public_id=mine.public_id,
            trace_number=number,
            first_error=1,
        )
    # every trace marked at step 1: one label per trace, the other steps unlabelled yet done
    assert Label.objects.filter(assignment=mine).count() == traces
    (summary,) = [s for s in assignment_list_for_clinician(clinician=clinician)]
    assert summary.done == summary.total and summary.mode == "first_error"
    assignment_submit(annotator=clinician, assignment_public_id=mine.public_id)
    mine.refresh_from_db()
    assert mine.is_locked
    with pytest.raises(ConflictError):
        first_error_mark(
            annotator=clinician,
            assignment_public_id=mine.public_id,
            trace_number=1,
            first_error=None,
        )


def test_trace_mode_labels_each_step_through_the_label_model(demo_audit, admin_user, clinician):
    batch = _trace_batch(demo_audit, admin_user, mode="trace", size=3)
    (mine,) = batch_assign(batch=batch, annotators=[clinician])
    trace = trace_get_blinded(clinician=clinician, assignment_public_id=mine.public_id, number=2)
    for step in trace.steps:
        label = label_save(
            annotator=clinician,
            assignment_public_id=mine.public_id,
            position=step.position,
            verdict="correct",
        )
        assert label.shown["mode"] == "trace"
        assert label.shown["context_mode"] == "whole_trace"
    again = trace_get_blinded(
        clinician=clinician, assignment_public_id=mine.public_id, position=trace.steps[0].position
    )
    assert again.number == 2 and again.traces_done == 1
    assert all(s.label.verdict == "correct" for s in again.steps)
    with pytest.raises(ConflictError):
        first_error_mark(
            annotator=clinician, assignment_public_id=mine.public_id, trace_number=1, first_error=1
        )


def test_the_leak_gate_reads_whole_traces_in_trace_modes(demo_audit, admin_user):
    demo_audit.show_final_answer = True
    demo_audit.save()
    batch = _trace_batch(demo_audit, admin_user, mode="first_error", size=6)
    shown = shown_texts(batch=batch)
    # one text per trace: all its blinded steps in order, then the final answer
    assert len(shown) == 6
    for text, code, question in shown:
        trace = Step.objects.filter(
            trace__question_id=question, trace__condition__blind_code=code, segmentation="given"
        )
        candidates = {}
        for step in trace.order_by("trace_id", "index"):
            candidates.setdefault(step.trace_id, []).append(step.blinded_text)
        finals = {s.trace_id: s.trace.blinded_final_answer for s in trace.select_related("trace")}
        assert text in {"\n".join([*parts, finals[t]]) for t, parts in candidates.items()}


def test_reassigning_a_trace_assignment_moves_whole_untouched_traces(
    demo_audit, admin_user, clinician, other_clinician
):
    from annotations.services.batches import assignment_reassign

    # given a first-error assignment of three traces, the first of them marked
    batch = _trace_batch(demo_audit, admin_user, mode="first_error", size=3)
    (mine,) = batch_assign(batch=batch, annotators=[clinician])
    first_error_mark(
        annotator=clinician, assignment_public_id=mine.public_id, trace_number=1, first_error=1
    )
    marked = trace_get_blinded(clinician=clinician, assignment_public_id=mine.public_id, number=1)
    # when the unfinished work moves to another clinician
    new = assignment_reassign(assignment=mine, to_annotator=other_clinician)
    # then the marked trace stays whole with its annotator (its later steps too), the two
    # untouched traces move whole, in order
    assert mine.items.count() == len(marked.steps)
    moved = list(
        new.items.order_by("position").values_list(
            "batch_item__step__trace_id", "batch_item__step__index"
        )
    )
    traces = list(dict.fromkeys(t for t, _ in moved))
    assert len(traces) == 2
    for trace_id in traces:
        indexes = [i for t, i in moved if t == trace_id]
        assert indexes == sorted(indexes)
        assert len(indexes) == Step.objects.filter(trace_id=trace_id, segmentation="given").count()


def test_admin_progress_counts_a_marked_trace_as_done(first_error_assignment, clinician):
    from annotations.selectors.progress import assignment_progress_list

    mine, _ = first_error_assignment
    trace = trace_get_blinded(clinician=clinician, assignment_public_id=mine.public_id, number=1)
    first_error_mark(
        annotator=clinician,
        assignment_public_id=mine.public_id,
        trace_number=1,
        first_error=1,
        elapsed_ms=4000,
    )
    (row,) = [
        r for r in assignment_progress_list(batch=mine.batch) if r.public_id == mine.public_id
    ]
    # one label was written (the error), the trace's other steps are done all the same
    assert row.done == len(trace.steps)
    assert row.elapsed_ms == 4000
