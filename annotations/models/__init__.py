"""Domain models of the annotations app, split by concern."""

from .audits import Audit, Condition, Verdict
from .batches import Assignment, AssignmentEvent, AssignmentItem, Batch, BatchItem
from .imports import ImportJob
from .labels import Label, LabelRevision, TraceRating, TraceRatingRevision
from .traces import Question, Step, Trace

__all__ = [
    "Assignment",
    "AssignmentEvent",
    "AssignmentItem",
    "Audit",
    "Batch",
    "BatchItem",
    "Condition",
    "ImportJob",
    "Label",
    "LabelRevision",
    "Question",
    "Step",
    "Trace",
    "TraceRating",
    "TraceRatingRevision",
    "Verdict",
]
