"""Checks of normalising flows (the flow lab), generic over the rubric's parameters.

A transform under test is named by ``flow: {class: AffineCoupling, args: [D, mask]}``:
the student's class built in the kernel under the grader's seed, with dims symbols and
input names in ``args`` replaced by drawn sizes and drawn tensors (a ``mask``), its
trainable parameters re-drawn at random with scale ``redraw`` (instrument
``basic.redraw_parameters``: zero-initialised couplings are the identity and would hide
every bug; frozen parameters and the sign of signed ones are kept), put in eval mode,
and cast to float64 where every method the check calls allows it. A trained model is
named by ``model: {class, checkpoint, args}``.

Nothing the kernel says is believed: log-determinants are compared with log|det J| of the
autograd Jacobian (instrument ``flow.Jacobian``), which the grader first confirms with its
own finite differences from black-box calls (``grader.checks.numeric``: robust to the
kinks of ReLU networks); log-densities are recomputed as log N(z) + logdet from the
student's own forward. Floating point limits what any correct flow can achieve, and the
limit is measured rather than assumed: a round trip is allowed NOISE_FACTOR times its
rounding noise measured on the student's own code (``rounding_floor``), a log-determinant
NOISE_FACTOR times the rounding sensitivity of log|det J| (``logdet_noise``); both are
negligible except for steep flows, where a fixed tolerance would fail correct code.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from ..errors import StudentException
from ..protocol import Attr, Handle, Name
from ..scoring import linear_credit
from .harness import run_property, student_error, verdict_of
from .numeric import jacobian_mismatch
from .params import boolean, choice, integer, interval, list_of, number, string
from .registry import CheckContext, Metric, PropertyFailure, Verdict, check, manual_seed
from .strategies import input_sets

__all__ = ["normal_log_prob", "slogdet", "grid", "logdet_problem", "logdet_noise",
           "round_trip_error", "rounding_floor", "flow_nll", "NOISE_FACTOR"]

_FLOW = ("flow", "inputs", "dims")
_CHUNK = 16384
# How many times its estimated rounding noise a correct flow's error may reach. Measured on
# correct RealNVPs with ReLU/LeakyReLU/SiLU/ELU conditioners, ActNorm, log-scales up to +-3,
# |x| <= 10 (800 random flows each, float32 and float64): round-trip error / rounding_floor
# <= 23, log|det J| error / logdet_noise <= 42; a bug is off by O(1) x |x|.
NOISE_FACTOR = 64.0


# ---------------------------------------------------------------- pure helpers (tested)

def normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) per row, float64: (B, D) -> (B,)."""
    z = z.double()
    return -0.5 * (z * z).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)


def slogdet(jac: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sign, log|det|) of each (D, D) Jacobian, float64."""
    sign, logabs = torch.linalg.slogdet(jac.double())
    return sign, logabs


def logdet_noise(jac: torch.Tensor, unit: float) -> torch.Tensor:
    """How far rounding at relative size ``unit`` in the entries of each Jacobian (B, D, D)
    can move log|det J|, per example: ``unit * sum_ij |J_ij (J^-1)_ji|``.

    d log|det J| = tr(J^-1 dJ), so entrywise relative errors of size u move it by at most
    u times this sum (a Skeel condition number: D for a triangular or diagonal J, however
    it is scaled, large only where the entries cancel). An autograd Jacobian of a steep
    flow carries such errors, and no log-determinant can be checked more finely than this.
    """
    jac = jac.double()
    inverse, info = torch.linalg.inv_ex(jac)
    kappa = (jac * inverse.transpose(-1, -2)).abs().sum((-1, -2))
    kappa = torch.where((info == 0) & torch.isfinite(kappa), kappa,
                        torch.full_like(kappa, math.inf))
    return unit * kappa


def round_trip_error(back: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per row, max_j |back - x| / max(|x|, 1): (B, D) -> (B,), float64."""
    x = x.double()
    return ((back.double() - x).abs() / x.abs().clamp_min(1)).amax(-1)


def rounding_floor(first: Callable[[torch.Tensor], torch.Tensor],
                   second: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                   mid: torch.Tensor, back: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Per row, the rounding noise of the round trip ``back = second(mid)``, ``mid =
    first(x)``, relative to max(|x|, 1): (B,). The larger of two measures, each blind
    where the other sees (on steep float32 flows either alone missed by up to 1,400x):

    - how far ``second`` moves when ``mid`` is perturbed by 2 units in the last place
      (random signs; of the coarser of the two dtypes): the second leg's amplification of
      rounding in its input;
    - how far the whole round trip strays at a neighbour, x + d with d 16 units in the
      last place: ``second(first(x + d)) - back - d``. A correct round trip moves by d
      exactly, up to its rounding, so this is its rounding noise at a second point; a
      wrong one moves by (T' - 1) d, a few ulps times its slope, far below its error.

    A round trip through a steep flow loses digits however it is written (a correct
    float32 flow with |log-scale| <= 3 is off by 1e-2 at |x| = 10); this is the grader's
    measure of that loss, on the student's own code and inputs.
    """
    eps = max(torch.finfo(mid.dtype).eps, torch.finfo(x.dtype).eps)   # the coarser one
    gen = torch.Generator().manual_seed(seed)
    scale = x.double().abs().clamp_min(1)

    def signs(like: torch.Tensor) -> torch.Tensor:
        return torch.randint(0, 2, tuple(like.shape), generator=gen).double() * 2 - 1

    wide = mid.double()
    moved = second((wide + 2 * eps * signs(mid) * wide.abs().clamp_min(1)).to(mid.dtype))
    floor = ((moved.double() - back.double()).abs() / scale).amax(-1)
    near = (x.double() + 16 * eps * signs(x) * scale).to(x.dtype)
    again = second(first(near)).double()
    stray = (again - back.double()) - (near.double() - x.double())
    return torch.maximum(floor, (stray.abs() / scale).amax(-1))


def logdet_problem(reported: Any, exact: torch.Tensor, atol: float, rtol: float = 1e-6,
                   what: str = "forward", noise: torch.Tensor | None = None) -> str | None:
    """Why ``reported`` is not the log|det J| ``exact`` (B,), or None; ``noise`` (B,) is
    how far the grader's own ``exact`` may be off (``logdet_noise``), times NOISE_FACTOR."""
    b = exact.shape[0]
    if not isinstance(reported, torch.Tensor) or not reported.is_floating_point():
        return f"{what} must return (output, logdet) with logdet a float tensor, got " \
               f"{type(reported).__name__}"
    if tuple(reported.shape) != (b,):
        hint = " (summed over the dimensions?)" if reported.dim() == 2 else ""
        return f"{what}'s logdet has shape {tuple(reported.shape)}, expected ({b},): one " \
               f"value per example{hint}"
    rep = reported.double()
    if not bool(torch.isfinite(rep).all()):
        return f"{what}'s logdet is not finite"
    err = (rep - exact).abs()
    bound = atol + rtol * exact.abs()
    if noise is not None:
        bound = bound + NOISE_FACTOR * noise.double()
    if bool((err <= bound).all()):
        return None
    k = int((err - bound).argmax())
    return f"{what}'s logdet is off by {float(err[k]):.3g} from log|det J| of its Jacobian " \
           f"(example {k}: reported {float(rep[k]):.6g}, log|det J| = {float(exact[k]):.6g}" \
           f", tolerance {float(bound[k]):.3g})"


def grid(box: list[list[float]], n: int) -> tuple[torch.Tensor, float]:
    """Midpoints of an n^D grid over ``box`` (float64 (n^D, D)) and the cell volume."""
    axes, cell = [], 1.0
    for lo, hi in box:
        step = (float(hi) - float(lo)) / n
        axes.append(float(lo) + step * (torch.arange(n, dtype=torch.float64) + 0.5))
        cell *= step
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([m.reshape(-1) for m in mesh], 1), cell


def flow_nll(z: torch.Tensor, logdet: torch.Tensor) -> torch.Tensor:
    """-(log N(z) + logdet) per row, float64."""
    return -(normal_log_prob(z) + logdet.double())


# ---------------------------------------------------------------- building transforms

class _Bad(Exception):
    """The transform's outputs are unusable (wrong type, shape, not finite)."""


def _first(out: Any) -> Any:
    return out[0] if isinstance(out, (tuple, list)) and out else out


def _second(out: Any) -> Any:
    return out[1] if isinstance(out, (tuple, list)) and len(out) > 1 else None


def _flow_args(params: dict[str, Any], example: dict[str, Any]) -> list[Any]:
    out: list[Any] = []
    for a in params["flow"].get("args", []):
        if isinstance(a, str) and a in example:
            out.append(torch.as_tensor(example[a]).float())
        elif isinstance(a, str) and a in example.get("_dims", {}):
            out.append(int(example["_dims"][a]))
        else:
            out.append(a)
    return out


def _build(ctx: CheckContext, params: dict[str, Any], example: dict[str, Any],
           precision: str) -> Handle:
    spec = params["flow"]
    ctx.require(spec["class"])
    manual_seed(ctx.seed)
    handle = ctx.kernel.call(Name(spec["class"]), *_flow_args(params, example), seed=ctx.seed,
                             keep=True)
    std = float(params.get("redraw", 0.3))
    if std > 0:
        handle = ctx.kernel.instrument("basic", "redraw_parameters", handle, std, ctx.seed)
    ctx.kernel.call(Attr(handle, "eval"), seed=ctx.seed)
    if precision == "float64":
        handle = ctx.kernel.call(Attr(handle, "double"), keep=True)
    if ctx.device != "cpu":
        handle = ctx.kernel.call(Attr(handle, "to"), ctx.device, keep=True)
    return handle


def _x(example: dict[str, Any], precision: str) -> torch.Tensor:
    dtype = torch.float64 if precision == "float64" else torch.float32
    return torch.as_tensor(example["x"]).to(dtype)


def _call(ctx: CheckContext, fn: Any, x: torch.Tensor) -> Any:
    return ctx.kernel.call(fn, x, seed=ctx.seed)


def _tensor_like(value: Any, shape: tuple[int, ...], what: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise _Bad(f"{what} must be a float tensor, got {type(value).__name__}")
    if tuple(value.shape) != shape:
        raise _Bad(f"{what} has shape {tuple(value.shape)}, expected {shape}")
    if not bool(torch.isfinite(value).all()):
        raise _Bad(f"{what} is not finite")
    return value


def _property(ctx: CheckContext, params: dict[str, Any],
              body: Callable[[Handle, dict[str, Any], str], None],
              methods: tuple[str, ...] = ("forward",)) -> tuple[int, Any, str]:
    """Run ``body(flow, example, precision)`` on hypothesis examples; float64 if every
    method in ``methods`` allows it (the methods ``body`` calls)."""
    strategy = input_sets(params["inputs"], params.get("dims", {}))
    state: dict[str, Any] = {}

    def prop(example: dict[str, Any]) -> None:
        try:
            if "precision" not in state:
                state["precision"] = choose_precision(ctx, params, example, methods)
            flow = _build(ctx, params, example, state["precision"])
            body(flow, example, state["precision"])
        except StudentException as exc:
            raise student_error(exc, example) from None
        except _Bad as exc:
            raise PropertyFailure(str(exc), {"inputs": example,
                                             "expected": None, "actual": None}) from None

    ctx.require(params["flow"]["class"])
    tried, failure = run_property(strategy, prop, int(params.get("max_examples",
                                                                   ctx.max_examples)))
    return tried, failure, state.get("precision", "float64")


def choose_precision(ctx: CheckContext, params: dict[str, Any], example: dict[str, Any],
               methods: tuple[str, ...]) -> str:
    """float64 when each of ``methods`` of a float64 copy runs and answers in float64."""
    if params.get("precision") in ("float32", "float64"):
        return str(params["precision"])
    try:
        flow = _build(ctx, params, example, "float64")
        x = _x(example, "float64")
        for method in methods:
            out = _first(_call(ctx, flow if method == "forward" else Attr(flow, method), x))
            if not (isinstance(out, torch.Tensor) and out.dtype == torch.float64):
                return "float32"
    except StudentException:
        return "float32"
    return "float64"


def _fail(example: dict[str, Any], message: str, expected: Any = None,
          actual: Any = None) -> PropertyFailure:
    return PropertyFailure(message, {"inputs": example,
                                     "expected": expected,
                                     "actual": actual})


# ---------------------------------------------------------------- check kinds

@check("flow_invertibility", required=_FLOW,
       optional=("redraw", "atol", "atol32", "precision", "max_examples"))
def check_flow_invertibility(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """inverse(forward(x)) = x and forward(inverse(x)) = x on hypothesis inputs, within
    ``atol`` (relative to max(|x|, 1)) plus NOISE_FACTOR times the round trip's rounding
    noise (``rounding_floor``: what the student's steep flow loses however it is written)."""

    def body(flow: Handle, example: dict[str, Any], precision: str) -> None:
        x = _x(example, precision)
        atol = float(params.get("atol", 1e-6)) if precision == "float64" else \
            float(params.get("atol32", 1e-4))
        legs = (("inverse(forward(x))", flow, Attr(flow, "inverse"),
                 "the inverse does not undo the forward"),
                ("forward(inverse(x))", Attr(flow, "inverse"), flow,
                 "the forward does not undo the inverse"))
        for label, first, second, verdict in legs:
            miss = _round_trip(ctx, x, first, second, label, atol, precision)
            if miss:
                raise _fail(example, f"{miss[0]}: {verdict}", expected=x,
                            actual=miss[1])

    tried, failure, precision = _property(ctx, params, body, ("forward", "inverse"))
    return verdict_of(failure, tried, f"inverse(forward(x)) = x on {tried} generated inputs "
                                       f"({precision})", precision=precision)


def _round_trip(ctx: CheckContext, x: torch.Tensor, first: Any, second: Any, label: str,
                atol: float, precision: str) -> tuple[str, torch.Tensor] | None:
    """Why ``second(first(x))`` is not ``x`` (and what it is), or None."""
    shape = tuple(x.shape)
    mid = _tensor_like(_first(_call(ctx, first, x)), shape, label.split("(")[1] + "(x)")
    back = _tensor_like(_first(_call(ctx, second, mid)), shape, label)
    err = round_trip_error(back, x)
    if bool((err <= atol).all()):
        return None

    def leg(fn: Any, what: str) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda rows: _tensor_like(_first(_call(ctx, fn, rows)), shape, what)

    floor = rounding_floor(leg(first, label.split("(")[1] + "(x)"), leg(second, label), x, mid,
                           back, seed=ctx.seed)
    bound = atol + NOISE_FACTOR * floor
    if bool((err <= bound).all()):
        return None
    k = int((err - bound).argmax())
    return (f"{label} differs from x by {float(err[k]):.3g} (tolerance {atol:g} + "
            f"{NOISE_FACTOR:g} x {float(floor[k]):.2g}, the rounding noise the grader measured "
            f"on this round trip; {precision})", back)


@check("flow_logdet", required=_FLOW,
       optional=("redraw", "atol", "atol32", "fd_eps", "compare", "precision",
                 "max_examples"),
       types={"compare": choice("jacobian", "inverse")("jacobian")})
def check_flow_logdet(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """``compare: jacobian`` (default): forward's logdet = log|det J| of its Jacobian (autograd
    in the kernel, checked by the grader's central differences); ``compare: inverse``:
    inverse's logdet at y = f(x) is minus forward's logdet at x."""
    compare = params.get("compare", "jacobian")
    if compare not in ("jacobian", "inverse"):
        raise ValueError("compare must be jacobian or inverse")

    def body(flow: Handle, example: dict[str, Any], precision: str) -> None:
        x = _x(example, precision)
        b, d = x.shape
        f64 = precision == "float64"
        eps = float(params.get("fd_eps", 1e-4 if f64 else 1e-2))
        atol = float(params.get("atol", 1e-4)) if f64 else float(params.get("atol32", 5e-2))
        out = _call(ctx, flow, x)
        y = _tensor_like(_first(out), (b, d), "forward's output")
        reported = _second(out)
        if compare == "inverse":
            _inverse_logdet(ctx, flow, example, y, reported, atol)
            return

        ad = _verified_jacobian(ctx, flow, x, eps, 1e-4 if f64 else 5e-2)
        sign, exact = slogdet(ad)
        if bool((sign == 0).any()):
            raise _fail(example, "forward's Jacobian is singular: the transform is not "
                                 "invertible there")
        why = logdet_problem(reported, exact, atol,
                             noise=logdet_noise(ad, torch.finfo(x.dtype).eps))
        if why:
            raise _fail(example, why, expected=exact,
                        actual=reported
                        if isinstance(reported, torch.Tensor) else repr(reported)[:200])

    methods = ("forward", "inverse") if compare == "inverse" else ("forward",)
    tried, failure, precision = _property(ctx, params, body, methods)
    what = "logdet = log|det J|" if compare == "jacobian" else \
        "inverse's logdet = -forward's logdet"
    return verdict_of(failure, tried, f"{what} on {tried} generated inputs ({precision})",
                       precision=precision)


def _verified_jacobian(ctx: CheckContext, flow: Handle, x: torch.Tensor, step: float,
                       rtol: float) -> torch.Tensor:
    """The autograd Jacobian (B, D, D) of ``flow``'s forward at ``x``, float64, once the
    grader's own finite differences confirm it (raises ``_Bad`` with the numbers if not)."""
    b, d = x.shape
    jac = ctx.kernel.instrument("flow", "Jacobian", flow, "forward")

    def claim(rows: torch.Tensor) -> torch.Tensor:
        return _tensor_like(ctx.kernel.call(jac, rows.to(x.dtype), seed=ctx.seed),
                            (rows.shape[0], d, d), "the autograd Jacobian").double()

    def forward(rows: torch.Tensor) -> torch.Tensor:
        return _tensor_like(_first(_call(ctx, flow, rows.to(x.dtype))), (rows.shape[0], d),
                            "forward's output")

    ad = claim(x)
    found = jacobian_mismatch(forward, claim, x.double(), ad, step=step, rtol=rtol,
                              seed=ctx.seed)
    if found:
        raise _Bad(found.describe("the autograd Jacobian of forward") +
                   ", so its log-determinant cannot be checked")
    return ad


def _inverse_logdet(ctx: CheckContext, flow: Handle, example: dict[str, Any], y: torch.Tensor,
                    reported: Any, atol: float) -> None:
    b = y.shape[0]
    if not isinstance(reported, torch.Tensor) or tuple(reported.shape) != (b,):
        raise _fail(example, f"forward must return (y, logdet) with logdet of shape ({b},)")
    inv = _call(ctx, Attr(flow, "inverse"), y)
    inv_ld = _second(inv)
    if not isinstance(inv_ld, torch.Tensor) or tuple(inv_ld.shape) != (b,):
        raise _fail(example, "inverse must return (x, logdet) with logdet of shape "
                             f"({b},), got {type(inv_ld).__name__}"
                    f" {tuple(inv_ld.shape) if isinstance(inv_ld, torch.Tensor) else ''}")
    total = (inv_ld.double() + reported.double()).abs()
    if float(total.max()) > atol:
        same = float((inv_ld.double() - reported.double()).abs().max()) <= atol
        why = " (it has the forward's sign: the inverse's logdet must be minus it)" \
            if same else ""
        raise _fail(example, f"inverse's logdet at y = f(x) is not minus forward's "
                             f"logdet at x: their sum is {float(total.max()):.3g}{why}",
                    expected=-reported.double(),
                    actual=inv_ld)


@check("flow_structure", required=_FLOW,
       optional=("redraw", "pass_through", "all_transformed", "precision", "max_examples"),
       types={"pass_through": string(), "all_transformed": boolean()(False)})
def check_flow_structure(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """Dims where input ``pass_through`` is 1 leave forward and inverse bit-identical;
    with ``all_transformed``, every output dimension differs from its input somewhere."""
    mask_name = params.get("pass_through")

    def body(flow: Handle, example: dict[str, Any], precision: str) -> None:
        x = _x(example, precision)
        shape = tuple(x.shape)
        y = _tensor_like(_first(_call(ctx, flow, x)), shape, "forward's output")
        if mask_name:
            keep = torch.as_tensor(example[mask_name]).bool()
            back = _tensor_like(_first(_call(ctx, Attr(flow, "inverse"), x)), shape,
                                "inverse's output")
            for label, got in (("forward", y), ("inverse", back)):
                moved = (got[:, keep] != x[:, keep]).any(0)
                if bool(moved.any()):
                    dims = torch.nonzero(keep).flatten()[moved].tolist()
                    raise _fail(example, f"{label} changed dimension(s) {dims} whose mask is 1:"
                                         " they must pass through unchanged (bit-identical)")
        if params.get("all_transformed"):
            same = (y == x).all(0)
            if bool(same.any()):
                dims = torch.nonzero(same).flatten().tolist()
                raise _fail(example, f"output dimension(s) {dims} equal the input exactly: "
                                     "no coupling ever transforms them (do the masks "
                                     "alternate?)")

    methods = ("forward", "inverse") if mask_name else ("forward",)
    tried, failure, precision = _property(ctx, params, body, methods)
    return verdict_of(failure, tried, f"the structure holds on {tried} generated inputs",
                       precision=precision)


@check("flow_log_prob", required=_FLOW,
       optional=("redraw", "method", "atol", "atol32", "precision", "max_examples"))
def check_flow_log_prob(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """``log_prob(x)`` = log N(z; 0, I) + logdet, recomputed by the grader from forward."""
    method = params.get("method", "log_prob")

    def body(flow: Handle, example: dict[str, Any], precision: str) -> None:
        x = _x(example, precision)
        b, d = x.shape
        atol = float(params.get("atol", 1e-6)) if precision == "float64" else \
            float(params.get("atol32", 1e-3))
        out = _call(ctx, flow, x)
        z = _tensor_like(_first(out), (b, d), "forward's output")
        ld = _tensor_like(_second(out), (b,), "forward's logdet")
        expected = normal_log_prob(z) + ld.double()
        got = _tensor_like(_call(ctx, Attr(flow, method), x), (b,), f"{method}(x)")
        err = (got.double() - expected).abs()
        bound = atol * expected.abs().clamp_min(1)
        if bool((err > bound).any()):
            hint = ""
            if float((got.double() - normal_log_prob(z)).abs().max()) <= atol * 10:
                hint = ": it equals log N(z) alone, the log-determinant is missing"
            raise _fail(example, f"{method}(x) is off by {float(err.max()):.3g} from "
                                 f"log N(forward(x); 0, I) + logdet{hint}",
                        expected=expected,
                        actual=got)

    tried, failure, precision = _property(ctx, params, body, ("forward", method))
    return verdict_of(failure, tried, f"{method} = log N(z) + logdet on {tried} generated "
                                       f"inputs ({precision})", precision=precision)


def _data(params: dict[str, Any]) -> torch.Tensor:
    from ..data import digits, moons

    spec = params.get("data", {"name": "moons", "split": "test"})
    if spec.get("name", "moons") == "moons":
        x = moons(spec.get("split", "test"))
    else:
        x = digits(spec.get("split", "test"), spec.get("form", "continuous"))
    x = x.flatten(1)
    return x[: int(spec["n"])] if spec.get("n") else x


def _chunked(ctx: CheckContext, fn: Any, x: torch.Tensor) -> list[Any]:
    return [ctx.kernel.call(fn, x[i:i + _CHUNK], seed=ctx.seed) for i in range(0, len(x), _CHUNK)]


@check("flow_density_integral", required=("model", "box"),
       optional=("method", "grid", "tol"),
       types={"box": list_of(interval(number()), min_len=1), "grid": integer(min=2)(300)})
def check_flow_density_integral(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """The grader's midpoint sum of exp(``log_prob``) over an n^D grid on ``box`` is 1 +- tol."""
    model = ctx.model(params["model"])
    method = params.get("method", "log_prob")
    n, tol = int(params.get("grid", 300)), float(params.get("tol", 0.02))
    points, cell = grid(params["box"], n)
    parts = _chunked(ctx, Attr(model, method), points.float())
    values = []
    for part, start in zip(parts, range(0, len(points), _CHUNK)):
        rows = min(_CHUNK, len(points) - start)
        if not isinstance(part, torch.Tensor) or tuple(part.shape) != (rows,):
            return Verdict.failed(f"{method} must return one log-density per point, shape "
                                  f"({rows},), got {getattr(part, 'shape', type(part).__name__)}")
        values.append(part.double())
    logp = torch.cat(values)
    if not bool((~torch.isnan(logp)).all()) or bool((logp == math.inf).any()):
        return Verdict.failed(f"{method} is nan or +inf on the grid")
    mass = float(torch.exp(logp).sum() * cell)
    details = {"integral": round(mass, 5), "grid": n, "box": params["box"]}
    if abs(mass - 1.0) <= tol:
        return Verdict.passed(f"the density integrates to {mass:.4f} over the box "
                              f"({n}^{points.shape[1]} grid)", **details)
    return Verdict.failed(f"the density exp({method}(x)) integrates to {mass:.4g}, not 1 +- "
                          f"{tol:g}, over {params['box']} ({n}^{points.shape[1]} grid): it is "
                          "not normalised (a missing or wrong log-determinant?)", **details)


@check("flow_test_nll", required=("model", "zero_at", "full_at"),
       optional=("data", "unit", "levels", "verify", "atol", "fd_eps"),
       types={"unit": choice("nats", "bits_per_dim")("nats"), "levels": integer(min=2),
              "verify": integer(min=0)(8)},
       metric=Metric("test_nll", False))
def check_flow_test_nll(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """Test NLL -(log N(z) + logdet) computed by the grader from the model's forward, in
    nats per example or bits/dim; linear credit from ``zero_at`` to ``full_at``. No credit
    unless the logdet of ``verify`` test points equals log|det J| of the grader's float64
    finite-difference Jacobian (of a float64 copy of the model)."""
    from ..metrics import bits_per_dim

    spec = params["model"]
    model = ctx.model(spec)
    x = _data(params)
    b, d = x.shape
    lo, hi = float(params["zero_at"]), float(params["full_at"])
    unit = params.get("unit", "nats")
    try:
        zs, lds = [], []
        for start in range(0, b, _CHUNK):
            rows = min(_CHUNK, b - start)
            out = ctx.kernel.call(model, x[start:start + rows], seed=ctx.seed)
            zs.append(_tensor_like(_first(out), (rows, d), "forward's z"))
            lds.append(_tensor_like(_second(out), (rows,), "forward's logdet"))
        z, ld = torch.cat(zs), torch.cat(lds)
        n = int(params.get("verify", 8))
        why = _verify(ctx, spec, model, x[:n], ld[:n], float(params.get("atol", 1e-3)),
                      float(params.get("fd_eps", 1e-4)))
    except _Bad as exc:
        return Verdict.failed(f"no test NLL: {exc}")
    except StudentException as exc:
        return Verdict.failed(f"no test NLL: your code raised {exc.ename}: {exc.evalue}")
    nll = float(flow_nll(z, ld).mean())
    value = bits_per_dim(nll, d, params.get("levels")) if unit == "bits_per_dim" else nll
    label = "bits/dim" if unit == "bits_per_dim" else "nats"
    details = {"test_nll": round(value, 4), "unit": label, "nll_nats": round(nll, 4),
               "zero_at": lo, "full_at": hi, "examples": b}
    if why:
        return Verdict.failed(f"test NLL {value:.4g} {label} is not a likelihood, so it earns "
                              f"nothing: {why}", **details)
    return Verdict(linear_credit(value, lo, hi), f"test NLL {value:.5g} {label} (full credit "
                   f"at <= {hi:g}, none at >= {lo:g})", details=details)


def _verify(ctx: CheckContext, spec: dict[str, Any], model: Handle, x: torch.Tensor,
            ld32: torch.Tensor, atol: float, eps: float) -> str | None:
    """Why the logdet of these points is not log|det J| of the model's Jacobian, or None.

    A float64 copy of the model where the student's code runs in float64; otherwise the
    model itself in float32, with float32 steps and tolerances (CHECKS.md: never mark a
    student down for code that creates float32 tensors inside).
    """
    if len(x) == 0:
        return None
    try:
        copy = ctx.kernel.load_checkpoint(Name(spec["class"]), spec["checkpoint"],
                                          *spec.get("args", []))
        copy = ctx.kernel.call(Attr(copy, "double"), keep=True)
        ld = _second(ctx.kernel.call(copy, x.double(), seed=ctx.seed))
        f64 = isinstance(ld, torch.Tensor) and ld.dtype == torch.float64
    except StudentException:
        f64 = False
    if f64:
        flow, rows, rtol, where = copy, x.double(), 1e-5, "float64"
    else:
        flow, rows, rtol, where = model, x.float(), 1e-4, "float32"
        atol, eps = max(atol, 5e-2), max(eps, 1e-2)
        ld = ld32
    try:
        jac = _verified_jacobian(ctx, flow, rows, eps, 1e-4 if f64 else 5e-2)
    except _Bad as exc:
        return f"{exc} (on test data, {where})"
    sign, exact = slogdet(jac)
    if bool((sign == 0).any()):
        return "the Jacobian of forward is singular on test data"
    why = logdet_problem(ld, exact, atol, rtol=rtol,
                         noise=logdet_noise(jac, torch.finfo(rows.dtype).eps))
    if why:
        return why + f" (on test data, {where})"
    gap = float((ld.double() - ld32.double()).abs().max())
    if gap > max(1e-2, 1e-4 * float(ld.abs().max())):
        return f"the float32 and float64 logdets differ by {gap:.3g}"
    return None
