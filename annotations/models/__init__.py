"""Domain models of the annotations app, split by concern."""

from .audits import Audit, Condition, Verdict
from .imports import ImportJob
from .traces import Question, Step, Trace

__all__ = ["Audit", "Condition", "ImportJob", "Question", "Step", "Trace", "Verdict"]
