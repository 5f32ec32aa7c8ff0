"""The report's JSON Schema (``schema.json``) and the checks a schema cannot express.

The engine builds a plain dict; this module is the contract between it and everything
that reads a report (the HTML view, the TA's gradebook scripts, regrade diffs). A
report that breaks the contract is a grader bug, so it is refused with the JSON path
of every problem rather than rendered half-right.
"""

from __future__ import annotations

import functools
import json
import math
from importlib import resources
from typing import Any, Iterator

import jsonschema

__all__ = ["SCHEMA_VERSION", "ERROR_KINDS", "load_schema", "validate_report", "item_problems"]

SCHEMA_VERSION = "1.2"

# Why an item has no verdict on the student's answer (``error_kind``), and whether a TA must
# look before its 0 stands: True where the cause is on the grader's side, not the student's.
ERROR_KINDS = {
    "student_exception": False,    # the student's code raised
    "missing_name": False,         # the notebook does not define a name the rubric needs
    "kernel_died": False,          # the student's code killed the kernel during the check
    "timeout": False,              # a call ran past its limit
    "missing_checkpoint": False,   # skipped: a checkpoint was neither submitted nor made
    "not_recorded": False,         # skipped: a kit's recorded reference lacks the input
    "protocol": True,              # the kernel's reply was malformed or oversized
    "kernel_start": True,          # the kernel could not start: no student code ran
    "grader": True,                # the check itself raised: a grader bug
    "unreportable": True,          # the check's result could not be put in the report
    "lost_definitions": True,      # a restarted kernel could not replay the notebook's cells
}

_MAX_LISTED = 10
_INVALID = "invalid report (schema {version}): {count} problem(s)\n{problems}"
# Free-form sections: any JSON value goes, non-finite floats are written as strings.
_FREE_FORM = ("details", "parameters")
# Scores are rounded to 4 decimals by grader.scoring; allow for that rounding.
_SUM_TOL = 1e-3


@functools.lru_cache(maxsize=1)
def _schema_text() -> str:
    return resources.files(__package__).joinpath("schema.json").read_text(encoding="utf-8")


def load_schema() -> dict[str, Any]:
    """The report schema (draft 2020-12) as a fresh dict the caller may modify."""
    schema: dict[str, Any] = json.loads(_schema_text())
    return schema


@functools.lru_cache(maxsize=2)
def _validator(part: str = "") -> jsonschema.protocols.Validator:
    """The whole report's validator, or one of a part (``item``) of it."""
    schema = load_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    if part:
        schema = {"$schema": schema["$schema"], "$defs": schema["$defs"],
                  "$ref": f"#/$defs/{part}"}
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _path(parts: Any) -> str:
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _short(text: str, limit: int = 300) -> str:
    """jsonschema quotes the whole offending value; a report can hold megabytes of it."""
    return text if len(text) <= limit else text[:limit] + " ..."


def _non_finite(node: Any, parts: tuple[Any, ...] = ()) -> Iterator[str]:
    """Non-finite floats outside the free-form sections (NaN slips past ``minimum``)."""
    if isinstance(node, float) and not math.isfinite(node):
        yield f"{_path(parts)}: {node!r} is not a finite number"
    elif isinstance(node, dict):
        for key, value in node.items():
            if key not in _FREE_FORM:
                yield from _non_finite(value, (*parts, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _non_finite(value, (*parts, i))


def _over(where: str, score: float, limit: float, what: str) -> Iterator[str]:
    if score > limit + _SUM_TOL:
        yield f"{where}: {score!r} is greater than {what} {limit!r}"


def _item_rules(item: dict[str, Any], where: str) -> Iterator[str]:
    """One item's relations: score <= max_score; a cause only without a verdict; a cause on
    the grader's side always flagged for review (never a silent zero)."""
    yield from _over(f"{where}.score", item["score"], item["max_score"], "max_score")
    kind = item.get("error_kind")
    if kind is not None and item["outcome"] in ("passed", "failed"):
        yield f"{where}.error_kind: {kind!r} on a {item['outcome']} item (only error or skipped)"
    if ERROR_KINDS.get(kind) and not item["needs_review"]:
        yield f"{where}.needs_review: false, but error_kind {kind!r} always needs review"
    yield from _manual_rules(item, where)


def _manual_rules(item: dict[str, Any], where: str) -> Iterator[str]:
    """A manual item is ``pending`` (and only it has ``manual``), never a grader-side cause,
    and has 0 points until a TA's ``adjustment`` gives it some; an adjustment's automatic
    score is a score of the item."""
    pending = item["outcome"] == "pending"
    if pending != ("manual" in item):
        yield (f"{where}.manual: a pending item has `manual` (its answer for the TA), and only "
               "a pending item")
    if pending and (item.get("error_kind") is not None or item["needs_review"]):
        yield f"{where}.outcome: a pending item has no error_kind and needs_review false"
    adjustment = item.get("adjustment")
    if adjustment is None and pending and item["score"] > 0:
        yield f"{where}.score: {item['score']!r} on a pending item that no TA has graded"
    if adjustment is not None:
        yield from _over(f"{where}.adjustment.automatic_score", adjustment["automatic_score"],
                         item["max_score"], "max_score")


def _consistency(report: dict[str, Any]) -> Iterator[str]:
    """Relations between fields: 0 <= score <= max_score, totals equal the items' sums."""
    items = report["items"]
    for i, item in enumerate(items):
        yield from _item_rules(item, f"$.items[{i}]")
    yield from _over("$.score", report["score"], report["max_score"], "max_score")
    for key in ("score", "max_score"):
        summed = sum(item[key] for item in items)
        if not math.isclose(report[key], summed, abs_tol=_SUM_TOL):
            yield f"$.{key}: {report[key]!r} is not the sum of the items' {key} ({summed!r})"
    ids = [item["id"] for item in items]
    for i, item_id in enumerate(ids):
        if item_id in ids[:i]:
            yield f"$.items[{i}].id: {item_id!r} appears twice"


def item_problems(item: dict[str, Any]) -> list[str]:
    """What keeps one report item (``$defs/item``) out of a valid report; empty if nothing.

    The pipeline asks this of each item as it is graded, so that one item a check could not
    report becomes an error that needs review and the rest of the report is still written.
    """
    errors = sorted(_validator("item").iter_errors(item), key=lambda e: list(map(str, e.path)))
    problems = [f"{_path(e.absolute_path)}: {_short(e.message)}" for e in errors]
    return problems or [*_non_finite(item), *_item_rules(item, "$")]


def validate_report(report: dict[str, Any]) -> None:
    """Check ``report`` against the schema and the cross-field rules.

    Raises:
        ValueError: listing each problem as ``$.json.path: what is wrong``.
    """
    errors = sorted(_validator().iter_errors(report), key=lambda e: list(map(str, e.path)))
    problems = [f"{_path(e.absolute_path)}: {_short(e.message)}" for e in errors]
    if not problems:
        problems = [*_non_finite(report), *_consistency(report)]
    if problems:
        listed = problems[:_MAX_LISTED]
        if len(problems) > _MAX_LISTED:
            listed.append(f"... and {len(problems) - _MAX_LISTED} more")
        raise ValueError(_INVALID.format(version=SCHEMA_VERSION, count=len(problems),
                                         problems="\n".join(f"  {p}" for p in listed)))
