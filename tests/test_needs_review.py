"""No grader-side problem is a traceback, a lost report or a silent zero (issue 11).

A check that returns values of any type, a check that raises, a kernel that never starts:
each gives a valid report whose items say what happened (``outcome``, ``error_kind``,
``needs_review``), and everything downstream (CLI exit code, Gradescope results, the LMS
CSVs, the dashboard) shows "needs review", never a 0. Fast: no kernel unless marked.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Callable, Iterator

import nbformat
import numpy as np
import pytest
import torch

from grader import cli, pipeline
from grader.batch.exports import gradescope_results, write_exports
from grader.batch.gradebook import Gradebook, Row
from grader.checks import REGISTRY, Verdict, check
from grader.errors import MissingName, ProtocolError, StudentException
from grader.execute import CellRecord
from grader.model import GradebookItem
from grader.report import ERROR_KINDS, item_problems, validate_report, values
from grader.report.schema import load_schema
from grader.rubric import load_rubric

REPO = Path(__file__).resolve().parent.parent
VAE_CORRECT = REPO / "assignments" / "vae" / "examples" / "correct"
KERNEL_LOG = "bwrap: setting up uid map: Permission denied"

# --- fake checks (registered for one test, removed after) ------------------------------


def issue_counterexample(ctx: Any, params: dict[str, Any]) -> Verdict:
    """What adversarial_train_step returned in issue 11, plus every other awkward type."""
    return Verdict.failed(
        "opt_G.step() ran after the discriminator's backward [/b]",
        {"inputs": {"batch": 32, "lr_D": 0.0, "lr_G": 0.05, "x": torch.ones(2, 3),
                    "pair": (torch.zeros(1, requires_grad=True), "a"), "_seed": 7},
         "expected": torch.tensor([1.0, 2.0], dtype=torch.bfloat16), "actual": 3,
         "note": np.arange(3)},
        max_error=math.nan, grads=torch.arange(3.0), big=torch.zeros(1000),
        where=np.int64(4), unknown=object(), traceback=("a", 1))


def passes(ctx: Any, params: dict[str, Any]) -> Verdict:
    return Verdict(np.float32(1.0), "matches", details={"value": torch.tensor(1.5)})


def grader_bug(ctx: Any, params: dict[str, Any]) -> Verdict:
    secret = 1.0 / 0.0  # the answer is 42 (a line of reference/ must not reach the report)
    return secret


def nan_fraction(ctx: Any, params: dict[str, Any]) -> Verdict:
    return Verdict(math.nan, "a fraction no one can award")


def not_a_verdict(ctx: Any, params: dict[str, Any]) -> Any:
    return {"fraction": 1.0}


def bad_figure(ctx: Any, params: dict[str, Any]) -> Verdict:
    return Verdict(1.0, "a figure with no image", figures=[{"title": "samples"}])


def student_raises(ctx: Any, params: dict[str, Any]) -> Verdict:
    raise StudentException("ValueError", "shapes do not match", "Traceback: ...")


def missing(ctx: Any, params: dict[str, Any]) -> Verdict:
    raise MissingName("the notebook defines no `Generator`")


def bad_reply(ctx: Any, params: dict[str, Any]) -> Verdict:
    raise ProtocolError("reply of 2000000000 bytes exceeds 64 MiB")


FAKES: dict[str, Callable[..., Any]] = {
    "issue_counterexample": issue_counterexample, "passes": passes, "grader_bug": grader_bug,
    "nan_fraction": nan_fraction, "not_a_verdict": not_a_verdict, "bad_figure": bad_figure,
    "student_raises": student_raises, "missing": missing, "bad_reply": bad_reply}
# item id -> (outcome, error_kind, needs_review)
EXPECTED = {
    "issue_counterexample": ("failed", None, False), "passes": ("passed", None, False),
    "grader_bug": ("error", "grader", True), "nan_fraction": ("error", "unreportable", True),
    "not_a_verdict": ("error", "unreportable", True),
    "bad_figure": ("error", "unreportable", True),
    "student_raises": ("error", "student_exception", False),
    "missing": ("error", "missing_name", False), "bad_reply": ("error", "protocol", True)}


@pytest.fixture
def fake_course(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A course whose rubric has one item per fake check, and a trivial submission."""
    kinds = {name: f"test_issue11_{name}" for name in FAKES}
    for name, fn in FAKES.items():
        check(kinds[name])(fn)
    try:
        course = tmp_path / "course"
        (course / "rubrics").mkdir(parents=True)
        (course / "reference").mkdir()
        (course / "reference" / "fake.py").write_text("VALUE = 1\n")
        items = "".join(f"  - id: {name}\n    title: the {name} check\n    points: 2\n"
                        f"    visibility: public\n    check: {kinds[name]}\n    params: {{}}\n"
                        for name in FAKES)
        (course / "rubrics" / "fake.yaml").write_text(
            "assignment: fake\ntitle: Fake checks\nlimits: {startup_timeout_s: 60}\n"
            f"items:\n{items}")
        nb = nbformat.v4.new_notebook(metadata={"grader": {"assignment": "fake"}})
        nb.cells = [nbformat.v4.new_code_cell("x = 1")]
        sub = tmp_path / "sub"
        sub.mkdir()
        nbformat.write(nb, sub / "fake.ipynb")
        yield course, sub
    finally:
        for kind in kinds.values():
            REGISTRY.pop(kind, None)


class NoKernel:
    """Stands in for a kernel the fake checks never call."""

    start_s = 0.0

    def is_alive(self) -> bool:
        return True

    def peak_rss_mb(self) -> float:
        return 1.0

    def close(self) -> None:
        pass


def no_kernel(nb: Any, start: Any, record: Any) -> NoKernel:
    record.cells = [CellRecord(index=i, status="ok", duration_s=0.0)
                    for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    return NoKernel()


def outcomes(report: dict[str, Any]) -> dict[str, tuple[str, str | None, bool]]:
    return {i["id"]: (i["outcome"], i["error_kind"], i["needs_review"]) for i in report["items"]}


# --- one converter for every value ------------------------------------------------------


def test_values_turn_the_issue_counterexample_into_text() -> None:
    shown = values.inputs({"batch": 32, "lr_D": 0.0, "lr_G": 0.05, "_private": 1})
    assert shown == {"batch": "32", "lr_D": "0.", "lr_G": "0.05"}
    assert values.text(torch.ones(2, requires_grad=True)) == "shape (2,): [1. 1.]"
    assert values.text(torch.tensor([0.5], dtype=torch.bfloat16)) == "shape (1,): [0.5]"
    assert values.text((torch.zeros(1), "a")) == "(shape (1,): [0.], 'a')"
    assert values.text([[1], [2, 3]]) == "[shape (1,): [1], shape (2,): [2 3]]"
    assert values.text("already text") == "already text" and values.text(None) == "None"
    assert len(values.text("x" * 100_000)) < 4100


def test_values_make_details_strict_json() -> None:
    details = values.jsonable({"nan": math.nan, "t": torch.tensor(2.5), "small": torch.arange(3),
                               "big": np.zeros(500), 1: (np.float64(-math.inf), None),
                               "obj": object()})
    assert json.loads(json.dumps(details, allow_nan=False)) == details
    assert details["nan"] == "nan" and details["t"] == 2.5 and details["small"] == [0, 1, 2]
    assert details["big"].startswith("shape (500,)") and details["1"] == ["-inf", None]


@pytest.mark.parametrize("bad", [math.nan, 1.5, -0.1, "1", None, torch.ones(2)])
def test_values_refuse_a_fraction_that_is_not_a_share(bad: Any) -> None:
    with pytest.raises(ValueError, match="fraction"):
        values.fraction(bad)


def test_values_read_a_verdict_without_changing_it() -> None:
    verdict = issue_counterexample(None, {})
    fields = values.verdict_fields(verdict)
    assert "traceback" in verdict.details and fields["traceback"] == "('a', 1)"
    assert fields["counterexample"]["inputs"]["batch"] == "32"
    assert "_seed" not in fields["counterexample"]["inputs"]
    assert fields["details"]["counterexample_extra"] == {"note": "shape (3,): [0 1 2]"}


def test_error_kinds_in_code_and_schema_agree() -> None:
    schema_kinds = load_schema()["$defs"]["item"]["properties"]["error_kind"]["enum"]
    assert set(schema_kinds) == {None, *ERROR_KINDS}
    assert {k for k, review in ERROR_KINDS.items() if review} == {
        "protocol", "kernel_start", "grader", "unreportable", "lost_definitions"}


def test_an_item_with_a_grader_cause_must_be_flagged() -> None:
    item = {"id": "a", "title": "", "score": 0.0, "max_score": 1.0, "outcome": "error",
            "message": "", "visibility": "public", "check": "c", "hint": "",
            "counterexample": None, "traceback": None, "details": {}, "needs_review": False,
            "error_kind": "grader", "duration_s": 0.0}
    assert any("always needs review" in p for p in item_problems(item))
    assert item_problems({**item, "needs_review": True}) == []
    assert "32 is not of type 'string'" in item_problems(
        {**item, "needs_review": True, "counterexample": {"inputs": {"batch": 32}}})[0]


# --- the pipeline: every item keeps its verdict, the report is always valid -------------


def test_every_kind_of_check_result_gives_a_valid_report(
        fake_course: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    course, sub = fake_course
    monkeypatch.setattr(pipeline, "run_notebook", no_kernel)
    report = pipeline.grade(sub, course=course, sandbox=False)
    validate_report(report)
    assert outcomes(report) == EXPECTED
    items = {i["id"]: i for i in report["items"]}
    ce = items["issue_counterexample"]["counterexample"]
    assert ce["inputs"]["batch"] == "32" and ce["inputs"]["lr_G"] == "0.05"
    assert items["issue_counterexample"]["details"]["max_error"] == "nan"
    tb = items["grader_bug"]["traceback"]
    assert "ZeroDivisionError" in tb and "in grader_bug" in tb and "42" not in tb
    assert "nan" in items["nan_fraction"]["message"]
    assert report["score"] == 2.0 and report["max_score"] == 2.0 * len(FAKES)
    assert any("need review by a TA" in w for w in report["warnings"])


@pytest.mark.kernel
def test_grade_writes_the_issue_report_and_exits_needs_review(
        fake_course: tuple[Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The crash of issue 11, end to end in a real sandboxed kernel."""
    course, sub = fake_course
    code = cli.main(["grade", str(sub), "--course", str(course), "--out", str(tmp_path / "r")])
    out = capsys.readouterr().out
    assert code == cli.EXIT_REVIEW, out
    assert "Traceback" not in out and "needs review" in out and "[/b]" in out
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    validate_report(report)
    assert outcomes(report) == EXPECTED
    assert "needs TA review" in (tmp_path / "r" / "report.html").read_text()


def test_a_name_lost_when_the_replay_failed_is_not_the_students_loss(
        fake_course: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """A restarted kernel that could not replay the cells that had run lost their names:
    the student may well define what a check misses, so it is reviewed, not a zero."""
    course, sub = fake_course

    def replay_failed(nb: Any, start: Any, record: Any) -> NoKernel:
        kernel = no_kernel(nb, start, record)
        record.replay_failed = record.kernel_died = True
        return kernel

    monkeypatch.setattr(pipeline, "run_notebook", replay_failed)
    report = pipeline.grade(sub, course=course, sandbox=False)
    validate_report(report)
    assert outcomes(report)["missing"] == ("error", "lost_definitions", True)
    assert "could not be replayed" in next(i["message"] for i in report["items"]
                                           if i["id"] == "missing")
    assert report["execution"]["replay_failed"] is True
    assert outcomes(report)["student_raises"] == EXPECTED["student_raises"]


# --- a kernel that cannot start ---------------------------------------------------------


def failing_start(self: Any) -> None:
    (self._root / "kernel.log").write_text(f"starting\n{KERNEL_LOG}\n")
    raise RuntimeError("the kernel exited while starting")


def test_a_kernel_that_never_starts_gives_a_report_every_item_under_review(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(pipeline.KernelSession, "start", failing_start)
    code = cli.main(["grade", str(VAE_CORRECT), "--out", str(tmp_path), "--unsafe-no-sandbox"])
    out = capsys.readouterr().out
    assert code == cli.EXIT_REVIEW and "Traceback" not in out, out
    report = json.loads((tmp_path / "report.json").read_text())
    validate_report(report)
    assert len(report["items"]) == len(load_rubric(REPO / "rubrics" / "vae.yaml").items)
    for item in report["items"]:
        assert (item["outcome"], item["error_kind"], item["needs_review"]) == (
            "error", "kernel_start", True)
        assert "could not start the kernel" in item["message"]
        assert KERNEL_LOG in item["traceback"]
    assert {c["status"] for c in report["execution"]["cells"]} == {"not_run"}


@pytest.mark.kernel
def test_a_kernel_starved_of_memory_is_a_kernel_start_error(
        fake_course: tuple[Path, Path]) -> None:
    """A real kernel that cannot start: 64 MiB of address space, 3 s to answer."""
    course, sub = fake_course
    rubric = course / "rubrics" / "fake.yaml"
    rubric.write_text(rubric.read_text().replace(
        "limits: {startup_timeout_s: 60}", "limits: {startup_timeout_s: 3, memory_mb: 64}"))
    report = pipeline.grade(sub, course=course)
    validate_report(report)
    assert {(i["outcome"], i["error_kind"], i["needs_review"]) for i in report["items"]} == {
        ("error", "kernel_start", True)}
    assert report["items"][0]["traceback"], "the kernel's own log is kept for the TA"


def test_a_grader_crash_is_a_message_and_a_file_not_a_traceback(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def crash(*args: Any, **kwargs: Any) -> None:
        raise KeyError("a grader bug [/red]")

    monkeypatch.setattr(pipeline, "grade", crash)
    assert cli.main(["check", str(VAE_CORRECT)]) == cli.EXIT_INTERNAL
    out = capsys.readouterr().out
    assert "grader internal error" in out and "Traceback" not in out
    saved = Path(next(line for line in out.splitlines() if "grader-error-" in line).strip())
    assert "KeyError" in saved.read_text() and "Traceback" in saved.read_text()
    saved.unlink()


# --- downstream: Gradescope, CSVs, dashboard ----------------------------------------------


def review_report() -> dict[str, Any]:
    """A valid report: one item passed, one under review (the kernel could not start)."""
    item = {"title": "t", "visibility": "public", "check": "c", "hint": "h",
            "counterexample": None, "traceback": None, "details": {}, "figures": [],
            "duration_s": 0.1}
    return {
        "schema_version": "1.1", "assignment": "vae", "title": "VAE", "mode": "grade",
        "score": 2.0, "max_score": 5.0,
        "submission": {"path": "s", "notebook": "vae.ipynb", "sha256": "ab" * 32, "files": []},
        "items": [{**item, "id": "ok", "score": 2.0, "max_score": 2.0, "outcome": "passed",
                   "message": "fine", "needs_review": False, "error_kind": None},
                  {**item, "id": "bug", "score": 0.0, "max_score": 3.0, "outcome": "error",
                   "message": "grader internal error", "needs_review": True,
                   "error_kind": "grader"}],
        "execution": {"sandbox": {"enabled": True, "kind": "bubblewrap", "detail": "",
                                  "limits": {}}, "cells": [], "timed_out": False,
                      "kernel_died": False, "output_truncated": False, "parameters": {}},
        "timings": {"kernel_start_s": 0, "notebook_s": 0, "checks_s": 0, "total_s": 1},
        "versions": {"grader": "0", "python": "3", "torch": "2", "hypothesis": "6",
                     "nbclient": "0", "rubric_sha256": "x"},
        "created": "2025-01-01T00:00:00+00:00", "warnings": []}


def test_gradescope_results_never_score_an_item_under_review() -> None:
    report = review_report()
    validate_report(report)
    results = gradescope_results(report)
    ok, bug = results["tests"]
    assert ok["score"] == 2.0 and "score" not in bug
    assert bug["name"].startswith("[NEEDS REVIEW]") and "NEEDS REVIEW" in bug["output"]
    assert bug["extra_data"] == {"outcome": "error", "needs_review": True, "error_kind": "grader"}
    assert results["output"].startswith("NEEDS REVIEW") and results["extra_data"] == {
        "needs_review": ["bug"]}


def test_exports_leave_a_grade_under_review_blank_and_list_it(tmp_path: Path) -> None:
    rubric = load_rubric(REPO / "rubrics" / "vae.yaml")
    folder = tmp_path / "students" / "bob"
    folder.mkdir(parents=True)
    (folder / "report.json").write_text(json.dumps(review_report()))
    book = Gradebook(tmp_path / "gradebook.sqlite")
    base = ("vae", "c" * 64, rubric.sha256, None)
    items = [{"id": "ok", "outcome": "passed", "score": 2.0, "max_score": 2.0,
              "visibility": "public", "needs_review": False, "error_kind": None},
             {"id": "bug", "outcome": "error", "score": 0.0, "max_score": 3.0,
              "visibility": "public", "needs_review": True, "error_kind": "grader",
              "message": "grader internal error"}]
    items = [GradebookItem.from_json(i) for i in items]
    book.record(Row("alice", "Alice", *base, "graded", 5.0, 5.0, tuple(items[:1])))
    book.record(Row("bob", "Bob", *base, "graded", 2.0, 5.0, tuple(items), "",
                    "students/bob/report.json"))
    book.record(Row("carol", "Carol", *base, "error", 0.0, 5.0, (),
                    "the grading worker died twice on this submission; needs review"))
    result = type("R", (), {"layout": "folders", "graded": 3, "errors": 1, "already": 0,
                            "superseded": 0, "seconds": 1.0, "skipped": []})()
    write_exports(book, rubric, tmp_path, result, {})
    book.close()
    with open(tmp_path / "brightspace.csv", newline="") as f:
        grades = {r[0]: r[1] for r in csv.reader(f)}
    assert grades["#alice"] == "5" and grades["#bob"] == "" and grades["#carol"] == ""
    with open(tmp_path / "canvas.csv", newline="") as f:
        assert {r[1]: r[5] for r in list(csv.reader(f))[2:]} == {
            "alice": "5", "bob": "", "carol": ""}
    with open(tmp_path / "needs-review.csv", newline="") as f:
        listed = {r["student"]: r for r in csv.DictReader(f)}
    assert set(listed) == {"bob", "carol"} and listed["bob"]["items"] == "bug"
    assert listed["bob"]["provisional_score"] == "2" and "grader" in listed["bob"]["why"]
    summary = json.loads((tmp_path / "batch.json").read_text())
    assert [r["student"] for r in summary["needs_review"]] == ["bob", "carol"]
    gs = json.loads((folder / "results.json").read_text())
    assert gs["extra_data"]["needs_review"] == ["bug"]
    page = (tmp_path / "dashboard.html").read_text()
    review = page.split('id="needs-review"', 1)[1].split("<h2>", 1)[0]
    assert 'href="students/bob/report.html"' in review and "carol" in review
    assert "2 (provisional)" in review and "alice" not in review
    assert "mean score<b>5</b>" in page, "only final grades count in the statistics"
