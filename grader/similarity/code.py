"""What of a notebook is compared: its code, normalised, cut into units, the given code taken out.

Each code cell is parsed and printed back (``ast.unparse``), so comments, blank lines, line
breaks, quotes and redundant parentheses do not count. Each top-level statement is a unit, and
so is each method of a top-level class (the class with its other statements is one more unit).
copydetect's tokeniser (pygments) then replaces every name by ``V``, function names by ``F``,
class names by ``O`` and strings by ``S``, so renamed identifiers do not count either, and
fingerprints the result by winnowing: hashes of every ``k`` consecutive characters.

Units are joined by separator lines, and every k-gram that touches a separator is dropped
(given to copydetect as boilerplate), so no fingerprint spans two units: functions, methods
and cells in another order fingerprint the same. The template's code and the reference
functions that ``release.given`` names are boilerplate too: what the student was handed is
never evidence of copying.
"""

from __future__ import annotations

import ast
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import nbformat
import numpy as np

__all__ = ["Code", "Unit", "cell_units", "notebook_units", "given_units", "boilerplate",
           "fingerprint"]

_SEPARATOR = "~"          # pygments keeps operators as they are: a run of k of them is a wall
_UNPARSEABLE = (SyntaxError, ValueError, RecursionError, MemoryError)
Unit = tuple[str, str]    # (the class a method belongs to, or ""; the unit's code)


@dataclass(frozen=True)
class Code:
    """One submission's code as compared."""

    text: str                          # the units joined by separator lines
    spans: tuple[tuple[int, int], ...]  # each unit's [start, end) in ``text``
    owners: tuple[str, ...]            # each unit's class, for a method ("" otherwise)
    fingerprint: object                # copydetect.CodeFingerprint of ``text``

    @property
    def own(self) -> int:
        """How much code of its own it has: normalised characters covered by a fingerprint
        that is not boilerplate (copydetect's ``token_coverage``)."""
        return int(self.fingerprint.token_coverage)  # type: ignore[attr-defined]


def _python(source: str) -> str:
    from ..authoring.markers import plain_python as transform

    try:
        return transform(source)
    except Exception:  # noqa: BLE001 - IPython's transformer on hostile text: keep it as written
        return source


def cell_units(source: str) -> list[Unit]:
    """The units of one code cell, printed back from its syntax tree; a cell that does not
    parse is one unit, as written."""
    try:
        tree = ast.parse(_python(source))
        nodes: list[tuple[str, ast.AST]] = []
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                methods = [n for n in node.body
                           if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
                node.body = [n for n in node.body if n not in methods] or [ast.Pass()]
                nodes += [("", node), *((node.name, m) for m in methods)]
            else:
                nodes.append(("", node))
        return [(owner, ast.unparse(n)) for owner, n in nodes]
    except _UNPARSEABLE:
        return [("", source)] if source.strip() else []


def notebook_units(path: Path, max_chars: int) -> list[Unit]:
    """The units of every code cell of a notebook, at most ``max_chars`` of code in all (a
    unit's separator counts too: a million one-character cells cannot make it large)."""
    nb = nbformat.read(path, as_version=4)
    units, size = [], 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for unit in cell_units(str(cell.source)[:max_chars]):
            size += len(unit[1]) + 64
            if size > max_chars:
                return units
            units.append(unit)
    return units


def given_units(reference: Path, names: Iterable[str]) -> list[Unit]:
    """The reference's functions that the template hands out complete (``release.given``:
    ``f`` or ``Class.method``)."""
    wanted = set(names)
    if not wanted:
        return []
    out = []
    for node in ast.parse(reference.read_text()).body:
        if isinstance(node, ast.ClassDef):
            out += [(node.name, ast.unparse(m)) for m in node.body
                    if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))
                    and f"{node.name}.{m.name}" in wanted]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in wanted:
            out.append(("", ast.unparse(node)))
    return out


def _joined(units: list[Unit], k: int) -> tuple[str, tuple[tuple[int, int], ...]]:
    wall = _SEPARATOR * k
    text, spans = wall, []
    for _, unit in units:
        text += "\n"
        spans.append((len(text), len(text) + len(unit)))
        text += unit + "\n" + wall
    return text, tuple(spans)


def _straddling(text: str, k: int) -> np.ndarray:
    """The hashes of the k-grams of ``text`` that touch a separator (copydetect's own
    tokeniser and k-gram hash, so that they match its fingerprints)."""
    from copydetect.utils import filter_code, hashed_kgrams

    filtered, _ = filter_code(text, "code.py", "python")
    hashes = hashed_kgrams(filtered, k)
    if len(hashes) == 0:
        return np.array([], dtype=np.int64)
    wall = np.zeros(len(filtered), dtype=np.int64)
    for m in re.finditer(re.escape(_SEPARATOR) + "{%d,}" % k, filtered):
        wall[m.start():m.end()] = 1
    counts = np.concatenate([[0], np.cumsum(wall)])
    return np.asarray(hashes[(counts[k:] - counts[:-k]) > 0], dtype=np.int64)


def boilerplate(units: list[Unit], k: int) -> np.ndarray:
    """Every k-gram hash of ``units`` (the template and the given functions): code the
    student was handed."""
    from copydetect import CodeFingerprint

    text, _ = _joined(units, k)
    handed = CodeFingerprint("template.py", k, 1, language="python", fp=io.StringIO(text))
    return np.unique(np.array(sorted(handed.hashes), dtype=np.int64))


def fingerprint(units: list[Unit], k: int, handed: np.ndarray) -> Code:
    """The fingerprint of ``units`` without the handed-out code and without any k-gram that
    spans two units (window 1: every k-gram is kept, as copydetect does by default)."""
    from copydetect import CodeFingerprint

    text, spans = _joined(units, k)
    dropped = np.unique(np.concatenate([handed, _straddling(text, k)]))
    fp = CodeFingerprint("submission.py", k, 1, boilerplate=dropped, language="python",
                         fp=io.StringIO(text))
    return Code(text, spans, tuple(owner for owner, _ in units), fp)
