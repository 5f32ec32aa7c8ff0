"""Whose notebooks are compared: a class read the way ``grader batch`` reads it.

``SUBMISSIONS`` is either what ``grader batch`` takes (a folder or ``.zip``: an LMS export, or
one folder or zip per student), recognised by ``grader.batch.ingest`` itself, so a student has
the same id here as in the gradebook; or the ``--out`` folder of a ``grader batch`` run, whose
gradebook names the students and which keeps each graded notebook as
``students/<id>/submission.ipynb``.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..batch.gradebook import Gradebook
from ..batch.ingest import Skipped, ingest, slug
from ..batch.runner import KEPT_NOTEBOOK
from ..errors import CourseError

__all__ = ["Submitted", "read_class", "is_batch_folder"]
_WHAT = ("pass an LMS export (its .zip or unpacked folder), a folder holding one folder or "
         "zip per student, or the --out folder of `grader batch`")


@dataclass(frozen=True)
class Submitted:
    """One student's notebook to compare."""

    student: str                 # the id the gradebook uses
    name: str
    notebook: Path
    cohort: str = ""             # "" for this class; an earlier cohort's label otherwise
    report: str | None = None    # students/<id>/report.html of a batch folder, if any

    @property
    def key(self) -> tuple[str, str]:
        return (self.cohort, self.student)


def is_batch_folder(path: Path) -> bool:
    """Whether ``path`` is the --out folder of a ``grader batch`` run."""
    return path.is_dir() and (path / "gradebook.sqlite").is_file() \
        and (path / "batch.json").is_file()


def _batch_summary(folder: Path) -> dict:
    try:
        return json.loads((folder / "batch.json").read_text())
    except (OSError, ValueError) as exc:
        raise CourseError(f"{folder / 'batch.json'}: cannot be read ({exc}); run `grader "
                          "batch` again with the same --out folder") from None


def _from_batch(folder: Path, lab: str, cohort: str
                ) -> tuple[list[Submitted], list[Skipped]]:
    summary = _batch_summary(folder)
    if summary.get("assignment") != lab:
        raise CourseError(f"{folder}: a batch of `{summary.get('assignment')}`, not `{lab}`; "
                          f"pass --assignment {summary.get('assignment')} or the folder of "
                          f"the {lab} batch")
    book = Gradebook(folder / "gradebook.sqlite")
    try:
        rows = book.latest(lab, summary.get("rubric_sha256", ""))
    finally:
        book.close()
    found, skipped = [], []
    for row in rows:
        notebook = folder / "students" / slug(row.student) / KEPT_NOTEBOOK
        if notebook.is_file():
            report = f"students/{slug(row.student)}/report.html" if row.report else None
            found.append(Submitted(row.student, row.name, notebook, cohort, report))
        else:
            skipped.append(Skipped(row.student, f"no {notebook.relative_to(folder)} (graded "
                                   "by a grader that did not keep notebooks); run the same "
                                   "`grader batch` command again (it grades nothing twice and "
                                   "keeps them), or pass the LMS export instead"))
    return found, skipped


def _check_path(path: Path) -> None:
    if not path.exists():
        raise CourseError(f"{path}: no such file or folder; {_WHAT}")
    if path.is_file() and path.suffix.lower() != ".zip":
        raise CourseError(f"{path}: a {path.suffix or 'suffix-less'} file, not a .zip of "
                          f"submissions; {_WHAT}")
    if path.is_file() and not zipfile.is_zipfile(path):
        raise CourseError(f"{path}: not a readable zip file (damaged or incomplete); download "
                          "the export again, or pass its unpacked folder")


def read_class(path: Path, lab: str, scratch: Path, cohort: str = ""
               ) -> tuple[list[Submitted], list[Skipped], str]:
    """The students of ``path`` with their latest notebook, what was skipped and why, and the
    layout recognised (``batch`` for a ``grader batch`` folder)."""
    path = Path(path)
    _check_path(path)
    if is_batch_folder(path):
        found, skipped = _from_batch(path, lab, cohort)
        layout = "batch"
    else:
        ingested = ingest(path, scratch)
        found = [Submitted(a.student, a.name, next(a.folder.glob("*.ipynb")), cohort)
                 for a in ingested.attempts]
        skipped, layout = ingested.skipped, ingested.layout
    if not found:
        why = "; ".join(f"{s.source}: {s.reason}" for s in skipped[:3])
        raise CourseError(f"{path}: no student's notebook found ({layout} layout"
                          + (f"; skipped {why}" if why else "") + f"); {_WHAT}")
    return found, skipped, layout
