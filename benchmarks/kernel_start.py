"""Time one student's kernel start: cold bwrap start vs a fork from the template.

    .venv/bin/python benchmarks/kernel_start.py [--repeats 5]

For each start: wall seconds from ``KernelSession`` to a kernel that has answered and run
``import torch`` (every notebook does), and the CPU seconds that took on the machine: the
grader's own, the kernel's processes' (bwrap, setpriv and the interpreter; or the keeper,
init and kernel) and, for a fork, the template's share (the fork itself). Runs as root
(the template gives each kernel a uid of its own). Prints medians and the one-off cost of
starting the template.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from grader.sandbox import KernelSession, Limits
from grader.sandbox.zygote import shared_zygote, zygote_failure

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and of its children it has reaped."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / _TICK


def _family(root: int) -> set[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue
    family, grew = {root}, True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in family and pid not in family:
                family.add(pid)
                grew = True
    return family


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def one_start(fork: bool) -> tuple[float, float]:
    """Wall and CPU seconds of one kernel start, ``import torch`` included."""
    template = shared_zygote() if fork else None
    template_pids = _family(template.pid) if template else set()
    template_before = sum(_cpu(p) for p in template_pids)
    own_before, wall_before = time.process_time(), time.perf_counter()
    session = KernelSession({}, Limits(), fork=fork)
    try:
        session.start()
        assert session.client is not None and session.forked == fork
        session.client.execute_interactive("import torch", timeout=120)
        wall = time.perf_counter() - wall_before
        own = time.process_time() - own_before
        root = session.km.provisioner.process.pid  # type: ignore[union-attr]
        if fork:
            root = _parent(root)                    # the keeper, above the kernel's init
        kernel = sum(_cpu(p) for p in _family(root))
        template_share = sum(_cpu(p) for p in template_pids) - template_before
        # the template's children (the keepers) are not yet reaped: nothing counted twice
        return wall, own + kernel + template_share
    finally:
        session.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    started = time.perf_counter()
    if shared_zygote() is None:
        raise SystemExit(f"the fork server cannot run here: {zygote_failure()}")
    print(f"template start (once per grader process): {time.perf_counter() - started:.2f} s wall")
    runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    one_start(True)                                  # warm the page cache for both
    one_start(False)
    for _ in range(args.repeats):
        for fork in (False, True):
            runs[fork].append(one_start(fork))
    print(f"median of {args.repeats} starts, kernel answering and `import torch` run:")
    print("| start | wall s | CPU s |\n|---|---|---|")
    for fork, label in ((False, "cold bwrap"), (True, "fork from template")):
        walls, cpus = zip(*runs[fork])
        print(f"| {label} | {statistics.median(walls):.3f} | {statistics.median(cpus):.3f} |")


if __name__ == "__main__":
    main()
