"""A class graded in one command: verdicts, resume after SIGKILL, exports, dashboard, Dask."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any, Iterator

import nbformat
import pytest
import yaml

from grader import cli
from grader.batch import run_batch
from grader.report import validate_report

from conftest import example as example_copy
from conftest import processes_with

pytestmark = pytest.mark.kernel
REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "assignments" / "backprop" / "examples"
ARTIFACTS = REPO / "test-artifacts"


def automatic_only(text: str) -> str:
    """A rubric without its manual items (graded by a TA: tests/test_review.py grades them),
    so that a grade here is final as soon as the grader has graded it."""
    head, *items = text.split("\n  - id: ")
    text = "\n  - id: ".join([head, *(i for i in items if "\n    check: manual" not in i)])
    points = sum(i["points"] for i in yaml.safe_load(text)["items"])
    return re.sub(r"^total_points: \d+", f"total_points: {points:g}", text, flags=re.M)


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The backprop lab with short timeouts, so a hanging notebook costs seconds, and without
    its manual item."""
    root = tmp_path_factory.mktemp("course")
    (root / "rubrics").mkdir()
    text = (REPO / "rubrics" / "backprop.yaml").read_text()
    text = text.replace("cell_timeout_s: 300", "cell_timeout_s: 10").replace(
        "total_timeout_s: 900", "total_timeout_s: 120")
    (root / "rubrics" / "backprop.yaml").write_text(automatic_only(text))
    (root / "reference").symlink_to(REPO / "reference")
    return root


def with_cell(example: str, source: str, at: int | None = None) -> nbformat.NotebookNode:
    nb = nbformat.read(EXAMPLES / example / "backprop.ipynb", as_version=4)
    cell = nbformat.v4.new_code_cell(source)
    nb.cells.insert(len(nb.cells) if at is None else at, cell)
    return nb


def student(root: Path, name: str, example: str, nb: nbformat.NotebookNode | None = None
            ) -> None:
    folder = example_copy("backprop", example, root / name)
    if nb is not None:
        nbformat.write(nb, folder / "backprop.ipynb")


@pytest.fixture(scope="module")
def graded(course: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    subs = tmp_path_factory.mktemp("class")
    student(subs, "alice", "correct")
    student(subs, "bob", "bug_grad_b_not_summed")
    student(subs, "carol", "correct", with_cell("correct", "import os\nos._exit(3)"))
    student(subs, "dave", "correct", with_cell("correct", "while True:\n    pass"))
    student(subs, "eve", "correct", with_cell("correct", "hog = bytearray(40 * 2**30)"))
    tpl = nbformat.read(REPO / "assignments" / "backprop" / "backprop.ipynb", as_version=4)
    student(subs, "frank", "correct", tpl)
    (subs / "grace").mkdir()
    (subs / "grace" / "backprop.ipynb").write_text('{"cells": [')        # malformed
    (subs / "heidi").mkdir()
    (subs / "heidi" / "answers.docx").write_bytes(b"PK not a notebook")  # wrong type
    with zipfile.ZipFile(subs / "ivan.zip", "w") as zf:                   # zip-slip + ok
        zf.writestr("../../../evil.ipynb", "{}")
        for p in (EXAMPLES / "different").iterdir():
            zf.write(p, f"ivan/{p.name}")
    out = tmp_path_factory.mktemp("batch")
    from grader.workers import warm_up

    warm_up(True), warm_up(True)        # as `grader batch` does: still one template in all
    result = run_batch(subs, "backprop", out, course=course, workers=2,
                       progress=lambda *_: TEMPLATES.append(len(template_roots())))
    return out, result


TEMPLATES: list[int] = []    # kernel templates running, seen each time a student was graded


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def template_roots() -> list[int]:
    """The kernel templates (grader.sandbox.template) this test process started, itself or
    through its workers: the processes with that command line whose parent has another (a
    template's forks keep its command line), descended from this process."""
    pids = set(processes_with("grader.sandbox.template"))
    roots = []
    for pid in pids:
        if _parent(pid) in pids:
            continue
        ancestor = pid
        while ancestor > 1 and ancestor != os.getpid():
            ancestor = _parent(ancestor)
        if ancestor == os.getpid():
            roots.append(pid)
    return roots


GRADER_BUG = "TRIGGER_GRADER_BUG = True"          # a cell: one item's check raises
KERNEL_CANNOT_START = "# KERNEL_CANNOT_START"      # a cell: the kernel fails to start
GRADER_CRASH = "# GRADER_CRASHES_OUTSIDE_ANY_ITEM"  # a cell: grade() itself raises


def raises_on_request(ctx: Any, params: dict[str, Any]) -> Any:
    """A check with a grader bug that shows only on notebooks defining TRIGGER_GRADER_BUG."""
    from grader.checks import Verdict
    from grader.errors import MissingName

    try:
        ctx.require("TRIGGER_GRADER_BUG")
    except MissingName:
        return Verdict.passed("no bug triggered")
    raise IndexError("list index out of range (a bug in the grader's check)")


@pytest.fixture(scope="module")
def reviewed(course: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """`grader batch` on four students, three of whom the grader fails (in process, without
    the sandbox, which adds nothing here): bob's kernel cannot start, carol's grading
    crashes outside any item, one check raises on dave's notebook; alice is graded."""
    from grader import pipeline
    from grader.batch import runner
    from grader.checks import REGISTRY, check

    kind = "test_batch_raises_on_request"
    check(kind)(raises_on_request)
    root = tmp_path_factory.mktemp("review-course")
    (root / "rubrics").mkdir()
    text = (course / "rubrics" / "backprop.yaml").read_text().replace(
        "total_points: 20", "total_points: 21")
    (root / "rubrics" / "backprop.yaml").write_text(
        text + f"\n  - id: grader_bug_on_request\n    title: a check that may raise\n"
        f"    points: 1\n    visibility: public\n    check: {kind}\n    params: {{}}\n")
    (root / "reference").symlink_to(REPO / "reference")
    subs = tmp_path_factory.mktemp("review-class")
    student(subs, "alice", "correct")
    student(subs, "bob", "correct", with_cell("correct", KERNEL_CANNOT_START))
    student(subs, "carol", "correct", with_cell("correct", GRADER_CRASH))
    student(subs, "dave", "correct", with_cell("correct", GRADER_BUG))
    start, inject = pipeline.KernelSession.start, pipeline.inject_parameters

    def failing_start(self: Any) -> None:
        notebooks = [Path(h.name) for h in self._handles if h.name.endswith(".ipynb")]
        if any(KERNEL_CANNOT_START in p.read_text() for p in notebooks):
            (self._root / "kernel.log").write_text("bwrap: Creating new namespace failed\n")
            raise RuntimeError("the kernel exited while starting")
        start(self)

    def crashing_inject(nb: Any, params: dict[str, Any]) -> Any:
        if any(GRADER_CRASH in c.source for c in nb.cells):
            raise AssertionError("a grader bug outside any item")
        return inject(nb, params)

    out = tmp_path_factory.mktemp("review-batch")
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(pipeline.KernelSession, "start", failing_start)
            mp.setattr(pipeline, "inject_parameters", crashing_inject)
            mp.setattr(runner, "_run_local", in_process)
            with contextlib.redirect_stdout(io.StringIO()) as printed:
                code = cli.main(["batch", str(subs), "--assignment", "backprop", "--out",
                                 str(out), "--course", str(root), "--unsafe-no-sandbox"])
        yield out, code, printed.getvalue(), root, subs
    finally:
        REGISTRY.pop(kind, None)


def in_process(todo: list, done: Any, *, course: str, lab: str, sandbox: bool, device: str,
               **_: Any) -> None:
    """The batch's workers, in this process (where the test's fake check is registered)."""
    from grader.batch import runner

    for count, job in enumerate(todo, 1):
        done(job, runner.grade_job(job, course, lab, sandbox, device), count)


def rows(out: Path) -> dict[str, tuple]:
    with sqlite3.connect(out / "gradebook.sqlite") as db:
        return {r[0]: r[1:] for r in db.execute(
            "SELECT student, status, score, max_score, items FROM results")}


def test_a_mixed_class_gets_the_right_verdicts_and_the_batch_goes_on(graded) -> None:
    out, result = graded
    got = {k: (v[0], v[1]) for k, v in rows(out).items()}
    assert got == {"alice": ("graded", 20.0), "bob": ("graded", 16.0),
                   "carol": ("graded", 20.0),      # os._exit: cell recorded, kernel restarted
                   "dave": ("graded", 20.0),       # infinite loop: the cell timed out
                   "eve": ("graded", 20.0),        # 40 GB: MemoryError in its cell
                   "frank": ("graded", 0.0),       # the blank template
                   "ivan": ("graded", 20.0)}
    assert result.needs_review == [], "no grader-side problem in an ordinary class"
    assert not any(i["needs_review"] for v in rows(out).values() for i in json.loads(v[3]))
    reasons = "\n".join(f"{s['source']}: {s['reason']}" for s in result.skipped)
    assert "grace: student grace: backprop.ipynb is not a valid notebook" in reasons
    assert "heidi: student heidi: 0 notebooks" in reasons
    assert "ivan.zip:../../../evil.ipynb: path escapes the archive (zip-slip)" in reasons
    assert not list(out.parent.glob("**/evil.ipynb"))
    reports = {p.parent.name: json.loads(p.read_text())
               for p in (out / "students").glob("*/report.json")}
    for report in reports.values():
        validate_report(report)
        assert report["execution"]["sandbox"]["enabled"] is True
        assert report["execution"]["peak_rss_mb"] > 50
    cells = {name: {c["status"] for c in r["execution"]["cells"]} for name, r in reports.items()}
    assert "timeout" in cells["dave"] and "error" in cells["eve"]
    assert reports["carol"]["execution"]["kernel_died"] is True
    assert any(r["execution"]["warm_kernel"] for r in reports.values())
    if os.geteuid() == 0:      # kernels are forked, both workers' from the main's one template
        assert all(r["execution"]["forked_kernel"] for r in reports.values())
        assert TEMPLATES and max(TEMPLATES) == 1, TEMPLATES


def test_exports_are_in_the_lms_formats(graded) -> None:
    out, _ = graded
    with open(out / "brightspace.csv", newline="") as f:
        bs = list(csv.reader(f))
    assert bs[0] == ["OrgDefinedId", "Deep-learning review: layers, backpropagation, SGD "
                     "Points Grade", "End-of-Line Indicator"]
    assert ["#bob", "16", "#"] in bs and len(bs) == 8
    with open(out / "canvas.csv", newline="") as f:
        cv = list(csv.reader(f))
    assert cv[0][:5] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
    assert cv[1] == ["Points Possible", "", "", "", "", "20"]
    gs = json.loads((out / "students" / "bob" / "results.json").read_text())
    assert gs["score"] == 16 and {t["visibility"] for t in gs["tests"]} == {"visible",
                                                                          "after_published"}
    failed = [t for t in gs["tests"] if t["status"] == "failed"]
    assert failed and all(t["score"] < t["max_score"] for t in failed)
    with zipfile.ZipFile(out / "reports.zip") as zf:
        assert "alice/report.html" in zf.namelist() and "bob/report.json" in zf.namelist()
    summary = json.loads((out / "batch.json").read_text())
    assert summary["students"] == 7 and summary["layout"] == "folders"


def test_a_rerun_grades_nothing_twice_and_regrade_does(graded, course: Path) -> None:  # noqa: ANN001
    out, _ = graded
    before = rows(out)
    rerun = out.parent / "rerun-class"
    example_copy("backprop", "correct", rerun / "alice")
    again = run_batch(rerun, "backprop", out, course=course, workers=1)
    assert (again.graded, again.already) == (0, 1)
    assert rows(out) == before
    example_copy("backprop", "bug_grad_b_not_summed", rerun / "zoe")
    again = run_batch(rerun, "backprop", out, course=course, workers=1, regrade=True)
    assert (again.graded, again.already) == (2, 0)
    assert rows(out)["zoe"][1] == 16.0 and len(rows(out)) == len(before) + 1


def test_a_grade_under_review_is_never_exported_as_a_number(reviewed) -> None:  # noqa: ANN001
    out, code, printed, _, _ = reviewed
    assert code == cli.EXIT_REVIEW, printed
    assert "Traceback" not in printed and "needs review" in printed
    got = rows(out)
    items = {k: {i["id"]: i for i in json.loads(v[3])} for k, v in got.items()}
    assert (got["alice"][:2], got["carol"][0]) == (("graded", 21.0), "error")
    assert not any(i["needs_review"] for i in items["alice"].values())
    assert {(i["outcome"], i["error_kind"], i["needs_review"]) for i in items["bob"].values()
            } == {("error", "kernel_start", True)}
    dave = {k for k, i in items["dave"].items() if i["needs_review"]}
    assert dave == {"grader_bug_on_request"} and got["dave"][1] == 20.0
    assert items["dave"]["grader_bug_on_request"]["error_kind"] == "grader"
    for name in ("alice", "bob", "dave"):
        validate_report(json.loads((out / "students" / name / "report.json").read_text()))
    with open(out / "brightspace.csv", newline="") as f:
        assert {r[0]: r[1] for r in list(csv.reader(f))[1:]} == {
            "#alice": "21", "#bob": "", "#carol": "", "#dave": ""}
    with open(out / "canvas.csv", newline="") as f:
        assert {r[1]: r[5] for r in list(csv.reader(f))[2:]} == {
            "alice": "21", "bob": "", "carol": "", "dave": ""}
    with open(out / "needs-review.csv", newline="") as f:
        listed = {r["student"]: r for r in csv.DictReader(f)}
    assert set(listed) == {"bob", "carol", "dave"}
    assert listed["dave"]["provisional_score"] == "20" and "grader" in listed["dave"]["why"]
    assert "grader internal error" in listed["carol"]["why"]
    bob = json.loads((out / "students" / "bob" / "results.json").read_text())
    assert bob["output"].startswith("NEEDS REVIEW") and all(
        "score" not in t and t["name"].startswith("[NEEDS REVIEW]") for t in bob["tests"])
    dave_gs = json.loads((out / "students" / "dave" / "results.json").read_text())
    assert dave_gs["extra_data"]["needs_review"] == ["grader_bug_on_request"]
    assert sum("score" not in t for t in dave_gs["tests"]) == 1
    summary = json.loads((out / "batch.json").read_text())
    assert [r["student"] for r in summary["needs_review"]] == ["bob", "carol", "dave"]


def test_a_rerun_grades_again_exactly_what_needs_review(
        reviewed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from grader.batch import runner

    out, _, _, course, subs = reviewed
    shutil.copytree(out, tmp_path / "out")
    monkeypatch.setattr(runner, "_run_local", in_process)
    again = run_batch(subs, "backprop", tmp_path / "out", course=course, sandbox=False)
    assert (again.already, again.graded, again.errors) == (1, 3, 0)
    assert again.needs_review == ["dave"], "the kernel starts now; dave's check still raises"
    assert {k: v[:2] for k, v in rows(tmp_path / "out").items()} == {
        "alice": ("graded", 21.0), "bob": ("graded", 21.0), "carol": ("graded", 21.0),
        "dave": ("graded", 20.0)}


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_the_dashboard_renders_in_headless_chromium(graded, reviewed) -> None:  # noqa: ANN001
    from PIL import Image

    if chromium() is None:
        # CI installs Chromium and sets GRADER_REQUIRE_BROWSER: there a missing browser fails.
        message = "no Chromium on this machine (apt install chromium to run the dashboard test)"
        if os.environ.get("GRADER_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)

    out, _ = graded
    page = (out / "dashboard.html").read_text()
    assert "<script" not in page and "http://" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    shot.unlink(missing_ok=True)
    base = [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu",
            "--allow-file-access-from-files", "--hide-scrollbars"]
    dom = subprocess.run([*base, "--dump-dom", (out / "dashboard.html").as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert "Which properties the class gets wrong" in dom.stdout
    assert dom.stdout.count('<img class="plot"') == 2
    assert "Needs review" not in dom.stdout
    review_dom = subprocess.run([*base, "--dump-dom", (reviewed[0] / "dashboard.html").as_uri()],
                                capture_output=True, text=True, timeout=120).stdout
    listed = review_dom.split('id="needs-review"', 1)[1].split("<h2>", 1)[0]
    assert "Needs review: grades that are not final" in listed
    for name in ("bob", "dave"):
        assert f'href="students/{name}/report.html"' in listed
    assert "carol" in listed and "alice" not in listed and "20 (provisional)" in listed
    subprocess.run([*base, f"--screenshot={shot}", "--window-size=1200,2200",
                    (out / "dashboard.html").as_uri()], capture_output=True, timeout=120)
    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 2200)
    colours = image.getcolors(maxcolors=1 << 20)
    blue = sum(n for n, c in colours if c[2] > 150 and c[0] < 90)      # histogram bars
    assert len(colours) > 50 and blue > 500, "the plots did not render"


def test_killing_the_batch_with_sigkill_and_rerunning_loses_and_duplicates_nothing(
        course: Path, tmp_path: Path) -> None:
    subs = tmp_path / "class"
    for k, example in enumerate(["correct", "bug_grad_b_not_summed", "different", "correct",
                                 "bug_softmax_no_max_shift"]):
        student(subs, f"s{k}", example)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "grader.cli", "batch", str(subs), "--assignment", "backprop",
           "--out", str(out), "--workers", "1", "--course", str(course)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, cwd=tmp_path)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if (out / "gradebook.sqlite").exists() and 2 <= len(rows(out)) < 5:
                break
        else:
            pytest.fail("the batch graded nothing in 300 s")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    partial = rows(out)
    assert 2 <= len(partial) < 5
    finished = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    final = rows(out)
    assert set(final) == {f"s{k}" for k in range(5)}
    assert all(final[k] == v for k, v in partial.items())       # nothing graded twice
    with sqlite3.connect(out / "gradebook.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 5
    for path in (out / "students").glob("*/report.json"):
        validate_report(json.loads(path.read_text()))
    assert [p.name for p in (out / "students").rglob(".staging-*")] == []


def test_the_same_batch_runs_on_a_dask_cluster_on_loopback(course: Path, tmp_path: Path
                                                           ) -> None:
    pytest.importorskip("distributed")
    env = {**os.environ, "GRADER_COURSE": str(course)}
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
         "--port", "0", "--no-dashboard", "--scheduler-file", str(tmp_path / "s.json")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    workers = []
    try:
        for _ in range(50):
            if (tmp_path / "s.json").exists():
                break
            time.sleep(0.2)
        address = json.loads((tmp_path / "s.json").read_text())["address"]
        for k in range(2):
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers",
                 "1", "--nthreads", "1", "--no-dashboard", "--name", f"w{k}",
                 "--local-directory", str(tmp_path / f"w{k}")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                start_new_session=True))
        from distributed import Client

        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=120)
        subs = tmp_path / "class"
        student(subs, "alice", "correct")
        student(subs, "bob", "bug_grad_b_not_summed")
        student(subs, "carol", "different")
        result = run_batch(subs, "backprop", tmp_path / "out", course=course,
                           scheduler=address)
        assert (result.graded, result.errors) == (3, 0)
        assert {k: v[1] for k, v in rows(tmp_path / "out").items()} == {
            "alice": 20.0, "bob": 16.0, "carol": 20.0}
    finally:
        for p in [*workers, scheduler]:
            os.killpg(p.pid, signal.SIGTERM)
        for p in [*workers, scheduler]:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def test_workers_default_to_the_cores_and_share_them_out(monkeypatch: pytest.MonkeyPatch) -> None:
    from grader.batch import runner
    from grader.sandbox import Limits, SandboxSpec, build_command

    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert runner.default_workers() == 16
    assert [runner.threads_per_grading(w) for w in (1, 4, 16, 40)] == [16, 4, 1, 1]
    limits = Limits(threads=2)
    assert limits.capped(None) is limits and limits.capped(16) is limits
    one = limits.capped(1)
    assert one.threads == 1 and dataclasses.replace(one, threads=2) == limits
    command = build_command(["python"], SandboxSpec(Path("/tmp/ipc"), limits=one))
    assert command[command.index("OMP_NUM_THREADS") + 1] == "1"
