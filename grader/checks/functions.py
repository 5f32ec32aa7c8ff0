"""Generic checks on the student's functions and modules, reusable by every lab.

Targets a rubric can name (``params``):

- ``function: gaussian_kl`` — a global function of the notebook;
- ``module: {class: Encoder, args: [L]}`` — a fresh instance (built seeded, by
  the student's own class; dims symbols in ``args`` are replaced);
- ``model: {class: VAE, checkpoint: vae.pt, attr: encoder}`` — the trained model
  loaded from the checkpoint, in eval mode; ``method: sample`` calls a method.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import StudentException
from ..protocol import Attr, Handle
from ..report.values import text as show
from .compare import Tolerance, broadcast_outputs, mismatch, normal_moment_test
from .harness import (arg_names, call_on_example, choose_precision, examples, infer_dims,
                      judge_with_float32_retry, known_values_verdict, preflight, run_property,
                      student_error, target, tensors, verdict_of)
from .params import LITERAL_INPUTS, SIZE, anything, list_of, mapping, one_of, string
from .registry import CheckContext, PropertyFailure, Verdict, check

_TARGET = ("function", "module", "model", "method")
_INPUTS = ("inputs", "dims", "args")


@check("matches_reference", required=("inputs",), optional=(*_TARGET, "dims", "args", "reference",
                                                           "rtol", "atol", "rtol32", "atol32",
                                                           "precision", "max_examples",
                                                           "broadcast_to"),
       types={"broadcast_to": string()})
def check_matches_reference(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """The student's output equals the reference's on hypothesis-generated inputs.

    ``broadcast_to`` (an input's name): each output is first broadcast to that input's
    shape, as the reference's is: a variance of shape (B, 1, 1, 1) and one of x0's shape
    are both right, one that does not broadcast to x0's is wrong. A float64 miss is re-run
    in float32 (``judge_with_float32_retry``): float32 inside is float32 code, not a wrong
    answer."""
    reference = ctx.ref(params.get("reference") or params.get("function"))
    preflight(ctx, params)
    strategy = examples(params)
    state: dict[str, Any] = {}
    like = params.get("broadcast_to")

    def broadcast(actual: Any, expected: Any, example: dict[str, Any]) -> tuple[Any, str | None]:
        if like is None:
            return actual, None
        return broadcast_outputs(actual, expected, tuple(example[like].shape))

    def run(example: dict[str, Any], precision: str) -> Any:
        return call_on_example(ctx, params, example, precision)

    def prop(example: dict[str, Any]) -> None:
        if "precision" not in state:
            state["precision"] = choose_precision(ctx, params, example)
        precision = state["precision"]
        actual = run(example, precision)
        args = tensors(example, params, torch.float64)   # float32-representable values
        expected, _ = broadcast(*[reference(*args)] * 2, example)
        shaped, why = broadcast(actual, expected, example)
        if why is None:
            why, inside = judge_with_float32_retry(
                shaped, expected, params, precision,
                lambda: broadcast(run(example, "float32"), expected, example)[0])
            state["float32_inside"] = state.get("float32_inside", 0) + inside
        if why:
            raise PropertyFailure(why, {"inputs": example,
                                        "expected": expected, "actual": actual})

    tried, failure = run_property(strategy, prop, int(params.get("max_examples",
                                                                   ctx.max_examples)))
    extra = {"float32_inside": state["float32_inside"]} if state.get("float32_inside") else {}
    shaped = f" (outputs broadcast to {like}'s shape)" if like else ""
    return verdict_of(failure, tried, f"matches the reference on {tried} generated inputs{shaped}",
                      precision=state.get("precision"), **extra)


@check("output_shapes", required=("inputs", "outputs"),
       optional=(*_TARGET, "dims", "args", "range", "max_examples"),
       types={"outputs": one_of(list_of(SIZE), list_of(list_of(SIZE), min_len=1))})
def check_output_shapes(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """Outputs have the stated shapes (dims symbols), are floating, finite, in range.

    A freshly built ``module`` is put in eval mode first, as the grader uses every model
    (LABS.md): a BatchNorm layer cannot run in training mode on a batch of one.
    """
    expected_shapes = params["outputs"]
    single = not expected_shapes or not isinstance(expected_shapes[0], list)
    if single:
        expected_shapes = [expected_shapes]
    lo, hi = params.get("range", [None, None])
    preflight(ctx, params)

    def prop(example: dict[str, Any]) -> None:
        dims = infer_dims(example, params)
        try:
            fn = target(ctx, params, dims)
            if "module" in params and isinstance(fn, Handle):   # eval mode, as models are
                ctx.kernel.call(Attr(fn, "eval"), keep=True)     # used (BatchNorm at B = 1)
            out = ctx.kernel.call(fn, *tensors(example, params, torch.float32), seed=ctx.seed)
        except StudentException as exc:
            raise student_error(exc, example) from None
        outs = [out] if single else out
        if not isinstance(outs, (tuple, list)) or len(outs) != len(expected_shapes):
            raise PropertyFailure(f"expected {len(expected_shapes)} outputs, got "
                                  f"{type(out).__name__}", {"inputs": example})
        for i, (o, shape) in enumerate(zip(outs, expected_shapes)):
            want = tuple(dims[s] if isinstance(s, str) else s for s in shape)
            ce = {"inputs": example, "expected": f"shape {want}"}
            if not isinstance(o, torch.Tensor) or not o.is_floating_point():
                raise PropertyFailure(f"output {i} is not a floating tensor", ce)
            if tuple(o.shape) != want:
                raise PropertyFailure(f"output {i} has shape {tuple(o.shape)}, expected {want}",
                                      {**ce, "actual": f"shape {tuple(o.shape)}"})
            if not torch.isfinite(o).all():
                raise PropertyFailure(f"output {i} contains nan or inf",
                                      {**ce, "actual": o})
            if lo is not None and (o.min() < lo or o.max() > hi):
                raise PropertyFailure(f"output {i} leaves [{lo}, {hi}]: min {o.min().item():.4g},"
                                      f" max {o.max().item():.4g}", {**ce, "actual": o})

    tried, failure = run_property(examples(params), prop,
                                  int(params.get("max_examples", min(ctx.max_examples, 10))))
    return verdict_of(failure, tried, f"shapes, dtype and values right on {tried} inputs")


@check("known_values", required=("cases",), optional=(*_TARGET, "rtol", "atol"),
       types={"cases": list_of(mapping({"args": list_of(anything()), "expected": anything(),
                                        "label": string()}, required=("args", "expected")))})
def check_known_values(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """Hand-picked inputs with known outputs (from the literature); partial credit per case."""
    tol = Tolerance(float(params.get("rtol", 1e-5)), float(params.get("atol", 1e-5)))
    passed, notes = 0, []
    for case in params["cases"]:
        args = [torch.tensor(a, dtype=torch.float32) if isinstance(a, list) else a
                for a in case["args"]]
        expected = torch.tensor(case["expected"], dtype=torch.float64)
        try:
            actual = ctx.kernel.call(target(ctx, params), *args, seed=ctx.seed)
            why = mismatch(actual, expected, tol)
        except StudentException as exc:
            why = f"raised {exc.ename}: {exc.evalue}"
        label = case.get("label", f"args {case['args']}")
        if why:
            notes.append(f"{label}: {why}")
        else:
            passed += 1
    return known_values_verdict(passed, len(params["cases"]), notes)


@check("output_bounds", required=("inputs",), optional=(*_TARGET, "dims", "args", "min", "max",
                                                       "atol", "max_examples"))
def check_output_bounds(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """Every output element stays within [min - atol, max + atol] on generated inputs."""
    lo, hi = params.get("min"), params.get("max")
    atol = float(params.get("atol", 1e-6))
    preflight(ctx, params)

    def prop(example: dict[str, Any]) -> None:
        try:
            out = ctx.kernel.call(target(ctx, params, infer_dims(example, params)),
                                  *tensors(example, params, torch.float32), seed=ctx.seed)
        except StudentException as exc:
            raise student_error(exc, example) from None
        o = out.double() if isinstance(out, torch.Tensor) else torch.tensor(float("nan"))
        ce = {"inputs": example, "expected": _range_text(lo, hi),
              "actual": out}
        if not torch.isfinite(o).all():
            raise PropertyFailure("output is not finite", ce)
        if lo is not None and o.min() < lo - atol:
            raise PropertyFailure(f"output {o.min().item():.6g} is below {lo}", ce)
        if hi is not None and o.max() > hi + atol:
            raise PropertyFailure(f"output {o.max().item():.6g} is above {hi}", ce)

    tried, failure = run_property(examples(params), prop,
                                  int(params.get("max_examples", ctx.max_examples)))
    return verdict_of(failure, tried, f"outputs within bounds on {tried} inputs")


def _range_text(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"values in [{lo:g}, {hi:g}]"
    return f"values >= {lo:g}" if lo is not None else f"values <= {hi:g}"


@check("normal_moments", required=("inputs", "moments", "samples"),
       optional=(*_TARGET, "args", "alpha"),
       types={"inputs": LITERAL_INPUTS})
def check_normal_moments(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """Samples have the mean and std the reference's closed form gives (z-tests).

    The fixed ``inputs`` are repeated ``samples`` times along the batch; the
    family-wise false-alarm rate is ``alpha`` (default 1e-6), Bonferroni-corrected.
    """
    n, alpha = int(params["samples"]), float(params.get("alpha", 1e-6))
    base = [torch.tensor(params["inputs"][k], dtype=torch.float32) for k in arg_names(params)]
    args = [b.repeat(n, *[1] * (b.dim() - 1)) for b in base]
    try:
        out = ctx.kernel.call(target(ctx, params), *args, seed=ctx.seed)
    except StudentException as exc:
        return Verdict.failed(f"your code raised {exc.ename}: {exc.evalue}",
                              traceback=exc.traceback)
    if not isinstance(out, torch.Tensor) or out.shape != args[0].shape:
        return Verdict.failed(f"expected a tensor of shape {tuple(args[0].shape)}, got "
                              f"{show(out)[:100]}")
    mean, std = ctx.ref(params["moments"])(*[b.double() for b in base])
    rows = out.reshape(n, -1, *out.shape[1:])
    res = normal_moment_test(rows, mean, std, alpha)
    details = {"samples": n, "alpha": alpha, "z_critical": round(res["z_critical"], 3),
               "worst_z_mean": round(res["worst_z_mean"], 3),
               "worst_z_var": round(res["worst_z_var"], 3)}
    inputs = dict(zip(arg_names(params), base))
    ce = {"inputs": inputs, "expected": f"mean {show(mean)}, std {show(std)}",
          "actual": f"mean {show(res['sample_mean'])}, std {show(res['sample_std'])}"}
    if res["mean_ok"] and res["var_ok"]:
        return Verdict.passed(f"mean and std match over {n} draws (false-alarm rate {alpha:g})",
                              **details)
    what = "mean" if not res["mean_ok"] else "standard deviation"
    return Verdict.failed(f"the {what} of the samples is wrong (z = "
                          f"{max(details['worst_z_mean'], details['worst_z_var']):.1f}, limit "
                          f"{details['z_critical']:.1f} at false-alarm rate {alpha:g})", ce,
                          **details)
