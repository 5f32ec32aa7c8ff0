"""Student modules against the library's own: the same weights in, the same outputs out.

The grader builds the library module (e.g. ``torch.nn.LSTMCell``) in ITS process with
seeded weights, sends those weights into the student's module in the kernel with
``load_state_dict`` (so parameter names and shapes are part of the contract), calls
both on hypothesis inputs and compares. The library module never enters the kernel.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import StudentException
from ..protocol import Attr
from .compare import Tolerance, mismatch
from .harness import examples, infer_dims, run_property, target, verdict_of
from .params import anything, list_of
from .registry import CheckContext, PropertyFailure, Verdict, check, manual_seed

__all__ = ["library_module", "arrange"]


class _NoFloat64(Exception):
    """The student's module does not run in float64 (fall back to float32, no penalty)."""


class _Lacking(Exception):
    """The student's module has no parameter for some of the library module's weights."""


def _unexpected_keys(loaded: Any) -> list[str]:
    """The library's weights ``load_state_dict(strict=False)`` found no place for (its reply,
    ``(missing_keys, unexpected_keys)``, is untrusted data: anything else means none).
    Keys the student's module has beyond the library's (a persistent buffer) are its own."""
    if isinstance(loaded, (tuple, list)) and len(loaded) == 2 and isinstance(loaded[1], list):
        return [str(k)[:80] for k in loaded[1][:10]]
    return []


def library_module(name: str, args: list[Any], dims: dict[str, int], seed: int,
                   dtype: torch.dtype) -> torch.nn.Module:
    """``torch.nn.<name>(*args)`` built in the grader under ``seed`` (global RNG untouched)."""
    cls = getattr(torch.nn, name, None)
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise KeyError(f"torch.nn has no module `{name}`")
    sizes = [dims.get(a, a) if isinstance(a, str) else a for a in args]
    with torch.random.fork_rng(devices=[]):
        manual_seed(seed)
        module = cls(*sizes)
    return module.to(dtype).eval()


def arrange(form: list[Any], tensors: dict[str, torch.Tensor]) -> list[Any]:
    """Arguments from a call form: names, and nested lists meaning tuples (``[x, [h, c]]``)."""
    out: list[Any] = []
    for entry in form:
        if isinstance(entry, list):
            out.append(tuple(arrange(entry, tensors)))
        else:
            out.append(tensors[entry])
    return out


def _all_float64(value: Any) -> bool:
    if isinstance(value, (tuple, list)):
        return all(_all_float64(v) for v in value)
    return not torch.is_tensor(value) or value.dtype == torch.float64


def _form_text(form: list[Any]) -> str:
    return ", ".join(f"({_form_text(e)})" if isinstance(e, list) else str(e) for e in form)


@check("matches_torch_module", required=("module", "torch", "inputs", "calls"),
       optional=("dims", "torch_args", "precision", "atol", "atol32", "rtol", "rtol32",
                 "max_examples"),
       types={"calls": list_of(list_of(anything()), min_len=1),
              "torch_args": list_of(anything())})
def check_matches_torch_module(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """The student's module, loaded with a seeded ``torch.nn`` module's weights, gives its outputs.

    ``calls`` lists the argument forms tried on every example, e.g. ``[[x], [x, [h, c]]]``
    (a nested list is a tuple argument). Float64 where the student's module allows it
    (``atol`` default 1e-10), else float32 (``atol32`` default 1e-5).
    """
    ctx.require(params["module"]["class"])
    torch_args = params.get("torch_args", params["module"].get("args", []))
    state: dict[str, Any] = {}

    def student(dims: dict[str, int], precision: str, weights: dict[str, torch.Tensor]) -> Any:
        handle = target(ctx, params, dims, precision)
        loaded = ctx.kernel.call(Attr(handle, "load_state_dict"), weights, seed=ctx.seed,
                                 strict=False)
        lacking = _unexpected_keys(loaded)
        if lacking:
            raise _Lacking(lacking)
        ctx.kernel.call(Attr(handle, "eval"), seed=ctx.seed)      # as the library module
        return handle

    def run(example: dict[str, Any], precision: str) -> None:
        dims = infer_dims(example, params)
        dtype = torch.float64 if precision == "float64" else torch.float32
        lib = library_module(params["torch"], torch_args, dims, ctx.seed, dtype)
        weights = {k: v.detach().clone() for k, v in lib.state_dict().items()}
        tensors = {k: torch.as_tensor(example[k]).to(dtype) for k in params["inputs"]}
        try:
            handle = student(dims, precision, weights)
        except _Lacking as exc:
            shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in weights.items())
            raise PropertyFailure(
                f"your module has no parameter {', '.join(exc.args[0])} to receive "
                f"torch.nn.{params['torch']}'s weights ({shapes}): keep the documented "
                "parameter names", {"inputs": example}) from None
        except StudentException as exc:
            if precision == "float64":
                raise _NoFloat64() from None
            raise PropertyFailure(
                f"could not load torch.nn.{params['torch']}'s parameters "
                f"({', '.join(f'{k} {tuple(v.shape)}' for k, v in weights.items())}) into your "
                f"module: {exc.ename}: {exc.evalue[:300]}",
                {"inputs": example}) from None
        tol = (Tolerance(float(params.get("rtol", 0.0)), float(params.get("atol", 1e-10)))
               if precision == "float64" else
               Tolerance(float(params.get("rtol32", 0.0)), float(params.get("atol32", 1e-5))))
        for form in params["calls"]:
            args = arrange(form, tensors)
            with torch.no_grad():
                expected = lib(*args)
            try:
                actual = ctx.kernel.call(handle, *args, seed=ctx.seed)
            except StudentException as exc:
                if precision == "float64":
                    raise _NoFloat64() from None
                raise PropertyFailure(f"forward({_form_text(form)}) raised {exc.ename}: "
                                      f"{exc.evalue[:300]}",
                                      {"inputs": example}) from None
            if precision == "float64" and not _all_float64(actual):
                raise _NoFloat64()
            why = mismatch(actual, expected, tol)
            if why:
                raise PropertyFailure(
                    f"forward({_form_text(form)}) differs from torch.nn.{params['torch']} with "
                    f"the same weights ({precision}): {why}",
                    {"inputs": example, "expected": expected,
                     "actual": actual})

    def prop(example: dict[str, Any]) -> None:
        if "precision" not in state:
            state["precision"] = params.get("precision") or _probe_precision(example)
        try:
            run(example, state["precision"])
        except _NoFloat64:
            run(example, "float32")       # float64 not on this input (sizes): float32, no penalty

    def _probe_precision(example: dict[str, Any]) -> str:
        try:
            run(example, "float64")
        except _NoFloat64:
            return "float32"
        except PropertyFailure:
            pass                                   # a real difference: report it in float64
        return "float64"

    tried, failure = run_property(examples(params), prop,
                                  int(params.get("max_examples", ctx.max_examples)))
    return verdict_of(failure, tried, f"equals torch.nn.{params['torch']} with the same weights "
                       f"on {tried} generated inputs ({state.get('precision')})",
                       precision=state.get("precision"))
