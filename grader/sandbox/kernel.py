"""Start, interrupt and kill one student kernel, sandboxed or (explicitly) not.

The kernel manager is jupyter_client's own, told three things: talk over ``ipc``
(Unix sockets in a private directory, so the sandbox can drop the network, loopback
included), interrupt by message (a SIGINT would kill bwrap with the kernel), and
wrap the launch command in :func:`grader.sandbox.bwrap.build_command`.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from jupyter_client import AsyncKernelManager, BlockingKernelClient
from jupyter_client.kernelspec import KernelSpec
from jupyter_core.utils import run_sync

from .bwrap import Limits, SandboxSpec, build_command

__all__ = ["KernelSession", "SandboxedKernelManager"]


class SandboxedKernelManager(AsyncKernelManager):
    """An AsyncKernelManager whose kernel starts inside bubblewrap (or plainly, if unsafe)."""

    def __init__(self, *, ipc_dir: Path, spec: SandboxSpec | None, fds: tuple[int, ...] = (),
                 **kwargs: object) -> None:
        super().__init__(transport="ipc", ip=str(ipc_dir / "kernel"),
                         connection_file=str(ipc_dir / "connection.json"), **kwargs)
        self._sandbox, self._fds = spec, fds
        self._kernel_spec = KernelSpec(
            argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            display_name="grader sandbox", language="python", interrupt_mode="message",
        )

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        argv = super().format_kernel_cmd(extra_arguments)
        if self._sandbox is None:
            return argv
        return build_command(argv, self._sandbox, fds=self._fds)

    def write_connection_file(self, **kwargs: object) -> None:  # type: ignore[override]
        super().write_connection_file(**kwargs)
        # The kernel may run as another uid; the file stays inside a 0700 directory.
        os.chmod(self.connection_file, 0o644)


class KernelSession:
    """One live kernel: its manager, a blocking client for the grader, and cleanup.

    Args:
        files: name in the work dir -> host path, copied in (never bind-mounted).
        limits: rlimits and timeouts.
        sandbox: confine the kernel with bubblewrap; False only for --unsafe-no-sandbox.
        gpu: expose the NVIDIA devices to the kernel.
    """

    def __init__(self, files: dict[str, Path], limits: Limits, *, sandbox: bool = True,
                 gpu: bool = False) -> None:
        self.limits, self.sandboxed = limits, sandbox
        self._root = Path(tempfile.mkdtemp(prefix="grader-kernel-"))
        ipc_dir = self._root / "ipc"
        ipc_dir.mkdir()
        os.chmod(ipc_dir, 0o777)  # the kernel's own uid creates its sockets here
        self._handles = [open(path, "rb") for path in files.values()]  # noqa: SIM115
        fds = tuple(h.fileno() for h in self._handles)
        spec = SandboxSpec(ipc_dir=ipc_dir, files=dict(files), limits=limits, gpu=gpu)
        self.workdir: Path | None = None
        if not sandbox:
            self.workdir = self._root / "work"
            self.workdir.mkdir()
            for name, path in files.items():
                shutil.copy2(path, self.workdir / name)
        self.km = SandboxedKernelManager(ipc_dir=ipc_dir, spec=spec if sandbox else None, fds=fds)
        self.client: BlockingKernelClient | None = None
        self.start_s = 0.0

    def start(self) -> None:
        """Launch the kernel and wait until it answers (``startup_timeout_s``)."""
        self.launch()
        client = BlockingKernelClient()
        client.load_connection_info(self.km.get_connection_info())
        client.start_channels()
        try:
            self.confirm(client)
        except RuntimeError:
            client.stop_channels()
            raise
        self.start_s = time.perf_counter() - self._launched

    def _wait_ready(self, client: BlockingKernelClient) -> None:
        """Until the kernel answers ``kernel_info`` on both channels (``startup_timeout_s``).

        jupyter_client's ``wait_for_ready`` declares a kernel dead when its heartbeat is a
        second late, which a loaded machine causes while a kernel imports; here only the
        process having exited, or the time limit, ends the wait. The shell reply alone is
        not enough: iopub is a subscription, and what the kernel publishes before it is
        connected is lost (a first call would wait for an ``idle`` that never comes), so
        the kernel's status for one of these requests must arrive on iopub too.
        """
        import queue

        deadline = time.monotonic() + self.limits.startup_timeout_s

        def wait(most: float) -> float:
            return max(0.1, min(most, deadline - time.monotonic()))

        asked: set[str] = set()
        answered = connected = False
        while not connected:
            asked.add(client.kernel_info())
            try:
                while not answered:
                    reply = client.get_shell_msg(timeout=wait(2.0))
                    answered = reply.get("parent_header", {}).get("msg_id") in asked
                while not connected:
                    msg = client.get_iopub_msg(timeout=wait(1.0))
                    connected = msg.get("parent_header", {}).get("msg_id") in asked
            except queue.Empty:
                if not self.is_alive():
                    raise RuntimeError("the kernel exited while starting: "
                                       f"{self.log_tail(800)}") from None
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"the kernel did not answer within "
                                       f"{self.limits.startup_timeout_s:g} s of starting"
                                       ) from None

    def confirm(self, client: BlockingKernelClient) -> None:
        """Make ``client`` this session's, once it has the kernel on both channels (a warm
        pool's kernel, launched with a client of its own). Raises RuntimeError if not."""
        self._wait_ready(client)
        client.allow_stdin = False
        self.client = client

    def launch(self) -> None:
        """Start the kernel process without waiting for it (``start`` also waits)."""
        self._launched = time.perf_counter()
        log = open(self._root / "kernel.log", "wb")  # noqa: SIM115 - the kernel writes here
        kwargs: dict[str, object] = {"pass_fds": tuple(h.fileno() for h in self._handles),
                                     "stdout": log, "stderr": log}
        if self.workdir is not None:
            kwargs["cwd"] = str(self.workdir)
        try:
            run_sync(self.km.start_kernel)(**kwargs)
        finally:
            log.close()
            for handle in self._handles:
                handle.close()

    def preload(self, files: dict[str, Path], code: str = "import torch") -> None:
        """Run ``code`` (a warm-up) and copy ``files`` into the work dir of a started kernel.

        For a warm pool: a kernel started before its submission was known, with no files,
        gets them here, written by the kernel into its own private work dir. No student
        code has run in it yet. Raises RuntimeError if the kernel does not confirm.
        """
        import base64

        if self.client is None:
            raise RuntimeError("the kernel is not started")
        chunks = [code] if code else []
        for name, path in files.items():
            data = path.read_bytes()
            chunks.append(f"open({name!r}, 'wb').close()")
            for at in range(0, max(len(data), 1), 4 << 20):
                piece = base64.b64encode(data[at:at + (4 << 20)]).decode("ascii")
                chunks.append(f"import base64 as _b\nwith open({name!r}, 'ab') as _f:\n"
                              f"    _f.write(_b.b64decode({piece!r}))")
        chunks.append("for _n in ('_b', '_f'):\n    globals().pop(_n, None)")
        for chunk in chunks:
            reply = self.client.execute_interactive(
                chunk, silent=True, store_history=False, timeout=self.limits.startup_timeout_s,
                output_hook=lambda _msg: None)
            if reply["content"].get("status") != "ok":
                raise RuntimeError(f"the warm kernel refused its files: "
                                   f"{reply['content'].get('evalue', '')}")

    def peak_rss_mb(self) -> float | None:
        """The largest peak resident memory (VmHWM) among the kernel's processes, in MiB."""
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        if process is None or process.poll() is not None:
            return None
        family, peak = {process.pid}, 0
        stats = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    text = (entry / "stat").read_text()
                    stats.append((int(entry.name), int(text.rsplit(")", 1)[1].split()[1])))
                except (OSError, ValueError, IndexError):
                    continue
        grew = True
        while grew:
            grew = False
            for pid, ppid in stats:
                if ppid in family and pid not in family:
                    family.add(pid)
                    grew = True
        for pid in family:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
            except (OSError, ValueError):
                continue
        return round(peak / 1024, 1) if peak else None

    def log_tail(self, size: int = 4000) -> str:
        """The end of what the kernel process wrote to stdout/stderr (capped by RLIMIT_FSIZE)."""
        try:
            with open(self._root / "kernel.log", "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - size))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def is_alive(self) -> bool:
        return bool(run_sync(self.km.is_alive)())

    def interrupt(self) -> None:
        """Ask the kernel to stop the running cell (message-based; never a signal)."""
        try:
            run_sync(self.km.interrupt_kernel)()
        except Exception:  # noqa: BLE001 - a dead kernel cannot be interrupted
            pass

    def kill(self) -> None:
        """Stop the kernel now, and with it everything in its pid namespace."""
        if self.client is not None:
            self.client.stop_channels()
            self.client = None
        try:
            if run_sync(self.km.is_alive)():
                run_sync(self.km.shutdown_kernel)(now=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        try:
            run_sync(self.km.cleanup_resources)()
        except Exception:  # noqa: BLE001
            pass

    def close(self) -> None:
        for handle in self._handles:
            handle.close()
        self.kill()
        shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> KernelSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
