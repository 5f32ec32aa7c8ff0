"""Hand-written backward passes, checked against the grader's own derivatives.

A lab that asks for ``layer_backward(grad_out, *inputs) -> (grad_in_1, ...)`` names the
forward in the trusted reference (``forward: linear_forward``). On hypothesis inputs the
grader computes, in its own process and in float64, the gradients of
``<grad_out, forward(*inputs)>`` twice: by autograd through the reference forward, and by
central finite differences of that forward. The student's kernel is asked only for its
backward's outputs, which are compared with both:

- vs autograd: the element-wise relative error of the UvA unit tests,
  ``max |a - b| / max(1e-8, |a| + |b|) < tol`` (1e-5) when the student's code runs in
  float64; a float32-only backward is compared norm-wise,
  ``max |a - b| / (max |a| + max |b|) < tol32`` (1e-4): element-wise relative error is
  meaningless for float32 values that cancel to ~0; so is a float64 answer that misses,
  re-run in float32 (float32 buffers inside: ``judge_gradients``);
- the grader-side autograd is first confirmed by its own finite differences of the
  reference forward (``grader.checks.numeric``: two steps, one-sided quotients, a nearby
  point, so a ReLU kink inside the step is never taken for a wrong derivative); if they
  still disagree the item is a grader error, flagged for review, never the student's loss.

Also here: ``gradient`` (autograd in the kernel vs the grader's differences, for
deterministic code) and ``pathwise_gradient`` (the pathwise derivatives of a
reparameterised Gaussian sample, from the sample itself: no assumption about the
student's random numbers).
"""

from __future__ import annotations

import hashlib
import marshal
import math
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import StudentException
from ..report.values import text as show
from .compare import Tolerance, mismatch
from .harness import (arg_names, call_on_example, choose_precision, examples, preflight,
                      run_property, target, tensors, verdict_of)
from .numeric import gradient_mismatch
from .params import LITERAL_INPUTS
from .registry import CheckContext, PropertyFailure, Verdict, check

__all__ = ["elementwise_rel_error", "normwise_rel_error", "reference_gradients",
           "judge_gradients"]

_TARGET = ("function", "module", "model", "method")


def elementwise_rel_error(actual: torch.Tensor, expected: torch.Tensor, floor: float = 1e-8
                          ) -> tuple[float, tuple[int, ...]]:
    """max |a - b| / max(floor, |a| + |b|) and where it is reached (nan counts as inf)."""
    a, b = actual.double(), expected.double()
    err = (a - b).abs() / torch.clamp((a.abs() + b.abs()), min=floor)
    err = torch.where(torch.isnan(err) | torch.isinf(a), torch.full_like(err, math.inf), err)
    err = torch.where((a - b) == 0, torch.zeros_like(err), err)
    if err.numel() == 0:
        return 0.0, ()
    flat = int(err.reshape(-1).argmax())
    idx = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), err.shape)) \
        if err.dim() else ()
    return float(err.max()), idx


def normwise_rel_error(actual: torch.Tensor, expected: torch.Tensor, floor: float = 1e-8
                       ) -> tuple[float, tuple[int, ...]]:
    """max |a - b| / max(floor, max |a| + max |b|) and where |a - b| is largest."""
    a, b = actual.double(), expected.double()
    diff = (a - b).abs()
    if diff.numel() == 0:
        return 0.0, ()
    if not torch.isfinite(a).all():
        bad = ~torch.isfinite(a)
        return math.inf, tuple(int(i) for i in bad.nonzero()[0])
    scale = max(floor, float(a.abs().max()) + float(b.abs().max()))
    flat = int(diff.reshape(-1).argmax())
    idx = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), diff.shape)) \
        if diff.dim() else ()
    return float(diff.max()) / scale, idx


_CONFIRMED: OrderedDict[str, list[torch.Tensor]] = OrderedDict()
_CONFIRMED_MAX = 4096


def _confirmation_key(forward: Any, args: list[Any], wrt: list[int], cotangent: torch.Tensor,
                      eps: float, rtol: float, seed: int) -> str | None:
    """What :func:`reference_gradients` depends on, hashed: the source file that defines the
    forward (a mutant of the reference is another file), its name, its code, and every
    input's bytes. None (nothing is remembered) for anything whose behaviour that does not
    pin down: no source file, captured variables, defaults that are not plain constants."""
    code = getattr(forward, "__code__", None)
    source = getattr(forward, "__globals__", {}).get("__file__")
    plain = (type(None), bool, int, float, str)
    defaults = [*(getattr(forward, "__defaults__", None) or ()),
                *(getattr(forward, "__kwdefaults__", None) or {}).values()]
    if code is None or not source or getattr(forward, "__closure__", None) \
            or not all(isinstance(d, plain) for d in defaults):
        return None
    try:
        digest = hashlib.sha256(Path(source).read_bytes())
    except OSError:
        return None
    digest.update(marshal.dumps(code))
    digest.update(repr((forward.__qualname__, defaults, wrt, eps, rtol, seed)).encode())
    for value in [*args, cotangent]:
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            digest.update(repr((t.dtype, tuple(t.shape))).encode())
            digest.update(t.numpy().tobytes() if t.numel() else b"")
        elif isinstance(value, plain):
            digest.update(repr((type(value).__name__, value)).encode())
        else:
            return None
    return digest.hexdigest()


def reference_gradients(forward: Any, args: list[Any], wrt: list[int], cotangent: torch.Tensor,
                        eps: float = 1e-6, rtol: float = 1e-5, seed: int = 0
                        ) -> list[torch.Tensor]:
    """Gradients of <cotangent, forward(*args)> w.r.t. ``args[i]``, i in ``wrt``, in float64,
    by autograd, each confirmed by the grader's finite differences (``numeric``).

    Inputs without any influence get zeros. Raises RuntimeError (a grader error: the item
    goes to review) when the differences refute the reference's own autograd. The inputs
    are the grader's own draws, the same for every student: a confirmed answer is kept for
    this process (by the forward's code and the inputs' bytes), so a batch worker runs the
    finite differences (a third of a backprop grading's CPU) once, not once a student.
    """
    key = _confirmation_key(forward, args, wrt, cotangent, eps, rtol, seed)
    if key is not None and key in _CONFIRMED:
        _CONFIRMED.move_to_end(key)
        return [g.clone() for g in _CONFIRMED[key]]
    auto = _confirmed_gradients(forward, args, wrt, cotangent, eps, rtol, seed)
    if key is not None:
        _CONFIRMED[key] = [g.clone() for g in auto]
        while len(_CONFIRMED) > _CONFIRMED_MAX:
            _CONFIRMED.popitem(last=False)
    return auto


def _confirmed_gradients(forward: Any, args: list[Any], wrt: list[int],
                         cotangent: torch.Tensor, eps: float, rtol: float, seed: int
                         ) -> list[torch.Tensor]:
    args = [a.double() if isinstance(a, torch.Tensor) and a.is_floating_point() else a
            for a in args]

    def autograd(xs: list[Any]) -> list[torch.Tensor]:
        leaves = [a.clone().requires_grad_(True) if i in wrt else a for i, a in enumerate(xs)]
        with torch.enable_grad():
            out = forward(*leaves)
            grads = torch.autograd.grad(out, [leaves[i] for i in wrt], cotangent.double(),
                                        allow_unused=True)
        return [torch.zeros_like(xs[i]) if g is None else g.detach() for i, g in zip(wrt, grads)]

    def value(xs: list[Any]) -> torch.Tensor:
        with torch.no_grad():
            return forward(*xs)

    auto = autograd(args)
    for k, (i, g) in enumerate(zip(wrt, auto)):
        found = gradient_mismatch(value, args, i, cotangent, g, lambda xs, k=k: autograd(xs)[k],
                                  step=eps, rtol=rtol, atol=1e-8, seed=seed)
        if found:
            raise RuntimeError(f"grader: autograd of the reference forward is refuted by "
                               f"finite differences for input {i}: {found.describe()}")
    return auto


@check("backward_pass", required=("inputs", "forward", "cotangent", "returns"),
       optional=(*_TARGET, "dims", "args", "forward_args", "tol", "tol32", "fd_eps", "fd_tol",
                 "precision", "max_examples"))
def check_backward_pass(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """A hand-written backward equals autograd of the reference forward (itself confirmed by
    the grader's finite differences).

    ``forward`` names the reference forward; ``forward_args`` its inputs (default: every
    input but ``cotangent``); ``args`` the student backward's arguments; ``returns`` the
    forward inputs whose gradients the backward returns, in order.
    """
    forward = ctx.ref(params["forward"])
    cot_name = params["cotangent"]
    fwd_names = list(params.get("forward_args")
                     or [k for k in params["inputs"] if k != cot_name])
    returns = list(params["returns"])
    missing = [r for r in returns if r not in fwd_names]
    if missing:
        raise KeyError(f"`returns` names {missing}, which are not forward inputs {fwd_names}")
    wrt = [fwd_names.index(r) for r in returns]
    tol, tol32 = float(params.get("tol", 1e-5)), float(params.get("tol32", 1e-4))
    fd_tol, fd_eps = float(params.get("fd_tol", 1e-5)), float(params.get("fd_eps", 1e-6))
    preflight(ctx, params)
    state: dict[str, Any] = {}

    def prop(example: dict[str, Any]) -> None:
        if "precision" not in state:
            state["precision"] = choose_precision(ctx, params, example)

        def run(precision: str) -> Any:
            return call_on_example(ctx, params, example, precision)

        fwd_args = tensors(example, {**params, "args": fwd_names}, torch.float64)
        cot = tensors(example, {**params, "args": [cot_name]}, torch.float64)[0]
        auto = reference_gradients(forward, fwd_args, wrt, cot, fd_eps, fd_tol, ctx.seed)
        actual, why = judge_gradients(run, auto, returns, state["precision"], tol, tol32)
        if why:
            raise PropertyFailure(why, {
                "inputs": example,
                "expected": tuple(auto) if len(auto) > 1 else auto[0],
                "actual": actual})

    tried, failure = run_property(examples(params), prop,
                                  int(params.get("max_examples", ctx.max_examples)))
    return verdict_of(failure, tried, f"gradients w.r.t. {', '.join(returns)} match autograd "
                       f"of the reference (confirmed by finite differences) on {tried} "
                       "generated inputs",
                       precision=state.get("precision"))


def judge_gradients(run: Callable[[str], Any], auto: list[torch.Tensor], returns: list[str],
                    precision: str, tol: float, tol32: float) -> tuple[Any, str | None]:
    """The student's gradients, ``run(precision)``, against autograd ``auto``: (the answer
    judged, why it is wrong or None).

    A float64 answer can carry only float32 accuracy: LABS.md's dtype is float32 and how
    the student computes is free, so per-example loops that accumulate into
    ``torch.zeros(...)`` buffers (float32) and cast back, or mix such outputs with float64
    ones, are correct; the element-wise float64 test then fails where a sum cancels (about
    1 example in 100-250 of hypothesis's draws). So a float64 answer that misses is re-run on
    the same inputs in float32 and judged as float32 code is (norm-wise, ``tol32``); it is
    wrong only if that misses too, and the float64 finding is reported. No bug a float32-only
    backward could hide becomes visible or invisible by this. When both miss on different
    outputs, the float64 miss was float32 rounding and the float32 finding is reported.
    """
    actual = run(precision)
    where, why = _gradients_wrong(actual, auto, returns, precision, tol, tol32)
    if why and precision == "float64":
        try:
            actual32 = run("float32")
        except PropertyFailure:
            return actual, why
        where32, why32 = _gradients_wrong(actual32, auto, returns, "float32", tol, tol32)
        if why32 is None or where32 != where:
            return actual32, why32
    return actual, why


def _gradients_wrong(actual: Any, auto: list[torch.Tensor], returns: list[str], precision: str,
                     tol: float, tol32: float) -> tuple[int, str | None]:
    """Which output (-1: their number) is not the gradient in ``auto`` w.r.t. ``returns``,
    and why: type, shape, then values (element-wise relative error in float64, norm-wise
    in float32); (-1, None) when all are right."""
    outs = list(actual) if isinstance(actual, (tuple, list)) else [actual]
    if len(outs) != len(returns):
        return -1, (f"expected {len(returns)} gradient(s) (w.r.t. {', '.join(returns)}), got "
                    f"{_describe(actual)}")
    for i, (name, out, a) in enumerate(zip(returns, outs, auto)):
        label = f"the gradient w.r.t. `{name}`" + (f" (output {i})" if len(outs) > 1 else "")
        if not isinstance(out, torch.Tensor) or not out.is_floating_point():
            return i, f"{label} is {_describe(out)}, not a floating tensor"
        if tuple(out.shape) != tuple(a.shape):
            extra = (" (sum over the batch: a parameter's gradient has the parameter's "
                     "shape)" if out.dim() > a.dim() else
                     " (is it transposed?)" if sorted(out.shape) == sorted(a.shape) else "")
            return i, (f"{label} has shape {tuple(out.shape)}, expected {tuple(a.shape)}, "
                       f"the shape of `{name}`{extra}")
        if precision == "float64":
            err, idx = elementwise_rel_error(out, a)
            kind, limit = "element-wise relative error", tol
        else:
            err, idx = normwise_rel_error(out, a)
            kind, limit = "norm-wise relative error (float32)", tol32
        where = f" at {list(idx)}" if idx else ""
        if not err <= limit:
            return i, (f"{label} differs from autograd of the reference forward: {kind} "
                       f"{err:.3g} > {limit:g}{where} (got {out.double()[idx].item():.8g}, "
                       f"expected {a[idx].item():.8g})")
    return -1, None


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return type(value).__name__


@check("gradient", required=("inputs", "wrt"),
       optional=(*_TARGET, "args", "eps", "rtol", "atol", "output"),
       types={"inputs": LITERAL_INPUTS})
def check_gradient(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """Autograd gradients (computed in the kernel) equal the grader's finite differences.

    For deterministic code: the differences call the function again at shifted inputs
    (``grader.checks.numeric``: two steps, one-sided quotients, a nearby point, so a kink
    inside the step is never blamed on the student). A function that draws random numbers
    is checked on what it returns instead (``pathwise_gradient``): LABS.md promises that no
    check depends on re-seeding reproducing the student's noise. Inputs are fixed in the
    rubric; float64 where the code allows it.
    """
    names = arg_names(params)
    base = [torch.tensor(params["inputs"][k], dtype=torch.float64) for k in names]
    wrt = [names.index(w) for w in params["wrt"]]
    precision = choose_precision(ctx, {**params, "inputs": {k: {} for k in names}},
                           dict(zip(names, [b.numpy() for b in base])))
    dtype = torch.float64 if precision == "float64" else torch.float32
    f64 = precision == "float64"
    eps = float(params.get("eps", 1e-6 if f64 else 1e-2))
    rtol = float(params.get("rtol", 1e-4 if f64 else 2e-2))
    atol = float(params.get("atol", 1e-6 if f64 else 1e-2))
    fn, output = target(ctx, params, precision=precision), params.get("output")
    args = [b.to(dtype).double() for b in base]

    def value(xs: list[torch.Tensor]) -> torch.Tensor:
        out = ctx.kernel.call(fn, *[x.to(dtype) for x in xs], seed=ctx.seed)
        picked = out[output] if output is not None else out
        if not isinstance(picked, torch.Tensor):
            raise PropertyFailure(f"expected a tensor output, got {type(picked).__name__}")
        return picked

    def grads(xs: list[torch.Tensor], cot: torch.Tensor) -> list[torch.Tensor]:
        _, got = ctx.kernel.call_with_grad(fn, *[x.to(dtype) for x in xs], wrt=wrt,
                                           output=output, seed=ctx.seed, cotangent=cot.to(dtype))
        return [torch.zeros_like(xs[i]) if g is None or not torch.is_tensor(g) else g.double()
                for i, g in zip(wrt, got)]

    ce = {"inputs": dict(zip(names, base))}
    try:
        cot = torch.randn(value(args).shape, generator=torch.Generator().manual_seed(ctx.seed),
                          dtype=torch.float64)
        claimed = grads(args, cot)
        for k, i in enumerate(wrt):
            found = gradient_mismatch(value, args, i, cot, claimed[k],
                                      lambda xs, k=k: grads(xs, cot)[k], step=eps, rtol=rtol,
                                      atol=atol, seed=ctx.seed)
            if found:
                return Verdict.failed(found.describe(f"the autograd gradient w.r.t. "
                                                     f"`{names[i]}`"),
                                      {**ce, "expected": f"{found.numeric:.8g}",
                                       "actual": f"{found.claimed:.8g}"}, precision=precision)
    except StudentException as exc:
        return Verdict.failed(f"your code raised {exc.ename}: {exc.evalue}",
                              traceback=exc.traceback)
    except PropertyFailure as exc:
        return Verdict.failed(exc.message, ce)
    return Verdict.passed(f"gradients w.r.t. {', '.join(params['wrt'])} match the grader's "
                          f"finite differences ({precision})", precision=precision)


@check("pathwise_gradient", required=("function", "inputs"),
       optional=("mean", "log_variance", "rtol", "atol"),
       types={"inputs": LITERAL_INPUTS})
def check_pathwise_gradient(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """A reparameterised Gaussian sample z = mu + exp(logvar / 2) eps carries the pathwise
    derivatives dz/dmu = 1 and dz/dlogvar = (z - mu) / 2, element by element.

    Both are computed by the grader from the z the student's function returns, so the check
    assumes nothing about the noise: torch's global generator or a private one, any order
    or number of draws (LABS.md). One call with a random cotangent c: the kernel's autograd
    must give c for mu and c (z - mu) / 2 for logvar. ``mean`` and ``log_variance`` name
    the inputs (default ``mu`` and ``logvar``).
    """
    names = list(params["inputs"])
    mu_name, lv_name = params.get("mean", "mu"), params.get("log_variance", "logvar")
    if {mu_name, lv_name} - set(names):
        raise KeyError(f"inputs must include `{mu_name}` and `{lv_name}`")
    args = [torch.tensor(params["inputs"][k], dtype=torch.float64) for k in names]
    i_mu, i_lv = names.index(mu_name), names.index(lv_name)
    precision = choose_precision(ctx, {**params, "inputs": {k: {} for k in names}},
                           dict(zip(names, [a.numpy() for a in args])))
    dtype = torch.float64 if precision == "float64" else torch.float32
    tol = Tolerance(float(params.get("rtol", 1e-6 if precision == "float64" else 1e-4)),
                    float(params.get("atol", 1e-8 if precision == "float64" else 1e-5)))
    gen = torch.Generator().manual_seed(ctx.seed)
    cot = torch.randn(args[i_mu].shape, generator=gen, dtype=torch.float64)
    cot = cot + 0.5 * torch.sign(cot)                      # no tiny cotangents
    ce: dict[str, Any] = {"inputs": dict(zip(names, args))}
    try:
        z, (g_mu, g_lv) = ctx.kernel.call_with_grad(
            target(ctx, params), *[a.to(dtype) for a in args], wrt=[i_mu, i_lv],
            seed=ctx.seed, cotangent=cot.to(dtype))
    except StudentException as exc:
        return Verdict.failed(f"your code raised {exc.ename}: {exc.evalue}",
                              traceback=exc.traceback)
    mu = args[i_mu].to(dtype).double()
    if not isinstance(z, torch.Tensor) or tuple(z.shape) != tuple(mu.shape) \
            or not z.is_floating_point() or not bool(torch.isfinite(z).all()):
        return Verdict.failed(f"expected a finite float tensor z of shape {tuple(mu.shape)}, "
                              f"got {show(z)[:120]}", ce, precision=precision)
    z = z.double()
    wanted = ((mu_name, g_mu, cot, "1"), (lv_name, g_lv, cot * (z - mu) / 2, "(z - mu) / 2"))
    for name, got, expected, rule in wanted:
        if got is None or not torch.is_tensor(got) or not bool((got != 0).any()):
            return Verdict.failed(f"no gradient reaches `{name}` through the sample (a "
                                  ".detach(), torch.normal, or a copy out of the graph?)",
                                  {**ce, "expected": expected, "actual":
                                   "None" if got is None else show(got)}, precision=precision)
        why = mismatch(got, expected, tol, path=f"<c, dz/d{name}>")
        if why:
            return Verdict.failed(f"dz/d{name} is not {rule} element by element: {why}",
                                  {**ce, "expected": expected, "actual": got},
                                  precision=precision)
    return Verdict.passed(f"dz/d{mu_name} = 1 and dz/d{lv_name} = (z - mu) / 2 hold on the "
                          f"sample ({precision})", precision=precision)
