"""``grader.model`` against ``grader/report/schema.json``: each schema property a field and each
field a property, the schema's required keys exactly the fields without a default, and types
(and enums) that agree; JSON written and read back unchanged, keys in the report's order."""

from __future__ import annotations

import dataclasses
import json
import types
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import pytest

from grader.model import (GRADEBOOK_MESSAGE_CHARS, GradebookItem, ItemAdjustment, ItemResult,
                          ManualAnswer, Report, SubmissionInfo)
from grader.report import validate_report
from grader.report.schema import load_schema
from test_report import make_item, make_report

SCHEMA = load_schema()
_JSON_TYPE = {str: "string", bool: "boolean", int: "integer", float: "number",
              type(None): "null"}


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = SCHEMA["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _annotation_types(tp: Any) -> set[str]:
    """The JSON types a field of annotation ``tp`` is written as."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return set().union(*map(_annotation_types, get_args(tp)))
    if origin is Literal:
        return {_JSON_TYPE[type(a)] for a in get_args(tp)}
    if tp in _JSON_TYPE:
        return {_JSON_TYPE[tp]}
    if tp is dict or origin is dict or dataclasses.is_dataclass(tp):
        return {"object"}
    if tp in (tuple, list) or origin in (tuple, list):
        return {"array"}
    raise AssertionError(f"no JSON type for {tp!r}")


def _schema_types(node: dict[str, Any]) -> set[str]:
    node = _resolve(node)
    if "enum" in node:
        return {_JSON_TYPE[type(v)] for v in node["enum"]}
    kinds = node["type"]
    return set(kinds) if isinstance(kinds, list) else {kinds}


def _literals(tp: Any) -> set[Any] | None:
    """The values a Literal annotation allows (None included), or None if it is none."""
    args = get_args(tp) if get_origin(tp) in (Union, types.UnionType) else (tp,)
    found = [a for a in args if get_origin(a) is Literal]
    if not found:
        return None
    return set(get_args(found[0])) | ({None} if type(None) in args else set())


def _element(tp: Any) -> Any:
    """The dataclass a field holds (itself, optional, or as a tuple's elements), if any."""
    args = [a for a in get_args(tp) if a is not type(None) and a is not Ellipsis] or [tp]
    inner = [a for a in args if dataclasses.is_dataclass(a)]
    if inner:
        return inner[0]
    nested = [a for a in args if get_origin(a) in (tuple, list)]
    return _element(nested[0]) if nested else None


def _agree(cls: type, node: dict[str, Any], where: str) -> list[str]:
    """Every disagreement between dataclass ``cls`` and the schema object ``node``."""
    node = _resolve(node)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = get_type_hints(cls)
    problems = []
    if set(fields) != set(node["properties"]):
        problems.append(f"{where}: fields {sorted(set(fields) - set(node['properties']))} not "
                        f"in the schema; properties {sorted(set(node['properties']) - set(fields))}"
                        " not fields")
    bare = {n for n, f in fields.items() if f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING}
    if bare != set(node["required"]):
        problems.append(f"{where}: required {sorted(node['required'])} but fields without a "
                        f"default {sorted(bare)}")
    for name in set(fields) & set(node["properties"]):
        prop, tp = node["properties"][name], hints[name]
        written = _annotation_types(tp) - ({"null"} if fields[name].metadata.get("omit_none")
                                           else set())
        allowed = _schema_types(prop)
        if not written <= allowed or not allowed - {"integer"} <= written | {"number"}:
            problems.append(f"{where}.{name}: {sorted(written)} against {sorted(allowed)}")
        literals, enum = _literals(tp), _resolve(prop).get("enum")
        if enum is not None and literals is not None and literals != set(enum):
            problems.append(f"{where}.{name}: Literal {literals} against enum {enum}")
        inner = _element(tp)
        if inner is not None:
            sub = _resolve(prop)
            problems += _agree(inner, sub.get("items", sub), f"{where}.{name}")
    return problems


def test_the_model_and_the_report_schema_agree() -> None:
    assert _agree(Report, SCHEMA, "$") == []


def test_a_drifted_field_is_found() -> None:
    """The comparison can fail: a field the schema lacks, and a type that disagrees."""
    drifted = dataclasses.make_dataclass("Drifted", [("criteria", int), ("answer", str),
                                                     ("cells", tuple), ("found_by", str),
                                                     ("extra", str)])
    problems = _agree(drifted, SCHEMA["$defs"]["manual"], "manual")
    assert any("['extra'] not in the schema" in p for p in problems)
    assert any("manual.criteria: ['integer']" in p for p in problems)
    assert any("manual.found_by" in p for p in problems)


# The order main's pipeline wrote an item's keys in: the rubric's, the check's, the timing;
# an adjustment (grader.batch.adjust) last.
PIPELINE_ORDER = ("id", "title", "max_score", "visibility", "check", "hint", "score",
                  "outcome", "message", "counterexample", "details", "figures", "traceback",
                  "needs_review", "error_kind", "manual", "duration_s", "adjustment")


def _pipeline_report() -> dict[str, Any]:
    """A report as the pipeline writes it: every item with error_kind and figures; a pending
    item with its answer; an adjusted item."""
    report = make_report()
    manual = make_item(id="why", outcome="pending", score=1.5, max_score=2.0, check="manual",
                       details={}, manual={"criteria": "c", "answer": "a", "cells": [3],
                                           "found_by": "tag"},
                       adjustment={"automatic_score": 0.0, "comment": "ok", "by": "ta",
                                   "at": "2025-01-01T00:00:00+00:00"})
    report["items"] = [{k: {"error_kind": None, **item}[k] for k in PIPELINE_ORDER
                        if k in {"error_kind": None, **item}}
                       for item in (*report["items"], manual)]
    report["score"] += 1.5
    report["max_score"] += 2.0
    return report


def test_json_is_read_and_written_back_unchanged() -> None:
    report = _pipeline_report()
    validate_report(report)
    model = Report.from_json(report)
    assert isinstance(model.items[-1].manual, ManualAnswer)
    assert isinstance(model.items[-1].adjustment, ItemAdjustment)
    assert isinstance(model.submission, SubmissionInfo)
    assert json.dumps(model.to_json()) == json.dumps(report)


def test_the_model_is_frozen() -> None:
    item = ItemResult.from_json(_pipeline_report()["items"][0])
    with pytest.raises(dataclasses.FrozenInstanceError):
        item.score = 0.0  # type: ignore[misc]
    assert dataclasses.replace(item, score=1.0).score == 1.0 and item.score == 5.0


def test_the_gradebook_keeps_a_declared_projection_of_an_item() -> None:
    kept = {f.name: f for f in dataclasses.fields(GradebookItem)}
    full = get_type_hints(ItemResult)
    assert set(kept) <= set(full)
    assert {n: get_type_hints(GradebookItem)[n] for n in kept} == {n: full[n] for n in kept}
    item = ItemResult.from_json(_pipeline_report()["items"][-1])
    item = dataclasses.replace(item, message="m" * 1000, needs_review=True)
    row = GradebookItem.of(item)
    assert row.message == "m" * GRADEBOOK_MESSAGE_CHARS
    assert all(getattr(row, n) == getattr(item, n) for n in kept if n != "message")
    assert GradebookItem.from_json(json.loads(json.dumps(row.to_json()))) == row


def test_a_gradebook_item_written_before_title_and_message_were_kept_reads() -> None:
    old = {"id": "a", "outcome": "passed", "score": 1.0, "max_score": 1.0,
           "visibility": "public", "needs_review": False, "error_kind": None}
    item = GradebookItem.from_json(old)
    assert (item.title, item.message, item.adjustment) == ("", "", None)


def test_an_items_derived_state_is_the_same_in_the_report_and_the_gradebook() -> None:
    """adjusted, automatic_score, awaits_review, awaits_grading, passes: derived once, in the
    model, for a report's item and the gradebook's projection alike (and never written)."""
    adjustment = {"automatic_score": 0.5, "comment": "ok", "by": "ta",
                  "at": "2025-01-01T00:00:00+00:00"}
    cases = [({}, (False, 5.0, False, False, True)),
             ({"outcome": "error", "score": 0.0, "needs_review": True, "error_kind": "timeout"},
              (False, 0.0, True, False, False)),
             ({"outcome": "error", "score": 5.0, "needs_review": True, "error_kind": "timeout",
               "adjustment": adjustment}, (True, 0.5, False, False, True)),
             ({"outcome": "pending", "score": 0.0}, (False, 0.0, False, True, False)),
             ({"outcome": "pending", "score": 4.0, "adjustment": adjustment},
              (True, 0.5, False, False, False))]
    for overrides, expected in cases:
        item = ItemResult.from_json({"error_kind": None, **make_item(**overrides)})
        for model in (item, GradebookItem.of(item)):
            assert (model.adjusted, model.automatic_score, model.awaits_review,
                    model.awaits_grading, model.passes) == expected, overrides
            assert "passes" not in model.to_json()
