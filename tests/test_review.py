"""A TA's week (issue 13): manual items, `grader review`, `grader adjust`, and adjustments
that survive a regrade in every export.

Most tests grade a small class of a fake lab in this process, without a kernel (the checks
read values the notebook states), so they run in seconds; the last grades two bundled
backprop examples in the sandbox, with the lab's real manual item.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import sqlite3
import subprocess
import zipfile
from pathlib import Path
from typing import Any, Iterator

import nbformat
import pytest

from grader import cli, pipeline
from grader.batch import run_batch
from grader.batch.adjust import Request, record
from grader.batch.review import review, robust_z
from grader.checks import REGISTRY, Verdict, check
from grader.checks.registry import Metric
from grader.errors import AdjustmentError, RubricError
from grader.execute import CellRecord
from grader.report import validate_report
from grader.rubric import load_rubric

from conftest import example as example_copy
from test_batch import chromium, in_process
from test_needs_review import NoKernel

REPO = Path(__file__).resolve().parent.parent

RUBRIC = """assignment: fake
title: A fake lab
total_points: 10
limits: {startup_timeout_s: 60}
items:
  - id: a
    title: the value A
    points: 2
    visibility: public
    check: test_review_a
  - id: b
    title: the value B, in part
    points: 3
    visibility: hidden
    check: test_review_b
    partial: proportional
  - id: metric
    title: a metric
    points: 1
    visibility: hidden
    check: test_review_metric
  - id: bug
    title: a check that raises on BUG
    points: 1
    visibility: hidden
    check: test_review_bug
  - id: essay
    title: a written answer
    points: 3
    visibility: public
    check: manual
    criteria: "3 points: <b>names</b> the chain rule"
    answer: {tag: essay, heading: "Essay"}
"""


class Stated(NoKernel):
    """A kernel stand-in holding the values the notebook's first cell states."""

    def __init__(self, values: dict[str, float]) -> None:
        self.values = values


def stated(nb: Any, start: Any, record: Any) -> Stated:
    """run_notebook without a kernel: every code cell ok; `DIE` and `HANG` lines say the
    kernel died or a cell timed out."""
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    record.cells = [CellRecord(index=i, status="timeout" if "HANG" in c.source else "ok",
                               duration_s=0.0)
                    for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    record.kernel_died = "DIE" in source
    values = {k: float(v) for k, v in re.findall(r"^(\w+) = ([-\d.]+)$", source, re.M)}
    return Stated(values)


def fraction_of(name: str) -> Any:
    def fn(ctx: Any, params: dict[str, Any]) -> Verdict:
        value = ctx.kernel.session.values.get(name, 0.0)
        return Verdict(value, f"{name} is {value:g}")
    return fn


def metric(ctx: Any, params: dict[str, Any]) -> Verdict:
    return Verdict.passed("measured", value=ctx.kernel.session.values.get("M", 0.0))


def raises_on_bug(ctx: Any, params: dict[str, Any]) -> Verdict:
    if "BUG" in ctx.kernel.session.values:
        raise IndexError("a grader bug")
    return Verdict.passed("no bug")


@pytest.fixture
def course(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The fake lab: its checks registered for the test, no kernel, the batch in process."""
    from grader.batch import runner

    kinds = {"test_review_a": (fraction_of("A"), None), "test_review_b": (fraction_of("B"), None),
             "test_review_metric": (metric, Metric("value", True)),
             "test_review_bug": (raises_on_bug, None)}
    for kind, (fn, measures) in kinds.items():
        check(kind, metric=measures)(fn)
    monkeypatch.setattr(pipeline, "run_notebook", stated)
    monkeypatch.setattr(runner, "_run_local", in_process)
    try:
        root = tmp_path / "course"
        (root / "rubrics").mkdir(parents=True)
        (root / "reference").mkdir()
        (root / "reference" / "fake.py").write_text("VALUE = 1\n")
        (root / "rubrics" / "fake.yaml").write_text(RUBRIC)
        yield root
    finally:
        for kind in kinds:
            REGISTRY.pop(kind, None)


def notebook(code: str, essay: str | None = "The chain rule, applied layer by layer.",
             tagged: bool = True) -> nbformat.NotebookNode:
    """The student's notebook: values, the question, the answer cell (``essay=None``: the
    student deleted both the answer and the question's heading)."""
    nb = nbformat.v4.new_notebook(metadata={"grader": {"assignment": "fake"}})
    nb.cells = [nbformat.v4.new_code_cell(code),
                nbformat.v4.new_markdown_cell("## Essay\nWhy?" if essay else "Why?")]
    if essay is not None:
        cell = nbformat.v4.new_markdown_cell(essay)
        if tagged:
            cell.metadata["tags"] = ["essay"]
        nb.cells.append(cell)
    nb.cells.append(nbformat.v4.new_markdown_cell("## The end"))
    return nb


CLASS = {
    "alice": notebook("A = 1\nB = 1\nM = 0.91"),
    "bob": notebook("A = 0\nB = 1\nM = 0.90", essay="<script>alert(1)</script> chain rule",
                    tagged=False),
    "carol": notebook("A = 1\nB = 1\nM = 0.92\nBUG = 1", essay=None),
    "dave": notebook("A = 1\nB = 0.5\nM = 0.905\nimport os  # DIE"),
    "erin": notebook("A = 1\nB = 1\nM = 0.915\nwhile True: pass  # HANG"),
    "frank": notebook("A = 1\nB = 1\nM = 0.30"),
}


def write_class(folder: Path, students: dict[str, nbformat.NotebookNode]) -> Path:
    for name, nb in students.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, folder / name / "fake.ipynb")
    return folder


def batch(subs: Path, out: Path, course: Path, *extra: str) -> tuple[int, str]:
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        code = cli.main(["batch", str(subs), "--assignment", "fake", "--out", str(out),
                         "--course", str(course), "--unsafe-no-sandbox", *extra])
    return code, printed.getvalue()


def run(*argv: str) -> tuple[int, str]:
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        code = cli.main(list(argv))
    return code, printed.getvalue()


def grades(out: Path) -> dict[str, str]:
    with open(out / "brightspace.csv", newline="") as f:
        return {r[0].lstrip("#"): r[1] for r in list(csv.reader(f))[1:]}


def report(out: Path, student: str) -> dict[str, Any]:
    return json.loads((out / "students" / student / "report.json").read_text())


def item(data: dict[str, Any], item_id: str) -> dict[str, Any]:
    key = "items" if "items" in data else "tests"
    return next(i for i in data[key] if (i.get("id") or i["name"].split("] ")[-1].split(":")[0])
                == item_id)


@pytest.fixture
def graded(course: Path, tmp_path: Path) -> tuple[Path, Path, Path, str]:
    subs = write_class(tmp_path / "class", CLASS)
    out = tmp_path / "out"
    code, printed = batch(subs, out, course)
    assert code == cli.EXIT_REVIEW, printed
    return course, subs, out, printed


# --- the manual item, graded ----------------------------------------------------------


def test_a_manual_item_is_pending_with_the_answer_for_the_ta(graded) -> None:  # noqa: ANN001
    _, _, out, printed = graded
    alice, bob, carol = report(out, "alice"), report(out, "bob"), report(out, "carol")
    for r in (alice, bob, carol):
        validate_report(r)
        assert r["max_score"] == 10
    essay = item(alice, "essay")
    assert (essay["outcome"], essay["score"], essay["needs_review"]) == ("pending", 0.0, False)
    assert essay["manual"]["found_by"] == "tag" and essay["manual"]["cells"] == [2]
    assert "The chain rule, applied layer by layer." in essay["manual"]["answer"]
    assert essay["manual"]["criteria"].startswith("3 points")
    assert item(bob, "essay")["manual"]["found_by"] == "heading", "the tag lost, the heading not"
    assert item(carol, "essay")["manual"]["answer"] == ""
    assert "No answer found" in item(carol, "essay")["message"]
    page = (out / "students" / "bob" / "report.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; chain rule" in page and "<script" not in page
    assert "&lt;b&gt;names&lt;/b&gt;" in page, "the criteria are escaped too"
    assert grades(out) == {s: "" for s in CLASS}, "every grade waits for the essay"
    with open(out / "needs-review.csv", newline="") as f:
        listed = {r["student"]: r for r in csv.DictReader(f)}
    assert listed["alice"]["provisional_score"] == "7" and listed["alice"]["items"] == "essay"
    assert "pending" in listed["alice"]["why"]
    gs = json.loads((out / "students" / "alice" / "results.json").read_text())
    assert "score" not in item(gs, "essay") and gs["extra_data"]["pending"] == ["essay"]
    summary = json.loads((out / "batch.json").read_text())
    assert [p["student"] for p in summary["pending"]] == sorted(CLASS)
    assert [r["student"] for r in summary["needs_review"]] == ["carol"]
    assert "pending:" in printed and "6 student(s) with manual items" in printed


def test_a_students_self_check_shows_a_manual_item_as_pending(course: Path, tmp_path: Path
                                                              ) -> None:
    write_class(tmp_path, {"sub": CLASS["alice"]})
    code, printed = run("check", str(tmp_path / "sub"), "--course", str(course),
                        "--unsafe-no-sandbox", "--out", str(tmp_path / "r"))
    assert code == cli.EXIT_OK, printed     # a = passed; the essay is a TA's, not a failure
    checked = json.loads((tmp_path / "r" / "report.json").read_text())
    assert [(i["id"], i["outcome"]) for i in checked["items"]] == [("a", "passed"),
                                                                    ("essay", "pending")]
    assert "A TA grades this item" in item(checked, "essay")["message"]


# --- grader adjust, and a regrade ------------------------------------------------------


ADJUSTMENTS = ("student,item,points,comment\n"
               "alice,essay,2.5,\"Names the chain rule, not the mean\"\n"
               "bob,essay,3,Complete\n")


def test_adjustments_survive_a_regrade_in_every_export(graded, tmp_path: Path) -> None:  # noqa: ANN001
    course, subs, out, _ = graded
    assert run("adjust", str(out), "bob", "a", "--points", "1.5", "--comment",
               "the idea is right, a sign is wrong", "--by", "ta1")[0] == cli.EXIT_OK
    assert run("adjust", str(out), "carol", "bug", "--points", "1", "--comment",
               "checked by hand: right", "--by", "ta2")[0] == cli.EXIT_OK
    (tmp_path / "adj.csv").write_text(ADJUSTMENTS)
    code, printed = run("adjust", str(out), "--file", str(tmp_path / "adj.csv"), "--by", "ta1")
    assert code == cli.EXIT_OK, printed
    assert "alice essay: 0 -> 2.5" in printed

    def assert_adjusted() -> None:
        assert grades(out) == {"alice": "9.5", "bob": "9.5", "carol": "", "dave": "",
                               "erin": "", "frank": ""}
        with open(out / "canvas.csv", newline="") as f:
            assert {r[1]: r[5] for r in list(csv.reader(f))[2:]}["bob"] == "9.5"
        bob = report(out, "bob")
        validate_report(bob)
        assert bob["score"] == 9.5
        a = item(bob, "a")
        assert (a["score"], a["outcome"]) == (1.5, "failed"), "the grader's verdict is kept"
        assert a["adjustment"] == {"automatic_score": 0.0, "comment":
                                   "the idea is right, a sign is wrong", "by": "ta1",
                                   "at": a["adjustment"]["at"]}
        page = (out / "students" / "bob" / "report.html").read_text()
        assert "the idea is right, a sign is wrong" in page and "automatic score 0" in page
        assert "Adjusted by ta1" in page
        carol = report(out, "carol")
        assert item(carol, "bug")["needs_review"] and item(carol, "bug")["score"] == 1.0
        page = (out / "students" / "carol" / "report.html").read_text()
        assert "reviewed since by a TA, who gave the points: bug" in page
        assert "needs TA review" not in page
        gs = json.loads((out / "students" / "bob" / "results.json").read_text())
        assert gs["score"] == 9.5 and item(gs, "a")["score"] == 1.5
        assert "adjusted by a TA (ta1" in item(gs, "a")["output"]
        summary = json.loads((out / "batch.json").read_text())
        assert {(a["student"], a["item"], a["score"], a["automatic_score"])
                for a in summary["adjusted"]} == {("bob", "a", 1.5, 0.0),
                                                  ("carol", "bug", 1.0, 0.0),
                                                  ("alice", "essay", 2.5, 0.0),
                                                  ("bob", "essay", 3.0, 0.0)}
        assert [r["student"] for r in summary["needs_review"]] == [], "carol's bug is graded"
        page = (out / "dashboard.html").read_text()
        adjusted = page.split('id="adjusted"', 1)[1].split("<h2", 1)[0]
        assert adjusted.count('<tr class="adjusted">') == 4 and "ta2" in adjusted
        pending = page.split('id="pending"', 1)[1].split("<h2", 1)[0]
        assert {"carol", "dave", "erin", "frank"} <= set(re.findall(r">(\w+)</a>", pending))
        assert "alice" not in pending

    assert_adjusted()
    code, printed = batch(subs, out, course, "--regrade")
    assert "graded 6" in printed and "adjustment dropped" not in printed
    assert_adjusted()
    with sqlite3.connect(out / "gradebook.sqlite") as db:
        kept = db.execute("SELECT student, item, points, made_by, status FROM adjustments "
                          "ORDER BY id").fetchall()
    assert kept == [("bob", "a", 1.5, "ta1", "active"), ("carol", "bug", 1.0, "ta2", "active"),
                    ("alice", "essay", 2.5, "ta1", "active"),
                    ("bob", "essay", 3.0, "ta1", "active")]


def test_a_new_adjustment_supersedes_the_old_and_the_trail_stays(graded) -> None:  # noqa: ANN001
    _, _, out, _ = graded
    record(out, [Request("alice", "essay", 1, "first look")], "ta1")
    record(out, [Request("alice", "essay", 2, "second look")], "ta2")
    with sqlite3.connect(out / "gradebook.sqlite") as db:
        trail = db.execute("SELECT points, comment, made_by, status, ended_why FROM "
                           "adjustments ORDER BY id").fetchall()
    assert trail[0][:4] == (1.0, "first look", "ta1", "superseded")
    assert "superseded by adjustment 2" in trail[0][4]
    assert trail[1] == (2.0, "second look", "ta2", "active", "")
    assert item(report(out, "alice"), "essay")["adjustment"]["comment"] == "second look"


def test_a_changed_rubric_item_drops_its_adjustment_and_lists_it(graded) -> None:  # noqa: ANN001
    course, subs, out, _ = graded
    record(out, [Request("bob", "a", 2, "fine"), Request("alice", "essay", 3, "good")], "ta1")
    rubric = course / "rubrics" / "fake.yaml"
    rubric.write_text(rubric.read_text().replace("3 points: <b>names</b> the chain rule",
                                                 "3 points: <b>names</b> the chain rule and "
                                                 "the mean"))
    code, printed = batch(subs, out, course)
    printed = " ".join(printed.split())
    assert "adjustment dropped: alice essay (3 points by ta1)" in printed
    assert "rubric item `essay` changed" in printed
    summary = json.loads((out / "batch.json").read_text())
    assert [(d["student"], d["item"]) for d in summary["adjustments_dropped"]] == [
        ("alice", "essay")]
    assert [(a["student"], a["item"]) for a in summary["adjusted"]] == [("bob", "a")]
    assert item(report(out, "alice"), "essay")["score"] == 0.0
    assert "adjustment" not in item(report(out, "alice"), "essay")
    with sqlite3.connect(out / "gradebook.sqlite") as db:
        assert db.execute("SELECT status FROM adjustments WHERE student='alice'").fetchall() == [
            ("dropped",)], "the audit trail stays"
    dropped = [e for e in review(out) if e.kind == "dropped"]
    assert [(e.student, e.item) for e in dropped] == [("alice", "essay")]
    code, printed = batch(subs, out, course)
    assert "adjustment dropped" not in printed, "listed once, when it was dropped"


@pytest.mark.parametrize("rows,problem", [
    ("alice,essay,4,too many\n", "line 3: points 4 for `essay`, which is worth 3; give a "
                                 "number from 0 to 3"),
    ("alice,essay,two,x\n", "line 3: points 'two' is not a number"),
    ("zoe,essay,1,x\n", "line 3: no student `zoe` in the gradebook of fake"),
    ("alice,esay,1,x\n", "line 3: no item `esay` in the rubric of fake"),
    ("alice,essay,1,\n", "line 3: no comment; say why"),
    ("bob,essay,1,again\n", "line 3: `bob` `essay` is adjusted twice (also"),
    ("alice,essay,1,a,b\n", "line 3: expected 4 fields"),
    (None, "no adjustment in it"),
])
def test_a_bad_row_of_an_adjustments_file_is_named_and_nothing_is_recorded(
        graded, tmp_path: Path, rows: str | None, problem: str) -> None:  # noqa: ANN001
    _, _, out, _ = graded
    before = {p.name: p.read_bytes() for p in out.glob("*.csv")}
    path = tmp_path / "adjustments.csv"
    path.write_text("student,item,points,comment\n" + (
        "" if rows is None else "bob,essay,1,fine\n" + rows))
    code, printed = run("adjust", str(out), "--file", str(path))
    assert code == cli.EXIT_USAGE
    assert f"{path}{', ' if rows else ': '}{problem}" in " ".join(printed.split()), printed
    assert "nothing was recorded" in printed
    with sqlite3.connect(out / "gradebook.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM adjustments").fetchone() == (0,)
    assert {p.name: p.read_bytes() for p in out.glob("*.csv")} == before


def test_adjust_refuses_a_bad_request_from_the_command_line(graded) -> None:  # noqa: ANN001
    _, _, out, _ = graded
    with pytest.raises(AdjustmentError, match="points -1 for `a`, which is worth 2"):
        record(out, [Request("alice", "a", -1, "x")], "ta1")
    code, printed = run("adjust", str(out), "alice", "a", "--points", "1")
    assert code == cli.EXIT_USAGE and "--comment" in printed
    code, printed = run("adjust", str(out.parent), "alice", "a", "--points", "1", "--comment",
                        "x")
    assert code == cli.EXIT_USAGE and "not a batch folder" in printed


# --- grader review ----------------------------------------------------------------------


def test_review_lists_what_needs_a_human_with_the_report(graded) -> None:  # noqa: ANN001
    _, _, out, _ = graded
    record(out, [Request("bob", "essay", 3, "complete")], "ta1")
    found = {(e.kind, e.student, e.item) for e in review(out)}
    assert found == {
        ("needs review", "carol", "bug"), ("kernel died", "dave", ""),
        ("timeout", "erin", ""), ("outlier", "frank", "metric"),
        *{("pending", s, "essay") for s in CLASS if s != "bob"}}
    frank = next(e for e in review(out) if e.kind == "outlier")
    assert "0.3, far below the class (median 0.907" in frank.detail
    assert frank.report == str(out / "students" / "frank" / "report.html")
    code, printed = run("review", str(out.parent), "--lab", "fake")
    assert code == cli.EXIT_REVIEW
    assert "5 pending" in printed and "1 outlier" in printed and "1 needs review" in printed
    with pytest.raises(Exception, match="no `grader batch` folder of vae"):
        review(out, "vae")


def test_review_exits_0_when_every_grade_is_final(course: Path, tmp_path: Path) -> None:
    subs = write_class(tmp_path / "class", {k: CLASS[k] for k in ("alice", "bob")})
    out = tmp_path / "out"
    batch(subs, out, course)
    assert run("review", str(out))[0] == cli.EXIT_REVIEW
    record(out, [Request("alice", "essay", 3, "good"), Request("bob", "essay", 1, "short")], "t")
    code, printed = run("review", str(out))
    assert code == cli.EXIT_OK and "nothing needs a human" in printed
    assert batch(subs, out, course)[0] == cli.EXIT_OK, "every grade final: batch exits 0"


def test_robust_z_flags_far_values_only() -> None:
    z = robust_z([10, 11, 12, 11, 10, 30])
    assert all(abs(v) < 3.5 for v in z[:5]) and z[5] > 3.5
    assert robust_z([1, 2, 100]) == [None] * 3, "too few to tell"
    assert robust_z([5] * 6) == [None] * 6
    same = robust_z([5, 5, 5, 5, 5, 9])          # MAD 0: the mean deviation stands in
    assert same[5] > 3.5 and same[0] == 0


# --- the rubric and the report contract --------------------------------------------------


@pytest.mark.parametrize("change,message", [
    (("    criteria: \"3 points: <b>names</b> the chain rule\"\n", ""), "missing required key "
     "`criteria`"),
    (("    answer: {tag: essay, heading: \"Essay\"}", "    answer: {cell: 3}"),
     "`answer` must name the student's cells by `tag` and/or `heading`"),
    (("    check: manual\n", "    check: manual\n    partial: proportional\n"),
     "a manual item takes no `partial`"),
    (("    check: test_review_a\n", "    check: test_review_a\n    criteria: x\n"),
     "`criteria` is only for manual items"),
])
def test_a_malformed_manual_item_is_refused_with_file_line_and_key(
        course: Path, change: tuple[str, str], message: str) -> None:
    path = course / "rubrics" / "fake.yaml"
    path.write_text(RUBRIC.replace(*change, 1))
    with pytest.raises(RubricError, match=re.escape(message)) as info:
        load_rubric(path)
    assert info.value.line


def test_the_item_fingerprint_ignores_presentation_only(course: Path) -> None:
    path = course / "rubrics" / "fake.yaml"
    before = {i.id: i.fingerprint for i in load_rubric(path).items}
    path.write_text(RUBRIC.replace("title: a written answer", "title: an essay")
                    .replace("points: 2", "points: 2.5").replace("total_points: 10",
                                                                 "total_points: 10.5"))
    after = {i.id: i.fingerprint for i in load_rubric(path).items}
    assert after["essay"] == before["essay"] and after["a"] != before["a"]


def test_the_report_refuses_a_pending_item_with_points_no_ta_gave(graded) -> None:  # noqa: ANN001
    _, _, out, _ = graded
    data = report(out, "alice")
    essay = item(data, "essay")
    essay["score"], data["score"] = 1.0, data["score"] + 1
    with pytest.raises(ValueError, match="pending item that no TA has graded"):
        validate_report(data)
    essay["adjustment"] = {"automatic_score": 0.0, "comment": "ok", "by": "t",
                           "at": "2025-01-01T00:00:00+00:00"}
    validate_report(data)
    del essay["manual"]
    with pytest.raises(ValueError, match="a pending item has `manual`"):
        validate_report(data)


# --- the dashboard in a browser -------------------------------------------------------------


def test_the_tas_dashboard_renders_in_headless_chromium(graded) -> None:  # noqa: ANN001
    _, _, out, _ = graded
    if chromium() is None:
        pytest.skip("no Chromium on this machine (apt install chromium)")
    record(out, [Request("bob", "a", 1.5, "a <i>sign</i> is wrong")], "ta1")
    dom = subprocess.run([chromium(), "--headless=new", "--no-sandbox", "--disable-gpu",
                          "--dump-dom", (out / "dashboard.html").as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert "Manual items to grade" in dom and "Adjusted items" in dom
    adjusted = dom.split('id="adjusted"', 1)[1].split("<h2", 1)[0]
    assert "a &lt;i&gt;sign&lt;/i&gt; is wrong" in adjusted and "ta1" in adjusted
    cards = dom.split('class="cards"', 1)[1].split("</div>\n<", 1)[0]
    assert re.search(r"manual items pending<b[^>]*>6</b>", cards)
    assert re.search(r"adjusted items<b[^>]*>1</b>", cards)
    assert re.search(r"needs review<b[^>]*>1</b>", cards)


# --- the bundled class, in the sandbox --------------------------------------------------------


@pytest.mark.kernel
def test_a_bundled_class_adjusted_and_regraded_keeps_every_adjustment(tmp_path: Path) -> None:
    """Issue 13, done when: two bundled backprop examples graded in the sandbox; a TA adjusts
    two items and grades the manual item; a regrade keeps every adjustment in every export."""
    subs = tmp_path / "class"
    for name, example in (("alice", "correct"), ("bob", "bug_grad_b_not_summed")):
        example_copy("backprop", example, subs / name)
    out = tmp_path / "out"
    first = run_batch(subs, "backprop", out, course=REPO, workers=2)
    assert (first.graded, first.pending, first.needs_review) == (2, ["alice", "bob"], [])
    essay = item(report(out, "alice"), "explain_backward")
    assert essay["outcome"] == "pending" and essay["manual"]["found_by"] == "tag"
    assert "starts backpropagation at the logits" in essay["manual"]["answer"]
    assert grades(out) == {"alice": "", "bob": ""}
    (tmp_path / "week.csv").write_text(
        "student,item,points,comment\n"
        "alice,explain_backward,2,\"Complete: the chain rule, and why the mean\"\n"
        "bob,explain_backward,1.5,The chain rule; nothing on the mean\n")
    for argv in (["--file", str(tmp_path / "week.csv")],
                 ["bob", "linear_backward", "--points", "2", "--comment",
                  "grad_x and grad_W are right; only grad_b is not summed"],
                 ["alice", "mlp_test_accuracy", "--points", "2.5", "--comment",
                  "trained on the test split (see cell 19)"]):
        code, printed = run("adjust", str(out), *argv, "--by", "ta1")
        assert code == cli.EXIT_OK, printed

    def assert_adjusted() -> None:
        assert grades(out) == {"alice": "21.5", "bob": "19.5"}
        with open(out / "canvas.csv", newline="") as f:
            assert {r[1]: r[5] for r in list(csv.reader(f))[2:]} == {"alice": "21.5",
                                                                    "bob": "19.5"}
        bob = report(out, "bob")
        validate_report(bob)
        assert bob["score"] == 19.5
        assert item(bob, "linear_backward")["adjustment"]["automatic_score"] == 0.0
        assert item(bob, "explain_backward")["score"] == 1.5
        gs = json.loads((out / "students" / "alice" / "results.json").read_text())
        assert gs["score"] == 21.5 and "pending" not in gs["extra_data"]
        assert item(gs, "mlp_test_accuracy")["score"] == 2.5
        page = (out / "students" / "alice" / "report.html").read_text()
        assert "trained on the test split (see cell 19)" in page and "automatic score 3" in page
        summary = json.loads((out / "batch.json").read_text())
        assert len(summary["adjusted"]) == 4 and summary["pending"] == []
        dashboard = (out / "dashboard.html").read_text()
        assert dashboard.count('<tr class="adjusted">') == 4
        assert 'id="pending"' not in dashboard
        with zipfile.ZipFile(out / "reports.zip") as zf:
            zipped = json.loads(zf.read("bob/report.json"))
        assert zipped["score"] == 19.5

    assert_adjusted()
    again = run_batch(subs, "backprop", out, course=REPO, workers=2, regrade=True)
    assert (again.graded, again.pending, again.dropped) == (2, [], [])
    assert_adjusted()
    assert run("review", str(out))[0] == cli.EXIT_OK
