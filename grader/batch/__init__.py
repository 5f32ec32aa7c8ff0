"""Grading a whole class: LMS exports in; gradebook, reports, exports, dashboard out."""

from .gradebook import Gradebook, Row
from .ingest import Attempt, Ingested, Limits, Skipped, ingest, read_roster
from .runner import BatchResult, Job, run_batch

__all__ = ["Attempt", "BatchResult", "Gradebook", "Ingested", "Job", "Limits", "Row",
           "Skipped", "ingest", "read_roster", "run_batch"]
