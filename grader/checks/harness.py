"""The one layer checks use to reach the student's code and judge what comes back.

A check names its target (``target``: a notebook function, a fresh module, a trained
model), draws its inputs (``examples``: hypothesis strategies from the rubric's input
specs, drawn up front and cached), runs its property over them (``run_property``: every
input's kernel calls batched into a few round trips, hypothesis shrinking only after a
failure), compares with the reference under tolerances (``judge_with_float32_retry``,
``mismatch``) and turns the outcome into a verdict (``verdict_of``; ``student_error`` for
code that raised). Independent calls outside a property go together with ``gather``; a
chain of dependent calls is one request with ``KernelProxy.run``. Check modules import
these from here, never each other's private helpers.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from ..batching import gather, together
from ..errors import StudentException, SubmissionError
from ..protocol import Attr, Handle, Name
from .compare import Tolerance, mismatch
from .registry import CheckContext, PropertyFailure, Verdict
from .strategies import input_sets, keyed, run_property

__all__ = ["target", "preflight", "examples", "infer_dims", "tensors", "arg_names",
           "student_error", "verdict_of", "choose_precision", "judge_with_float32_retry",
           "run_property", "gather", "together", "mismatch", "Tolerance", "rubric_model",
           "digits_data", "known_values_verdict", "call_on_example"]


def arg_names(params: dict[str, Any]) -> list[str]:
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


def tensors(example: dict[str, np.ndarray], params: dict[str, Any], dtype: torch.dtype
             ) -> list[Any]:
    out: list[Any] = []
    for name in arg_names(params):
        value = example[name]
        spec = params["inputs"].get(name, {})
        if spec.get("kind") == "int":
            out.append(int(value))
        elif spec.get("dtype") == "long" or spec.get("kind") == "integers":
            out.append(torch.as_tensor(value).long())
        else:
            out.append(torch.as_tensor(value).to(dtype))
    return out


def examples(params: dict[str, Any]):  # type: ignore[no-untyped-def]
    """Strategy over (dims, arrays): ``kind: int`` inputs take the value of a dim."""
    inputs = {k: v for k, v in params["inputs"].items() if v.get("kind") != "int"}
    strategy = input_sets(inputs, params.get("dims", {}))

    def add_ints(arrays: dict[str, Any]) -> dict[str, Any]:
        dims = infer_dims(arrays, params)
        for name, spec in params["inputs"].items():
            if spec.get("kind") == "int":
                arrays[name] = np.asarray(dims.get(spec["dim"], spec.get("value", 1)))
        return arrays

    return keyed(strategy.map(add_ints), "examples", params["inputs"], params.get("dims", {}))


def infer_dims(arrays: dict[str, Any], params: dict[str, Any]) -> dict[str, int]:
    dims: dict[str, int] = dict(arrays.get("_dims", {}))
    for name, spec in params["inputs"].items():
        if name in arrays and "shape" in spec:
            for sym, size in zip(spec["shape"], np.shape(arrays[name])):
                if isinstance(sym, str):
                    dims[sym] = int(size)
    for sym, (lo, _hi) in params.get("dims", {}).items():
        dims.setdefault(sym, int(lo))
    return dims


def student_error(exc: StudentException, example: dict[str, Any]) -> PropertyFailure:
    failure = PropertyFailure(f"your code raised {exc.ename}: {exc.evalue}",
                              {"inputs": example, "expected": None, "actual": None})
    failure.traceback = exc.traceback  # type: ignore[attr-defined]
    return failure


def verdict_of(failure: BaseException | None, tried: int, ok_message: str,
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


def choose_precision(ctx: CheckContext, params: dict[str, Any], example: dict[str, Any]) -> str:
    """float64 where the student's code allows it, float32 where it does not."""
    if params.get("precision") in ("float32", "float64"):
        return str(params["precision"])
    try:
        fn = target(ctx, params, infer_dims(example, params), "float64")
        out = ctx.kernel.call(fn, *tensors(example, params, torch.float64), seed=ctx.seed)
    except StudentException:
        return "float32"
    first = out[0] if isinstance(out, (tuple, list)) and out else out
    return "float64" if isinstance(first, torch.Tensor) and first.dtype == torch.float64 \
        else "float32"


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


def rubric_model(ctx: CheckContext, params: dict[str, Any], default_class: str) -> Handle:
    """The student's model as ``params["model"]`` names it (class and checkpoint), by default
    ``default_class`` with no checkpoint."""
    return ctx.model(params.get("model", {"class": default_class, "checkpoint": None}))


def digits_data(params: dict[str, Any], form: str = "binary") -> torch.Tensor:
    """The embedded digits ``params["data"]`` asks for: ``split`` (default test), ``form``
    and the first ``n`` images (default all)."""
    from ..data import digits

    spec = params.get("data", {})
    x = digits(spec.get("split", "test"), spec.get("form", form))
    return x[:int(spec.get("n", len(x)))]


def known_values_verdict(passed: int, total: int, notes: list[str]) -> Verdict:
    """Credit for fixed cases: the share right, each wrong one named."""
    if passed == total:
        return Verdict.passed(f"all {total} known values right")
    return Verdict(passed / total, f"{total - passed} of {total} known values wrong: " +
                   "; ".join(notes), details={"passed": passed, "total": total})


def call_on_example(ctx: CheckContext, params: dict[str, Any], example: dict[str, Any],
                    precision: str) -> Any:
    """The student's function (:func:`target`) on ``example``'s tensors in ``precision``
    (``"float64"`` or ``"float32"``); a raise becomes a failure that shows the example."""
    dtype = torch.float64 if precision == "float64" else torch.float32
    try:
        fn = target(ctx, params, infer_dims(example, params), precision)
        return ctx.kernel.call(fn, *tensors(example, params, dtype), seed=ctx.seed)
    except StudentException as exc:
        raise student_error(exc, example) from None
