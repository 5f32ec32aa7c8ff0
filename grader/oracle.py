"""Recorded reference answers: how a student kit checks public items without the reference.

At release, the reference run as a submission is graded on the public items with a
``Recorder`` in place of the reference module: every call a check makes to the reference
(on inputs the grader generated) is recorded with its answer. The kit ships those answers
(``oracle/LAB.json``: plain JSON with base64 tensors, no code, no pickle) and
``grader check`` in the kit reads them through a ``RecordedReference``. The inputs every
property tried are recorded too, and the kit replays exactly those (``Examples``) instead
of asking hypothesis again, so a student's check asks the same questions in the same order
on any machine. Shrinking would ask new questions: from recordings the first failing
input is reported, not the smallest, and a question with no recorded answer makes the item
"skipped", never a verdict.

Only calls whose answers are data can be recorded: a check that differentiates through the
reference (``backward_pass``) cannot be replayed, and release leaves such items out of the
kit (they are checked when the submission is graded).
"""

from __future__ import annotations

import base64
import contextvars
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .errors import CourseError, GraderError
from .protocol import decode, encode

__all__ = ["EXAMPLES", "Examples", "OracleMiss", "Recorder", "RecordedReference",
           "is_recorded"]

_MAX_BYTES = 256 * 1024 * 1024


class OracleMiss(GraderError, LookupError):
    """The kit holds no recorded answer for this call: the item cannot be checked here."""


def _key(name: str, args: tuple, kwargs: dict[str, Any]) -> str:
    text = json.dumps([name, encode(list(args)), encode(dict(sorted(kwargs.items())))],
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def pack_example(value: Any) -> Any:
    """An example (numpy arrays, tensors, numbers, lists, dicts) as JSON."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"cannot record an array of dtype {value.dtype}")
        return {"$nd": {"dtype": value.dtype.str, "shape": list(value.shape),
                        "data": base64.b64encode(np.ascontiguousarray(value).tobytes())
                        .decode("ascii")}}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {"$dict": {str(k): pack_example(v) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        return {"$seq": [pack_example(v) for v in value], "tuple": isinstance(value, tuple)}
    return encode(value)


def unpack_example(value: Any) -> Any:
    if isinstance(value, dict) and "$nd" in value:
        spec = value["$nd"]
        dtype = np.dtype(spec["dtype"])
        if dtype.kind not in "biuf":
            raise CourseError(f"recorded array of dtype {dtype} is not allowed")
        raw = base64.b64decode(spec["data"], validate=True)
        return np.frombuffer(raw, dtype=dtype).reshape(spec["shape"]).copy()
    if isinstance(value, dict) and "$dict" in value:
        return {k: unpack_example(v) for k, v in value["$dict"].items()}
    if isinstance(value, dict) and "$seq" in value:
        items = [unpack_example(v) for v in value["$seq"]]
        return tuple(items) if value.get("tuple") else items
    return decode(value)


class Examples:
    """The inputs each property of each item tried: recorded at release, replayed in a kit."""

    def __init__(self, recorded: dict[str, list[list[Any]]] | None = None) -> None:
        self.replaying = recorded is not None
        self.recorded: dict[str, list[list[Any]]] = recorded or {}
        self._item, self._index = "", 0

    def start(self, item: str) -> None:
        self._item, self._index = item, 0

    def record(self) -> list[Any]:
        """A fresh list for the next property of the current item (recording)."""
        runs = self.recorded.setdefault(self._item, [])
        runs.append([])
        return runs[-1]

    def replay(self) -> list[Any]:
        """The examples of the next property of the current item (replaying)."""
        runs = self.recorded.get(self._item, [])
        if self._index >= len(runs):
            raise OracleMiss(f"the kit recorded no inputs for property {self._index + 1} of "
                             f"`{self._item}`; this item is checked when your submission is "
                             "graded")
        self._index += 1
        return [unpack_example(e) for e in runs[self._index - 1]]


EXAMPLES: contextvars.ContextVar[Examples | None] = contextvars.ContextVar(
    "grader_examples", default=None)


class Recorder:
    """Stands in for the reference module and records each call and its answer."""

    def __init__(self, module: Any) -> None:
        self._module = module
        self.answers: dict[str, Any] = {}
        self.values: dict[str, Any] = {}
        self.examples = Examples()

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._module, name)
        if not callable(value):
            self.values[name] = encode(value)
            return value

        def recorded(*args: Any, **kwargs: Any) -> Any:
            out = value(*args, **kwargs)
            self.answers[_key(name, args, kwargs)] = encode(out)
            return out

        return recorded

    def save(self, path: Path, lab: str) -> None:
        import hypothesis
        import torch

        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({
            "assignment": lab, "grader": __version__, "hypothesis": hypothesis.__version__,
            "torch": torch.__version__, "values": self.values, "answers": self.answers,
            "examples": self.examples.recorded},
            separators=(",", ":")))


class RecordedReference:
    """The reference as the kit knows it: recorded answers, looked up by exact question."""

    def __init__(self, path: Path) -> None:
        size = path.stat().st_size
        if size > _MAX_BYTES:
            raise CourseError(f"{path}: {size >> 20} MiB of recorded answers is over the "
                              f"{_MAX_BYTES >> 20} MiB limit")
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CourseError(f"{path}: not a readable answer file ({exc}); release the kit "
                              "again with `grader release`") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("answers"), dict):
            raise CourseError(f"{path}: not an answer file written by `grader release`")
        self.path, self.doc = path, doc
        self._answers: dict[str, Any] = doc["answers"]
        self.examples = Examples(doc.get("examples") or {})

    @property
    def versions(self) -> dict[str, str]:
        return {k: str(self.doc.get(k)) for k in ("grader", "hypothesis", "torch")}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        values = self.doc.get("values") or {}
        if name in values:
            return decode(values[name])

        def answer(*args: Any, **kwargs: Any) -> Any:
            key = _key(name, args, kwargs)
            if key not in self._answers:
                raise OracleMiss(f"the kit has no recorded answer of `{name}` for this input; "
                                 "this item is checked when your submission is graded")
            return decode(self._answers[key])

        return answer


def is_recorded(reference: Any) -> bool:
    return isinstance(reference, RecordedReference)

