"""nbgrader-compatible solution markers: one solution notebook -> a template and a reference.

A lecturer writes the solution notebook ``reference/LAB.ipynb`` with nbgrader's markers::

    def kl(mu, logvar):
        ### BEGIN SOLUTION
        return 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(-1)
        ### END SOLUTION

The template replaces each solution region with a stub at the marker's indentation
(``raise NotImplementedError()`` in code, "YOUR ANSWER HERE" in markdown) and drops the
hidden-test regions (``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS``). The
reference module keeps the definitions of the code cells (imports, functions, classes,
literal constants) with the markers removed, and nothing that runs (training, prints,
asserts), so the grader can import it cheaply. Cells tagged ``lecturer`` (notes for the
course staff) are left out of the template.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from ..errors import CourseError

__all__ = ["Split", "split_solution", "solution_submission", "solution_regions", "has_marker",
           "notebook_code", "PARAMETERS_SOURCE", "LECTURER_TAG"]

_MARK = re.compile(r"^(?P<indent>[ \t]*)(?:#+|//+|%+)\s*(?P<word>BEGIN|END)\s+"
                   r"(?P<what>SOLUTION|HIDDEN TESTS)\s*$")
PARAMETERS_SOURCE = 'TRAIN = True   # the grader sets False when your checkpoints are there\n' \
                    'SEED = 0\nDEVICE = "cpu"'
LECTURER_TAG = "lecturer"     # cells with this tag stay in the solution notebook only
_CODE_STUB = "{indent}# YOUR CODE HERE\n{indent}raise NotImplementedError()"
_TEXT_STUB = "YOUR ANSWER HERE"


@dataclass
class Split:
    """What a solution notebook splits into."""

    template: nbformat.NotebookNode
    reference: str
    solutions: list[str] = field(default_factory=list)   # the text of every solution region
    hidden_tests: int = 0                                 # hidden-test regions removed
    dropped: list[str] = field(default_factory=list)      # top-level code left out of the reference


def _regions(source: str, where: str) -> list[tuple[str, str, int, int]]:
    """(kind, indent, begin line, end line) of each marked region; errors name the line."""
    out, open_ = [], None
    for n, line in enumerate(source.splitlines()):
        m = _MARK.match(line)
        if not m:
            continue
        if m["word"] == "BEGIN":
            if open_:
                raise CourseError(f"{where}, line {n + 1}: `BEGIN {m['what']}` inside an open "
                                  f"`BEGIN {open_[0]}` (line {open_[2] + 1}); close it first")
            open_ = (m["what"], m["indent"], n)
        else:
            if not open_ or open_[0] != m["what"]:
                raise CourseError(f"{where}, line {n + 1}: `END {m['what']}` without a matching "
                                  f"`BEGIN {m['what']}`")
            out.append((open_[0], open_[1], open_[2], n))
            open_ = None
    if open_:
        raise CourseError(f"{where}, line {open_[2] + 1}: `BEGIN {open_[0]}` is never closed; "
                          f"add `### END {open_[0]}`")
    return out


def has_marker(text: str) -> bool:
    """Whether ``text`` still holds a marker line."""
    return any(_MARK.match(line) for line in text.splitlines())


def solution_regions(source: str, where: str = "cell") -> list[str]:
    """The text inside each solution region of ``source``."""
    lines = source.splitlines()
    return ["\n".join(lines[b + 1:e]) for kind, _, b, e in _regions(source, where)
            if kind == "SOLUTION"]


def _template_source(source: str, code: bool, where: str) -> tuple[str, int]:
    lines = source.splitlines()
    out, last, hidden = [], 0, 0
    for kind, indent, b, e in _regions(source, where):
        out.extend(lines[last:b])
        if kind == "SOLUTION":
            out.append(_CODE_STUB.format(indent=indent) if code else _TEXT_STUB)
        else:
            hidden += 1
        last = e + 1
    out.extend(lines[last:])
    return "\n".join(out), hidden


def _unmarked(source: str, where: str) -> str:
    """The solution with every marker line and every hidden-test region removed."""
    lines = source.splitlines()
    drop: set[int] = set()
    for kind, _, b, e in _regions(source, where):
        drop |= {b, e} if kind == "SOLUTION" else set(range(b, e + 1))
    return "\n".join(line for n, line in enumerate(lines) if n not in drop)


def _python(source: str) -> str:
    """IPython syntax (``%magic``, ``!shell``) turned into plain Python."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


def notebook_code(path: Path) -> str:
    """The code cells of a notebook file as one Python source (IPython syntax transformed)."""
    nb = nbformat.read(path, as_version=4)
    return "\n".join(_python(c.source) for c in nb.cells if c.cell_type == "code")


def _kept(node: ast.stmt) -> bool:
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef,
                         ast.ClassDef)):
        return True
    if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
        try:
            ast.literal_eval(node.value)
            return True
        except ValueError:
            return False
    return False


def _is_parameters(cell: nbformat.NotebookNode) -> bool:
    return "parameters" in cell.get("metadata", {}).get("tags", [])


def split_solution(nb: nbformat.NotebookNode, lab: str, where: str | Path = "notebook"
                   ) -> Split:
    """The student template and the reference source of a solution notebook."""
    template = nbformat.v4.new_notebook(metadata=dict(nb.metadata))
    template.metadata.pop("nbgrader", None)
    template.metadata["grader"] = {**template.metadata.get("grader", {}), "assignment": lab}
    parts: list[str] = []
    future: set[str] = set()
    split = Split(template, "")
    for i, cell in enumerate(nb.cells):
        here = f"{where}, cell {i + 1}"
        code = cell.cell_type == "code"
        if LECTURER_TAG in cell.get("metadata", {}).get("tags", []):
            continue
        source, hidden = _template_source(cell.source, code, here)
        split.hidden_tests += hidden
        split.solutions += [s for s in solution_regions(cell.source, here) if s.strip()]
        meta = {k: v for k, v in cell.get("metadata", {}).items() if k == "tags"}
        if not code:
            template.cells.append(nbformat.v4.new_markdown_cell(source, metadata=meta)
                                  if cell.cell_type == "markdown"
                                  else nbformat.v4.new_raw_cell(source, metadata=meta))
            continue
        template.cells.append(nbformat.v4.new_code_cell(source, metadata=meta))
        if _is_parameters(cell):
            continue
        python = _python(_unmarked(cell.source, here))
        try:
            tree = ast.parse(python)
        except SyntaxError as exc:
            raise CourseError(f"{here}, line {exc.lineno}: the solution is not valid Python "
                              f"({exc.msg}); fix the cell in the solution notebook") from None
        for node in tree.body:
            text = ast.get_source_segment(python, node) or ast.unparse(node)
            if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                future.add(text)
            else:
                (parts if _kept(node) else split.dropped).append(text)
    if not any(_is_parameters(c) for c in template.cells):
        at = next((n for n, c in enumerate(template.cells) if c.cell_type == "code"), 0)
        template.cells.insert(at, nbformat.v4.new_code_cell(
            PARAMETERS_SOURCE, metadata={"tags": ["parameters"]}))
    header = (f'"""Reference solution of the {lab} lab (trusted; never sent to a student).\n\n'
              f"Generated from {where} by `grader build {lab}`: edit the notebook, not this "
              'file.\n"""\n')
    split.reference = header + "".join(f"{f}\n" for f in sorted(future)) + "\n" + \
        "\n\n".join(parts) + "\n"
    compile(split.reference, f"reference/{lab}.py", "exec")
    return split


def solution_submission(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The solution notebook as a student would hand it in: no markers, no hidden tests,
    no lecturer cells, a ``parameters`` cell."""
    out = nbformat.v4.new_notebook(metadata=dict(nb.metadata))
    out.metadata.pop("nbgrader", None)
    makers = {"code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell}
    for i, cell in enumerate(nb.cells):
        tags = cell.get("metadata", {}).get("tags", [])
        if LECTURER_TAG in tags:
            continue
        maker = makers.get(cell.cell_type, nbformat.v4.new_raw_cell)
        out.cells.append(maker(_unmarked(cell.source, f"cell {i + 1}"),
                               metadata={"tags": tags} if tags else {}))
    if not any(_is_parameters(c) for c in out.cells):
        at = next((n for n, c in enumerate(out.cells) if c.cell_type == "code"), 0)
        out.cells.insert(at, nbformat.v4.new_code_cell(PARAMETERS_SOURCE,
                                                       metadata={"tags": ["parameters"]}))
    return out
