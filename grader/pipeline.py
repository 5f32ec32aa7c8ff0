"""One submission, end to end: execute -> probe -> check -> score -> report dict."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
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
from .batching import together
from .checks import REGISTRY, CheckContext
from .checks.registry import manual_seed
from .errors import (CourseError, ExecutionTimeout, KernelDied, KernelStartError, MissingName,
                     ProtocolError, SandboxUnavailable, StudentException)
from .execute import CellRecord, ExecutionRecord, inject_parameters, load_notebook, run_notebook
from .manual import pending
from .model import ItemResult, Outcome, Report, SubmissionInfo, Verdict, rubric_fields
from .oracle import EXAMPLES, OracleMiss, RecordedReference
from .protocol import KernelProxy
from .report import ERROR_KINDS, SCHEMA_VERSION, item_problems, values
from .rubric import Item, Rubric, load_rubric
from .sandbox import KernelSession, check_sandbox
from .scoring import item_score, total

__all__ = ["Submission", "find_course", "open_submission", "detect_assignment", "grade",
           "is_kit", "require_sandbox"]

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


def is_kit(course: Path) -> bool:
    """Whether ``course`` is a released student kit (``grader release`` writes its kit.json)."""
    return (course / "kit.json").is_file()


def _refusal(why: str) -> SandboxUnavailable:
    return SandboxUnavailable(f"cannot sandbox the student's kernel: {why}. Refusing to "
                              "grade; pass --unsafe-no-sandbox to grade without one "
                              "(only for code you trust).")


def require_sandbox() -> str:
    """What confines the student's kernel here (bubblewrap and its path), or
    SandboxUnavailable saying why nothing can: grading never goes on without it."""
    ok, why = check_sandbox()
    if not ok:
        raise _refusal(why)
    return why


def _sandbox(sandbox: bool, fallback: bool) -> tuple[bool, dict[str, Any], list[str]]:
    """Whether the kernel is confined, the report's ``execution.sandbox`` (less its limits)
    and the warnings it brings. ``fallback``: a kit's self-check runs the student's own
    notebook without the sandbox where bubblewrap cannot run, instead of refusing."""
    if not sandbox:
        return False, {"enabled": False, "kind": "none", "disabled_by": "unsafe_no_sandbox",
                       "detail": "none: graded with --unsafe-no-sandbox"}, [
            "graded WITHOUT a sandbox (--unsafe-no-sandbox): the notebook ran with the "
            "grader's own rights"]
    ok, why = check_sandbox()
    if ok:
        return True, {"enabled": True, "kind": "bubblewrap", "detail": why}, []
    if not fallback:
        raise _refusal(why)
    why = " ".join(why.split())       # bwrap's stderr may span lines: the notice is one
    return False, {"enabled": False, "kind": "none", "disabled_by": "kit_fallback",
                   "detail": f"none: bubblewrap cannot run here: {why}"}, [
        f"ran WITHOUT the sandbox, as a plain local kernel, since bubblewrap cannot run "
        f"here: {why}. Fine for checking your own notebook; grading always uses the sandbox"]


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


def _outcome(item: Item, verdict: Verdict) -> ItemResult:
    """A verdict as an item's result, every value converted by ``grader.report.values``; a
    verdict that cannot be converted is an error that needs review (the report survives)."""
    if not isinstance(verdict, Verdict):
        return _error(item, f"the check returned {type(verdict).__name__}, not a Verdict: a "
                      "grader bug; this item needs review by a TA", kind="unreportable")
    try:
        fraction = values.fraction(verdict.fraction)
        fields = values.verdict_fields(verdict)
    except Exception as exc:  # noqa: BLE001 - what a check returns must not sink the report
        return _error(item, f"the check's result cannot be reported ({type(exc).__name__}: "
                      f"{exc}): a grader bug; this item needs review by a TA",
                      kind="unreportable", tb=_grader_traceback())
    return ItemResult(**rubric_fields(item), score=item_score(item.points, fraction, item.partial),
                      outcome="passed" if fraction >= 1.0 else "failed",
                      **{**fields, "figures": tuple(fields["figures"])}, needs_review=False,
                      duration_s=0.0)


def _grader_traceback() -> str:
    """The exception being handled, for the TA: its frames and message without their source
    lines, since a line of ``reference/`` must never reach a student's report."""
    etype, exc, tb = sys.exc_info()
    frames = [f'  File "{f.filename}", line {f.lineno}, in {f.name}'
              for f in traceback.extract_tb(tb)]
    name = etype.__name__ if etype else "Exception"
    return ("Traceback (most recent call last):\n" + "\n".join(frames) +
            f"\n{name}: {exc}")[-6000:]


def _error(item: Item, message: str, *, kind: str, outcome: Outcome = "error",
           tb: str | None = None, details: dict[str, Any] | None = None) -> ItemResult:
    """An item without a verdict on the student's answer; ``kind`` (``ERROR_KINDS``) says
    why, and whether a TA must review it."""
    return ItemResult(**rubric_fields(item), score=0.0, outcome=outcome, message=message,
                      counterexample=None, details=details or {}, traceback=tb,
                      needs_review=ERROR_KINDS[kind], error_kind=kind, duration_s=0.0)


def run_item(ctx: CheckContext, item: Item) -> ItemResult:
    """Run one check; every way it can go wrong becomes a result, never an exception."""
    manual_seed(ctx.seed)
    try:
        verdict = REGISTRY[item.check].fn(ctx, item.params)
    except MissingName as exc:
        return _error(item, str(exc), kind="missing_name")
    except OracleMiss as exc:
        return _error(item, f"skipped: {exc}", outcome="skipped", kind="not_recorded")
    except StudentException as exc:
        if exc.ename == "FileNotFoundError" and any(c in exc.evalue for c in (".pt", ".pth")):
            return _error(item, f"skipped: the checkpoint is missing ({exc.evalue}); submit it "
                          "beside the notebook, or let the notebook's training cell create it",
                          outcome="skipped", kind="missing_checkpoint")
        return _error(item, f"your code raised {exc.ename}: {exc.evalue}", kind="student_exception",
                      tb=exc.traceback)
    except KernelDied as exc:
        return _error(item, f"KernelDied: {exc}", kind="kernel_died")
    except ExecutionTimeout as exc:
        return _error(item, f"ExecutionTimeout: {exc}", kind="timeout")
    except ProtocolError as exc:
        return _error(item, f"the grader could not read the kernel's reply (ProtocolError: {exc}); "
                      "this item needs review by a TA", kind="protocol")
    except Exception as exc:  # noqa: BLE001 - a grader bug must not cost the student
        return _error(item, f"grader internal error ({type(exc).__name__}: {exc}); this item needs "
                      "review by a TA", kind="grader", tb=_grader_traceback())
    return _outcome(item, verdict)


def _entry(item: Item, result: ItemResult, seconds: float) -> ItemResult:
    """One report item, checked against the schema on its own: an item that still cannot be
    reported becomes an error that needs review, and every other item keeps its verdict."""
    entry = dataclasses.replace(result, duration_s=round(max(0.0, seconds), 3))
    try:
        problems = item_problems(entry.to_json())
    except Exception as exc:  # noqa: BLE001 - a value the validator itself chokes on
        problems = [f"{type(exc).__name__}: {exc}"]
    if not problems:
        return entry
    said = {k: values.text(getattr(result, k)) for k in ("outcome", "score", "message")}
    failure = _error(item, f"the check's result cannot be reported ({'; '.join(problems[:3])}):"
                     " a grader bug; this item needs review by a TA", kind="unreportable",
                     details={"check_said": said})
    return dataclasses.replace(failure, duration_s=entry.duration_s)


def _not_started(item: Item, exc: BaseException, tb: str) -> ItemResult:
    """The result of an item a kernel that could not start left ungraded (or that a crash
    of the notebook runner did): an error that needs review, never a zero."""
    if isinstance(exc, KernelStartError):
        return _error(item, f"the grader could not start the kernel ({exc}), so this item was "
                      "not graded: not a verdict on the submission; it needs review by a TA "
                      "(the kernel's log is in the traceback field)", kind="kernel_start",
                      tb=exc.log or None)
    return _error(item, f"grader internal error while running the notebook "
                  f"({type(exc).__name__}: {exc}), so this item was not graded; it needs "
                  "review by a TA", kind="grader", tb=tb[-6000:])


def _start_kernel(files: dict[str, Path], limits: Any, *, sandbox: bool,
                  gpu: bool) -> KernelSession:
    """A started kernel, or KernelStartError carrying its log (the session is closed)."""
    try:
        session = KernelSession(files, limits, sandbox=sandbox, gpu=gpu)
    except Exception as exc:  # noqa: BLE001 - unreadable files, no temporary folder
        raise KernelStartError(f"{type(exc).__name__}: {exc}") from exc
    try:
        session.start()
    except Exception as exc:  # noqa: BLE001 - a launch or handshake failure of any kind
        log = session.log_tail()
        session.close()
        raise KernelStartError(f"{type(exc).__name__}: {exc}", log=log) from exc
    return session


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
          threads: int | None = None, kit_fallback: bool = False) -> dict[str, Any]:
    """Grade one submission; returns the report as JSON data (:class:`grader.model.Report`
    converted by its ``to_json``; schema ``grader/report/schema.json``).

    ``only`` restricts grading to these item ids (an unknown id is a CourseError);
    ``seed`` overrides the rubric's seed (calibration runs the reference under several);
    ``reference`` replaces the rubric's reference (release records its answers);
    ``warm(files, limits)`` may hand over a kernel started ahead of need for the first run
    (a batch worker's pool; None when it has none that fits);
    ``threads`` caps the kernel's OMP/MKL threads below the rubric's (a batch that runs one
    grading per core gives each kernel one);
    ``kit_fallback``: in a released kit (:func:`is_kit`), a student's self-check, run the
    notebook as a plain local kernel where bubblewrap cannot run instead of refusing (the
    report says so: ``execution.sandbox.disabled_by`` and a warning).

    Raises:
        CourseError: the submission, course folder or rubric cannot be used at all.
        SandboxUnavailable: bubblewrap cannot run, ``sandbox`` was not turned off, and
            there is no kit fallback.
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
    sandbox, sandbox_json, warnings = _sandbox(sandbox, kit_fallback and is_kit(course_dir))
    if reference is None:
        reference = load_reference(course_dir, rubric)
    recorded = isinstance(reference, RecordedReference)
    items = rubric.visible(public_only)
    if only is not None:
        unknown = only - {i.id for i in rubric.items}
        if unknown:
            raise CourseError(f"{rubric.path}: no item {', '.join(sorted(unknown))}")
        items = tuple(i for i in items if i.id in only)
    nb = load_notebook(sub.notebook)
    manual = {i.id: pending(i, nb) for i in items if i.manual}    # a TA grades these
    params = _parameters(rubric, sub, device)
    nb = inject_parameters(nb, params)
    injected = next(i for i, c in enumerate(nb.cells)
                    if "injected-parameters" in c.metadata.get("tags", []))
    limits = rubric.limits.capped(threads)

    asked = {"warm": False, "got": False}   # the warm pool serves the first start only

    def start() -> KernelSession:
        if warm is not None and not asked["warm"]:
            asked["warm"] = True
            ready = _warm_kernel(warm, sub.files, limits)
            if ready is not None:
                asked["got"] = True
                return ready
        return _start_kernel(sub.files, limits, sandbox=sandbox, gpu=device.startswith("cuda"))

    proxies: list[KernelProxy] = []      # one per kernel (a revived kernel gets its own)

    def context(session: KernelSession) -> CheckContext:
        proxies.append(KernelProxy(session, device))
        return CheckContext(kernel=proxies[-1], reference=reference,
                            seed=rubric.seed, max_examples=rubric.max_examples, device=device)

    record = ExecutionRecord(parameters=params)
    note(f"running {sub.notebook.name} in a {'sandboxed ' if sandbox else ''}kernel")
    t_kernel = time.perf_counter()
    run = _Run(lambda rec: run_notebook(nb, start, rec), context, params, note)
    run.notebook(record)
    kernel_start_s = run.session.start_s if run.session is not None else 0.0
    forked = bool(getattr(run.session, "forked", False))      # a stand-in session may lack it
    t_checks = time.perf_counter()
    try:
        checked = iter(run.items([i for i in items if not i.manual], reference))
    finally:
        peak = run.close()
    results = [_entry(i, manual[i.id], 0.0) if i.manual else next(checked) for i in items]
    record.kernel_died |= run.revivals > 0
    if not record.cells:        # the kernel never started: every code cell is unrun
        record.cells = [CellRecord(index=i) for i, c in enumerate(nb.cells)
                        if c.cell_type == "code"]
    if recorded:
        warnings.append("checked against the reference answers recorded in this kit: a failing "
                        "input is the first one found, not the smallest")
    if record.timed_out:
        warnings.append(f"the notebook did not finish within {limits.total_timeout_s:g} s")
    review = [r.id for r in results if r.needs_review]
    if review:
        listed = ", ".join(review[:8]) + (", ..." if len(review) > 8 else "")
        warnings.append(f"{len(review)} of {len(results)} item(s) need review by a TA (a problem "
                        f"on the grader's side, not a verdict on this work): {listed}")
    end = time.perf_counter()
    report = Report(
        schema_version=SCHEMA_VERSION, assignment=rubric.assignment,
        title=rubric.title, mode="check" if public_only else "grade",
        score=total([r.score for r in results]), max_score=total([i.points for i in items]),
        submission=SubmissionInfo(str(sub.path), sub.notebook.name, sub.sha256,
                                  tuple(sorted(sub.files))),
        items=tuple(results),
        execution={"sandbox": {**sandbox_json, "limits": _limits_json(limits)},
                   **_cells_json(record, injected), "peak_rss_mb": peak,
                   "warm_kernel": asked["got"], "forked_kernel": forked},
        timings={"kernel_start_s": round(kernel_start_s, 3), "notebook_s": record.notebook_s,
                 "checks_s": round(end - t_checks, 3), "total_s": round(end - t_start, 3),
                 "setup_s": round(t_kernel - t_start, 3),
                 "round_trips": sum(p.calls for p in proxies),
                 "batched_calls": sum(p.steps for p in proxies),
                 "kernel_calls_s": round(sum(p.kernel_s for p in proxies), 3)},
        versions=_versions(rubric),
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        warnings=tuple(warnings))
    return report.to_json()


def _warm_kernel(warm: Callable[[dict[str, Path], Any], KernelSession | None],
                 files: dict[str, Path], limits: Any) -> KernelSession | None:
    """The batch worker's warm kernel, or None: a pool that fails only means a cold start."""
    try:
        return warm(files, limits)
    except Exception:  # noqa: BLE001
        return None


_KERNEL_WIDE = {"kernel_died", "timeout", "protocol"}   # may hit every item checked together


class _Run:
    """The notebook's kernel while the items are checked: revived (the notebook run again)
    when the student's code kills it; a kernel that cannot start, or a crash of the notebook
    runner, leaves every item still to check an error that needs review."""

    def __init__(self, execute: Callable[[ExecutionRecord], KernelSession],
                 context: Callable[[KernelSession], CheckContext], params: dict[str, Any],
                 note: Callable[[str], None]) -> None:
        self.execute, self.context, self.params, self.note = execute, context, params, note
        self.session: KernelSession | None = None
        self.ctx: CheckContext | None = None
        self.failure: tuple[BaseException, str] | None = None   # why no kernel ran
        self.revivals = 0
        self.replay_failed = False        # some kernel lost the notebook's definitions

    def notebook(self, record: ExecutionRecord) -> None:
        """Run the notebook into a fresh kernel (or record why it could not)."""
        try:
            self.session = self.execute(record)
            self.ctx = self.context(self.session)
        except Exception as exc:  # noqa: BLE001 - becomes every remaining item's result
            self.session, self.failure = None, (exc, _grader_traceback())
        self.replay_failed |= record.replay_failed

    def items(self, items: list[Item], reference: Any) -> list[ItemResult]:
        """The report items, checked together (:func:`grader.batching.together`): every
        item's calls into the kernel share round trips. An item that ends with the kernel
        (it died, a call ran out of time, a reply was refused) may only have been in the
        company of the item that caused it: each such item is checked again on its own,
        in order, after the kernel is revived, so it gets the verdict it gets alone.
        A kit's check records or replays inputs item by item, so it checks one at a time."""
        if getattr(reference, "examples", None) is not None or len(items) < 2:
            return [self.item(item, reference) for item in items]
        results = [r.value() for r in together([functools.partial(self.item, item, reference)
                                              for item in items])]
        for n, item in enumerate(items):
            if results[n].error_kind in _KERNEL_WIDE:
                results[n] = self.item(item, reference)
        return results

    def item(self, item: Item, reference: Any) -> ItemResult:
        """The report item for ``item``; never raises for the kernel's or a check's sake."""
        if (self.session is not None and not self.session.is_alive()
                and self.revivals < _MAX_REVIVALS):
            self.revivals += 1
            self.note("the kernel died: restarting it and re-running the notebook")
            self.session.close()
            self.notebook(ExecutionRecord(parameters=self.params))
        t0 = time.perf_counter()
        if self.failure is not None or self.ctx is None:
            exc, tb = self.failure or (RuntimeError("no kernel"), "")
            return _entry(item, _not_started(item, exc, tb), time.perf_counter() - t0)
        self.note(f"checking {item.id}")
        examples = getattr(reference, "examples", None)
        if examples is not None:
            examples.start(item.id)
        token = EXAMPLES.set(examples)
        try:
            result = run_item(self.ctx, item)
        finally:
            EXAMPLES.reset(token)
        if result.error_kind == "missing_name" and self.replay_failed:
            result = _error(item, f"{result.message}; but the kernel was restarted and the cells "
                            "that had run could not be replayed, so the notebook may define it: "
                            "this item needs review by a TA", kind="lost_definitions")
        return _entry(item, result, time.perf_counter() - t0)

    def close(self) -> float:
        """Stop the kernel; its peak memory in MiB (0 when none ran)."""
        if self.session is None:
            return 0.0
        try:
            return self.session.peak_rss_mb() or 0.0
        finally:
            self.session.close()
            self.session = None


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
