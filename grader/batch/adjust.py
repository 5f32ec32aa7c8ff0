"""A TA's points for an item: recorded in the gradebook, laid over the grader's, kept across
regrades while the rubric item is unchanged.

``grader adjust OUT STUDENT ITEM --points P --comment TEXT`` (or ``--file adjustments.csv``
for many) checks every request against OUT's gradebook and the rubric first: an unknown
student or item, points outside 0..the item's points, an empty comment, a bad row of the
file are all reported at once, naming where, and nothing is recorded. Then the adjustments
are recorded in one transaction, with who, when, the submission and the rubric item's
fingerprint, and OUT's exports are written again.

At every export (``grader batch``, ``grader adjust``) the active adjustments are matched
with the current rubric: one whose item is gone or changed (``Item.fingerprint``) is
dropped, marked with when and why, and listed; the others are applied to each student's
row and report: the item's ``score`` becomes the TA's points, and its ``adjustment`` keeps
the automatic score, the comment, who and when.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..errors import AdjustmentError, CourseError
from ..model import GradebookItem, ItemAdjustment, ItemResult, Report
from ..rubric import Rubric, load_rubric
from ..scoring import total
from .gradebook import Adjustment, Gradebook, Row, now

__all__ = ["Request", "read_requests", "record", "sync", "apply_row", "apply_report"]

_COLUMNS = ("student", "item", "points", "comment")
Active = dict[str, dict[str, Adjustment]]          # student -> item id -> adjustment


@dataclass(frozen=True)
class Request:
    """One adjustment a TA asks for, and where it was asked (for messages)."""

    student: str
    item: str
    points: float
    comment: str
    where: str = "the command line"


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None


def read_requests(path: Path) -> list[Request]:
    """The rows of an adjustments CSV (``student,item,points,comment``; a spreadsheet's
    UTF-8 BOM is fine). Raises AdjustmentError listing every bad row."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise AdjustmentError([f"{path}: cannot read it ({exc}); give a UTF-8 CSV file with "
                               f"the columns {','.join(_COLUMNS)}"]) from None
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in reader.fieldnames or []]
    if sorted(header) != sorted(_COLUMNS):
        raise AdjustmentError([f"{path}, line 1: the header is {','.join(header) or 'empty'}; "
                               f"it must be exactly {','.join(_COLUMNS)} (in any order)"])
    out, problems = [], []
    for row in reader:
        where = f"{path}, line {reader.line_num}"
        values = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
        if None in row or not all(k in values for k in _COLUMNS):
            problems.append(f"{where}: expected {len(_COLUMNS)} fields ({','.join(_COLUMNS)}); "
                            "quote a comment that holds a comma")
            continue
        if not any(values.values()):
            continue
        points = _number(values["points"])
        if points is None:
            problems.append(f"{where}: points {values['points']!r} is not a number; give the "
                            "item's new points, e.g. 1.5")
            continue
        out.append(Request(values["student"], values["item"], points, values["comment"], where))
    if not out and not problems:
        problems.append(f"{path}: no adjustment in it (a header and no rows); add a row "
                        "student,item,points,comment for each")
    if problems:
        raise AdjustmentError(problems)
    return out


def _problems(requests: list[Request], rows: dict[str, Row], rubric: Rubric) -> list[str]:
    """What keeps each request from being recorded, naming where it was asked."""
    items = {i.id: i for i in rubric.items}
    seen: dict[tuple[str, str], str] = {}
    problems = []
    for r in requests:
        row, item = rows.get(r.student), items.get(r.item)
        if row is None:
            known = ", ".join(sorted(rows)[:10]) + (", ..." if len(rows) > 10 else "")
            problems.append(f"{r.where}: no student `{r.student}` in the gradebook of "
                            f"{rubric.assignment} (students: {known or 'none'})")
        elif row.status != "graded":
            problems.append(f"{r.where}: `{r.student}` could not be graded at all "
                            f"({row.message[:120]}); fix the cause and run `grader batch` "
                            "again, then adjust")
        if item is None:
            problems.append(f"{r.where}: no item `{r.item}` in the rubric of "
                            f"{rubric.assignment} (items: {', '.join(items)})")
        elif not 0 <= r.points <= item.points:
            problems.append(f"{r.where}: points {r.points:g} for `{r.item}`, which is worth "
                            f"{item.points:g}; give a number from 0 to {item.points:g}")
        if not r.comment:
            problems.append(f"{r.where}: no comment; say why (the student reads it)")
        key = (r.student, r.item)
        if key in seen:
            problems.append(f"{r.where}: `{r.student}` `{r.item}` is adjusted twice (also "
                            f"{seen[key]}); keep one")
        seen.setdefault(key, r.where)
    return problems


def _batch_summary(out: Path) -> dict[str, Any]:
    path = out / "batch.json"
    if not path.is_file() or not (out / "gradebook.sqlite").is_file():
        raise CourseError(f"{out}: not a batch folder (no batch.json and gradebook.sqlite); "
                          "give the --out folder of `grader batch`")
    summary: dict[str, Any] = json.loads(path.read_text())
    return summary


def record(out: Path, requests: list[Request], by: str, course: str | Path | None = None
           ) -> list[tuple[Request, float]]:
    """Record ``requests`` in OUT's gradebook (all or none) and write OUT's exports again.

    Returns each request with the automatic score it replaces. Raises AdjustmentError
    listing every problem, or CourseError when OUT or its rubric cannot be used.
    """
    from ..pipeline import find_course
    from .exports import export_again

    summary = _batch_summary(out)
    course_dir = find_course(course or summary.get("course"))
    rubric = load_rubric(course_dir / "rubrics" / f"{summary['assignment']}.yaml")
    if rubric.sha256 != summary["rubric_sha256"]:
        raise CourseError(f"{rubric.path} changed since {out} was graded: grade with it first "
                          f"(`grader batch ... --assignment {rubric.assignment} --out {out}`), "
                          "then adjust")
    book = Gradebook(out / "gradebook.sqlite")
    try:
        rows = {r.student: r for r in book.latest(rubric.assignment, rubric.sha256)}
        problems = _problems(requests, rows, rubric)
        if problems:
            raise AdjustmentError(problems)
        items = {i.id: i for i in rubric.items}
        stamp = now()
        book.adjust([Adjustment(None, r.student, rubric.assignment, r.item, r.points,
                                r.comment, by, stamp, items[r.item].fingerprint,
                                rows[r.student].content_sha256) for r in requests])
        automatic = {(r.student, i.id): i.score for r in rows.values() for i in r.items}
        export_again(out, rubric, summary, book)
    finally:
        book.close()
    return [(r, automatic.get((r.student, r.item), 0.0)) for r in requests]


def sync(book: Gradebook, rubric: Rubric) -> tuple[Active, list[Adjustment]]:
    """The active adjustments that still fit ``rubric`` (by student and item), and those
    dropped now because their item is gone or changed (marked so in the gradebook)."""
    items = {i.id: i for i in rubric.items}
    kept: Active = {}
    dropped: dict[int, str] = {}
    active = book.adjustments(rubric.assignment, "active")
    for a in active:
        item = items.get(a.item)
        if item is None:
            dropped[int(a.id or 0)] = f"the rubric has no item `{a.item}` any more"
        elif item.fingerprint != a.item_sha256:
            dropped[int(a.id or 0)] = (f"the rubric item `{a.item}` changed (its points, "
                                       "check, parameters, criteria or answer): grade it again")
        else:
            kept.setdefault(a.student, {})[a.item] = a
    book.drop(dropped)
    return kept, [dataclasses.replace(a, status="dropped", ended_why=dropped[int(a.id or 0)])
                  for a in active if int(a.id or 0) in dropped]


Scored = TypeVar("Scored", ItemResult, GradebookItem)


def _adjusted(item: Scored, adjustments: dict[str, Adjustment]) -> Scored:
    """The item with its active adjustment (if any) in place of any earlier one: the same for
    a report's item and the gradebook's projection of it."""
    if item.adjusted:                       # as the grader left it
        item = dataclasses.replace(item, score=item.automatic_score, adjustment=None)
    a = adjustments.get(item.id)
    if a is None:
        return item
    return dataclasses.replace(item, score=a.points, adjustment=ItemAdjustment(
        automatic_score=item.score, comment=a.comment, by=a.by, at=a.at))


def apply_row(row: Row, adjustments: dict[str, Adjustment]) -> Row:
    """The gradebook row with the TA's points in place of the grader's."""
    if row.status != "graded" or not adjustments:
        return row
    items = tuple(_adjusted(i, adjustments) for i in row.items)
    change = total([i.score for i in items]) - total([i.score for i in row.items])
    return dataclasses.replace(row, items=items, score=total([row.score, change]))


def apply_report(report: Report, adjustments: dict[str, Adjustment]) -> Report:
    """The report with the TA's points in place of the grader's (idempotent: a report that
    carries earlier adjustments gets exactly the current ones)."""
    items = tuple(_adjusted(i, adjustments) for i in report.items)
    return dataclasses.replace(report, items=items, score=total([i.score for i in items]))
