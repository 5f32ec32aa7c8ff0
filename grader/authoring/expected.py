"""What a lab's examples and mutants are meant to break: ``expected.yaml`` and ``mutants/``.

``assignments/LAB/expected.yaml``::

    template:
      may_pass: [item ids the blank template is allowed to pass]
    release:
      given: [reference functions the template hands out complete, e.g. Model.__init__]
    examples:
      correct: {}
      bug_kl_sign: {kl_matches_reference: "differs", kl_nonnegative: ""}

``assignments/LAB/mutants/NAME.yaml`` (a small patch of the reference)::

    description: KL with the wrong sign
    breaks: {kl_matches_reference: "differs"}
    patch:
      - find: "return 0.5 * (...)"
        replace: "return -0.5 * (...)"

``assignments/LAB/variants/``: correct-but-different solutions that must keep every point,
chosen to stress the checks (other activations, float64 inside, a private
``torch.Generator``, other module layouts). Either ``NAME.yaml``, a patch of the reference
like a mutant but with no ``breaks`` (it grades with the reference's checkpoints), or a
folder ``NAME/`` holding a notebook and the checkpoints that notebook trains.

An item id maps to words its failure message must contain ("" for any message); every item
not listed must pass. Errors name the file and the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import CourseError

__all__ = ["Expectations", "Mutant", "Variant", "load_expectations", "load_mutants",
           "load_variants"]


@dataclass(frozen=True)
class Mutant:
    """A patch of the reference source and the items it must break (none for a variant)."""

    name: str
    description: str
    breaks: dict[str, str]
    patch: tuple[tuple[str, str], ...]
    path: Path

    def apply(self, source: str) -> str:
        for find, replace in self.patch:
            count = source.count(find)
            if count != 1:
                raise CourseError(f"{self.path}: `find` text {find[:60]!r} occurs {count} times "
                                  "in the reference; it must occur exactly once (quote more of "
                                  "the line)")
            source = source.replace(find, replace)
        return source


@dataclass(frozen=True)
class Expectations:
    """The expected outcome of the template and of every example of a lab."""

    template_may_pass: frozenset[str] = frozenset()
    examples: dict[str, dict[str, str]] = field(default_factory=dict)
    path: Path | None = None
    given: tuple[str, ...] = ()      # release.given: functions the template hands out complete


def read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark else ""
        raise CourseError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})"
                          ) from None


def declared_breaks(path: Path, key: str, value: Any, items: set[str]) -> dict[str, str]:
    if value in (None, {}):
        return {}
    if isinstance(value, list):
        value = {str(v): "" for v in value}
    if not isinstance(value, dict):
        raise CourseError(f"{path}, `{key}`: expected a mapping item id -> message words")
    unknown = sorted(set(value) - items)
    if unknown:
        raise CourseError(f"{path}, `{key}`: no rubric item {', '.join(unknown)} (items: "
                          f"{', '.join(sorted(items))})")
    return {str(k): str(v or "") for k, v in value.items()}


def load_expectations(lab_dir: Path, items: set[str]) -> Expectations:
    """``expected.yaml`` of a lab folder (an empty expectation when there is none)."""
    path = lab_dir / "expected.yaml"
    doc = (read_yaml(path) or {}) if path.is_file() else {}
    template = doc.get("template") or {}
    may_pass = frozenset(declared_breaks(path, "template.may_pass", template.get("may_pass"),
                                         items))
    examples = {str(name): declared_breaks(path, f"examples.{name}", value, items)
                for name, value in (doc.get("examples") or {}).items()}
    from .examples import load_notebook_patches

    for patch in load_notebook_patches(lab_dir, items):
        if patch.kind != "example":
            continue
        if patch.name in examples:
            raise CourseError(f"{path}: `examples.{patch.name}` is declared here and in "
                              f"{patch.path}; a bug is written once: keep the patch's `breaks`")
        examples[patch.name] = patch.breaks
    given = (doc.get("release") or {}).get("given") or []
    if not isinstance(given, list) or not all(isinstance(g, str) for g in given):
        raise CourseError(f"{path}: `release.given` must be a list of function names "
                          "(`f` or `Class.method`)")
    return Expectations(may_pass, examples, path, tuple(given))


def _patch(path: Path, doc: Any) -> tuple[tuple[str, str], ...]:
    patch = doc.get("patch")
    if not isinstance(patch, list) or not patch or not all(
            isinstance(p, dict) and isinstance(p.get("find"), str)
            and isinstance(p.get("replace"), str) for p in patch):
        raise CourseError(f"{path}: `patch` must be a list of {{find: TEXT, replace: TEXT}}")
    return tuple((p["find"], p["replace"]) for p in patch)


def load_mutants(lab_dir: Path, items: set[str]) -> list[Mutant]:
    """Every ``mutants/*.yaml`` of a lab folder, sorted by name."""
    out = []
    for path in sorted((lab_dir / "mutants").glob("*.yaml")):
        doc = read_yaml(path) or {}
        patch = _patch(path, doc)
        breaks = declared_breaks(path, "breaks", doc.get("breaks"), items)
        if not breaks:
            raise CourseError(f"{path}: `breaks` is empty; a mutant must name the items it breaks")
        out.append(Mutant(path.stem, str(doc.get("description", "")), breaks, patch, path))
    return out


@dataclass(frozen=True)
class Variant:
    """A correct-but-different solution: a patch of the reference, or a submission folder."""

    name: str
    description: str
    path: Path
    patch: Mutant | None = None      # a patch of the reference (with no breaks)

    @property
    def folder(self) -> Path | None:
        return None if self.patch is not None else self.path


def load_variants(lab_dir: Path) -> list[Variant]:
    """Every ``variants/NAME.yaml`` and ``variants/NAME/`` of a lab folder, sorted by name.

    A ``NAME.yaml`` with ``of: notebook`` patches the solution notebook (grader/authoring/
    examples.py): the variant is the folder ``grader build`` writes, ``NAME/``.
    """
    from .examples import load_notebook_patches

    root = lab_dir / "variants"
    built = {p.folder: p for p in load_notebook_patches(lab_dir) if p.kind == "variant"}
    out = [Variant(p.name, p.description, folder) for folder, p in built.items()]
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if path in built or path.with_suffix("") in built:
            continue
        if path.suffix == ".yaml" and path.is_file():
            doc = read_yaml(path) or {}
            if doc.get("breaks"):
                raise CourseError(f"{path}: a variant must keep every point; a patch that "
                                  "breaks items is a mutant (move it to mutants/)")
            description = str(doc.get("description", ""))
            out.append(Variant(path.stem, description, path,
                               Mutant(path.stem, description, {}, _patch(path, doc), path)))
        elif path.is_dir() and not path.name.startswith((".", "_")):
            notebooks = list(path.glob("*.ipynb"))
            if len(notebooks) != 1:
                raise CourseError(f"{path}: a variant folder holds exactly one notebook (and "
                                  f"the checkpoints it trains); found {len(notebooks)}")
            out.append(Variant(path.name, _first_markdown(notebooks[0]), path))
    return sorted(out, key=lambda v: v.name)


def _first_markdown(notebook: Path) -> str:
    """The first line of the notebook's first markdown cell: what the variant stresses."""
    import nbformat

    try:
        nb = nbformat.read(notebook, as_version=4)
    except Exception as exc:  # noqa: BLE001 - any unreadable notebook: say which
        raise CourseError(f"{notebook}: not a readable notebook ({exc})") from None
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.strip():
            return cell.source.strip().splitlines()[0].lstrip("# ").strip()
    return ""
