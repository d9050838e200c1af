"""Domain models of the annotations app, split by concern."""

from .audits import TRACE_MODES, Audit, Condition, LabellingMode, ProbeMode, Verdict
from .batches import Assignment, AssignmentEvent, AssignmentItem, Batch, BatchItem
from .imports import ImportJob
from .labels import (
    FirstErrorMark,
    FirstErrorMarkRevision,
    Label,
    LabelRevision,
    ProbeAnswer,
    TraceRating,
    TraceRatingRevision,
)
from .traces import AnswerSample, Question, Step, Trace

__all__ = [
    "TRACE_MODES",
    "AnswerSample",
    "Assignment",
    "AssignmentEvent",
    "AssignmentItem",
    "Audit",
    "Batch",
    "BatchItem",
    "Condition",
    "FirstErrorMark",
    "FirstErrorMarkRevision",
    "ImportJob",
    "Label",
    "LabelRevision",
    "LabellingMode",
    "ProbeAnswer",
    "ProbeMode",
    "Question",
    "Step",
    "Trace",
    "TraceRating",
    "TraceRatingRevision",
    "Verdict",
]
