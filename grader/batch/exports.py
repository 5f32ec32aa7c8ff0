"""What a batch hands on: LMS grade imports, Gradescope results, a zip of reports, a summary.

- ``brightspace.csv``: Brightspace (D2L, Ufora) grade import — ``OrgDefinedId``, the grade
  item's ``<title> Points Grade`` and the ``End-of-Line Indicator`` column.
- ``canvas.csv``: Canvas gradebook import — ``Student, ID, SIS User ID, SIS Login ID,
  Section, <title>``, with the ``Points Possible`` row.
  In both, a student whose grade is not final (could not be graded, an item needs review, or
  a manual item is pending) has a blank grade, never a 0 (the import records no grade from
  it); ``needs-review.csv`` lists them, with why (docs/batch.md, "Needs review").
- ``students/<id>/results.json``: Gradescope's autograder format (``score``, ``tests``
  with ``visibility``: public items ``visible``, hidden ones ``after_published``; an item
  under review or pending has no score and says so).
- ``reports.zip``: every student's report.json and report.html.
- ``batch.json``: the run (layout, counts, what was skipped and why, errors, pending and
  adjusted items, the adjustments this export dropped).

Every export is written with the TA's adjustments (``adjust.py``) in place of the grader's
points, the reports included.
- ``dashboard.html``: the class view (``dashboard.py``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

from ..model import ItemResult, Report, to_json
from ..rubric import Rubric
from .adjust import Active, apply_report, apply_row, sync
from .gradebook import Adjustment, Gradebook, Row

__all__ = ["write_exports", "gradescope_results", "write_report_atomically"]


_REVIEW_NOTE = ("NEEDS REVIEW: the grader could not grade this item (a problem on the grader's "
                "side, not a verdict on your work); a TA will review it, and the score is not "
                "final until then.")
_PENDING_NOTE = ("GRADED BY A TA: this item is not graded automatically; a TA grades it, and the "
                 "score is not final until then.")


def _gradescope_test(item: ItemResult) -> dict[str, Any]:
    """One report item as a Gradescope test. An item under review gets no score (a 0 there
    would read as a verdict), its name and output say so, and ``extra_data`` says why."""
    text = item.message
    ce = item.counterexample
    if ce and ce.get("inputs"):
        shown = "; ".join(f"{k} = {v}" for k, v in ce["inputs"].items())
        text += f"\nfailing input: {shown[:2000]}"
    if item.hint and item.outcome != "passed":
        text += f"\nhint: {item.hint}"
    adjustment, review = item.adjustment, item.awaits_review
    test = {"name": f"{item.id}: {item.title}", "score": item.score,
            "max_score": item.max_score, "output": text,
            "status": "passed" if item.passes else "failed",
            "visibility": "visible" if item.visibility == "public" else "after_published",
            "extra_data": {"outcome": item.outcome, "needs_review": review,
                           "error_kind": item.error_kind}}
    if adjustment is not None:
        test["output"] += (f"\nadjusted by a TA ({adjustment.by}, {adjustment.at}): "
                           f"{adjustment.automatic_score:g} -> {item.score:g} points. "
                           f"{adjustment.comment}")
        test["extra_data"]["adjustment"] = to_json(adjustment)
    for flag, prefix, note in ((review, "NEEDS REVIEW", _REVIEW_NOTE),
                               (item.awaits_grading, "GRADED BY A TA", _PENDING_NOTE)):
        if flag:
            del test["score"]
            test["name"] = f"[{prefix}] {test['name']}"
            test["output"] = f"{note}\n{text}"
    return test


def gradescope_results(report: Report | dict[str, Any]) -> dict[str, Any]:
    """A grader report (a :class:`Report`, or its JSON data) in Gradescope's
    ``results.json`` format.

    Items under review and manual items no TA has graded carry no score and are named in
    the top-level ``output`` and ``extra_data`` (``needs_review``, ``pending``): the total
    shown is provisional until a TA has looked. A TA's adjustment gives its item's score.
    """
    if not isinstance(report, Report):
        report = Report.from_json(report)
    tests = [_gradescope_test(item) for item in report.items]
    review = [item.id for item in report.items if item.awaits_review]
    pending = [item.id for item in report.items if item.awaits_grading]
    failed = [c for c in report.execution["cells"] if c["status"] != "ok"]
    output = (f"{report.title}: graded in a sandbox by grader "
              f"{report.versions['grader']}.")
    if failed:
        output += f" {len(failed)} notebook cell(s) did not run cleanly."
    if review:
        output = (f"NEEDS REVIEW: {len(review)} item(s) could not be graded because of a "
                  f"problem on the grader's side ({', '.join(review)}); the score is "
                  f"provisional until a TA has reviewed them. " + output)
    if pending:
        output = (f"GRADED BY A TA: {len(pending)} item(s) are graded by a TA "
                  f"({', '.join(pending)}); the score is provisional until then. " + output)
    extra: dict[str, Any] = {"needs_review": review}
    if pending:
        extra["pending"] = pending
    return {"score": report.score, "output": output, "tests": tests,
            "visibility": "visible", "stdout_visibility": "hidden",
            "execution_time": round(report.timings["total_s"]),
            "extra_data": extra}


def atomic_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` in one rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    atomic_text(path, buffer.getvalue())


def _score(row: Row) -> str:
    """The grade to import: blank for a row that is not final (could not be graded, an item
    needs review, or a manual item is pending), so that the LMS import records no number
    that is not the grade."""
    return f"{row.score:.4g}" if row.final else ""


def _why(row: Row) -> str:
    if row.status == "error":
        return row.message
    return "; ".join([f"{i.id} ({i.error_kind or 'error'}): {i.message}" for i in row.review] +
                     [f"{i.id} (pending): a manual item, graded by a TA" for i in row.pending])


def _review_rows(rows: list[Row]) -> list[list[Any]]:
    """needs-review.csv: who, what the grade would be so far, which items and why."""
    out = []
    for r in rows:
        if r.final:
            continue
        provisional = "" if r.status == "error" else f"{r.score:.4g}"
        out.append([r.student, r.name, r.status, provisional, f"{r.max_score:g}",
                    " ".join(i.id for i in r.review + r.pending), _why(r), r.report or ""])
    return out


def write_report_atomically(report: Report | dict[str, Any], folder: Path) -> Path:
    """report.json and report.html into ``folder``, each replaced in one rename (``report``:
    a :class:`Report`, or its JSON data)."""
    from ..report import write_reports

    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / f".staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    json_path, html_path = write_reports(report, staging)
    for path in (html_path, json_path):
        os.replace(path, folder / path.name)
    shutil.rmtree(staging, ignore_errors=True)
    return folder / json_path.name


def _reports(rows: list[Row], active: Active, out: Path) -> None:
    """Each student's report with the TA's adjustments (rewritten where they changed), its
    Gradescope results.json, and reports.zip of them all."""
    tmp = out / ".reports.zip.tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for r in rows:
            if not r.report:
                continue
            folder = (out / r.report).parent
            written = json.loads((out / r.report).read_text())
            adjusted = apply_report(Report.from_json(written), active.get(r.student, {}))
            if adjusted.to_json() != written:
                write_report_atomically(adjusted, folder)
            for name in ("report.json", "report.html"):
                if (folder / name).is_file():
                    zf.write(folder / name, f"{folder.name}/{name}")
            atomic_text(folder / "results.json",
                        json.dumps(gradescope_results(adjusted), indent=1))
    os.replace(tmp, out / "reports.zip")


def _ta_summary(rows: list[Row], dropped: list[Adjustment]) -> dict[str, Any]:
    """batch.json's view of the TA's work: pending manual items, adjusted items, and the
    adjustments this export dropped (their rubric item changed)."""
    return {
        "final": sum(r.final for r in rows),
        "pending": [{"student": r.student, "items": [i.id for i in r.pending],
                     "report": r.report} for r in rows if r.pending],
        "adjusted": [{"student": r.student, "item": i.id, "score": i.score,
                      **to_json(i.adjustment), "report": r.report}
                     for r in rows for i in r.items if i.adjustment is not None],
        "adjustments_dropped": [{"student": a.student, "item": a.item, "points": a.points,
                                 "comment": a.comment, "by": a.by, "at": a.at,
                                 "why": a.ended_why} for a in dropped]}


def write_exports(book: Gradebook, rubric: Rubric, out: Path, result: Any,
                  names: dict[str, str], *, roster_missing: list[str] | None = None
                  ) -> dict[str, Any]:
    """Every export of OUT from the gradebook, the TA's adjustments applied (those whose
    rubric item changed are dropped first); returns batch.json's summary."""
    from .dashboard import write_dashboard

    active, dropped = sync(book, rubric)
    rows = [apply_row(r, active.get(r.student, {}))
            for r in book.latest(rubric.assignment, rubric.sha256)]
    title = rubric.title
    _csv(out / "brightspace.csv", ["OrgDefinedId", f"{title} Points Grade",
                                   "End-of-Line Indicator"],
         [[f"#{r.student}", _score(r), "#"] for r in rows])
    _csv(out / "canvas.csv", ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", title],
         [["Points Possible", "", "", "", "", f"{rubric.max_score:g}"]] +
         [[r.name or names.get(r.student, ""), r.student, "", "", "", _score(r)] for r in rows])
    _csv(out / "needs-review.csv", ["student", "name", "status", "provisional_score",
                                    "max_score", "items", "why", "report"], _review_rows(rows))
    _reports(rows, active, out)
    missing = (sorted(set(names) - {r.student for r in rows}) if roster_missing is None
               else roster_missing)
    summary = {"assignment": rubric.assignment, "rubric_sha256": rubric.sha256,
               "course": str(rubric.path.resolve().parent.parent),
               "layout": result.layout, "students": len(rows), "graded_now": result.graded,
               "errors_now": result.errors, "already_graded": result.already,
               "superseded_attempts": result.superseded, "seconds": result.seconds,
               "skipped": result.skipped, "roster_without_submission": missing,
               "errors": [{"student": r.student, "message": r.message} for r in rows
                          if r.status == "error"],
               "needs_review": [{"student": r.student, "status": r.status,
                                 "items": [i.id for i in r.review], "report": r.report}
                                for r in rows if r.needs_review],
               **_ta_summary(rows, dropped)}
    atomic_text(out / "batch.json", json.dumps(summary, indent=1))
    write_dashboard(rows, rubric, out / "dashboard.html", summary)
    return summary


class _Run:
    """The last batch run's counts, as ``write_exports`` reads them from a BatchResult."""

    def __init__(self, summary: dict[str, Any]) -> None:
        self.layout = summary.get("layout", "")
        self.graded = summary.get("graded_now", 0)
        self.errors = summary.get("errors_now", 0)
        self.already = summary.get("already_graded", 0)
        self.superseded = summary.get("superseded_attempts", 0)
        self.seconds = summary.get("seconds", 0.0)
        self.skipped = summary.get("skipped", [])


def export_again(out: Path, rubric: Rubric, summary: dict[str, Any],
                 book: Gradebook | None = None) -> dict[str, Any]:
    """Every export of a batch folder written again from its gradebook, with the counts of
    its last run (``batch.json``): after a TA's adjustment or a similarity run."""
    own = book is None
    book = book or Gradebook(out / "gradebook.sqlite")
    try:
        return write_exports(book, rubric, out, _Run(summary), {},
                             roster_missing=summary.get("roster_without_submission", []))
    finally:
        if own:
            book.close()
