"""Time grading of the bundled examples: kernel start, notebook run, checks, total.

    .venv/bin/python benchmarks/grade_timing.py [--lab vae] [--repeats 3] [--unsafe]

Prints a table of median timings per example (seconds) and the peak resident memory of
the grader process. Run on the 2-core CI kind of machine for the numbers in the notes.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

from grader.authoring.examples import submission_folder
from grader.pipeline import grade

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lab", default="vae")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--unsafe", action="store_true", help="without the sandbox, to compare")
    parser.add_argument("--public-only", action="store_true", help="as `grader check` does")
    args = parser.parse_args()
    examples = sorted(p for p in (REPO / "assignments" / args.lab / "examples").iterdir()
                      if p.is_dir())
    print(f"{'example':24s} {'kernel':>7s} {'notebook':>9s} {'checks':>7s} {'total':>7s} "
          f"{'wall':>7s}  score")
    scratch = Path(tempfile.mkdtemp(prefix="grade-timing-"))   # shared checkpoints
    for folder in (submission_folder(f, scratch) for f in examples):
        rows = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            report = grade(folder, course=REPO, sandbox=not args.unsafe,
                           public_only=args.public_only)
            t = report["timings"]
            rows.append((t["kernel_start_s"], t["notebook_s"], t["checks_s"], t["total_s"],
                         time.perf_counter() - t0))
        med = [statistics.median(col) for col in zip(*rows)]
        print(f"{folder.name:24s} {med[0]:7.2f} {med[1]:9.2f} {med[2]:7.2f} {med[3]:7.2f} "
              f"{med[4]:7.2f}  {report['score']:g}/{report['max_score']:g}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the grader process: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
