"""Generic checks on the student's functions and modules, reusable by every lab.

Targets a rubric can name (``params``):

- ``function: gaussian_kl`` — a global function of the notebook;
- ``module: {class: Encoder, args: [L]}`` — a fresh instance (built seeded, by
  the student's own class; dims symbols in ``args`` are replaced);
- ``model: {class: VAE, checkpoint: vae.pt, attr: encoder}`` — the trained model
  loaded from the checkpoint, in eval mode; ``method: sample`` calls a method.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from ..errors import StudentException, SubmissionError
from ..protocol import Attr, Handle, Name
from .compare import Tolerance, mismatch, normal_moment_test
from .params import LITERAL_INPUTS, SIZE, anything, list_of, mapping, one_of, string
from ..report.values import text as show
from .registry import CheckContext, PropertyFailure, Verdict, check
from .strategies import input_sets, keyed, run_property

_TARGET = ("function", "module", "model", "method")
_INPUTS = ("inputs", "dims", "args")


def _arg_names(params: dict[str, Any]) -> list[str]:
    return list(params.get("args") or params.get("inputs", {}).keys())


def target(ctx: CheckContext, params: dict[str, Any], dims: dict[str, int] | None = None,
           precision: str = "float32") -> Name | Handle | Attr:
    """The callable in the kernel that ``params`` names."""
    dims = dims or {}
    if "function" in params:
        ctx.require(params["function"])
        ref: Name | Handle | Attr = Name(params["function"])
    elif "module" in params:
        spec = params["module"]
        ctx.require(spec["class"])
        args = [dims.get(a, a) if isinstance(a, str) else a for a in spec.get("args", [])]
        ref = ctx.kernel.call(Name(spec["class"]), *args, seed=ctx.seed, keep=True)
        if precision == "float64":
            ref = ctx.kernel.call(Attr(ref, "double"), keep=True)
        if ctx.device != "cpu":
            ref = ctx.kernel.call(Attr(ref, "to"), ctx.device, keep=True)
    elif "model" in params:
        spec = params["model"]
        ref = ctx.model(spec)
        for name in filter(None, str(spec.get("attr", "")).split(".")):
            ref = Attr(ref, name)
    else:
        raise KeyError("the check names no function, module or model")
    if params.get("method"):
        ref = Attr(ref, params["method"])
    return ref


def preflight(ctx: CheckContext, params: dict[str, Any]) -> None:
    """Resolve a target that does not depend on drawn dims before any property runs.

    A missing name or a checkpoint that does not load is then an ``error`` of the
    item (raised here), not a failure on some generated input.
    """
    if "module" not in params:
        target(ctx, params)


def _tensors(example: dict[str, np.ndarray], params: dict[str, Any], dtype: torch.dtype
             ) -> list[Any]:
    out: list[Any] = []
    for name in _arg_names(params):
        value = example[name]
        spec = params["inputs"].get(name, {})
        if spec.get("kind") == "int":
            out.append(int(value))
        elif spec.get("dtype") == "long" or spec.get("kind") == "integers":
            out.append(torch.as_tensor(value).long())
        else:
            out.append(torch.as_tensor(value).to(dtype))
    return out


def _examples(params: dict[str, Any]):  # type: ignore[no-untyped-def]
    """Strategy over (dims, arrays): ``kind: int`` inputs take the value of a dim."""
    inputs = {k: v for k, v in params["inputs"].items() if v.get("kind") != "int"}
    strategy = input_sets(inputs, params.get("dims", {}))

    def add_ints(arrays: dict[str, Any]) -> dict[str, Any]:
        dims = _infer_dims(arrays, params)
        for name, spec in params["inputs"].items():
            if spec.get("kind") == "int":
                arrays[name] = np.asarray(dims.get(spec["dim"], spec.get("value", 1)))
        return arrays

    return keyed(strategy.map(add_ints), "examples", params["inputs"], params.get("dims", {}))


def _infer_dims(arrays: dict[str, Any], params: dict[str, Any]) -> dict[str, int]:
    dims: dict[str, int] = dict(arrays.get("_dims", {}))
    for name, spec in params["inputs"].items():
        if name in arrays and "shape" in spec:
            for sym, size in zip(spec["shape"], np.shape(arrays[name])):
                if isinstance(sym, str):
                    dims[sym] = int(size)
    for sym, (lo, _hi) in params.get("dims", {}).items():
        dims.setdefault(sym, int(lo))
    return dims


def _student_error(exc: StudentException, example: dict[str, Any]) -> PropertyFailure:
    failure = PropertyFailure(f"your code raised {exc.ename}: {exc.evalue}",
                              {"inputs": example, "expected": None, "actual": None})
    failure.traceback = exc.traceback  # type: ignore[attr-defined]
    return failure


def _verdict_of(failure: BaseException | None, tried: int, ok_message: str,
                **details: Any) -> Verdict:
    if failure is None:
        return Verdict.passed(ok_message, examples=tried, **details)
    if isinstance(failure, SubmissionError):
        raise failure
    if isinstance(failure, PropertyFailure):
        verdict = Verdict.failed(failure.message, failure.counterexample, examples=tried, **details)
        tb = getattr(failure, "traceback", None)
        if tb:
            verdict.details["traceback"] = tb
        return verdict
    raise failure


def _precision(ctx: CheckContext, params: dict[str, Any], example: dict[str, Any]) -> str:
    """float64 where the student's code allows it, float32 where it does not."""
    if params.get("precision") in ("float32", "float64"):
        return str(params["precision"])
    try:
        fn = target(ctx, params, _infer_dims(example, params), "float64")
        out = ctx.kernel.call(fn, *_tensors(example, params, torch.float64), seed=ctx.seed)
    except StudentException:
        return "float32"
    first = out[0] if isinstance(out, (tuple, list)) and out else out
    return "float64" if isinstance(first, torch.Tensor) and first.dtype == torch.float64 \
        else "float32"


@check("matches_reference", required=("inputs",), optional=(*_TARGET, "dims", "args", "reference",
                                                           "rtol", "atol", "rtol32", "atol32",
                                                           "precision", "max_examples"))
def check_matches_reference(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """The student's output equals the reference's on hypothesis-generated inputs."""
    reference = ctx.ref(params.get("reference") or params.get("function"))
    preflight(ctx, params)
    strategy = _examples(params)
    state: dict[str, Any] = {}

    def run(example: dict[str, Any], precision: str) -> Any:
        dtype = torch.float64 if precision == "float64" else torch.float32
        try:
            fn = target(ctx, params, _infer_dims(example, params), precision)
            return ctx.kernel.call(fn, *_tensors(example, params, dtype), seed=ctx.seed)
        except StudentException as exc:
            raise _student_error(exc, example) from None

    def prop(example: dict[str, Any]) -> None:
        if "precision" not in state:
            state["precision"] = _precision(ctx, params, example)
        precision = state["precision"]
        actual = run(example, precision)
        args = _tensors(example, params, torch.float64)   # float32-representable values
        expected = reference(*args)
        why, inside = judge_with_float32_retry(actual, expected, params, precision,
                                               lambda: run(example, "float32"))
        state["float32_inside"] = state.get("float32_inside", 0) + inside
        if why:
            raise PropertyFailure(why, {"inputs": example,
                                        "expected": expected, "actual": actual})

    tried, failure = run_property(strategy, prop, int(params.get("max_examples",
                                                                   ctx.max_examples)))
    extra = {"float32_inside": state["float32_inside"]} if state.get("float32_inside") else {}
    return _verdict_of(failure, tried, f"matches the reference on {tried} generated inputs",
                       precision=state.get("precision"), **extra)


def judge_with_float32_retry(actual: Any, expected: Any, params: dict[str, Any], precision: str,
                             again: Callable[[], Any]) -> tuple[str | None, bool]:
    """Why ``actual`` is not ``expected`` (None if it is), and whether it took a float32 rerun.

    Code that takes float64 and returns float64 may compute in float32 inside (LABS.md's
    dtype; how the student computes is free): a float64 miss is re-run in float32,
    ``again()``, on the same inputs and judged as float32-only code is, so float64-capable
    code never meets a stricter standard than float32 code. The float64 finding is the one
    reported when both miss.
    """
    why = mismatch(actual, expected, Tolerance.of(params, precision))
    if why is None or precision != "float64":
        return why, False
    try:
        rerun = again()
    except PropertyFailure:
        return why, False
    if mismatch(rerun, expected, Tolerance.of(params, "float32")) is None:
        return None, True
    return why, False


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
        dims = _infer_dims(example, params)
        try:
            fn = target(ctx, params, dims)
            if "module" in params and isinstance(fn, Handle):   # eval mode, as models are
                ctx.kernel.call(Attr(fn, "eval"), keep=True)     # used (BatchNorm at B = 1)
            out = ctx.kernel.call(fn, *_tensors(example, params, torch.float32), seed=ctx.seed)
        except StudentException as exc:
            raise _student_error(exc, example) from None
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

    tried, failure = run_property(_examples(params), prop,
                                  int(params.get("max_examples", min(ctx.max_examples, 10))))
    return _verdict_of(failure, tried, f"shapes, dtype and values right on {tried} inputs")


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
    total = len(params["cases"])
    if passed == total:
        return Verdict.passed(f"all {total} known values right")
    return Verdict(passed / total, f"{total - passed} of {total} known values wrong: " +
                   "; ".join(notes), details={"passed": passed, "total": total})


@check("output_bounds", required=("inputs",), optional=(*_TARGET, "dims", "args", "min", "max",
                                                       "atol", "max_examples"))
def check_output_bounds(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """Every output element stays within [min - atol, max + atol] on generated inputs."""
    lo, hi = params.get("min"), params.get("max")
    atol = float(params.get("atol", 1e-6))
    preflight(ctx, params)

    def prop(example: dict[str, Any]) -> None:
        try:
            out = ctx.kernel.call(target(ctx, params, _infer_dims(example, params)),
                                  *_tensors(example, params, torch.float32), seed=ctx.seed)
        except StudentException as exc:
            raise _student_error(exc, example) from None
        o = out.double() if isinstance(out, torch.Tensor) else torch.tensor(float("nan"))
        ce = {"inputs": example, "expected": _range_text(lo, hi),
              "actual": out}
        if not torch.isfinite(o).all():
            raise PropertyFailure("output is not finite", ce)
        if lo is not None and o.min() < lo - atol:
            raise PropertyFailure(f"output {o.min().item():.6g} is below {lo}", ce)
        if hi is not None and o.max() > hi + atol:
            raise PropertyFailure(f"output {o.max().item():.6g} is above {hi}", ce)

    tried, failure = run_property(_examples(params), prop,
                                  int(params.get("max_examples", ctx.max_examples)))
    return _verdict_of(failure, tried, f"outputs within bounds on {tried} inputs")


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
    base = [torch.tensor(params["inputs"][k], dtype=torch.float32) for k in _arg_names(params)]
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
    inputs = dict(zip(_arg_names(params), base))
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
