"""Causality of sequence models, from the structure of their Jacobian and from perturbations.

For every output position t the grader back-propagates a cotangent that is non-zero only
at (one batch row, position t) and reads the gradient the kernel returns: it must be
exactly 0 at every forbidden input position (s > t - offset) and in every other batch
row; with ``require`` it must also be non-zero (> 1e-6) where the output must depend
(over-masking). The perturbation form covers non-differentiable paths: change the inputs
from position s on, and the outputs before s + offset must stay bit-identical.

Positions lie along one axis of input and output (``axis``, e.g. 2 for (B, C, T) and 1 for
(B, T, d)), or ``axis: flat``: every non-batch element is a position in raster order (the
64 pixels of an autoregressive image model).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import StudentException
from ..protocol import Attr, Handle, Name
from .functions import _examples, _infer_dims, _short, _student_error, _verdict_of, target
from .registry import CheckContext, PropertyFailure, Verdict, check
from .strategies import format_inputs, run_property

__all__ = ["positions", "dependence", "allowed_mask", "build_module"]

_NONZERO = 1e-6


def positions(t: torch.Tensor, axis: int | str) -> torch.Tensor:
    """``t`` as (B, T, rest): the batch, the positions, everything else flattened."""
    if axis == "flat":
        return t.reshape(t.shape[0], -1, 1)
    moved = t.movedim(int(axis), 1)
    return moved.reshape(moved.shape[0], moved.shape[1], -1)


def unpositions(p: torch.Tensor, like: torch.Tensor, axis: int | str) -> torch.Tensor:
    """Inverse of ``positions`` for a tensor shaped like ``like``."""
    if axis == "flat":
        return p.reshape(like.shape)
    moved_shape = like.movedim(int(axis), 1).shape
    return p.reshape(moved_shape).movedim(1, int(axis))


def allowed_mask(steps: int, offset: int) -> torch.Tensor:
    """(T, T) booleans: output t may depend on input s iff s <= t - offset."""
    t = torch.arange(steps)
    return t[None, :] <= t[:, None] - offset


def dependence(grad: torch.Tensor | None, like: torch.Tensor, axis: int | str) -> torch.Tensor:
    """(B, T) largest |gradient| per batch row and input position (0 where none came back)."""
    if grad is None or not torch.is_tensor(grad):
        return torch.zeros(like.shape[0], positions(like, axis).shape[1], dtype=torch.float64)
    if tuple(grad.shape) != tuple(like.shape):
        raise PropertyFailure(f"the gradient has shape {tuple(grad.shape)}, not the input's "
                              f"{tuple(like.shape)}")
    return positions(grad.double().abs(), axis).amax(-1)


def build_module(ctx: CheckContext, spec: dict[str, Any], dims: dict[str, int]) -> Handle:
    """The student's ``spec['class'](*args, **kwargs)``, built seeded (dims symbols replaced)."""
    ctx.require(spec["class"])
    args = [dims.get(a, a) if isinstance(a, str) else a for a in spec.get("args", [])]
    kwargs = {k: dims.get(v, v) if isinstance(v, str) else v
              for k, v in (spec.get("kwargs") or {}).items()}
    return ctx.kernel.call(Name(spec["class"]), *args, seed=ctx.seed, keep=True, **kwargs)


def _callable(ctx: CheckContext, params: dict[str, Any], dims: dict[str, int]
              ) -> Name | Handle | Attr:
    if "module" in params:
        fn: Name | Handle | Attr = build_module(ctx, params["module"], dims)
        return Attr(fn, params["method"]) if params.get("method") else fn
    return target(ctx, params, dims)


def _perturbed(x: torch.Tensor, spec: dict[str, Any], gen: torch.Generator) -> torch.Tensor:
    if spec.get("kind") in ("binary", "digits"):
        return 1.0 - x
    lo, hi = float(spec.get("min", -10.0)), float(spec.get("max", 10.0))
    fresh = torch.rand(x.shape, generator=gen, dtype=torch.float64) * (hi - lo) + lo
    fresh = torch.where(fresh == x, fresh * 0.5 + 0.25 * (hi + lo), fresh)
    return fresh.to(x.dtype)


@check("causal_dependence", required=("inputs",),
       optional=("function", "module", "model", "method", "dims", "axis", "offset", "require",
                 "perturb", "max_examples"))
def check_causal_dependence(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """Output at position t depends only on inputs at positions <= t - ``offset``.

    ``require``: ``none`` (default), ``current`` (output t must depend on input t) or
    ``all`` (on every allowed input). Batch rows must not depend on each other.
    """
    axis = params.get("axis", 1)
    offset = int(params.get("offset", 0))
    require = params.get("require", "none")
    if require not in ("none", "current", "all"):
        raise KeyError(f"require must be none, current or all, not {require!r}")
    name = next(iter(params["inputs"]))
    spec = params["inputs"][name]
    if "model" in params:
        target(ctx, params)                       # a checkpoint that does not load: an error
    counts = {"grad_calls": 0, "perturb_calls": 0}

    def prop(example: dict[str, Any]) -> None:
        dims = _infer_dims(example, params)
        x = torch.as_tensor(example[name]).float()
        ce = {"inputs": format_inputs(example)}
        try:
            fn = _callable(ctx, params, dims)
            y = ctx.kernel.call(fn, x, seed=ctx.seed)
        except StudentException as exc:
            raise _student_error(exc, example) from None
        if not torch.is_tensor(y) or y.dim() < 2 or y.shape[0] != x.shape[0]:
            raise PropertyFailure(f"expected a tensor with the batch size {x.shape[0]} first, got "
                                  f"{_short(y)[:120]}", ce)
        steps = positions(x, axis).shape[1]
        if positions(y, axis).shape[1] != steps:
            raise PropertyFailure(f"the output has {positions(y, axis).shape[1]} positions, the "
                                  f"input {steps} (output shape {tuple(y.shape)})", ce)
        allowed = allowed_mask(steps, offset)
        batch = x.shape[0]
        gen = torch.Generator().manual_seed(ctx.seed)
        for t in range(steps):
            b = t % batch
            cot_p = torch.zeros(positions(y, axis).shape, dtype=torch.float64)
            cot_p[b, t] = torch.randn(cot_p.shape[2], generator=gen, dtype=torch.float64)
            cot_p[b, t] += torch.sign(cot_p[b, t]) * 0.5       # no tiny cotangents
            cot = unpositions(cot_p, y, axis).to(y.dtype)
            try:
                _, grads = ctx.kernel.call_with_grad(fn, x, wrt=[0], cotangent=cot, seed=ctx.seed)
            except StudentException as exc:
                raise _student_error(exc, example) from None
            counts["grad_calls"] += 1
            dep = dependence(grads[0], x, axis)
            where = f"output position {t} (batch row {b})"
            other = [r for r in range(batch) if r != b and dep[r].max() > 0]
            if other:
                raise PropertyFailure(f"{where} depends on batch row {other[0]}: rows of a batch "
                                      "must be independent", {**ce, "expected": "gradient 0 in "
                                                              "other rows", "actual":
                                                              _short(dep[other[0]])})
            leaks = [s for s in range(steps) if not allowed[t, s] and dep[b, s] != 0]
            if leaks:
                rule = ("on no input" if t - offset < 0 else
                        f"only on positions {'<=' if offset == 0 else '<'} {t}")
                raise PropertyFailure(
                    f"{where} depends on the input at position {leaks[0]} (gradient "
                    f"{float(dep[b, leaks[0]]):.3g}); it may depend {rule}",
                    {**ce, "expected": f"zero gradient at positions > {t - offset}",
                     "actual": f"non-zero at positions {leaks[:10]}"})
            need = ([t] if require == "current" and offset == 0 else
                    [s for s in range(steps) if allowed[t, s]] if require == "all" else [])
            missing = [s for s in need if not dep[b, s] > _NONZERO]
            if missing:
                raise PropertyFailure(
                    f"{where} does not depend on the input at position {missing[0]} (gradient "
                    f"{float(dep[b, missing[0]]):.3g}): over-masked, it must see it",
                    {**ce, "expected": f"non-zero gradient at positions {need[:10]}",
                     "actual": f"zero at positions {missing[:10]}"})
        if not params.get("perturb", True):
            return
        xp = positions(x, axis)
        for s in range(1, steps):
            changed_p = xp.clone()
            changed_p[:, s:] = positions(_perturbed(x, spec, gen), axis)[:, s:]
            changed = unpositions(changed_p, x, axis)
            try:
                y2 = ctx.kernel.call(fn, changed, seed=ctx.seed)
            except StudentException as exc:
                raise _student_error(exc, example) from None
            counts["perturb_calls"] += 1
            if not torch.is_tensor(y2) or y2.shape != y.shape:
                raise PropertyFailure("the output's shape changed with the input's values", ce)
            keep = min(steps, s + offset)
            before, after = positions(y, axis)[:, :keep], positions(y2, axis)[:, :keep]
            if not torch.equal(before, after):
                diff = (before.double() - after.double()).abs()
                diff = torch.where(torch.isnan(diff), torch.full_like(diff, np.inf), diff)
                t_bad = int(diff.amax(dim=(0, 2)).nonzero()[0])
                raise PropertyFailure(
                    f"changing the inputs from position {s} on changed the output at position "
                    f"{t_bad} (by up to {float(diff[:, t_bad].max()):.3g}); outputs before "
                    f"position {keep} must stay bit-identical",
                    {**ce, "expected": "unchanged outputs at positions < " + str(keep),
                     "actual": f"changed at position {t_bad}"})

    tried, failure = run_property(_examples(params), prop,
                                  int(params.get("max_examples", min(ctx.max_examples, 10))))
    rule = "<= t" if offset == 0 else "< t"
    return _verdict_of(failure, tried, f"output t depends only on inputs at positions {rule} "
                       f"(gradients and perturbations, {tried} generated inputs)", **counts)


@check("receptive_field", required=("layers", "input_shape", "expected"),
       optional=("axis",))
def check_receptive_field(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """A stack of the student's layers: output t depends on exactly the ``expected`` input
    positions t - expected + 1 .. t (a dilated causal stack: 1 + sum((k - 1) * d)).

    t is ``expected // 2`` positions before the end, so a stack that sees the future shows it.
    """
    axis = params.get("axis", 2)
    layers = [build_module(ctx, spec, {}) for spec in params["layers"]]
    seq = ctx.kernel.call(Attr(Attr(Name("torch"), "nn"), "Sequential"), *layers, keep=True)
    gen = torch.Generator().manual_seed(ctx.seed)
    x = torch.randn(*params["input_shape"], generator=gen)
    try:
        y = ctx.kernel.call(seq, x, seed=ctx.seed)
        if not torch.is_tensor(y) or positions(y, axis).shape[:2] != positions(x, axis).shape[:2]:
            return Verdict.failed(f"the stack maps {tuple(x.shape)} to {_short(y)[:100]}, "
                                  "expected the same batch and number of positions")
        cot_p = torch.zeros(positions(y, axis).shape, dtype=torch.float64)
        steps, want = positions(x, axis).shape[1], int(params["expected"])
        t = steps - 1 - want // 2
        cot_p[0, t] = torch.randn(cot_p.shape[2], generator=gen, dtype=torch.float64)
        cot = unpositions(cot_p, y, axis).to(y.dtype)
        _, grads = ctx.kernel.call_with_grad(seq, x, wrt=[0], cotangent=cot, seed=ctx.seed)
    except StudentException as exc:
        return Verdict.failed(f"your code raised {exc.ename}: {exc.evalue}",
                              traceback=exc.traceback)
    dep = dependence(grads[0], x, axis)[0]
    seen = [s for s in range(steps) if dep[s] != 0]
    expected = list(range(t - want + 1, t + 1))
    details = {"positions_seen": len(seen), "expected": want, "output_position": t}
    if seen == expected:
        return Verdict.passed(f"output {t} sees exactly the inputs {expected[0]}..{t} "
                              f"({want} positions)", **details)
    later = [s for s in seen if s > t]
    span = f"positions {seen[0]}..{seen[-1]}" if seen else "no position"
    return Verdict.failed(
        f"output {t} of the stack depends on {len(seen)} input positions ({span}); a causal "
        f"dilated stack sees exactly the {want} = 1 + sum((k-1)*d) positions {expected[0]}..{t}"
        + (" (it sees the future)" if later else ""),
        {"inputs": {"layers": str(params["layers"]), "x": f"shape {tuple(x.shape)}"},
         "expected": f"positions {expected[0]}..{expected[-1]}", "actual": span}, **details)
