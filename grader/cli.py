"""The command line: the only module that prints, parses argv and sets exit codes.

    grader check SUBMISSION              a student's self-check: public items only
    grader grade SUBMISSION --out DIR    a TA's grading: every item, report.json + report.html
    grader demo                          grade the bundled examples on the embedded data
    grader calibrate LAB [--write]       anchors of threshold items from reference runs
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from . import __version__
from .errors import CourseError, GraderError, RubricError, SandboxUnavailable

__all__ = ["main"]

_STYLE = {"passed": "green", "failed": "red", "error": "magenta", "skipped": "yellow"}
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED = 0, 1, 2, 3


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

    demo = sub.add_parser("demo", help="grade the bundled example submissions")
    demo.add_argument("--out", default="grader-demo", help="where the reports go "
                                                            "(default: ./grader-demo)")
    demo.add_argument("--course", help=argparse.SUPPRESS)
    demo.add_argument("--assignment", help="one lab (default: every lab with examples)")
    demo.add_argument("--unsafe-no-sandbox", action="store_true", help=argparse.SUPPRESS)
    return parser


def _table(report: dict[str, Any], console: Console) -> None:
    table = Table(title=f"{report['title']} ({report['assignment']}): "
                        f"{report['score']:.4g} / {report['max_score']:g}")
    for col in ("item", "outcome", "points", "message"):
        table.add_column(col, overflow="fold")
    for item in report["items"]:
        style = _STYLE.get(item["outcome"], "")
        table.add_row(item["id"], f"[{style}]{item['outcome']}[/]",
                      f"{item['score']:g}/{item['max_score']:g}", item["message"][:300])
    console.print(table)
    for item in report["items"]:
        ce = item.get("counterexample")
        if item["outcome"] != "passed" and ce:
            console.print(f"[bold]{item['id']}[/] smallest failing input:", markup=True)
            for name, text in (ce.get("inputs") or {}).items():
                console.print(f"  {name} = {text}", markup=False, highlight=False)
            for key in ("expected", "actual"):
                if ce.get(key):
                    console.print(f"  {key}: {ce[key]}", markup=False, highlight=False)
    for warning in report["warnings"]:
        console.print(f"[yellow]warning:[/] {warning}")


def _grade(args: argparse.Namespace, submission: str, public_only: bool,
           console: Console) -> dict[str, Any]:
    from .pipeline import grade

    with console.status("grading…") as status:
        return grade(submission, assignment=args.assignment, course=args.course,
                     public_only=public_only, sandbox=not args.unsafe_no_sandbox,
                     device=getattr(args, "device", "cpu"),
                     progress=lambda msg: status.update(msg))


def _write(report: dict[str, Any], out: str | Path) -> tuple[Path, Path]:
    from .report import write_reports

    return write_reports(report, Path(out))


def _demo(args: argparse.Namespace, console: Console) -> int:
    """Grade every bundled example of one lab, or of every lab that has examples."""
    from .pipeline import find_course

    course = find_course(args.course)
    labs = [args.assignment] if args.assignment else sorted(
        p.stem for p in (course / "rubrics").glob("*.yaml")
        if (course / "assignments" / p.stem / "examples").is_dir())
    if not labs or not all((course / "assignments" / lab / "examples").is_dir() for lab in labs):
        raise CourseError(f"{course}: no bundled examples for {', '.join(labs) or 'any lab'}")
    out = Path(args.out)
    table = Table(title="grader demo: the bundled examples")
    for col in ("lab", "example", "score", "items not passed", "time"):
        table.add_column(col, overflow="fold")
    for lab in labs:
        examples = course / "assignments" / lab / "examples"
        for folder in sorted(p for p in examples.iterdir() if p.is_dir()):
            t0 = time.perf_counter()
            report = _grade(argparse.Namespace(**{**vars(args), "course": str(course),
                                                  "assignment": lab}), str(folder), False,
                            console)
            _write(report, out / lab / folder.name)
            console.print(f"graded {lab}/{folder.name}: {report['score']:.4g} / "
                          f"{report['max_score']:g}")
            failed = [i["id"] for i in report["items"] if i["outcome"] != "passed"]
            table.add_row(lab, folder.name, f"{report['score']:.4g}/{report['max_score']:g}",
                          ", ".join(failed) or "-", f"{time.perf_counter() - t0:.1f} s")
    console.print(table)
    console.print(f"Reports: {out.resolve()}/<lab>/<example>/report.html (and report.json)")
    return EXIT_OK


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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console(stderr=False)
    try:
        if args.command == "demo":
            return _demo(args, console)
        if args.command == "calibrate":
            return _calibrate(args, console)
        report = _grade(args, args.submission, args.command == "check", console)
        _table(report, console)
        if args.out:
            json_path, html_path = _write(report, args.out)
            console.print(f"wrote {json_path} and {html_path}")
        if args.command == "check":
            ok = all(i["outcome"] == "passed" for i in report["items"])
            return EXIT_OK if ok else EXIT_FAILED
        return EXIT_OK
    except SandboxUnavailable as exc:
        console.print(f"[red]refused:[/] {exc}")
        return EXIT_REFUSED
    except (CourseError, RubricError) as exc:
        console.print(f"[red]error:[/] {exc}", markup=True, highlight=False)
        return EXIT_USAGE
    except GraderError as exc:
        console.print(f"[red]error:[/] {exc}")
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
