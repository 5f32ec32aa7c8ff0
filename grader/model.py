"""The engine's data model: what a check returns, an item's result, a report, and what the
gradebook keeps of an item. Frozen dataclasses; converted to and from JSON here and nowhere
else (:func:`to_json`, ``from_json``).

Field names are the report's keys (``docs/report-schema.md``) and their order is the order
the keys are written in; ``tests/test_model.py`` checks every dataclass against
``grader/report/schema.json`` (each property a field and each field a property, with types
that agree), so the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .rubric import Item

__all__ = ["Verdict", "ManualAnswer", "ItemAdjustment", "ItemResult", "SubmissionInfo",
           "Report", "GradebookItem", "Outcome", "to_json", "rubric_fields",
           "GRADEBOOK_MESSAGE_CHARS"]

Outcome = Literal["passed", "failed", "error", "skipped", "pending"]
_OMIT_NONE = {"omit_none": True}    # a key written only when it has a value
GRADEBOOK_MESSAGE_CHARS = 300


def to_json(value: Any) -> Any:
    """``value`` as JSON data: a dataclass as an object of its fields in order (a field
    marked ``omit_none`` left out while None), tuples as lists; other values as they are
    (their conversion to the report's types is ``grader.report.values``'s job)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not (f.metadata.get("omit_none") and getattr(value, f.name) is None)}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Verdict:
    """What a check found. ``fraction`` in [0, 1] of the item's points is earned.

    Values are as the check computed them (tensors, numbers, text); the pipeline converts
    them to the report's types (``grader.report.values.verdict_fields``).
    """

    fraction: float
    message: str
    counterexample: dict[str, Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)
    figures: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def passed(cls, message: str, **details: Any) -> Verdict:
        return cls(1.0, message, details=details)

    @classmethod
    def failed(cls, message: str, counterexample: dict[str, Any] | None = None,
               **details: Any) -> Verdict:
        return cls(0.0, message, counterexample=counterexample, details=details)


@dataclass(frozen=True)
class ManualAnswer:
    """A manual item's answer for the TA (``$defs/manual``)."""

    criteria: str
    answer: str
    cells: tuple[int, ...]
    found_by: Literal["tag", "heading"] | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ManualAnswer:
        return cls(data["criteria"], data["answer"], tuple(data["cells"]), data["found_by"])


@dataclass(frozen=True)
class ItemAdjustment:
    """A TA's points laid over an item's (``$defs/adjustment``): what the grader gave,
    and who changed it, when and why."""

    automatic_score: float
    comment: str
    by: str
    at: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ItemAdjustment:
        return cls(**data)


def _adjustment(data: dict[str, Any] | None) -> ItemAdjustment | None:
    return None if data is None else ItemAdjustment.from_json(data)


class _Scored:
    """What an item's points and a TA's adjustment of them mean, the same for a report's
    :class:`ItemResult` and the gradebook's :class:`GradebookItem` (derived, never written:
    not fields)."""

    score: float
    max_score: float
    outcome: Outcome
    needs_review: bool
    adjustment: ItemAdjustment | None

    @property
    def adjusted(self) -> bool:
        """A TA's points are laid over the grader's."""
        return self.adjustment is not None

    @property
    def automatic_score(self) -> float:
        """The points the grader gave, whatever a TA has since given."""
        return self.score if self.adjustment is None else self.adjustment.automatic_score

    @property
    def awaits_review(self) -> bool:
        """A TA must look before the grade is final (a grader-side problem), and has not
        yet given their points."""
        return bool(self.needs_review) and self.adjustment is None

    @property
    def awaits_grading(self) -> bool:
        """A manual item no TA has graded yet."""
        return self.outcome == "pending" and self.adjustment is None

    @property
    def passes(self) -> bool:
        """Passed as the grader found, or, once a TA has adjusted it, given full points."""
        if self.adjustment is not None:
            return self.score >= self.max_score
        return self.outcome == "passed"


@dataclass(frozen=True, kw_only=True)
class ItemResult(_Scored):
    """One rubric item's result in a report (``$defs/item``)."""

    id: str
    title: str
    max_score: float
    visibility: Literal["public", "hidden"]
    check: str
    hint: str
    score: float
    outcome: Outcome
    message: str
    counterexample: dict[str, Any] | None
    details: dict[str, Any]
    figures: tuple[dict[str, str], ...] = ()
    traceback: str | None
    needs_review: bool
    error_kind: str | None = None           # why there is no verdict (``ERROR_KINDS``)
    manual: ManualAnswer | None = field(default=None, metadata=_OMIT_NONE)   # pending only
    duration_s: float
    adjustment: ItemAdjustment | None = field(default=None, metadata=_OMIT_NONE)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ItemResult:
        manual = data.get("manual")
        return cls(**{**data, "figures": tuple(data.get("figures", ())),
                      "manual": None if manual is None else ManualAnswer.from_json(manual),
                      "adjustment": _adjustment(data.get("adjustment"))})

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = to_json(self)
        return out


def rubric_fields(item: Item) -> dict[str, Any]:
    """The fields of an item's result that its rubric item gives, whatever the check finds."""
    return {"id": item.id, "title": item.title, "max_score": item.points,
            "visibility": item.visibility, "check": item.check, "hint": item.hint}


@dataclass(frozen=True)
class SubmissionInfo:
    """What was graded (``properties/submission``)."""

    path: str
    notebook: str
    sha256: str
    files: tuple[str, ...]


@dataclass(frozen=True)
class Report:
    """One graded (or self-checked) submission: ``report.json``. ``execution``, ``timings``
    and ``versions`` stay mappings: open-ended records the schema describes key by key."""

    schema_version: str
    assignment: str
    title: str
    mode: Literal["grade", "check"]
    score: float
    max_score: float
    submission: SubmissionInfo
    items: tuple[ItemResult, ...]
    execution: dict[str, Any]
    timings: dict[str, float]
    versions: dict[str, str]
    created: str
    warnings: tuple[str, ...]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Report:
        sub = data["submission"]
        return cls(**{**data, "submission": SubmissionInfo(**{**sub,
                                                               "files": tuple(sub["files"])}),
                      "items": tuple(ItemResult.from_json(i) for i in data["items"]),
                      "warnings": tuple(data["warnings"])})

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = to_json(self)
        return out


@dataclass(frozen=True, kw_only=True)
class GradebookItem(_Scored):
    """What the gradebook keeps of an :class:`ItemResult`: a declared projection, each field
    one of the item's (``tests/test_model.py`` holds them equal), built by :meth:`of`.

    It keeps what a grade, an export and the TA's lists need: the points, the outcome,
    whether and why a TA must look (``needs_review``, ``error_kind``), the message cut to
    300 characters (the why of ``needs-review.csv`` and where a manual answer is), and a
    TA's ``adjustment`` once laid over it. It leaves the rest (hint, counterexample,
    details, figures, traceback, the manual answer, duration) in ``report.json``, which
    the row names: a row stays small, and the report stays the one full record.
    """

    id: str
    title: str = ""                          # "" in rows written before it was kept
    outcome: Outcome
    score: float
    max_score: float
    visibility: Literal["public", "hidden"]
    needs_review: bool
    error_kind: str | None
    message: str = ""
    adjustment: ItemAdjustment | None = field(default=None, metadata=_OMIT_NONE)

    @classmethod
    def of(cls, item: ItemResult) -> GradebookItem:
        kept = {f.name: getattr(item, f.name) for f in dataclasses.fields(cls)}
        return cls(**{**kept, "message": item.message[:GRADEBOOK_MESSAGE_CHARS]})

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GradebookItem:
        return cls(**{**data, "needs_review": bool(data.get("needs_review")),
                      "error_kind": data.get("error_kind"),
                      "adjustment": _adjustment(data.get("adjustment"))})

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = to_json(self)
        return out
