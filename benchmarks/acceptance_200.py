"""Acceptance run of `grader batch`: a mixed class of the backprop lab in every LMS layout.

    .venv/bin/python benchmarks/acceptance_200.py [--n 200] [--workers 2] [--keep]

Generates ``--n`` student submissions of the backprop lab, spread evenly over the five layouts
the ingester reads (per-student folders and zips, a Brightspace zip export, a Canvas folder,
a Moodle folder, a Gradescope export with ``submission_metadata.yml``). Each layout mixes:

- copies of every example (correct, different, each bug_*), whose expected scores come from
  grading each example once first (the calibration run);
- a notebook that kills its kernel (``os._exit``), at the end and in the middle;
- a notebook that hangs (``while True: pass``), at the end and in the middle; the course copy
  has 10 s cell timeouts (as tests/test_batch.py's ``course`` fixture);
- a notebook that allocates 40 GB;
- a malformed notebook and a submission of the wrong file type (both must be skipped);
- zip-slip zips (folders: a student zip with ``../`` entries, with and without a good
  notebook; Brightspace: a ``../`` entry inside the export zip);
- resubmissions (Brightspace, Canvas, Gradescope): an older buggy attempt and a newer one.

Each layout's export is graded with one ``run_batch`` call; every student's verdict is checked
against the intended one (crash / hang / memory-hungry notebooks built on the correct example
keep its 20 points: the failing cell is recorded, the kernel restarted and the good cells
replayed). Prints a table per layout; exits 1 if any verdict is wrong.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import sqlite3
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import nbformat

from grader.authoring.examples import copy_submission

REPO = Path(__file__).resolve().parent.parent
LAB = "backprop"
EXAMPLES = REPO / "assignments" / LAB / "examples"
LAYOUTS = ("folders", "brightspace", "canvas", "moodle", "gradescope")
MID = 10                          # insert a mid-notebook cell here (after relu_backward)
CELLS = {"crash": "import os\nos._exit(3)", "hang": "while True:\n    pass",
         "memhog": "hog = bytearray(40 * 2**30)"}


@dataclass
class Student:
    sid: str                      # the id the ingester must find
    kind: str                     # what the generator made
    expect: str                   # "graded" or "skipped"
    score: float | None = None    # expected score when graded
    reason: str = ""              # words the skip reason must contain


def make_course(root: Path) -> Path:
    """The backprop lab with short timeouts, so a hanging notebook costs seconds."""
    course = root / "course"
    (course / "rubrics").mkdir(parents=True)
    text = (REPO / "rubrics" / f"{LAB}.yaml").read_text()
    text = text.replace("cell_timeout_s: 300", "cell_timeout_s: 10").replace(
        "total_timeout_s: 900", "total_timeout_s: 120")
    (course / "rubrics" / f"{LAB}.yaml").write_text(text)
    (course / "reference").symlink_to(REPO / "reference")
    return course


def examples() -> list[str]:
    return sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir())


def calibrate(course: Path, root: Path, workers: int) -> dict[str, float]:
    """Each example graded once: its score is what its copies must get."""
    from grader.batch import run_batch

    subs = root / "calibration"
    for name in examples():
        copy_submission(EXAMPLES / name, subs / name)   # shared checkpoints beside
    run_batch(subs, LAB, root / "calibration-out", course=course, workers=workers)
    scores = dict(gradebook(root / "calibration-out"))
    return {k: v[1] for k, v in scores.items()}


def gradebook(out: Path) -> dict[str, tuple[str, float]]:
    with sqlite3.connect(out / "gradebook.sqlite") as db:
        return {r[0]: (r[1], r[2]) for r in db.execute(
            "SELECT student, status, score FROM results")}


# ------------------------------------------------------------------------ submissions
def example_files(name: str) -> dict[str, bytes]:
    """The files of a bundled example, with the solution's checkpoints where it shares them."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = copy_submission(EXAMPLES / name, Path(tmp) / name)
        return {p.name: p.read_bytes() for p in folder.iterdir()}


def files_for(kind: str) -> dict[str, bytes]:
    """The files of one submission of ``kind`` (file name -> bytes)."""
    if kind in examples():
        return example_files(kind)
    correct = example_files("correct")
    if kind == "malformed":
        return {**correct, "backprop.ipynb": b'{"cells": ['}
    if kind == "wrongtype":
        return {"answers.docx": b"PK\x03\x04 not a notebook", "backprop.py": b"x = 1\n"}
    what, _, where = kind.partition("_")
    if what in CELLS:
        nb = nbformat.read(EXAMPLES / "correct" / f"{LAB}.ipynb", as_version=4)
        cell = nbformat.v4.new_code_cell(CELLS[what])
        nb.cells.insert(MID if where == "mid" else len(nb.cells), cell)
        return {**correct, f"{LAB}.ipynb": nbformat.writes(nb).encode()}
    raise ValueError(kind)


def plan(layout: int, n: int, scores: dict[str, float]) -> list[str]:
    """``n`` kinds for one layout: every special kind once, then the examples in turn."""
    special = ["crash_end", "crash_mid", "hang_end", "hang_mid", "memhog_end", "malformed",
               "wrongtype"]
    if LAYOUTS[layout] == "folders":
        special += ["zipslip", "zipslip_only"]
    if LAYOUTS[layout] == "brightspace":
        special += ["zipslip"]
    if LAYOUTS[layout] in ("brightspace", "canvas", "gradescope"):
        special += ["resubmit"]
    fill = itertools.cycle(sorted(scores, key=lambda k: (k != "correct", k)))
    kinds = special + [next(fill) for _ in range(max(0, n - len(special)))]
    return kinds[:n]


def intended(sid: str, kind: str, scores: dict[str, float]) -> Student:
    if kind == "malformed":
        return Student(sid, kind, "skipped", reason="is not a valid notebook")
    if kind in ("wrongtype", "zipslip_only"):
        return Student(sid, kind, "skipped", reason="0 notebooks")
    if kind in scores:
        return Student(sid, kind, "graded", scores[kind])
    return Student(sid, kind, "graded", scores["correct"])   # built on the correct example


def zipslip(zf: zipfile.ZipFile, tag: str, root: Path) -> None:
    """A relative and an absolute entry that escape (both under ``root``, if written)."""
    zf.writestr(f"../../../evil-{tag}.ipynb", "{}")
    zf.writestr(str(root / "escaped" / f"evil-{tag}-abs.ipynb"), "{}")


def build(layout: str, kinds: list[str], root: Path, scores: dict[str, float]
          ) -> tuple[Path, list[Student]]:
    """Write one layout's export under ``root``; return it and the intended verdicts."""
    students: list[Student] = []
    src = root / layout
    src.mkdir(parents=True)
    if layout == "folders":
        for k, kind in enumerate(kinds):
            sid = f"s{k:03d}"
            students.append(intended(sid, kind, scores))
            files = files_for("correct" if kind.startswith("zipslip") else kind)
            if kind.startswith("zipslip") or k % 3 == 2:          # a zip per student
                with zipfile.ZipFile(src / f"{sid}.zip", "w", zipfile.ZIP_DEFLATED) as zf:
                    if kind.startswith("zipslip"):
                        zipslip(zf, sid, root)
                    if kind != "zipslip_only":
                        for name, data in files.items():
                            zf.writestr(f"{sid}/{name}", data)
            else:
                (src / sid).mkdir()
                for name, data in files.items():
                    (src / sid / name).write_bytes(data)
        return src, students
    if layout == "brightspace":
        export = root / "brightspace.zip"
        with zipfile.ZipFile(export, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("index.html", "<html></html>")
            for k, kind in enumerate(kinds):
                uid, name = str(3000 + k), f"Student Number{k}"
                students.append(intended(uid, kind, scores))
                attempts = [("bug_grad_b_not_summed", "Nov 20, 2026 943 AM", 100 + k),
                            ("correct", "Nov 21, 2026 213 PM", 500 + k)] \
                    if kind == "resubmit" else [
                        ("correct" if kind == "zipslip" else kind, "Nov 21, 2026 1159 PM",
                         100 + k)]
                for what, when, sub in attempts:
                    for fname, data in files_for(what).items():
                        zf.writestr(f"{sub}-{uid} - {name} - {when} - {fname}", data)
                if kind == "zipslip":
                    zipslip(zf, uid, root)
        return export, students
    if layout == "canvas":
        for k, kind in enumerate(kinds):
            uid, login = str(4000 + k), f"student{k}"
            students.append(intended(uid, kind, scores))
            attempts = [("bug_softmax_no_max_shift", 9000 + k, ""),
                        ("correct", 9500 + k, "-1")] if kind == "resubmit" else \
                [(kind, 9000 + k, "")]
            for what, sub, suffix in attempts:
                late = "_LATE" if k % 5 == 4 else ""
                for fname, data in files_for(what).items():
                    stem, dot, ext = fname.rpartition(".")
                    (src / f"{login}{late}_{uid}_{sub}_{stem}{suffix}{dot}{ext}"
                     ).write_bytes(data)
        return src, students
    if layout == "moodle":
        for k, kind in enumerate(kinds):
            pid = str(5000 + k)
            students.append(intended(pid, kind, scores))
            folder = src / f"Student Number{k}_{pid}_assignsubmission_file_"
            folder.mkdir()
            for fname, data in files_for(kind).items():
                (folder / fname).write_bytes(data)
        return src, students
    if layout == "gradescope":
        meta = []
        for k, kind in enumerate(kinds):
            sid = f"g{k:03d}"
            students.append(intended(sid, kind, scores))
            runs = [(6000 + k, "correct", "2026-11-21 10:00:00.000000000 +01:00"),
                    (6500 + k, "bug_true_convolution", "2026-11-20 10:00:00.000000000 +01:00")
                    ] if kind == "resubmit" else \
                [(6000 + k, kind, "2026-11-21 10:00:00.000000000 +01:00")]
            for sub, what, _ in runs:
                folder = src / f"submission_{sub}"
                folder.mkdir()
                for fname, data in files_for(what).items():
                    (folder / fname).write_bytes(data)
            sub, _, when = runs[0]
            entry = (f"submission_{sub}:\n  :submitters:\n  - :name: Student Number{k}\n"
                     f"    :sid: '{sid}'\n    :email: {sid}@uni.example\n"
                     f"  :created_at: {when}\n  :score: 0.0\n")
            if len(runs) > 1:
                entry += f"  :history:\n  - :id: {runs[1][0]}\n    :created_at: {runs[1][2]}\n"
            meta.append(entry)
        (src / "submission_metadata.yml").write_text("".join(meta))
        return src, students
    raise ValueError(layout)


# ------------------------------------------------------------------------- checking
def check(students: list[Student], rows: dict[str, tuple[str, float]], result,  # noqa: ANN001
          root: Path) -> list[str]:
    """Every wrong verdict, in words (empty when all are right)."""
    reasons = [f"{s['source']}: {s['reason']}" for s in result.skipped]
    wrong = []
    for s in students:
        got = rows.get(s.sid)
        if s.expect == "graded":
            if got is None:
                why = [r for r in reasons if f"student {s.sid}:" in r]
                wrong.append(f"{s.sid} ({s.kind}): expected {s.score:g}, not graded {why}")
            elif got[0] != "graded" or abs(got[1] - s.score) > 1e-6:
                wrong.append(f"{s.sid} ({s.kind}): expected graded {s.score:g}, got {got}")
        else:
            if got is not None:
                wrong.append(f"{s.sid} ({s.kind}): expected skipped, got {got}")
            elif not any(f"student {s.sid}:" in r and s.reason in r for r in reasons):
                wrong.append(f"{s.sid} ({s.kind}): no skip reason with '{s.reason}'")
        if s.kind.startswith("zipslip") and not any("zip-slip" in r for r in reasons):
            wrong.append(f"{s.sid} ({s.kind}): the zip-slip entry was not reported")
    extra = set(rows) - {s.sid for s in students}
    wrong += [f"{sid}: graded but never generated ({rows[sid]})" for sid in sorted(extra)]
    escaped = [str(p) for p in root.parent.glob("evil-*")] + [
        str(p) for p in root.rglob("evil-*")]
    wrong += [f"a zip-slip entry was written: {p}" for p in escaped]
    return wrong


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="students in all (default 200)")
    parser.add_argument("--workers", type=int, default=2, help="grading workers (default 2)")
    parser.add_argument("--layouts", default=",".join(LAYOUTS),
                        help="comma-separated subset of " + ", ".join(LAYOUTS))
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = parser.parse_args()
    from grader.batch import run_batch

    layouts = [x for x in args.layouts.split(",") if x]
    root = Path(tempfile.mkdtemp(prefix="grader-acceptance-"))
    print(f"working in {root}", file=sys.stderr)
    started = time.perf_counter()
    try:
        course = make_course(root)
        t0 = time.perf_counter()
        scores = calibrate(course, root, args.workers)
        print(f"calibration ({time.perf_counter() - t0:.0f} s): "
              + ", ".join(f"{k} {v:g}" for k, v in sorted(scores.items())), file=sys.stderr)
        per = [args.n // len(layouts) + (i < args.n % len(layouts)) for i in range(len(layouts))]
        table, all_wrong = [], []
        for layout, n in zip(layouts, per):
            kinds = plan(LAYOUTS.index(layout), n, scores)
            export, students = build(layout, kinds, root / "exports", scores)
            out = root / "out" / layout
            t0 = time.perf_counter()
            result = run_batch(export, LAB, out, course=course, workers=args.workers,
                               progress=lambda d, t, m, lay=layout: print(
                                   f"  [{lay} {d}/{t}] {m}", file=sys.stderr))
            seconds = time.perf_counter() - t0
            rows = gradebook(out)
            wrong = check(students, rows, result, root)
            if result.layout != layout:
                wrong.append(f"layout recognised as {result.layout}, not {layout}")
            bad = {w.split(" ")[0] for w in wrong}
            right = sum(s.sid not in bad for s in students)
            skipped = sum(s.sid not in rows for s in students)
            intended_skips = sum(s.expect == "skipped" for s in students)
            table.append((layout, len(students), result.graded, result.errors,
                          len(result.skipped), f"{skipped} ({intended_skips})", right,
                          len(students) - right, seconds, result.graded / seconds * 60))
            all_wrong += [f"{layout}: {w}" for w in wrong]
        print("\nscores of the examples (calibration): "
              + ", ".join(f"{k} {v:g}" for k, v in sorted(scores.items())))
        print("\n| layout | students | graded | errors | skip entries | students skipped "
              "(intended) | verdicts right | wrong | seconds | graded/min |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for row in table:
            print(f"| {row[0]} | {row[1]} | {row[2]} | {row[3]} | {row[4]} | {row[5]} | "
                  f"{row[6]} | {row[7]} | {row[8]:.0f} | {row[9]:.1f} |")
        total = {i: sum(r[i] for r in table) for i in (1, 2, 3, 4, 6, 7, 8)}
        skips = sum(int(r[5].split()[0]) for r in table)
        meant = sum(int(r[5].split("(")[1].rstrip(")")) for r in table)
        print(f"| **all** | {total[1]} | {total[2]} | {total[3]} | {total[4]} | {skips} "
              f"({meant}) | {total[6]} | {total[7]} | {total[8]:.0f} | "
              f"{total[2] / total[8] * 60:.1f} |")
        print(f"\nworkers {args.workers}; wall time {time.perf_counter() - started:.0f} s "
              f"(calibration included)")
        for w in all_wrong:
            print("WRONG:", w)
        return 1 if all_wrong else 0
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
