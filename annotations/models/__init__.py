"""Domain models of the annotations app, split by concern."""

from .audits import Audit, Condition, ProbeMode, Verdict
from .batches import Assignment, AssignmentEvent, AssignmentItem, Batch, BatchItem
from .imports import ImportJob
from .labels import Label, LabelRevision, ProbeAnswer, TraceRating, TraceRatingRevision
from .traces import AnswerSample, Question, Step, Trace

__all__ = [
    "AnswerSample",
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
    "ProbeAnswer",
    "ProbeMode",
    "Question",
    "Step",
    "Trace",
    "TraceRating",
    "TraceRatingRevision",
    "Verdict",
]
