import pytest
from django.contrib.auth.models import AnonymousUser

from annotations.selectors.access import (
    assignment_get_for_annotator,
    assignment_item_get_for_annotator,
    assignment_item_get_for_display,
)
from annotations.services.labels import label_save
from auditapp.exceptions import NotFoundError


@pytest.mark.parametrize(
    "fn",
    [assignment_item_get_for_annotator, assignment_item_get_for_display],
    ids=["for-write", "for-display"],
)
def test_item_of_another_annotator_is_not_found(assigned, clinician, fn):
    _, theirs = assigned
    with pytest.raises(NotFoundError):
        fn(annotator=clinician, assignment_public_id=theirs.public_id, position=1)


@pytest.mark.parametrize(
    "fn",
    [assignment_item_get_for_annotator, assignment_item_get_for_display],
    ids=["for-write", "for-display"],
)
def test_missing_position_and_missing_assignment_are_not_found(assigned, clinician, fn):
    mine, _ = assigned
    with pytest.raises(NotFoundError):
        fn(annotator=clinician, assignment_public_id=mine.public_id, position=999)
    with pytest.raises(NotFoundError):
        fn(annotator=clinician, assignment_public_id="nosuchassignment", position=1)


def test_anonymous_is_not_found(assigned):
    mine, _ = assigned
    with pytest.raises(NotFoundError):
        assignment_get_for_annotator(annotator=AnonymousUser(), assignment_public_id=mine.public_id)
    with pytest.raises(NotFoundError):
        assignment_item_get_for_display(
            annotator=AnonymousUser(), assignment_public_id=mine.public_id, position=1
        )


def test_first_open_item_skips_done_ones_and_is_none_when_all_done(assigned, clinician):
    mine, _ = assigned
    for position in (1, 2, 4):
        label_save(
            annotator=clinician,
            assignment_public_id=mine.public_id,
            position=position,
            verdict="correct",
        )
    view = assignment_item_get_for_display(annotator=clinician, assignment_public_id=mine.public_id)
    assert view.position == 3
    assert (view.done, view.total) == (3, 24)
    for position in range(1, 25):
        label_save(
            annotator=clinician,
            assignment_public_id=mine.public_id,
            position=position,
            verdict="abstain",
        )
    assert (
        assignment_item_get_for_display(annotator=clinician, assignment_public_id=mine.public_id)
        is None
    )


def test_first_open_of_another_annotator_is_not_found(assigned, clinician):
    _, theirs = assigned
    with pytest.raises(NotFoundError):
        assignment_item_get_for_display(annotator=clinician, assignment_public_id=theirs.public_id)
