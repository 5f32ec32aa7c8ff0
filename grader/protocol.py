"""The trust boundary: the grader asks the student's kernel to call its own code.

Requests carry the grader's inputs (tensors as raw bytes in base64 JSON); replies
come back as one display_data message and are decoded here without pickle, with
every tensor's dtype, shape and byte count checked and the whole reply bounded
in size. Nothing a reply says is believed: checks compare it with what the
grader computes itself.
"""

from __future__ import annotations

import base64
import json
import math
import queue
import re
import secrets
import time
import zlib
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Callable, NoReturn

import numpy as np
import torch

from .errors import (ExecutionTimeout, KernelDied, ProtocolError, StudentException,
                     SubmissionError)
from .sandbox import KernelSession

__all__ = ["Name", "Handle", "Attr", "Back", "Call", "Get", "KernelProxy", "Outcome",
           "DenseBudget", "encode", "decode"]

MIME = "application/vnd.grader.reply+json"
_DTYPES = {"float32": np.float32, "float64": np.float64, "int64": np.int64, "int32": np.int32,
           "int16": np.int16, "int8": np.int8, "uint8": np.uint8, "bool": np.bool_}
_MAX_DEPTH = 16
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_MAX_ITEMS = 100_000
_MAX_PROMPT = 4096            # bytes of one input_request the grader will read (remote objects)
_INLINE_BYTES = 64 << 10      # a request up to this size goes as code, a larger one over stdin
_ZIP_MIN = 4 << 10            # a tensor of this many bytes or more travels zlib-compressed
_DENSE_DEFAULT = 64 << 20     # bytes of tensors one decoded value may expand to (no limits given)

StdinHandler = Callable[[Any], Any]


@dataclass(frozen=True)
class Name:
    """A global name in the student's notebook, e.g. ``Name("VAE")``."""

    name: str

    def wire(self) -> dict[str, Any]:
        return {"$name": self.name}


@dataclass(frozen=True)
class Handle:
    """An object that lives in the kernel (a model instance); only its id crosses."""

    key: str
    type: str = ""

    def wire(self) -> dict[str, Any]:
        return {"$handle": self.key}


@dataclass(frozen=True)
class Attr:
    """An attribute of something in the kernel: ``Attr(Handle("h1"), "encoder")``."""

    obj: Name | Handle | Attr
    name: str

    def wire(self) -> dict[str, Any]:
        return {"$attr": [self.obj.wire(), self.name]}


@dataclass(frozen=True)
class Back:
    """What the call ``steps`` places earlier in the same :meth:`KernelProxy.run` kept
    (``keep=True``): ``Back(1)`` is the previous call's result, left in the kernel."""

    steps: int = 1

    def wire(self) -> dict[str, Any]:
        return {"$back": self.steps}


Ref = Name | Handle | Attr | Back


@dataclass(frozen=True)
class Call:
    """One call for :meth:`KernelProxy.run`: ``target(*args, **kwargs)`` with the options
    of :meth:`KernelProxy.call` (``keep`` leaves the result in the kernel for a later
    ``Back``)."""

    target: Ref
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    keep: bool = False
    no_grad: bool = True
    dtype: str | None = None

    def request(self) -> dict[str, Any]:
        return {"op": "call", "target": self.target.wire(), "args": [encode(a) for a in self.args],
                "kwargs": {k: encode(v) for k, v in self.kwargs.items()}, "seed": self.seed,
                "dtype": self.dtype, "no_grad": self.no_grad, "keep": self.keep}


@dataclass(frozen=True)
class Get:
    """One step for :meth:`KernelProxy.run`: the value of ``target`` as data (``get``)."""

    target: Ref

    def request(self) -> dict[str, Any]:
        return {"op": "get", "target": self.target.wire(), "keep": False}


def encode(value: Any) -> Any:
    """Grader data -> JSON for the kernel."""
    if isinstance(value, (Name, Handle, Attr, Back)):
        return value.wire()
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        return {"$tensor": {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape),
                            **_packed(t.numpy().tobytes())}}
    if isinstance(value, float) and not math.isfinite(value):
        return {"$float": repr(value)}
    if isinstance(value, tuple):
        return {"$tuple": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {"$dict": {str(k): encode(v) for k, v in value.items()}}
    return value


def _packed(raw: bytes) -> dict[str, str]:
    """A tensor's bytes as base64 text (``data``), or, where zlib halves them, compressed
    (``zdata``): the causality checks' cotangents are almost all zeros, their gradients half,
    and 8 MB of base64 each way cost more than compressing them."""
    if len(raw) >= _ZIP_MIN:
        packed = zlib.compress(raw, 1)
        if 4 * len(packed) <= 3 * len(raw):
            return {"zdata": base64.b64encode(packed).decode("ascii")}
    return {"data": base64.b64encode(raw).decode("ascii")}


class DenseBudget:
    """The bytes of tensors one reply may decode to. A compressed tensor is inflated only
    within it (``zlib`` expands up to 1000-fold), so a reply the size limit lets through
    cannot make the grader allocate more than a plain reply of that size could."""

    def __init__(self, limit: int) -> None:
        self.left = limit

    def take(self, nbytes: int) -> None:
        if nbytes > self.left:
            raise ProtocolError(f"the reply's tensors expand past the limit of "
                                f"{self.left + nbytes} bytes")
        self.left -= nbytes


def _tensor_bytes(spec: dict[str, Any], nbytes: int, budget: DenseBudget) -> bytes:
    budget.take(nbytes)
    if "data" in spec:
        if not isinstance(spec["data"], str):
            raise ProtocolError("tensor data is not base64 text")
        return base64.b64decode(spec["data"], validate=True)
    if not isinstance(spec["zdata"], str):
        raise ProtocolError("tensor data is not base64 text")
    inflate = zlib.decompressobj()
    try:
        raw = inflate.decompress(base64.b64decode(spec["zdata"], validate=True), nbytes)
    except zlib.error as exc:
        raise ProtocolError(f"compressed tensor data does not inflate: {exc}") from None
    if not inflate.eof or inflate.unconsumed_tail or inflate.unused_data:
        raise ProtocolError(f"compressed tensor data does not inflate to {nbytes} bytes")
    return raw


def _decode_tensor(spec: Any, budget: DenseBudget) -> torch.Tensor:
    if not isinstance(spec, dict) or set(spec) not in ({"dtype", "shape", "data"},
                                                       {"dtype", "shape", "zdata"}):
        raise ProtocolError("malformed tensor in the kernel's reply")
    dtype = _DTYPES.get(spec["dtype"]) if isinstance(spec["dtype"], str) else None
    shape = spec["shape"]
    if dtype is None:
        raise ProtocolError(f"tensor of unsupported dtype {spec['dtype']!r} in the reply")
    if not (isinstance(shape, list) and len(shape) <= 8
            and all(isinstance(s, int) and 0 <= s <= 1 << 31 for s in shape)):
        raise ProtocolError(f"tensor of invalid shape {shape!r} in the reply")
    count = math.prod(shape)
    raw = _tensor_bytes(spec, count * np.dtype(dtype).itemsize, budget)
    if len(raw) != count * np.dtype(dtype).itemsize:
        raise ProtocolError(f"tensor of shape {shape} carries {len(raw)} bytes, not "
                            f"{count * np.dtype(dtype).itemsize}")
    array = np.frombuffer(raw, dtype=dtype).reshape(shape)
    return torch.from_numpy(array.copy())


def decode(value: Any, depth: int = 0, budget: DenseBudget | None = None) -> Any:
    """JSON from the kernel -> tensors, numbers, tuples, dicts and handles; never code.
    ``budget``: the bytes its tensors may take (shared by the values of one reply)."""
    budget = DenseBudget(_DENSE_DEFAULT) if budget is None else budget
    if depth > _MAX_DEPTH:
        raise ProtocolError("reply nested too deeply")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        if len(value) > _MAX_ITEMS:
            raise ProtocolError("reply list too long")
        return [decode(v, depth + 1, budget) for v in value]
    if not isinstance(value, dict) or len(value) == 0:
        raise ProtocolError(f"unexpected {type(value).__name__} in the kernel's reply")
    if "$tensor" in value:
        return _decode_tensor(value["$tensor"], budget)
    if "$float" in value and value["$float"] in ("nan", "inf", "-inf"):
        return float(value["$float"])
    if "$tuple" in value and isinstance(value["$tuple"], list):
        return tuple(decode(v, depth + 1, budget) for v in value["$tuple"])
    if "$dict" in value and isinstance(value["$dict"], dict):
        return {str(k): decode(v, depth + 1, budget) for k, v in value["$dict"].items()}
    if "$handle" in value and isinstance(value["$handle"], str):
        return Handle(value["$handle"][:64], str(value.get("type", ""))[:200])
    raise ProtocolError(f"unknown value in the kernel's reply: keys {sorted(value)[:5]}")


def _payload_first(nonce: str, b64: str, then: StdinHandler | None) -> StdinHandler:
    """A stdin handler that answers the kernel's question for request ``nonce`` with the
    request (once), and every other question as ``then`` does (none: a refusal)."""
    state = {"sent": False}

    def answer(question: Any) -> Any:
        if (not state["sent"] and isinstance(question, dict)
                and question.get("$request") == nonce):
            state["sent"] = True
            return b64
        if then is None:
            return {"ok": False, "error": "no input is available while the grader calls"}
        return then(question)

    return answer


class Outcome:
    """One request's answer: its decoded value, or the ``SubmissionError`` it ended in (also
    what a task of :func:`grader.batching.together` ended with: its value or its exception)."""

    __slots__ = ("_value", "error")

    def __init__(self, value: Any = None, error: BaseException | None = None) -> None:
        self._value, self.error = value, error

    def value(self) -> Any:
        """The answer; raises the error instead when there is one."""
        if self.error is not None:
            raise self.error
        return self._value


class KernelProxy:
    """Calls into one student kernel. Every method may raise a ``SubmissionError``.

    Raises:
        StudentException: the student's code raised (name, value, traceback).
        ExecutionTimeout: the call exceeded ``limits.call_timeout_s``.
        KernelDied: the kernel exited.
        ProtocolError: the reply was malformed or too large.
    """

    def __init__(self, session: KernelSession, device: str | None = None) -> None:
        self.session = session
        self.device = None if device in (None, "cpu") else device
        self.calls = 0            # round trips (execute requests)
        self.steps = 0            # requests answered inside batches
        self.kernel_s = 0.0       # seconds the kernel says it spent answering (timings only)
        self._installed = False
        self._stdin_failure: Exception | None = None

    def install(self) -> None:
        """Send the kernel half of the protocol (probe_server.py) into the kernel."""
        source = resources.files("grader.sandbox").joinpath("probe_server.py").read_text()
        code = ("import types as _t, sys as _s\n_m = _t.ModuleType('__grader_probe__')\n"
                f"exec(compile({source!r}, '<grader-probe>', 'exec'), _m.__dict__)\n"
                "_s.modules['__grader_probe__'] = _m\ndel _t, _s, _m\n")
        self._execute(code, expect_reply=False)
        self._installed = True

    def request(self, op: str, timeout: float | None = None,
                stdin_handler: StdinHandler | None = None, **fields: Any) -> Any:
        """One request, answered now; or, inside :func:`grader.batching.together`, one step
        of the batch that the grader sends once every task waits on the kernel (a call with
        its own timeout or a ``stdin_handler`` always goes on its own)."""
        if timeout is None and stdin_handler is None:
            from .batching import batched

            routed = batched(self, op, fields)
            if routed is not None:
                return routed.value()
        reply = self._send({"op": op, **fields}, timeout, stdin_handler)
        return self._outcome(reply, self._budget()).value()

    def run(self, calls: list[Call | Get]) -> list[Outcome]:
        """``calls`` in order, as one request (one round trip, or one step of the batch
        inside :func:`grader.batching.together`); a call may use an earlier one's kept
        result through :class:`Back` (a chain: each step on the last one's output)."""
        from .batching import batched_many

        steps = [c.request() for c in calls]
        routed = batched_many(self, steps)
        return routed if routed is not None else self.request_many(steps)

    def request_many(self, steps: list[dict[str, Any]]) -> list[Outcome]:
        """Answer ``steps`` (each ``{"op": ..., **fields}``) in one round trip, in order.

        Each step's outcome stands alone: a step whose code raises, runs past
        ``call_timeout_s`` (then the later steps are not run) or cannot be decoded fails on
        its own; a failure of the whole request (the kernel died) is every step's outcome.
        Answers past half of ``reply_mb`` are deferred by the kernel and asked again, so a
        large batch costs more round trips, never an oversized reply.
        """
        self.steps += len(steps)
        outcomes: list[Outcome] = []
        limits = self.session.limits
        while len(outcomes) < len(steps):
            rest = steps[len(outcomes):]
            timeout = max(limits.call_timeout_s,
                          min(limits.call_timeout_s * len(rest), limits.total_timeout_s))
            try:
                sent = self._send({"op": "batch", "steps": rest, "resume": bool(outcomes),
                                   "step_timeout_s": limits.call_timeout_s,
                                   "max_bytes": limits.reply_mb << 19}, timeout + 5.0, None)
                if sent.get("ok") is not True:
                    self._outcome(sent).value()        # raises the kernel's own error
                reply = sent.get("value")
                if not isinstance(reply, list) or len(reply) != len(rest):
                    raise ProtocolError("the kernel's batch reply does not answer its steps")
            except SubmissionError as exc:
                return outcomes + [Outcome(error=exc)] * len(rest)
            answered, budget = 0, self._budget()
            for item in reply:
                if isinstance(item, dict) and item.get("deferred") is True:
                    break
                outcomes.append(self._step_outcome(item, limits.call_timeout_s, budget))
                answered += 1
            if not answered:
                error = ProtocolError("the kernel deferred every step of a batch")
                return outcomes + [Outcome(error=error)] * len(rest)
        return outcomes

    def _budget(self) -> DenseBudget:
        """What one reply's tensors may expand to: what a plain reply of ``reply_mb`` holds."""
        return DenseBudget(self.session.limits.reply_mb << 20)

    def _step_outcome(self, item: Any, seconds: float, budget: DenseBudget) -> Outcome:
        if isinstance(item, dict) and item.get("timeout") is True:
            return Outcome(error=ExecutionTimeout(
                f"the call took longer than {seconds:g} s and was interrupted"))
        if isinstance(item, dict) and item.get("skipped") is True:
            return Outcome(error=ExecutionTimeout(
                "not run: an earlier call of the same request ran out of time"))
        try:
            return self._outcome(item, budget)
        except ProtocolError as exc:
            return Outcome(error=exc)

    def _send(self, request: dict[str, Any], timeout: float | None,
              stdin_handler: StdinHandler | None) -> Any:
        """Execute one request in the kernel; its raw reply (checked to answer it)."""
        if not self._installed:
            self.install()
        nonce = secrets.token_hex(8)
        payload = json.dumps({**request, "nonce": nonce, "device": self.device},
                             allow_nan=False)
        b64 = base64.b64encode(payload.encode()).decode("ascii")
        probe = "__import__('sys').modules['__grader_probe__']"
        if len(b64) <= _INLINE_BYTES:
            code = f"{probe}.handle({b64!r})"
        else:
            # a large request goes as the answer to the kernel's own first question on the
            # stdin channel: as code, IPython would transform and compile megabytes of text
            code = f"{probe}.handle_stdin({json.dumps({'$request': nonce})!r})"
            stdin_handler = _payload_first(nonce, b64, stdin_handler)
        sent = time.monotonic()
        reply = self._execute(code, expect_reply=True, timeout=timeout,
                              stdin_handler=stdin_handler)
        if not isinstance(reply, dict) or reply.get("nonce") != nonce:
            raise ProtocolError("the kernel's reply does not answer the request")
        elapsed = reply.get("elapsed_s")
        if isinstance(elapsed, (int, float)) and math.isfinite(elapsed):
            # what the kernel says it spent answering: a timing for reports, never a verdict
            self.kernel_s += min(max(float(elapsed), 0.0), time.monotonic() - sent)
        return reply

    @staticmethod
    def _outcome(reply: Any, budget: DenseBudget | None = None) -> Outcome:
        """A reply (or a batch item) as an Outcome; ProtocolError if it is malformed."""
        if not isinstance(reply, dict):
            raise ProtocolError("malformed reply from the kernel")
        if reply.get("ok") is True:
            return Outcome(value=decode(reply.get("value"), budget=budget))
        if reply.get("ok") is False:
            return Outcome(error=StudentException(str(reply.get("ename", "Exception"))[:200],
                                                  str(reply.get("evalue", ""))[:2000],
                                                  str(reply.get("traceback", ""))[:8000]))
        raise ProtocolError("malformed reply from the kernel")

    def call(self, target: Ref, *args: Any, seed: int | None = None, dtype: str | None = None,
             no_grad: bool = True, keep: bool = False, timeout: float | None = None,
             stdin_handler: StdinHandler | None = None, **kwargs: Any) -> Any:
        """``target(*args, **kwargs)`` in the kernel; the result as data (or a Handle).

        ``stdin_handler`` answers the questions that remote objects (see :meth:`remote`)
        ask during the call: it receives each question JSON-decoded (None when it is not
        JSON) and returns a JSON-serialisable answer.
        """
        return self.request("call", target=target.wire(), args=[encode(a) for a in args],
                            kwargs={k: encode(v) for k, v in kwargs.items()}, seed=seed,
                            dtype=dtype, no_grad=no_grad, keep=keep, timeout=timeout,
                            stdin_handler=stdin_handler)

    def remote(self, attrs: dict[str, Any], methods: list[str], name: str = "Remote") -> Handle:
        """An object in the kernel whose state lives in the grader.

        It has the data attributes ``attrs`` (tensors, numbers) and the ``methods``;
        calling ``obj.m(*args)`` in the kernel asks the grader over Jupyter's stdin
        channel (``input()``) with ``{"method": m, "args": [...]}`` and returns the
        answer's ``value`` (a JSON list becomes a tuple), or raises RuntimeError with
        its ``error``. Only a call made with a ``stdin_handler`` can be answered.
        ``name`` is the class name the kernel sees.
        """
        handle = self.request("remote", attrs={str(k): encode(v) for k, v in attrs.items()},
                              methods=[str(m) for m in methods], name=name)
        if not isinstance(handle, Handle):
            raise ProtocolError("the kernel did not build the remote object")
        return handle

    def call_with_grad(self, target: Ref, *args: Any, wrt: list[int], output: int | None = None,
                       cotangent: torch.Tensor | None = None, seed: int | None = None,
                       dtype: str | None = None, cotangents: torch.Tensor | None = None,
                       vectorize: bool = False) -> tuple[Any, list[torch.Tensor | None]]:
        """Call and back-propagate ``cotangent`` (default ones) from the chosen output.

        Returns the outputs and the gradients w.r.t. ``args[i]`` for ``i`` in ``wrt``
        (None where no gradient reaches that input). With ``cotangents`` (K stacked
        cotangents) each gradient is stacked too, (K, *arg.shape): K vector-Jacobian
        products from one forward pass, computed by one batched backward (vmap) where
        ``vectorize`` and the student's ops allow it, else one backward each.
        """
        grad = {"wrt": wrt, "output": output,
                "cotangent": encode(cotangent) if cotangent is not None else None,
                "cotangents": encode(cotangents) if cotangents is not None else None,
                "vectorize": vectorize}
        reply = self.request("call", target=target.wire(), args=[encode(a) for a in args],
                             kwargs={}, seed=seed, dtype=dtype, grad=grad)
        if not isinstance(reply, dict) or set(reply) != {"value", "grads"}:
            raise ProtocolError("malformed gradient reply")
        grads = reply["grads"]
        if not isinstance(grads, list) or len(grads) != len(wrt):
            raise ProtocolError("gradient reply has the wrong number of gradients")
        return reply["value"], grads

    def instrument(self, module: str, name: str, *args: Any) -> Handle:
        """Build ``grader.instruments.<module>.<name>(*args)`` in the kernel.

        Instruments are trusted modules with behaviour the grader knows exactly (see
        ``grader/instruments/``); checks hand them to the student's functions.
        """
        handle = self.request("instrument", module=module, name=name,
                              args=[encode(a) for a in args])
        if not isinstance(handle, Handle):
            raise ProtocolError(f"instrument {module}.{name} did not return an object")
        return handle

    def get(self, target: Ref, *, keep: bool = False) -> Any:
        return self.request("get", target=target.wire(), keep=keep)

    def load_checkpoint(self, cls: Ref, path: str, *args: Any) -> Handle:
        """Build ``cls(*args)`` in the kernel and load ``path`` with ``weights_only=True``."""
        handle = self.request("load_checkpoint", cls=cls.wire(), path=path,
                              args=[encode(a) for a in args])
        if not isinstance(handle, Handle):
            raise ProtocolError("load_checkpoint did not return a model")
        return handle

    def _execute(self, code: str, *, expect_reply: bool, timeout: float | None = None,
                 stdin_handler: StdinHandler | None = None) -> Any:
        client = self.session.client
        if client is None or not self.session.is_alive():
            self._raise_stopped("the kernel is not running")
        limits = self.session.limits
        timeout = limits.call_timeout_s if timeout is None else timeout
        if self.calls == 0:
            self._drain(client)
        self.calls += 1
        msg_id = client.execute(code, silent=False, store_history=False,
                                allow_stdin=stdin_handler is not None, stop_on_error=False)
        deadline = time.monotonic() + timeout
        reply, error, budget = None, None, limits.reply_mb * 1024 * 1024 * 4 // 3
        self._stdin_failure = None
        while True:
            if self.session.violation is not None:
                self._raise_stopped("")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._abandon(timeout)
            try:
                # the channel's own blocking read: the client's get_iopub_msg runs an asyncio
                # event loop for each message (about 1.5 ms of CPU, a tenth of a grading's)
                if stdin_handler is None:
                    msg = client.iopub_channel.get_msg(timeout=min(remaining, 1.0))
                else:
                    msg = self._next_iopub(client, min(remaining, 1.0), stdin_handler)
            except Exception:  # noqa: BLE001 - queue.Empty: check the kernel is alive
                if not self.session.is_alive():
                    self._raise_stopped("the kernel died during a call")
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "display_data" and MIME in content.get("data", {}):
                reply = content["data"][MIME]
                size = len(json.dumps(reply)) if not isinstance(reply, str) else len(reply)
                if size > budget:
                    raise ProtocolError(f"reply of {size} bytes exceeds {limits.reply_mb} MiB")
            elif kind == "error":
                error = content
            elif kind == "status" and content.get("execution_state") == "idle":
                break
        if self._stdin_failure is not None:
            raise self._stdin_failure
        if error is not None and expect_reply and reply is None:
            raise StudentException(str(error.get("ename"))[:200], str(error.get("evalue"))[:2000],
                                   _ANSI.sub("", "\n".join(error.get("traceback", [])))[-8000:])
        if expect_reply and reply is None:
            raise ProtocolError("the kernel finished the call without replying")
        return reply

    @staticmethod
    def _drain(client: Any) -> None:
        """Drop what the kernel published before the first request (the notebook's output,
        never read by this client), for at most 2 s.

        The grader's sockets hold one unread message; past that the kernel queues, then
        drops *new* messages for this subscriber, and a call's own reply must not be
        among them. The notebook has finished: what it published is already queued, so
        10 ms without a message ends the drain (a straggler is skipped by the reply loop,
        which reads on until its own reply).
        """
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            try:
                client.iopub_channel.get_msg(timeout=0.01)
            except queue.Empty:
                return

    def _raise_stopped(self, died: str) -> NoReturn:
        """ProtocolError if the grader stopped the kernel for what it sent, else KernelDied."""
        if self.session.violation is not None:
            raise ProtocolError(self.session.violation)
        raise KernelDied(died)

    def _next_iopub(self, client: Any, timeout: float, handler: StdinHandler) -> dict[str, Any]:
        """The next iopub message, answering every stdin ``input_request`` meanwhile.

        Raises queue.Empty (as the channel's ``get_msg`` does) when ``timeout`` passes first.
        """
        import zmq

        poller = zmq.Poller()
        poller.register(client.iopub_channel.socket, zmq.POLLIN)
        poller.register(client.stdin_channel.socket, zmq.POLLIN)
        end = time.monotonic() + timeout
        while True:
            wait_ms = max(0, int((end - time.monotonic()) * 1000))
            ready = dict(poller.poll(wait_ms))
            if client.stdin_channel.socket in ready:
                asked = client.stdin_channel.get_msg(timeout=0)
                failure = self._answer_stdin(client, asked, handler)
                if failure is not None and self._stdin_failure is None:
                    self._stdin_failure = failure
            if client.iopub_channel.socket in ready:
                return client.iopub_channel.get_msg(timeout=0)
            if not ready and time.monotonic() >= end:
                raise queue.Empty

    @staticmethod
    def _answer_stdin(client: Any, msg: dict[str, Any], handler: StdinHandler
                      ) -> Exception | None:
        """Decode one untrusted ``input_request`` (bounded), ask ``handler``, reply.

        Returns the handler's own exception (a grader bug), if it raised one.
        """
        if msg.get("msg_type") != "input_request":
            return None
        prompt = msg.get("content", {}).get("prompt", "")
        question: Any = None
        if isinstance(prompt, str) and len(prompt) <= _MAX_PROMPT:
            try:
                question = json.loads(prompt)
            except ValueError:
                question = None
        try:
            text = json.dumps(handler(question), allow_nan=False)
        except Exception as exc:  # noqa: BLE001 - raised after the call (see _execute)
            # the kernel waits for an answer whatever happens here
            client.input(json.dumps({"ok": False, "error": "the grader could not answer"}))
            return exc
        client.input(text)
        return None

    def _abandon(self, timeout: float) -> None:
        """A call overran: interrupt; if the kernel stays busy, kill it."""
        self.session.interrupt()
        client = self.session.client
        end = time.monotonic() + 5
        while client is not None and time.monotonic() < end:
            try:
                msg = client.iopub_channel.get_msg(timeout=0.5)
            except Exception:  # noqa: BLE001
                continue
            if msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle":
                raise ExecutionTimeout(f"the call took longer than {timeout:g} s and was "
                                       "interrupted")
        self.session.kill()
        raise ExecutionTimeout(f"the call took longer than {timeout:g} s; the kernel was stopped")
