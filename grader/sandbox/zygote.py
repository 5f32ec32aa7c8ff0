"""The grader's side of the fork server: start the template once, fork a kernel per student.

A cold kernel costs a new interpreter, ipykernel and ``import torch`` (about 1.2 s of CPU
here); a kernel forked from a template that has imported them all costs a fork and the
confinement (see :mod:`grader.sandbox.template` for how each kernel is confined, and
``docs/sandbox.md``). The template runs in bubblewrap as root with five capabilities and
dies with the grader (``--die-with-parent`` and its pid namespace, which holds every
kernel it forked).

The grader talks to the template over one SOCK_SEQPACKET socket and, per kernel, over a
socket pair of its own whose far end the template hands, unread, to the forked keeper:
the request (the kernel's uid, limits, environment, file names) goes over it with the
descriptors of the kernel's log, of its socket directory (a detached mount made here with
``open_tree``, so the template never sees a host path) and of each submission file. The
kernel's init answers ``ready`` on it (the kernel adds its pid and uid as seen here), the
keeper ``exit CODE`` when it ends; closing it, or ``kill``, stops the kernel.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import SandboxUnavailable
from .bwrap import Limits, build_template_command, kernel_env, next_uid

__all__ = ["ForkedKernel", "Zygote", "adopt_zygote", "request_for", "shared_zygote",
           "zygote_failure"]

_START_TIMEOUT_S = 120.0      # the template imports torch on a possibly busy machine
_UCRED = struct.Struct("3i")  # pid, uid, gid


def request_for(limits: Limits, *, connection_file: str, ipc_dir: Path, names: list[str],
                probe: bool = False) -> dict[str, Any]:
    """What the keeper needs to confine one kernel (plain JSON: names, numbers, paths)."""
    mb = 1024 * 1024
    return {
        "uid": next_uid(), "files": names, "ipc_dir": str(ipc_dir),
        "connection_file": connection_file, "env": kernel_env(limits, False), "probe": probe,
        "limits": {"memory_bytes": limits.memory_mb * mb, "processes": limits.processes,
                   "file_size_bytes": limits.file_size_mb * mb, "open_files": limits.open_files,
                   "cpu_seconds": limits.cpu_seconds, "workdir_bytes": limits.workdir_mb * mb,
                   "tmp_bytes": limits.tmp_mb * mb, "threads": limits.threads},
    }


class ForkedKernel:
    """A kernel forked by the template, with the part of ``subprocess.Popen`` that
    jupyter_client's provisioner uses (``pid``, ``poll``, ``wait``, ``kill``, ...).

    ``pid`` (the kernel's parent, for :meth:`KernelSession.peak_rss_mb`) and ``uid`` are
    known once the kernel has said ``ready``. Any signal stops the kernel: interrupts go
    by message.
    """

    stdin = stdout = stderr = None

    def __init__(self, conn: socket.socket, uid: int) -> None:
        self._conn, self.requested_uid = conn, uid
        self._pid: int | None = None
        self._uid: int | None = None
        self.returncode: int | None = None
        self._lock = threading.Lock()

    def _read(self, timeout: float | None) -> bool:
        """Take one message (None: wait for it); False when none came in ``timeout``."""
        self._conn.settimeout(timeout)
        try:
            data, ancillary, _, _ = self._conn.recvmsg(64, socket.CMSG_SPACE(_UCRED.size))
        except (BlockingIOError, TimeoutError):
            return False
        except OSError:
            data, ancillary = b"", []
        if data == b"ready":
            for level, kind, raw in ancillary:
                if (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS):
                    self._pid, self._uid, _ = _UCRED.unpack(raw[:_UCRED.size])
        elif data.startswith(b"exit "):
            self.returncode = int(data.split()[1])
        elif not data and self.returncode is None:
            self.returncode = -9           # the keeper is gone: so is the kernel
        if self.returncode is not None:
            self._conn.close()
        return True

    def _until_ready(self) -> None:
        with self._lock:
            while self._pid is None and self.returncode is None:
                self._read(None)

    @property
    def pid(self) -> int:
        """The kernel's pid-namespace init, as this process sees it (0: it never started)."""
        self._until_ready()
        return self._pid or 0

    @property
    def uid(self) -> int | None:
        """The host uid the kernel runs as, as the kernel reported it (None: it never
        started)."""
        self._until_ready()
        return self._uid

    def poll(self) -> int | None:
        with self._lock:
            while self.returncode is None and self._read(0.0):
                pass
            return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self.returncode is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0 or not self._read(left):
                    raise subprocess.TimeoutExpired("forked kernel", timeout or 0)
            return self.returncode

    def kill(self) -> None:
        try:
            self._conn.send(b"kill")
        except OSError:
            pass                           # already ended

    def send_signal(self, _signum: int) -> None:
        self.kill()

    def terminate(self) -> None:
        self.kill()

    def close(self) -> None:
        """Hang up: the keeper then stops the kernel if it still runs."""
        self._conn.close()


class Zygote:
    """The running template: :meth:`start` one, :meth:`spawn` a kernel, :meth:`close`."""

    def __init__(self, control: socket.socket | None = None) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="grader-zygote-"))
        if control is None:
            self._control, self._theirs = socket.socketpair(socket.AF_UNIX,
                                                            socket.SOCK_SEQPACKET)
        else:
            self._control, self._theirs = control, None
        self._lock = threading.Lock()
        self.process: subprocess.Popen[bytes] | None = None
        self.pid = 0
        self._attached = control is not None
        self._lost = False

    @classmethod
    def attach(cls, control: socket.socket) -> Zygote:
        """Another process's running template, asked through ``control`` (a duplicate of
        that process's end of the template's socket: :meth:`control`). Spawn requests are
        one datagram each, so processes can share one template; the kernels it forks are
        confined from each other as any two are (own pid namespace and uid each). The
        template stays the starting process's: it dies with it."""
        return cls(control)

    @property
    def control(self) -> socket.socket:
        """This end of the template's socket, to hand to a worker process (:meth:`attach`)."""
        return self._control

    @classmethod
    def start(cls) -> Zygote:
        """A template that answered and whose probe child proved confined, or
        SandboxUnavailable saying what failed."""
        zygote = cls()
        try:
            zygote._launch()
            zygote._probe()
        except BaseException:
            zygote.close()
            raise
        return zygote

    def _launch(self) -> None:
        """Start the template from a thread that lives as long as it: bwrap's
        --die-with-parent follows the *thread* that started it."""
        assert self._theirs is not None, "an attached template is started by its owner"
        argv = [sys.executable, "-m", "grader.sandbox.template", str(self._theirs.fileno())]
        command = build_template_command(argv)
        started = threading.Event()
        failure: list[BaseException] = []

        def keep() -> None:
            try:
                with open(self._dir / "template.log", "wb") as log:
                    self.process = subprocess.Popen(  # noqa: S603 - our own argv
                        command, pass_fds=(self._theirs.fileno(),), stdin=subprocess.DEVNULL,
                        stdout=log, stderr=log)
            except BaseException as exc:  # noqa: BLE001 - reported by _launch
                failure.append(exc)
                return
            finally:
                started.set()
            self.process.wait()

        threading.Thread(target=keep, name="grader-zygote", daemon=True).start()
        started.wait()
        self._theirs.close()
        if failure:
            raise SandboxUnavailable(f"the fork server did not start: {failure[0]}")
        self.pid = self.process.pid if self.process else 0
        self._control.settimeout(_START_TIMEOUT_S)
        try:
            answer = self._control.recv(4096)
        except (TimeoutError, OSError):
            answer = b""
        self._control.settimeout(None)
        if answer != b"ready":
            raise SandboxUnavailable(f"the fork server did not start ({answer.decode()!r}): "
                                     f"{self.log_tail()}")

    def _probe(self) -> None:
        """Fork one child through the whole confinement, which checks itself and exits."""
        ipc = self._dir / "probe"
        ipc.mkdir()
        with open(self._dir / "probe.log", "w+b") as log:
            kernel = self.spawn(request_for(Limits(), connection_file="", ipc_dir=ipc,
                                            names=[], probe=True), log.fileno(), ipc, ())
            try:
                code = kernel.wait(60)
            except subprocess.TimeoutExpired:
                kernel.close()
                code = None
            log.seek(0)
            said = log.read().decode(errors="replace")[-1500:]
        if code != 0:
            raise SandboxUnavailable(f"a kernel forked by the fork server is not confined as "
                                     f"required (exit {code}): {said}")

    def alive(self) -> bool:
        if self._attached:
            return not self._lost
        return self.process is not None and self.process.poll() is None

    def spawn(self, request: dict[str, Any], log_fd: int, ipc_dir: Path,
              file_fds: tuple[int, ...]) -> ForkedKernel:
        """Fork a kernel as ``request`` says (see :func:`request_for`). Raises OSError if
        the template cannot be asked (it died): the caller then starts one cold."""
        if len(file_fds) != len(request["files"]):
            raise ValueError("one open file descriptor is needed per submission file")
        from . import linux        # ctypes' libc: imported here, as only Linux has it

        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        mine.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        tree = -1
        try:
            tree = linux.open_tree(str(ipc_dir))
            with self._lock:
                try:
                    socket.send_fds(self._control, [b"k"], [theirs.fileno()])
                except OSError:
                    self._lost = True      # the template (or its owner) is gone
                    raise
            socket.send_fds(mine, [json.dumps(request).encode()],
                            [log_fd, tree, *file_fds])
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
            if tree >= 0:
                os.close(tree)
        return ForkedKernel(mine, request["uid"])

    def log_tail(self, size: int = 2000) -> str:
        try:
            return (self._dir / "template.log").read_bytes()[-size:].decode(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        """Stop the template, and with its pid namespace every kernel it forked (an attached
        one only lets go of its socket)."""
        self._control.close()
        if self._attached:
            shutil.rmtree(self._dir, ignore_errors=True)
            return
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        shutil.rmtree(self._dir, ignore_errors=True)


_shared: dict[str, Any] = {}
_shared_lock = threading.Lock()


def shared_zygote() -> Zygote | None:
    """This process's template, started on first use; None where it cannot run (not root,
    no bwrap, a refused step: :func:`zygote_failure` says which) or ``GRADER_ZYGOTE=0``.
    Kernels then start cold. A template that died is started again."""
    if os.environ.get("GRADER_ZYGOTE", "1") == "0":
        return None
    with _shared_lock:
        zygote = _shared.get("zygote")
        if zygote is not None and zygote.alive():
            return zygote
        if "failure" in _shared:
            return None
        try:
            _shared["zygote"] = zygote = Zygote.start()
        except (SandboxUnavailable, OSError) as exc:
            _shared["failure"] = str(exc)
            return None
        import atexit

        atexit.register(zygote.close)
        return zygote


def adopt_zygote(control: socket.socket) -> Zygote:
    """Make another process's template (through ``control``) this process's shared one:
    a batch worker forks its students' kernels from the template its main process started,
    instead of starting (and importing torch in) one of its own."""
    with _shared_lock:
        _shared.pop("failure", None)
        _shared["zygote"] = zygote = Zygote.attach(control)
        return zygote


def zygote_failure() -> str | None:
    """Why :func:`shared_zygote` gave None, if it tried."""
    return _shared.get("failure")

