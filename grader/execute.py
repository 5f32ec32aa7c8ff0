"""Run a student notebook in a kernel: parameters injected, cells timed, output capped.

nbclient executes each cell. A cell that raises does not stop the run (later cells
may still define what the rubric needs). A cell that times out or kills the kernel
is recorded, the kernel is restarted, the cells that succeeded are replayed, and
the run goes on after the offending cell, all within the whole-run deadline. So does
a cell during which the kernel sent an oversize message (the grader stopped it: see
:attr:`grader.sandbox.KernelSession.violation`), recorded as ``OversizeMessage``.
"""

from __future__ import annotations

import copy
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbclient.util import run_sync

from .errors import CourseError
from .sandbox import KernelSession

__all__ = ["CellRecord", "ExecutionRecord", "load_notebook", "inject_parameters", "run_notebook"]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_SETTLE_S = 0.5     # how long a retried cell's kernel is watched before the cell is sent


@dataclass
class CellRecord:
    """How one code cell went."""

    index: int
    status: str = "not_run"            # ok | error | timeout | not_run
    duration_s: float | None = None
    error: dict[str, str] | None = None


@dataclass
class ExecutionRecord:
    """How the whole notebook went; becomes ``execution`` in the report."""

    cells: list[CellRecord] = field(default_factory=list)
    timed_out: bool = False
    kernel_died: bool = False
    output_truncated: bool = False
    restarts: int = 0
    replay_failed: bool = False        # a restarted kernel lost the good cells' definitions
    parameters: dict[str, Any] = field(default_factory=dict)
    notebook_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("notebook_s")
        return data


class _CappedClient(NotebookClient):
    """NotebookClient that keeps at most ``output_budget`` bytes of cell output, and notes
    which cells the kernel was seen to begin (``execute_input``; a cell that exits at once
    may die before its kernel publishes that, so not seeing it proves nothing alone)."""

    output_budget = 1 << 20
    truncated = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.began: set[int] = set()

    async def async_start_new_kernel_client(self):  # type: ignore[no-untyped-def]
        """nbclient's, without jupyter_client's ``wait_for_ready``: that ends by reading iopub
        until 0.2 s pass with no message, a fifth of a second of every grading spent idle.
        Here the client is ready once the kernel's answer to one of its ``kernel_info``
        requests has come on shell and the kernel's status for it on iopub (a subscription:
        what the kernel publishes before it is connected is lost, so one is asked again
        until one arrives). Messages of other parents are left to ``execute_cell``, which
        skips them."""
        from nbclient.util import ensure_async, run_hook

        assert self.km is not None
        self.kc = self.km.client()
        try:
            await ensure_async(self.kc.start_channels())
            await _connected(self.kc, self.km, float(self.startup_timeout))
        except Exception:
            await self._async_cleanup_kernel()
            raise
        self.kc.allow_stdin = False
        await run_hook(self.on_notebook_start, notebook=self.nb)
        return self.kc

    start_new_kernel_client = run_sync(async_start_new_kernel_client)

    def process_message(self, msg, cell, cell_index):  # type: ignore[no-untyped-def]
        if msg.get("msg_type") == "execute_input":
            self.began.add(cell_index)
        return super().process_message(msg, cell, cell_index)

    def output(self, outs, msg, display_id, cell_index):  # type: ignore[no-untyped-def]
        size = len(str(msg.get("content", "")))
        if size > self.output_budget:
            self.truncated = True
            return None
        self.output_budget -= size
        return super().output(outs, msg, display_id, cell_index)


async def _connected(kc: Any, km: Any, timeout: float) -> None:
    """Until the kernel answers ``kernel_info`` on shell and on iopub (RuntimeError after
    ``timeout`` seconds, or once the kernel has exited)."""
    import queue

    from nbclient.util import ensure_async

    deadline = time.monotonic() + timeout
    asked: set[str] = set()
    shell_ok = False
    while True:
        asked.add(kc.kernel_info())
        try:
            while not shell_ok:
                reply = await ensure_async(kc.shell_channel.get_msg(timeout=1.0))
                if reply.get("parent_header", {}).get("msg_id") in asked:
                    shell_ok = True
                    kc._handle_kernel_info_reply(reply)
            while True:
                msg = await ensure_async(kc.iopub_channel.get_msg(timeout=0.1))
                if msg.get("parent_header", {}).get("msg_id") in asked:
                    return
        except queue.Empty:
            if not await ensure_async(km.is_alive()):
                raise RuntimeError("the kernel died before answering kernel_info") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"the kernel did not answer within {timeout:g} s") from None


class _DiedBetweenCells(RuntimeError):
    """The kernel died after the replay's last cell finished, with no cell running."""


def load_notebook(path: Path) -> nbformat.NotebookNode:
    """Read and validate a notebook; a clear ``CourseError`` names the file otherwise."""
    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except Exception as exc:  # noqa: BLE001 - nbformat raises many kinds
        raise CourseError(f"{path}: not a valid Jupyter notebook ({type(exc).__name__}: "
                          f"{str(exc)[:300]}). Open it in Jupyter, save it, and submit again."
                          ) from None
    return nb


def inject_parameters(nb: nbformat.NotebookNode, params: dict[str, Any]) -> nbformat.NotebookNode:
    """Insert an ``injected-parameters`` cell after the ``parameters`` cell (papermill's way)."""
    nb = copy.deepcopy(nb)
    source = "# Parameters set by the grader\n" + "".join(
        f"{key} = {value!r}\n" for key, value in params.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    index = next((i for i, c in enumerate(nb.cells)
                  if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    nb.cells.insert(0 if index is None else index + 1, cell)
    return nb


def _error_of(cell: nbformat.NotebookNode) -> dict[str, str] | None:
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            tb = _ANSI.sub("", "\n".join(out.get("traceback", [])))
            return {"ename": out.get("ename", ""), "evalue": str(out.get("evalue", ""))[:2000],
                    "traceback": tb[-6000:]}
    return None


def _failure(exc: Exception, timeout: int, violation: str | None, after: bool = False
             ) -> dict[str, str]:
    """The error recorded for a cell that was stopped, timed out or killed its kernel
    (``after``: once it had finished, before the next cell began)."""
    if after:
        return {"ename": "KernelDied", "evalue": "the kernel died after this cell finished, "
                "before the next one began (a thread or process it started, or a kill); it "
                "was not replayed", "traceback": ""}
    if violation is not None:
        return {"ename": "OversizeMessage", "evalue": violation, "traceback": ""}
    if isinstance(exc, CellTimeoutError):
        return {"ename": "CellTimeout", "evalue": f"the cell ran longer than {timeout} s",
                "traceback": ""}
    return {"ename": "KernelDied", "evalue": "the kernel died while running this cell "
            "(out of memory, os._exit or a crash)", "traceback": ""}


def _client(nb: nbformat.NotebookNode, session: KernelSession) -> _CappedClient:
    client = _CappedClient(nb, km=session.km, timeout=int(session.limits.cell_timeout_s),
                           allow_errors=True, record_timing=False, interrupt_on_timeout=False,
                           startup_timeout=int(session.limits.startup_timeout_s))
    client.output_budget = session.limits.output_kb * 1024
    return client


def run_notebook(nb: nbformat.NotebookNode, start_session: Any,
                 record: ExecutionRecord) -> KernelSession:
    """Execute every code cell of ``nb`` in a kernel from ``start_session()``.

    Returns the live session in which the notebook's names are defined; fills
    ``record`` as it goes. ``start_session`` makes a new started KernelSession
    (called again after a timeout or a crash).
    """
    started = time.monotonic()
    session: KernelSession = start_session()
    limits = session.limits
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    record.cells = [CellRecord(index=i) for i in code]
    done: list[int] = []
    position = 0
    fresh = False                  # a restarted kernel that has not replayed the good cells
    retried: set[int] = set()      # cells re-run because the kernel died before they began
    watch = False                  # after this replay, see whether the kernel dies unprompted
    while position < len(code) or fresh:
        client = _client(nb, session)
        try:
            with client.setup_kernel(cleanup_kc=False):
                if fresh:                               # replay after a restart, even when
                    client.timeout = int(limits.cell_timeout_s)   # the failing cell was last
                    for index in done:
                        client.execute_cell(nb.cells[index], index)
                    fresh = False
                    if watch:
                        watch = False
                        time.sleep(_SETTLE_S)
                        if not session.is_alive():
                            raise _DiedBetweenCells()
                while position < len(code):
                    index, rec = code[position], record.cells[position]
                    remaining = limits.total_timeout_s - (time.monotonic() - started)
                    if remaining <= 0:
                        record.timed_out = True
                        break
                    client.timeout = int(max(1, min(limits.cell_timeout_s, remaining)))
                    t0 = time.monotonic()
                    try:
                        client.execute_cell(nb.cells[index], index)
                    finally:
                        rec.duration_s = round(time.monotonic() - t0, 3)
                    if session.violation is not None:   # stopped as the cell ended
                        raise DeadKernelError(session.violation)
                    rec.error = _error_of(nb.cells[index])
                    rec.status = "error" if rec.error else "ok"
                    if rec.status == "ok":
                        done.append(index)
                    position += 1
        except _DiedBetweenCells as exc:
            # the last replayed cell left something that kills its kernel once it has
            # finished (a thread, a kill of its sandbox): it is blamed and not replayed
            last = record.cells[code.index(done.pop())]
            last.status, last.error = "error", _failure(exc, 0, None, after=True)
            session.close()
            record.kernel_died, record.restarts = True, record.restarts + 1
            session, fresh = start_session(), True
        except (CellTimeoutError, DeadKernelError, RuntimeError) as exc:
            if fresh:              # the replay itself failed: blame no cell, stop replaying
                session.close()
                session, fresh = start_session(), False
                done.clear()
                record.replay_failed = True
                continue
            index = code[position]
            if index not in client.began and index not in retried and session.violation is None:
                # the kernel died with no sign that this cell began: run it again, once,
                # after a replay and a pause in which a kernel that dies unprompted shows
                # that the cell before left something running that kills it
                retried.add(index)
                session.close()
                record.kernel_died, record.restarts = True, record.restarts + 1
                session, fresh, watch = start_session(), True, bool(done)
                continue
            rec = record.cells[position]
            rec.error = _failure(exc, client.timeout, session.violation)
            timeout = rec.error["ename"] == "CellTimeout"
            rec.status = "timeout" if timeout else "error"
            record.kernel_died |= not timeout
            position += 1
            session.close()
            if time.monotonic() - started >= limits.total_timeout_s:
                record.timed_out = True
            else:
                record.restarts += 1
            session = start_session()
            fresh = True
        finally:
            record.output_truncated |= client.truncated
            if client.kc is not None:
                client.kc.stop_channels()
        if record.timed_out and not fresh:
            break
    record.notebook_s = round(time.monotonic() - started, 3)
    return session
