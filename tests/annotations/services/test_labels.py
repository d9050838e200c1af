import pytest

from annotations.models import Label, LabelRevision
from annotations.services.labels import assignment_submit, label_save, rating_save
from auditapp.exceptions import ApplicationError, ConflictError, NotFoundError


def test_label_save_twice_is_idempotent(assigned, clinician):
    # given
    mine, _ = assigned
    kwargs = dict(
        annotator=clinician,
        assignment_public_id=mine.public_id,
        position=1,
        verdict="correct",
        elapsed_ms=1500,
    )
    # when
    first = label_save(**kwargs)
    second = label_save(**kwargs)
    # then
    assert first.pk == second.pk
    assert Label.objects.filter(assignment=mine).count() == 1
    assert LabelRevision.objects.filter(label=first).count() == 1


def test_label_revision_keeps_every_change_with_who(assigned, clinician):
    # given
    mine, _ = assigned
    base = dict(annotator=clinician, assignment_public_id=mine.public_id, position=2)
    label_save(**base, verdict="correct", elapsed_ms=1000)
    # when
    label = label_save(
        **base, verdict="error", error_category="factual error", comment=" wrong ", elapsed_ms=4000
    )
    # then
    assert label.revision == 2
    assert label.comment == "wrong"
    revisions = list(label.revisions.values_list("revision", "verdict", "changed_by"))
    assert revisions == [(1, "correct", clinician.pk), (2, "error", clinician.pk)]


def test_elapsed_time_only_grows(assigned, clinician):
    mine, _ = assigned
    base = dict(
        annotator=clinician, assignment_public_id=mine.public_id, position=3, verdict="abstain"
    )
    label_save(**base, elapsed_ms=5000)
    label = label_save(**base, elapsed_ms=2000)  # a second tab that counted less
    assert label.elapsed_ms == 5000
    label = label_save(**base, elapsed_ms=7000)
    assert label.elapsed_ms == 7000


def test_label_save_records_what_was_shown(assigned, clinician):
    mine, _ = assigned
    label = label_save(
        annotator=clinician, assignment_public_id=mine.public_id, position=1, verdict="correct"
    )
    assert label.shown["context_mode"] == "preceding"
    assert label.shown["final_answer_visible"] is False
    assert label.shown["gold_answer_visible"] is False
    assert label.shown["blinding_version"]


@pytest.mark.parametrize(
    ("verdict", "category", "code"),
    [
        ("maybe", "", "verdict"),
        ("error", "nonsense", "error_category"),
        ("error", "", "error_category"),
    ],
    ids=["unknown-verdict", "unknown-category", "missing-category"],
)
def test_label_save_validates(assigned, clinician, verdict, category, code):
    mine, _ = assigned
    with pytest.raises(ApplicationError) as exc:
        label_save(
            annotator=clinician,
            assignment_public_id=mine.public_id,
            position=1,
            verdict=verdict,
            error_category=category,
        )
    assert exc.value.code == code


def test_category_is_dropped_when_not_an_error(assigned, clinician):
    mine, _ = assigned
    label = label_save(
        annotator=clinician,
        assignment_public_id=mine.public_id,
        position=1,
        verdict="correct",
        error_category="factual error",
    )
    assert label.error_category == ""


def test_others_assignment_is_not_found(assigned, clinician):
    _, theirs = assigned
    with pytest.raises(NotFoundError):
        label_save(
            annotator=clinician,
            assignment_public_id=theirs.public_id,
            position=1,
            verdict="correct",
        )


def test_submit_needs_every_item_then_locks(assigned, clinician):
    # given
    mine, _ = assigned
    with pytest.raises(ConflictError) as exc:
        assignment_submit(annotator=clinician, assignment_public_id=mine.public_id)
    assert exc.value.code == "incomplete"
    for position in range(1, mine.items.count() + 1):
        label_save(
            annotator=clinician,
            assignment_public_id=mine.public_id,
            position=position,
            verdict="correct",
        )
    # when
    submitted = assignment_submit(annotator=clinician, assignment_public_id=mine.public_id)
    # then
    assert submitted.submitted_at is not None
    with pytest.raises(ConflictError) as exc:
        label_save(
            annotator=clinician,
            assignment_public_id=mine.public_id,
            position=1,
            verdict="error",
            error_category="other",
        )
    assert exc.value.code == "assignment_locked"


def test_rating_save_needs_every_item_in_range(rating_assigned, clinician):
    mine, _ = rating_assigned
    base = dict(annotator=clinician, assignment_public_id=mine.public_id, position=1)
    with pytest.raises(ApplicationError):
        rating_save(**base, answers={"interpretability": 3})
    with pytest.raises(ApplicationError):
        rating_save(**base, answers={"interpretability": 9, "cognitive_load": 2})
    rating = rating_save(**base, answers={"interpretability": 4, "cognitive_load": 2})
    again = rating_save(**base, answers={"interpretability": 4, "cognitive_load": 2})
    revised = rating_save(**base, answers={"interpretability": 5, "cognitive_load": 2})
    assert rating.pk == again.pk == revised.pk
    assert revised.revision == 2
    assert revised.revisions.count() == 2
