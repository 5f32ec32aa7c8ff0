"""A relay on every connection between the grader and a kernel that bounds each message.

libzmq's ``MAXMSGSIZE`` bounds one *frame*, not one message: a kernel that sends a message
of a hundred 60 MiB frames (views of one buffer, so it costs the kernel 60 MiB) has all
6 GB held by the grader's libzmq until the last frame arrives, whatever that option says.
So the grader's sockets never connect to the kernel's: each connects to a Unix socket of
this relay, in a directory of the grader's own, and the relay connects to the kernel's
socket and copies bytes both ways. On the way from the kernel it follows ZMTP 3 framing
(RFC 23/37: a 64-byte greeting, then frames of a flags octet, a 1- or 8-octet size and a
body) and adds up the frames of each message; the header of the frame that would take a
message past its channel's cap is never forwarded: the connection is cut, and the owner
is told (it stops the kernel and ends the cell or call with that reason). The grader's
libzmq therefore holds at most one message per connection in flight, never larger than
the cap; how many *complete* messages it may queue is the receive high-water mark, which
:mod:`grader.sandbox.kernel` sets on the grader's sockets.

The relay parses nothing else: no content is decoded here, and the grader-to-kernel
direction is copied as it is.
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import threading
import time
from pathlib import Path
from typing import Callable

__all__ = ["FrameMeter", "Relay", "Violation"]

_CHUNK = 1 << 20
_GREETING = 64
_FRAME_COST = 64          # what libzmq keeps per frame besides its body (a zmq_msg_t)
_NULL_MECHANISM = b"NULL".ljust(20, b"\0")
_MORE, _LONG, _COMMAND = 0x01, 0x02, 0x04


class Violation(Exception):
    """The kernel's byte stream broke a rule of the relay (a message too large, bad framing)."""

    def __init__(self, reason: str, size: int = 0) -> None:
        super().__init__(reason)
        self.reason, self.size = reason, size


class FrameMeter:
    """Follows the ZMTP 3 frames of one kernel-to-grader stream; raises past ``cap`` bytes.

    Only the headers are read. A message is its frames up to one without the MORE flag;
    a command frame (READY, PING) inside an open message counts towards it, and each frame
    counts ``_FRAME_COST`` bytes besides its body (a message of a billion empty frames
    would cost the grader's libzmq 64 GB). Anything but
    ZMTP 3 with the NULL mechanism (what every libzmq 4 kernel speaks, and what the
    grader's sockets accept) is refused: older framings and encrypted ones would hide
    message boundaries.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._greeting = bytearray()
        self._head = bytearray()
        self._body = 0            # bytes of the current frame's body still to come
        self._size = 0            # bytes of the current message so far
        self._open = False        # inside a multipart message

    def feed(self, data: bytes) -> None:
        """Account for ``data``, the next bytes from the kernel. Raises Violation."""
        pos, end = 0, len(data)
        if len(self._greeting) < _GREETING:
            pos = min(_GREETING - len(self._greeting), end)
            self._greeting += data[:pos]
            self._check_greeting()
        while pos < end:
            if self._body:
                step = min(self._body, end - pos)
                self._body -= step
                pos += step
                continue
            self._head.append(data[pos])
            pos += 1
            if len(self._head) == (9 if self._head[0] & _LONG else 2):
                self._frame(bytes(self._head))
                self._head.clear()

    def _check_greeting(self) -> None:
        g = self._greeting
        if (g[:1] not in (b"", b"\xff") or (len(g) > 9 and g[9] != 0x7F)
                or (len(g) > 10 and g[10] < 3)):
            raise Violation("the kernel's socket does not speak ZMTP 3")
        if len(g) >= 32 and bytes(g[12:32]) != _NULL_MECHANISM:
            raise Violation("the kernel's socket asks for a security mechanism")

    def _frame(self, head: bytes) -> None:
        flags = head[0]
        if flags & 0xF8:
            raise Violation(f"malformed ZMTP frame (flags {flags:#x})")
        size = int.from_bytes(head[1:], "big")
        self._size += size + _FRAME_COST
        if self._size > self.cap:
            raise Violation("oversize message", self._size)
        if flags & _MORE:
            self._open = True
        elif not (flags & _COMMAND and self._open):
            self._size, self._open = 0, False
        self._body = size


class Relay:
    """Unix-socket relays for one kernel's channels (shell, iopub, stdin, control, hb).

    Args:
        caps: channel -> the largest message (bytes) the kernel may send on it.
        on_violation: called once, from a relay thread, with the channel and the
            Violation, when the kernel first breaks a rule; the connection is cut.
        connect_timeout_s: how long a grader connection waits for the kernel's socket
            to appear (the kernel is still starting).
    """

    def __init__(self, caps: dict[str, int],
                 on_violation: Callable[[str, Violation], None],
                 connect_timeout_s: float = 60.0) -> None:
        self.caps, self.connect_timeout_s = dict(caps), connect_timeout_s
        self.violation: tuple[str, Violation] | None = None
        self._on_violation = on_violation
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._listeners: dict[socket.socket, tuple[str, str]] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread: threading.Thread | None = None

    def listen(self, relay_ip: str, kernel_ip: str, ports: dict[str, int]) -> None:
        """Accept the grader's connections at ``relay_ip-PORT``, relayed to ``kernel_ip-PORT``."""
        if self._thread is not None:
            return
        for channel, port in ports.items():
            path = f"{relay_ip}-{port}"
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(path)
            os.chmod(path, 0o600)
            listener.listen(16)
            self._listeners[listener] = (channel, f"{kernel_ip}-{port}")
        self._thread = threading.Thread(target=self._accept_loop, name="grader-relay",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop accepting, cut every connection and remove the relay's sockets (once)."""
        if self._closed.is_set():
            return
        self._closed.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            sockets, self._sockets = list(self._sockets), set()
        for sock in sockets:
            _shut(sock)
        for listener in self._listeners:
            path = listener.getsockname()
            listener.close()
            try:
                os.unlink(path)
            except OSError:
                pass
        self._wake_r.close()
        self._wake_w.close()

    def _accept_loop(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._wake_r, selectors.EVENT_READ)
        for listener in self._listeners:
            selector.register(listener, selectors.EVENT_READ)
        try:
            while not self._closed.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self._wake_r or self._closed.is_set():
                        return
                    grader_side, _ = key.fileobj.accept()  # type: ignore[union-attr]
                    channel, target = self._listeners[key.fileobj]  # type: ignore[index]
                    self._track(grader_side)
                    threading.Thread(target=self._serve, args=(channel, target, grader_side),
                                     name=f"grader-relay-{channel}", daemon=True).start()
        finally:
            selector.close()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            if self._closed.is_set():
                _shut(sock)
            else:
                self._sockets.add(sock)

    def _connect(self, target: str) -> socket.socket | None:
        """The kernel's socket at ``target``, waiting while it is not there yet."""
        deadline = time.monotonic() + self.connect_timeout_s
        while (not self._closed.is_set() and self.violation is None
               and time.monotonic() < deadline):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(5)           # a kernel that never accepts must not hang us
            try:
                sock.connect(target)
                sock.settimeout(None)
                return sock
            except OSError as exc:
                sock.close()
                if exc.errno not in (errno.ENOENT, errno.ECONNREFUSED):
                    return None
            self._closed.wait(0.05)
        return None

    def _serve(self, channel: str, target: str, grader_side: socket.socket) -> None:
        if self.violation is not None:        # the kernel is being stopped: no new pairs
            self._drop(grader_side)
            return
        kernel_side = self._connect(target)
        if kernel_side is None:
            self._drop(grader_side)
            return
        self._track(kernel_side)
        down = threading.Thread(target=self._copy, args=(grader_side, kernel_side),
                                name=f"grader-relay-{channel}-down", daemon=True)
        down.start()
        meter = FrameMeter(self.caps[channel])
        try:
            while True:
                data = kernel_side.recv(_CHUNK)
                if not data:
                    break
                meter.feed(data)
                grader_side.sendall(data)
        except Violation as exc:
            self._violated(channel, exc)
        except OSError:
            pass
        finally:
            _shut(kernel_side)
            _shut(grader_side)
            down.join()
            self._drop(kernel_side)
            self._drop(grader_side)

    @staticmethod
    def _copy(source: socket.socket, sink: socket.socket) -> None:
        """Grader to kernel, as it is; ends both sides when either does."""
        try:
            while True:
                data = source.recv(_CHUNK)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            _shut(source)
            _shut(sink)

    def _violated(self, channel: str, exc: Violation) -> None:
        with self._lock:
            first = self.violation is None
            if first:
                self.violation = (channel, exc)
        if first:
            self._on_violation(channel, exc)

    def _drop(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
        sock.close()


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def relay_dir(root: Path) -> Path:
    """A directory for the relay's sockets that only the grader's user can enter."""
    path = root / "relay"
    path.mkdir(mode=0o700, exist_ok=True)
    return path
