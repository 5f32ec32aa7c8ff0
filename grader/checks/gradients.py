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
  meaningless for float32 values that cancel to ~0;
- vs finite differences: norm-wise, ``< fd_tol`` (1e-5); the differences carry rounding
  noise of ~1e-10 |f| / eps, so element-wise would be wrong near 0.

The two grader-side derivatives must agree with each other (else the item is a grader
error, flagged for review, never the student's loss).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..errors import StudentException
from .compare import central_differences
from .functions import (_examples, _infer_dims, _precision, _short, _student_error, _tensors,
                        _verdict_of, preflight, target)
from .registry import CheckContext, PropertyFailure, Verdict, check
from .strategies import format_inputs, run_property

__all__ = ["elementwise_rel_error", "normwise_rel_error", "reference_gradients"]

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


def reference_gradients(forward: Any, args: list[Any], wrt: list[int], cotangent: torch.Tensor,
                        eps: float = 1e-6
                        ) -> tuple[list[torch.Tensor], list[torch.Tensor], float]:
    """Gradients of <cotangent, forward(*args)> w.r.t. ``args[i]``, i in ``wrt``, in float64.

    Returns (autograd, central differences, noise floor). Inputs without any influence get
    zeros. The floor bounds the rounding noise of the differences, 1e5 x machine epsilon x
    sum |cotangent * output| / eps: a norm-wise comparison with the differences uses it
    as the smallest scale, so that tiny gradients beside a large output are not judged on
    noise (the element-wise comparison with autograd has no such noise).
    """
    args = [a.double() if isinstance(a, torch.Tensor) and a.is_floating_point() else a
            for a in args]
    leaves = [a.clone().requires_grad_(True) if i in wrt else a for i, a in enumerate(args)]
    with torch.enable_grad():
        out = forward(*leaves)
        scale = float((out.detach().double() * cotangent.double()).abs().sum())
        grads = torch.autograd.grad(out, [leaves[i] for i in wrt], cotangent.double(),
                                    allow_unused=True)
    auto = [torch.zeros_like(args[i]) if g is None else g.detach() for i, g in zip(wrt, grads)]

    def f(xs: list[Any]) -> torch.Tensor:
        with torch.no_grad():
            return forward(*xs)

    numeric = [central_differences(f, args, i, cotangent, eps) for i in wrt]
    floor = 1e5 * torch.finfo(torch.float64).eps * scale / eps
    return auto, numeric, max(floor, 1e-8)


@check("backward_pass", required=("inputs", "forward", "cotangent", "returns"),
       optional=(*_TARGET, "dims", "args", "forward_args", "tol", "tol32", "fd_eps", "fd_tol",
                 "precision", "max_examples"))
def check_backward_pass(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """A hand-written backward equals autograd of the reference forward and central differences.

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
            state["precision"] = _precision(ctx, params, example)
        precision = state["precision"]
        dtype = torch.float64 if precision == "float64" else torch.float32
        try:
            fn = target(ctx, params, _infer_dims(example, params), precision)
            actual = ctx.kernel.call(fn, *_tensors(example, params, dtype), seed=ctx.seed)
        except StudentException as exc:
            raise _student_error(exc, example) from None
        fwd_args = _tensors(example, {**params, "args": fwd_names}, torch.float64)
        cot = _tensors(example, {**params, "args": [cot_name]}, torch.float64)[0]
        auto, numeric, floor = reference_gradients(forward, fwd_args, wrt, cot, fd_eps)
        for name, a, n in zip(returns, auto, numeric):
            sanity, _ = normwise_rel_error(a, n, floor)
            if sanity > fd_tol:
                raise RuntimeError(f"grader: autograd and central differences of the reference "
                                   f"`{params['forward']}` disagree on `{name}` ({sanity:.3g})")
        outs = list(actual) if isinstance(actual, (tuple, list)) else [actual]
        ce = {"inputs": format_inputs(example),
              "expected": _short(tuple(auto) if len(auto) > 1 else auto[0]),
              "actual": _short(actual)}
        if len(outs) != len(returns):
            raise PropertyFailure(f"expected {len(returns)} gradient(s) (w.r.t. "
                                  f"{', '.join(returns)}), got {_describe(actual)}", ce)
        for i, (name, out, a, n) in enumerate(zip(returns, outs, auto, numeric)):
            label = f"the gradient w.r.t. `{name}`" + (f" (output {i})" if len(outs) > 1 else "")
            if not isinstance(out, torch.Tensor) or not out.is_floating_point():
                raise PropertyFailure(f"{label} is {_describe(out)}, not a floating tensor", ce)
            if tuple(out.shape) != tuple(a.shape):
                extra = (" (sum over the batch: a parameter's gradient has the parameter's "
                         "shape)" if out.dim() > a.dim() else
                         " (is it transposed?)" if sorted(out.shape) == sorted(a.shape) else "")
                raise PropertyFailure(f"{label} has shape {tuple(out.shape)}, expected "
                                      f"{tuple(a.shape)}, the shape of `{name}`{extra}", ce)
            if precision == "float64":
                err, idx = elementwise_rel_error(out, a)
                kind, limit = "element-wise relative error", tol
            else:
                err, idx = normwise_rel_error(out, a)
                kind, limit = "norm-wise relative error (float32)", tol32
            where = f" at {list(idx)}" if idx else ""
            if not err <= limit:
                raise PropertyFailure(
                    f"{label} differs from autograd of the reference forward: {kind} "
                    f"{err:.3g} > {limit:g}{where} (got {out.double()[idx].item():.8g}, "
                    f"expected {a[idx].item():.8g})", ce)
            fd_err, idx = normwise_rel_error(out, n, floor)
            if not fd_err <= max(fd_tol, limit if precision == "float32" else 0.0):
                raise PropertyFailure(
                    f"{label} differs from the grader's central differences (float64, eps "
                    f"{fd_eps:g}): norm-wise relative error {fd_err:.3g} at {list(idx)}", ce)

    tried, failure = run_property(_examples(params), prop,
                                  int(params.get("max_examples", ctx.max_examples)))
    return _verdict_of(failure, tried, f"gradients w.r.t. {', '.join(returns)} match autograd "
                       f"and central differences on {tried} generated inputs",
                       precision=state.get("precision"))


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return type(value).__name__
