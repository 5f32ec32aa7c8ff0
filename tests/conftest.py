"""Shared fixtures: submissions built from the trusted reference plus extra cells."""

from __future__ import annotations

import contextlib
import functools
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent


def reference_module(lab: str):  # type: ignore[no-untyped-def]
    """``reference/LAB.py`` loaded by path, as the grader loads it (never installed)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"{lab}_reference",
                                                  REPO / "reference" / f"{lab}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@functools.lru_cache(maxsize=None)
def validation(lab: str):  # type: ignore[no-untyped-def]
    """``grader validate LAB`` over every row (reference, template, variants, examples,
    mutants), graded once per test session, two at a time; rows keep their full reports."""
    from grader.authoring import validate

    return validate(lab, course=REPO, jobs=2)


def example(lab: str, name: str, to: Path) -> Path:
    """A complete copy of a bundled example at ``to``: its notebook, and its checkpoints or,
    where it shares them, the solution's (grader/authoring/examples.py)."""
    from grader.authoring.examples import copy_submission

    return copy_submission(REPO / "assignments" / lab / "examples" / name, to)


def build_submission(folder: Path, *extra: str, checkpoint: Path | None = None) -> Path:
    """A folder with vae.ipynb defining the reference solution, then ``extra`` cells."""
    nb = nbformat.v4.new_notebook(metadata={"grader": {"assignment": "vae"}})
    nb.cells = [nbformat.v4.new_code_cell("TRAIN = False\nSEED = 0\nDEVICE = 'cpu'",
                                          metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell((REPO / "reference" / "vae.py").read_text()),
                *[nbformat.v4.new_code_cell(src) for src in extra]]
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / "vae.ipynb")
    if checkpoint is not None:
        (folder / "vae.pt").write_bytes(checkpoint.read_bytes())
    return folder


@pytest.fixture
def make_submission(tmp_path: Path) -> Callable[..., Path]:
    counter = iter(range(1000))

    def make(*extra: str, checkpoint: Path | None = None) -> Path:
        return build_submission(tmp_path / f"sub{next(counter)}", *extra, checkpoint=checkpoint)

    return make


def assert_example_outcomes(report: dict, expected: dict[str, str], items: list[str]) -> None:
    """A graded example fails exactly the items in ``expected`` and keeps every other point.

    ``expected`` maps each failing item id to words its message must contain; ``items`` is
    the rubric's item order. No item may need review (a grader-internal error). A manual
    item is graded by a TA: it is pending, with no points yet.
    """
    outcomes = {i["id"]: i["outcome"] for i in report["items"]}
    assert list(outcomes) == items
    for item in report["items"]:
        if item["outcome"] == "pending":
            assert item["check"] == "manual" and item["score"] == 0, item
    failing = {k for k, v in outcomes.items() if v not in ("passed", "pending")}
    assert failing == set(expected), {i["id"]: i["message"] for i in report["items"]
                                      if i["id"] in failing ^ set(expected)}
    for item in report["items"]:
        if item["id"] in expected:
            assert item["outcome"] == "failed", item
            assert expected[item["id"]] in item["message"], item["message"]
            assert item["score"] < item["max_score"]
        elif item["outcome"] != "pending":
            assert item["score"] == item["max_score"], item
    assert not any(i["needs_review"] for i in report["items"])


def processes_with(marker: str) -> list[int]:
    """The pids of the processes whose command line contains ``marker``."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker in (proc / "cmdline").read_bytes().decode(
                    errors="replace"):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


@contextlib.contextmanager
def grading_process(script: Path) -> Iterator[subprocess.Popen[str]]:
    """``script`` run as a grading process by this Python (stdout a pipe), killed and reaped
    when the test ends however it ends."""
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def sigkill_and_wait(proc: subprocess.Popen[str], still_there: Callable[[], bool],
                     seconds: float = 10.0) -> None:
    """SIGKILL ``proc``, reap it, and wait up to ``seconds`` for ``still_there()`` to end."""
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    deadline = time.time() + seconds
    while still_there() and time.time() < deadline:
        time.sleep(0.2)
