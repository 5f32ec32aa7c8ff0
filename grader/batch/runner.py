"""Grade a whole class: parallel workers, warm kernels, a gradebook that loses nothing.

Each worker process grades one submission at a time, each in a fresh sandboxed kernel,
forked from the batch's template (grader.sandbox.zygote: torch already imported; the main
process starts it while the workers' fork server imports, and every worker asks it) where
it can run, else started cold; a kernel for the *next* submission is started (and
``import torch`` run in it) in the background while the current one is graded, and handed
over with the submission's files copied in — never reused across students. The main
process is the only writer: it writes each student's reports atomically, then the
gradebook row, so killing it at any moment loses at most the submissions in flight, which
the rerun grades.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import time
import traceback
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import GraderError
from ..model import GradebookItem, Report
from ..pipeline import find_course, open_submission, require_sandbox
from ..rubric import load_rubric
from .exports import write_report_atomically
from .gradebook import Gradebook, Row
from .ingest import Ingested, Limits, ingest, read_roster, slug
from ..workers import adopt_template, prepare_workers

__all__ = ["Job", "BatchResult", "run_batch", "grade_job", "keep_notebooks", "KEPT_NOTEBOOK",
           "prepare_workers", "adopt_template"]      # the last two: grader/workers.py

KEPT_NOTEBOOK = "submission.ipynb"     # students/<id>/submission.ipynb: the graded notebook


@dataclass(frozen=True)
class Job:
    """One submission to grade (plain data: crosses process and machine boundaries)."""

    student: str
    name: str
    folder: str
    sha256: str
    submitted: str | None
    source: str
    files: dict[str, bytes] | None = None     # shipped to remote workers (Dask)


@dataclass
class BatchResult:
    out: Path
    layout: str
    graded: int = 0
    errors: int = 0
    already: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    superseded: int = 0
    seconds: float = 0.0
    needs_review: list[str] = field(default_factory=list)   # a grader-side problem: not final
    pending: list[str] = field(default_factory=list)    # a manual item to grade: not final
    dropped: list[dict[str, Any]] = field(default_factory=list)   # adjustments dropped now


# ------------------------------------------------------------------------- worker side
class WarmPool:
    """At most one kernel started ahead of need, for one set of limits.

    ``prepare`` launches the kernel process and queues ``import torch`` without waiting;
    the kernel boots while the worker grades the current submission. ``take`` collects
    it, copies the next submission's files in, and prepares the next one. One thread:
    a kernel client's sockets must stay in the thread that made them.
    """

    def __init__(self, sandbox: bool, gpu: bool) -> None:
        self.sandbox, self.gpu = sandbox, gpu
        self._ready: tuple[Any, Any, str] | None = None
        self._limits: Any = None

    def prepare(self, limits: Any) -> None:
        from ..sandbox import KernelSession

        self._limits = limits
        try:
            session = KernelSession({}, limits, sandbox=self.sandbox, gpu=self.gpu)
            session.launch()
            client = session.new_client()            # every socket bounded (docs/sandbox.md)
            msg_id = client.execute("import torch", silent=True, store_history=False)
            self._ready = (session, client, msg_id)
        except Exception:  # noqa: BLE001 - no warm kernel just means a cold start
            self._ready = None

    def take(self, files: dict[str, Path], limits: Any) -> Any:
        """The warm kernel with ``files`` copied in, or None (then the caller starts one)."""
        ready, self._ready = self._ready, None
        fits = self._limits == limits
        self.prepare(limits)
        if ready is None:
            return None
        session, client, msg_id = ready
        try:
            if not fits:
                raise RuntimeError("other limits")
            deadline = time.monotonic() + session.limits.startup_timeout_s
            while True:
                reply = client.shell_channel.get_msg(timeout=max(0.1, deadline - time.monotonic()))
                if reply["parent_header"].get("msg_id") == msg_id:
                    break
            if reply["content"].get("status") != "ok":
                raise RuntimeError("the warm-up failed")
            session.confirm(client)
            session.start_s = 0.0
            session.preload(files, "")
        except Exception:  # noqa: BLE001 - a kernel that is not ready: close it
            client.stop_channels()
            session.close()
            return None
        return session

    def close(self) -> None:
        if self._ready is not None:
            session, client, _ = self._ready
            client.stop_channels()
            session.close()
            self._ready = None


_STATE: dict[str, Any] = {}


def _init_worker(course: str, lab: str, sandbox: bool, device: str, warm: bool,
                 threads: int | None = None, template: socket.socket | None = None) -> None:
    import atexit

    import torch

    _STATE.update(course=course, lab=lab, sandbox=sandbox, device=device, threads=threads)
    if threads:
        torch.set_num_threads(threads)      # the grader's own checks share the cores too
    if sandbox and not device.startswith("cuda"):
        adopt_template(template)
    if warm:
        pool = WarmPool(sandbox, device.startswith("cuda"))
        limits = load_rubric(Path(course) / "rubrics" / f"{lab}.yaml").limits
        pool.prepare(limits.capped(threads))
        _STATE["pool"] = pool
        atexit.register(pool.close)


def grade_job(job: Job, course: str | None = None, lab: str | None = None,
              sandbox: bool | None = None, device: str | None = None) -> dict[str, Any]:
    """Grade one job in this process; never raises (an error becomes the result)."""
    from ..pipeline import grade

    course = course or _STATE["course"]
    lab = lab or _STATE["lab"]
    sandbox = _STATE.get("sandbox", True) if sandbox is None else sandbox
    device = device or _STATE.get("device", "cpu")
    pool: WarmPool | None = _STATE.get("pool")
    started = time.perf_counter()
    folder = Path(job.folder)
    tmp = None
    try:
        if job.files is not None:              # a remote worker: files came with the job
            import tempfile

            tmp = Path(tempfile.mkdtemp(prefix="grader-job-"))
            folder = tmp / "submission"
            folder.mkdir()
            for name, data in job.files.items():
                (folder / Path(name).name).write_bytes(data)
        report = grade(folder, assignment=lab, course=course, sandbox=sandbox, device=device,
                       warm=pool.take if pool else None, threads=_STATE.get("threads"))
        return {"student": job.student, "report": report, "error": None}
    except GraderError as exc:
        return {"student": job.student, "report": None, "error": str(exc),
                "seconds": time.perf_counter() - started}
    except Exception as exc:  # noqa: BLE001 - a grader bug: needs review, batch goes on
        return {"student": job.student, "report": None,
                "error": f"grader internal error ({type(exc).__name__}: {exc}); needs review",
                "traceback": traceback.format_exc()[-4000:],
                "seconds": time.perf_counter() - started}
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- main side
def _row(job: Job, result: dict[str, Any], lab: str, rubric_sha: str, max_score: float,
         out: Path) -> Row:
    """The gradebook row of one result. A submission that could not be graded, or whose
    report could not be written, is an ``error`` row: never a 0 (the exports leave it blank)."""
    report = result.get("report")
    error = result.get("error") or ""
    if report is not None:
        try:
            path = write_report_atomically(report, out / "students" / slug(job.student))
        except (ValueError, OSError) as exc:      # a grader bug: this row only, not the batch
            report, error = None, (f"grader internal error: the report could not be written "
                                   f"({type(exc).__name__}: {str(exc)[:500]}); needs review")
    if report is None:
        return Row(job.student, job.name, lab, job.sha256, rubric_sha, job.submitted, "error",
                   0.0, max_score, (), error or "could not be graded; needs review", None,
                   result.get("seconds"), None, job.source)
    graded = Report.from_json(report)
    return Row(job.student, job.name, lab, job.sha256, rubric_sha, job.submitted, "graded",
               float(graded.score), float(graded.max_score),
               tuple(GradebookItem.of(i) for i in graded.items), "", str(path.relative_to(out)),
               graded.timings["total_s"], graded.execution.get("peak_rss_mb"), job.source)


def default_workers() -> int:
    """One grading per core."""
    return max(1, os.cpu_count() or 1)


def threads_per_grading(workers: int) -> int:
    """The cores shared out among the gradings running at once (at least one each): a kernel
    and the worker's own checks run this many torch/OMP threads, so ``workers`` gradings do
    not ask for ``workers`` times the machine."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def _jobs(ingested: Ingested, names: dict[str, str]) -> list[Job]:
    out = []
    for a in ingested.attempts:
        sub = open_submission(a.folder)
        out.append(Job(a.student, names.get(a.student) or a.name, str(a.folder), sub.sha256,
                       a.submitted.isoformat() if a.submitted else None, a.source))
    return out


def keep_notebooks(jobs: list[Job], rows: list[Row], out: Path) -> None:
    """Each student's notebook that their gradebook row graded, beside the report
    (``students/<id>/submission.ipynb``): what ``grader similarity`` compares, and what a
    TA opens."""
    by_submission = {(job.student, job.sha256): job for job in jobs}
    for row in rows:
        job = by_submission.get((row.student, row.content_sha256))
        if job is None:               # graded in an earlier run from another export
            continue
        folder = out / "students" / slug(row.student)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{KEPT_NOTEBOOK}.tmp"
        shutil.copyfile(open_submission(job.folder).notebook, tmp)
        os.replace(tmp, folder / KEPT_NOTEBOOK)


def run_batch(source: Path, lab: str, out: Path, *, course: str | Path | None = None,
              workers: int | None = None, regrade: bool = False, device: str = "cpu",
              sandbox: bool = True, roster: Path | None = None, all_attempts: bool = False,
              warm: bool = True, scheduler: str | None = None, limits: Limits | None = None,
              progress: Callable[[int, int, str], None] | None = None) -> BatchResult:
    """Ingest ``source``, grade what the gradebook lacks, write reports, exports, dashboard."""
    from .exports import write_exports

    started = time.perf_counter()
    course_dir = find_course(course)
    rubric = load_rubric(course_dir / "rubrics" / f"{lab}.yaml")
    if sandbox and not scheduler:   # (a Dask cluster's workers each check their own)
        require_sandbox()       # refused once, here: not every student "could not grade"
    out.mkdir(parents=True, exist_ok=True)
    scratch = out / "scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    ingested = ingest(source, scratch, limits=limits or Limits(), all_attempts=all_attempts)
    names = read_roster(roster) if roster else {}
    book = Gradebook(out / "gradebook.sqlite")
    result = BatchResult(out, ingested.layout, superseded=ingested.superseded,
                         skipped=[dataclasses.asdict(s) for s in ingested.skipped])
    todo = []
    jobs = _jobs(ingested, names)
    for job in jobs:
        if not regrade and book.has(job.student, lab, job.sha256, rubric.sha256, final=True):
            result.already += 1
        else:
            todo.append(job)
    note = progress or (lambda _done, _total, _msg: None)
    note(0, len(todo), f"{ingested.layout} export: {len(todo)} to grade, "
                       f"{result.already} already graded")

    def done(job: Job, outcome: dict[str, Any], count: int) -> None:
        row = _row(job, outcome, lab, rubric.sha256, rubric.max_score, out)
        book.record(row)
        result.graded += row.status == "graded"
        result.errors += row.status == "error"
        shown = (f"{row.score:.4g}/{row.max_score:g}" if row.status == "graded" else "error")
        note(count, len(todo), f"{job.student}: {shown}"
             + (" (needs review)" if row.needs_review else ""))

    runner = _run_dask if scheduler else _run_local
    runner(todo, done, course=str(course_dir), lab=lab, sandbox=sandbox, device=device,
           workers=workers or default_workers(), warm=warm, scheduler=scheduler)
    result.seconds = round(time.perf_counter() - started, 1)
    summary = write_exports(book, rubric, out, result, names)
    result.needs_review = [r["student"] for r in summary["needs_review"]]
    result.pending = [r["student"] for r in summary["pending"]]
    result.dropped = summary["adjustments_dropped"]
    keep_notebooks(jobs, book.latest(lab, rubric.sha256), out)
    book.close()
    shutil.rmtree(scratch, ignore_errors=True)
    return result


def _run_local(todo: list[Job], done: Callable[[Job, dict[str, Any], int], None], *,
               course: str, lab: str, sandbox: bool, device: str, workers: int, warm: bool,
               scheduler: str | None) -> None:
    pending, count = list(todo), 0
    if not pending:          # a rerun with everything graded starts no server, no template
        return
    tries: dict[str, int] = {}
    threads = threads_per_grading(workers)
    context, template = prepare_workers(sandbox, device)
    while pending:
        with ProcessPoolExecutor(max_workers=max(1, min(workers, len(pending))),
                                 mp_context=context, initializer=_init_worker,
                                 initargs=(course, lab, sandbox, device, warm, threads,
                                           template)) as pool:
            futures: dict[Future, Job] = {pool.submit(grade_job, job): job for job in pending}
            pending = []
            for future in as_completed(futures):
                job = futures[future]
                try:
                    outcome = future.result()
                except BrokenProcessPool:           # a worker died: retry once, then report
                    tries[job.sha256] = tries.get(job.sha256, 0) + 1
                    if tries[job.sha256] < 2:
                        pending.append(job)
                        continue
                    outcome = {"report": None, "error": "the grading worker died twice on "
                               "this submission; needs review"}
                count += 1
                done(job, outcome, count)


def _run_dask(todo: list[Job], done: Callable[[Job, dict[str, Any], int], None], *,
              course: str, lab: str, sandbox: bool, device: str, workers: int, warm: bool,
              scheduler: str | None) -> None:
    """The same jobs on a Dask distributed cluster (workers need the course at ``course``)."""
    try:
        from distributed import Client, as_completed as dask_completed
    except ImportError:
        raise GraderError("--scheduler needs Dask distributed: pip install 'grader[cluster]'"
                          ) from None
    with Client(scheduler, timeout="30s") as client:
        shipped = [dataclasses.replace(job, files={p.name: p.read_bytes()
                                                   for p in Path(job.folder).iterdir()
                                                   if p.is_file()}) for job in todo]
        futures = {client.submit(grade_job, job, course, lab, sandbox, device, pure=False,
                                 key=f"grade-{job.sha256[:16]}-{job.student}"): job
                   for job in shipped}
        for count, future in enumerate(dask_completed(list(futures)), 1):
            job = futures[future]
            try:
                outcome = future.result()
            except Exception as exc:  # noqa: BLE001 - a lost worker, a cancelled task
                outcome = {"report": None, "error": f"the cluster could not grade it "
                           f"({type(exc).__name__}: {exc}); needs review"}
            done(job, outcome, count)
