"""Kernels forked from the template (grader.sandbox.zygote) are as confined as cold ones,
and from each other: neither can see, signal or read the other or the template."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from grader.sandbox import KernelSession, Limits
from grader.sandbox.zygote import ForkedKernel, shared_zygote, zygote_failure
from conftest import grading_process, processes_with, sigkill_and_wait

pytestmark = pytest.mark.kernel
LIMITS = Limits(cell_timeout_s=20, total_timeout_s=60)


@pytest.fixture(autouse=True, scope="module")
def _zygote_runs() -> None:
    if os.geteuid() != 0:
        pytest.skip("the fork server needs root (each kernel gets a uid of its own)")
    assert shared_zygote() is not None, f"no fork server for a root grader: {zygote_failure()}"


def run(session: KernelSession, code: str) -> str:
    """What ``code`` prints in the kernel (stdout), after it has run."""
    out: list[str] = []

    def hook(msg: dict) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append(f"{msg['content']['ename']}: {msg['content']['evalue']}")

    assert session.client is not None
    session.client.execute_interactive(code, timeout=60, output_hook=hook)
    return "".join(out)


def started(files: dict[str, Path] | None = None, *, fork: bool = True) -> KernelSession:
    session = KernelSession(files or {}, LIMITS, fork=fork)
    session.start()
    return session


def process(session: KernelSession) -> ForkedKernel:
    forked = session.km.provisioner.process  # type: ignore[union-attr]
    assert isinstance(forked, ForkedKernel)
    return forked


VIEW = ("import json, os\nprint(json.dumps({'uid': os.getuid(), 'pid': os.getpid(), "
        "'procs': sorted(int(p) for p in os.listdir('/proc') if p.isdigit()), "
        "'files': sorted(os.listdir('.')), 'status': {l.split(':')[0]: l.split()[1] for l in "
        "open('/proc/self/status').read().splitlines() if l.split(':')[0] in "
        "('CapEff', 'CapPrm', 'CapBnd', 'CapAmb', 'NoNewPrivs')}}))")


def test_two_forked_kernels_cannot_see_or_signal_each_other_or_the_template(
        tmp_path: Path) -> None:
    mine, yours = tmp_path / "mine.txt", tmp_path / "yours.txt"
    mine.write_text("A's answer")
    yours.write_text("B's answer")
    a, b = started({"mine.txt": mine}), started({"yours.txt": yours})
    try:
        assert a.forked and b.forked
        views = [json.loads(run(s, VIEW)) for s in (a, b)]
        host = [process(s) for s in (a, b)]
        template = shared_zygote()
        assert template is not None
        for view, name in zip(views, ("mine.txt", "yours.txt")):
            assert view["files"] == [name]
            assert view["pid"] == 2 and view["procs"] == [1, 2], view   # only its own
            assert set(view["status"].values()) <= {"0000000000000000", "1"}, view
            assert view["status"]["NoNewPrivs"] == "1"
        assert views[0]["uid"] != views[1]["uid"] and host[0].uid != host[1].uid
        assert [v["uid"] for v in views] == [h.uid for h in host]     # host uids, unmapped
        # B names A's kernel, the template and the grader by their pids as the host sees
        # them. Signal 0: a kill that only failed for want of permission would still tell
        # that the process exists (and a kill that worked would take the test run down).
        targets = [host[0].pid, template.pid, os.getpid()]
        probe = ("import os\nfor pid in %r:\n    try:\n"
                 "        os.kill(pid, 0); print('EXISTS', pid)\n"
                 "    except OSError as e:\n        print(type(e).__name__)\n"
                 "for path in ('/proc/%d/root/home/student/mine.txt', '/tmp/mine.txt', "
                 "'/home/student/mine.txt'):\n    try:\n        open(path).read(); print('READ')\n"
                 "    except OSError as e:\n        print(type(e).__name__)"
                 % (targets, host[0].pid))
        said = run(b, probe)
        assert said.split() == ["ProcessLookupError"] * 3 + ["FileNotFoundError"] * 3, said
        assert a.is_alive() and template.alive()
        assert run(a, "print(open('mine.txt').read())").strip() == "A's answer"
    finally:
        a.close()
        b.close()


def test_a_forked_kernel_cannot_make_namespaces_or_mounts() -> None:
    session = started()
    try:
        code = ("import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                "for flags in (0x10000000, 0x20000, 0x40000000):\n"
                "    print(flags, libc.unshare(flags), ctypes.get_errno() != 0)\n"
                "print('mount', libc.mount(b'tmpfs', b'/tmp', b'tmpfs', 0, None))\n"
                "import socket; print(socket.gethostname())")
        said = run(session, code).split("\n")
        assert said[:3] == [f"{flags} -1 True" for flags in (0x10000000, 0x20000, 0x40000000)]
        assert said[3:5] == ["mount -1", "sandbox"], said
    finally:
        session.close()


def test_forked_kernels_draw_their_own_random_numbers() -> None:
    code = "import numpy, random\nprint(numpy.random.rand(), random.random())"
    first, second = started(), started()
    try:
        assert run(first, code) != run(second, code)
    finally:
        first.close()
        second.close()


def test_killing_the_grader_kills_the_template_and_its_kernels(tmp_path: Path) -> None:
    """SIGKILL the grading process: the template, each kernel and what they started go."""
    marker = "525252.5"
    script = tmp_path / "grader_proc.py"
    script.write_text(
        "from grader.sandbox import KernelSession, Limits\n"
        "from grader.sandbox.zygote import shared_zygote\n"
        "sessions = [KernelSession({}, Limits()) for _ in range(2)]\n"
        "for s in sessions:\n    s.start()\n    assert s.forked\n"
        "    s.client.execute_interactive(\"import subprocess; p = subprocess.Popen(['sleep', "
        "'%s'], start_new_session=True)\", timeout=120)\n"
        "pids = [shared_zygote().pid] + [s.km.provisioner.process.pid for s in sessions]\n"
        "print(' '.join(map(str, pids)), flush=True)\nimport time; time.sleep(600)\n" % marker)
    with grading_process(script) as proc:
        assert proc.stdout is not None
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 3 and all(Path(f"/proc/{p}").exists() for p in pids)
        assert len(processes_with(marker)) == 2
        sigkill_and_wait(proc, lambda: bool(processes_with(marker) or any(
            Path(f"/proc/{p}").exists() for p in pids)))
        assert not processes_with(marker)
        assert not [p for p in pids if Path(f"/proc/{p}").exists()]


def test_a_file_name_that_is_a_path_is_refused_before_the_kernel_starts(
        tmp_path: Path) -> None:
    given = tmp_path / "x.txt"
    given.write_text("x")
    session = KernelSession({"../escape.txt": given}, Limits(startup_timeout_s=20))
    try:
        with pytest.raises(RuntimeError, match="not a plain file name"):
            session.start()
        assert session.forked
    finally:
        session.close()


def test_a_kernel_started_cold_is_not_forked() -> None:
    session = started(fork=False)
    try:
        assert not session.forked and run(session, "print(1 + 1)").strip() == "2"
    finally:
        session.close()
