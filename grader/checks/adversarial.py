"""Checks of adversarial training code: gradient penalties and one training step.

The student's functions are called on trusted instruments (``grader/instruments/gan.py``)
built in the kernel: a quadratic critic with the non-constant input gradient ``a*x + w``
that records where it is evaluated, a linear critic whose input gradient has norm 1, a
generator whose output ignores its noise, and plain SGD optimisers. What comes back
(recorded inputs, the penalty, parameters after a step) is compared with what the grader
computes itself, in float64, here. Nothing depends on how the student structured the
computation (LABS.md): the critic may be called once on the batch or once per example,
in any order; the noise may come from any generator, be drawn again for the G step, or
come from ``G.sample``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import torch
from hypothesis import strategies as st

from .harness import gather
from ..data import digits
from ..errors import StudentException
from ..protocol import Attr, Handle, Name
from ..report.values import text as show
from .params import choice, integer, list_of
from .harness import run_property
from .registry import CheckContext, PropertyFailure, Verdict, check, manual_seed

__all__ = ["interpolation_weights", "points_per_example", "recorded_rows", "quadratic_penalty",
           "expected_train_step", "penalty_case", "train_step_case", "unit_critic"]

Tensor = torch.Tensor


# ----------------------------------------------------------------------------- pure parts
def interpolation_weights(x_hat: Tensor, real: Tensor, fake: Tensor) -> tuple[Tensor, float]:
    """The e of each row that best writes x_hat = e real + (1 - e) fake, and the worst residual."""
    d = (real - fake).flatten(1).double()
    e = ((x_hat - fake).flatten(1).double() * d).sum(1) / (d * d).sum(1).clamp_min(1e-300)
    rebuilt = e.view(-1, *[1] * (real.dim() - 1)) * real.double() + (1 - e.view(
        -1, *[1] * (real.dim() - 1))) * fake.double()
    return e, float((rebuilt - x_hat.double()).abs().max())


def recorded_rows(seen: Any, shape: tuple[int, ...], limit: int = 4096) -> Tensor | None:
    """Every image the critic was called on, in call order, as one (N, *shape) float64 batch.

    The critic may be called on the whole batch, once per example or on any grouping of
    rows; a call on rows of another layout with the same number of values per row (a
    (B, 64) view of (B, 1, 8, 8) images) counts too. None when there is no such row.
    """
    size = int(torch.tensor(shape).prod())
    calls = [x for x in seen if isinstance(x, Tensor) and x.dim() >= 2 and len(x) > 0
             and x.is_floating_point() and x[0].numel() == size] if isinstance(seen, list) else []
    if not calls:
        return None
    return torch.cat([x.double().reshape(-1, *shape) for x in calls])[:limit]


def points_per_example(rows: Tensor, real: Tensor, fake: Tensor, tol: float = 1e-5) -> Tensor:
    """For each example i, the row the critic saw on the line through fake_i and real_i.

    Each example takes the last row within ``tol`` of its line (rows may come in any
    grouping and order); an example no row reaches takes the row closest to its line,
    so that the interpolation check reports by how much it is off.
    """
    r, f = rows.flatten(1).double(), fake.flatten(1).double()
    d = real.flatten(1).double() - f
    e = torch.einsum("nbd,bd->nb", r[:, None, :] - f[None], d) / (d * d).sum(1).clamp_min(1e-300)
    off = (f[None] + e[..., None] * d[None] - r[:, None, :]).abs().amax(-1)   # (rows, examples)
    order = torch.arange(len(r), dtype=torch.float64)[:, None].expand_as(off)
    pick = torch.where(off <= tol, order, -off - len(r)).argmax(0)
    return rows[pick]


def quadratic_penalty(x_hat: Tensor, a: Tensor, w: Tensor) -> tuple[float, Tensor, Tensor]:
    """mean_i (||a*x_i + w|| - 1)^2 for the quadratic critic, and its gradients w.r.t. a, w."""
    a = a.double().clone().requires_grad_(True)
    w = w.double().clone().requires_grad_(True)
    g = a * x_hat.flatten(1).double() + w
    penalty = ((g.norm(dim=1) - 1) ** 2).mean()
    ga, gw = torch.autograd.grad(penalty, [a, w])
    return float(penalty.detach()), ga, gw


def penalty_case(batch: int, shape: tuple[int, ...], seed: int) -> dict[str, Tensor]:
    """Real and fake batches in [0, 1] and a quadratic critic (a in [0.5, 2], w small)."""
    gen = torch.Generator().manual_seed(seed)
    size = (batch, *shape)
    dim = int(torch.tensor(shape).prod())
    return {"real": torch.rand(size, generator=gen, dtype=torch.float64),
            "fake": torch.rand(size, generator=gen, dtype=torch.float64),
            "a": 0.5 + 1.5 * torch.rand(dim, generator=gen, dtype=torch.float64),
            "w": 0.2 * torch.randn(dim, generator=gen, dtype=torch.float64)}


def train_step_case(batch: int, shape: tuple[int, ...], seed: int) -> dict[str, Tensor]:
    """Real images, the generator's rows theta and a unit critic (w, b) whose logit on the
    fakes is 0.3 .. 1.3 away from 0, on either side (float64)."""
    gen = torch.Generator().manual_seed(seed)
    real = torch.rand((batch, *shape), generator=gen, dtype=torch.float64)
    theta = 0.1 + 0.8 * torch.rand((1, *shape), generator=gen, dtype=torch.float64)
    w = torch.randn(theta.numel(), generator=gen, dtype=torch.float64)
    w = w / w.norm()
    sign = 1.0 if float(torch.rand((), generator=gen)) < 0.5 else -1.0
    s = sign * (0.3 + float(torch.rand((), generator=gen, dtype=torch.float64)))
    b = torch.tensor(s - float(theta.flatten() @ w), dtype=torch.float64)
    return {"real": real, "theta": theta, "w": w, "b": b}


def unit_critic(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """The instrument ``gan.UnitCritic``: x.flatten(1) @ (w / ||w||) + b."""
    return x.flatten(1) @ (w / w.norm()) + b


def expected_train_step(real: Tensor, theta: Tensor, w: Tensor, b: Tensor, lr_g: float,
                        lr_d: float, d_loss_fn: Callable[..., Tensor],
                        g_loss_fn: Callable[..., Tensor]) -> dict[str, Any]:
    """One D then one G SGD step for the unit critic and a generator whose rows are theta.

    Also returns two wrong G updates the check names when it sees them: with the D loss's
    gradient leaking into G (fakes not detached), and with D's parameters from before its step.
    """
    real = real.double()
    th = theta.double().clone().requires_grad_(True)
    w0 = w.double().clone().requires_grad_(True)
    b0 = b.double().clone().requires_grad_(True)
    fake = th.expand(real.shape[0], *th.shape[1:])
    critic = unit_critic
    d_loss = d_loss_fn(critic(real, w0, b0), critic(fake.detach(), w0, b0))
    gw, gb = torch.autograd.grad(d_loss, [w0, b0])
    w1, b1 = (w0 - lr_d * gw).detach(), (b0 - lr_d * gb).detach()
    g_loss = g_loss_fn(critic(fake, w1, b1))
    (g_new,) = torch.autograd.grad(g_loss, [th])
    (g_old,) = torch.autograd.grad(g_loss_fn(critic(fake, w0.detach(), b0.detach())), [th])
    (leak,) = torch.autograd.grad(d_loss_fn(critic(real, w0.detach(), b0.detach()),
                                            critic(fake, w0.detach(), b0.detach())), [th])
    theta = theta.double()
    return {"theta": theta - lr_g * g_new, "w": w1, "b": b1, "d_loss": float(d_loss.detach()),
            "g_loss": float(g_loss.detach()), "theta_leak": theta - lr_g * (g_new + leak),
            "theta_old_d": theta - lr_g * g_old}


def _close(actual: Any, expected: Tensor, rtol: float, atol: float) -> bool:
    if not isinstance(actual, Tensor) or tuple(actual.shape) != tuple(expected.shape):
        return False
    a = actual.double()
    return bool(torch.isfinite(a).all()) and bool(
        ((a - expected).abs() <= atol + rtol * expected.abs()).all())


def _failure(message: str, inputs: dict[str, Any], expected: Any = None,
             actual: Any = None) -> PropertyFailure:
    return PropertyFailure(message, {"inputs": inputs,
                                     "expected": expected,
                                     "actual": actual})


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, Tensor) and value.numel() == 1 and value.is_floating_point():
            return float(value.reshape(()))
        return None
    return float(value)


class _Float64Refused(Exception):
    """The student's code raised on the grader's float64 inputs."""


def _in_precision(state: dict[str, Any], run: Callable[[torch.dtype], None]) -> None:
    """``run(float64)``; if the student's code raises there, ``run(float32)`` from then on.

    LABS.md promises float32 inputs only. float64 makes the grader's comparisons sharper
    where the student's code allows it (CHECKS.md), but code that is right in float32 and
    builds float32 tensors inside (``torch.lerp`` with a weight from ``torch.rand(B, 1, 1,
    1)`` raises on float64 images) must not lose points for it.
    """
    if state.get("dtype", torch.float64) == torch.float64:
        try:
            run(torch.float64)
            return
        except _Float64Refused:
            state["dtype"] = torch.float32
    run(torch.float32)


class _InPrecision:
    """The property ``run(example, dtype)`` on each example, in float64 until the student's
    code refuses it, then in float32 from there on (:func:`_in_precision`)."""

    def __init__(self, run: Callable[[dict[str, int], torch.dtype], None]) -> None:
        self.run, self.state = run, {}

    def __call__(self, ex: dict[str, int]) -> None:
        _in_precision(self.state, lambda dtype: self.run(ex, dtype))

    def note(self) -> str:
        return _precision_note(self.state)


def _batches_and_seeds(params: dict[str, Any], default: list[int]
                       ) -> st.SearchStrategy[dict[str, int]]:
    """Examples ``{"batch", "seed"}``: a batch size in ``dims.B`` (default ``default``)."""
    lo, hi = params.get("dims", {}).get("B", default)
    return st.fixed_dictionaries({"batch": st.integers(int(lo), int(hi)),
                                  "seed": st.integers(0, 2**16)})


def _raised(exc: StudentException, dtype: torch.dtype, shown: dict[str, Any]) -> Exception:
    """The failure to raise for an exception of the student's code (float64: retry first)."""
    if dtype == torch.float64:
        return _Float64Refused()
    return _failure(f"your code raised {exc.ename}: {exc.evalue}", shown)


def _precision_note(state: dict[str, Any]) -> str:
    return "; in float32: your code does not run on float64 inputs" \
        if state.get("dtype") == torch.float32 else ""


# ----------------------------------------------------------------------------- gradient penalty
@check("interpolation_penalty", optional=("function", "verify", "shape", "dims", "rtol", "atol",
                                          "max_examples"),
       types={"verify": list_of(choice("interpolates", "value", "graph"), min_len=1)})
def check_interpolation_penalty(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """A gradient penalty evaluated at interpolates, exact for a critic of known gradient.

    ``verify`` picks the properties: ``interpolates`` (the critic saw rows e real +
    (1 - e) fake, one e in [0, 1] per example, not all equal, not all at an end),
    ``value`` (the penalty equals the grader's at the points the critic saw) and
    ``graph`` (d penalty / d critic parameters equals the grader's: create_graph=True).
    """
    fn = params.get("function", "gradient_penalty")
    ctx.require(fn)
    verify = set(params.get("verify", ["interpolates", "value", "graph"]))
    shape = tuple(int(s) for s in params.get("shape", [1, 8, 8]))
    rtol, atol = float(params.get("rtol", 1e-5)), float(params.get("atol", 1e-7))
    strategy = _batches_and_seeds(params, [2, 8])

    def run(ex: dict[str, int], dtype: torch.dtype) -> None:
        case = {k: v.to(dtype) for k, v in penalty_case(ex["batch"], shape, ex["seed"]).items()}
        shown = {**ex, "real": case["real"], "fake": case["fake"]}
        critic = ctx.kernel.instrument("gan", "QuadraticCritic", case["a"], case["w"], 0.1)
        try:
            penalty = ctx.kernel.call(Name(fn), critic, case["real"], case["fake"],
                                      seed=ctx.seed, no_grad=False, keep=True)
        except StudentException as exc:
            raise _raised(exc, dtype, shown) from None
        rows = recorded_rows(ctx.kernel.get(Attr(critic, "inputs")), shape)
        if rows is None:
            raise _failure("the critic was never called on images of shape "
                           f"(n, {', '.join(map(str, shape))})", shown)
        x_hat = points_per_example(rows, case["real"], case["fake"])
        if "interpolates" in verify:
            _check_interpolates(x_hat, case, shown)
        if "value" in verify:
            expected, _, _ = quadratic_penalty(x_hat, case["a"], case["w"])
            value = _number(ctx.kernel.get(penalty) if isinstance(penalty, Handle) else penalty)
            if value is None or not abs(value - expected) <= atol + rtol * abs(expected):
                raise _failure("the penalty is not mean over examples of (||grad D(x_hat)|| - 1)^2"
                               " for a critic whose gradient the grader knows: one norm per "
                               "example, then the mean" + _factor_note(value, expected), shown,
                               f"{expected:.8g}", value)
        if "graph" in verify:
            _check_graph(ctx, critic, penalty, x_hat, case, shown, rtol, atol)

    prop = _InPrecision(run)
    tried, failure = run_property(strategy, prop, int(params.get("max_examples", 8)))
    return _verdict(failure, tried, f"penalty right on {tried} generated batches ("
                    f"{', '.join(sorted(verify))}){prop.note()}")


def _factor_note(value: float | None, expected: float) -> str:
    """A hint when the penalty is a whole multiple of the right one (lambda inside)."""
    if value is None or not expected > 1e-12:
        return ""
    ratio = value / expected
    if round(ratio) >= 2 and abs(ratio - round(ratio)) <= 1e-5 * ratio:
        return (f" (yours is {round(ratio)} times the right value: leave lambda out, the "
                "caller multiplies)")
    return ""


def _check_interpolates(x_hat: Tensor, case: dict[str, Tensor], shown: dict[str, Any]) -> None:
    e, residual = interpolation_weights(x_hat, case["real"], case["fake"])
    if not residual <= 1e-5:     # also nan
        raise _failure("the critic was not evaluated at interpolates e*real + (1-e)*fake "
                       f"(off by {residual:.3g})", shown)
    if e.min() < -1e-6 or e.max() > 1 + 1e-6:
        raise _failure(f"interpolation weights leave [0, 1]: {show(e)}", shown)
    if (e.min() > 1 - 1e-6) or (e.max() < 1e-6):
        end = "real images (e = 1)" if e.min() > 1 - 1e-6 else "fake images (e = 0)"
        raise _failure(f"the penalty is evaluated at the {end}, not at random interpolates",
                       shown, "e ~ U[0, 1], one per example", e)
    if len(e) > 1 and float(e.max() - e.min()) < 1e-9:
        raise _failure("one e is shared by the whole batch; draw one e per example", shown,
                       "e ~ U[0, 1], one per example", e)


def _check_graph(ctx: CheckContext, critic: Handle, penalty: Any, x_hat: Tensor,
                 case: dict[str, Tensor], shown: dict[str, Any], rtol: float, atol: float
                 ) -> None:
    _, ga, gw = quadratic_penalty(x_hat, case["a"], case["w"])
    try:
        got = ctx.kernel.get(ctx.kernel.instrument("gan", "penalty_gradients", critic, penalty))
    except StudentException as exc:
        raise _failure(f"the penalty's graph cannot be differentiated ({exc.ename}: "
                       f"{exc.evalue}); use create_graph=True", shown) from None
    if not isinstance(got, dict) or "error" in got:
        reason = got.get("error") if isinstance(got, dict) else "no reply"
        raise _failure(f"the penalty does not keep its graph: {reason}; use "
                       "torch.autograd.grad(..., create_graph=True)", shown)
    scale = max(float(ga.abs().max()), float(gw.abs().max()))
    if not (_close(got.get("a"), ga, rtol, atol * max(1.0, scale))
            and _close(got.get("w"), gw, rtol, atol * max(1.0, scale))):
        raise _failure("the gradient of the penalty w.r.t. the critic's parameters is wrong",
                       shown, gw, got.get("w"))


def _verdict(failure: BaseException | None, tried: int, ok: str) -> Verdict:
    if failure is None:
        return Verdict.passed(ok, examples=tried)
    if isinstance(failure, PropertyFailure):
        return Verdict.failed(failure.message, failure.counterexample, examples=tried)
    raise failure


# ----------------------------------------------------------------------------- train step
_CONFIGS = ((0.0, 1.0), (1.0, 0.0), (1.0, 1.0))   # (lr_G, lr_D) as multiples of ``lr``


@check("adversarial_train_step", optional=("function", "dims", "lr", "shape", "latent_dim",
                                           "discriminator_loss", "generator_loss", "rtol",
                                           "atol", "max_examples", "steps"),
       types={"steps": integer(min=1, max=10)(2)})
def check_adversarial_train_step(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """``train_step(G, D, opt_G, opt_D, real)`` makes exactly one D then one G SGD step.

    G is a generator whose rows all equal its parameter (``G.sample`` works too), D the
    linear critic x.w/||w|| + b, whose input gradient has norm 1 for every w (so a gradient
    penalty added to D's loss adds nothing, at any step), the optimisers plain SGD with the
    learning rates (0, lr), (lr, 0) and (lr, lr); the grader computes the parameters after
    the step with the reference losses and compares, and the returned losses. ``steps``
    (default 2) consecutive calls on the same networks and optimisers: a missing or
    misplaced ``zero_grad`` only shows from the second step on (stale gradients).
    """
    fn = params.get("function", "train_step")
    ctx.require(fn)
    d_loss_fn = ctx.ref(params.get("discriminator_loss", "discriminator_loss"))
    g_loss_fn = ctx.ref(params.get("generator_loss", "generator_loss"))
    shape = tuple(int(s) for s in params.get("shape", [1, 8, 8]))
    lr, latent = float(params.get("lr", 0.1)), int(params.get("latent_dim", 3))
    steps = int(params.get("steps", 2))
    rtol, atol = float(params.get("rtol", 1e-5)), float(params.get("atol", 1e-7))
    strategy = _batches_and_seeds(params, [1, 8])

    def run(ex: dict[str, int], dtype: torch.dtype) -> None:
        case = {k: v.to(dtype) for k, v in train_step_case(ex["batch"], shape, ex["seed"]).items()}
        real = case["real"]
        kernel = ctx.kernel

        def parameters_of(net: Handle) -> Any:
            return kernel.get(kernel.instrument("gan", "parameters_of", net))

        def setting(mult_g: float, mult_d: float) -> None:
            lr_g, lr_d = lr * mult_g, lr * mult_d
            G, D = gather([
                functools.partial(kernel.instrument, "gan", "ConstantGenerator", case["theta"],
                                  latent),
                functools.partial(kernel.instrument, "gan", "UnitCritic", case["w"], case["b"])])
            opt_g, opt_d = gather([functools.partial(kernel.instrument, "gan", "sgd", G, lr_g),
                                   functools.partial(kernel.instrument, "gan", "sgd", D, lr_d)])
            th, wv, bv = case["theta"], case["w"], case["b"]
            for step in range(1, steps + 1):
                shown = {**ex, "lr_G": lr_g, "lr_D": lr_d, "step": step, "real": real}
                exp = expected_train_step(real, th, wv, bv, lr_g, lr_d, d_loss_fn, g_loss_fn)
                try:
                    out = kernel.call(Name(fn), G, D, opt_g, opt_d, real, seed=ctx.seed,
                                      no_grad=False)
                except StudentException as exc:
                    raise _raised(exc, dtype, shown) from None
                p_g, p_d = gather([functools.partial(parameters_of, G),
                                   functools.partial(parameters_of, D)])
                _compare_step(out, p_g, p_d, exp, th, shown, rtol, atol)
                th, wv, bv = exp["theta"], exp["w"], exp["b"]

        # the three settings on their own networks, batched; the first failure in order
        gather([functools.partial(setting, *config) for config in _CONFIGS])

    prop = _InPrecision(run)
    tried, failure = run_property(strategy, prop, int(params.get("max_examples", 4)))
    return _verdict(failure, tried, f"one D then one G SGD step, exact, on {tried} generated "
                    f"batches x 3 learning-rate settings{prop.note()}")


def _ordinal(n: int) -> str:
    return {1: "first", 2: "second", 3: "third"}.get(n, f"{n}th")


def _compare_step(out: Any, p_g: Any, p_d: Any, exp: dict[str, Any], theta: Tensor,
                  shown: dict[str, Any], rtol: float, atol: float) -> None:
    if not isinstance(p_g, dict) or not isinstance(p_d, dict):
        raise _failure("the networks' parameters could not be read after the step", shown)
    got_d = (p_d.get("w"), p_d.get("b"))
    if not (_close(got_d[0], exp["w"], rtol, atol) and _close(got_d[1], exp["b"], rtol, atol)):
        what = ("D's parameters moved although lr_D = 0" if shown["lr_D"] == 0 else
                "D's parameters after the step differ from one SGD step on discriminator_loss "
                "(real labelled 1, fake 0; fakes from G before its update)")
        if shown.get("step", 1) > 1:
            what += (f", at the {_ordinal(shown['step'])} consecutive call: gradients left "
                     "over from the previous call (zero each optimiser's gradients before "
                     "its backward)")
        raise _failure(what, shown, f"b = {float(exp['b']):.8g}",
                       f"b = {_number(got_d[1])}")
    got = p_g.get("theta")
    if not _close(got, exp["theta"], rtol, atol):
        if shown["lr_G"] == 0:
            what = "G's parameters moved although lr_G = 0"
        elif _close(got, exp["theta_leak"], rtol, atol):
            what = ("G's update contains the gradient of the discriminator loss: detach the "
                    "fakes in the D step and zero G's gradients before the G backward")
        elif _close(got, theta.double(), 0.0, 0.0):
            what = "G's parameters did not move although lr_G > 0"
        elif _close(got, exp["theta_old_d"], rtol, atol):
            what = "G was updated with D's parameters from before D's step: step D first"
        else:
            what = ("G's parameters after the step differ from one SGD step on generator_loss "
                    "(the non-saturating loss, through the updated D)")
        if shown.get("step", 1) > 1:
            what += (f", at the {_ordinal(shown['step'])} consecutive call (the first was "
                     "right): gradients left over from the previous call? zero each "
                     "optimiser's gradients before its backward")
        diff = float((got.double() - exp["theta"]).abs().max()) if isinstance(got, Tensor) \
            else None
        raise _failure(what, shown, "max |change| error 0", f"max |error| {diff}")
    if not isinstance(out, dict) or set(out) < {"d_loss", "g_loss"}:
        raise _failure('train_step must return {"d_loss": float, "g_loss": float}', shown)
    for key in ("d_loss", "g_loss"):
        value = _number(out[key])
        if value is None or not abs(value - exp[key]) <= 1e-6 + 1e-5 * abs(exp[key]):
            raise _failure(f"the returned {key} is not the loss of this step", shown,
                           f"{exp[key]:.8g}", out[key])


@check("train_step_isolation", required=("generator", "discriminator"),
       optional=("function", "data", "batch", "lr"))
def check_train_step_isolation(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """On the student's own networks: finite float losses, and with one learning rate 0
    only the other network's parameters move (buffers may change)."""
    fn = params.get("function", "train_step")
    ctx.require(fn, params["generator"]["class"], params["discriminator"]["class"])
    data = params.get("data", {})
    batch = int(params.get("batch", 32))
    real = digits(data.get("split", "train"), data.get("form", "continuous"))[:batch]
    lr = float(params.get("lr", 0.05))
    shown = {"batch": batch, "real": f"the first {batch} {data.get('split', 'train')} digits"}

    def build(key: str) -> Handle:
        spec = params[key]
        manual_seed(ctx.seed)
        return ctx.kernel.call(Name(spec["class"]), *spec.get("args", []), seed=ctx.seed,
                               keep=True)

    def parameters(nets: dict[str, Handle]) -> dict[str, Any]:
        keys = list(nets)
        return dict(zip(keys, gather([functools.partial(
            lambda h: ctx.kernel.get(ctx.kernel.instrument("gan", "parameters_of", h)),
            nets[k]) for k in keys])))

    def one_step(lr_g: float, lr_d: float) -> Verdict | None:
        """One train_step with these rates on fresh networks: None if only the right one moved."""
        G, D = gather([functools.partial(build, k) for k in ("generator", "discriminator")])
        nets = {"generator": G, "discriminator": D}
        before = parameters(nets)
        empty = [k for k, v in before.items() if not v]
        if empty:
            return Verdict.failed(f"the {empty[0]} has no parameters to train")
        opts = gather([functools.partial(ctx.kernel.instrument, "gan", "sgd", h, r)
                       for h, r in ((G, lr_g), (D, lr_d))])
        try:
            out = ctx.kernel.call(Name(fn), G, D, *opts, real, seed=ctx.seed, no_grad=False)
        except StudentException as exc:
            return Verdict.failed(f"train_step raised {exc.ename}: {exc.evalue}",
                                  {"inputs": {**shown, "lr_G": lr_g, "lr_D": lr_d}})
        why = _isolation_problem(out, before, parameters(nets), lr_g, lr_d)
        return Verdict.failed(why, {"inputs": {**shown, "lr_G": lr_g, "lr_D": lr_d}}) \
            if why else None

    # the two settings on their own networks, their calls batched together
    for failure in gather([functools.partial(one_step, *rates)
                           for rates in ((0.0, lr), (lr, 0.0))]):
        if failure is not None:
            return failure
    return Verdict.passed("finite float losses; with lr_G = 0 only D moved, with lr_D = 0 only "
                          "G moved")


def _isolation_problem(out: Any, before: dict[str, Any], after: dict[str, Any], lr_g: float,
                       lr_d: float) -> str | None:
    if not isinstance(out, dict) or not {"d_loss", "g_loss"} <= set(out):
        return 'train_step must return {"d_loss": float, "g_loss": float}'
    for key in ("d_loss", "g_loss"):
        if isinstance(out[key], bool) or not isinstance(out[key], (int, float)):
            return f"{key} must be a Python float (use .item()), got {type(out[key]).__name__}"
        if out[key] != out[key] or abs(out[key]) == float("inf"):
            return f"{key} is not finite: {out[key]}"
    for key, lr, name in (("generator", lr_g, "G"), ("discriminator", lr_d, "D")):
        old, new = before[key], after[key]
        if not isinstance(old, dict) or not isinstance(new, dict) or set(old) != set(new):
            return f"{name}'s parameters could not be compared before and after the step"
        moved = [n for n in old if not (isinstance(new[n], Tensor) and isinstance(old[n], Tensor)
                                        and new[n].shape == old[n].shape
                                        and torch.equal(new[n], old[n]))]
        if lr == 0 and moved:
            return (f"with lr_{name} = 0, {name}'s parameter `{moved[0]}` changed: only the "
                    "other network's optimiser may step")
        if lr > 0 and not moved:
            return f"with lr_{name} = {lr:g}, {name}'s parameters did not move"
    return None
