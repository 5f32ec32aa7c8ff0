"""Examples and notebook variants as patches of the solution notebook, and their checkpoints.

A lab with a solution notebook (``reference/LAB.ipynb``) writes each example submission and
each correct-but-different notebook variant once, as a small patch of the solution as a
student would hand it in (markers, hidden tests and lecturer cells gone)::

    # assignments/LAB/examples/bug_kl_sign.yaml       (or variants/NAME.yaml with `of: notebook`)
    description: "gaussian_kl with the wrong sign"
    breaks: {kl_matches_reference: "differs"}   # item -> words its message must contain
    checkpoints: solution                       # solution | trained (see below)
    patch:
      - find: "return 0.5 * (mu ** 2"           # exactly once in the notebook (or in `cell`)
        replace: "return -0.5 * (mu ** 2"
      - cell: mlp                               # a cell, by its id: replaced whole
        source: |
          class MLP(nn.Module): ...
      - append: |                               # a new code cell at the end
          VAE.sample = lambda self, n: torch.rand(n, 1, 8, 8)

A lab's metric baselines (``baselines/NAME.yaml``: models that must earn no metric credit,
graded by ``grader calibrate``) are patches too, written to ``baselines/NAME/LAB.ipynb``; they
declare no ``breaks``.

``grader build LAB`` writes the patched notebook to ``examples/NAME/LAB.ipynb`` (a variant's to
``variants/NAME/LAB.ipynb``); ``examples/correct`` is the solution itself. ``checkpoints``
declares where the example's checkpoints come from: ``trained`` (its training path differs
from the solution's, so ``grader build LAB --checkpoints`` runs its own notebook and stores
what it writes in its folder) or ``solution`` (training unchanged: it is graded with
``reference/checkpoints/``, which ``validate`` and ``demo`` copy into a scratch copy of the
folder; the repository holds no copy). ``correct`` always shares the solution's.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from ..errors import CourseError
from ..rubric import load_rubric
from .expected import declared_breaks, read_yaml

__all__ = ["Edit", "NotebookPatch", "load_notebook_patches", "shares_solution_checkpoints",
           "copy_submission", "submission_folder", "staged_examples", "CHECKPOINT_SOURCES"]

CHECKPOINT_SOURCES = ("solution", "trained")
_EDIT_KEYS = ({"find", "replace"}, {"cell", "find", "replace"}, {"cell", "source"}, {"append"})
_KINDS = (("example", "examples"), ("variant", "variants"), ("baseline", "baselines"))


@dataclass(frozen=True)
class Edit:
    """One change: ``find`` -> ``replace`` (in ``cell`` or anywhere), ``cell``'s source, or a
    code cell ``append``-ed at the end."""

    cell: str | None = None
    find: str | None = None
    replace: str | None = None
    source: str | None = None
    append: str | None = None


@dataclass(frozen=True)
class NotebookPatch:
    """An example or a notebook variant: the solution notebook with a few edits."""

    name: str
    kind: str                      # example | variant | baseline
    description: str
    breaks: dict[str, str]         # item -> words its message must contain; {} = full marks
    checkpoints: str               # solution | trained
    edits: tuple[Edit, ...]
    path: Path

    @property
    def folder(self) -> Path:
        """Where ``grader build`` writes the notebook (and the trainer its checkpoints)."""
        return self.path.parent / self.name

    def apply(self, nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
        """``nb`` (the student's version of the solution, not modified) with the edits."""
        out = nbformat.from_dict(nb)
        for n, edit in enumerate(self.edits):
            where = f"{self.path}, patch {n + 1}"
            if edit.append is not None:             # a stable id: the same bytes each build
                cell = nbformat.v4.new_code_cell(edit.append.rstrip("\n"))
                cell["id"] = f"{self.name}-{n + 1}"[:64]
                out.cells.append(cell)
                continue
            cells = [c for c in out.cells if edit.cell is None or c.get("id") == edit.cell]
            if edit.cell is not None and not cells:
                ids = ", ".join(str(c.get("id")) for c in out.cells)
                raise CourseError(f"{where}: no cell `{edit.cell}` in the solution notebook "
                                  f"(its cells: {ids})")
            if edit.source is not None:
                cells[0].source = edit.source.rstrip("\n")
                continue
            assert edit.find is not None and edit.replace is not None
            hits = [c for c in cells for _ in range(c.source.count(edit.find))]
            if len(hits) != 1:
                raise CourseError(f"{where}: `find` text {edit.find[:60]!r} occurs {len(hits)} "
                                  "times in the solution notebook (student's version); it "
                                  "must occur exactly once (quote more, or name its `cell`)")
            hits[0].source = hits[0].source.replace(edit.find, edit.replace)
        return out


def _edits(path: Path, doc: dict[str, Any]) -> tuple[Edit, ...]:
    patch = doc.get("patch")
    if not isinstance(patch, list) or not patch or not all(
            isinstance(p, dict) and set(p) in _EDIT_KEYS
            and all(isinstance(v, str) for v in p.values()) for p in patch):
        raise CourseError(f"{path}: `patch` must be a list of {{find: TEXT, replace: TEXT}} "
                          "(optionally with `cell: ID`), {cell: ID, source: TEXT} or "
                          "{append: TEXT}")
    return tuple(Edit(**p) for p in patch)


def _patch(path: Path, kind: str, items: set[str] | None) -> NotebookPatch | None:
    doc = read_yaml(path) or {}
    if not isinstance(doc, dict):
        raise CourseError(f"{path}: expected a mapping (description, breaks, checkpoints, patch)")
    if kind == "variant" and doc.get("of", "reference") != "notebook":
        return None                                   # a patch of reference/LAB.py
    source = doc.get("checkpoints")
    if source not in CHECKPOINT_SOURCES:
        raise CourseError(f"{path}: `checkpoints` is {source!r}; say `solution` (its training "
                          "is the solution's: graded with reference/checkpoints/) or `trained` "
                          "(`grader build --checkpoints` trains its own)")
    breaks = doc.get("breaks") or {}
    if kind == "variant" and breaks:
        raise CourseError(f"{path}: a variant must keep every point; a notebook that breaks "
                          "items is an example (move it to examples/)")
    if kind == "baseline" and breaks:
        raise CourseError(f"{path}: a baseline declares no `breaks` (`grader calibrate` "
                          "reads its metrics); a notebook that must fail items is an example")
    if items is not None:
        breaks = declared_breaks(path, "breaks", breaks, items)
    return NotebookPatch(path.stem, kind, str(doc.get("description", "")),
                         {str(k): str(v or "") for k, v in breaks.items()}, source,
                         _edits(path, doc), path)


def load_notebook_patches(lab_dir: Path, items: set[str] | None = None
                          ) -> list[NotebookPatch]:
    """``examples/*.yaml``, the ``variants/*.yaml`` with ``of: notebook`` and
    ``baselines/*.yaml``, by name.

    ``items`` (the rubric's item ids) checks the ``breaks``; None leaves them unchecked.
    """
    out = [_patch(path, kind, items) for kind, folder in _KINDS
           for path in sorted((lab_dir / folder).glob("*.yaml"))]
    return [p for p in out if p is not None]


def _lab_of(folder: Path) -> tuple[Path, str, str] | None:
    """(course, lab, kind folder) of ``course/assignments/LAB/KIND/NAME``, else None."""
    parents = folder.parents
    if len(parents) < 4 or parents[2].name != "assignments":
        return None
    return parents[3], parents[1].name, parents[0].name


def shares_solution_checkpoints(folder: Path) -> bool:
    """Whether the example or variant in ``folder`` is graded with the solution's checkpoints:
    ``examples/correct`` of a lab with a solution notebook, or a patch declaring ``solution``."""
    found = _lab_of(folder.resolve())
    if found is None or found[2] not in tuple(folder for _, folder in _KINDS):
        return False
    course, lab, kind = found
    if kind == "examples" and folder.name == "correct":
        return (course / "reference" / f"{lab}.ipynb").is_file()
    path = folder.parent / f"{folder.name}.yaml"
    if not path.is_file():
        return False
    patch = _patch(path, dict((f, k) for k, f in _KINDS)[kind], None)
    return patch is not None and patch.checkpoints == "solution"


def copy_submission(folder: Path, to: Path) -> Path:
    """A complete copy of the example or variant in ``folder`` at ``to`` (a new folder): its
    files, and the solution's checkpoints where it shares them."""
    to.mkdir(parents=True)
    shared = shares_solution_checkpoints(folder)
    names: tuple[str, ...] = ()
    if shared:
        course, lab, _ = _lab_of(folder.resolve())  # type: ignore[misc]
        names = load_rubric(course / "rubrics" / f"{lab}.yaml").checkpoints
    for path in folder.iterdir():
        if path.is_file() and path.name not in names:
            shutil.copyfile(path, to / path.name)
    for name in names:
        source = course / "reference" / "checkpoints" / name
        if not source.is_file():
            raise CourseError(f"{source}: the solution's checkpoint is missing, and "
                              f"{folder} shares it; run `grader build {lab} --checkpoints`")
        shutil.copyfile(source, to / name)
    return to


def submission_folder(folder: Path, scratch: Path) -> Path:
    """The folder to grade for an example or variant: itself, or, where it shares the
    solution's checkpoints, a complete copy in ``scratch``."""
    if not shares_solution_checkpoints(folder):
        return folder
    return copy_submission(folder, scratch / folder.parent.name / folder.name)


def staged_examples(examples: Path, scratch: Path) -> Path:
    """A lab's ``examples/`` as a class to grade: a complete copy of each example folder
    under ``scratch`` (the patches and the README beside them are no submissions)."""
    for folder in sorted(p for p in examples.iterdir() if p.is_dir()):
        copy_submission(folder, scratch / folder.name)
    return scratch
