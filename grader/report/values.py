"""Every value a check puts in a report, converted to the report's types in one place.

A check returns what it computed: tensors, numpy arrays and scalars, Python numbers, tuples
and dicts of them, or text it already formatted. The schema wants short text for a
counterexample and strict JSON for ``details``; one ``int`` in the wrong place once made a
whole report unwritable (issue 11: ``32 is not of type 'string'``, a traceback, no report).
So no check formats for the report: the pipeline passes every verdict through
``verdict_fields``, and a value that cannot be converted raises ``ValueError`` naming it,
which the pipeline turns into an ``error`` item that needs review, never a lost report.
"""

from __future__ import annotations

import base64
import math
import numbers
from typing import Any

import numpy as np
import torch

__all__ = ["text", "inputs", "counterexample", "jsonable", "message", "figures", "fraction",
           "verdict_fields"]

_MAX_TEXT = 4000            # one input, expected or actual value
_MAX_MESSAGE = 20_000       # what the page shows of a message anyway
_MAX_LISTED = 20            # a tensor in details with at most this many numbers stays a list
_MAX_DEPTH = 6              # nesting kept in details; deeper values become text
_FRACTION_TOL = 1e-9
_COUNTEREXAMPLE_KEYS = ("inputs", "expected", "actual")


def _cut(value: str, limit: int = _MAX_TEXT) -> str:
    if len(value) <= limit:
        return value
    return value[:limit] + f" ... ({len(value) - limit} more characters)"


def _str(value: Any) -> str:
    """``str(value)``, or its type's name when even that fails (a broken ``__str__``)."""
    try:
        return str(value)
    except Exception:  # noqa: BLE001 - any object may reach a report
        return f"<{type(value).__name__} object>"


def _numeric_leaves(value: Any, depth: int = 0) -> bool:
    """A (nested) list or tuple of plain numbers that numpy can hold as one array."""
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        return True
    if isinstance(value, (list, tuple)) and value and depth < _MAX_DEPTH:
        return all(_numeric_leaves(v, depth + 1) for v in value)
    return False


def _tensor_array(value: torch.Tensor) -> np.ndarray | None:
    """A tensor's values on the CPU (None for one that has none to show: meta, quantized)."""
    try:
        tensor = value.detach().cpu()
        if tensor.layout != torch.strided:
            tensor = tensor.to_dense()
        tensor = tensor.resolve_conj().resolve_neg()
        try:
            return tensor.numpy()
        except TypeError:           # bfloat16 and other dtypes numpy lacks
            return tensor.to(torch.float64).numpy()
    except Exception:  # noqa: BLE001 - then the tensor is shown by its str
        return None


def _array(value: Any) -> np.ndarray | None:
    """``value`` as a numpy array when it is array-like data, else None."""
    if isinstance(value, torch.Tensor):
        return _tensor_array(value)
    if isinstance(value, (np.ndarray, np.generic)):
        return np.asarray(value)
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        return np.asarray(value)
    if isinstance(value, (list, tuple)) and _numeric_leaves(value):
        try:
            array = np.asarray(value)
        except ValueError:          # ragged
            return None
        return array if array.dtype != object else None
    return None


def _array_text(array: np.ndarray) -> str:
    """``32``, ``0.05``, ``shape (2, 3): [[...]]``: numpy's print, six digits, 40 numbers."""
    shown = np.array2string(array, precision=6, threshold=40, edgeitems=3, max_line_width=100)
    return f"shape {tuple(array.shape)}: {shown}" if array.ndim else shown


def text(value: Any, depth: int = 0) -> str:
    """Short, readable text of one value (an input, an expected or an actual value).

    Text stays as it is (a check may have formatted it); numbers, tensors and arrays are
    written as ``_array_text`` does; tuples, lists and dicts of other
    things element by element; anything else by ``str``.
    """
    if isinstance(value, str):
        return _cut(value if depth == 0 else repr(value))
    if value is None or isinstance(value, bool):
        return str(value)
    if depth > _MAX_DEPTH:
        return _cut(_str(value))
    array = _array(value)
    if array is not None:
        return _cut(_array_text(array))
    if isinstance(value, dict):
        inner = ", ".join(f"{_str(k)}: {text(v, depth + 1)}" for k, v in value.items())
        return _cut("{" + inner + "}")
    if isinstance(value, (list, tuple)):
        inner = ", ".join(text(v, depth + 1) for v in value)
        return _cut(f"({inner})" if isinstance(value, tuple) else f"[{inner}]")
    return _cut(_str(value))


def inputs(value: Any) -> dict[str, str]:
    """The failing input: name -> text. Names starting with ``_`` are the example's private
    parts (drawn sizes) and are left out."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        return {"input": text(value)}
    return {_str(k): text(v) for k, v in value.items() if not _str(k).startswith("_")}


def counterexample(value: Any) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The schema's counterexample (``inputs``, optional ``expected``/``actual`` as text),
    and any other keys a check added, as text (they go to ``details``, nothing is lost)."""
    if value is None:
        return None, {}
    if not isinstance(value, dict):
        return {"inputs": {"input": text(value)}}, {}
    out: dict[str, Any] = {"inputs": inputs(value.get("inputs"))}
    for key in ("expected", "actual"):
        if key in value:
            out[key] = None if value[key] is None else text(value[key])
    extra = {_str(k): text(v) for k, v in value.items() if k not in _COUNTEREXAMPLE_KEYS}
    return out, extra


def _nonfinite_name(value: float) -> str:
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def jsonable(value: Any, depth: int = 0) -> Any:
    """Strict JSON for a free-form section (``details``, ``parameters``).

    Non-finite floats become "nan", "inf", "-inf"; a tensor or array of at most 20 numbers
    becomes a (nested) list, a larger one its short text; unknown objects their ``str``.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else _nonfinite_name(value)
    if depth > _MAX_DEPTH:
        return text(value)
    if isinstance(value, dict):
        return {_str(k): jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v, depth + 1) for v in value]
    array = _array(value)
    if array is not None:
        if array.size <= _MAX_LISTED and array.dtype.kind in "biuf":
            return jsonable(array.tolist(), depth + 1)
        return text(array)
    return _cut(_str(value))


def message(value: Any) -> str:
    """A verdict's message as text."""
    return _cut(value if isinstance(value, str) else text(value), _MAX_MESSAGE)


def figures(value: Any) -> list[dict[str, str]]:
    """``[{"title", "png_base64"}]``; raw PNG bytes are base64-encoded here.

    Raises:
        ValueError: a figure without image data (the page only embeds real PNGs anyway).
    """
    if not value:
        return []
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"figures must be a list of {{title, png_base64}}, not "
                         f"{type(value).__name__}")
    out = []
    for n, fig in enumerate(value):
        data = fig.get("png_base64") if isinstance(fig, dict) else None
        if isinstance(data, (bytes, bytearray)):
            data = base64.b64encode(bytes(data)).decode("ascii")
        if not isinstance(data, str):
            raise ValueError(f"figure {n} has no png_base64 text (got "
                             f"{type(fig).__name__})")
        out.append({"title": text(fig.get("title", "")), "png_base64": data})
    return out


def fraction(value: Any) -> float:
    """The share of the item's points a check awarded, as a float in [0, 1].

    Raises:
        ValueError: not a number, not finite, or outside [0, 1]: a check bug, which must
            not quietly become 0 points.
    """
    array = _array(value)
    if array is None or array.size != 1 or array.dtype.kind not in "biuf":
        raise ValueError(f"the check's fraction {text(value)!r} is not a number")
    share = float(array.reshape(()))
    if not math.isfinite(share) or not -_FRACTION_TOL <= share <= 1 + _FRACTION_TOL:
        raise ValueError(f"the check's fraction {share!r} is not a number in [0, 1]")
    return min(1.0, max(0.0, share))


def verdict_fields(verdict: Any) -> dict[str, Any]:
    """A verdict's message, counterexample, details, figures and traceback in the report's
    types. ``verdict`` is read, never modified. Raises ValueError as ``figures`` does."""
    raw = verdict.details
    details = {} if raw is None else dict(raw) if isinstance(raw, dict) else {"value": raw}
    tb = details.pop("traceback", None)
    ce, extra = counterexample(verdict.counterexample)
    if extra:
        details["counterexample_extra"] = extra
    return {"message": message(verdict.message), "counterexample": ce,
            "details": jsonable(details), "figures": figures(verdict.figures),
            "traceback": None if tb is None else _cut(text(tb), _MAX_MESSAGE)}
