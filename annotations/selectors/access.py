"""The one access check for an annotator's work: an assignment (item) of *this* user, or 404.

Written one condition per line so every branch is visibly tested
(tests/annotations/selectors/test_access.py). Another user's assignment and a missing one
answer the same, so a guessed public id tells nothing.
"""

from django.contrib.auth.models import AbstractBaseUser

from annotations.models import Assignment, AssignmentItem
from auditapp.exceptions import NotFoundError

NOT_FOUND = "No such assignment."


def assignment_get_for_annotator(
    *, annotator: AbstractBaseUser, assignment_public_id: str, for_update: bool = False
) -> Assignment:
    if not annotator.is_authenticated:
        raise NotFoundError(NOT_FOUND)
    queryset = Assignment.objects.select_related("batch__audit")
    if for_update:
        queryset = queryset.select_for_update(of=("self",))
    assignment = queryset.filter(public_id=assignment_public_id, annotator=annotator).first()
    if assignment is None:
        raise NotFoundError(NOT_FOUND)
    return assignment


def assignment_item_get_for_annotator(
    *,
    annotator: AbstractBaseUser,
    assignment_public_id: str,
    position: int,
    for_update: bool = False,
) -> AssignmentItem:
    """The item at ``position`` with its assignment, batch, audit and unit in one query.

    ``for_update`` locks the item and its assignment (PostgreSQL): saves of one assignment
    are serialised against each other and against its submission.
    """
    if not annotator.is_authenticated:
        raise NotFoundError(NOT_FOUND)
    queryset = AssignmentItem.objects.select_related(
        "assignment__batch__audit", "batch_item__step", "batch_item__trace"
    ).defer("batch_item__trace__text", "batch_item__trace__metadata", "batch_item__step__text")
    if for_update:
        queryset = queryset.select_for_update(of=("self", "assignment"))
    item = queryset.filter(
        assignment__public_id=assignment_public_id,
        assignment__annotator=annotator,
        position=position,
    ).first()
    if item is None:
        raise NotFoundError("No such item.")
    return item


_BIG_COLUMNS = (
    "batch_item__step__text",
    "batch_item__step__trace__text",
    "batch_item__step__trace__metadata",
    "batch_item__step__trace__question__metadata",
    "batch_item__trace__text",
    "batch_item__trace__metadata",
    "batch_item__trace__question__metadata",
)


def assignment_item_get_for_display(
    *,
    annotator: AbstractBaseUser,
    assignment_public_id: str,
    position: int | None = None,
) -> AssignmentItem | None:
    """The item at ``position`` — or, with ``position=None``, the first not yet done — with
    everything the blinded view needs (unit, trace, question, own label or rating) in one
    query. The same ownership condition as above; None only when all items are done."""
    if not annotator.is_authenticated:
        raise NotFoundError(NOT_FOUND)
    queryset = (
        AssignmentItem.objects.select_related(
            "assignment__batch__audit",
            "batch_item__step__trace__question",
            "batch_item__trace__question",
            "label",
            "rating",
        )
        .defer(*_BIG_COLUMNS)
        .filter(assignment__public_id=assignment_public_id, assignment__annotator=annotator)
    )
    if position is not None:
        item = queryset.filter(position=position).first()
        if item is None:
            raise NotFoundError("No such item.")
        return item
    item = queryset.filter(label__isnull=True, rating__isnull=True).order_by("position").first()
    if item is None:
        # All done, or not this annotator's assignment: tell the two apart.
        assignment_get_for_annotator(annotator=annotator, assignment_public_id=assignment_public_id)
    return item
