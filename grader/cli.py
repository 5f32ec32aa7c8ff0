"""The command line: the only module that prints, parses argv and sets exit codes.

    grader check SUBMISSION              a student's self-check: public items only (in a
                                         kit, without the sandbox where bwrap cannot run)
    grader grade SUBMISSION --out DIR    a TA's grading: every item, report.json + report.html
    grader demo                          grade the bundled examples on the embedded data
    grader calibrate LAB [--write]       anchors of threshold items from reference runs

  a whole class (docs/batch.md):
    grader batch EXPORT --assignment LAB --out DIR    LMS export -> gradebook, reports,
                                         Brightspace/Canvas CSVs, dashboard; resumable
    grader review OUT [--lab LAB]        what needs a human: manual items to grade, items
                                         under review, errors, kernel deaths, outliers
    grader adjust OUT STUDENT ITEM --points P --comment TEXT    a TA's points for an item
                                         (or --file adjustments.csv), kept across regrades
    grader similarity EXPORT --assignment LAB --out DIR   pairs ranked by the code they
                                         share (template left out): CSV, side-by-side HTML
    grader gradescope                    run as a Gradescope autograder (results.json)

  the lecturer's workflow (docs/lecturer-guide.md):
    grader new LAB [--from NOTEBOOK]     scaffold a lab (or convert an nbgrader notebook)
    grader build LAB                     template + reference from reference/LAB.ipynb
    grader lint [LAB ...]                the rubrics' mistakes, with file, line and fix
    grader validate LAB [LAB ...]        reference = full marks, template = 0, every example
                                         and mutant loses exactly its items
    grader release LAB --out DIR         the student kit, refused if its leak scan finds any
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__
from .errors import CourseError, GraderError, RubricError, SandboxUnavailable
from .model import ItemResult, Report

__all__ = ["main"]

_STYLE = {"passed": "green", "failed": "red", "error": "magenta", "skipped": "yellow",
          "pending": "cyan"}
# README, "Exit codes". REVIEW: graded, but some item (or, for batch, some student) needs a
# TA (a grader-side problem: not a verdict); INTERNAL: a grader bug left no report at all.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED, EXIT_REVIEW, EXIT_INTERNAL = 0, 1, 2, 3, 4, 5
EXIT_INTERRUPTED = 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grader", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"grader {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--assignment", help="the lab (default: recognised from the notebook)")
        p.add_argument("--course", help="course folder with rubrics/ and reference/ "
                                        "(default: $GRADER_COURSE or the current folder)")
        p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
        p.add_argument("--unsafe-no-sandbox", action="store_true",
                       help="run the notebook without bubblewrap (trusted code only)")

    check = sub.add_parser("check", help="self-check a submission on the public items")
    check.add_argument("submission", help="a .ipynb, or a folder holding one notebook and "
                                          "its checkpoints")
    common(check)
    check.add_argument("--out", help="also write report.json and report.html here")

    grade = sub.add_parser("grade", help="grade a submission on every item, write the reports")
    grade.add_argument("submission")
    grade.add_argument("--out", required=True, help="folder for report.json and report.html")
    common(grade)

    cal = sub.add_parser("calibrate", help="measure threshold items on the reference and "
                                           "baselines; propose (or --write) their anchors")
    cal.add_argument("lab")
    cal.add_argument("--seeds", type=int, default=5, help="reference runs (default 5)")
    cal.add_argument("--write", action="store_true", help="write the anchors into the rubric")
    cal.add_argument("--course", help="course folder (default: the current folder)")

    batch = sub.add_parser("batch", help="grade a class: a folder or LMS export of "
                                         "submissions")
    batch.add_argument("submissions", help="folder or .zip: per-student folders or zips, or a "
                                           "Brightspace, Canvas, Moodle or Gradescope export")
    batch.add_argument("--assignment", required=True, help="the lab")
    batch.add_argument("--out", required=True, help="folder for the gradebook, reports, "
                                                    "exports and dashboard")
    batch.add_argument("--workers", type=int, help="parallel gradings (default: the cores; the "
                                                   "cores are shared out, each grading's "
                                                   "kernel gets cores/workers threads)")
    batch.add_argument("--regrade", action="store_true", help="grade again what the "
                                                               "gradebook already has")
    batch.add_argument("--roster", help="CSV mapping student ids to names")
    batch.add_argument("--all-attempts", action="store_true",
                       help="grade every attempt, not only each student's latest")
    batch.add_argument("--scheduler", help="a Dask scheduler address (tcp://host:8786): grade "
                                           "on its workers")
    batch.add_argument("--no-warm", action="store_true", help="start each kernel on demand")
    batch.add_argument("--device", default="cpu", help="cpu or cuda")
    batch.add_argument("--course", help="course folder (default: the current folder)")
    batch.add_argument("--unsafe-no-sandbox", action="store_true", help=argparse.SUPPRESS)

    sim = sub.add_parser("similarity", help="pairs of a class ranked by how much of their "
                                            "own code they share: CSV, HTML side by side")
    sim.add_argument("submissions", help="what `grader batch` takes (an LMS export, .zip or "
                                         "folder) or the --out folder of `grader batch`")
    sim.add_argument("--assignment", required=True, help="the lab (its template's code and "
                                                         "release.given are left out)")
    sim.add_argument("--out", required=True, help="folder for similarity.csv, .html and .json "
                                                  "(a batch's --out: its dashboard lists the "
                                                  "pairs above the threshold)")
    sim.add_argument("--past", action="append", default=[], metavar="DIR",
                     help="an earlier cohort (export or batch folder) to compare every "
                          "student with; repeatable")
    sim.add_argument("--threshold", type=float, help="similarity that flags a pair (default "
                                                     "0.5, calibrated: docs/batch.md)")
    sim.add_argument("--top", type=int, help="pairs shown (printed, and side by side besides "
                                             "those above the threshold; default 20)")
    sim.add_argument("--course", help="course folder (default: the current folder)")

    rev = sub.add_parser("review", help="what needs a human in a graded class: pending manual "
                                        "items, items under review, errors, kernel deaths and "
                                        "timeouts, outliers on a metric")
    rev.add_argument("out", metavar="OUT", help="a `grader batch` --out folder, or a folder "
                                                "of them")
    rev.add_argument("--lab", help="only this lab")

    adj = sub.add_parser("adjust", help="a TA's points for an item (a manual item, a "
                                        "correction), with a comment; rewrites OUT's exports")
    adj.add_argument("out", metavar="OUT", help="the `grader batch` --out folder")
    adj.add_argument("student", metavar="STUDENT", nargs="?",
                     help="the student id (as in the gradebook)")
    adj.add_argument("item", metavar="ITEM", nargs="?", help="the rubric item id")
    adj.add_argument("--points", metavar="P", type=float,
                     help="the item's new points (0 to its points)")
    adj.add_argument("--comment", metavar="TEXT", help="why (the student reads it)")
    adj.add_argument("--file", metavar="CSV", help="many at once: student,item,points,comment")
    adj.add_argument("--by", metavar="NAME", help="who adjusts (default: $USER)")
    adj.add_argument("--course", help="course folder (default: the one OUT was graded with)")

    gs = sub.add_parser("gradescope", help="Gradescope autograder entry point")
    gs.add_argument("--assignment", help="the lab (default: from the notebook)")
    gs.add_argument("--submission", default="/autograder/submission")
    gs.add_argument("--results", default="/autograder/results/results.json")
    gs.add_argument("--course", help="course folder (default: /autograder/source)")

    new = sub.add_parser("new", help="scaffold a lab: solution notebook, rubric, examples")
    new.add_argument("lab")
    new.add_argument("--from", dest="from_notebook", help="an nbgrader solution notebook "
                                                          "(### BEGIN SOLUTION markers)")
    new.add_argument("--title", help="the lab's title")
    new.add_argument("--course", help="course folder (default: the current folder)")

    build = sub.add_parser("build", help="template, reference, examples from reference/LAB.ipynb")
    build.add_argument("lab")
    build.add_argument("--checkpoints", action="store_true",
                       help="then train, in the sandbox, the solution's checkpoints and those of "
                            "every example declared `checkpoints: trained`")
    build.add_argument("--only", action="append", metavar="NAME",
                       help="with --checkpoints: train only this one (`solution` or an example "
                            "or variant name); repeatable")
    build.add_argument("--timeout", type=float, default=3600, metavar="S",
                       help="with --checkpoints: seconds one notebook may train (default 3600)")
    build.add_argument("--course", help="course folder (default: the current folder)")

    lint = sub.add_parser("lint", help="check rubrics: names, anchors, points")
    lint.add_argument("labs", nargs="*", help="labs (default: every rubric)")
    lint.add_argument("--course", help="course folder (default: the current folder)")

    val = sub.add_parser("validate", help="prove a rubric: reference, template, examples, "
                                          "mutants")
    val.add_argument("labs", nargs="+")
    val.add_argument("--jobs", type=int, help="parallel gradings (default: the cores)")
    val.add_argument("--markdown", help="also write the matrices as Markdown to this file")
    val.add_argument("--course", help="course folder (default: the current folder)")
    val.add_argument("--unsafe-no-sandbox", action="store_true", help=argparse.SUPPRESS)

    rel = sub.add_parser("release", help="write the student kit after a leak scan")
    rel.add_argument("lab")
    rel.add_argument("--out", required=True, help="folder; the kit goes to OUT/LAB")
    rel.add_argument("--course", help="course folder (default: the current folder)")

    demo = sub.add_parser("demo", help="grade the bundled example submissions")
    demo.add_argument("--out", default="grader-demo", help="where the reports go "
                                                            "(default: ./grader-demo)")
    demo.add_argument("--course", help=argparse.SUPPRESS)
    demo.add_argument("--assignment", help="one lab (default: every lab with examples)")
    demo.add_argument("--workers", type=int, help="parallel gradings (default: the cores)")
    demo.add_argument("--unsafe-no-sandbox", action="store_true", help=argparse.SUPPRESS)
    return parser


def _table(report: Report, console: Console) -> None:
    table = Table(title=escape(f"{report.title} ({report.assignment}): "
                               f"{report.score:.4g} / {report.max_score:g}"))
    for col in ("item", "outcome", "points", "message"):
        table.add_column(col, overflow="fold")
    for item in report.items:
        style = _STYLE.get(item.outcome, "")
        kind = f" ({item.error_kind})" if item.error_kind else ""
        table.add_row(escape(item.id), f"[{style}]{item.outcome}{kind}[/]",
                      f"{item.score:g}/{item.max_score:g}", escape(item.message[:300]))
    console.print(table)
    for item in report.items:
        ce = item.counterexample
        if item.outcome != "passed" and ce:
            console.print(f"[bold]{escape(item.id)}[/] smallest failing input:")
            for name, text in (ce.get("inputs") or {}).items():
                console.print(f"  {name} = {text}", markup=False, highlight=False)
            for key in ("expected", "actual"):
                if ce.get(key):
                    console.print(f"  {key}: {ce[key]}", markup=False, highlight=False)
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    for item in _review(report):
        console.print(f"[bold magenta]needs review:[/] {escape(item.id)} "
                      f"({item.error_kind or 'error'})", highlight=False)


def _review(report: Report) -> list[ItemResult]:
    """The items a TA must look at before the grade is final (a grader-side problem)."""
    return [i for i in report.items if i.needs_review]


def _grade(args: argparse.Namespace, submission: str, public_only: bool,
           console: Console) -> Report:
    from .pipeline import grade

    with console.status("grading…") as status:
        return Report.from_json(grade(
            submission, assignment=args.assignment, course=args.course,
            public_only=public_only, sandbox=not args.unsafe_no_sandbox,
            device=getattr(args, "device", "cpu"), kit_fallback=public_only,
            progress=lambda msg: status.update(msg)))


def _write(report: Report, out: str | Path) -> tuple[Path, Path]:
    from .report import write_reports

    return write_reports(report, Path(out))


def _demo(args: argparse.Namespace, console: Console) -> int:
    """Grade every bundled example of one lab, or of every lab that has examples, as a TA
    grades a class: ``grader batch`` per lab (parallel workers, warm kernels, a gradebook,
    the exports and the class dashboard), then one table of them all."""
    import json

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    import tempfile

    from .workers import warm_up

    warm_up(not args.unsafe_no_sandbox)
    from .authoring.examples import staged_examples
    from .batch import run_batch
    from .batch.ingest import slug
    from .pipeline import find_course

    course = find_course(args.course)
    labs = [args.assignment] if args.assignment else sorted(
        p.stem for p in (course / "rubrics").glob("*.yaml")
        if (course / "assignments" / p.stem / "examples").is_dir())
    if not labs or not all((course / "assignments" / lab / "examples").is_dir() for lab in labs):
        raise CourseError(f"{course}: no bundled examples for {', '.join(labs) or 'any lab'}")
    out = Path(args.out)
    table = Table(title="grader demo: the bundled examples, graded by `grader batch`")
    for col in ("lab", "example", "score", "items not passed", "time"):
        table.add_column(col, overflow="fold")
    review, started = False, time.perf_counter()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        for lab in labs:
            task = bar.add_task(lab, total=None)

            def progress(done: int, total: int, message: str, task: Any = task,
                         lab: str = lab) -> None:
                bar.update(task, completed=done, total=total, description=f"{lab}: {message}"[:60])

            with tempfile.TemporaryDirectory(prefix=f"grader-demo-{lab}-") as tmp:
                # examples that share the solution's checkpoints are graded with copies of
                # reference/checkpoints/ beside them (grader/authoring/examples.py)
                examples = staged_examples(course / "assignments" / lab / "examples",
                                           Path(tmp))
                result = run_batch(examples, lab, out / lab, course=course,
                                   workers=args.workers, regrade=True,
                                   sandbox=not args.unsafe_no_sandbox, progress=progress)
            review |= bool(result.needs_review)
            names = course / "assignments" / lab / "examples"
            for folder in sorted(p for p in names.iterdir() if p.is_dir()):
                path = out / lab / "students" / slug(folder.name) / "report.json"
                if not path.is_file():
                    table.add_row(lab, folder.name, "error", "could not be graded (see "
                                  f"{out / lab / 'dashboard.html'})", "-")
                    continue
                report = Report.from_json(json.loads(path.read_text()))
                failed = [i.id + (" (needs review)" if i.needs_review else
                                  " (pending: a TA grades it)" if i.outcome == "pending" else "")
                          for i in report.items if i.outcome != "passed"]
                table.add_row(lab, folder.name, f"{report.score:.4g}/{report.max_score:g}",
                              ", ".join(failed) or "-", f"{report.timings['total_s']:.1f} s")
    console.print(table)
    root = out.resolve()
    console.print(f"{sum(1 for _ in root.glob('*/students/*/report.json'))} reports in "
                  f"{time.perf_counter() - started:.0f} s: {root}/<lab>/students/<example>/"
                  "report.html (and report.json)", highlight=False)
    console.print(f"Class dashboards, gradebooks and LMS exports: {root}/<lab>/dashboard.html, "
                  "gradebook.sqlite, brightspace.csv, canvas.csv", highlight=False)
    return EXIT_REVIEW if review else EXIT_OK


def _calibrate(args: argparse.Namespace, console: Console) -> int:
    from .calibrate import calibrate, write_anchors
    from .pipeline import find_course

    with console.status("calibrating…") as status:
        anchors = calibrate(args.lab, course=args.course, seeds=args.seeds,
                            progress=lambda msg: status.update(msg))
    table = Table(title=f"calibration of {args.lab}")
    for col in ("item", "reference runs", "baselines", "full_at", "zero_at"):
        table.add_column(col, overflow="fold")
    for a in anchors.values():
        table.add_row(a.item, ", ".join(f"{v:.2f}" for v in a.reference),
                      ", ".join(f"{k} {v:.2f}" for k, v in a.baselines.items()) or "-",
                      f"{a.full_at}", f"{a.zero_at}")
    console.print(table)
    if args.write:
        path = find_course(args.course) / "rubrics" / f"{args.lab}.yaml"
        write_anchors(path, anchors)
        console.print(f"wrote the anchors into {path}")
    return EXIT_OK


def _new(args: argparse.Namespace, console: Console) -> int:
    from .authoring import new_lab

    course = Path(args.course or ".").resolve()
    if not (course / "rubrics").is_dir():
        (course / "rubrics").mkdir(parents=True)
    files = new_lab(course, args.lab, title=args.title,
                    from_notebook=Path(args.from_notebook) if args.from_notebook else None)
    for path in files:
        console.print(f"wrote {path.relative_to(course)}")
    console.print(f"next: edit reference/{args.lab}.ipynb and rubrics/{args.lab}.yaml, then "
                  f"`grader build {args.lab}`, `grader lint {args.lab}`, "
                  f"`grader validate {args.lab}` (docs/lecturer-guide.md)")
    return EXIT_OK


def _build(args: argparse.Namespace, console: Console) -> int:
    from .authoring import build_lab
    from .pipeline import find_course

    course = find_course(args.course)
    for path in build_lab(course, args.lab):
        console.print(f"wrote {path.relative_to(course)}")
    if args.only and not args.checkpoints:
        raise CourseError("--only names what --checkpoints trains; add --checkpoints")
    if args.checkpoints:
        from .authoring.train import train_checkpoints

        with console.status("training…") as status:
            done = train_checkpoints(course, args.lab, only=set(args.only or ()),
                                     timeout_s=args.timeout,
                                     progress=lambda msg: status.update(msg))
        for run in done:
            console.print(f"trained {run.name} in {run.seconds:.1f} s: " + ", ".join(
                str(p.relative_to(course)) for p in run.files), highlight=False, soft_wrap=True)
    return EXIT_OK


def _lint(args: argparse.Namespace, console: Console) -> int:
    from .authoring import lint
    from .pipeline import find_course

    course = find_course(args.course)
    errors = 0
    for path, findings in lint(course, args.labs or None).items():
        for f in findings:
            errors += f.severity == "error"
            style = "red" if f.severity == "error" else "yellow"
            console.print(f"[{style}]{escape(str(f))}[/]", highlight=False)
        if not findings:
            console.print(f"[green]{path.relative_to(course)}: ok[/]")
    return EXIT_FAILED if errors else EXIT_OK


def _validate(args: argparse.Namespace, console: Console) -> int:
    from .workers import warm_up

    warm_up(not args.unsafe_no_sandbox)
    from .authoring import validate
    from .pipeline import find_course

    course = find_course(args.course)
    results = []
    for lab in args.labs:
        with console.status(f"validating {lab}…") as status:
            result = validate(lab, course=course, jobs=args.jobs,
                              sandbox=not args.unsafe_no_sandbox,
                              progress=lambda msg: console.print(msg, highlight=False,
                                                                 markup=False)
                              if status else None)
        results.append(result)
        table = Table(title=f"validate {lab}: items (columns) by submissions (rows)")
        table.add_column("submission", no_wrap=True)
        for n, _ in enumerate(result.items, 1):
            table.add_column(str(n), justify="center")
        table.add_column("score", justify="right")
        for row in result.rows:
            cells = [_matrix_cell(row, item) for item in result.items]
            table.add_row(escape(f"{row.kind}: {row.name}"), *cells, f"{row.score:.4g}")
        console.print(table)
        console.print("items: " + ", ".join(f"{n} {i}" for n, i in enumerate(result.items, 1)),
                      highlight=False, markup=False)
        console.print("✓ passed, ✗ lost points as expected, [bold red]!✗[/] lost points "
                      "unexpectedly, [bold red]!✓[/] passed but should not have, M manual "
                      "(graded by a TA: not compared)")
        killed, total = result.mutation_score
        console.print(f"mutation score: {killed}/{total}")
        for row in result.rows:
            for problem in row.problems:
                console.print(f"[red]{escape(f'{row.kind} {row.name}')}:[/] "
                              f"{escape(problem)}", highlight=False)
        console.print(f"[{'green' if result.ok else 'red'}]{lab}: "
                      f"{'valid' if result.ok else 'NOT valid'}[/]")
    if args.markdown:
        Path(args.markdown).write_text("\n\n".join(f"## {r.lab}\n\n{r.markdown()}"
                                                    for r in results) + "\n")
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED


def _matrix_cell(row: Any, item: str) -> str:
    from .authoring.validate import _cell

    text = _cell(row, item)
    if text == "manual":
        return "[dim]M[/]"
    if text.startswith("**!"):
        return "[bold red]!✓[/]" if text == "**!pass**" else "[bold red]!✗[/]"
    return "[green]✓[/]" if text == "pass" else "[yellow]✗[/]"


def _release(args: argparse.Namespace, console: Console) -> int:
    from .authoring import ReleaseRefused, release
    from .pipeline import find_course

    course = find_course(args.course)
    try:
        kit = release(course, args.lab, Path(args.out))
    except ReleaseRefused as exc:
        console.print(f"[red]refused:[/] {escape(str(exc))}", highlight=False)
        return EXIT_FAILED
    console.print(f"released {args.lab}: {kit} (leak scan clean)")
    return EXIT_OK


def _batch(args: argparse.Namespace, console: Console) -> int:
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    from .workers import warm_up

    if not args.scheduler:      # the workers' fork server and kernel template, beside our imports
        warm_up(not args.unsafe_no_sandbox, args.device)
    from .batch import run_batch

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("grading", total=None)

        def progress(done: int, total: int, message: str) -> None:
            bar.update(task, completed=done, total=total, description=message[:60])

        result = run_batch(Path(args.submissions), args.assignment, Path(args.out),
                           course=args.course, workers=args.workers, regrade=args.regrade,
                           device=args.device, sandbox=not args.unsafe_no_sandbox,
                           roster=Path(args.roster) if args.roster else None,
                           all_attempts=args.all_attempts, warm=not args.no_warm,
                           scheduler=args.scheduler, progress=progress)
    console.print(f"{result.layout} export: graded {result.graded}, could not grade "
                  f"{result.errors}, already in the gradebook {result.already}, skipped "
                  f"{len(result.skipped)} entries, {result.superseded} older attempts; "
                  f"{result.seconds} s")
    for s in result.skipped[:20]:
        console.print(f"  skipped {s['source']}: {s['reason']}", highlight=False, markup=False)
    console.print(f"gradebook, reports, brightspace.csv, canvas.csv, reports.zip and "
                  f"dashboard.html: {Path(args.out).resolve()}")
    for a in result.dropped:
        console.print(f"[bold yellow]adjustment dropped:[/] {escape(a['student'])} "
                      f"{escape(a['item'])} ({a['points']:g} points by {escape(a['by'])}): "
                      f"{escape(a['why'])}", highlight=False)
    if result.needs_review:
        console.print(f"[bold magenta]needs review:[/] {len(result.needs_review)} student(s) "
                      f"whose grade is not final (left blank in the CSVs, listed in "
                      f"needs-review.csv and the dashboard): {_some(result.needs_review)}",
                      highlight=False)
    if result.pending:
        console.print(f"[bold cyan]pending:[/] {len(result.pending)} student(s) with manual "
                      f"items to grade (blank in the CSVs until then; `grader review "
                      f"{args.out}`): {_some(result.pending)}", highlight=False)
    return EXIT_REVIEW if result.needs_review or result.pending else EXIT_OK


def _some(names: list[str], shown: int = 20) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return escape(", ".join(names[:shown]) + more)


def _review_cmd(args: argparse.Namespace, console: Console) -> int:
    """``grader review``: the table of what needs a human; exit 4 when it is not empty."""
    from .batch.review import review

    entries = review(Path(args.out), args.lab)
    if not entries:
        console.print(f"nothing needs a human in {args.out}: every grade is final, no outlier")
        return EXIT_OK
    table = Table(title=f"grader review {args.out}: {len(entries)} thing(s) to look at")
    for col in ("lab", "student", "what", "item", "detail", "report"):
        table.add_column(col, overflow="fold")
    for e in entries:
        table.add_row(escape(e.lab), escape(e.student), e.kind, escape(e.item),
                      escape(e.detail), escape(e.report))
    console.print(table)
    counts = ", ".join(f"{sum(e.kind == k for e in entries)} {k}" for k in
                       dict.fromkeys(e.kind for e in entries))
    console.print(f"{counts}; grade or correct with `grader adjust {args.out} STUDENT ITEM "
                  "--points P --comment TEXT`", highlight=False)
    return EXIT_REVIEW


def _who(args: argparse.Namespace) -> str:
    import getpass

    if args.by:
        return str(args.by)
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):
        raise CourseError("cannot tell who you are: say it with --by NAME") from None


def _adjust(args: argparse.Namespace, console: Console) -> int:
    """``grader adjust``: one adjustment from the command line, or many from --file."""
    from .batch.adjust import Request, read_requests, record

    single = (args.student, args.item, args.points, args.comment)
    if args.file:
        if any(v is not None for v in single):
            raise CourseError("give either --file or STUDENT ITEM --points --comment, not both")
        requests = read_requests(Path(args.file))
    elif args.student and args.item and args.points is not None and args.comment is not None:
        requests = [Request(args.student, args.item, args.points, args.comment.strip())]
    else:
        raise CourseError("grader adjust OUT STUDENT ITEM --points P --comment TEXT, or "
                          "grader adjust OUT --file adjustments.csv (student,item,points,"
                          "comment)")
    by = _who(args)
    done = record(Path(args.out), requests, by, course=args.course)
    for request, automatic in done:
        console.print(f"{escape(request.student)} {escape(request.item)}: {automatic:g} -> "
                      f"{request.points:g} ({escape(request.comment[:80])})", highlight=False)
    console.print(f"{len(done)} adjustment(s) recorded by {escape(by)}; brightspace.csv, "
                  f"canvas.csv, needs-review.csv, results.json, the reports and dashboard.html "
                  f"rewritten in {Path(args.out).resolve()}", highlight=False)
    return EXIT_OK


def _similarity(args: argparse.Namespace, console: Console) -> int:
    import dataclasses

    from .similarity import Options, find_similar, write_results

    given = {k: v for k, v in (("threshold", args.threshold), ("top", args.top))
             if v is not None}
    if not 0.0 <= given.get("threshold", 0.5) <= 1.0 or given.get("top", 0) < 0:
        raise CourseError(f"--threshold {args.threshold} / --top {args.top}: a threshold is a "
                          "similarity in [0, 1], --top a number of pairs >= 0")
    options = dataclasses.replace(Options(), **given)
    with console.status("comparing…") as status:
        result = find_similar(Path(args.submissions), args.assignment, course=args.course,
                              past=[Path(p) for p in args.past], options=options,
                              progress=lambda msg: status.update(msg))
        written = write_results(result, Path(args.out))
    table = Table(title=escape(f"{result.title} ({result.assignment}): the most similar pairs"))
    for col in ("#", "student", "student", "similarity", "shared (a / b)"):
        table.add_column(col, overflow="fold")
    for n, p in enumerate(result.pairs[:options.top], 1):
        score = f"{p.similarity:.2f}"
        table.add_row(str(n), escape(p.a.student), escape(p.b.student + (
            f" ({p.b.cohort})" if p.b.cohort else "")),
            f"[bold red]{score}[/]" if p.above else score, f"{p.shared_a} / {p.shared_b}")
    console.print(table)
    console.print(f"{result.layout}: {len(result.students)} students"
                  + (f", {len(result.past)} of earlier cohorts" if result.past else "")
                  + f", {len(result.pairs)} pairs; {result.above} at or above the threshold "
                  f"{options.threshold}; {len(result.skipped)} entries not compared",
                  highlight=False, markup=False, soft_wrap=True)
    for s in result.skipped[:20]:
        console.print(f"  not compared {s.source}: {s.reason}", highlight=False, markup=False,
                      soft_wrap=True)
    console.print(f"every pair: {written['csv']}; shared code side by side: {written['html']}",
                  highlight=False, markup=False, soft_wrap=True)
    if written["dashboard"]:
        console.print(f"dashboard updated: {written['dashboard']}", highlight=False,
                      markup=False, soft_wrap=True)
    return EXIT_OK


def _gradescope(args: argparse.Namespace, console: Console) -> int:
    import json

    from .batch.exports import gradescope_results
    from .pipeline import grade

    course = args.course or ("/autograder/source" if Path("/autograder/source").is_dir()
                             else None)
    report = Report.from_json(grade(args.submission, assignment=args.assignment,
                                    course=course))
    out = Path(args.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(gradescope_results(report), indent=1))
    console.print(f"wrote {out}: {report.score:.4g} / {report.max_score:g}")
    review = _review(report)
    for item in review:
        console.print(f"needs review: {item.id} ({item.error_kind}): "
                      f"{item.message[:300]}", highlight=False, markup=False)
    return EXIT_REVIEW if review else EXIT_OK


def _graded(args: argparse.Namespace, console: Console) -> int:
    """``grade`` and ``check``: the table, the report files, the exit code."""
    report = _grade(args, args.submission, args.command == "check", console)
    written = _write(report, args.out) if args.out else None    # before anything can fail
    _table(report, console)
    if written:
        console.print(f"wrote {written[0]} and {written[1]}", markup=False)
    if _review(report):
        return EXIT_REVIEW
    if args.command == "check":      # a manual item is pending: a TA grades it, later
        ok = all(i.outcome in ("passed", "pending") for i in report.items)
        return EXIT_OK if ok else EXIT_FAILED
    return EXIT_OK


def _internal_error(exc: Exception, console: Console) -> int:
    """A grader bug: one clear message, the traceback in a file for the bug report."""
    import tempfile
    import traceback

    text = "".join(traceback.format_exception(exc))
    try:
        with tempfile.NamedTemporaryFile("w", prefix="grader-error-", suffix=".txt",
                                         delete=False) as f:
            f.write(text)
        where = f.name
    except OSError:
        where = "(the details could not be saved)"
    console.print(f"[red]grader internal error:[/] {type(exc).__name__}: "
                  f"{escape(str(exc)[:500])}", highlight=False, soft_wrap=True)
    console.print("  This is a bug in grader, not a problem with the submission. Please report "
                  "it with this file, which holds the details:", highlight=False)
    console.print(f"  {where}", markup=False, highlight=False, soft_wrap=True)
    return EXIT_INTERNAL


_COMMANDS = {"batch": _batch, "review": _review_cmd, "adjust": _adjust,
             "similarity": _similarity, "gradescope": _gradescope, "new": _new,
             "build": _build, "lint": _lint, "validate": _validate, "release": _release,
             "demo": _demo, "calibrate": _calibrate, "grade": _graded, "check": _graded}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console(stderr=False)
    try:
        return _COMMANDS[args.command](args, console)
    except SandboxUnavailable as exc:
        console.print(f"[red]refused:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return EXIT_REFUSED
    except (CourseError, RubricError) as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return EXIT_USAGE
    except GraderError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return EXIT_USAGE
    except KeyboardInterrupt:
        console.print("[red]interrupted[/] (a batch resumes where it stopped: run the same "
                      "command again)")
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - never a traceback for a grader bug
        return _internal_error(exc, console)


if __name__ == "__main__":
    sys.exit(main())
