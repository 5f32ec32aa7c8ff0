"""The fork server's template: runs inside bubblewrap, forks one sandboxed kernel per student.

``python -m grader.sandbox.template FD`` imports what every kernel needs (torch, numpy,
ipykernel) once, then serves requests on the SOCK_SEQPACKET socket ``FD``. It never runs
a byte of student code and never reads a student's request: each request is only a socket
(SCM_RIGHTS), and what comes over it is read by the forked child. So the template's
memory, which every kernel inherits, holds nothing of any student.

Per request, three processes, each confined before the next step:

- the **keeper** (forked from the template, host root in the template's namespaces) reads
  the request, enters new mount, pid, net, ipc, uts and cgroup namespaces, mounts fresh
  tmpfs on the work dir, /tmp and /dev/shm, a fresh devpts, the kernel's own socket
  directory (a detached mount the grader made with open_tree, never a path), and copies
  the submission's files in from the descriptors the grader sent. It then waits for the
  init and stops it when the grader says so or hangs up.
- the **init** (pid 1 of the new pid namespace) mounts /proc for that namespace, drops to
  the kernel's own uid, enters a user namespace in which it may create exactly one more
  (which it does: the kernel cannot make another, as bwrap's --disable-userns), clears
  every capability and sets no_new_privs; then forks the kernel and reaps orphans.
- the **kernel** sets its rlimits, environment and thread counts and starts ipykernel
  from the modules already imported.

Every step that fails is reported on the kernel's log and ends the child: a kernel is
never started half-confined.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import select
import signal
import socket
import sys
import traceback
from pathlib import Path
from typing import Any

from . import linux
from .bwrap import WORK_DIR

__all__ = ["PRELOAD", "main"]

# what a kernel would otherwise import at first use, every student again: creating any
# torch.optim optimizer imports torch._dynamo (about 0.7 s of CPU), the first backward with
# given gradients torch.fx's symbolic shapes and sympy (about 0.4 s)
PRELOAD = ("numpy", "numpy.random", "torch", "torch.nn", "torch.nn.functional", "torch.optim",
           "torch._dynamo", "torch.fx.experimental.symbolic_shapes", "torch.func",
           "torch.distributions", "torch.utils.data", "IPython", "zmq", "tornado.ioloop",
           "jupyter_client.session",
           "ipykernel.ipkernel", "ipykernel.kernelapp", "ipykernel.zmqshell",
           "ipykernel.iostream", "ipykernel.heartbeat", "ipykernel.comm", "threadpoolctl",
           "grader.sandbox.probe_server")
_MAX_FDS = 256                # descriptors one request may carry: log, socket dir, files
_REQUEST_BYTES = 1 << 20
_NS_FLAGS = (linux.CLONE_NEWNS | linux.CLONE_NEWPID | linux.CLONE_NEWNET | linux.CLONE_NEWIPC
             | linux.CLONE_NEWUTS | linux.CLONE_NEWCGROUP)


def threads() -> int:
    """Threads of this process: forking (and unshare) needs exactly one."""
    return len(os.listdir("/proc/self/task"))


def main(argv: list[str]) -> None:
    import importlib

    control = socket.socket(fileno=int(argv[1]))
    # bwrap leaves root's bounding set full: without this an exec as root would regain
    # every capability. The template and its children never exec; this makes sure.
    linux.set_no_new_privs()
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass                      # an optional library: the kernel imports it if it must
    if threads() != 1:
        control.send(f"error the template runs {threads()} threads after its imports".encode())
        return
    # every object imported so far is kept out of the garbage collector's passes: a kernel's
    # collections would otherwise walk (and so copy, page by page) the whole inherited heap
    gc.freeze()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)        # keepers are reaped by the kernel
    control.send(b"ready")
    while True:
        try:
            _, fds, _, _ = socket.recv_fds(control, 16, 1)
        except InterruptedError:
            continue
        if not fds:                    # the grader hung up (or sent nothing usable)
            return
        if threads() != 1 or os.fork() != 0:
            os.close(fds[0])
            continue
        try:
            _keeper(control, fds[0])
        except BaseException:  # noqa: BLE001 - never return into the template's loop
            traceback.print_exc()
        finally:
            os._exit(70)


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    data, fds, flags, _ = socket.recv_fds(conn, _REQUEST_BYTES, _MAX_FDS)
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC) or len(fds) < 2:
        raise ValueError("malformed request")
    return json.loads(data), fds


def _keeper(control: socket.socket, conn_fd: int) -> None:
    """The child of the template that holds one student's request (see the module)."""
    os.close(control.detach())
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    linux.set_parent_death_signal(signal.SIGKILL)
    conn = socket.socket(fileno=conn_fd)
    request, fds = _receive(conn)
    log, tree, files = fds[0], fds[1], fds[2:]
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    previous = 2                      # close all but what this request needs
    for fd in sorted({conn.fileno(), tree, *files}) + [resource.getrlimit(
            resource.RLIMIT_NOFILE)[0]]:
        os.closerange(previous + 1, fd)
        previous = fd
    _enter_namespaces(request, tree, files)
    init = os.fork()
    if init == 0:
        try:
            _init(request, conn)
        except BaseException:  # noqa: BLE001
            traceback.print_exc()
        finally:
            os._exit(71)
    _supervise(conn, init)


def _tmpfs(target: str, size: int, mode: str = "1777") -> None:
    linux.mount("tmpfs", target, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV,
                f"size={size},mode={mode}")


def _enter_namespaces(request: dict[str, Any], tree: int, files: list[int]) -> None:
    """New namespaces, fresh writable mounts, the socket dir, the submission's files."""
    limits = request["limits"]
    linux.unshare(_NS_FLAGS)
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    linux.sethostname("sandbox")
    _tmpfs("/tmp", limits["tmp_bytes"])
    _tmpfs("/dev/shm", limits["tmp_bytes"])
    _tmpfs(WORK_DIR, limits["workdir_bytes"])
    linux.mount("devpts", "/dev/pts", "devpts", linux.MS_NOSUID | linux.MS_NOEXEC,
                "newinstance,ptmxmode=0666,mode=620")
    ipc_dir = request["ipc_dir"]
    if not ipc_dir.startswith("/tmp/"):
        raise ValueError(f"the socket directory {ipc_dir} is not under /tmp")
    os.makedirs(ipc_dir, mode=0o755)
    linux.move_mount(tree, ipc_dir)
    os.close(tree)
    uid = int(request["uid"])
    work = os.open(WORK_DIR, os.O_DIRECTORY | os.O_RDONLY)
    for name, fd in zip(request["files"], files, strict=True):
        if name in ("", ".", "..") or "/" in name or "\0" in name:
            raise ValueError(f"not a plain file name: {name!r}")
        out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644,
                      dir_fd=work)
        while chunk := os.read(fd, 1 << 20):
            os.write(out, chunk)
        os.fchown(out, uid, uid)
        os.close(out)
        os.close(fd)
    os.close(work)


def _supervise(conn: socket.socket, init: int) -> None:
    """Wait for the init; kill it when the grader asks or hangs up; report how it ended."""
    pidfd = os.pidfd_open(init)
    watched = [conn, pidfd]
    while True:
        ready, _, _ = select.select(watched, [], [])
        if pidfd in ready:
            break
        data = conn.recv(64)
        if not data:
            watched = [pidfd]
        if data in (b"", b"kill"):
            os.kill(init, signal.SIGKILL)
    code = os.waitstatus_to_exitcode(os.waitpid(init, 0)[1])
    try:
        conn.send(f"exit {code}".encode())
    except OSError:
        pass
    os._exit(0)


def _init(request: dict[str, Any], conn: socket.socket) -> None:
    """Pid 1 of the kernel's pid namespace: /proc, the student's uid, no privileges."""
    flags = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
    linux.mount("proc", "/proc", "proc", flags)
    sysctls = os.open("/proc/sys", os.O_PATH | os.O_DIRECTORY)
    for part in ("sys", "sysrq-trigger", "irq", "bus"):        # as bwrap --proc does
        path = f"/proc/{part}"
        if os.path.exists(path):
            linux.mount(path, path, None, linux.MS_BIND | linux.MS_REC)
            linux.mount(None, path, None, linux.MS_REMOUNT | linux.MS_BIND | linux.MS_RDONLY
                        | flags)
    _become_student(int(request["uid"]), sysctls)
    os.setsid()
    conn.send(b"ready")                # the grader reads our host pid and uid off this message
    os.close(conn.detach())
    kernel = os.fork()
    if kernel == 0:
        try:
            _kernel(request)
        except BaseException:  # noqa: BLE001
            traceback.print_exc()
        finally:
            os._exit(72)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)     # pid 1: the kernel cannot signal us now
    while True:                        # reap orphans; end (and the namespace) with the kernel
        pid, status = os.wait()
        if pid == kernel:
            code = os.waitstatus_to_exitcode(status)
            os._exit(code if code >= 0 else 128 - code)


def _map_self(uid: int) -> None:
    for name, text in (("setgroups", "deny"), ("gid_map", f"{uid} {uid} 1"),
                       ("uid_map", f"{uid} {uid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)


def _become_student(uid: int, sysctls: int) -> None:
    """Host uid ``uid``, no capabilities anywhere, unable to create a user namespace.

    As bwrap --disable-userns: in a first user namespace the limit of user namespaces is
    set to one, and a second is made beneath it, using that one up; the limit is out of
    reach from inside the second (it belongs to the first).
    """
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)       # from root: every capability of the host is gone
    linux.set_dumpable(True)          # else /proc/self/uid_map belongs to root
    linux.unshare(linux.CLONE_NEWUSER)
    _map_self(uid)
    limit = os.open("user/max_user_namespaces", os.O_WRONLY, dir_fd=sysctls)
    os.write(limit, b"1")
    os.close(limit)
    os.close(sysctls)
    linux.unshare(linux.CLONE_NEWUSER)
    _map_self(uid)
    linux.drop_capabilities()
    linux.set_no_new_privs()
    try:
        linux.unshare(linux.CLONE_NEWUSER)
    except OSError:
        return
    raise RuntimeError("creating user namespaces was not disabled")


def _set_limits(limits: dict[str, int]) -> None:
    for name, value in (("RLIMIT_AS", limits["memory_bytes"]),
                        ("RLIMIT_NPROC", limits["processes"]),
                        ("RLIMIT_FSIZE", limits["file_size_bytes"]),
                        ("RLIMIT_NOFILE", limits["open_files"]),
                        ("RLIMIT_CPU", limits["cpu_seconds"]), ("RLIMIT_CORE", 0)):
        resource.setrlimit(getattr(resource, name), (value, value))


def _kernel(request: dict[str, Any]) -> None:
    """Become the student's ipykernel, in this process, from the template's imports."""
    linux.set_parent_death_signal(signal.SIGKILL)
    _set_limits(request["limits"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(WORK_DIR)
    if sys.path and sys.path[0] in ("", WORK_DIR):
        del sys.path[0]                # as ipykernel_launcher; the shell adds '' back
    if request.get("probe"):
        _probe(request)
        return
    _fresh_state(int(request["limits"]["threads"]))
    from ipykernel.kernelapp import IPKernelApp

    IPKernelApp.launch_instance(argv=["-f", request["connection_file"]])
    os._exit(0)


def _fresh_state(threads: int) -> None:
    """What a kernel started cold would have that a fork does not: its own random seeds
    and its share of the cores (the template ran single-threaded)."""
    import numpy
    import torch

    numpy.random.seed()               # torch's default seed is fixed, as in a new process
    torch.set_num_threads(threads)
    try:
        import threadpoolctl

        threadpoolctl.threadpool_limits(threads)
    except ImportError:
        pass


def _probe(request: dict[str, Any]) -> None:
    """A child that checks its own confinement instead of starting a kernel (the grader
    forks one when the template starts, and uses the template only if it passes)."""
    status = Path("/proc/self/status").read_text()
    caps = {line.split(":")[0]: int(line.split()[1], 16) for line in status.splitlines()
            if line.startswith("Cap")}
    pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    problems = []
    if os.getuid() != int(request["uid"]):
        problems.append(f"uid {os.getuid()}")
    if any(caps.values()):
        problems.append(f"capabilities {caps}")
    if pids != [1, 2]:
        problems.append(f"processes {pids}")
    if socket.gethostname() != "sandbox":
        problems.append(f"hostname {socket.gethostname()}")
    if problems:
        print("confinement probe failed:", "; ".join(problems), file=sys.stderr, flush=True)
        os._exit(1)
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv)
