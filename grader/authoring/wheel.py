"""The wheel of the grader package that a student kit ships, so a student can install grader.

Built from the installed package (an editable checkout or an installed wheel) with the
standard library alone: no build backend, no network, and the same bytes for the same files
(sorted entries, fixed timestamps). It holds the ``grader`` package's files and its metadata,
nothing of the course (``reference/``, ``assignments/``, ``rubrics/`` lie outside the
package); the kit's leak scan opens it and checks that. The metadata is the installed
distribution's, less the long description (the course's README has no place in a kit).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import zipfile
from pathlib import Path

from ..errors import CourseError

__all__ = ["WHEEL_INFO", "build_wheel"]

WHEEL_INFO = ("METADATA", "WHEEL", "entry_points.txt", "top_level.txt", "RECORD")
_WHEEL = "Wheel-Version: 1.0\nGenerator: grader release\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
_EPOCH = (1980, 1, 1, 0, 0, 0)            # the earliest time a zip entry can hold
_NOT_SHIPPED = {".pyc", ".pyo"}


def _shipped(path: Path, package: Path) -> bool:
    rel = path.relative_to(package)
    return (path.is_file() and not path.is_symlink() and path.suffix not in _NOT_SHIPPED
            and not any(part == "__pycache__" or part.startswith(".") for part in rel.parts))


def _metadata(dist: importlib.metadata.Distribution) -> bytes:
    """The installed METADATA's headers, without the description (header or body)."""
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""   # PKG-INFO: egg-info
    head = text.split("\n\n", 1)[0]
    kept, skipping = [], False
    for line in head.splitlines():
        if line[:1] in (" ", "\t"):               # a continuation of the header before
            if not skipping:
                kept.append(line)
            continue
        skipping = line.split(":", 1)[0] in ("Description", "Description-Content-Type")
        if not skipping:
            kept.append(line)
    return ("\n".join(kept) + "\n").encode()


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(out: Path) -> Path:
    """Write ``out/grader-VERSION-py3-none-any.whl``; returns its path.

    Raises:
        CourseError: grader is not installed as a distribution (its metadata is needed).
    """
    import grader

    # an installed dist-info first: a stale ``grader.egg-info`` left in the checkout (the
    # current folder is on sys.path) would otherwise shadow it
    found = sorted(importlib.metadata.distributions(name="grader"),
                   key=lambda d: d.read_text("METADATA") is None)
    try:
        if not found:
            raise importlib.metadata.PackageNotFoundError("grader")
        dist = found[0]
    except importlib.metadata.PackageNotFoundError as exc:
        raise CourseError("grader is not installed as a package, so its wheel has no metadata "
                          "to take: run `pip install -e .` in grader's checkout") from exc
    package = Path(grader.__file__).resolve().parent
    info = f"grader-{dist.version}.dist-info"
    entries = [(f"grader/{p.relative_to(package).as_posix()}", p.read_bytes())
               for p in sorted(package.rglob("*")) if _shipped(p, package)]
    entries += [(f"{info}/METADATA", _metadata(dist)), (f"{info}/WHEEL", _WHEEL.encode()),
                (f"{info}/entry_points.txt", (dist.read_text("entry_points.txt") or "").encode()),
                (f"{info}/top_level.txt", b"grader\n")]
    record = "".join(f"{name},sha256={_digest(data)},{len(data)}\n" for name, data in entries)
    entries.append((f"{info}/RECORD", (record + f"{info}/RECORD,,\n").encode()))
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"grader-{dist.version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in entries:
            entry = zipfile.ZipInfo(name, _EPOCH)
            entry.compress_type, entry.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
            wheel.writestr(entry, data)
    return path
