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

An item id maps to words its failure message must contain ("" for any message); every item
not listed must pass. Errors name the file and the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import CourseError

__all__ = ["Expectations", "Mutant", "load_expectations", "load_mutants"]


@dataclass(frozen=True)
class Mutant:
    """A patch of the reference source and the items it must break."""

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


def _yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark else ""
        raise CourseError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})"
                          ) from None


def _breaks(path: Path, key: str, value: Any, items: set[str]) -> dict[str, str]:
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
    if not path.is_file():
        return Expectations()
    doc = _yaml(path) or {}
    template = doc.get("template") or {}
    may_pass = frozenset(_breaks(path, "template.may_pass", template.get("may_pass"), items))
    examples = {str(name): _breaks(path, f"examples.{name}", value, items)
                for name, value in (doc.get("examples") or {}).items()}
    given = (doc.get("release") or {}).get("given") or []
    if not isinstance(given, list) or not all(isinstance(g, str) for g in given):
        raise CourseError(f"{path}: `release.given` must be a list of function names "
                          "(`f` or `Class.method`)")
    return Expectations(may_pass, examples, path, tuple(given))


def load_mutants(lab_dir: Path, items: set[str]) -> list[Mutant]:
    """Every ``mutants/*.yaml`` of a lab folder, sorted by name."""
    out = []
    for path in sorted((lab_dir / "mutants").glob("*.yaml")):
        doc = _yaml(path) or {}
        patch = doc.get("patch")
        if not isinstance(patch, list) or not patch or not all(
                isinstance(p, dict) and isinstance(p.get("find"), str)
                and isinstance(p.get("replace"), str) for p in patch):
            raise CourseError(f"{path}: `patch` must be a list of {{find: TEXT, replace: TEXT}}")
        breaks = _breaks(path, "breaks", doc.get("breaks"), items)
        if not breaks:
            raise CourseError(f"{path}: `breaks` is empty; a mutant must name the items it breaks")
        out.append(Mutant(path.stem, str(doc.get("description", "")), breaks,
                          tuple((p["find"], p["replace"]) for p in patch), path))
    return out
