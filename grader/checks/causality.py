"""Causality of sequence models, from the structure of their Jacobian and from perturbations.

For every output position t the grader back-propagates a cotangent that is non-zero only
at (one batch row, position t) and reads the gradient the kernel returns: it must be
exactly 0 at every forbidden input position (s > t - offset) and in every other batch
row. The perturbation form covers non-differentiable paths: change the inputs from
position s on, and the outputs before s + offset must stay bit-identical.

Over-masking (``require``: output t must depend on input t, or on every allowed input) is
a claim that a dependence is ABSENT, and one zero gradient does not show that: a ReLU that
is off at this input, an attention weight that underflows, a layer that starts at zero
(initialisation is the student's choice), integer code no gradient passes, all give an
exact 0 where the function does depend. So a missing dependence is blamed only when
neither a gradient nor a change of that input alone shows it on 32 other random inputs
(one batch: rows are independent, checked first) and on fresh instances of the class with
their parameters re-drawn at random: a structural mask survives all of them, an accident
of one input or of the initial values does not (a unit that is off on a fraction q of
inputs hides a dependence from all 33 inputs with probability q^33: 1e-10 for q = 1/2, a
single ReLU at the output). Forbidden dependences are judged on the module as built
(re-drawn parameters would break a mask the student keeps in parameter values).

The dependence itself is one array, ``(outputs, B, T)``: for output position t (in batch
row t % B) the largest |gradient| per input row and position (``backprop_dependence``).
Every verdict is a pure function of that array. It comes from one request: one forward
pass in the kernel and every output position's vector-Jacobian product, first as one
batched backward (vmap, ``is_grads_batched``) where the student's ops allow it; a
violation or a missing dependence seen that way is looked at again with one plain backward
pass per position (the same cotangents) before anything is blamed. The perturbations and
the other inputs are likewise one request each (:func:`grader.batching.together`).

Positions lie along one axis of input and output (``axis``, e.g. 2 for (B, C, T) and 1 for
(B, T, d)), or ``axis: flat``: every non-batch element is a position in raster order (the
64 pixels of an autoregressive image model). Freshly built modules are evaluated in eval
mode (dropout off), as trained ones are: causality is a property of the function.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np
import torch

from .harness import together
from ..errors import StudentException
from ..protocol import Attr, Handle, Name
from ..report.values import text as show
from .harness import examples, infer_dims, run_property, student_error, target, verdict_of
from .params import VOCABULARY, boolean, choice, integer, list_of
from .registry import CheckContext, PropertyFailure, Verdict, check

__all__ = ["positions", "unpositions", "dependence", "allowed_mask", "build_module",
           "backprop_dependence", "first_violation", "required", "unseen", "confirm_missing",
           "confirm_by_change", "Probe"]

_NONZERO = 1e-6
_OTHER_INPUTS = 32         # inputs (one batch) tried before over-masking is blamed
_REDRAW_STD = 0.3          # N(0, std^2) re-drawn parameters, as the flow checks use

Probe = Callable[[torch.Tensor, torch.Tensor], "torch.Tensor | None"]
"""``probe(x, cotangents)``: for K stacked cotangents, the K gradients of <f(x), cotangent>
with respect to x, stacked (K, *x.shape) (None if none reaches x)."""


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


def backprop_dependence(probe: Probe, x: torch.Tensor, y: torch.Tensor, axis: int | str,
                        outputs: list[int], gen: torch.Generator, every_row: bool = False
                        ) -> torch.Tensor:
    """(len(outputs), B, T): row k is the dependence of output position ``outputs[k]``, taken
    in batch row ``outputs[k] % B``, on every input row and position: one vector-Jacobian
    product each, with a random cotangent of entries >= 0.5 in size (no tiny cotangents),
    all asked of the probe at once.

    ``every_row``: the cotangent is put at position t in every batch row at once, so row r of
    the result is row r's own dependence once rows are known to be independent (a batch of
    many inputs for the price of one pass). ``y`` gives the output's shape past the batch.
    """
    like = y[:1].expand(x.shape[0], *y.shape[1:])
    y_p = positions(like, axis)
    empty = torch.zeros(len(outputs), x.shape[0], positions(x, axis).shape[1],
                        dtype=torch.float64)
    if not outputs:
        return empty
    cots = []
    for t in outputs:
        cot_p = torch.zeros(y_p.shape, dtype=torch.float64)
        b = slice(None) if every_row else t % x.shape[0]
        cot_p[b, t] = torch.randn(cot_p[b, t].shape, generator=gen, dtype=torch.float64)
        cot_p[b, t] += torch.sign(cot_p[b, t]) * 0.5
        cots.append(unpositions(cot_p, like, axis).to(y.dtype))
    grads = probe(x, torch.stack(cots))
    if grads is None or not torch.is_tensor(grads):
        return empty
    if tuple(grads.shape) != (len(outputs), *x.shape):
        raise PropertyFailure(f"the gradients have shape {tuple(grads.shape)}, not "
                              f"{(len(outputs), *x.shape)}")
    return torch.stack([dependence(g, x, axis) for g in grads])


def first_violation(dep: torch.Tensor, outputs: list[int], allowed: torch.Tensor
                    ) -> tuple[str, int, int, list[int]] | None:
    """The first output position that depends on another batch row (``"row"``, t, b, rows)
    or on a forbidden input position (``"leak"``, t, b, positions): exact zeros required."""
    batch = dep.shape[1]
    rows = torch.arange(batch)
    reaches = dep.amax(-1) > 0                                   # (outputs, B)
    for k, t in enumerate(outputs):
        b = t % batch
        other = (reaches[k] & (rows != b)).nonzero().flatten().tolist()
        if other:
            return "row", t, b, other
        leaks = (~allowed[t] & (dep[k, b] != 0)).nonzero().flatten().tolist()
        if leaks:
            return "leak", t, b, leaks
    return None


def required(steps: int, offset: int, require: str) -> dict[int, list[int]]:
    """Output position -> the input positions it must depend on (``require``)."""
    allowed = allowed_mask(steps, offset)
    if require == "current" and offset == 0:
        return {t: [t] for t in range(steps)}
    if require == "all":
        need = {t: [s for s in range(steps) if allowed[t, s]] for t in range(steps)}
        return {t: s for t, s in need.items() if s}
    return {}


def unseen(dep: torch.Tensor, outputs: list[int], need: dict[int, list[int]]
           ) -> dict[int, list[int]]:
    """The needed (output, input) positions where ``dep`` shows no dependence (> 1e-6)."""
    batch = dep.shape[1]
    out = {}
    for k, t in enumerate(outputs):
        missing = [s for s in need.get(t, []) if not dep[k, t % batch, s] > _NONZERO]
        if missing:
            out[t] = missing
    return out


def build_module(ctx: CheckContext, spec: dict[str, Any], dims: dict[str, int],
                 redraw: int | None = None) -> Handle:
    """The student's ``spec['class'](*args, **kwargs)``, built seeded (dims symbols replaced)
    and in eval mode; with ``redraw`` (a seed) its parameters re-drawn from N(0, 0.3^2)."""
    ctx.require(spec["class"])
    args = [dims.get(a, a) if isinstance(a, str) else a for a in spec.get("args", [])]
    kwargs = {k: dims.get(v, v) if isinstance(v, str) else v
              for k, v in (spec.get("kwargs") or {}).items()}
    handle = ctx.kernel.call(Name(spec["class"]), *args, seed=ctx.seed, keep=True, **kwargs)
    if redraw is not None:
        handle = ctx.kernel.instrument("basic", "redraw_parameters", handle, _REDRAW_STD,
                                       redraw)
    _eval_mode(ctx, handle)
    return handle


def _eval_mode(ctx: CheckContext, handle: Handle) -> None:
    """``handle.eval()`` where it has one (dropout off): the function, not a random draw."""
    try:
        ctx.kernel.call(Attr(handle, "eval"), seed=ctx.seed)
    except StudentException:
        pass                               # not an nn.Module: nothing to switch


def _callable(ctx: CheckContext, params: dict[str, Any], dims: dict[str, int],
              redraw: int | None = None) -> Name | Handle | Attr:
    """What ``params`` names; with ``redraw`` (a seed), a fresh instance of its class (never
    a trained model other items share) with parameters re-drawn."""
    spec = params.get("module") or (params.get("model") if redraw is not None else None)
    if spec is None:
        return target(ctx, params, dims)
    fn: Name | Handle | Attr = build_module(ctx, spec, dims, redraw)
    for name in filter(None, str(spec.get("attr", "")).split(".")):
        fn = Attr(fn, name)
    return Attr(fn, params["method"]) if params.get("method") else fn


def _kernel_probe(ctx: CheckContext, fn: Name | Handle | Attr, vectorize: bool = False
                  ) -> Probe:
    """All the cotangents in one call: one forward pass in the kernel, then one backward
    pass per cotangent, or (``vectorize``) one batched backward where vmap can batch the
    student's ops: cheaper, so a first look; a verdict against the student is always
    taken from the unbatched backward passes (:func:`_check_dependence`)."""
    def probe(x: torch.Tensor, cots: torch.Tensor) -> torch.Tensor | None:
        _, grads = ctx.kernel.call_with_grad(fn, x, wrt=[0], cotangents=cots, seed=ctx.seed,
                                             vectorize=vectorize)
        return grads[0]
    return probe


def _kernel_call(ctx: CheckContext, fn: Name | Handle | Attr) -> Callable[[torch.Tensor], Any]:
    """``fn(x)`` in the kernel; None where it raises (evidence only: no verdict from it)."""
    def call(x: torch.Tensor) -> Any:
        try:
            return ctx.kernel.call(fn, x, seed=ctx.seed)
        except StudentException:
            return None
    return call


def _fresh(x: torch.Tensor, spec: dict[str, Any], gen: torch.Generator, rows: int
           ) -> torch.Tensor:
    """A batch of ``rows`` other inputs shaped like x's rows, inside the input's spec."""
    shape = (rows, *x.shape[1:])
    if spec.get("kind") in ("binary", "digits"):
        return torch.bernoulli(torch.full(shape, 0.5, dtype=torch.float64), generator=gen
                               ).to(x.dtype)
    lo, hi = float(spec.get("min", -10.0)), float(spec.get("max", 10.0))
    return (torch.rand(shape, generator=gen, dtype=torch.float64) * (hi - lo) + lo).to(x.dtype)


def _perturbed(x: torch.Tensor, spec: dict[str, Any], gen: torch.Generator) -> torch.Tensor:
    if spec.get("kind") in ("binary", "digits"):
        return 1.0 - x
    lo, hi = float(spec.get("min", -10.0)), float(spec.get("max", 10.0))
    fresh = torch.rand(x.shape, generator=gen, dtype=torch.float64) * (hi - lo) + lo
    fresh = torch.where(fresh == x, fresh * 0.5 + 0.25 * (hi + lo), fresh)
    return fresh.to(x.dtype)


def _redrawn(ctx: CheckContext, params: dict[str, Any], dims: dict[str, int], seed: int
             ) -> Name | Handle | Attr | None:
    """A fresh instance of the class with its parameters re-drawn, or None where there is
    no class (a function) or it cannot be built and re-drawn."""
    if "module" not in params and "model" not in params:
        return None
    try:
        return _callable(ctx, params, dims, redraw=seed)
    except StudentException:
        return None


def confirm_missing(missing: dict[int, list[int]], probes: list[tuple[Probe, torch.Tensor]],
                    y: torch.Tensor, axis: int | str, gen: torch.Generator
                    ) -> dict[int, list[int]]:
    """The needed dependences that none of ``probes`` shows either: each is a probe and a
    batch of inputs (any batch size; rows already shown independent), a dependence counts if
    any row shows it; only the output positions still missing are back-propagated again."""
    for probe, x in probes:
        if not missing:
            break
        outputs = sorted(missing)
        try:
            dep = backprop_dependence(probe, x, y, axis, outputs, gen, every_row=True)
        except StudentException:
            continue                       # a re-drawn module may fail: no evidence from it
        missing = unseen(dep.amax(dim=1, keepdim=True), outputs, missing)
    return missing


def confirm_by_change(missing: dict[int, list[int]], call: Callable[[torch.Tensor], Any],
                      x: torch.Tensor, axis: int | str, spec: dict[str, Any],
                      gen: torch.Generator) -> dict[int, list[int]]:
    """The needed dependences that changing input position s alone (in every row of ``x``)
    does not show either: output t depends on s if its value changes. This sees through code
    no gradient passes (integer tokens, comparisons, a step function)."""
    y = call(x)
    if not torch.is_tensor(y):
        return missing
    xp, yp = positions(x, axis), positions(y, axis)
    wanted_s = sorted({s for wanted in missing.values() for s in wanted})
    inputs = []
    for s in wanted_s:
        changed = xp.clone()
        changed[:, s] = positions(_perturbed(x, spec, gen), axis)[:, s]
        inputs.append(unpositions(changed, x, axis))
    answers = together([functools.partial(call, changed) for changed in inputs])
    for s, answer in zip(wanted_s, answers):
        if answer.error is not None:
            raise answer.error              # the kernel died: no evidence either way
        y2 = answer.value()
        if not torch.is_tensor(y2) or y2.shape != y.shape:
            continue
        y2p = positions(y2, axis)
        for t in list(missing):
            if s in missing[t] and not torch.equal(yp[:, t], y2p[:, t]):
                missing[t] = [u for u in missing[t] if u != s]
                if not missing[t]:
                    del missing[t]
    return missing


def _check_dependence(ctx: CheckContext, params: dict[str, Any], example: dict[str, Any],
                      fn: Name | Handle | Attr, x: torch.Tensor, y: torch.Tensor,
                      gen: torch.Generator) -> None:
    """Gradient structure: no cross-row or forbidden dependence, and (``require``) every
    needed dependence seen on this input, on other inputs or with re-drawn parameters."""
    axis, offset = params.get("axis", 1), int(params.get("offset", 0))
    ce = {"inputs": example}
    steps = positions(x, axis).shape[1]
    outputs = list(range(steps))
    allowed = allowed_mask(steps, offset)
    need = required(steps, offset, params.get("require", "none"))
    state = gen.get_state()
    dep = backprop_dependence(_kernel_probe(ctx, fn, vectorize=True), x, y, axis, outputs, gen)
    if first_violation(dep, outputs, allowed) is not None or unseen(dep, outputs, need):
        gen.set_state(state)                   # the same cotangents, one backward pass each
        dep = backprop_dependence(_kernel_probe(ctx, fn), x, y, axis, outputs, gen)
    bad = first_violation(dep, outputs, allowed)
    if bad is not None:
        raise _violation(bad, dep, outputs, offset, ce)
    missing = unseen(dep, outputs, need)
    if not missing:
        return
    spec = next(iter(params["inputs"].values()))
    redrawn, others = _evidence(ctx, params, example, x, gen)
    gradients = [(f, x) for f in redrawn[:1]] + [(f, others) for f in [fn, *redrawn]]
    missing = confirm_missing(missing, [(_kernel_probe(ctx, f), xs) for f, xs in gradients],
                              y, axis, gen)
    changes = [(fn, x), (fn, others)] + [(f, others) for f in redrawn[:1]]
    for f, xs in changes:                  # plain calls: code no gradient passes through
        if not missing:
            break
        missing = confirm_by_change(missing, _kernel_call(ctx, f), xs, axis, spec, gen)
    if missing:
        t = min(missing)
        s = missing[t][0]
        k = outputs.index(t)
        also = " or with the parameters re-drawn at random" if redrawn else ""
        raise PropertyFailure(
            f"output position {t} (batch row {t % x.shape[0]}) does not depend on the input at "
            f"position {s} (gradient {float(dep[k, t % x.shape[0], s]):.3g}; neither a gradient "
            f"nor a change of that input shows it on {_OTHER_INPUTS} other inputs{also}): "
            "over-masked, it must see it",
            {**ce, "expected": f"non-zero gradient at positions {need[t][:10]}",
             "actual": f"zero at positions {missing[t][:10]}"})


def _evidence(ctx: CheckContext, params: dict[str, Any], example: dict[str, Any],
              x: torch.Tensor, gen: torch.Generator
              ) -> tuple[list[Name | Handle | Attr], torch.Tensor]:
    """Where else to look for a dependence before calling it absent: two fresh instances
    with re-drawn parameters (a zero-initialised layer) and a batch of 32 other inputs (a
    unit that is off here)."""
    spec = next(iter(params["inputs"].values()))
    dims = infer_dims(example, params)
    redrawn = [f for f in (_redrawn(ctx, params, dims, ctx.seed + k) for k in (1, 2))
               if f is not None]
    return redrawn, _fresh(x, spec, gen, _OTHER_INPUTS)


def _violation(bad: tuple[str, int, int, list[int]], dep: torch.Tensor, outputs: list[int],
               offset: int, ce: dict[str, Any]) -> PropertyFailure:
    kind, t, b, where_list = bad
    k = outputs.index(t)
    where = f"output position {t} (batch row {b})"
    if kind == "row":
        return PropertyFailure(f"{where} depends on batch row {where_list[0]}: rows of a batch "
                               "must be independent",
                               {**ce, "expected": "gradient 0 in other rows",
                                "actual": dep[k, where_list[0]]})
    rule = ("on no input" if t - offset < 0 else
            f"only on positions {'<=' if offset == 0 else '<'} {t}")
    return PropertyFailure(
        f"{where} depends on the input at position {where_list[0]} (gradient "
        f"{float(dep[k, b, where_list[0]]):.3g}); it may depend {rule}",
        {**ce, "expected": f"zero gradient at positions > {t - offset}",
         "actual": f"non-zero at positions {where_list[:10]}"})


def _check_perturbations(ctx: CheckContext, params: dict[str, Any], example: dict[str, Any],
                         fn: Name | Handle | Attr, x: torch.Tensor, y: torch.Tensor,
                         gen: torch.Generator) -> int:
    """Change the inputs from position s on (every s): the outputs before s + offset must
    stay bit-identical. Returns the number of calls made."""
    axis, offset = params.get("axis", 1), int(params.get("offset", 0))
    spec = next(iter(params["inputs"].values()))
    ce = {"inputs": example}
    xp = positions(x, axis)
    steps = xp.shape[1]
    inputs = []
    for s in range(1, steps):
        changed_p = xp.clone()
        changed_p[:, s:] = positions(_perturbed(x, spec, gen), axis)[:, s:]
        inputs.append(unpositions(changed_p, x, axis))
    answers = together([functools.partial(ctx.kernel.call, fn, changed, seed=ctx.seed)
                        for changed in inputs])
    for s, answer in enumerate(answers, 1):
        if isinstance(answer.error, StudentException):
            raise student_error(answer.error, example) from None
        if answer.error is not None:
            raise answer.error
        y2 = answer.value()
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
    return max(steps - 1, 0)


_CAUSAL_TYPES = {"offset": integer(min=0), "require": choice("none", "current", "all"),
                 "perturb": boolean()}


@check("causal_dependence", required=("inputs",),
       optional=("function", "module", "model", "method", "dims", "axis", "offset", "require",
                 "perturb", "max_examples"), types=_CAUSAL_TYPES)
def check_causal_dependence(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """Output at position t depends only on inputs at positions <= t - ``offset``.

    ``require``: ``none`` (default), ``current`` (output t must depend on input t) or
    ``all`` (on every allowed input). Batch rows must not depend on each other.
    """
    axis = params.get("axis", 1)
    offset = int(params.get("offset", 0))
    if params.get("require", "none") not in ("none", "current", "all"):
        raise KeyError(f"require must be none, current or all, not {params['require']!r}")
    name = next(iter(params["inputs"]))
    if "model" in params:
        target(ctx, params)                       # a checkpoint that does not load: an error
    counts = {"grad_calls": 0, "perturb_calls": 0}

    def prop(example: dict[str, Any]) -> None:
        dims = infer_dims(example, params)
        x = torch.as_tensor(example[name]).float()
        ce = {"inputs": example}
        try:
            fn = _callable(ctx, params, dims)
            y = ctx.kernel.call(fn, x, seed=ctx.seed)
        except StudentException as exc:
            raise student_error(exc, example) from None
        if not torch.is_tensor(y) or y.dim() < 2 or y.shape[0] != x.shape[0]:
            raise PropertyFailure(f"expected a tensor with the batch size {x.shape[0]} first, got "
                                  f"{show(y)[:120]}", ce)
        steps = positions(x, axis).shape[1]
        if positions(y, axis).shape[1] != steps:
            raise PropertyFailure(f"the output has {positions(y, axis).shape[1]} positions, the "
                                  f"input {steps} (output shape {tuple(y.shape)})", ce)
        gen = torch.Generator().manual_seed(ctx.seed)
        try:
            _check_dependence(ctx, params, example, fn, x, y, gen)
        except StudentException as exc:
            raise student_error(exc, example) from None
        counts["grad_calls"] += steps
        if params.get("perturb", True):
            counts["perturb_calls"] += _check_perturbations(ctx, params, example, fn, x, y, gen)

    tried, failure = run_property(examples(params), prop,
                                  int(params.get("max_examples", min(ctx.max_examples, 10))))
    rule = "<= t" if offset == 0 else "< t"
    return verdict_of(failure, tried, f"output t depends only on inputs at positions {rule} "
                       f"(gradients and perturbations, {tried} generated inputs)", **counts)


def _stack(ctx: CheckContext, params: dict[str, Any], redraw: int | None = None) -> Handle:
    layers = [build_module(ctx, spec, {}, redraw) for spec in params["layers"]]
    seq = ctx.kernel.call(Attr(Attr(Name("torch"), "nn"), "Sequential"), *layers, keep=True)
    _eval_mode(ctx, seq)
    return seq


def _seen(probe: Probe, x: torch.Tensor, y: torch.Tensor, axis: int | str, t: int,
          gen: torch.Generator) -> tuple[list[int], bool]:
    """The input positions output t (batch row t % B) depends on, and whether the other rows
    are untouched (evidence from a batch of other inputs needs independent rows)."""
    dep = backprop_dependence(probe, x, y, axis, [t], gen)[0]
    b = t % x.shape[0]
    independent = all(dep[r].max() == 0 for r in range(dep.shape[0]) if r != b)
    return [s for s in range(dep.shape[1]) if dep[b, s] != 0], independent


_FIELD_TYPES = {"layers": list_of(VOCABULARY["module"], min_len=1),
                "input_shape": list_of(integer(min=1), min_len=3, max_len=3),
                "expected": integer(min=1)}


@check("receptive_field", required=("layers", "input_shape", "expected"),
       optional=("axis",), types=_FIELD_TYPES)
def check_receptive_field(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """A stack of the student's layers: output t depends on exactly the ``expected`` input
    positions t - expected + 1 .. t (a dilated causal stack: 1 + sum((k - 1) * d)).

    t is ``expected // 2`` positions before the end, so a stack that sees the future shows it.
    Positions outside the window are judged on the stack as built; a position inside it that
    shows no gradient is looked for again on another input and with re-drawn parameters
    (a layer that starts at zero sees nothing until it is trained).
    """
    axis = params.get("axis", 2)
    gen = torch.Generator().manual_seed(ctx.seed)
    x = torch.randn(*params["input_shape"], generator=gen)
    steps, want = positions(x, axis).shape[1], int(params["expected"])
    t = steps - 1 - want // 2
    expected = list(range(t - want + 1, t + 1))
    try:
        seq = _stack(ctx, params)
        y = ctx.kernel.call(seq, x, seed=ctx.seed)
        if not torch.is_tensor(y) or positions(y, axis).shape[:2] != positions(x, axis).shape[:2]:
            return Verdict.failed(f"the stack maps {tuple(x.shape)} to {show(y)[:100]}, "
                                  "expected the same batch and number of positions")
        seen, independent = _seen(_kernel_probe(ctx, seq), x, y, axis, t, gen)
        if independent and set(seen) <= set(expected) and seen != expected:
            seen = sorted(set(seen) | _more_seen(ctx, params, seq, x, y, axis, t, gen, expected))
    except StudentException as exc:
        return Verdict.failed(f"your code raised {exc.ename}: {exc.evalue}",
                              traceback=exc.traceback)
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


def _more_seen(ctx: CheckContext, params: dict[str, Any], seq: Handle, x: torch.Tensor,
               y: torch.Tensor, axis: int | str, t: int, gen: torch.Generator,
               expected: list[int]) -> set[int]:
    """Window positions seen on another input, or with every layer's parameters re-drawn
    (only positions inside the window count: extra ones were judged on the stack as built)."""
    others = torch.randn(_OTHER_INPUTS, *x.shape[1:], generator=gen)
    probes = [(_kernel_probe(ctx, seq), others)]
    try:
        redrawn = _kernel_probe(ctx, _stack(ctx, params, redraw=ctx.seed + 1))
        probes += [(redrawn, x), (redrawn, others)]
    except StudentException:
        pass                               # no evidence from a stack that cannot be re-drawn
    missing = confirm_missing({t: expected}, probes, y, axis, gen)
    return set(expected) - set(missing.get(t, []))
