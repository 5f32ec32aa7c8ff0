"""``grader lint``: a rubric's mistakes before any student is graded.

Every finding names the file, the line, what is wrong and the fix: the rubric does not load
(unknown check kinds, unknown parameters, malformed YAML, points that do not add up to
``total_points``), an item names a function or class that the reference or the template does
not define, a metric threshold has no calibration record, a checkpoint the rubric lists is
not in ``reference/checkpoints/``, a manual item's answer cell is not in the template.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..calibrate import metrics
from ..errors import RubricError
from ..rubric import Rubric, load_rubric
from .markers import notebook_code

__all__ = ["Finding", "lint", "lint_rubric"]

_STUDENT_KEYS = ("function", "class")    # names a student's notebook must define
_REFERENCE_KEYS = ("function", "class", "forward")


@dataclass(frozen=True)
class Finding:
    path: Path
    line: int | None
    message: str
    fix: str
    severity: str = "error"             # error | warning

    def __str__(self) -> str:
        where = f"{self.path}" + (f":{self.line}" if self.line else "")
        return f"{where}: {self.severity}: {self.message}\n  fix: {self.fix}"


def _names(params: Any, keys: tuple[str, ...]) -> Iterator[str]:
    if isinstance(params, dict):
        for key, value in params.items():
            if key in keys and isinstance(value, str):
                yield value
            else:
                yield from _names(value, keys)
    elif isinstance(params, list):
        for value in params:
            yield from _names(value, keys)


def _defined(source: str) -> set[str]:
    """Top-level names a module (or a notebook's joined code cells) defines."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    out: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            out |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.Assign):
            out |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return out


def _item_lines(text: str) -> dict[str, tuple[int, int]]:
    """item id -> (first line, last line) of its block in the rubric text (1-based)."""
    starts = [(m.group(1), text.count("\n", 0, m.start()) + 1)
              for m in re.finditer(r"^\s*-\s*id:\s*['\"]?([\w.-]+)", text, re.M)]
    total = text.count("\n") + 1
    return {name: (line, starts[k + 1][1] - 1 if k + 1 < len(starts) else total)
            for k, (name, line) in enumerate(starts)}


def lint_rubric(course: Path, path: Path) -> list[Finding]:
    """Every finding of one rubric file."""
    try:
        rubric = load_rubric(path)
    except RubricError as exc:
        return [Finding(path, exc.line, str(exc).split("\n")[0].split(": ", 1)[-1],
                        exc.hint or "see docs/rubrics.md for the rubric format")]
    text = path.read_text()
    lines = _item_lines(text)
    out: list[Finding] = []
    if rubric.assignment != path.stem:
        out.append(Finding(path, 1, f"`assignment: {rubric.assignment}` differs from the file "
                           f"name", f"rename the file to {rubric.assignment}.yaml or fix the key"))
    reference = course / rubric.reference
    template = course / "assignments" / rubric.assignment / rubric.notebook
    ref_names = _defined(reference.read_text()) if reference.is_file() else None
    tpl_names = _defined(notebook_code(template)) if template.is_file() else None
    if ref_names is None:
        out.append(Finding(path, None, f"the reference {rubric.reference} does not exist",
                           f"write it, or `grader build {rubric.assignment}` from "
                           f"reference/{rubric.assignment}.ipynb"))
    if tpl_names is None:
        out.append(Finding(path, None, f"the template {template.relative_to(course)} does not "
                           "exist", f"write it, or `grader build {rubric.assignment}`"))
    for item in rubric.items:
        out += _lint_item(path, rubric, item, lines.get(item.id, (None, None)), text,
                          ref_names, tpl_names)
        if item.manual and template.is_file():
            out += _lint_manual(path, item, lines.get(item.id, (None, None))[0], template)
    for name in rubric.checkpoints:
        if not (course / "reference" / "checkpoints" / name).is_file():
            out.append(Finding(path, _key_line(text, "checkpoints"), f"the checkpoint {name} "
                               "is not in reference/checkpoints/", "train the reference and "
                               f"save its state_dict as reference/checkpoints/{name}"))
    if rubric.total_points is None:
        out.append(Finding(path, None, f"no `total_points` (the items add up to "
                           f"{rubric.max_score:g})", f"add `total_points: {rubric.max_score:g}` "
                           "so a change of points is deliberate", "warning"))
    return out


def _key_line(text: str, key: str) -> int | None:
    m = re.search(rf"^{key}:", text, re.M)
    return text.count("\n", 0, m.start()) + 1 if m else None


def _lint_item(path: Path, rubric: Rubric, item: Any, span: tuple[int | None, int | None],
               text: str, ref_names: set[str] | None, tpl_names: set[str] | None
               ) -> list[Finding]:
    out = []
    line = span[0]
    for name in sorted(set(_names(item.params, _REFERENCE_KEYS))):
        if ref_names is not None and name not in ref_names:
            out.append(Finding(path, line, f"item `{item.id}` names `{name}`, which "
                               f"{rubric.reference} does not define",
                               "fix the name in the rubric or define it in the reference"))
    for name in sorted(set(_names(item.params, _STUDENT_KEYS))):
        if tpl_names is not None and name not in tpl_names:
            out.append(Finding(path, line, f"item `{item.id}` calls `{name}`, which the "
                               "template does not define: students cannot know they must "
                               "write it", "add a stub of it to the template"))
    if item.check in metrics() and span[0]:
        block = "\n".join(text.splitlines()[span[0] - 1:span[1]])
        if not re.search(r"#.*calibrat", block):
            out.append(Finding(path, line, f"item `{item.id}` ({item.check}) has thresholds "
                               "without a calibration record", f"run `grader calibrate "
                               f"{rubric.assignment} --write` (it writes the anchors and a "
                               "`# calibrated ...` line)"))
    return out


def _lint_manual(path: Path, item: Any, line: int | None, template: Path) -> list[Finding]:
    """A manual item's answer must have its place in the template: a cell with its tag (a
    heading alone works, but a student who edits the heading loses it)."""
    import nbformat

    from ..manual import locate

    nb = nbformat.read(template, as_version=4)
    cells, found_by = locate(nb, item.answer)
    where = " and ".join(f"{k} `{v}`" for k, v in item.answer.items())
    if not cells:
        return [Finding(path, line, f"manual item `{item.id}` looks for its answer by {where}, "
                        "which the template does not have: students cannot know where to "
                        "answer", "add the answer cell (with that tag) under that heading "
                        "to the template")]
    if item.answer.get("tag") and found_by != "tag":
        return [Finding(path, line, f"manual item `{item.id}`: no template cell is tagged "
                        f"`{item.answer['tag']}` (the answer is found by its heading)",
                        "tag the template's answer cell, or drop `tag`", "warning")]
    return []


def lint(course: Path, labs: list[str] | None = None) -> dict[Path, list[Finding]]:
    """Findings of the rubrics of ``labs`` (default: every rubric of the course)."""
    paths = ([course / "rubrics" / f"{lab}.yaml" for lab in labs] if labs
             else sorted((course / "rubrics").glob("*.yaml")))
    return {p: lint_rubric(course, p) for p in paths}
