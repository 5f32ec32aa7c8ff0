"""Manual items: the student's answer, found in the notebook for the TA who grades it.

A ``check: manual`` item (a written explanation, a plot) runs no check. Grading leaves it
``pending`` with the answer the rubric's ``answer`` locates: the cells tagged ``tag``, else
the cells under the markdown heading ``heading`` (up to the next heading of the same or a
higher level). The answer is the student's text: it is cut to a bounded size here and
escaped wherever it is shown; images are kept only when they are PNGs of bounded size.
"""

from __future__ import annotations

import re
from typing import Any

from .model import ItemResult, ManualAnswer, rubric_fields
from .report.html import png_data_uri
from .rubric import Item

__all__ = ["locate", "pending", "where_found", "GRADED_BY_A_TA"]

GRADED_BY_A_TA = "A TA grades this item, not the grader. "

_MAX_ANSWER = 20_000                 # characters of answer text in the report
_MAX_OUTPUT = 2_000                  # characters of one cell's text output
_MAX_FIGURES = 3
_MAX_FIGURE_B64 = 1_400_000          # about 1 MiB of PNG per figure
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


def _norm(text: str) -> str:
    return " ".join(text.replace("*", "").replace("_", " ").split()).casefold()


def _headings(source: str) -> list[tuple[int, str]]:
    """(level, text) of each markdown heading line of a cell."""
    return [(len(m.group(1)), m.group(2)) for line in source.splitlines()
            if (m := _HEADING.match(line))]


def _matches(text: str, wanted: str) -> bool:
    """The heading is ``wanted``, or starts with it followed by punctuation or a space
    (``Question 1`` matches ``Question 1: why ...`` but not ``Question 10``)."""
    text, wanted = _norm(text), _norm(wanted)
    return text == wanted or (text.startswith(wanted) and not text[len(wanted)].isalnum())


def _under_heading(cells: list[Any], wanted: str) -> list[int]:
    """The cells after the first markdown heading matching ``wanted``, up to the next heading
    of the same or a higher level (the heading's own cell when nothing follows it)."""
    for start, cell in enumerate(cells):
        if cell.cell_type != "markdown":
            continue
        level = next((lv for lv, text in _headings(cell.source) if _matches(text, wanted)), None)
        if level is None:
            continue
        found = []
        for index in range(start + 1, len(cells)):
            nxt = cells[index]
            if nxt.cell_type == "markdown" and any(lv <= level for lv, _ in
                                                   _headings(nxt.source)):
                break
            found.append(index)
        return found or [start]
    return []


def locate(nb: Any, answer: dict[str, str]) -> tuple[list[int], str | None]:
    """The indices (from 0, every cell counted) of the answer cells, and how they were found:
    by ``tag`` first (the template's answer cell carries it), else by ``heading`` (a student
    who pasted a new cell loses the tag, never the heading above it)."""
    tag, heading = answer.get("tag"), answer.get("heading")
    if tag:
        tagged = [i for i, c in enumerate(nb.cells) if tag in c.get("metadata", {}).get("tags", [])]
        if tagged:
            return tagged, "tag"
    if heading:
        under = _under_heading(nb.cells, heading)
        if under:
            return under, "heading"
    return [], None


def _text_outputs(cell: Any) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(str(out.get("text", "")))
        elif "text/plain" in out.get("data", {}):
            parts.append(str(out["data"]["text/plain"]))
    text = "".join(parts).strip()
    return text[:_MAX_OUTPUT] + (" ..." if len(text) > _MAX_OUTPUT else "")


def _answer_text(nb: Any, cells: list[int]) -> str:
    parts = []
    for index in cells:
        cell = nb.cells[index]
        block = f"[cell {index + 1}, {cell.cell_type}]\n{cell.source.strip()}"
        output = _text_outputs(cell) if cell.cell_type == "code" else ""
        parts.append(block + (f"\n[output]\n{output}" if output else ""))
    text = "\n\n".join(parts)
    if len(text) > _MAX_ANSWER:
        text = text[:_MAX_ANSWER] + f"\n... ({len(text) - _MAX_ANSWER} more characters cut)"
    return text


def _figures(nb: Any, cells: list[int]) -> list[dict[str, str]]:
    """The PNG images the answer cells' saved outputs show (a plot to grade)."""
    out = []
    for index in cells:
        for output in nb.cells[index].get("outputs", []):
            data = output.get("data", {}).get("image/png")
            if isinstance(data, list):
                data = "".join(data)
            if (isinstance(data, str) and len(data) <= _MAX_FIGURE_B64
                    and png_data_uri(data.replace("\n", "")) is not None):
                out.append({"title": f"cell {index + 1}", "png_base64": data.replace("\n", "")})
            if len(out) == _MAX_FIGURES:
                return out
    return out


def _where(answer: dict[str, str]) -> str:
    said = []
    if answer.get("tag"):
        said.append(f"no cell is tagged `{answer['tag']}`")
    if answer.get("heading"):
        said.append(f"no markdown heading reads `{answer['heading']}`")
    return " and ".join(said)


def pending(item: Item, nb: Any) -> ItemResult:
    """The result of a manual item: ``pending``, 0 points until a TA grades it, with the
    answer (and the criteria) for the TA."""
    cells, found_by = locate(nb, item.answer)
    if cells:
        how = (f"tagged `{item.answer['tag']}`" if found_by == "tag"
               else f"under the heading `{item.answer['heading']}`")
        shown = ", ".join(str(i + 1) for i in cells)
        message = f"{GRADED_BY_A_TA}The answer is in cell(s) {shown} ({how})."
    else:
        message = (f"{GRADED_BY_A_TA}No answer found: {_where(item.answer)} (answer in the "
                   "cell the template gives for it).")
    return ItemResult(**rubric_fields(item), score=0.0, outcome="pending", message=message,
                      counterexample=None, details={}, figures=tuple(_figures(nb, cells)),
                      traceback=None, needs_review=False, duration_s=0.0,
                      manual=ManualAnswer(item.criteria, _answer_text(nb, cells), tuple(cells),
                                          found_by))


def where_found(message: str) -> str:
    """Where a pending item's message says the answer is (or that there is none)."""
    return message.split(GRADED_BY_A_TA)[-1]
