"""``grader release LAB --out DIR``: the student kit, and the proof that it leaks nothing.

The kit (``DIR/LAB/``) holds the template notebook, ``rubrics/LAB.yaml`` with the public
items only (comments dropped: they may discuss hidden items), the reference's recorded
answers (``oracle/LAB.json``), the wheel a student installs grader from
(``wheels/grader-VERSION-py3-none-any.whl``, :mod:`grader.authoring.wheel`) and a README
that shows how. Before the kit is moved into place a scan proves it holds, the inside of the
wheel included,

- no reference code: no statement of a reference function body, and no function whose body
  is the reference's, appears in the kit's code;
- no solution text: no line of a solution region of the solution notebook, no marker;
- no hidden item: no id or title of a hidden item, and the kit's rubric loads with public
  items only;
- no reference checkpoint, and no file of a type a kit does not need; in the wheel, nothing
  but the grader package and its dist-info.

A scan with findings refuses the release and leaves nothing behind.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import nbformat
import yaml

from ..errors import CourseError
from ..model import Report
from ..rubric import MANUAL, Item, Rubric, load_rubric
from .expected import load_expectations
from .markers import has_marker, notebook_code, solution_regions
from .scaffold import solution_path
from .wheel import WHEEL_INFO, build_wheel

__all__ = ["Leak", "ReleaseRefused", "release", "scan_kit"]

_KIT_SUFFIXES = {".ipynb", ".yaml", ".md", ".json", ".txt", ".whl"}
_WHEEL_SUFFIXES = {".py", ".json", ".html", ".pt"}      # the grader package's file types
_COURSE_DIRS = {"reference", "assignments", "rubrics"}
_MIN_STATEMENT = 24          # shorter statements (`return x`, `h = self.fc(x)`) are not evidence
_MIN_SOLUTION_LINE = 16
_TRIVIAL = re.compile(r"^self\.(\w+) = \1$|^super\(\)\.__init__\(\)$")  # in any answer
# A public manual item's criteria may be a marking key: the kit says who grades it instead.
_KIT_CRITERIA = "graded by a TA when your submission is graded"


@dataclass(frozen=True)
class Leak:
    file: str
    what: str

    def __str__(self) -> str:
        return f"{self.file}: {self.what}"


class ReleaseRefused(CourseError):
    """The kit failed its leak scan; nothing was written."""

    def __init__(self, lab: str, leaks: list[Leak]) -> None:
        self.leaks = leaks
        shown = "\n".join(f"  {leak}" for leak in leaks[:30])
        more = f"\n  ... and {len(leaks) - 30} more" if len(leaks) > 30 else ""
        super().__init__(f"the kit of {lab} failed its leak scan ({len(leaks)} finding(s)); "
                         f"nothing was released:\n{shown}{more}")


def _functions(tree: ast.Module) -> dict[str, tuple[str, set[str]]]:
    """Qualified name (``f``, ``Class.method``) -> (its body, its statements).

    Docstrings are left out; statements shorter than ``_MIN_STATEMENT`` characters and
    stubs (``raise NotImplementedError``) are not evidence of anything.
    """
    out: dict[str, tuple[str, set[str]]] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = [b for b in child.body
                        if not (isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant))]
                text = "\n".join(ast.unparse(b) for b in body)
                statements = {ast.unparse(st).split("\n")[0] for b in body for st in ast.walk(b)
                              if isinstance(st, ast.stmt)
                              and not isinstance(st, (ast.FunctionDef, ast.ClassDef))}
                statements = {t for t in statements if len(t) >= _MIN_STATEMENT
                              and "NotImplementedError" not in t and not _TRIVIAL.match(t)}
                if "NotImplementedError" in text or len(text) < _MIN_STATEMENT:
                    text = ""
                out[f"{prefix}{child.name}"] = (text, statements)
                visit(child, f"{prefix}{child.name}.")

    visit(tree, "")
    return out


def _kit_code(path: Path) -> str:
    if path.suffix == ".ipynb":
        return notebook_code(path)
    return path.read_text() if path.suffix == ".py" else ""


def _kit_text(path: Path) -> str:
    if path.suffix == ".ipynb":
        nb = nbformat.read(path, as_version=4)
        return "\n".join(c.source for c in nb.cells)
    return path.read_text(errors="replace")


@dataclass(frozen=True)
class _Secrets:
    """What a kit must not hold, gathered once from the course."""

    course: Path
    statements: set[str]         # statements of the reference's secret functions
    bodies: set[str]             # their whole bodies
    solution_lines: set[str]     # lines of the solution notebook's solution regions
    hidden: list[Item]
    checkpoints: dict[str, str]  # sha256 -> what it is, for each reference checkpoint


def _secrets(course: Path, rubric: Rubric, given: set[str]) -> _Secrets:
    reference = _functions(ast.parse((course / rubric.reference).read_text()))
    solution = solution_path(course, rubric.assignment)
    solution_lines: set[str] = set()
    if solution.is_file():
        for cell in nbformat.read(solution, as_version=4).cells:
            for region in solution_regions(cell.source):
                solution_lines |= {ln.strip() for ln in region.splitlines()
                                   if len(ln.strip()) >= _MIN_SOLUTION_LINE}
    return _Secrets(
        course=course,
        statements=set().union(*(st for name, (_, st) in reference.items()
                                 if name not in given)) - set().union(
            *(st for name, (_, st) in reference.items() if name in given)),
        bodies={body for name, (body, _) in reference.items() if body and name not in given},
        solution_lines=solution_lines,
        hidden=[i for i in rubric.items if i.visibility == "hidden"],
        checkpoints={_sha256(p): f"the reference checkpoint {p.name}"
                     for p in (course / "reference" / "checkpoints").glob("*") if p.is_file()})


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def scan_kit(kit: Path, course: Path, rubric: Rubric, given: Iterable[str] = ()
             ) -> list[Leak]:
    """Every leak found in the kit folder ``kit`` of ``rubric``'s lab, the inside of its
    wheel included.

    ``given`` names the reference functions (``f``, ``Class.method``) that the template
    hands out complete on purpose: their code is not secret.
    """
    secrets = _secrets(course, rubric, set(given or ()))
    leaks = _scan_tree(kit, "", secrets, secrets.checkpoints)
    leaks += _scan_rubric(kit / "rubrics" / f"{rubric.assignment}.yaml", rubric)
    return leaks


def _scan_tree(root: Path, prefix: str, secrets: _Secrets, known: dict[str, str], *,
               package: bool = False) -> list[Leak]:
    """The leaks of every file under ``root``, each named ``prefix`` + its path: a kit's
    files, or (``package``) the grader package's in its wheel. ``known`` maps the sha256 of
    each course file that must not be there to what it is."""
    leaks: list[Leak] = []
    for path in sorted(p for p in root.rglob("*")):
        rel = prefix + path.relative_to(root).as_posix()
        if path.is_symlink() or not path.is_file():
            if path.is_symlink():
                leaks.append(Leak(rel, "a symbolic link (a kit holds plain files only)"))
            continue
        digest = _sha256(path)
        if digest in known:
            leaks.append(Leak(rel, f"is {known[digest]}"))
            continue
        refused = _wheel_member(rel) if package else _kit_file(rel)
        if refused:
            leaks.append(Leak(rel, refused))
        elif path.suffix == ".whl" and not package:
            leaks += _scan_wheel(path, rel, secrets)
        else:
            leaks += _scan_file(path, rel, secrets, package=package)
    return leaks


def _kit_file(rel: str) -> str | None:
    """Why a kit may not hold the file ``rel`` (None: it may)."""
    suffix = Path(rel).suffix
    if suffix in _KIT_SUFFIXES and (suffix != ".whl" or Path(rel).parent.name == "wheels"):
        return None
    return (f"a {suffix or 'suffix-less'} file has no place in a kit (allowed: "
            f"{', '.join(sorted(_KIT_SUFFIXES))}; a wheel only in wheels/)")


def _wheel_member(rel: str) -> str | None:
    """Why a wheel (``KIT_PATH!/NAME``) may not hold the member NAME: it holds the grader
    package and its dist-info, nothing of the course."""
    name = rel.split("!/", 1)[1]
    parts = name.split("/")
    if _COURSE_DIRS & set(parts[:-1]):
        return "course content in the wheel (a reference/, assignments/ or rubrics/ folder)"
    info = re.fullmatch(r"grader-[^/-]+\.dist-info", parts[0])
    if (parts[0] == "grader" and Path(name).suffix in _WHEEL_SUFFIXES) or (
            info and len(parts) == 2 and parts[1] in WHEEL_INFO):
        return None
    return ("has no place in the wheel (it holds the grader package: "
            f"{', '.join(sorted(_WHEEL_SUFFIXES))} files under grader/, and its dist-info)")


def _scan_wheel(path: Path, rel: str, secrets: _Secrets) -> list[Leak]:
    """The leaks inside a wheel: a member that is not the grader package's, is a file of the
    course (``reference/``, ``assignments/``, ``rubrics/``, byte for byte) or holds a
    reference function's body."""
    try:
        wheel = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        return [Leak(rel, "not a readable wheel (zip)")]
    course = {_sha256(p): f"the course's {p.relative_to(secrets.course).as_posix()}"
              for top in sorted(_COURSE_DIRS) for p in (secrets.course / top).rglob("*")
              if p.is_file() and p.stat().st_size}
    leaks: list[Leak] = []
    with wheel, tempfile.TemporaryDirectory(prefix="grader-scan-") as tmp:
        for name in wheel.namelist():
            if name.startswith("/") or "\\" in name or ".." in name.split("/"):
                leaks.append(Leak(f"{rel}!/{name}", "a member outside the wheel's root"))
            elif not name.endswith("/"):
                target = Path(tmp, name)
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(wheel.read(name))
                except (OSError, zipfile.BadZipFile) as exc:
                    leaks.append(Leak(f"{rel}!/{name}", f"cannot be read ({exc})"))
        leaks += _scan_tree(Path(tmp), f"{rel}!/", secrets, course, package=True)
    return leaks


def _scan_file(path: Path, rel: str, secrets: _Secrets, *, package: bool = False
               ) -> list[Leak]:
    """The leaks of one file. A file of the grader package (``package``) is visible to
    every submission already (the sandbox binds the package read-only), so there only a
    reference function's whole body counts, code copied in: not a statement a check shares
    with the reference (the grader computes the same formulas), nor the markers, item ids
    and sample solution (``grader new``'s) that the authoring tools and checks hold."""
    leaks = []
    code = _kit_code(path)
    if code:
        try:
            tree = ast.parse(code)
        except SyntaxError:
            tree = None
        if tree is not None:
            found = _functions(tree)
            kit_statements = set().union(*(st for _, st in found.values()))
            for text in sorted(set() if package else kit_statements & secrets.statements):
                leaks.append(Leak(rel, f"reference code: `{text[:100]}`"))
            for name, (body, _) in sorted(found.items()):
                if body and body in secrets.bodies:
                    leaks.append(Leak(rel, f"`{name}` is implemented exactly as in the "
                                           "reference (if the template gives it on purpose, "
                                           "list it under release.given in expected.yaml)"))
    if package:
        return leaks
    text = _kit_text(path)
    for line in sorted(secrets.solution_lines):
        if line in text:
            leaks.append(Leak(rel, f"solution text: `{line[:100]}`"))
    if has_marker(text):
        leaks.append(Leak(rel, "a solution marker (### BEGIN/END SOLUTION or HIDDEN TESTS) "
                               "is left in"))
    for item in secrets.hidden:
        for word in (item.id, item.title):
            if word and len(word) >= 6 and word in text:
                leaks.append(Leak(rel, f"names the hidden item `{item.id}`"))
                break
    return leaks


def _scan_rubric(path: Path, rubric: Rubric) -> list[Leak]:
    if not path.is_file():
        return [Leak(str(path.name), "the kit has no rubric")]
    try:
        kit_rubric = load_rubric(path)
    except CourseError as exc:
        return [Leak(path.name, f"the kit's rubric does not load: {exc}")]
    hidden = [i.id for i in kit_rubric.items if i.visibility != "public"]
    public = {i.id for i in rubric.items if i.visibility == "public"}
    extra = sorted({i.id for i in kit_rubric.items} - public)
    return ([Leak(path.name, f"hidden items {', '.join(hidden)}")] if hidden else []) + \
           ([Leak(path.name, f"items not public in the course rubric: {', '.join(extra)}")]
            if extra else [])


def _public_rubric(rubric: Rubric, keep: set[str] | None = None) -> str:
    """The kit's rubric: the public items (of ``keep``), answers from ``oracle/LAB.json``."""
    doc = yaml.safe_load(rubric.path.read_text())
    doc["items"] = [i for i in doc["items"] if i.get("visibility", "public") == "public"
                    and (keep is None or i["id"] in keep)]
    for item in doc["items"]:
        if item.get("check") == MANUAL:
            item["criteria"] = _KIT_CRITERIA
    if not doc["items"]:
        raise CourseError(f"{rubric.path}: no public item; a kit needs at least one so that "
                          "`grader check` has something to check")
    doc["total_points"] = sum(i["points"] for i in doc["items"])
    doc["reference"] = f"oracle/{rubric.assignment}.json"
    header = (f"# The public items of the {rubric.assignment} lab: what `grader check` runs.\n"
              "# Hidden items count too when your submission is graded.\n")
    return header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100)


def _readme(rubric: Rubric, keep: set[str], wheel: str) -> str:
    public = [i for i in rubric.items if i.visibility == "public"]
    rows = "\n".join(f"| `{i.id}` | {i.points:g} | {i.title}"
                     + (" (graded by a TA) |" if i.manual else " |" if i.id in keep
                        else " (checked when graded) |") for i in public)
    files = ", ".join(f"`{c}`" for c in rubric.checkpoints) or "none"
    return (f"# {rubric.title}: student kit\n\n"
            f"Complete `{rubric.notebook}` and hand it in with these checkpoints: {files}.\n\n"
            f"Install the grader once (Python 3.10 or later, from this folder; it also installs "
            f"PyTorch and the other packages it needs, so on Linux without an NVIDIA GPU "
            f"install PyTorch's smaller CPU build first, as pytorch.org shows):\n\n"
            f"    python -m pip install {wheel}\n\n"
            f"Then check your work before submitting (from this folder):\n\n"
            f"    grader check {rubric.notebook}\n\n"
            f"It runs your notebook and checks the public items below on inputs the grader "
            f"chooses, against the course's answers recorded in `oracle/` (the solution itself "
            f"is not in this kit); a failure shows the first input that breaks it. On Linux "
            f"your notebook runs in a sandbox (bubblewrap); where that cannot run (macOS, "
            f"Windows, some containers) it runs as a plain local kernel, and `grader check` "
            f"says so in one line: fine for checking your own code. Items marked \"checked when "
            f"graded\" and the hidden items are checked when your submission is graded. Items "
            f"marked \"graded by a TA\" are read by a TA; `grader check` shows them as pending "
            f"and says in which cell it found your answer.\n\n"
            f"| item | points | property |\n|---|---|---|\n{rows}\n")


def _record(course: Path, rubric: Rubric, staging: Path, sandbox: bool) -> set[str]:
    """Record the reference's answers to the public checks; return the replayable items.

    The reference is graded as a submission on the public items with a ``Recorder``;
    then graded again from the recording, as a student's kit will: an item that does not
    pass from the recording (its check needs more than answers, e.g. autograd through
    the reference) is left out of the kit's rubric.
    """
    from ..calibrate import reference_submission
    from ..oracle import Recorder, RecordedReference
    from ..pipeline import grade, load_reference

    with tempfile.TemporaryDirectory(prefix="grader-release-") as tmp:
        folder = reference_submission(course, rubric, Path(tmp) / "reference")
        recorder = Recorder(load_reference(course, rubric))
        first = Report.from_json(grade(folder, assignment=rubric.assignment, course=course,
                                       public_only=True, sandbox=sandbox, reference=recorder))
        bad = [i.id for i in first.items if i.outcome not in ("passed", "pending")]
        if bad:
            raise CourseError(f"the reference fails its own public items {', '.join(bad)}; "
                              f"run `grader validate {rubric.assignment}` and fix the rubric")
        oracle = staging / "oracle" / f"{rubric.assignment}.json"
        recorder.save(oracle, rubric.assignment)
        replay = Report.from_json(grade(folder, assignment=rubric.assignment, course=course,
                                        public_only=True, sandbox=sandbox,
                                        reference=RecordedReference(oracle)))
    # a manual item is pending in the kit as in the course: `grader check` shows where the
    # student's answer was found, and that a TA grades it
    return {i.id for i in replay.items if i.outcome in ("passed", "pending")}


def release(course: Path, lab: str, out: Path, *, record: bool = True,
            sandbox: bool = True) -> Path:
    """Write the kit of ``lab`` to ``out/lab`` after a clean leak scan; returns that folder.

    ``record`` grades the reference to record the answers the kit's ``grader check``
    needs (a kernel run); without it the kit holds no answers (a scan-only dry run).
    """
    rubric = load_rubric(course / "rubrics" / f"{lab}.yaml")
    template = course / "assignments" / lab / rubric.notebook
    if not template.is_file():
        raise CourseError(f"{template}: the lab has no template notebook to release")
    out.mkdir(parents=True, exist_ok=True)
    final, staging = out / lab, out / f".{lab}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "rubrics").mkdir(parents=True)
    try:
        nb = nbformat.read(template, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        nbformat.write(nb, staging / rubric.notebook)
        public = {i.id for i in rubric.items if i.visibility == "public"}
        keep = _record(course, rubric, staging, sandbox) if record else public
        (staging / "rubrics" / f"{lab}.yaml").write_text(_public_rubric(rubric, keep))
        wheel = build_wheel(staging / "wheels")
        (staging / "README.md").write_text(_readme(rubric, keep,
                                                   wheel.relative_to(staging).as_posix()))
        (staging / "kit.json").write_text(json.dumps(
            {"assignment": lab, "rubric_sha256": rubric.sha256}, indent=1) + "\n")
        given = load_expectations(course / "assignments" / lab,
                                  {i.id for i in rubric.items}).given
        leaks = scan_kit(staging, course, rubric, given)
        if leaks:
            raise ReleaseRefused(lab, leaks)
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final
