"""``grader build LAB --checkpoints``: one trainer for every lab's checkpoints.

It runs, in the sandbox, the solution notebook as a student would hand it in (plus the
lecturer's code cells: a cell tagged ``lecturer`` after the hyper-parameters may train the
reference longer than students need, ``EPOCHS = 600``, without the template showing it) and every
example or notebook variant declared ``checkpoints: trained`` (grader/authoring/examples.py),
each with ``TRAIN = True``, the rubric's ``SEED`` and parameters injected after its
``parameters`` cell, as the grader runs a submission. The checkpoints the rubric names are
read back out of the kernel through the protocol (bounded in size), loaded with
``torch.load(weights_only=True)`` (a ``state_dict``, or refused: nothing is ever unpickled)
and stored where the lab expects them: the solution's in ``reference/checkpoints/``, an
example's in its folder. Examples declared ``checkpoints: solution`` are not trained: they
are graded with the solution's.
"""

from __future__ import annotations

import dataclasses
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import nbformat

from ..errors import CourseError
from ..rubric import Rubric, load_rubric
from .examples import load_notebook_patches
from .markers import solution_submission
from .scaffold import read_notebook, solution_path

__all__ = ["Training", "train_checkpoints", "SOLUTION"]

SOLUTION = "solution"        # the name of the solution's run (``--only solution``)


@dataclass
class Training:
    """One notebook trained: where its checkpoints went and how long it took."""

    name: str
    files: list[Path]
    seconds: float


def _runs(course: Path, lab: str) -> list[tuple[str, nbformat.NotebookNode, Path]]:
    """(name, notebook, where its checkpoints go) of the solution and each trained patch."""
    solution = read_notebook(solution_path(course, lab))
    student = solution_submission(solution)
    runs = [(SOLUTION, solution_submission(solution, lecturer=True),
             course / "reference" / "checkpoints")]
    runs += [(p.name, p.apply(student), p.folder)
             for p in load_notebook_patches(course / "assignments" / lab)
             if p.checkpoints == "trained"]
    return runs


def _state_dict(data: bytes, what: str) -> None:
    """Refuse ``data`` unless it loads with ``weights_only=True`` as a ``state_dict``."""
    import torch

    try:
        state = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - any refusal of the safe loader: say why
        raise CourseError(f"{what}: not a checkpoint torch.load(weights_only=True) accepts "
                          f"({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CourseError(f"{what}: not a state_dict (a mapping of names to tensors); save "
                          "it with torch.save(model.state_dict(), PATH)")


def _failed(record: object, name: str, ran: nbformat.NotebookNode) -> str | None:
    """What went wrong in a training run, or None. ``ran`` is the notebook as executed (the
    injected parameters cell included), so a cell is named by its id and first line, never by
    a position the lecturer's notebook does not have."""
    for cell in getattr(record, "cells", []):
        if cell.error:
            failing = ran.cells[cell.index]
            source = failing.source.splitlines()[:1]
            label = f"cell {failing['id']!r}" if failing.get("id") else "a cell"
            return (f"{name}: {label} ({source[0][:60] if source else ''}) "
                    f"raised {cell.error['ename']}: {cell.error['evalue'][:300]}")
    if getattr(record, "timed_out", False):
        return f"{name}: the training ran past its time limit; raise --timeout"
    return None


def train_notebook(nb: nbformat.NotebookNode, rubric: Rubric, name: str, *, sandbox: bool,
                   timeout_s: float) -> dict[str, bytes]:
    """Run ``nb`` with ``TRAIN = True``; the bytes of each checkpoint the rubric names."""
    from ..execute import ExecutionRecord, inject_parameters, run_notebook
    from ..protocol import KernelProxy
    from ..sandbox import KernelSession

    params = {"TRAIN": True, "SEED": rubric.seed, **rubric.parameters}
    limits = dataclasses.replace(rubric.limits, cell_timeout_s=timeout_s,
                                 total_timeout_s=timeout_s)

    def start() -> KernelSession:
        session = KernelSession({}, limits, sandbox=sandbox)
        session.start()
        return session

    record = ExecutionRecord(parameters=params)
    ran = inject_parameters(nb, params)
    session = run_notebook(ran, start, record)
    try:
        problem = _failed(record, name, ran)
        if problem:
            raise CourseError(f"{problem}; no checkpoint was stored")
        proxy, out = KernelProxy(session), {}
        limit = min(limits.file_size_mb, limits.reply_mb) << 20
        for checkpoint in rubric.checkpoints:
            handle = proxy.instrument("files", "file_bytes", checkpoint, limit)
            data = proxy.get(handle)
            out[checkpoint] = bytes(data.numpy().tobytes())
            _state_dict(out[checkpoint], f"{name}: {checkpoint}")
        return out
    except CourseError:
        raise
    except Exception as exc:  # noqa: BLE001 - a file it did not write, a reply refused
        raise CourseError(f"{name}: could not read its checkpoints back ({type(exc).__name__}: "
                          f"{str(exc)[:300]}); does its training cell save "
                          f"{', '.join(rubric.checkpoints)} in the current folder?") from None
    finally:
        session.close()


def train_checkpoints(course: Path, lab: str, *, only: set[str] | None = None,
                      sandbox: bool = True, timeout_s: float = 3600,
                      progress: Callable[[str], None] | None = None) -> list[Training]:
    """Train the solution and every ``checkpoints: trained`` example of ``lab`` (or ``only``
    those, by name: ``solution`` is the solution's run) and store their checkpoints."""
    from ..pipeline import require_sandbox

    note = progress or (lambda _m: None)
    rubric = load_rubric(course / "rubrics" / f"{lab}.yaml")
    if not rubric.checkpoints:
        raise CourseError(f"{rubric.path}: the lab names no checkpoints; nothing to train")
    runs = _runs(course, lab)
    unknown = sorted((only or set()) - {name for name, _, _ in runs})
    if unknown:
        raise CourseError(f"{lab}: nothing to train called {', '.join(unknown)} (trained: "
                          f"{', '.join(name for name, _, _ in runs)}; examples declared "
                          "`checkpoints: solution` use the solution's)")
    if sandbox:
        require_sandbox()
    done = []
    for name, nb, folder in runs:
        if only and name not in only:
            continue
        note(f"training {name}")
        started = time.perf_counter()
        files = train_notebook(nb, rubric, name, sandbox=sandbox, timeout_s=timeout_s)
        folder.mkdir(parents=True, exist_ok=True)
        for checkpoint, data in files.items():
            (folder / checkpoint).write_bytes(data)
        done.append(Training(name, [folder / c for c in files], time.perf_counter() - started))
    return done
