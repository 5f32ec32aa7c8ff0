"""A notebook built from keyed cells: how a lab's ``make_template.py`` writes its template.

A lab lists its cells once, as ``(kind, key, source)``; the template is that list, and each
example submission is the same list with some keyed cells' sources replaced. The cell ids
are the keys, so a rebuilt notebook is byte for byte the same file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import nbformat

Cell = tuple[str, str, str]                    # ("code" | "markdown", key, source)


def keyed_notebook(cells: Iterable[Cell], metadata: Mapping[str, Any],
                   solution: Mapping[str, str] | None = None,
                   solution_keys: Iterable[str] = ()) -> nbformat.NotebookNode:
    """The notebook of ``cells``, the keyed cells in ``solution`` replaced by its sources.

    Only cells named in ``solution_keys`` may be replaced (a misspelt key is a ValueError,
    not a silently unchanged template); the cell keyed ``parameters`` gets the tag
    papermill and the grader look for.
    """
    solution = dict(solution or {})
    unknown = set(solution) - set(solution_keys)
    if unknown:
        raise ValueError(f"not solution cells: {sorted(unknown)}")
    nb = nbformat.v4.new_notebook(metadata=dict(metadata))
    for kind, key, source in cells:
        source = solution.get(key, source).strip("\n")
        if kind == "markdown":
            cell = nbformat.v4.new_markdown_cell(source)
        else:
            cell = nbformat.v4.new_code_cell(source)
            if key == "parameters":
                cell.metadata["tags"] = ["parameters"]
        cell["id"] = key
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def write_notebook(nb: nbformat.NotebookNode, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
