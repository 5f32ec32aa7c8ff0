"""The sandbox holds: a hostile notebook gets a clear verdict, the grader carries on."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import nbformat
import pytest

from grader.execute import ExecutionRecord, run_notebook
from grader.protocol import KernelProxy, Name
from grader.sandbox import KernelSession, Limits, check_sandbox
from conftest import grading_process, processes_with, sigkill_and_wait

pytestmark = pytest.mark.kernel
REPO = Path(__file__).resolve().parent.parent
LIMITS = Limits(cell_timeout_s=8, total_timeout_s=90, memory_mb=6144)


def run_cells(*sources: str, files: dict[str, Path] | None = None, limits: Limits = LIMITS
              ) -> tuple[ExecutionRecord, nbformat.NotebookNode, KernelSession]:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]

    def start() -> KernelSession:
        session = KernelSession(files or {}, limits)
        session.start()
        return session

    record = ExecutionRecord()
    session = run_notebook(nb, start, record)
    return record, nb, session


def stdout(nb: nbformat.NotebookNode, index: int) -> str:
    return "".join(o.get("text", "") for o in nb.cells[index].outputs)


@pytest.fixture(autouse=True, scope="module")
def _sandbox_works() -> None:
    ok, why = check_sandbox()
    assert ok, f"bubblewrap must work on CI machines: {why}"


def test_sandbox_cannot_read_outside_its_work_dir(tmp_path: Path) -> None:
    secret = tmp_path / "solution.py"
    secret.write_text("ANSWER = 42")
    given = tmp_path / "given.txt"
    given.write_text("visible")
    probes = [str(secret), str(REPO / "reference"), str(REPO / "rubrics" / "vae.yaml"),
              "/etc/shadow", str(REPO / "pyproject.toml"), str(REPO / ".git")]
    code = ("import os\nfor p in %r:\n    try:\n        open(p).read() if os.path.isfile(p) "
            "else os.listdir(p)\n        print('READ', p)\n    except OSError as e:\n"
            "        print('DENIED', p, type(e).__name__)\nprint(sorted(os.listdir('.')), "
            "open('given.txt').read())" % probes)
    record, nb, session = run_cells(code, files={"given.txt": given})
    session.close()
    out = stdout(nb, 0)
    assert record.cells[0].status == "ok", record.cells[0]
    assert "READ" not in out, out
    assert "['given.txt'] visible" in out


def test_sandbox_has_no_network_not_even_loopback() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    server.settimeout(5)
    accepted: list[bool] = []

    def accept() -> None:
        try:
            server.accept()
            accepted.append(True)
        except OSError:
            pass

    listener = threading.Thread(target=accept, daemon=True)
    listener.start()
    code = ("import socket\nfor addr in [('127.0.0.1', %d), ('1.1.1.1', 80)]:\n    try:\n"
            "        socket.create_connection(addr, timeout=3); print('CONNECTED', addr)\n"
            "    except OSError as e:\n        print('BLOCKED', addr, e)" % port)
    record, nb, session = run_cells(code)
    session.close()
    server.close()
    listener.join(15)
    assert "CONNECTED" not in stdout(nb, 0) and stdout(nb, 0).count("BLOCKED") == 2
    assert not accepted


def test_sandbox_leaves_no_process_behind() -> None:
    marker = "987654.25"
    code = ("import subprocess\nsubprocess.Popen(['sleep', '%s'], start_new_session=True)\n"
            "subprocess.Popen(['sh', '-c', 'nohup sleep %s &'])\nprint('spawned')" % (marker,
                                                                                      marker))
    record, nb, session = run_cells(code)
    assert "spawned" in stdout(nb, 0)
    time.sleep(0.5)
    assert processes_with(marker), "the daemons should run while the kernel lives"
    session.close()
    deadline = time.time() + 10
    while processes_with(marker) and time.time() < deadline:
        time.sleep(0.2)
    assert not processes_with(marker)


def test_memory_exhaustion_is_a_clear_error_and_the_kernel_lives() -> None:
    record, nb, session = run_cells("x = bytearray(30 * 1024**3)", "print('alive')")
    session.close()
    assert record.cells[0].status == "error"
    assert record.cells[0].error["ename"] == "MemoryError"
    assert record.cells[1].status == "ok" and "alive" in stdout(nb, 1)


def test_infinite_loop_times_out_and_the_run_goes_on() -> None:
    limits = Limits(cell_timeout_s=3, total_timeout_s=60)
    started = time.monotonic()
    record, nb, session = run_cells(
        "a = 1", "while True:\n    try:\n        pass\n    except KeyboardInterrupt:\n        pass",
        "b = a + 1", limits=limits)
    try:
        assert record.cells[1].status == "timeout"
        assert record.cells[2].status == "ok" and record.restarts == 1
        assert KernelProxy(session).get(Name("b")) == 2
    finally:
        session.close()
    assert time.monotonic() - started < 40


def test_whole_run_deadline_stops_a_slow_notebook() -> None:
    limits = Limits(cell_timeout_s=3, total_timeout_s=5)
    record, _, session = run_cells(*["import time; time.sleep(2)"] * 5, limits=limits)
    session.close()
    assert record.timed_out
    assert record.cells[-1].status == "not_run"


def test_kernel_cannot_kill_the_grader_or_see_its_secrets() -> None:
    os.environ["GRADER_TEST_SECRET"] = "hunter2"
    # The secret is printed in a cell of its own: killing the sandbox's own processes may take
    # the kernel down before a print in the same cell has left it.
    look = "import os\nprint('SECRET' if 'GRADER_TEST_SECRET' in os.environ else 'clean')"
    kill = ("import os, signal\nfor pid in (os.getppid(), 1):\n    try:\n"
            "        os.kill(pid, signal.SIGKILL)\n"
            "    except OSError as e:\n        print('kill', pid, type(e).__name__)")
    try:
        record, nb, session = run_cells(look, kill, "print('after')")
        session.close()
    finally:
        del os.environ["GRADER_TEST_SECRET"]
    assert "clean" in stdout(nb, 0) and "SECRET" not in stdout(nb, 0)
    # The grader lived to record every cell: the last ran (in a restarted kernel if the kill
    # took the sandbox down).
    assert record.cells[2].status == "ok" and "after" in stdout(nb, 2), record.cells


def test_a_kernel_killed_between_two_cells_blames_the_cell_that_did_it() -> None:
    """Cell 1 leaves two killers behind: a trap that kills the kernel when the next request
    arrives (before cell 2 begins), and a timer. Cell 2 is retried once, after a replay and a
    pause in which the timer kills the kernel with no cell running: cell 1 is blamed and
    not replayed, and cell 2 runs in a restarted kernel with cell 0's names."""
    killers = ("import os, threading\nfrom ipykernel.kernelbase import Kernel\n"
               "Kernel.instance()._publish_execute_input = lambda *a, **k: os._exit(1)\n"
               "threading.Timer(0.2, os._exit, (1,)).start()")
    record, nb, session = run_cells("x = 41", killers, "print(x + 1)")
    session.close()
    assert record.cells[0].status == "ok" and record.kernel_died
    assert record.cells[1].status == "error"
    assert "after this cell finished" in record.cells[1].error["evalue"]
    assert record.cells[2].status == "ok" and "42" in stdout(nb, 2), record.cells
    assert not record.replay_failed and record.restarts == 2


def test_system_is_read_only_and_file_size_is_capped() -> None:
    limits = Limits(file_size_mb=8, cell_timeout_s=20, total_timeout_s=60)
    code = ("import sys\nfor path in [sys.prefix + '/x', '/usr/x', '/etc/x']:\n    try:\n"
            "        open(path, 'w'); print('WROTE', path)\n    except OSError as e:\n"
            "        print('RO', path, e.errno)\n"
            "try:\n    open('big.bin', 'wb').write(b'0' * (32 * 1024 * 1024)); print('BIG')\n"
            "except OSError as e:\n    print('EFBIG', e.errno)")
    record, nb, session = run_cells(code, limits=limits)
    session.close()
    out = stdout(nb, 0)
    assert "WROTE" not in out and out.count("RO ") == 3 and "EFBIG 27" in out, out


def test_process_count_is_limited() -> None:
    limits = Limits(processes=64, cell_timeout_s=30, total_timeout_s=60)
    code = ("import subprocess\nprocs = []\ntry:\n    for _ in range(200):\n"
            "        procs.append(subprocess.Popen(['sleep', '30']))\nexcept OSError as e:\n"
            "    print('LIMITED at', len(procs))\nfor p in procs: p.kill()")
    record, nb, session = run_cells(code, limits=limits)
    session.close()
    assert "LIMITED at" in stdout(nb, 0)
    assert int(stdout(nb, 0).split("LIMITED at")[1].split()[0]) < 64


def test_output_flood_is_capped() -> None:
    limits = Limits(output_kb=64)
    record, nb, session = run_cells("for i in range(2000):\n    print('x' * 1000)",
                                    "print('done')", limits=limits)
    session.close()
    assert record.output_truncated
    assert sum(len(o.get("text", "")) for c in nb.cells for o in c.outputs) < 80 * 1024


def test_the_kernel_dies_with_the_grader(tmp_path: Path) -> None:
    """SIGKILL the grading process: its kernel and everything the kernel started go too."""

    marker = "424242.75"
    script = tmp_path / "grader_proc.py"
    script.write_text(
        "from grader.sandbox import KernelSession, Limits\n"
        "s = KernelSession({}, Limits())\ns.start()\n"
        "s.client.execute_interactive(\"import subprocess; p = subprocess.Popen(['sleep', '%s'], "
        "start_new_session=True)\", timeout=120)\n"
        "print('ready', flush=True)\nimport time; time.sleep(600)\n" % marker)
    with grading_process(script) as proc:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        assert processes_with(marker)
        sigkill_and_wait(proc, lambda: bool(processes_with(marker)))
        assert not processes_with(marker)


def test_instruments_are_built_in_the_kernel_and_unknown_names_refused() -> None:
    import torch

    from grader.errors import StudentException

    record, _, session = run_cells(
        "import torch\ndef grad_of(f, x):\n    x = x.clone().requires_grad_(True)\n"
        "    f(x).sum().backward()\n    return x.grad")
    try:
        kernel = KernelProxy(session)
        w = torch.arange(4, dtype=torch.float64)
        critic = kernel.instrument("basic", "AffineCritic", w, 0.5)
        x = torch.ones(3, 1, 2, 2, dtype=torch.float64)
        assert torch.equal(kernel.call(critic, x), torch.full((3,), 6.5, dtype=torch.float64))
        assert torch.equal(kernel.call(Name("grad_of"), critic, x, no_grad=False),
                           w.reshape(1, 1, 2, 2).expand(3, 1, 2, 2))
        for module, name in (("basic", "nn"), ("basic", "_private"), ("os", "system"),
                             ("..sandbox", "x")):
            with pytest.raises(StudentException, match="instrument|No module"):
                kernel.instrument(module, name)
    finally:
        session.close()


def test_a_last_cell_that_hangs_or_crashes_keeps_the_earlier_cells_definitions() -> None:
    limits = Limits(cell_timeout_s=3, total_timeout_s=60)
    for last in ("while True:\n    pass", "import os\nos._exit(1)"):
        record, _, session = run_cells("a = 41", "b = a + 1", last, limits=limits)
        try:
            assert record.cells[2].status in ("timeout", "error")
            assert record.restarts in (1, 2)      # 2: it died before it was seen to begin
            assert KernelProxy(session).get(Name("b")) == 42      # replayed in the new kernel
        finally:
            session.close()


FLOOD = ("from ipykernel.kernelbase import Kernel\n"
         "def flood(where, mb, frames=1):\n"
         "    k = Kernel.instance()\n"
         "    ident = k._parent_ident['shell'] if where == 'shell' else None\n"
         "    sock = k.shell_stream if where == 'shell' else k.iopub_socket\n"
         "    k.session.send(sock, 'display_data', {'data': {}, 'metadata': {}},\n"
         "                   buffers=[bytes(mb << 20)] * frames, ident=ident)\n"
         "    return 1")


def test_an_oversize_message_ends_its_cell_and_the_run_goes_on() -> None:
    """One 900 MiB frame on iopub, then 64 MiB in 8 MiB frames on shell (each frame under
    the shell's cap, the message over it): each cell ends at once, the rest runs."""
    record, _, session = run_cells("a = 41", FLOOD, "flood('iopub', 900)",
                                   "flood('shell', 8, frames=8)", "b = a + 1")
    try:
        for position, channel in ((2, "iopub"), (3, "shell")):
            cell = record.cells[position]
            assert cell.status == "error" and cell.error["ename"] == "OversizeMessage", cell
            assert f"oversize message on its {channel} channel" in cell.error["evalue"]
            assert cell.duration_s < 20, cell
        assert "limits.message_mb is 96 MiB" in record.cells[2].error["evalue"]
        assert record.cells[4].status == "ok" and record.restarts == 2
        assert KernelProxy(session).get(Name("b")) == 42
    finally:
        session.close()


def test_an_oversize_message_during_a_call_is_a_protocol_error() -> None:
    from grader.errors import ProtocolError

    record, _, session = run_cells(FLOOD)
    try:
        kernel = KernelProxy(session)
        assert kernel.call(Name("flood"), "iopub", 1, 4) == 1     # 4 MiB: a message like any
        started = time.monotonic()
        with pytest.raises(ProtocolError, match="oversize message on its iopub channel"):
            kernel.call(Name("flood"), "iopub", 64, 4)
        assert time.monotonic() - started < 15
        assert not session.is_alive()
        with pytest.raises(ProtocolError, match="oversize"):
            kernel.get(Name("flood"))
    finally:
        session.close()


def test_a_client_made_elsewhere_is_replaced_by_a_bounded_one() -> None:
    """A warm pool launches the kernel with a client of its own; confirm swaps it."""
    from jupyter_client import BlockingKernelClient

    from grader.sandbox.kernel import is_bounded

    session = KernelSession({}, LIMITS)
    try:
        session.launch()
        client = BlockingKernelClient()
        client.load_connection_info(session.km.get_connection_info())
        client.start_channels()
        assert not is_bounded(client)
        session.confirm(client)
        assert session.client is not client and is_bounded(session.client)
        assert not client.channels_running
        session.client.execute_interactive("x = 7", timeout=60)
        assert KernelProxy(session).get(Name("x")) == 7
    finally:
        session.close()
