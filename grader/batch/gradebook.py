"""The gradebook: SQLite, one row per (student, assignment, submission hash, rubric hash).

A row is written in one transaction after the student's report files are in place
(written atomically), so a grader killed at any moment leaves either a complete row or
none: the rerun grades what has no row, and the primary key forbids duplicates.

A row is what the grader found; a TA's grade of an item is an *adjustment* (table
``adjustments``), laid over the rows when the exports are written. Adjustments are never
deleted: a new one supersedes the old, and one whose rubric item changed is dropped, each
marked with when and why (the audit trail).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..model import GradebookItem

__all__ = ["Adjustment", "Gradebook", "Row", "now"]


def now() -> str:
    """The time stamp of the gradebook: ISO 8601, UTC, to the second."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    student        TEXT NOT NULL,
    name           TEXT NOT NULL DEFAULT '',
    assignment     TEXT NOT NULL,
    content_sha256 TEXT NOT NULL,
    rubric_sha256  TEXT NOT NULL,
    submitted      TEXT,
    status         TEXT NOT NULL,          -- graded | error
    score          REAL NOT NULL,
    max_score      REAL NOT NULL,
    items          TEXT NOT NULL,          -- JSON: [GradebookItem] (grader.model)
    message        TEXT NOT NULL DEFAULT '',
    report         TEXT,                   -- report.json, relative to the batch folder
    duration_s     REAL,
    peak_rss_mb    REAL,
    source         TEXT NOT NULL DEFAULT '',
    graded_at      TEXT NOT NULL,
    PRIMARY KEY (student, assignment, content_sha256, rubric_sha256)
);
CREATE TABLE IF NOT EXISTS adjustments (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    student        TEXT NOT NULL,
    assignment     TEXT NOT NULL,
    item           TEXT NOT NULL,
    points         REAL NOT NULL,          -- the item's points as the TA set them
    comment        TEXT NOT NULL,
    made_by        TEXT NOT NULL,          -- who: $USER or --by
    made_at        TEXT NOT NULL,          -- when: ISO 8601, UTC
    item_sha256    TEXT NOT NULL,          -- the rubric item's fingerprint (Item.fingerprint)
    content_sha256 TEXT NOT NULL,          -- the submission the TA looked at
    status         TEXT NOT NULL DEFAULT 'active',   -- active | superseded | dropped
    ended_at       TEXT,
    ended_why      TEXT NOT NULL DEFAULT ''
);
"""



@dataclass(frozen=True)
class Row:
    """One grading of one submission. ``items`` are what the gradebook keeps of the report's
    items (:class:`grader.model.GradebookItem`, a declared projection); the full report is
    the file ``report`` names."""

    student: str
    name: str
    assignment: str
    content_sha256: str
    rubric_sha256: str
    submitted: str | None
    status: str
    score: float
    max_score: float
    items: tuple[GradebookItem, ...]
    message: str = ""
    report: str | None = None
    duration_s: float | None = None
    peak_rss_mb: float | None = None
    source: str = ""
    graded_at: str = ""

    @property
    def review(self) -> list[GradebookItem]:
        """The items a TA must look at before this grade is final (a grader-side problem),
        unless a TA has already given their points (an adjustment)."""
        return [i for i in self.items if i.awaits_review]

    @property
    def pending(self) -> list[GradebookItem]:
        """The manual items no TA has graded yet."""
        return [i for i in self.items if i.awaits_grading]

    @property
    def needs_review(self) -> bool:
        """Not a final grade for a grader-side reason: the submission could not be graded at
        all (``status`` error), or some item of it needs review."""
        return self.status == "error" or bool(self.review)

    @property
    def final(self) -> bool:
        """A final grade: nothing needs review and no manual item is pending. Exports leave
        any other grade blank, never a 0 nor a provisional total."""
        return not self.needs_review and not self.pending


@dataclass(frozen=True)
class Adjustment:
    """A TA's points for one item of one student (a row of ``adjustments``)."""

    id: int | None
    student: str
    assignment: str
    item: str
    points: float
    comment: str
    by: str
    at: str
    item_sha256: str
    content_sha256: str
    status: str = "active"
    ended_at: str | None = None
    ended_why: str = ""


class Gradebook:
    """The batch's results; safe to reopen after a crash (WAL journal, synchronous FULL)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path, timeout=60, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)

    def has(self, student: str, assignment: str, sha: str, rubric_sha: str, *,
            final: bool = False) -> bool:
        """A row for this submission under this rubric (with ``final``: one whose grade is
        final, so that a rerun grades again whatever needs review)."""
        found = self.db.execute(
            "SELECT status, items FROM results WHERE student=? AND assignment=? AND "
            "content_sha256=? AND rubric_sha256=?", (student, assignment, sha, rubric_sha)
        ).fetchone()
        if found is None or not final:
            return found is not None
        status, items = found
        return status != "error" and not any(GradebookItem.from_json(i).needs_review
                                             for i in json.loads(items))

    def record(self, row: Row) -> None:
        stamp = row.graded_at or now()
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(
                "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
                " ?, ?)",
                (row.student, row.name, row.assignment, row.content_sha256, row.rubric_sha256,
                 row.submitted, row.status, row.score, row.max_score,
                 json.dumps([i.to_json() for i in row.items]), row.message, row.report,
                 row.duration_s, row.peak_rss_mb, row.source, stamp))

    def rows(self, assignment: str, rubric_sha: str | None = None) -> list[Row]:
        """Every row of ``assignment`` (of one rubric version when given)."""
        query = "SELECT * FROM results WHERE assignment=?"
        args: tuple[Any, ...] = (assignment,)
        if rubric_sha:
            query += " AND rubric_sha256=?"
            args += (rubric_sha,)
        out = []
        for r in self.db.execute(query + " ORDER BY student, submitted, graded_at", args):
            values = list(r)
            values[9] = tuple(GradebookItem.from_json(i) for i in json.loads(values[9]))
            out.append(Row(*values))
        return out

    def latest(self, assignment: str, rubric_sha: str) -> list[Row]:
        """One row per student: their latest submission under this rubric."""
        best: dict[str, Row] = {}
        for row in self.rows(assignment, rubric_sha):
            old = best.get(row.student)
            if old is None or (row.submitted or "", row.graded_at) >= (old.submitted or "",
                                                                        old.graded_at):
                best[row.student] = row
        return [best[k] for k in sorted(best)]

    def adjust(self, adjustments: list[Adjustment]) -> list[Adjustment]:
        """Record ``adjustments`` in one transaction (all or none); each supersedes the active
        adjustment of its student and item. Returns them with their ids."""
        out = []
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            for a in adjustments:
                cur = self.db.execute(
                    "INSERT INTO adjustments (student, assignment, item, points, comment, "
                    "made_by, made_at, item_sha256, content_sha256) VALUES (?, ?, ?, ?, ?, ?, ?,"
                    " ?, ?)",
                    (a.student, a.assignment, a.item, a.points, a.comment, a.by, a.at,
                     a.item_sha256, a.content_sha256))
                self.db.execute(
                    "UPDATE adjustments SET status='superseded', ended_at=?, ended_why=? WHERE "
                    "student=? AND assignment=? AND item=? AND status='active' AND id<>?",
                    (a.at, f"superseded by adjustment {cur.lastrowid}", a.student,
                     a.assignment, a.item, cur.lastrowid))
                out.append(dataclasses.replace(a, id=cur.lastrowid))
        return out

    def adjustments(self, assignment: str, status: str | None = None) -> list[Adjustment]:
        """The adjustments of ``assignment`` (of one status when given), oldest first."""
        query = "SELECT * FROM adjustments WHERE assignment=?"     # columns in field order
        args: tuple[Any, ...] = (assignment,)
        if status:
            query += " AND status=?"
            args += (status,)
        return [Adjustment(*r) for r in self.db.execute(query + " ORDER BY id", args)]

    def drop(self, dropped: dict[int, str]) -> None:
        """Mark the adjustments ``{id: why}`` dropped (kept, never deleted)."""
        stamp = now()
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            for key, why in dropped.items():
                self.db.execute("UPDATE adjustments SET status='dropped', ended_at=?, "
                                "ended_why=? WHERE id=? AND status='active'", (stamp, why, key))

    def close(self) -> None:
        self.db.close()
