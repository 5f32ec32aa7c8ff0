"""Per-lab grading time of every lab's correct example, against the student's own code's time.

    .venv/bin/python benchmarks/lab_timing.py [--labs vae,flow] [--repeats 2]

Grades ``assignments/<lab>/examples/correct`` (every item, sandboxed, one at a time) and
prints one Markdown row per lab from the report's timings (median of the repeats):
``notebook`` (the notebook's cells and kernel start included; the kernels' template is
started by an untimed first grading, as a batch starts it once), ``calls``
(what the kernel says it spent answering the rubric's calls: the student's code on the
grader's inputs), ``checks`` (every item, wall), ``total``, the round trips and the calls
they carried, and ``ratio`` = total / (notebook + calls): what grading costs over running the
student's own code. The issue-12 target is a ratio of at most 2 for every lab.

Columns added at the end: ``kernel start s`` (forking the kernel from the template), ``cells s``
(the notebook's code cells alone, as each cell's duration in the report: the student's own
code, without the kernel's start and nbclient's set-up that ``notebook`` includes) and the ratio
against ``cells + calls``, the issue's literal measure.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LABS = ("backprop", "autoregressive", "vae", "gan", "flow", "diffusion", "active_inference")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labs", default=",".join(LABS))
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    from grader.authoring.examples import submission_folder
    from grader.pipeline import grade

    # one grading first, not timed: it starts the kernels' template, as a batch does once
    # before its first student (otherwise the first lab's notebook time carries it)
    first = args.labs.split(",")[0]
    grade(submission_folder(REPO / "assignments" / first / "examples" / "correct",
                            Path(tempfile.mkdtemp(prefix="lab-timing-"))),
          assignment=first, course=REPO)
    print("| lab | score | notebook s | calls s | checks s | total s | round trips | calls "
          "batched | ratio total / (notebook + calls) | kernel start s | cells s | ratio total / "
          "(cells + calls) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for lab in args.labs.split(","):
        correct = submission_folder(REPO / "assignments" / lab / "examples" / "correct",
                                    Path(tempfile.mkdtemp(prefix="lab-timing-")))
        runs = [grade(correct, assignment=lab,
                      course=REPO) for _ in range(args.repeats)]
        t = {k: statistics.median(r["timings"].get(k, 0.0) for r in runs)
             for k in ("notebook_s", "kernel_calls_s", "checks_s", "total_s", "round_trips",
                       "batched_calls", "kernel_start_s")}
        t["cells_s"] = statistics.median(sum(c.get("duration_s") or 0.0 for c in
                                             r["execution"]["cells"]) for r in runs)
        own = t["notebook_s"] + t["kernel_calls_s"]
        cells = t["cells_s"] + t["kernel_calls_s"]
        print(f"| {lab} | {runs[0]['score']:g}/{runs[0]['max_score']:g} | {t['notebook_s']:.2f} "
              f"| {t['kernel_calls_s']:.2f} | {t['checks_s']:.2f} | {t['total_s']:.2f} | "
              f"{t['round_trips']:.0f} | {t['batched_calls']:.0f} | {t['total_s'] / own:.2f} | "
              f"{t['kernel_start_s']:.2f} | {t['cells_s']:.2f} | {t['total_s'] / cells:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
