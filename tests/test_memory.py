"""The grader's memory is bounded whatever a kernel sends.

A kernel owns its end of every ZeroMQ connection: it can publish huge binary buffers through
its own session, bypassing JSON and the output cap. The relay (grader/sandbox/relay.py) cuts a
message before it outgrows its channel's cap, the grader's sockets hold one unread message, and
the cell or call that flooded ends with a verdict that says so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import zmq

from grader.sandbox import Limits
from grader.sandbox.kernel import channel_caps
from grader.sandbox.relay import FrameMeter, Relay, Violation

REPO = Path(__file__).resolve().parent.parent
MIB = 1 << 20
GREETING = b"\xff" + bytes(8) + b"\x7f" + bytes([3, 1]) + b"NULL".ljust(20, b"\0") + bytes(32)


def frame(size: int, more: bool = False, command: bool = False) -> bytes:
    """A ZMTP 3 frame header for a body of ``size`` bytes (the body itself left out)."""
    flags = (0x01 if more else 0) | (0x04 if command else 0)
    if size > 255:
        return bytes([flags | 0x02]) + size.to_bytes(8, "big")
    return bytes([flags, size])


def test_the_meter_counts_whole_messages_not_frames() -> None:
    meter = FrameMeter(cap=10 * MIB)
    ready = frame(30, command=True) + bytes(30)
    meter.feed(GREETING + ready)
    for _ in range(3):                   # 9 MiB messages, each in three frames, pass
        meter.feed(frame(3 * MIB, more=True))
        meter.feed(bytes(3 * MIB))
        meter.feed(frame(3 * MIB, more=True) + bytes(3 * MIB) + frame(3 * MIB) + bytes(3 * MIB))
    meter.feed(frame(3 * MIB, more=True) + bytes(3 * MIB) + frame(3 * MIB, more=True))
    meter.feed(bytes(3 * MIB) + frame(3 * MIB, more=True) + bytes(3 * MIB))
    with pytest.raises(Violation) as caught:   # the fourth 3 MiB frame of one message
        meter.feed(frame(3 * MIB))
    assert 12 * MIB < caught.value.size < 12 * MIB + 1024    # frames cost a little more


def test_the_meter_charges_each_frame() -> None:
    """A message of empty frames costs the grader's libzmq a zmq_msg_t per frame."""
    meter = FrameMeter(cap=MIB)
    meter.feed(GREETING)
    with pytest.raises(Violation, match="oversize"):
        meter.feed(frame(0, more=True) * (MIB // 2))


def test_the_meter_reads_headers_split_anywhere() -> None:
    stream = GREETING + frame(2 * MIB, more=True) + bytes(2 * MIB) + frame(9 * MIB)
    for size in (1, 7, 4096):
        meter = FrameMeter(cap=10 * MIB)
        with pytest.raises(Violation, match="oversize"):
            for at in range(0, len(stream), size):
                meter.feed(stream[at:at + size])
        whole = FrameMeter(cap=12 * MIB)
        for at in range(0, len(stream), size):
            whole.feed(stream[at:at + size])


@pytest.mark.parametrize("greeting, why", [
    (b"\x01\x00hello", "ZMTP 3"),                                # ZMTP 1.0: no signature
    (GREETING[:10] + bytes([2]) + GREETING[11:], "ZMTP 3"),     # ZMTP 2.0
    (GREETING[:12] + b"CURVE".ljust(20, b"\0") + GREETING[32:], "mechanism"),
])
def test_the_meter_refuses_framings_that_hide_message_boundaries(greeting: bytes,
                                                                 why: str) -> None:
    with pytest.raises(Violation, match=why):
        FrameMeter(cap=MIB).feed(greeting)


def test_caps_leave_room_for_the_largest_reply() -> None:
    caps = channel_caps(Limits())
    assert caps["iopub"] == 96 * MIB and caps["shell"] == 16 * MIB and caps["hb"] <= 4096
    assert channel_caps(Limits(reply_mb=120))["iopub"] >= 160 * MIB     # base64 adds a third
    assert channel_caps(Limits(message_mb=8, reply_mb=4))["shell"] == 8 * MIB


def test_the_relay_cuts_a_many_frame_message_libzmq_would_keep(tmp_path: Path) -> None:
    """MAXMSGSIZE bounds frames: 100 x 8 MiB frames pass 10 MiB. The relay bounds the message."""
    seen: list[tuple[str, Violation]] = []
    relay = Relay({"iopub": 10 * MIB}, lambda channel, exc: seen.append((channel, exc)))
    relay.listen(str(tmp_path / "relay"), str(tmp_path / "kernel"), {"iopub": 1})
    context = zmq.Context()
    pub = context.socket(zmq.PUB)
    pub.bind(f"ipc://{tmp_path}/kernel-1")
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.MAXMSGSIZE, 10 * MIB)
    sub.connect(f"ipc://{tmp_path}/relay-1")
    try:
        got: list[list[int]] = []
        deadline = time.monotonic() + 20
        while not got and time.monotonic() < deadline:   # the subscription must get through
            pub.send_multipart([b"hello", bytes(9 * MIB)])
            if sub.poll(200):
                got.append([len(f) for f in sub.recv_multipart()])
        assert got == [[5, 9 * MIB]]
        while sub.poll(300):           # hellos sent while the subscription was on its way
            assert [len(f) for f in sub.recv_multipart()] == [5, 9 * MIB]
        pub.send_multipart([bytes(8 * MIB)] * 100, copy=False)
        deadline = time.monotonic() + 20
        while not seen and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [channel for channel, _ in seen] == ["iopub"]
        assert 16 * MIB < seen[0][1].size < 16 * MIB + 1024     # cut at the second frame
        assert not sub.poll(500)       # the cut message never reaches the grader's socket
    finally:
        relay.close()
        context.destroy(linger=0)
    assert not list(tmp_path.glob("relay-*"))


FLOODS = '''
from ipykernel.kernelbase import Kernel

def _flood(where, mb, frames=1, times=1):
    k = Kernel.instance()
    ident = k._parent_ident['shell'] if where == 'shell' else None
    sock = k.shell_stream if where == 'shell' else k.iopub_socket
    for _ in range(times):
        k.session.send(sock, 'display_data', {'data': {}, 'metadata': {}},
                       buffers=[bytes(mb << 20)] * frames, ident=ident)
'''
BERNOULLI_FLOODS = '''
_bll = bernoulli_log_likelihood

def bernoulli_log_likelihood(x, logits):
    _flood('iopub', 64, frames=24)
    return _bll(x, logits)
'''
GRADE = '''
import json, sys
from grader.pipeline import grade
from grader.report import validate_report
report = grade(sys.argv[1], course=sys.argv[2], only={"kl_known_values", "bernoulli_stable"})
validate_report(report)
peak = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
print(json.dumps({"report": report, "peak_mb": int(peak.split()[1]) / 1024}))
'''


@pytest.mark.kernel
def test_a_flooding_notebook_leaves_the_grader_under_1_5_gib(make_submission) -> None:
    """Three 900 MiB messages on iopub (the reported attack), 1.5 GiB in 64 MiB frames on
    shell and, during a grader call, on iopub: graded in a subprocess, whose own peak
    resident memory (VmHWM) must stay under 1.5 GiB. Unbounded, this peaks at several GB."""
    sub = make_submission(FLOODS, "_flood('iopub', 900, times=3)",
                          "_flood('shell', 64, frames=24)", BERNOULLI_FLOODS, "print('after')")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", GRADE, str(sub), str(REPO)], cwd=REPO,
                          capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    peak, report = result["peak_mb"], result["report"]
    print(f"peak {peak:.0f} MiB, graded in {time.monotonic() - started:.0f} s")
    assert peak < 1536, f"the grader peaked at {peak:.0f} MiB"
    cells = [c for c in report["execution"]["cells"] if c["error"]]
    assert [c["error"]["ename"] for c in cells] == ["OversizeMessage"] * 2, cells
    assert "iopub channel (900 MiB" in cells[0]["error"]["evalue"]
    assert "shell channel" in cells[1]["error"]["evalue"]
    assert all(c["duration_s"] < 30 for c in cells), cells
    items = {i["id"]: i for i in report["items"]}
    assert items["kl_known_values"]["outcome"] == "passed"
    assert items["bernoulli_stable"]["outcome"] == "error"
    assert "oversize message on its iopub channel" in items["bernoulli_stable"]["message"]


def test_relay_threads_end_with_the_relay(tmp_path: Path) -> None:
    before = threading.active_count()
    relay = Relay({"shell": MIB}, lambda *_: None, connect_timeout_s=5)
    relay.listen(str(tmp_path / "relay"), str(tmp_path / "kernel"), {"shell": 1})
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.connect(f"ipc://{tmp_path}/relay-1")       # no kernel yet: the relay waits
    time.sleep(0.3)
    relay.close()
    context.destroy(linger=0)
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before
