"""The report as a self-contained HTML page, and both files written side by side.

Every string in a report may come from the student (messages quote their values,
tracebacks their code), so the template autoescapes everything, control characters
and ANSI colour codes are removed before rendering, and images are embedded only
after their base64 is decoded and found to be a PNG. The page needs no JavaScript
and loads nothing from elsewhere.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from pathlib import Path
from typing import Any

import jinja2

from ..model import ItemResult, Report
from .schema import validate_report
from .values import jsonable

__all__ = ["render_html", "write_reports"]

# CSI (colours, cursor), OSC (titles, hyperlinks; ended by BEL or ST), then lone 2-byte escapes.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?")
# C0/C1 controls other than tab and newline have no place in HTML text.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_MAX_FIGURE_BYTES = 4 << 20
_MAX_TEXT = 20_000
_MAX_CELL_TEXT = 300
_FREE_FORM = ("details", "parameters")


def clean_text(text: str, limit: int = _MAX_TEXT) -> str:
    """Plain, printable text: no ANSI escapes, no control characters, no lone surrogates."""
    text = _CONTROL.sub("", _ANSI.sub("", text.replace("\r\n", "\n")))
    text = text.encode("utf-8", "replace").decode("utf-8")
    if len(text) > limit:
        text = text[:limit] + f"\n... ({len(text) - limit} more characters cut)"
    return text


def png_data_uri(png_base64: str) -> str | None:
    """A ``data:`` URI for a real PNG, or None: anything else is never embedded."""
    try:
        raw = base64.b64decode(png_base64, validate=True)
    except (binascii.Error, ValueError):
        return None
    if not raw.startswith(_PNG_MAGIC) or len(raw) > _MAX_FIGURE_BYTES:
        return None
    # Re-encoding means only the base64 alphabet ever reaches the attribute.
    return "data:image/png;base64," + base64.b64encode(raw).decode("ascii")


def _number(value: float) -> str:
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    return f"{value:.6g}" if math.isfinite(value) else _nonfinite_name(value)


def _nonfinite_name(value: float) -> str:
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _cell(value: Any) -> str:
    """One value of a details or parameters table, short and readable."""
    if isinstance(value, (int, float)):
        return _number(value)
    if isinstance(value, str):
        return clean_text(value, _MAX_CELL_TEXT)
    text = json.dumps(_jsonable(value), separators=(", ", ": "), allow_nan=False)
    return clean_text(text, _MAX_CELL_TEXT)


def _rows(mapping: dict[str, Any], prefix: str = "", depth: int = 0) -> list[tuple[str, str]]:
    """Flatten nested dicts one level into ``a.b`` keys; deeper values shown as JSON."""
    rows: list[tuple[str, str]] = []
    for key, value in mapping.items():
        name = clean_text(f"{prefix}{key}", _MAX_CELL_TEXT)
        if isinstance(value, dict) and value and depth < 1:
            rows.extend(_rows(value, f"{name}.", depth + 1))
        else:
            rows.append((name, _cell(value)))
    return rows


def _jsonable(value: Any) -> Any:
    """Free-form data made strict JSON (one converter for every report value: values.py)."""
    return jsonable(value)


def _strict(report: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``report`` whose free-form sections are strict JSON."""
    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: _jsonable(v) if k in _FREE_FORM else walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node
    out: dict[str, Any] = walk(report)
    return out


def _figures(figures: list[dict[str, str]]) -> tuple[list[dict[str, str]], int]:
    shown, dropped = [], 0
    for fig in figures:
        uri = png_data_uri(fig["png_base64"])
        if uri is None:
            dropped += 1
        else:
            shown.append({"title": clean_text(fig["title"], 500), "uri": uri})
    return shown, dropped


def _maybe(text: str | None) -> str | None:
    return None if text is None else clean_text(text)


def _item_view(item: ItemResult, index: int) -> dict[str, Any]:
    ce = item.counterexample
    figures, dropped = _figures(list(item.figures))
    return {
        "anchor": f"item-{index}", "id": clean_text(item.id, 200),
        "title": clean_text(item.title, 500), "outcome": item.outcome,
        "points": f"{_number(float(item.score))} / {_number(float(item.max_score))}",
        "hidden": item.visibility == "hidden", "check": clean_text(item.check, 200),
        "message": clean_text(item.message), "hint": clean_text(item.hint),
        "counterexample": None if ce is None else {
            "inputs": [(clean_text(k, 200), clean_text(v)) for k, v in ce["inputs"].items()],
            "expected": _maybe(ce.get("expected")), "actual": _maybe(ce.get("actual"))},
        "traceback": _maybe(item.traceback),
        "details": _rows(item.details), "figures": figures, "figures_dropped": dropped,
        "needs_review": item.needs_review, "duration": _number(float(item.duration_s)),
        "error_kind": item.error_kind or "",
        **_ta_view(item),
    }


def _reviewed(report: Report) -> list[str]:
    """A line under the grader's warnings when a TA has since graded items under review."""
    done = [i.id for i in report.items if i.needs_review and i.adjusted]
    return [f"reviewed since by a TA, who gave the points: {', '.join(done)}"] if done else []


def _ta_view(item: ItemResult) -> dict[str, Any]:
    """What a TA did or must do: a manual item's criteria and the student's answer (hostile
    text, cleaned and cut like every other), and an adjustment's automatic score, comment,
    author and time."""
    manual, adjustment = item.manual, item.adjustment
    label = item.outcome
    if adjustment is not None and item.outcome == "pending":
        label = "graded by a TA"
    return {
        "label": label,
        "manual": None if manual is None else {
            "criteria": clean_text(manual.criteria, 5000),
            "answer": clean_text(manual.answer),
            "cells": ", ".join(str(i + 1) for i in manual.cells)},
        "adjustment": None if adjustment is None else {
            "automatic": _number(float(adjustment.automatic_score)),
            "comment": clean_text(adjustment.comment, 5000),
            "by": clean_text(adjustment.by, 200), "at": clean_text(adjustment.at, 100)},
    }


def _cell_view(cell: dict[str, Any]) -> dict[str, Any]:
    error = cell["error"]
    return {"index": cell["index"], "status": cell["status"],
            "duration": "" if cell["duration_s"] is None else _number(float(cell["duration_s"])),
            "error": None if error is None else {
                "ename": clean_text(error["ename"], 200), "evalue": clean_text(error["evalue"]),
                "traceback": clean_text(error["traceback"])}}


def _view(report: Report) -> dict[str, Any]:
    """Everything the template shows, already cleaned and formatted."""
    score, max_score = float(report.score), float(report.max_score)
    execution, sub = report.execution, report.submission
    cells = [_cell_view(c) for c in execution["cells"]]
    return {
        "title": clean_text(report.title, 500), "assignment": clean_text(report.assignment),
        "mode": report.mode, "score": _number(score), "max_score": _number(max_score),
        "percent": f"{100 * score / max_score:.0f}%" if max_score > 0 else "",
        "adjusted": sum(i.adjusted for i in report.items),
        "automatic_score": _number(float(sum(i.automatic_score for i in report.items))),
        "pending": sum(i.awaits_grading for i in report.items),
        "submission": {"path": clean_text(sub.path, 1000),
                       "notebook": clean_text(sub.notebook, 1000),
                       "sha256": clean_text(sub.sha256, 1000),
                       "files": [clean_text(f, 300) for f in sub.files]},
        "created": clean_text(report.created, 100),
        "warnings": [clean_text(w, 2000) for w in [*report.warnings, *_reviewed(report)]],
        "entries": [_item_view(item, i) for i, item in enumerate(report.items, 1)],
        "sandbox": {"enabled": execution["sandbox"]["enabled"],
                    "kind": execution["sandbox"]["kind"],
                    "detail": clean_text(execution["sandbox"]["detail"], 2000),
                    "limits": _rows(execution["sandbox"]["limits"])},
        "flags": [name.replace("_", " ") for name in ("timed_out", "kernel_died",
                                                       "output_truncated") if execution[name]],
        "cells_total": len(cells),
        "cell_counts": [(s.replace("_", " "), n) for s in ("ok", "error", "timeout", "not_run")
                        if (n := sum(c["status"] == s for c in cells))],
        "bad_cells": [c for c in cells if c["status"] in ("error", "timeout")],
        "parameters": _rows(execution["parameters"]),
        "timings": _rows(report.timings), "versions": _rows(report.versions),
    }


_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent / "templates"),
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _valid(report: Report | dict[str, Any]) -> dict[str, Any]:
    """``report`` as strict JSON data (a :class:`Report` converted first), validated.

    Raises:
        ValueError: it does not match the schema (see ``validate_report``).
    """
    data = _strict(report.to_json() if isinstance(report, Report) else report)
    validate_report(data)
    return data


def _render(data: dict[str, Any]) -> str:
    return _ENV.get_template("report.html").render(r=_view(Report.from_json(data)))


def render_html(report: Report | dict[str, Any]) -> str:
    """The student-readable page for ``report`` (a :class:`Report`, or its JSON data),
    validated first.

    Raises:
        ValueError: the report does not match the schema (see ``validate_report``).
    """
    return _render(_valid(report))


def write_reports(report: Report | dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.html`` into ``out_dir`` (created if missing).

    Non-finite floats in the free-form ``details`` and ``parameters`` are written as the
    strings "nan", "inf", "-inf" so that the JSON is strict; elsewhere they are an error.

    Returns:
        The paths of the JSON and the HTML file.

    Raises:
        ValueError: the report does not match the schema; nothing is written.
    """
    data = _valid(report)
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    page = _render(data)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out_dir / "report.json", out_dir / "report.html"
    json_path.write_text(text, encoding="utf-8")
    html_path.write_text(page, encoding="utf-8")
    return json_path, html_path
