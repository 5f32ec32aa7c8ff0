"""Throughput of `grader batch`: workers, the warm kernel pool, overhead over plain Python.

    .venv/bin/python benchmarks/batch_throughput.py [--n 12] [--workers 1,2]

Generates ``--n`` submissions of the backprop lab (copies of the examples in turn: correct,
different and each bug_*, with their checkpoints) as one folder per student in a temp folder,
then grades them with ``grader.batch.run_batch`` (every item, sandboxed, a fresh output folder
each time) for each worker count, with and without the warm kernel pool (``warm=False`` is
``--no-warm``). The wall time includes ingestion, the gradebook, reports and exports.

The baseline runs the same notebooks' code as plain Python: each notebook's code cells
concatenated, with ``TRAIN = False``, ``SEED = 0``, ``DEVICE = "cpu"`` set right after the
``parameters`` cell (where the grader injects them: the parameters cell itself sets
``TRAIN = True``), run by ``python`` in a subprocess in a copy of the submission folder, with
as many subprocesses at a time as grading workers; no sandbox, no kernel, no checks.
``overhead`` = grader seconds per submission / plain seconds per submission.

Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat

from grader.authoring.examples import copy_submission

REPO = Path(__file__).resolve().parent.parent
LAB = "backprop"
EXAMPLES = REPO / "assignments" / LAB / "examples"


def make_class(root: Path, n: int) -> list[Path]:
    """``n`` student folders, the examples in turn (correct first)."""
    names = sorted((p.name for p in EXAMPLES.iterdir() if p.is_dir()),
                   key=lambda k: (k != "correct", k))
    folders = []
    for k in range(n):
        folder = root / "class" / f"s{k:03d}"
        copy_submission(EXAMPLES / names[k % len(names)], folder)
        folders.append(folder)
    return folders


def plain_script(notebook: Path) -> str:
    """The notebook's code cells as one script, the grader's parameters after ``parameters``."""
    nb = nbformat.read(notebook, as_version=4)
    parts = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        parts.append(cell.source)
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            parts.append('TRAIN = False\nSEED = 0\nDEVICE = "cpu"')
    return "\n\n".join(parts) + "\n"


def run_plain(folder: Path, work: Path) -> float:
    shutil.copytree(folder, work)
    (work / "main.py").write_text(plain_script(work / f"{LAB}.ipynb"))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "main.py"], cwd=work, capture_output=True,
                          text=True, timeout=600)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{folder.name}: plain run failed\n{proc.stderr[-2000:]}")
    return seconds


def plain(folders: list[Path], root: Path, workers: int) -> float:
    """Wall seconds to run every notebook as plain Python, ``workers`` at a time."""
    base = root / f"plain-{workers}"
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda f: run_plain(f, base / f.name), folders))
    return time.perf_counter() - t0


def round_trips(out: Path) -> float:
    """The mean round trips into the kernel per graded submission (the reports' timings)."""
    import json

    trips = [json.loads(p.read_text())["timings"].get("round_trips", 0)
             for p in out.glob("students/*/report.json")]
    return sum(trips) / max(1, len(trips))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=12, help="submissions (default 12)")
    parser.add_argument("--workers", default="1,2",
                        help="comma-separated worker counts (default 1,2)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = parser.parse_args()
    from grader.batch import run_batch

    counts = [int(w) for w in args.workers.split(",")]
    root = Path(tempfile.mkdtemp(prefix="grader-throughput-"))
    print(f"working in {root}", file=sys.stderr)
    try:
        folders = make_class(root, args.n)
        rows = []
        for workers in counts:
            plain_s = plain(folders, root, workers)
            print(f"plain python, {workers} at a time: {plain_s:.1f} s", file=sys.stderr)
            for warm in (True, False):
                out = root / f"out-{workers}-{'warm' if warm else 'cold'}"
                t0 = time.perf_counter()
                result = run_batch(root / "class", LAB, out, course=REPO, workers=workers,
                                   warm=warm)
                seconds = time.perf_counter() - t0
                if result.graded != args.n or result.errors:
                    raise SystemExit(f"graded {result.graded} of {args.n}, "
                                     f"{result.errors} errors")
                print(f"workers {workers}, warm {warm}: {seconds:.1f} s", file=sys.stderr)
                rows.append((workers, warm, seconds, plain_s, round_trips(out)))
        one = {warm: s for w, warm, s, _, _ in rows if w == min(counts)}
        print(f"\n{args.n} backprop submissions (every item, sandboxed); plain = the same "
              "notebooks' code as `python` subprocesses\n")
        print("| workers | warm pool | seconds | submissions/min | s/submission | "
              "speed-up vs 1 worker | plain s/submission | overhead ratio | "
              "round trips/submission |")
        print("|---|---|---|---|---|---|---|---|---|")
        for workers, warm, seconds, plain_s, trips in rows:
            per, plain_per = seconds / args.n, plain_s / args.n
            print(f"| {workers} | {'yes' if warm else 'no (--no-warm)'} | {seconds:.1f} | "
                  f"{args.n / seconds * 60:.1f} | {per:.2f} | {one[warm] / seconds:.2f}x | "
                  f"{plain_per:.2f} | {per / plain_per:.2f} | {trips:.1f} |")
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
