"""The kernel half of the grader's call protocol.

This file is never imported by the grader: its source is sent to the student's
kernel after the notebook has run. It answers requests of the form "call this
name of yours on these inputs" with plain data: JSON with tensors as base64 raw
bytes (zlib-compressed where that halves a large one), published as one display_data
message of MIME type ``MIME``. It decides nothing; the student may rewrite it at will,
and everything it sends back is checked by the grader as untrusted data.
"""

import base64
import json
import random
import sys
import traceback
import zlib

MIME = "application/vnd.grader.reply+json"
_MAX_ITEMS = 100_000
_MAX_DEPTH = 12
_handles = {}
_counter = [0]
_ZIP_MIN = 4 << 10
_dense = [0]          # bytes of the tensors encoded so far (a batch's budget counts them)


def _torch():
    import torch

    return torch


def _ns():
    return sys.modules["__main__"].__dict__


def _resolve(ref):
    if "$name" in ref:
        ns = _ns()
        if ref["$name"] not in ns:
            raise NameError(f"the notebook defines no `{ref['$name']}`")
        return ns[ref["$name"]]
    if "$handle" in ref:
        return _handles[ref["$handle"]]
    if "$attr" in ref:
        obj, name = ref["$attr"]
        return getattr(_decode(obj), name)
    if "$back" in ref:
        return _earlier(int(ref["$back"]))
    raise ValueError(f"unknown reference {ref!r}")


_answered = []     # the answers so far of the batch being run (for ``$back``)


def _earlier(back):
    """The object kept by the step ``back`` places before this one in the same batch."""
    if not 0 < back <= len(_answered):
        raise ValueError(f"no step {back} back in this batch")
    item = _answered[-back]
    value = item.get("value") if item.get("ok") else None
    if not (isinstance(value, dict) and value.get("$handle") in _handles):
        raise ValueError(f"the step {back} back kept nothing (it failed, or was not kept)")
    return _handles[value["$handle"]]


def _decode(value):
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "$tensor" in value:
        torch = _torch()
        spec = value["$tensor"]
        raw = base64.b64decode(spec["data"]) if "data" in spec \
            else zlib.decompress(base64.b64decode(spec["zdata"]))
        flat = torch.frombuffer(bytearray(raw), dtype=getattr(torch, spec["dtype"]))
        return flat.reshape(spec["shape"]).clone()
    if "$float" in value:
        return float(value["$float"])
    if "$tuple" in value:
        return tuple(_decode(v) for v in value["$tuple"])
    if "$dict" in value:
        return {k: _decode(v) for k, v in value["$dict"].items()}
    return _resolve(value)


def _store(obj):
    _counter[0] += 1
    key = f"h{_counter[0]}"
    _handles[key] = obj
    return {"$handle": key, "type": type(obj).__name__}


def _encode(value, depth=0):
    torch = _torch()
    if depth > _MAX_DEPTH:
        raise ValueError("reply nested too deeply")
    if value is None or isinstance(value, (bool, int, str)):
        return value if not isinstance(value, str) else value[:10_000]
    if isinstance(value, float):  # float(): repr(np.float64(inf)) is "np.float64(inf)"
        return value if value == value and abs(value) != float("inf") \
            else {"$float": repr(float(value))}
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        if t.dtype in (torch.float16, torch.bfloat16):
            t = t.float()
        if t.is_complex() or t.layout != torch.strided:
            raise TypeError(f"cannot send a {t.dtype} {t.layout} tensor")
        t = t.contiguous()
        data = t.numpy().tobytes() if t.numel() else b""
        _dense[0] += len(data)
        packed = zlib.compress(data, 1) if len(data) >= _ZIP_MIN else data
        key = "zdata" if 4 * len(packed) <= 3 * len(data) else "data"
        return {"$tensor": {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape),
                            key: base64.b64encode(packed if key == "zdata" else data
                                                  ).decode("ascii")}}
    if isinstance(value, torch.Size):
        return list(value)
    if isinstance(value, (tuple, list)):
        if len(value) > _MAX_ITEMS:
            raise ValueError("reply list too long")
        items = [_encode(v, depth + 1) for v in value]
        return {"$tuple": items} if isinstance(value, tuple) else items
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"$dict": {k: _encode(v, depth + 1) for k, v in list(value.items())[:_MAX_ITEMS]}}
    return _store(value)


def _seed(seed):
    torch = _torch()
    if torch.cuda.is_initialized():
        torch.manual_seed(seed)
    else:
        # CPU only: torch.manual_seed would also queue a lazy CUDA seeding, which records the
        # call stack as text each time, this request's whole code (megabytes) included
        torch.random.default_generator.manual_seed(seed)
    random.seed(seed)
    try:
        import numpy

        numpy.random.seed(seed % 2**32)
    except ImportError:
        pass


def _cast(args, dtype):
    torch = _torch()
    target = getattr(torch, dtype)
    return [a.to(target) if isinstance(a, torch.Tensor) and a.is_floating_point() else a
            for a in args]


def _call(req):
    torch = _torch()
    fn = _decode(req["target"])
    args = _decode(req.get("args", []))
    kwargs = {k: _decode(v) for k, v in req.get("kwargs", {}).items()}
    if req.get("dtype"):
        args = _cast(args, req["dtype"])
    if req.get("device"):
        args = [a.to(req["device"]) if isinstance(a, torch.Tensor) else a for a in args]
    if req.get("seed") is not None:
        _seed(req["seed"])
    grad = req.get("grad")
    if grad is None:
        if req.get("no_grad", True):
            with torch.no_grad():
                out = fn(*args, **kwargs)
        else:
            out = fn(*args, **kwargs)
        return _store(out) if req.get("keep") else _encode(out)
    inputs = []
    for i in grad["wrt"]:
        args[i] = args[i].detach().clone().requires_grad_(True)
        inputs.append(args[i])
    with torch.enable_grad():
        out = fn(*args, **kwargs)
    picked = out[grad["output"]] if grad.get("output") is not None else out
    if not isinstance(picked, torch.Tensor) or not picked.requires_grad:
        grads = [None] * len(inputs)
    elif grad.get("cotangents") is not None:
        grads = _stacked_grads(picked, inputs, _decode(grad["cotangents"]).to(picked.dtype),
                               bool(grad.get("vectorize")))
    else:
        cot = _decode(grad["cotangent"]) if grad.get("cotangent") else torch.ones_like(picked)
        grads = torch.autograd.grad(picked, inputs, grad_outputs=cot.to(picked.dtype),
                                    allow_unused=True)
    return {"$dict": {"value": _encode(out), "grads": _encode(list(grads))}}


def _stacked_grads(out, inputs, cots, vectorize):
    """The vector-Jacobian products of ``out`` for each of the K stacked ``cots``: per input,
    (K, *input.shape) (None where no gradient reaches it). ``vectorize``: one batched
    backward (vmap) where the student's ops allow it, else one backward per cotangent."""
    torch = _torch()
    if vectorize:
        try:
            return torch.autograd.grad(out, inputs, grad_outputs=cots, retain_graph=True,
                                       allow_unused=True, is_grads_batched=True)
        except Exception:  # noqa: BLE001 - an op vmap cannot batch: one at a time
            pass
    rows = [torch.autograd.grad(out, inputs, grad_outputs=c, retain_graph=True,
                                allow_unused=True) for c in cots]
    return [None if rows[0][i] is None else torch.stack([r[i] for r in rows])
            for i in range(len(inputs))] if rows else [None] * len(inputs)


def _load_checkpoint(req):
    torch = _torch()
    cls = _decode(req["cls"])
    model = cls(*_decode(req.get("args", [])))
    device = req.get("device") or "cpu"
    state = torch.load(req["path"], map_location=device, weights_only=True)
    model.load_state_dict(state)
    model.to(device)
    model.eval()
    return _store(model)


class _Remote:
    """An object whose state lives in the grader: each method call asks it over stdin.

    ``obj.m(*args)`` sends ``input(json.dumps({"$remote": key, "method": m, "args": args}))``
    (ipykernel turns it into an ``input_request`` on Jupyter's stdin channel) and returns
    the answer's ``value`` (a list becomes a tuple). Changing this class changes nothing
    the grader records: the state and the record stay in the grader's process.
    """

    def __repr__(self):
        return f"<{type(self).__name__} (lives in the grader)>"


def _plain(value):
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    return value


def _remote_method(name):
    def method(self, *args):
        import builtins

        question = json.dumps({"$remote": self._remote_key, "method": name,
                               "args": [_plain(a) for a in args]})
        answer = json.loads(builtins.input(question))
        if not isinstance(answer, dict) or not answer.get("ok"):
            error = answer.get("error") if isinstance(answer, dict) else "malformed answer"
            raise RuntimeError(str(error))
        value = answer.get("value")
        return tuple(value) if isinstance(value, list) else value

    method.__name__ = name
    return method


def _remote(req):
    methods = {str(m): _remote_method(str(m)) for m in req.get("methods", [])}
    name = str(req.get("name") or "Remote")
    cls = type(name if name.isidentifier() else "Remote", (_Remote,), methods)
    obj = cls()
    _counter[0] += 1
    obj._remote_key = f"r{_counter[0]}"
    for key, value in req.get("attrs", {}).items():
        setattr(obj, str(key), _decode(value))
    return _store(obj)


def _instrument(req):
    """Build a trusted test instrument of ``grader.instruments.<module>`` in the kernel.

    Instruments are small modules whose exact behaviour the grader knows (a critic with
    a known gradient, an exact denoiser): the student's functions are called on them.
    Whatever the kernel does with them, the grader checks what comes back.
    """
    import importlib

    module, name = str(req["module"]), str(req["name"])
    if not (module.isidentifier() and name.isidentifier()) or name.startswith("_"):
        raise ValueError(f"bad instrument {module}.{name}")
    mod = importlib.import_module(f"grader.instruments.{module}")
    if name not in getattr(mod, "__all__", ()):
        raise ValueError(f"grader.instruments.{module} has no instrument {name}")
    obj = getattr(mod, name)(*_decode(req.get("args", [])))
    device = req.get("device")
    if device and hasattr(obj, "to"):
        obj = obj.to(device)
    return _store(obj)


class _StepTimeout(BaseException):
    """A step of a batch ran past its time (BaseException: student code may catch Exception)."""


def _on_alarm(_signum, _frame):
    raise _StepTimeout()


def _step(step, seconds):
    """One step of a batch under a wall-clock alarm, as its own reply item. Without
    ``setitimer`` (Windows: a self-check there runs no sandbox) the grader's timeout on
    the whole call is the only limit."""
    import signal

    if not hasattr(signal, "setitimer"):
        seconds = 0
    previous = signal.signal(signal.SIGALRM, _on_alarm) if seconds else None
    if seconds:
        signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return {"ok": True, "value": _dispatch(step)}
    except _StepTimeout:
        return {"ok": False, "timeout": True}
    except BaseException as exc:  # noqa: BLE001 - the student's code may raise anything
        return _error(exc)
    finally:
        if seconds:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def _batch(req):
    """Answer every step of ``req["steps"]`` in order, each on its own (one failing step does
    not stop the others). A step past ``step_timeout_s`` ends the batch (the rest come back
    ``skipped``); once the answers pass ``max_bytes`` of JSON (or of tensors, counted
    uncompressed: what the grader will inflate them to) the rest come back
    ``deferred`` (not run) for the grader to send again, so one reply stays bounded. A
    step may name what an earlier step kept (``{"$back": n}``: n steps before it), so a
    chain of dependent calls is one request too."""
    steps, seconds = req["steps"], float(req.get("step_timeout_s") or 0)
    budget, used, out = int(req.get("max_bytes") or 0), 0, _answered
    if not req.get("resume"):          # a resumed batch (the deferred rest) keeps what came before
        del out[:]
    start = len(out)
    for n, step in enumerate(steps):
        if step.get("op") == "batch":
            raise ValueError("a batch cannot hold a batch")
        if n and budget and used > budget:
            out.extend({"deferred": True} for _ in steps[n:])
            break
        step["device"] = req.get("device")
        before = _dense[0]
        item = _step(step, seconds)
        out.append(item)
        if item.get("timeout"):
            out.extend({"skipped": True} for _ in steps[n + 1:])
            break
        if budget:
            used += max(len(json.dumps(item)), _dense[0] - before)
    return out[start:]


def _dispatch(req):
    op = req["op"]
    if op == "batch":
        return _batch(req)
    if op == "call":
        return _call(req)
    if op == "get":
        obj = _decode(req["target"])
        return _store(obj) if req.get("keep") else _encode(obj)
    if op == "load_checkpoint":
        return _load_checkpoint(req)
    if op == "remote":
        return _remote(req)
    if op == "instrument":
        return _instrument(req)
    if op == "release":
        for key in req["handles"]:
            _handles.pop(key, None)
        return None
    raise ValueError(f"unknown op {op!r}")


def handle_stdin(question):
    """Answer one request that the grader sends as the answer to ``question`` (stdin)."""
    import builtins

    return handle(json.loads(builtins.input(question)))


def _error(exc):
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return {"ok": False, "ename": type(exc).__name__, "evalue": str(exc)[:2000],
            "traceback": "".join(tb[-12:])[-8000:]}


def handle(payload):
    """Answer one request (base64 JSON); publish the reply as display_data."""
    from IPython.display import publish_display_data

    import time

    req = json.loads(base64.b64decode(payload))
    started = time.perf_counter()
    try:
        reply = {"ok": True, "value": _dispatch(req)}
    except BaseException as exc:  # noqa: BLE001 - the student's code may raise anything
        reply = _error(exc)
    reply["elapsed_s"] = time.perf_counter() - started     # for the grader's timings only
    reply["nonce"] = req.get("nonce")
    publish_display_data({MIME: reply}, metadata={})
