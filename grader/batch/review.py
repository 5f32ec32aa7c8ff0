"""``grader review OUT [--lab LAB]``: what needs a human in a graded class, one line each.

OUT is a ``grader batch`` folder, or a folder of them (``grader demo``'s). Listed, with the
student's report:

- ``error``: the submission could not be graded at all;
- ``needs review``: an item the grader could not grade (a grader-side cause);
- ``dropped``: a TA's adjustment dropped because its rubric item changed: grade it again;
- ``pending``: a manual item no TA has graded;
- ``kernel died``, ``timeout``: the student's kernel died, the notebook or a cell ran out of
  time, an item's call died or timed out (the student's doing, but worth a look);
- ``outlier``: a metric item (a threshold check: test accuracy, NLL, FID...) whose value is
  far from the class's: a robust z-score 0.6745 (x - median) / MAD beyond +-3.5 (Iglewicz
  and Hoaglin's rule), with at least five values; when the MAD is 0, the mean absolute
  deviation stands in (z = (x - median) / (1.2533 MeanAD)); both tails (a value far better
  than the class's deserves a look too);
- ``adjusted earlier``: an adjustment made on an earlier submission of the student (it holds,
  but the new answer has not been looked at).

Items a TA has adjusted are not listed again. Reads the gradebook and the reports only.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..calibrate import metrics
from ..errors import CourseError
from ..manual import where_found
from ..model import Report
from .adjust import apply_row
from .gradebook import Adjustment, Gradebook, Row

__all__ = ["Entry", "review", "robust_z", "OUTLIER_Z", "KINDS"]

OUTLIER_Z = 3.5
_MIN_CLASS = 5
KINDS = ("error", "needs review", "dropped", "pending", "kernel died", "timeout", "outlier",
         "adjusted earlier")


@dataclass(frozen=True)
class Entry:
    """One thing a TA should look at."""

    lab: str
    student: str
    kind: str            # one of KINDS
    item: str            # the rubric item, or "" for the whole submission
    detail: str
    report: str          # the student's report.html, or ""


def robust_z(values: list[float]) -> list[float | None]:
    """Each value's robust z-score against the others (None for fewer than five values, or
    when they do not spread at all)."""
    if len(values) < _MIN_CLASS:
        return [None] * len(values)
    median = statistics.median(values)
    deviations = [abs(v - median) for v in values]
    mad = statistics.median(deviations)
    scale = mad / 0.6745 if mad > 0 else 1.2533 * statistics.mean(deviations)
    if scale <= 0:
        return [None] * len(values)
    return [(v - median) / scale for v in values]


def _folders(out: Path, lab: str | None) -> list[Path]:
    """The batch folders under ``out`` (itself, or its sub-folders), of ``lab`` when given."""
    def is_batch(p: Path) -> bool:
        return (p / "batch.json").is_file() and (p / "gradebook.sqlite").is_file()

    found = [out] if is_batch(out) else sorted(p for p in out.glob("*") if is_batch(p))
    if lab:
        found = [p for p in found
                 if json.loads((p / "batch.json").read_text()).get("assignment") == lab]
    if not found:
        raise CourseError(f"{out}: no `grader batch` folder{f' of {lab}' if lab else ''} "
                          "(one with batch.json and gradebook.sqlite) here or one level below")
    return found


def _html(folder: Path, row: Row) -> str:
    return str(folder / row.report).replace("report.json", "report.html") if row.report else ""


def _execution(report: Report) -> Iterator[tuple[str, str, str]]:
    """(kind, item, detail) of the kernel deaths and timeouts of one report."""
    execution = report.execution
    if execution.get("kernel_died"):
        detail = f"the kernel died ({execution.get('restarts', 0)} restart(s))"
        yield "kernel died", "", detail + ("; the replay failed" if execution.get(
            "replay_failed") else "")
    if execution.get("timed_out"):
        yield "timeout", "", "the notebook did not finish in time"
    cells = [str(c["index"] + 1) for c in execution["cells"] if c["status"] == "timeout"]
    if cells:
        yield "timeout", "", f"cell(s) {', '.join(cells)} timed out"
    for item in report.items:
        kind = {"kernel_died": "kernel died", "timeout": "timeout"}.get(item.error_kind or "")
        if kind and not item.adjusted:
            yield kind, item.id, item.message[:200]


def _outliers(lab: str, reports: dict[str, Report], links: dict[str, str]
              ) -> Iterator[Entry]:
    """The students far from the class on a metric item (see the module's rule)."""
    known = metrics()
    values: dict[str, list[tuple[str, float]]] = {}
    for student, report in reports.items():
        for item in report.items:
            metric = known.get(item.check)
            value = item.details.get(metric.detail) if metric else None
            if isinstance(value, (int, float)) and math.isfinite(value):
                values.setdefault(item.id, []).append((student, float(value)))
    for item_id, pairs in sorted(values.items()):
        median = statistics.median(v for _, v in pairs)
        for (student, value), z in zip(pairs, robust_z([v for _, v in pairs])):
            if z is not None and abs(z) > OUTLIER_Z:
                side = "above" if z > 0 else "below"
                yield Entry(lab, student, "outlier", item_id,
                            f"{value:.4g}, far {side} the class (median {median:.4g}, robust z "
                            f"{z:+.1f})", links.get(student, ""))


def _dropped(lab: str, book: Gradebook, rows: dict[str, Row], folder: Path) -> Iterator[Entry]:
    """Dropped adjustments not replaced by a newer one: the item needs grading again."""
    redone = {(a.student, a.item) for a in book.adjustments(lab, "active")}
    for a in book.adjustments(lab, "dropped"):
        if (a.student, a.item) not in redone and a.student in rows:
            yield Entry(lab, a.student, "dropped", a.item, f"{a.points:g} points by {a.by} "
                        f"({a.comment[:80]}) dropped: {a.ended_why}",
                        _html(folder, rows[a.student]))


def _row_entries(lab: str, row: Row, report: Report | None, link: str,
                 active: dict[str, Adjustment]) -> Iterator[Entry]:
    if row.status == "error":
        yield Entry(lab, row.student, "error", "", row.message[:300], link)
    for i in row.review:
        yield Entry(lab, row.student, "needs review", i.id, f"{i.error_kind}: {i.message[:200]}",
                    link)
    for i in row.pending:
        yield Entry(lab, row.student, "pending", i.id, where_found(i.message)[:200], link)
    for kind, item, detail in _execution(report) if report else ():
        yield Entry(lab, row.student, kind, item, detail, link)
    for a in active.values():
        if a.content_sha256 != row.content_sha256:
            yield Entry(lab, row.student, "adjusted earlier", a.item,
                        f"{a.points:g} points by {a.by} on {a.at}, on an earlier submission: "
                        "look at the new one", link)


def _batch(folder: Path) -> list[Entry]:
    summary = json.loads((folder / "batch.json").read_text())
    lab = summary["assignment"]
    book = Gradebook(folder / "gradebook.sqlite")
    try:
        active: dict[str, dict[str, Adjustment]] = {}
        for a in book.adjustments(lab, "active"):
            active.setdefault(a.student, {})[a.item] = a
        rows = {r.student: apply_row(r, active.get(r.student, {}))
                for r in book.latest(lab, summary["rubric_sha256"])}
        entries = list(_dropped(lab, book, rows, folder))
    finally:
        book.close()
    reports = {s: Report.from_json(json.loads((folder / r.report).read_text()))
               for s, r in rows.items() if r.report and (folder / r.report).is_file()}
    links = {s: _html(folder, r) for s, r in rows.items()}
    for student, row in rows.items():
        entries += _row_entries(lab, row, reports.get(student), links[student],
                                active.get(student, {}))
    return entries + list(_outliers(lab, reports, links))


def review(out: Path, lab: str | None = None) -> list[Entry]:
    """Everything that needs a human in the batch folder(s) ``out``, most urgent first."""
    entries = [e for folder in _folders(Path(out), lab) for e in _batch(folder)]
    return sorted(entries, key=lambda e: (e.lab, KINDS.index(e.kind), e.student, e.item))
