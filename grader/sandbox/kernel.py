"""Start, interrupt and kill one student kernel, sandboxed or (explicitly) not.

The kernel manager is jupyter_client's own, told four things: talk over ``ipc``
(Unix sockets in a private directory, so the sandbox can drop the network, loopback
included), interrupt by message (a SIGINT would kill bwrap with the kernel), wrap the
launch command in :func:`grader.sandbox.bwrap.build_command`, and reach the kernel's
sockets only through a :class:`~grader.sandbox.relay.Relay` that bounds every message
the kernel sends.

What the kernel sends is bounded twice. Each message: the relay cuts a connection
before a message outgrows its channel's cap (``Limits.message_bytes`` on iopub, less
on the others) and the kernel is stopped, with the reason in :attr:`KernelSession.
violation`. The number of messages waiting: every grader socket on a kernel receives
with a high-water mark of one message (``bound_context``), so libzmq stops reading, and
the kernel's side queues or drops, instead of the grader holding a backlog. Together
the grader holds at most two messages per socket, whatever the kernel does.

Without the sandbox (``--unsafe-no-sandbox``, or a student's self-check in a kit where
bubblewrap cannot run: macOS, Windows, a container without user namespaces) the kernel is a
plain local process in a private work dir, under the same timeouts; where Python has no Unix
sockets (Windows) it talks over loopback TCP, without the relay: the code is the student's
own, on their own machine.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

import zmq
import zmq.asyncio
from jupyter_client import AsyncKernelManager, BlockingKernelClient, KernelClient
from jupyter_client.kernelspec import KernelSpec
from jupyter_core.utils import run_sync

from .bwrap import Limits, SandboxSpec, build_command
from .relay import Relay, Violation, relay_dir
from .zygote import Zygote, request_for, shared_zygote

__all__ = ["KernelSession", "SandboxedKernelManager", "bound_context", "channel_caps",
           "is_bounded"]

_RECEIVE_HWM = 1                 # complete messages one grader socket may hold unread
_UNIX_SOCKETS = hasattr(socket, "AF_UNIX")     # False on Windows: loopback TCP, no relay
_PROC = Path("/proc")            # absent on macOS and Windows: no peak memory then
_SMALL_CAPS = {"shell": 16 << 20, "stdin": 1 << 20, "control": 1 << 20, "hb": 4 << 10}


def channel_caps(limits: Limits) -> dict[str, int]:
    """The largest message (bytes) the kernel may send on each channel.

    Only iopub carries big messages in earnest (a protocol reply of up to ``reply_mb``,
    notebook outputs); replies on shell and control, prompts on stdin and heartbeats are
    small, so their caps are fixed and low: a socket the grader reads late (a client's
    shell, whose execute replies the protocol never reads) then costs little.
    """
    big = limits.message_bytes
    return {"iopub": big, **{name: min(big, cap) for name, cap in _SMALL_CAPS.items()}}


def bound_context(context: zmq.Context, limits: Limits) -> None:
    """Bound every socket ``context`` creates from now on: one unread message, frames capped.

    ``MAXMSGSIZE`` caps one frame only (the relay caps whole messages); a frame past it
    makes libzmq drop the connection, which the relay has already cut in that case.
    """
    context.setsockopt(zmq.RCVHWM, _RECEIVE_HWM)
    context.setsockopt(zmq.MAXMSGSIZE, limits.message_bytes)


def _amount(size: int) -> str:
    """``size`` bytes for a sentence: whole MiB, or KiB below one MiB."""
    return f"{size / (1 << 20):.0f} MiB" if size >= 1 << 20 else f"{size / 1024:.0f} KiB"


def is_bounded(client: KernelClient) -> bool:
    """Whether ``client``'s sockets were made bounded (by a context from :func:`bound_context`).

    A socket cannot be bounded once it has carried messages: libzmq 4.3 then stops
    delivering on a SUB socket whose RCVHWM changes, so a client made otherwise is
    replaced, never patched.
    """
    return client.context.sockopts.get(zmq.RCVHWM) == _RECEIVE_HWM


class SandboxedKernelManager(AsyncKernelManager):
    """An AsyncKernelManager whose kernel starts inside bubblewrap (or plainly, if unsafe).

    The kernel binds its sockets at ``ipc_dir/kernel-N`` (the connection file says so);
    the manager's own ``ip`` is the relay's prefix in a directory next to ``ipc_dir``
    that only the grader can enter, so the manager's control socket, the clients it
    makes (nbclient's) and every client loaded from :meth:`get_connection_info` (the
    session's, a warm pool's) reach the kernel through the relay.
    """

    def __init__(self, *, ipc_dir: Path, spec: SandboxSpec | None, limits: Limits,
                 fds: tuple[int, ...] = (), zygote: Zygote | None = None,
                 **kwargs: object) -> None:
        relayed = spec is not None or _UNIX_SOCKETS
        where = ({"transport": "ipc", "ip": str(relay_dir(ipc_dir.parent) / "k")} if relayed
                 else {"transport": "tcp", "ip": "127.0.0.1"})
        super().__init__(**where, connection_file=str(ipc_dir / "connection.json"), **kwargs)
        self._kernel_ip, self._limits = str(ipc_dir / "kernel"), limits
        self._sandbox, self._fds = spec, fds
        self._zygote = zygote if spec is not None and not spec.gpu else None
        self.forked = False
        self._kernel_spec = KernelSpec(
            argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            display_name="grader sandbox", language="python", interrupt_mode="message",
        )
        self.relay = Relay(channel_caps(limits), self._stop_for,
                           connect_timeout_s=limits.startup_timeout_s) if relayed else None
        bound_context(self.context, limits)

    def _stop_for(self, _channel: str, _violation: Violation) -> None:
        """The kernel broke the relay's rules: kill it now (from a relay thread)."""
        process = getattr(self.provisioner, "process", None)
        if process is None:
            return
        try:
            process.kill()
            process.wait(10)
        except Exception:  # noqa: BLE001 - already gone, or reaped by another thread
            pass

    async def _async_is_alive(self) -> bool:
        """Dead as soon as the relay has stopped it, even before the process is reaped."""
        if self.relay is not None and self.relay.violation is not None:
            return False
        return await super()._async_is_alive()

    is_alive = _async_is_alive  # type: ignore[assignment]

    def client(self, **kwargs: object) -> KernelClient:  # type: ignore[override]
        """A client (nbclient's) whose sockets are bounded from the start.

        It gets a context of its own, as jupyter_client would give it, that it destroys
        when it goes; only the default socket options differ.
        """
        context = zmq.asyncio.Context()
        bound_context(context, self._limits)
        client = super().client(context=context, **kwargs)
        client._created_context = True
        return client

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        argv = super().format_kernel_cmd(extra_arguments)
        if self._sandbox is None:
            return argv
        return build_command(argv, self._sandbox, fds=self._fds)

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: object) -> None:
        """Fork the kernel from the template when there is one; else run ``kernel_cmd``
        (bwrap), also when the template cannot be asked any more (it died)."""
        if self._zygote is not None and self._sandbox is not None:
            ipc_dir = Path(self._kernel_ip).parent
            request = request_for(self._sandbox.limits, connection_file=self.connection_file,
                                  ipc_dir=ipc_dir, names=list(self._sandbox.files))
            try:
                process = self._zygote.spawn(request, kw["stdout"].fileno(),  # type: ignore[attr-defined]
                                             ipc_dir, self._fds)
            except OSError:
                pass
            else:
                assert self.provisioner is not None
                self.provisioner.process, self.provisioner.pgid = process, None  # type: ignore[attr-defined]
                self.forked = True
                return
        self.forked = False
        await super()._async_launch_kernel(kernel_cmd, **kw)

    _launch_kernel = run_sync(_async_launch_kernel)

    def write_connection_file(self, **kwargs: object) -> None:  # type: ignore[override]
        """Write the kernel's own addresses, and open the relay's in front of them."""
        if self.relay is None:             # loopback TCP: the kernel's addresses are ours
            super().write_connection_file(**kwargs)
            return
        relay_ip, self.ip = self.ip, self._kernel_ip
        try:
            super().write_connection_file(**kwargs)
        finally:
            self.ip = relay_ip
        # The kernel may run as another uid; the file stays inside a 0700 directory.
        os.chmod(self.connection_file, 0o644)
        self.relay.listen(relay_ip, self._kernel_ip,
                          {name: getattr(self, f"{name}_port") for name in self.relay.caps})

    def _reconcile_connection_info(self, info: dict[str, object]) -> None:  # type: ignore[override]
        """Nothing to reconcile: the file names the kernel's sockets and the manager the
        relay's, on purpose (jupyter_client would rewrite the file the kernel is reading)."""


class KernelSession:
    """One live kernel: its manager, a blocking client for the grader, and cleanup.

    Args:
        files: name in the work dir -> host path, copied in (never bind-mounted).
        limits: rlimits and timeouts.
        sandbox: confine the kernel with bubblewrap; False only for --unsafe-no-sandbox.
        gpu: expose the NVIDIA devices to the kernel.
        fork: fork the kernel from this process's template (grader.sandbox.zygote) where
            one can run, as confined as a cold one and without the interpreter's and
            torch's start; False starts it cold (a new bwrap'd interpreter). GPU kernels
            always start cold.
    """

    def __init__(self, files: dict[str, Path], limits: Limits, *, sandbox: bool = True,
                 gpu: bool = False, fork: bool = True) -> None:
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
        zygote = shared_zygote() if sandbox and fork and not gpu else None
        self.km = SandboxedKernelManager(ipc_dir=ipc_dir, spec=spec if sandbox else None,
                                         limits=limits, fds=fds, zygote=zygote)
        self.client: BlockingKernelClient | None = None
        self.start_s = 0.0

    def start(self) -> None:
        """Launch the kernel and wait until it answers (``startup_timeout_s``)."""
        self.launch()
        client = self.new_client()
        try:
            self.confirm(client)
        except RuntimeError:
            client.stop_channels()
            raise
        self.start_s = time.perf_counter() - self._launched

    def new_client(self) -> BlockingKernelClient:
        """A blocking client of this kernel, channels started, every socket bounded.

        It reaches the kernel through the relay and owns its context (destroyed when
        its channels stop), as a default BlockingKernelClient would.
        """
        context = zmq.Context()
        bound_context(context, self.limits)
        client = BlockingKernelClient(context=context)
        client._created_context = True
        client.load_connection_info(self.km.get_connection_info())
        client.start_channels()
        return client

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
                    reply = client.shell_channel.get_msg(timeout=wait(2.0))
                    answered = reply.get("parent_header", {}).get("msg_id") in asked
                while not connected:
                    msg = client.iopub_channel.get_msg(timeout=wait(1.0))
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
        pool's kernel, launched with a client of its own). Raises RuntimeError if not.

        A client not made by :meth:`new_client` (unbounded sockets) is then stopped and
        one made by it takes its place, in the caller's thread.
        """
        self._wait_ready(client)
        if not is_bounded(client):
            client.stop_channels()
            client = self.new_client()
            try:
                self._wait_ready(client)
            except RuntimeError:
                client.stop_channels()
                raise
        client.allow_stdin = False
        self.client = client

    @property
    def violation(self) -> str | None:
        """Why the grader stopped this kernel for what it sent (an oversize message), or None.

        The sentence names the channel, the size and the limit, for a cell's or an
        item's verdict.
        """
        found = self.km.relay.violation if self.km.relay is not None else None
        if found is None:
            return None
        channel, exc = found
        if exc.size:
            cap = _amount(self.km.relay.caps[channel])
            said = (f"the kernel sent an oversize message on its {channel} channel "
                    f"({_amount(exc.size)} and more; ")
            if channel == "iopub":
                return (said + f"limits.message_mb is {cap}) and was stopped; hint: a result "
                        "this large needs a higher limits.message_mb (and reply_mb) in the rubric")
            return said + f"the {channel} channel's fixed limit is {cap}) and was stopped"
        return (f"the kernel broke the message framing on its {channel} channel "
                f"({exc.reason}) and was stopped")

    def launch(self) -> None:
        """Start the kernel process without waiting for it (``start`` also waits)."""
        self._launched = time.perf_counter()
        log = open(self._root / "kernel.log", "wb")  # noqa: SIM115 - the kernel writes here
        kwargs: dict[str, object] = {"stdout": log, "stderr": log}
        if self.workdir is not None:       # no sandbox: the files are copied there
            kwargs["cwd"] = str(self.workdir)
        else:                              # bwrap copies them in from these descriptors
            kwargs["pass_fds"] = tuple(h.fileno() for h in self._handles)
        try:
            run_sync(self.km.start_kernel)(**kwargs)
        finally:
            log.close()
            for handle in self._handles:
                handle.close()

    @property
    def forked(self) -> bool:
        """Whether the kernel was forked from the template (False: started cold)."""
        return self.km.forked

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
        if not _PROC.is_dir():
            return None
        for entry in _PROC.iterdir():
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
                for line in (_PROC / str(pid) / "status").read_text().splitlines():
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
        if self.km.relay is not None:
            self.km.relay.close()
        shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> KernelSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
