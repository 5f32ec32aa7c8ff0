"""Rubric files: ``yaml.safe_load`` semantics into frozen dataclasses, validated eagerly.

Every error names the file, the line and the key, and says what to write instead.
Check kinds and their parameters are validated against the registry at load time,
so a typo fails when the lecturer loads the rubric, not halfway through a batch.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .checks import REGISTRY
from .checks.params import problems
from .checks.registry import Metric
from .errors import RubricError
from .sandbox import Limits
from .scoring import anchor_problem

__all__ = ["Item", "Rubric", "load_rubric", "VISIBILITIES", "PARTIAL_RULES", "MANUAL"]

VISIBILITIES = ("public", "hidden")
PARTIAL_RULES = ("all_or_nothing", "proportional")
MANUAL = "manual"        # the kind of an item a TA grades by hand (no check runs)
_TOP_KEYS = {"assignment", "title", "notebook", "reference", "checkpoints", "parameters",
             "limits", "seed", "max_examples", "items", "description", "total_points"}
_ITEM_KEYS = {"id", "title", "points", "visibility", "check", "params", "partial", "hint",
              "criteria", "answer"}
_MANUAL_KEYS = {"criteria", "answer"}          # only on `check: manual` items
_ANSWER_KEYS = ("tag", "heading")


@dataclass(frozen=True)
class Item:
    """One rubric item: a property, its points and how it is checked."""

    id: str
    title: str
    points: float
    visibility: str
    check: str
    params: dict[str, Any]
    partial: str = "all_or_nothing"
    hint: str = ""
    criteria: str = ""               # manual items: what the TA grades on
    answer: dict[str, str] = field(default_factory=dict)    # manual: {tag, heading}

    @property
    def manual(self) -> bool:
        """Graded by a TA, not by a check: pending until a TA gives its points."""
        return self.check == MANUAL

    @property
    def fingerprint(self) -> str:
        """A hash of what grades this item (points, check, params, partial rule, criteria,
        where the answer is): a TA's adjustment of it holds while this is unchanged. The
        title, hint and visibility are presentation and left out."""
        graded = {"id": self.id, "points": self.points, "check": self.check,
                  "params": self.params, "partial": self.partial, "criteria": self.criteria,
                  "answer": self.answer}
        text = json.dumps(graded, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Rubric:
    """A validated rubric. ``path`` and ``sha256`` say exactly which file graded."""

    assignment: str
    title: str
    notebook: str
    reference: str
    items: tuple[Item, ...]
    checkpoints: tuple[str, ...] = ()
    parameters: dict[str, Any] = field(default_factory=dict)
    limits: Limits = Limits()
    seed: int = 0
    max_examples: int = 30
    description: str = ""
    total_points: float | None = None
    path: Path = Path()
    sha256: str = ""

    def visible(self, public_only: bool) -> tuple[Item, ...]:
        return tuple(i for i in self.items if i.visibility == "public" or not public_only)

    @property
    def max_score(self) -> float:
        return sum(i.points for i in self.items)


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers the line of every mapping key."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping = _LineDict()
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in mapping:
            raise RubricError(loader.name, f"duplicate key `{key}`",
                              line=key_node.start_mark.line + 1, key=str(key))
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.lines[key] = key_node.start_mark.line + 1
    mapping.line = node.start_mark.line + 1
    return mapping


class _LineDict(dict):  # type: ignore[type-arg]
    def __init__(self) -> None:
        super().__init__()
        self.lines: dict[Any, int] = {}
        self.line = 0


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _line(node: Any, key: str | None = None) -> int | None:
    if isinstance(node, _LineDict):
        return node.lines.get(key, node.line) if key else node.line
    return None


def _require(path: Path, node: dict[str, Any], key: str, kind: type | tuple[type, ...],
             where: str = "") -> Any:
    if key not in node:
        raise RubricError(path, f"missing required key `{key}`{where}", line=_line(node), key=key)
    value = node[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise RubricError(path, f"`{key}` must be {names}, got {value!r}", line=_line(node, key),
                          key=key)
    return value


def _item(path: Path, node: Any, index: int, seen: set[str]) -> Item:
    if not isinstance(node, dict):
        raise RubricError(path, f"items[{index}] must be a mapping", key=f"items[{index}]")
    where = f" in items[{index}]"
    unknown = set(node) - _ITEM_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise RubricError(path, f"unknown key `{key}`{where}", line=_line(node, key), key=key,
                          hint=f"item keys are {', '.join(sorted(_ITEM_KEYS))}")
    item_id = _require(path, node, "id", str, where)
    if item_id in seen:
        raise RubricError(path, f"duplicate item id `{item_id}`", line=_line(node, "id"), key="id")
    seen.add(item_id)
    points = _require(path, node, "points", (int, float), where)
    if points < 0:
        raise RubricError(path, "points must be >= 0", line=_line(node, "points"), key="points")
    visibility = node.get("visibility", "hidden")
    if visibility not in VISIBILITIES:
        raise RubricError(path, f"visibility must be public or hidden, got {visibility!r}",
                          line=_line(node, "visibility"), key="visibility")
    kind = _require(path, node, "check", str, where)
    if kind == MANUAL:
        return _manual_item(path, node, where, item_id, points, visibility)
    if kind not in REGISTRY:
        raise RubricError(path, f"unknown check kind `{kind}`{where}", line=_line(node, "check"),
                          key="check", hint=f"known kinds: {', '.join(sorted(REGISTRY))}, "
                                            f"and {MANUAL} (graded by a TA)")
    stray = sorted(_MANUAL_KEYS & set(node))
    if stray:
        raise RubricError(path, f"`{stray[0]}` is only for manual items{where}",
                          line=_line(node, stray[0]), key=stray[0],
                          hint=f"set `check: {MANUAL}` (a TA grades it), or remove `{stray[0]}`")
    params = node.get("params", {}) or {}
    if not isinstance(params, dict):
        raise RubricError(path, "`params` must be a mapping", line=_line(node, "params"),
                          key="params")
    spec = REGISTRY[kind]
    missing = spec.required - set(params)
    extra = set(params) - spec.required - spec.optional
    if missing or extra:
        key = sorted(missing or extra)[0]
        problem = "is required" if missing else "is not a parameter"
        raise RubricError(path, f"params.{key} {problem} of check `{kind}`{where}",
                          line=_line(params, key) or _line(node, "params"), key=f"params.{key}",
                          hint=f"`{kind}` takes {', '.join(sorted(spec.required | spec.optional))}")
    for key, why in problems(params, spec.types):
        fix = spec.types[key]
        sep = "" if why.startswith((".", "[")) else " "
        raise RubricError(path, f"params.{key}{sep}{why} (check `{kind}`){where}",
                          line=_line(params, key) or _line(node, "params"), key=f"params.{key}",
                          hint=f"`{key}` is {fix.kind}" + (f"; leave it out for the default "
                                                          f"{fix.default!r}"
                                                          if fix.default is not None else ""))
    _anchors(path, params, spec.metric, kind, where)
    partial = node.get("partial", "all_or_nothing")
    if partial not in PARTIAL_RULES:
        raise RubricError(path, f"partial must be one of {PARTIAL_RULES}, got {partial!r}",
                          line=_line(node, "partial"), key="partial")
    return Item(id=item_id, title=str(node.get("title", item_id)), points=float(points),
                visibility=visibility, check=kind, params=_plain(params), partial=partial,
                hint=str(node.get("hint", "")))


def _anchors(path: Path, params: dict[str, Any], metric: Metric | None, kind: str,
             where: str) -> None:
    """A metric's ``zero_at``/``full_at`` must give linear credit a direction, the one in
    which the metric improves (``grader.scoring.linear_credit`` credits along it)."""
    if metric is None or "zero_at" not in params or "full_at" not in params:
        return
    zero, full = params["zero_at"], params["full_at"]
    better = "higher" if metric.higher_is_better else "lower"
    problem = anchor_problem(zero, full)
    if problem is None and (full > zero) != metric.higher_is_better:
        problem = (f"full_at {full!r} is {'below' if full < zero else 'above'} zero_at {zero!r}, "
                   f"but a {better} {metric.detail} is better")
    if problem:
        raise RubricError(path, f"params.full_at: {problem} (check `{kind}`){where}",
                          line=_line(params, "full_at") or _line(params), key="params.full_at",
                          hint=f"full_at (full credit) must be {better} than zero_at (no "
                               "credit); `grader calibrate` proposes both")


def _manual_item(path: Path, node: dict[str, Any], where: str, item_id: str, points: float,
                 visibility: str) -> Item:
    """A ``check: manual`` item: ``criteria`` for the TA, ``answer`` locating the student's
    cells (by ``tag`` and/or ``heading``); no ``params``, no ``partial`` (a TA gives any
    points from 0 to ``points``)."""
    for key in ("params", "partial"):
        if key in node:
            raise RubricError(path, f"a manual item takes no `{key}`{where}",
                              line=_line(node, key), key=key,
                              hint="a TA gives it any points from 0 to `points`; remove "
                                   f"`{key}`")
    criteria = _require(path, node, "criteria", str, where)
    if not criteria.strip():
        raise RubricError(path, f"`criteria` is empty{where}", line=_line(node, "criteria"),
                          key="criteria", hint="say what earns the points: the TA grades on it")
    answer = _require(path, node, "answer", dict, where)
    unknown = sorted(set(answer) - set(_ANSWER_KEYS))
    given = {k: answer[k] for k in _ANSWER_KEYS if k in answer}
    if unknown or not given or not all(isinstance(v, str) and v.strip() for v in given.values()):
        key = f"answer.{unknown[0]}" if unknown else "answer"
        raise RubricError(path, f"`answer` must name the student's cells by `tag` and/or "
                          f"`heading` (non-empty text), got {dict(answer)!r}{where}",
                          line=_line(answer, unknown[0]) if unknown else _line(node, "answer"),
                          key=key, hint="e.g. answer: {tag: explain-grad-b, heading: "
                                        "\"Question 1\"}")
    return Item(id=item_id, title=str(node.get("title", item_id)), points=float(points),
                visibility=visibility, check=MANUAL, params={}, hint=str(node.get("hint", "")),
                criteria=criteria.strip(), answer={k: v.strip() for k, v in given.items()})


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _limits(path: Path, node: Any) -> Limits:
    if node is None:
        return Limits()
    names = {f.name for f in dataclasses.fields(Limits)}
    for key, value in node.items():
        if key not in names:
            raise RubricError(path, f"unknown limit `{key}`", line=_line(node, key),
                              key=f"limits.{key}", hint=f"limits are {', '.join(sorted(names))}")
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise RubricError(path, f"limit `{key}` must be a positive number",
                              line=_line(node, key), key=f"limits.{key}")
    return dataclasses.replace(Limits(), **dict(node))


def load_rubric(path: Path) -> Rubric:
    """Load and validate one rubric file. Raises RubricError naming file, line and key.

    A batch worker grades many submissions against one rubric: the parsed rubric is kept
    for the file's exact text (parsing is 0.2 s of pure-Python YAML with line marks); a
    changed file is parsed again."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise RubricError(path, f"cannot read the rubric: {exc.strerror}") from None
    return _parse_rubric(path, text)


@functools.lru_cache(maxsize=32)
def _parse_rubric(path: Path, text: str) -> Rubric:
    try:
        loader = _LineLoader(text)
        loader.name = str(path)
        try:
            doc = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise RubricError(path, f"not valid YAML: {getattr(exc, 'problem', exc)}",
                          line=mark.line + 1 if mark else None) from None
    if not isinstance(doc, dict):
        raise RubricError(path, "a rubric is a mapping with `assignment`, `items`, ...")
    unknown = set(doc) - _TOP_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise RubricError(path, f"unknown key `{key}`", line=_line(doc, key), key=key,
                          hint=f"top-level keys are {', '.join(sorted(_TOP_KEYS))}")
    items_node = _require(path, doc, "items", list)
    if not items_node:
        raise RubricError(path, "`items` is empty", line=_line(doc, "items"), key="items")
    seen: set[str] = set()
    items = tuple(_item(path, node, i, seen) for i, node in enumerate(items_node))
    assignment = _require(path, doc, "assignment", str)
    declared = doc.get("total_points")
    if declared is not None:
        summed = sum(i.points for i in items)
        if not isinstance(declared, (int, float)) or abs(summed - declared) > 1e-9:
            raise RubricError(path, f"the items' points add up to {summed:g}, not the declared "
                              f"total_points {declared!r}", line=_line(doc, "total_points"),
                              key="total_points", hint="fix the points of an item, or set "
                              f"total_points: {summed:g}")
    return Rubric(
        assignment=assignment, title=str(doc.get("title", assignment)),
        notebook=str(doc.get("notebook", f"{assignment}.ipynb")),
        reference=str(doc.get("reference", f"reference/{assignment}.py")), items=items,
        checkpoints=tuple(doc.get("checkpoints") or ()),
        parameters=_plain(doc.get("parameters") or {}), limits=_limits(path, doc.get("limits")),
        seed=int(doc.get("seed", 0)), max_examples=int(doc.get("max_examples", 30)),
        description=str(doc.get("description", "")), path=path,
        total_points=None if declared is None else float(declared),
        sha256=hashlib.sha256(text.encode()).hexdigest())
