"""The few Linux system calls the fork server needs that Python 3.11's ``os`` lacks.

Thin ctypes wrappers, each raising ``OSError`` with the errno, so a refused step names
itself (``unshare(CLONE_NEWUSER): [Errno 1] Operation not permitted``) instead of failing
later in an unrelated place.
"""

from __future__ import annotations

import ctypes
import os
import struct

__all__ = ["CLONE_NEWCGROUP", "CLONE_NEWIPC", "CLONE_NEWNET", "CLONE_NEWNS", "CLONE_NEWPID",
           "CLONE_NEWUSER", "CLONE_NEWUTS", "MS_BIND", "MS_NODEV", "MS_NOEXEC", "MS_NOSUID",
           "MS_PRIVATE", "MS_RDONLY", "MS_REC", "MS_REMOUNT", "drop_capabilities", "mount",
           "move_mount", "open_tree", "set_dumpable", "set_no_new_privs",
           "set_parent_death_signal", "sethostname", "unshare"]

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS = 0x00020000, 0x02000000, 0x04000000
CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = (0x08000000, 0x10000000, 0x20000000,
                                                           0x40000000)
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000

_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE, _PR_CAPBSET_DROP = 1, 4, 24
_PR_SET_NO_NEW_PRIVS, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 38, 47, 4
# Numbered alike on every architecture (system calls added after 5.1 share their numbers).
_SYS_OPEN_TREE, _SYS_MOVE_MOUNT = 428, 429
_OPEN_TREE_CLONE, _MOVE_MOUNT_F_EMPTY_PATH, _AT_FDCWD = 1, 0x4, -100
_CAPABILITY_VERSION_3 = 0x20080522

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _check(result: int, what: str) -> int:
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")
    return result


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), f"unshare({flags:#x})")


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    def c(text: str | None) -> bytes | None:
        return None if text is None else os.fsencode(text)

    _check(_libc.mount(c(source), c(target), c(fstype), ctypes.c_ulong(flags), c(data)),
           f"mount {fstype or source} on {target}")


def open_tree(path: str) -> int:
    """A detached bind mount of ``path`` (an fd), to attach in another mount namespace."""
    flags = _OPEN_TREE_CLONE | os.O_CLOEXEC
    return _check(_libc.syscall(_SYS_OPEN_TREE, _AT_FDCWD, os.fsencode(path), flags),
                  f"open_tree({path})")


def move_mount(fd: int, target: str) -> None:
    """Attach the detached mount ``fd`` (from :func:`open_tree`) at ``target``."""
    _check(_libc.syscall(_SYS_MOVE_MOUNT, fd, b"", _AT_FDCWD, os.fsencode(target),
                         _MOVE_MOUNT_F_EMPTY_PATH), f"move_mount onto {target}")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, ctypes.c_size_t(len(raw))), "sethostname")


def _prctl(option: int, arg: int, what: str) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0),
                       ctypes.c_ulong(0)), what)


def set_parent_death_signal(signum: int) -> None:
    _prctl(_PR_SET_PDEATHSIG, signum, "prctl(PR_SET_PDEATHSIG)")


def set_dumpable(on: bool) -> None:
    _prctl(_PR_SET_DUMPABLE, int(on), "prctl(PR_SET_DUMPABLE)")


def set_no_new_privs() -> None:
    _prctl(_PR_SET_NO_NEW_PRIVS, 1, "prctl(PR_SET_NO_NEW_PRIVS)")


def drop_capabilities() -> None:
    """Empty every capability set: bounding, ambient, then permitted/effective/inheritable.

    The bounding set goes first (dropping it needs CAP_SETPCAP, which capset then
    removes); capset with an empty set leaves nothing an exec could regain either.
    """
    last = int(open("/proc/sys/kernel/cap_last_cap").read())  # noqa: SIM115 - tiny file
    for cap in range(last + 1):
        _prctl(_PR_CAPBSET_DROP, cap, f"prctl(PR_CAPBSET_DROP, {cap})")
    _check(_libc.prctl(_PR_CAP_AMBIENT, ctypes.c_ulong(_PR_CAP_AMBIENT_CLEAR_ALL),
                       ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)),
           "prctl(PR_CAP_AMBIENT_CLEAR_ALL)")
    header = ctypes.create_string_buffer(struct.pack("Ii", _CAPABILITY_VERSION_3, 0))
    data = ctypes.create_string_buffer(bytes(24))        # two empty __user_cap_data_struct
    _check(_libc.capset(header, data), "capset")
