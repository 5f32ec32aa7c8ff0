"""A copy disguised the way a student hides one: every local name and parameter renamed, the
comments rewritten, the code reformatted (printed back from its syntax tree), the functions
of each cell and the methods of each class in reverse order, and runs of code cells that only
define functions in reverse order. The public names a grader calls, attributes and keyword
arguments are kept, so the copy still runs and grades like the original."""

from __future__ import annotations

import ast
import builtins
import copy
import itertools

import nbformat

__all__ = ["disguise"]

_WORDS = ("alpha", "beta", "gamma", "delta", "omega", "kappa", "theta", "zeta", "iota", "rho")


def _module_names(tree: ast.Module) -> set[str]:
    """Names bound at the top level of a cell (what the grader may import from it)."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            continue
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                names.add(sub.id)
            elif isinstance(sub, ast.alias):
                names.add((sub.asname or sub.name).split(".")[0])
    return names


def _renaming(trees: list[ast.Module]) -> dict[str, str]:
    """Parameters and locals of every function, less anything the renaming could break."""
    local, kept = set(), {"self", "cls", *dir(builtins)}
    for tree in trees:
        kept |= _module_names(tree)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                local |= {a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)}
                local |= {n.id for n in ast.walk(node)
                          if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
            elif isinstance(node, ast.keyword) and node.arg:
                kept.add(node.arg)
    fresh = (f"{w}{n}" for n in itertools.count() for w in _WORDS)
    return {name: next(fresh) for name in sorted(local - kept)}


class _Rename(ast.NodeTransformer):
    def __init__(self, names: dict[str, str]) -> None:
        self.names = names

    def visit_Name(self, node: ast.Name) -> ast.Name:
        node.id = self.names.get(node.id, node.id)
        return node

    def visit_arg(self, node: ast.arg) -> ast.arg:
        node.arg = self.names.get(node.arg, node.arg)
        return node


def _reverse(body: list[ast.stmt], undecorated: bool) -> None:
    """The function definitions of ``body`` in reverse order, in the places they held."""
    slots = [i for i, n in enumerate(body) if isinstance(n, ast.FunctionDef)
             and not (undecorated and n.decorator_list)]
    for i, node in zip(slots, [body[i] for i in reversed(slots)]):
        body[i] = node


def _rewritten(tree: ast.Module) -> str:
    _reverse(tree.body, undecorated=False)
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            _reverse(node.body, undecorated=True)      # @x.setter needs x before it
    lines = []
    for n, line in enumerate(ast.unparse(tree).splitlines()):
        stripped = line.lstrip()
        if stripped.startswith(("def ", "return ")):
            lines.append(f"{line[:len(line) - len(stripped)]}# step {n}, as in the lecture")
        lines.append(line)
    return "\n".join(lines)


def _only_functions(cell: nbformat.NotebookNode) -> bool:
    body = ast.parse(cell.source).body
    return bool(body) and all(isinstance(n, ast.FunctionDef) for n in body)


def disguise(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The disguised copy of a notebook (the ``parameters`` cell is left as it is)."""
    nb = copy.deepcopy(nb)
    code = [c for c in nb.cells if c.cell_type == "code"
            and "parameters" not in c.get("metadata", {}).get("tags", [])]
    trees = [ast.parse(c.source) for c in code]
    rename = _Rename(_renaming(trees))
    for cell, tree in zip(code, trees):
        cell.source = _rewritten(rename.visit(tree))
    runs: list[list[int]] = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue                                   # markdown between keeps a run going
        if not _only_functions(cell):
            runs.append([])
        elif runs:
            runs[-1].append(i)
        else:
            runs.append([i])
    for run in runs:
        for i, cell in zip(run, [nb.cells[j] for j in reversed(run)]):
            nb.cells[i] = cell
    return nb
