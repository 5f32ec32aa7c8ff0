"""One submission, end to end: execute -> probe -> check -> score -> report dict."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import importlib.util
import os
import platform
import sys
import time
import traceback
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from . import __version__
from .checks import REGISTRY, CheckContext, Verdict
from .errors import (CourseError, ExecutionTimeout, KernelDied, MissingName, ProtocolError,
                     SandboxUnavailable, StudentException)
from .execute import ExecutionRecord, inject_parameters, load_notebook, run_notebook
from .oracle import EXAMPLES, OracleMiss, RecordedReference
from .protocol import KernelProxy
from .rubric import Item, Rubric, load_rubric
from .sandbox import KernelSession, check_sandbox
from .scoring import item_score, total

__all__ = ["Submission", "find_course", "open_submission", "detect_assignment", "grade"]

_MAX_FILES_BYTES = 512 * 1024 * 1024
_MAX_REVIVALS = 2


@dataclass(frozen=True)
class Submission:
    """A notebook and the files handed in beside it (checkpoints)."""

    path: Path
    notebook: Path
    files: dict[str, Path]

    @property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        for name in sorted(self.files):
            digest.update(name.encode() + b"\0" + self.files[name].read_bytes())
        return digest.hexdigest()


def find_course(explicit: str | Path | None = None) -> Path:
    """The course folder: --course, $GRADER_COURSE, the cwd, or the package's checkout."""
    candidates = [explicit, os.environ.get("GRADER_COURSE"), Path.cwd(),
                  Path(__file__).resolve().parent.parent]
    for cand in candidates:
        if cand and (Path(cand) / "rubrics").is_dir():
            return Path(cand).resolve()
    if explicit:
        raise CourseError(f"{explicit}: not a course folder (it has no rubrics/ folder)")
    raise CourseError("no course folder found: run grader from the course folder (the one with "
                      "rubrics/ and reference/), or pass --course DIR")


def open_submission(path: str | Path) -> Submission:
    """A notebook file, or a folder holding exactly one notebook and its files."""
    path = Path(path)
    if path.is_file():
        if path.suffix != ".ipynb":
            raise CourseError(f"{path}: a submission is a .ipynb notebook or a folder holding one")
        return Submission(path, path, {path.name: path})
    if not path.is_dir():
        raise CourseError(f"{path}: no such file or folder")
    notebooks = sorted(p for p in path.glob("*.ipynb") if not p.name.startswith("."))
    if len(notebooks) != 1:
        found = ", ".join(p.name for p in notebooks) or "none"
        raise CourseError(f"{path}: a submission folder must hold exactly one notebook "
                          f"(found {found})")
    files = {p.name: p for p in sorted(path.iterdir())
             if p.is_file() and not p.is_symlink() and not p.name.startswith(".")}
    size = sum(p.stat().st_size for p in files.values())
    if size > _MAX_FILES_BYTES:
        raise CourseError(f"{path}: the submission's files total {size >> 20} MiB, over "
                          f"{_MAX_FILES_BYTES >> 20} MiB")
    return Submission(path, notebooks[0], files)


def detect_assignment(sub: Submission, course: Path) -> str:
    """From the notebook's metadata (``grader.assignment``), else its file name."""
    nb = load_notebook(sub.notebook)
    named = nb.metadata.get("grader", {}).get("assignment")
    for candidate in (named, sub.notebook.stem):
        if candidate and (course / "rubrics" / f"{candidate}.yaml").is_file():
            return str(candidate)
    known = ", ".join(sorted(p.stem for p in (course / "rubrics").glob("*.yaml")))
    raise CourseError(f"{sub.notebook}: cannot tell which lab this is (no `grader.assignment` in "
                      f"its metadata, and its name matches no rubric); pass --assignment, one of: "
                      f"{known}")


def load_reference(course: Path, rubric: Rubric) -> types.ModuleType | RecordedReference:
    """Import the trusted reference by path (it is never installed, never mounted).

    In a student kit the reference is a file of recorded answers (``grader.oracle``).
    """
    path = course / rubric.reference
    if not path.is_file():
        raise CourseError(f"{rubric.path}: its reference {path} does not exist")
    if path.suffix == ".json":
        return RecordedReference(path)
    spec = importlib.util.spec_from_file_location(f"grader_reference_{rubric.assignment}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _outcome(item: Item, verdict: Verdict) -> dict[str, Any]:
    score = item_score(item.points, verdict.fraction, item.partial)
    outcome = "passed" if verdict.fraction >= 1.0 else "failed"
    result = {"score": score, "outcome": outcome, "message": verdict.message,
              "counterexample": verdict.counterexample, "details": dict(verdict.details),
              "figures": verdict.figures, "traceback": verdict.details.pop("traceback", None)}
    result["details"].pop("traceback", None)
    return result


def _error(message: str, *, outcome: str = "error", tb: str | None = None,
           review: bool = False) -> dict[str, Any]:
    return {"score": 0.0, "outcome": outcome, "message": message, "counterexample": None,
            "details": {}, "figures": [], "traceback": tb, "needs_review": review}


def run_item(ctx: CheckContext, item: Item) -> dict[str, Any]:
    """Run one check; every way it can go wrong becomes a result, never an exception."""
    torch.manual_seed(ctx.seed)
    try:
        return _outcome(item, REGISTRY[item.check].fn(ctx, item.params))
    except MissingName as exc:
        return _error(str(exc))
    except OracleMiss as exc:
        return _error(f"skipped: {exc}", outcome="skipped")
    except StudentException as exc:
        if exc.ename == "FileNotFoundError" and any(c in exc.evalue for c in (".pt", ".pth")):
            return _error(f"skipped: the checkpoint is missing ({exc.evalue}); submit it beside "
                          "the notebook, or let the notebook's training cell create it",
                          outcome="skipped")
        return _error(f"your code raised {exc.ename}: {exc.evalue}", tb=exc.traceback)
    except (KernelDied, ExecutionTimeout, ProtocolError) as exc:
        return _error(f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # noqa: BLE001 - a grader bug must not cost the student
        return _error(f"grader internal error ({type(exc).__name__}: {exc}); this item needs "
                      "review by a TA", tb=traceback.format_exc()[-6000:], review=True)


def _parameters(rubric: Rubric, sub: Submission, device: str) -> dict[str, Any]:
    params = {"SEED": rubric.seed, "DEVICE": device, **rubric.parameters}
    if rubric.checkpoints and all(c in sub.files for c in rubric.checkpoints):
        params["TRAIN"] = False
    return params


def grade(submission: str | Path, *, assignment: str | None = None,
          course: str | Path | None = None, public_only: bool = False, sandbox: bool = True,
          device: str = "cpu", only: set[str] | None = None, seed: int | None = None,
          progress: Callable[[str], None] | None = None, reference: Any = None,
          warm: Callable[[dict[str, Path], Any], KernelSession | None] | None = None,
          threads: int | None = None) -> dict[str, Any]:
    """Grade one submission; returns the report dict (schema ``grader/report/schema.json``).

    ``only`` restricts grading to these item ids (an unknown id is a CourseError);
    ``seed`` overrides the rubric's seed (calibration runs the reference under several);
    ``reference`` replaces the rubric's reference (release records its answers);
    ``warm(files, limits)`` may hand over a kernel started ahead of need for the first run
    (a batch worker's pool; None when it has none that fits);
    ``threads`` caps the kernel's OMP/MKL threads below the rubric's (a batch that runs one
    grading per core gives each kernel one).

    Raises:
        CourseError: the submission, course folder or rubric cannot be used at all.
        SandboxUnavailable: bubblewrap cannot run and ``sandbox`` was not turned off.
    """
    t_start = time.perf_counter()
    note = progress or (lambda _msg: None)
    course_dir = find_course(course)
    sub = open_submission(submission)
    name = assignment or detect_assignment(sub, course_dir)
    rubric = load_rubric(course_dir / "rubrics" / f"{name}.yaml")
    if seed is not None:
        rubric = dataclasses.replace(rubric, seed=seed)
    if sub.path.is_file():     # a notebook named alone: its checkpoints beside it count
        beside = {c: sub.path.parent / c for c in rubric.checkpoints
                  if (sub.path.parent / c).is_file() and not (sub.path.parent / c).is_symlink()}
        sub = dataclasses.replace(sub, files={**sub.files, **beside})
    if reference is None:
        reference = load_reference(course_dir, rubric)
    recorded = isinstance(reference, RecordedReference)
    items = rubric.visible(public_only)
    if only is not None:
        unknown = only - {i.id for i in rubric.items}
        if unknown:
            raise CourseError(f"{rubric.path}: no item {', '.join(sorted(unknown))}")
        items = tuple(i for i in items if i.id in only)
    warnings: list[str] = []
    if sandbox:
        ok, why = check_sandbox()
        if not ok:
            raise SandboxUnavailable(f"cannot sandbox the student's kernel: {why}. Refusing to "
                                     "grade; pass --unsafe-no-sandbox to grade without one "
                                     "(only for code you trust).")
        sandbox_detail = why
    else:
        sandbox_detail = "none: graded with --unsafe-no-sandbox"
        warnings.append("graded WITHOUT a sandbox (--unsafe-no-sandbox): the notebook ran with "
                        "the grader's own rights")
    nb = load_notebook(sub.notebook)
    params = _parameters(rubric, sub, device)
    nb = inject_parameters(nb, params)
    injected = next(i for i, c in enumerate(nb.cells)
                    if "injected-parameters" in c.metadata.get("tags", []))
    limits = rubric.limits.capped(threads)

    asked = {"warm": False, "got": False}   # the warm pool serves the first start only

    def start() -> KernelSession:
        if warm is not None and not asked["warm"]:
            asked["warm"] = True
            ready = warm(sub.files, limits)
            if ready is not None:
                asked["got"] = True
                return ready
        session = KernelSession(sub.files, limits, sandbox=sandbox, gpu=device.startswith("cuda"))
        session.start()
        return session

    def context(session: KernelSession) -> CheckContext:
        return CheckContext(kernel=KernelProxy(session, device), reference=reference,
                            seed=rubric.seed, max_examples=rubric.max_examples, device=device)

    record = ExecutionRecord(parameters=params)
    note(f"running {sub.notebook.name} in a {'sandboxed ' if sandbox else ''}kernel")
    t_kernel = time.perf_counter()
    session = run_notebook(nb, start, record)
    kernel_start_s = session.start_s
    results: list[dict[str, Any]] = []
    peak: list[float] = []
    t_checks = time.perf_counter()
    revivals = 0
    try:
        ctx = context(session)
        for item in items:
            if not session.is_alive() and revivals < _MAX_REVIVALS:
                revivals += 1
                note("the kernel died: restarting it and re-running the notebook")
                session.close()
                session = run_notebook(nb, start, ExecutionRecord(parameters=params))
                ctx = context(session)
            note(f"checking {item.id}")
            t0 = time.perf_counter()
            examples = getattr(reference, "examples", None)
            if examples is not None:
                examples.start(item.id)
            token = EXAMPLES.set(examples)
            try:
                result = run_item(ctx, item)
            finally:
                EXAMPLES.reset(token)
            results.append({"id": item.id, "title": item.title, "max_score": item.points,
                            "visibility": item.visibility, "check": item.check,
                            "hint": item.hint, "needs_review": False,
                            **result, "duration_s": round(time.perf_counter() - t0, 3)})
    finally:
        peak.append(session.peak_rss_mb() or 0.0)
        session.close()
    record.kernel_died |= revivals > 0
    if recorded:
        warnings.append("checked against the reference answers recorded in this kit: a failing "
                        "input is the first one found, not the smallest")
    if record.timed_out:
        warnings.append(f"the notebook did not finish within {limits.total_timeout_s:g} s")
    end = time.perf_counter()
    return {
        "schema_version": "1.0", "assignment": rubric.assignment, "title": rubric.title,
        "mode": "check" if public_only else "grade",
        "score": total([r["score"] for r in results]),
        "max_score": total([i.points for i in items]),
        "submission": {"path": str(sub.path), "notebook": sub.notebook.name,
                       "sha256": sub.sha256, "files": sorted(sub.files)},
        "items": results,
        "execution": {"sandbox": {"enabled": sandbox, "kind": "bubblewrap" if sandbox else "none",
                                  "detail": sandbox_detail, "limits": _limits_json(limits)},
                      **_cells_json(record, injected), "peak_rss_mb": max(peak),
                      "warm_kernel": asked["got"]},
        "timings": {"kernel_start_s": round(kernel_start_s, 3), "notebook_s": record.notebook_s,
                    "checks_s": round(end - t_checks, 3), "total_s": round(end - t_start, 3),
                    "setup_s": round(t_kernel - t_start, 3)},
        "versions": _versions(rubric),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "warnings": warnings,
    }


def _cells_json(record: ExecutionRecord, injected: int) -> dict[str, Any]:
    """Cells numbered as in the student's own notebook (the injected cell left out)."""
    data = record.to_json()
    data["cells"] = [{**c, "index": c["index"] - (c["index"] > injected)}
                     for c in data["cells"] if c["index"] != injected]
    return data


def _limits_json(limits: Any) -> dict[str, float]:
    from dataclasses import asdict

    return {k: v for k, v in asdict(limits).items() if isinstance(v, (int, float))}


def _versions(rubric: Rubric) -> dict[str, str]:
    import hypothesis
    import nbclient

    return {"grader": __version__, "python": platform.python_version(),
            "torch": torch.__version__, "hypothesis": hypothesis.__version__,
            "nbclient": nbclient.__version__, "rubric_sha256": rubric.sha256,
            "platform": sys.platform}
