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
asserts), so the grader can import it cheaply. Cells tagged ``lecturer`` are left out of
the template and of the student's version of the solution: a lecturer's markdown cell (notes
for the course staff) goes nowhere, a lecturer's code cell (helpers only the grader uses,
such as the forward of a hand-written backward) goes into the reference module only. A code
cell tagged ``given`` is the inverse: code the template hands out complete that is no part of
the solution (a copy of the environment students may try their agent on); it reaches the
template and the student's version, never the reference module.

Every derived notebook carries the solution notebook's cell ids (a cell without one gets
``cell-N``, N its position), so a rebuild writes the same bytes.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from ..errors import CourseError

__all__ = ["Split", "split_solution", "solution_submission", "solution_regions", "has_marker",
           "notebook_code", "plain_python", "PARAMETERS_SOURCE", "LECTURER_TAG", "GIVEN_TAG",
           "PARAMETERS_ID"]

_MARK = re.compile(r"^(?P<indent>[ \t]*)(?:#+|//+|%+)\s*(?P<word>BEGIN|END)\s+"
                   r"(?P<what>SOLUTION|HIDDEN TESTS)\s*$")
PARAMETERS_SOURCE = 'TRAIN = True   # the grader sets False when your checkpoints are there\n' \
                    'SEED = 0\nDEVICE = "cpu"'
LECTURER_TAG = "lecturer"     # cells with this tag stay in the solution notebook only
GIVEN_TAG = "given"           # code cells handed out complete: never in the reference module
PARAMETERS_ID = "parameters"  # the id of a `parameters` cell that build adds
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


def plain_python(source: str) -> str:
    """IPython syntax (``%magic``, ``!shell``) turned into plain Python."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


def notebook_code(path: Path) -> str:
    """The code cells of a notebook file as one Python source (IPython syntax transformed)."""
    nb = nbformat.read(path, as_version=4)
    return "\n".join(plain_python(c.source) for c in nb.cells if c.cell_type == "code")


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


def _tags(cell: nbformat.NotebookNode) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _derived(nb: nbformat.NotebookNode, lab: str | None = None) -> nbformat.NotebookNode:
    """An empty notebook with ``nb``'s metadata (no nbgrader's), for a derived notebook."""
    out = nbformat.v4.new_notebook(metadata=dict(nb.metadata))
    out.metadata.pop("nbgrader", None)
    if lab is not None:
        out.metadata["grader"] = {**out.metadata.get("grader", {}), "assignment": lab}
    return out


def _cell(kind: str, source: str, cell_id: str, tags: list[str]) -> nbformat.NotebookNode:
    """A new cell with a fixed id (nbformat would draw a random one) and only its tags."""
    maker = {"code": nbformat.v4.new_code_cell,
             "markdown": nbformat.v4.new_markdown_cell}.get(kind, nbformat.v4.new_raw_cell)
    cell = maker(source, metadata={"tags": tags} if tags else {})
    cell["id"] = cell_id
    return cell


def cell_id(cell: nbformat.NotebookNode, position: int) -> str:
    """The solution cell's id, or ``cell-N`` where it has none (an nbformat < 4.5 file)."""
    return str(cell.get("id") or f"cell-{position + 1}")


def _with_parameters(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` with a ``parameters`` cell before its first code cell if it has none."""
    if not any(_is_parameters(c) for c in nb.cells):
        at = next((n for n, c in enumerate(nb.cells) if c.cell_type == "code"), 0)
        nb.cells.insert(at, _cell("code", PARAMETERS_SOURCE, PARAMETERS_ID, ["parameters"]))
    return nb


def _definitions(source: str, where: str, split: Split, parts: list[str],
                 future: set[str]) -> None:
    """The definitions of one code cell (markers removed) into ``parts``, the rest dropped."""
    python = plain_python(_unmarked(source, where))
    try:
        tree = ast.parse(python)
    except SyntaxError as exc:
        raise CourseError(f"{where}, line {exc.lineno}: the solution is not valid Python "
                          f"({exc.msg}); fix the cell in the solution notebook") from None
    lines = python.splitlines()
    for node in tree.body:
        text = ast.get_source_segment(python, node)
        decorators = getattr(node, "decorator_list", None)
        if text is None:
            text = ast.unparse(node)
        elif decorators:                  # the segment starts at `def`: keep `@...` lines
            text = "\n".join(lines[decorators[0].lineno - 1:node.lineno - 1] + [text])
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            future.add(text)
        else:
            (parts if _kept(node) else split.dropped).append(text)


def _joined(parts: list[str]) -> str:
    """The kept statements as a module: two blank lines around a definition (PEP 8), none
    between two imports or constants."""
    out = parts[:1]
    block = ("def ", "class ", "async def ", "@")
    for before, part in zip(parts, parts[1:]):
        spaced = before.startswith(block) or part.startswith(block)
        out.append(("\n\n\n" if spaced else "\n") + part)
    return "".join(out)


def split_solution(nb: nbformat.NotebookNode, lab: str, where: str | Path = "notebook"
                   ) -> Split:
    """The student template and the reference source of a solution notebook.

    Lecturer code cells reach the reference only; ``given`` code cells the template only;
    every other code cell reaches both (the ``parameters`` cell's defaults too: a helper such
    as a training loop may read ``DEVICE``).
    """
    template = _derived(nb, lab)
    parts: list[str] = []
    future: set[str] = set()
    split = Split(template, "")
    for i, cell in enumerate(nb.cells):
        here = f"{where}, cell {i + 1}"
        code = cell.cell_type == "code"
        if LECTURER_TAG in _tags(cell):
            if code:
                _definitions(cell.source, here, split, parts, future)
            continue
        source, hidden = _template_source(cell.source, code, here)
        split.hidden_tests += hidden
        split.solutions += [s for s in solution_regions(cell.source, here) if s.strip()]
        template.cells.append(_cell(cell.cell_type, source, cell_id(cell, i), _tags(cell)))
        if code and GIVEN_TAG not in _tags(cell):
            _definitions(cell.source, here, split, parts, future)
    _with_parameters(template)
    header = (f'"""Reference solution of the {lab} lab (trusted; never sent to a student).\n\n'
              f"Generated from {where} by `grader build {lab}`: edit the notebook, not this "
              'file.\n"""\n')
    split.reference = header + "".join(f"{f}\n" for f in sorted(future)) + "\n" + \
        _joined(parts) + "\n"
    compile(split.reference, f"reference/{lab}.py", "exec")
    return split


def solution_submission(nb: nbformat.NotebookNode, *, lecturer: bool = False
                        ) -> nbformat.NotebookNode:
    """The solution notebook as a student would hand it in: no markers, no hidden tests,
    no lecturer cells, a ``parameters`` cell; the solution's cell ids. ``lecturer`` keeps the
    lecturer's code cells (the run that trains the solution's checkpoints)."""
    out = _derived(nb)
    for i, cell in enumerate(nb.cells):
        if LECTURER_TAG not in _tags(cell) or lecturer and cell.cell_type == "code":
            out.cells.append(_cell(cell.cell_type, _unmarked(cell.source, f"cell {i + 1}"),
                                   cell_id(cell, i), _tags(cell)))
    return _with_parameters(out)
