"""A class's submissions in, one folder per student attempt out: LMS exports recognised.

``ingest(source, scratch)`` takes a folder or a zip file and recognises its layout:

==============  ==========================================================================
layout          how it looks (the student id is what the gradebook keys on)
==============  ==========================================================================
gradescope      ``submission_metadata.yml`` + ``submission_<id>/`` folders; submitters'
                ``sid`` (else email, else name) and ``:created_at``; ``:history`` attempts
brightspace     files ``<sub id>-<user id> - <Name> - <Mon D, YYYY HMM AM> - <file>``
                (Brightspace / Ufora "download all"); id = user id; time from the name
canvas          files ``<name>[_LATE]_<user id>_<submission id>_<file>``; Canvas's ``-N``
                resubmission suffix is dropped from the file name
moodle          folders ``<Full Name>_<participant id>_assignsubmission_file_``
folders         one folder per student (the folder's name is the id), or one zip each
==============  ==========================================================================

Nothing is trusted: zip entries that escape the folder (``..``, absolute paths), links,
archives or files over the size limits, files of other types and notebooks that do not
parse are skipped with a reason; everything is written under ``scratch`` only.
"""

from __future__ import annotations

import datetime as _dt
import re
import shutil
import stat
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import yaml

from ..errors import CourseError

__all__ = ["Attempt", "Skipped", "Ingested", "Limits", "ingest", "read_roster", "slug"]


@dataclass(frozen=True)
class Limits:
    """Bounds on what an export may make the grader unpack."""

    archive_mb: int = 2048          # one zip file, compressed
    unpacked_mb: int = 4096         # everything a zip unpacks to
    file_mb: int = 512              # one file
    entries: int = 100_000          # entries of one zip
    ratio: int = 200                # uncompressed / compressed of one entry (zip bombs)
    suffixes: tuple[str, ...] = (".ipynb", ".pt", ".pth")


@dataclass
class Attempt:
    """One student's submission: a folder holding their notebook and checkpoints."""

    student: str
    name: str
    submitted: _dt.datetime | None
    folder: Path
    source: str
    notes: list[str] = field(default_factory=list)   # files left out, and why
    order: int = 0                                   # tie-break when there is no time


@dataclass(frozen=True)
class Skipped:
    source: str
    reason: str


@dataclass
class Ingested:
    layout: str
    attempts: list[Attempt]
    skipped: list[Skipped]
    superseded: int = 0            # older attempts left out (latest per student)


# ---------------------------------------------------------------------------- zip safety
def _safe_name(name: str) -> str | None:
    """The entry's relative path, or None when it could escape the target folder."""
    name = name.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts) or not parts:
        return None
    return "/".join(parts)


def _unzip(archive: Path, target: Path, limits: Limits, skipped: list[Skipped],
           label: str) -> bool:
    """Extract ``archive`` into ``target`` entry by entry; False if the archive is refused."""
    mb = 1 << 20
    size = archive.stat().st_size
    if size > limits.archive_mb * mb:
        skipped.append(Skipped(label, f"archive of {size // mb} MiB is over the "
                                      f"{limits.archive_mb} MiB limit"))
        return False
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        skipped.append(Skipped(label, f"not a readable zip file ({exc})"))
        return False
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.entries:
            skipped.append(Skipped(label, f"{len(infos)} entries, over {limits.entries}"))
            return False
        total = sum(i.file_size for i in infos)
        if total > limits.unpacked_mb * mb:
            skipped.append(Skipped(label, f"unpacks to {total // mb} MiB, over the "
                                          f"{limits.unpacked_mb} MiB limit"))
            return False
        for info in infos:
            where = f"{label}:{info.filename}"
            name = _safe_name(info.filename)
            mode = info.external_attr >> 16
            if name is None:
                skipped.append(Skipped(where, "path escapes the archive (zip-slip); ignored"))
            elif stat.S_ISLNK(mode):
                skipped.append(Skipped(where, "a symbolic link; ignored"))
            elif info.is_dir():
                continue
            elif info.file_size > limits.file_mb * mb:
                skipped.append(Skipped(where, f"file of {info.file_size // mb} MiB is over "
                                              f"the {limits.file_mb} MiB limit"))
            elif info.compress_size and info.file_size / info.compress_size > limits.ratio \
                    and info.file_size > mb:
                skipped.append(Skipped(where, "compression ratio of a zip bomb; ignored"))
            else:
                out = target / name
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(out, "wb") as dst:
                    _copy_bounded(src, dst, info.file_size)
    return True


def _copy_bounded(src, dst, limit: int) -> None:  # noqa: ANN001 - file objects
    """Copy at most ``limit`` bytes (a lying header cannot make the copy grow)."""
    left = limit
    while left > 0:
        chunk = src.read(min(1 << 20, left))
        if not chunk:
            break
        dst.write(chunk)
        left -= len(chunk)


# ---------------------------------------------------------------------------- attempts
def _files_of(folder: Path, limits: Limits) -> tuple[dict[str, Path], list[str]]:
    """The gradable files anywhere under ``folder`` (notes say what was left out)."""
    files, notes = {}, []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_symlink():
            notes.append(f"{rel}: a symbolic link; ignored")
        elif not path.is_file():
            continue
        elif path.name.startswith(".") or "__MACOSX" in rel.parts:
            continue
        elif path.suffix.lower() not in limits.suffixes:
            notes.append(f"{rel}: a {path.suffix or 'suffix-less'} file is not part of a "
                         f"submission ({', '.join(limits.suffixes)}); ignored")
        elif path.stat().st_size > limits.file_mb << 20:
            notes.append(f"{rel}: over the {limits.file_mb} MiB limit; ignored")
        elif path.name in files:
            notes.append(f"{rel}: a second file named {path.name}; ignored")
        else:
            files[path.name] = path
    return files, notes


def _attempt(student: str, name: str, when: _dt.datetime | None, files: dict[str, Path],
             scratch: Path, source: str, notes: list[str], skipped: list[Skipped]
             ) -> Attempt | None:
    """Copy ``files`` into a fresh attempt folder; None (and a reason) if not gradable."""
    notebooks = [f for f in files if f.lower().endswith(".ipynb")]
    if len(notebooks) != 1:
        skipped.append(Skipped(source, f"student {student}: {len(notebooks)} notebooks "
                                       f"({', '.join(notebooks) or 'none'}); a submission "
                                       "holds exactly one"))
        return None
    try:
        nbformat.validate(nbformat.read(files[notebooks[0]], as_version=4))
    except Exception as exc:  # noqa: BLE001 - nbformat raises many kinds
        skipped.append(Skipped(source, f"student {student}: {notebooks[0]} is not a valid "
                                       f"notebook ({type(exc).__name__}: "
                                       f"{str(exc).splitlines()[0][:160]})"))
        return None
    stamp = when.strftime("%Y%m%dT%H%M%S") if when else "undated"
    parent = scratch / "attempts" / slug(student)
    n = len(list(parent.iterdir())) if parent.is_dir() else 0
    folder = parent / f"{stamp}-{n}"
    folder.mkdir(parents=True)
    for fname, path in files.items():
        shutil.copyfile(path, folder / fname)
    return Attempt(student, name, when, folder, source, notes)


def slug(text: str) -> str:
    """A student id as a safe folder name."""
    return re.sub(r"[^A-Za-z0-9_.@-]+", "_", text).strip("._")[:80] or "student"


# ---------------------------------------------------------------------------- layouts
_BRIGHTSPACE = re.compile(r"^(\d+)-(\d+) - (.+?) ?- ([A-Z][a-z]{2} \d{1,2}, \d{4} \d{3,4} "
                          r"[AP]M) - (.+)$")
_CANVAS = re.compile(r"^([a-z0-9]+?)(_LATE)?_(\d+)_(\d+)_(.+)$")
_MOODLE = re.compile(r"^(.+)_(\d+)_assignsubmission_(?:file|onlinetext)_?$")


def _brightspace_time(text: str) -> _dt.datetime | None:
    try:
        return _dt.datetime.strptime(text, "%b %d, %Y %I%M %p")
    except ValueError:
        return None


def _group_files(paths: Iterable[Path], pattern: re.Pattern[str]
                 ) -> dict[tuple[str, ...], dict[str, Path]]:
    groups: dict[tuple[str, ...], dict[str, Path]] = {}
    for path in paths:
        m = pattern.match(path.name)
        if m:
            *key, fname = m.groups()
            groups.setdefault(tuple("" if k is None else k for k in key), {})[fname] = path
    return groups


def _layout(root: Path) -> str:
    names = [p.name for p in root.iterdir()]
    files = [p for p in root.iterdir() if p.is_file()]
    if "submission_metadata.yml" in names:
        return "gradescope"
    if any(_BRIGHTSPACE.match(p.name) for p in files):
        return "brightspace"
    if any(_CANVAS.match(p.name) for p in files):
        return "canvas"
    if any(_MOODLE.match(p.name) for p in root.iterdir() if p.is_dir()):
        return "moodle"
    return "folders"


def _gradescope(root: Path, scratch: Path, limits: Limits, skipped: list[Skipped]
                ) -> list[Attempt]:
    try:
        meta = yaml.safe_load((root / "submission_metadata.yml").read_text()) or {}
    except yaml.YAMLError as exc:
        raise CourseError(f"{root / 'submission_metadata.yml'}: not valid YAML ({exc}); "
                          "download the export from Gradescope again") from None
    out = []
    for sub_id, info in meta.items():
        info = info or {}
        runs = [(str(sub_id), info)] + [(str(h.get(":id", "")), h)
                                        for h in info.get(":history", []) or []
                                        if isinstance(h, dict)]
        people = info.get(":submitters") or [{}]
        who = people[0]
        student = str(who.get(":sid") or who.get(":email") or who.get(":name") or sub_id)
        for run_id, run in runs:
            folder = root / (run_id if run_id.startswith("submission_") else
                             f"submission_{run_id}")
            if not folder.is_dir():
                if run is info:
                    skipped.append(Skipped(folder.name, f"student {student}: folder missing"))
                continue
            files, notes = _files_of(folder, limits)
            when = run.get(":created_at")
            when = when if isinstance(when, _dt.datetime) else _parse_time(str(when or ""))
            attempt = _attempt(student, str(who.get(":name") or ""), when, files, scratch,
                               folder.name, notes, skipped)
            if attempt:
                out.append(attempt)
    return out


def _parse_time(text: str) -> _dt.datetime | None:
    try:
        return _dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return None


def _brightspace(root: Path, scratch: Path, limits: Limits, skipped: list[Skipped]
                 ) -> list[Attempt]:
    out = []
    files = [p for p in root.iterdir() if p.is_file() and p.name != "index.html"]
    groups = _group_files(files, _BRIGHTSPACE)
    for (sub_id, user_id, name, when), members in sorted(groups.items()):
        picked, notes = _filter({n: p for n, p in members.items()}, limits)
        attempt = _attempt(user_id, name.strip(), _brightspace_time(when), picked, scratch,
                           f"{sub_id}-{user_id} - {name}", notes, skipped)
        if attempt:
            out.append(attempt)
    _unmatched(files, [_BRIGHTSPACE], skipped, {"index.html"})
    return out


def _canvas(root: Path, scratch: Path, limits: Limits, skipped: list[Skipped]
            ) -> list[Attempt]:
    out = []
    files = [p for p in root.iterdir() if p.is_file()]
    groups = _group_files(files, _CANVAS)
    by_student: dict[tuple[str, str, str], dict[str, Path]] = {}
    late_ids = set()
    for (login, late, user_id, sub_id), members in groups.items():
        if late:
            late_ids.add(sub_id)
        for fname, path in members.items():
            clean = re.sub(r"-\d+(\.[A-Za-z0-9]+)$", r"\1", fname)
            by_student.setdefault((user_id, login, sub_id), {})[clean] = path
    for (user_id, login, sub_id), members in sorted(by_student.items()):
        picked, notes = _filter(members, limits)
        attempt = _attempt(user_id, login, None, picked, scratch, f"{login}_{user_id}_{sub_id}",
                           notes, skipped)
        if attempt:
            attempt.order = int(sub_id)      # Canvas gives no time: later ids are later
            if sub_id in late_ids:
                attempt.notes.append("marked LATE by Canvas")
            out.append(attempt)
    _unmatched(files, [_CANVAS], skipped)
    return out


def _moodle(root: Path, scratch: Path, limits: Limits, skipped: list[Skipped]
            ) -> list[Attempt]:
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        m = _MOODLE.match(folder.name)
        if not m:
            skipped.append(Skipped(folder.name, "not a Moodle submission folder; ignored"))
            continue
        files, notes = _files_of(folder, limits)
        attempt = _attempt(m.group(2), m.group(1), None, files, scratch, folder.name, notes,
                           skipped)
        if attempt:
            out.append(attempt)
    return out


def _folders(root: Path, scratch: Path, limits: Limits, skipped: list[Skipped]
             ) -> list[Attempt]:
    out = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or entry.name == "__MACOSX":
            continue
        if entry.is_symlink():
            skipped.append(Skipped(entry.name, "a symbolic link; ignored"))
            continue
        folder = entry
        if entry.is_file() and entry.suffix.lower() == ".zip":
            folder = scratch / "unzipped" / slug(entry.stem)
            if not _unzip(entry, folder, limits, skipped, entry.name):
                continue
        elif entry.is_file():
            skipped.append(Skipped(entry.name, "a loose file; a submission is a folder or "
                                               "a zip per student"))
            continue
        files, notes = _files_of(folder, limits)
        student = entry.stem if entry.is_file() else entry.name
        when = _dt.datetime.fromtimestamp(entry.stat().st_mtime)
        attempt = _attempt(student, "", when, files, scratch, entry.name, notes, skipped)
        if attempt:
            out.append(attempt)
    return out


def _filter(members: dict[str, Path], limits: Limits) -> tuple[dict[str, Path], list[str]]:
    picked, notes = {}, []
    for fname, path in members.items():
        if path.is_symlink():
            notes.append(f"{fname}: a symbolic link; ignored")
        elif Path(fname).suffix.lower() not in limits.suffixes:
            notes.append(f"{fname}: not part of a submission ({', '.join(limits.suffixes)}); "
                         "ignored")
        elif path.stat().st_size > limits.file_mb << 20:
            notes.append(f"{fname}: over the {limits.file_mb} MiB limit; ignored")
        else:
            picked[fname] = path
    return picked, notes


def _unmatched(files: list[Path], patterns: list[re.Pattern[str]], skipped: list[Skipped],
               allowed: set[str] = frozenset()) -> None:
    for path in files:
        if path.name not in allowed and not any(p.match(path.name) for p in patterns):
            skipped.append(Skipped(path.name, "does not follow the export's naming scheme; "
                                              "ignored"))


_READERS = {"gradescope": _gradescope, "brightspace": _brightspace, "canvas": _canvas,
            "moodle": _moodle, "folders": _folders}


def ingest(source: Path, scratch: Path, *, limits: Limits = Limits(),
           all_attempts: bool = False) -> Ingested:
    """Every student's (latest) attempt of ``source``, copied under ``scratch``."""
    source = Path(source)
    skipped: list[Skipped] = []
    if source.is_file() and source.suffix.lower() == ".zip":
        root = scratch / "export"
        if not _unzip(source, root, limits, skipped, source.name):
            raise CourseError(f"{source}: {skipped[-1].reason}")
        inner = [p for p in root.iterdir() if not p.name.startswith((".", "__MACOSX"))]
        if len(inner) == 1 and inner[0].is_dir() and _layout(root) == "folders" \
                and _layout(inner[0]) != "folders":
            root = inner[0]                  # an export zipped inside its own folder
    elif source.is_dir():
        root = source
    else:
        raise CourseError(f"{source}: not a folder or a .zip of submissions")
    layout = _layout(root)
    attempts = _READERS[layout](root, scratch, limits, skipped)
    superseded = 0
    if not all_attempts:
        latest: dict[str, Attempt] = {}
        for a in attempts:
            old = latest.get(a.student)
            if old is None or _later(a, old):
                latest[a.student] = a
        superseded = len(attempts) - len(latest)
        attempts = sorted(latest.values(), key=lambda a: a.student)
    return Ingested(layout, attempts, skipped, superseded)


def _later(a: Attempt, b: Attempt) -> bool:
    ta, tb = a.submitted, b.submitted
    if ta and tb and ta != tb:
        return ta.replace(tzinfo=None) > tb.replace(tzinfo=None)
    return (a.order, a.source) > (b.order, b.source)


def read_roster(path: Path) -> dict[str, str]:
    """Student id -> name from a CSV whose header names an id and a name column."""
    import csv

    ids = ("orgdefinedid", "student id", "student_id", "id", "sis user id", "sid", "username",
           "user id", "email")
    names = ("name", "full name", "student", "student name", "display name")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CourseError(f"{path}: cannot read the roster ({exc})") from None
    header = {h.strip().lower(): h for h in (rows[0].keys() if rows else [])}
    id_col = next((header[c] for c in ids if c in header), None)
    name_col = next((header[c] for c in names if c in header), None)
    if id_col is None:
        raise CourseError(f"{path}: the roster needs an id column (one of: "
                          f"{', '.join(ids)}); found {', '.join(header) or 'no header'}")
    first, last = header.get("first name"), header.get("last name")
    out = {}
    for row in rows:
        sid = (row.get(id_col) or "").strip().lstrip("#")
        if not sid:
            continue
        name = (row.get(name_col) or "").strip() if name_col else \
            " ".join(x for x in ((row.get(first) or "").strip() if first else "",
                                 (row.get(last) or "").strip() if last else "") if x)
        out[sid] = name
    return out
