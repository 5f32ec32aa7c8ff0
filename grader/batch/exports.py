"""What a batch hands on: LMS grade imports, Gradescope results, a zip of reports, a summary.

- ``brightspace.csv``: Brightspace (D2L, Ufora) grade import — ``OrgDefinedId``, the grade
  item's ``<title> Points Grade`` and the ``End-of-Line Indicator`` column.
- ``canvas.csv``: Canvas gradebook import — ``Student, ID, SIS User ID, SIS Login ID,
  Section, <title>``, with the ``Points Possible`` row.
  In both, a student whose grade is not final (could not be graded, or an item needs review)
  has a blank grade, never a 0 (the import records no grade from it); ``needs-review.csv``
  lists them, with why (docs/batch.md, "Needs review").
- ``students/<id>/results.json``: Gradescope's autograder format (``score``, ``tests``
  with ``visibility``: public items ``visible``, hidden ones ``after_published``; an item
  under review has no score and says so).
- ``reports.zip``: every student's report.json and report.html.
- ``batch.json``: the run (layout, counts, what was skipped and why, errors).
- ``dashboard.html``: the class view (``dashboard.py``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

from ..rubric import Rubric
from .gradebook import Gradebook, Row

__all__ = ["write_exports", "gradescope_results"]


_REVIEW_NOTE = ("NEEDS REVIEW: the grader could not grade this item (a problem on the grader's "
                "side, not a verdict on your work); a TA will review it, and the score is not "
                "final until then.")


def _gradescope_test(item: dict[str, Any]) -> dict[str, Any]:
    """One report item as a Gradescope test. An item under review gets no score (a 0 there
    would read as a verdict), its name and output say so, and ``extra_data`` says why."""
    text = item["message"]
    if item.get("counterexample") and item["counterexample"].get("inputs"):
        shown = "; ".join(f"{k} = {v}" for k, v in item["counterexample"]["inputs"].items())
        text += f"\nfailing input: {shown[:2000]}"
    if item.get("hint") and item["outcome"] != "passed":
        text += f"\nhint: {item['hint']}"
    review = bool(item.get("needs_review"))
    test = {"name": f"{item['id']}: {item['title']}", "score": item["score"],
            "max_score": item["max_score"], "output": text,
            "status": "passed" if item["outcome"] == "passed" else "failed",
            "visibility": "visible" if item["visibility"] == "public" else "after_published",
            "extra_data": {"outcome": item["outcome"], "needs_review": review,
                           "error_kind": item.get("error_kind")}}
    if review:
        del test["score"]
        test["name"] = f"[NEEDS REVIEW] {test['name']}"
        test["output"] = f"{_REVIEW_NOTE}\n{text}"
    return test


def gradescope_results(report: dict[str, Any]) -> dict[str, Any]:
    """A grader report in Gradescope's ``results.json`` format.

    Items under review carry no score and are named in the top-level ``output`` and
    ``extra_data.needs_review``: the total shown is provisional until a TA has looked.
    """
    tests = [_gradescope_test(item) for item in report["items"]]
    review = [item["id"] for item in report["items"] if item.get("needs_review")]
    failed = [c for c in report["execution"]["cells"] if c["status"] != "ok"]
    output = (f"{report['title']}: graded in a sandbox by grader "
              f"{report['versions']['grader']}.")
    if failed:
        output += f" {len(failed)} notebook cell(s) did not run cleanly."
    if review:
        output = (f"NEEDS REVIEW: {len(review)} item(s) could not be graded because of a "
                  f"problem on the grader's side ({', '.join(review)}); the score is "
                  f"provisional until a TA has reviewed them. " + output)
    return {"score": report["score"], "output": output, "tests": tests,
            "visibility": "visible", "stdout_visibility": "hidden",
            "execution_time": round(report["timings"]["total_s"]),
            "extra_data": {"needs_review": review}}


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
    """The grade to import: blank for a row that is not final (could not be graded, or an
    item needs review), so that the LMS import records no number the grader did not earn."""
    return "" if row.needs_review else f"{row.score:.4g}"


def _review_rows(rows: list[Row]) -> list[list[Any]]:
    """needs-review.csv: who, what the grade would be so far, which items and why."""
    out = []
    for r in rows:
        if not r.needs_review:
            continue
        why = r.message if r.status == "error" else "; ".join(
            f"{i['id']} ({i.get('error_kind') or 'error'}): {i.get('message', '')}"
            for i in r.review)
        provisional = "" if r.status == "error" else f"{r.score:.4g}"
        out.append([r.student, r.name, r.status, provisional, f"{r.max_score:g}",
                    " ".join(i["id"] for i in r.review), why, r.report or ""])
    return out


def write_exports(book: Gradebook, rubric: Rubric, out: Path, result: Any,
                  names: dict[str, str]) -> None:
    from .dashboard import write_dashboard

    rows = book.latest(rubric.assignment, rubric.sha256)
    title = rubric.title
    _csv(out / "brightspace.csv", ["OrgDefinedId", f"{title} Points Grade",
                                   "End-of-Line Indicator"],
         [[f"#{r.student}", _score(r), "#"] for r in rows])
    _csv(out / "canvas.csv", ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", title],
         [["Points Possible", "", "", "", "", f"{rubric.max_score:g}"]] +
         [[r.name or names.get(r.student, ""), r.student, "", "", "", _score(r)] for r in rows])
    _csv(out / "needs-review.csv", ["student", "name", "status", "provisional_score",
                                    "max_score", "items", "why", "report"], _review_rows(rows))
    tmp = out / ".reports.zip.tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for r in rows:
            if r.report:
                folder = (out / r.report).parent
                for name in ("report.json", "report.html"):
                    if (folder / name).is_file():
                        zf.write(folder / name, f"{folder.name}/{name}")
                report = json.loads((out / r.report).read_text())
                atomic_text(folder / "results.json",
                             json.dumps(gradescope_results(report), indent=1))
    os.replace(tmp, out / "reports.zip")
    missing = sorted(set(names) - {r.student for r in rows})
    summary = {"assignment": rubric.assignment, "rubric_sha256": rubric.sha256,
               "layout": result.layout, "students": len(rows), "graded_now": result.graded,
               "errors_now": result.errors, "already_graded": result.already,
               "superseded_attempts": result.superseded, "seconds": result.seconds,
               "skipped": result.skipped, "roster_without_submission": missing,
               "errors": [{"student": r.student, "message": r.message} for r in rows
                          if r.status == "error"],
               "needs_review": [{"student": r.student, "status": r.status,
                                 "items": [i["id"] for i in r.review], "report": r.report}
                                for r in rows if r.needs_review]}
    atomic_text(out / "batch.json", json.dumps(summary, indent=1))
    write_dashboard(rows, rubric, out / "dashboard.html", summary)
