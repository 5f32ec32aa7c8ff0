"""Where grading workers and their students' kernels come from, started as early as possible.

``grader batch``, ``grader validate`` and ``grader demo`` grade in worker processes forked from
a fork server that imported torch and the grader once, and fork every student's kernel from
one template that imported torch in the sandbox (grader/sandbox/zygote.py). Both take a couple
of seconds to start. :func:`warm_up` starts them on a thread before the command imports torch
itself, so the three imports overlap; :func:`prepare_workers` (called when the work is known)
then finds them started, or starts them. This module imports neither torch nor the grader's
checks: the command line imports it first.
"""

from __future__ import annotations

import multiprocessing
import socket
import threading
from multiprocessing.context import BaseContext

__all__ = ["warm_up", "prepare_workers", "adopt_template"]

PRELOAD = ["torch", "torch._dynamo", "torch.fx.experimental.symbolic_shapes", "grader.pipeline",
           "grader.batch.runner"]


def _worker_context() -> BaseContext:
    """Workers forked from a fork server that has imported the grader and torch once (about
    1.5 s of CPU each that a spawned worker pays again; the server serves every batch of
    this process: the demo's seven labs import once). The server is a fresh single-threaded
    process, so forking it is safe where forking this one (its progress thread, its
    gradebook connection) would not be; where there is no fork server, spawn."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def warm_up(sandbox: bool, device: str = "cpu") -> threading.Thread:
    """Start the fork server and the kernels' template on a daemon thread, now. Where the
    command then has nothing to grade, nothing waits for them (they die with the grader)."""
    thread = threading.Thread(target=prepare_workers, args=(sandbox, device), daemon=True,
                              name="grader-warm-up")
    thread.start()
    return thread


def adopt_template(template: socket.socket | None) -> None:
    """In a worker (a pool's initializer): fork kernels from the main process's template
    (:func:`prepare_workers`), or, without one, start this worker's own now, while it has
    nothing to grade."""
    from .sandbox.zygote import adopt_zygote, shared_zygote

    if template is not None:
        adopt_zygote(template)
    else:
        shared_zygote()


def prepare_workers(sandbox: bool, device: str = "cpu"
                    ) -> tuple[BaseContext, socket.socket | None]:
    """The context grading workers come from and the template their kernels fork from
    (for :func:`adopt_template`): what ``grader batch`` and ``grader validate`` share.
    Idempotent and thread-safe: a second call finds both started (or waits for them)."""
    context = _worker_context()
    return context, _start_for_workers(context, sandbox, device)


def _start_for_workers(context: BaseContext, sandbox: bool, device: str
                       ) -> socket.socket | None:
    """Start, at once, what every worker needs: the fork server the workers come from (it
    imports torch and the grader) and, on a thread beside it, the kernels' template (it
    imports torch in the sandbox), which the workers then share (one template, not one a
    worker). Returns the template's socket for the workers; None where kernels cannot be
    forked (no sandbox, a GPU, no template here: each worker then starts cold)."""
    server = None
    if context.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        server = threading.Thread(target=forkserver.ensure_running, daemon=True)
        server.start()
    control = None
    if sandbox and not device.startswith("cuda"):
        from .sandbox.zygote import shared_zygote

        zygote = shared_zygote()
        control = zygote.control if zygote is not None else None
    if server is not None:
        server.join()
    return control
