"""Checks of denoising diffusion code: schedules, the forward process, the posterior, the
noise-prediction loss and the ancestral sampler.

The loss and the sampler draw their own time steps and noise, so they are tested on
trusted instruments (``grader/instruments/diffusion.py``) whose behaviour is known in
closed form: a noise predictor exact for point-mass data (a correct loss then equals
mean(delta^2) exactly, whatever was drawn) and the exact noise predictor of Gaussian data
(a correct chain is then an affine Gaussian recursion whose output law the grader
propagates itself, in float64). Schedules are always computed by the grader with the
trusted reference's ``linear_beta_schedule``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from hypothesis import strategies as st

from ..errors import StudentException
from ..protocol import Back, Call, Get, Name
from ..report.values import text as show
from .compare import Tolerance, mismatch, normal_moment_test
from .harness import known_values_verdict, run_property
from .params import choice, integer, interval, list_of, mapping, number, string
from .registry import CheckContext, PropertyFailure, Verdict, check

__all__ = ["gaussian_chain_law", "point_mass_case", "gaussian_case", "posterior_variance",
           "last_step_mean"]

Tensor = torch.Tensor

# the parameters only these checks take (the rest: the shared vocabulary of params.py)
_CASE = mapping({"label": string(), "quantity": choice("alpha_bar", "posterior_variance"),
                 "t": integer(min=0), "expected": number()},
                required=("quantity", "t", "expected"),
                name="a known-value case {label, quantity, t, expected}")
_KNOWN_VALUES = {"cases": list_of(_CASE, min_len=1), "schedule_function": string(),
                 "posterior_function": string()}
_CHAIN = {"via": choice("p_sample", "sample"), "verify": list_of(choice("law", "t0"), min_len=1),
          "mean_max": number(above=0, max=1), "std_range": interval(number(above=0))}


# ----------------------------------------------------------------------------- pure parts
def gaussian_chain_law(mu: Tensor, s: Tensor, betas: Tensor, start_mean: float = 0.0,
                       start_var: float = 1.0) -> tuple[Tensor, Tensor]:
    """Exact (mean, std) of the output of a correct ancestral chain (sigma_t^2 = beta_t, no
    noise at t = 0) from x_{T-1} ~ N(start_mean, start_var) down to the step t = 0, driven
    by the exact noise predictor of N(mu, diag s^2) data. Every step is affine in x_t plus
    independent Gaussian noise, so the law stays Gaussian and propagates in closed form.
    """
    betas = betas.double()
    ab = torch.cumprod(1 - betas, 0)
    mu, s = mu.double(), s.double()
    m = torch.full_like(mu, float(start_mean))
    v = torch.full_like(mu, float(start_var))
    for t in range(len(betas) - 1, -1, -1):
        k = (1 - ab[t]).sqrt() / (ab[t] * s ** 2 + 1 - ab[t])    # eps_hat = k (x - sqrt(ab) mu)
        c = betas[t] / (1 - ab[t]).sqrt()
        scale = 1 / (1 - betas[t]).sqrt()
        m = scale * (1 - c * k) * m + scale * c * k * ab[t].sqrt() * mu
        v = (scale * (1 - c * k)) ** 2 * v + (betas[t] if t > 0 else 0.0)
    return m, v.sqrt()


def point_mass_case(shape: tuple[int, ...], seed: int, scale: float = 0.5
                    ) -> dict[str, Tensor]:
    """A data point c in [-1, 1] (shape (1, *shape)) and an offset delta = scale * c + small
    noise: the offset is correlated with c so that a wrong coefficient of x0 in the forward
    process moves the loss to first order (not only by its square)."""
    gen = torch.Generator().manual_seed(int(seed))
    c = torch.rand((1, *shape), generator=gen, dtype=torch.float64) * 2 - 1
    delta = scale * c + 0.05 * torch.randn((1, *shape), generator=gen, dtype=torch.float64)
    return {"c": c, "delta": delta}


def gaussian_case(shape: tuple[int, ...], seed: int, mean_max: float = 0.3,
                  std_range: tuple[float, float] = (0.05, 0.1)) -> dict[str, Tensor]:
    """Per-pixel mean in [-mean_max, mean_max] and std in ``std_range``: samples stay well
    inside [-1, 1], so a sampler that clamps (x0 or its output) is not marked down."""
    gen = torch.Generator().manual_seed(int(seed))
    mu = (torch.rand((1, *shape), generator=gen, dtype=torch.float64) * 2 - 1) * mean_max
    lo, hi = std_range
    s = lo + (hi - lo) * torch.rand((1, *shape), generator=gen, dtype=torch.float64)
    return {"mu": mu, "s": s}


def posterior_variance(betas: Tensor, t: int) -> float:
    """beta-tilde_t = beta_t (1 - ab_{t-1}) / (1 - ab_t), ab_{-1} = 1 (float64)."""
    b = betas.double()
    ab = torch.cumprod(1 - b, 0)
    prev = ab[t - 1] if t > 0 else torch.tensor(1.0, dtype=torch.float64)
    return float(b[t] * (1 - prev) / (1 - ab[t]))


def _failure(message: str, inputs: dict[str, Any], expected: Any = None,
             actual: Any = None) -> PropertyFailure:
    return PropertyFailure(message, {"inputs": inputs,
                                     "expected": expected,
                                     "actual": actual})


def _schedule(ctx: CheckContext, params: dict[str, Any]) -> Tensor:
    """The grader's betas: the trusted reference's schedule (float32, as a student's)."""
    fn = ctx.ref(params.get("schedule", "linear_beta_schedule"))
    args = [int(params.get("T", 1000))] + [float(a) for a in params.get("schedule_args", [])]
    return torch.as_tensor(fn(*args)).float()


def _number(value: Any) -> float | None:
    if isinstance(value, Tensor) and value.numel() == 1 and value.is_floating_point():
        return float(value.reshape(()))
    if isinstance(value, float):
        return value
    return None


# ----------------------------------------------------------------------------- known values
@check("diffusion_known_values", required=("cases",),
       optional=("schedule_function", "posterior_function", "schedule", "schedule_args", "T",
                 "rtol", "atol"), types=_KNOWN_VALUES)
def check_diffusion_known_values(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """Published values of the linear schedule (T = 1000, 1e-4..0.02): ``alpha_bar`` at a
    step, from the student's own schedule (cumulative product taken by the grader), and
    ``posterior_variance`` at a step, from the student's posterior on the grader's betas.
    Partial credit per case."""
    T = int(params.get("T", 1000))
    betas = _schedule(ctx, params)
    tol = Tolerance(float(params.get("rtol", 1e-5)), float(params.get("atol", 1e-8)))
    passed, notes = 0, []
    for case in params["cases"]:
        label = case.get("label", f"{case['quantity']} at t = {case['t']}")
        t, want = int(case["t"]), float(case["expected"])
        try:
            if case["quantity"] == "alpha_bar":
                fn = params.get("schedule_function", "linear_beta_schedule")
                ctx.require(fn)
                got = ctx.kernel.call(Name(fn), T, seed=ctx.seed)
                if not isinstance(got, Tensor) or tuple(got.shape) != (T,):
                    notes.append(f"{label}: {fn}({T}) must return a tensor of shape ({T},), "
                                 f"got {show(got)[:80]}")
                    continue
                actual: Any = torch.cumprod(1 - got.double(), 0)[t]
            elif case["quantity"] == "posterior_variance":
                fn = params.get("posterior_function", "q_posterior_mean_variance")
                ctx.require(fn)
                x = torch.zeros(1, 1, 8, 8)
                out = ctx.kernel.call(Name(fn), x, x, torch.tensor([t]), betas, seed=ctx.seed)
                if not isinstance(out, (tuple, list)) or len(out) != 2 or not isinstance(
                        out[1], Tensor):
                    notes.append(f"{label}: expected (mean, variance), got {show(out)[:80]}")
                    continue
                try:
                    actual = torch.broadcast_to(out[1], x.shape)[0, 0, 0, 0]
                except RuntimeError:
                    notes.append(f"{label}: the variance's shape {tuple(out[1].shape)} does "
                                 "not broadcast to x0's (1, 1, 8, 8)")
                    continue
            else:
                raise KeyError(f"unknown quantity {case['quantity']!r} (alpha_bar, "
                               "posterior_variance)")
            why = mismatch(actual, torch.tensor(want, dtype=torch.float64), tol, label)
        except StudentException as exc:
            why = f"{label}: raised {exc.ename}: {exc.evalue}"
        if why:
            notes.append(why)
        else:
            passed += 1
    return known_values_verdict(passed, len(params["cases"]), notes)


# ----------------------------------------------------------------------------- forward moments
@check("q_sample_moments", required=("steps",),
       optional=("function", "schedule", "schedule_args", "T", "samples", "alpha", "data"),
       types={"steps": list_of(integer(min=0), min_len=1)})
def check_q_sample_moments(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """``q_sample(x0, t, noise, alphas_cumprod)`` with the grader's standard normal noise,
    ``samples`` draws per step in ``steps``: x_t has mean sqrt(ab_t) x0 and std
    sqrt(1 - ab_t) per pixel (z-tests, Bonferroni, family-wise false-alarm rate ``alpha``);
    ab from the trusted schedule, x0 a test digit scaled to [-1, 1]."""
    from ..data import digits

    fn = params.get("function", "q_sample")
    ctx.require(fn)
    betas = _schedule(ctx, params)
    ab = torch.cumprod(1 - betas.double(), 0)
    n, alpha = int(params.get("samples", 2000)), float(params.get("alpha", 1e-6))
    data = params.get("data", {})
    x0 = digits(data.get("split", "test"), data.get("form", "continuous"))[:1] * 2 - 1
    steps = [int(t) for t in params["steps"]]
    gen = torch.Generator().manual_seed(ctx.seed)
    worst: dict[str, Any] = {}
    for t in steps:
        noise = torch.randn((n, 1, 8, 8), generator=gen)
        tt = torch.full((n,), t, dtype=torch.long)
        shown = {"t": t, "x0": x0, "samples": n}
        try:
            out = ctx.kernel.call(Name(fn), x0.expand(n, -1, -1, -1).contiguous(), tt, noise,
                                  ab.float(), seed=ctx.seed)
        except StudentException as exc:
            return Verdict.failed(f"your code raised {exc.ename}: {exc.evalue}",
                                  {"inputs": shown}, traceback=exc.traceback)
        if not isinstance(out, Tensor) or tuple(out.shape) != (n, 1, 8, 8):
            return Verdict.failed(f"expected a tensor of shape ({n}, 1, 8, 8), got "
                                  f"{show(out)[:100]}", {"inputs": shown})
        mean = ab[t].sqrt() * x0[0].double()
        std = (1 - ab[t]).sqrt().expand_as(mean)
        res = normal_moment_test(out.double(), mean, std, alpha / len(steps))
        worst[str(t)] = round(max(res["worst_z_mean"], res["worst_z_var"]), 2)
        if not (res["mean_ok"] and res["var_ok"]):
            what = "mean" if not res["mean_ok"] else "standard deviation"
            ce = {"inputs": shown,
                  "expected": f"mean sqrt(alpha_bar_t) x0, std sqrt(1 - alpha_bar_t) = "
                              f"{float(std.flatten()[0]):.6g}",
                  "actual": f"mean {show(res['sample_mean'])}, std "
                            f"{show(res['sample_std'])}"}
            return Verdict.failed(f"at t = {t} the {what} of x_t is wrong (z = "
                                  f"{max(res['worst_z_mean'], res['worst_z_var']):.1f}, limit "
                                  f"{res['z_critical']:.1f} at false-alarm rate {alpha:g}): "
                                  "x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise", ce,
                                  worst_z=worst)
    return Verdict.passed(f"mean and std of x_t right at t = {steps} over {n} draws each "
                          f"(false-alarm rate {alpha:g})", worst_z=worst)


# ----------------------------------------------------------------------------- the loss
@check("exact_denoiser_loss",
       optional=("function", "schedule", "schedule_args", "T", "shape", "dims", "rtol", "atol",
                 "max_examples"))
def check_exact_denoiser_loss(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """``diffusion_loss(model, x0, betas)`` with every row of x0 equal to a point c and the
    instrument ``diffusion.PointMassDenoiser`` (eps_hat = (x_t - sqrt(ab_t) c) /
    sqrt(1 - ab_t) + delta) as model: a correct loss is exactly mean(delta^2), whatever t
    and noise it drew; it must also call the model with one step per example in [0, T)."""
    fn = params.get("function", "diffusion_loss")
    ctx.require(fn)
    betas = _schedule(ctx, params)
    T = len(betas)
    ab = torch.cumprod(1 - betas.double(), 0)
    shape = tuple(int(s) for s in params.get("shape", [1, 8, 8]))
    rtol, atol = float(params.get("rtol", 1e-4)), float(params.get("atol", 1e-6))
    lo, hi = params.get("dims", {}).get("B", [64, 256])
    strategy = st.fixed_dictionaries({"batch": st.integers(int(lo), int(hi)),
                                      "seed": st.integers(0, 2**16)})

    def prop(ex: dict[str, int]) -> None:
        case = point_mass_case(shape, ex["seed"])
        x0 = case["c"].expand(ex["batch"], *shape).float().contiguous()
        shown = {**ex, "c": case["c"], "delta": case["delta"]}
        model = ctx.kernel.instrument("diffusion", "PointMassDenoiser", case["c"], case["delta"],
                                      ab)
        try:
            value = ctx.kernel.call(Name(fn), model, x0, betas, seed=ctx.seed)
        except StudentException as exc:
            raise _failure(f"your code raised {exc.ename}: {exc.evalue}", shown) from None
        got = _number(value)
        if got is None:
            raise _failure("diffusion_loss must return a one-element floating tensor", shown,
                           None, show(value)[:100])
        record = ctx.kernel.get(ctx.kernel.instrument("diffusion", "recorded_steps", model))
        steps = record.get("steps") if isinstance(record, dict) else None
        if not isinstance(steps, Tensor) or steps.numel() == 0:
            raise _failure("the model was never called", shown)
        if int(steps.min()) < 0 or int(steps.max()) >= T:
            raise _failure(f"time steps must lie in 0 .. T-1 = {T - 1}; the model saw "
                           f"{int(steps.min())} .. {int(steps.max())}", shown)
        if ex["batch"] >= 16 and int(steps[:ex["batch"]].unique().numel()) == 1:
            raise _failure("one time step for the whole batch: draw t ~ U{0..T-1} per "
                           "example", shown)
        want = float((case["delta"].float().double() ** 2).mean())
        if not math.isfinite(got) or abs(got - want) > atol + rtol * abs(want):
            raise _failure("with a noise predictor that is exact for this data up to a known "
                           "offset delta, the loss must equal mean(delta^2) whatever t and "
                           "noise were drawn; check x_t = sqrt(alpha_bar_t) x0 + "
                           "sqrt(1 - alpha_bar_t) noise with alpha_bar_t = prod_{s<=t} "
                           "(1 - beta_s), and the mean over all elements", shown,
                           f"{want:.8g}", f"{got:.8g}")

    tried, failure = run_property(strategy, prop, int(params.get("max_examples", 6)))
    if failure is None:
        return Verdict.passed(f"the loss is exact on {tried} generated point-mass data sets",
                              examples=tried)
    if isinstance(failure, PropertyFailure):
        return Verdict.failed(failure.message, failure.counterexample, examples=tried)
    raise failure


# ----------------------------------------------------------------------------- the sampler
def last_step_mean(x_t: Tensor, mu: Tensor, s: Tensor, betas: Tensor) -> Tensor:
    """The exact output of a correct ``p_sample(GaussianDenoiser(mu, s), x_t, 0, betas)``
    (float64): the mean (x_t - beta_0 / sqrt(1 - alpha_bar_0) eps) / sqrt(alpha_0), no noise,
    with eps the instrument's exact prediction. The route through x0-hat and the posterior
    mean gives the same value: at t = 0 the posterior mean is x0-hat."""
    b0 = betas.double()[0]
    ab0 = 1 - b0
    eps = (1 - ab0).sqrt() * (x_t.double() - ab0.sqrt() * mu.double()) / (
        ab0 * s.double() ** 2 + 1 - ab0)
    return (x_t.double() - b0 / (1 - ab0).sqrt() * eps) / ab0.sqrt()


def _t0_verdict(ctx: CheckContext, fn: str, model: Any, case: dict[str, Tensor],
                betas: Tensor, params: dict[str, Any]) -> Verdict | None:
    """None when ``p_sample(model, x, 0, betas)`` equals the exact mean of the last step,
    else a failure. Nothing here depends on the student's generator: noise drawn from any
    generator (even one reseeded at every call) moves the output off the mean, and noise
    multiplied by 0 does not. With beta_0 >= 0.01 (the rubric's ``schedule_args``) float32
    rounding stays below 1e-6 on every route measured, the noise sqrt(beta_0) z is ~0.1."""
    shape = tuple(case["mu"].shape[1:])
    gen = torch.Generator().manual_seed(ctx.seed + 1)
    x1 = (case["mu"] + case["s"] * torch.randn((8, *shape), generator=gen,
                                               dtype=torch.float64)).float()
    shown = {"x_t": x1, "t": 0}
    a = ctx.kernel.call(Name(fn), model, x1, 0, betas, seed=ctx.seed)
    if not isinstance(a, Tensor) or tuple(a.shape) != tuple(x1.shape):
        return Verdict.failed(f"p_sample must return a tensor of x_t's shape {tuple(x1.shape)}, "
                              f"got {show(a)[:100]}", {"inputs": shown})
    want = last_step_mean(x1, case["mu"], case["s"], betas)
    why = mismatch(a, want, Tolerance(float(params.get("rtol", 1e-3)),
                                      float(params.get("atol", 1e-4))), "x_{t-1}")
    if why is None:
        return None
    b = ctx.kernel.call(Name(fn), model, x1, 0, betas, seed=ctx.seed + 7919)
    ce = {"inputs": shown, "expected": want.float(), "actual": a}
    if isinstance(b, Tensor) and b.shape == a.shape and not torch.equal(a, b):
        diff = float((a.double() - b.double()).abs().max())
        return Verdict.failed(f"p_sample adds noise at t = 0: two calls on the same x_t differ "
                              f"by up to {diff:.3g}; the last step returns the mean ({why})", ce)
    return Verdict.failed(f"p_sample at t = 0 is off the exact mean of the last step ({why}): "
                          "at t = 0 p_sample must return the mean (x_t - beta_0 / sqrt(1 - "
                          "alpha_bar_0) eps) / sqrt(alpha_0), and add no noise from any "
                          "generator", ce)


def _law_verdict(ctx: CheckContext, fn: str, via: str, model: Any, case: dict[str, Tensor],
                 betas: Tensor, params: dict[str, Any], details: dict[str, Any]
                 ) -> Verdict | None:
    """None when the chain's n outputs have the exact law's per-pixel mean and std (z-tests),
    else a failure. The grader's calls reseed torch, but nothing depends on it: a chain that
    draws from its own generator gives the same law."""
    T, shape = len(betas), tuple(case["mu"].shape[1:])
    n, alpha = int(params.get("n", 2000)), float(params.get("alpha", 1e-6))
    shown = {"T": T, "n": n, "mu": case["mu"], "s": case["s"]}
    if via == "p_sample":
        gen = torch.Generator().manual_seed(ctx.seed)
        x0 = torch.randn((n, *shape), generator=gen)
        chain = [Call(Name(fn), (model, x0 if t == T - 1 else Back(1), t, betas),
                      seed=ctx.seed + 1 + t, keep=True) for t in range(T - 1, -1, -1)]
        # the whole chain is one request: each step on the last one's output, kept in the
        # kernel; the first failure is the chain's
        for outcome in ctx.kernel.run([*chain, Get(Back(1))]):
            out = outcome.value()
    else:
        out = ctx.kernel.call(Name(fn), model, n, betas, seed=ctx.seed)
    if not isinstance(out, Tensor) or tuple(out.shape) != (n, *shape):
        return Verdict.failed(f"the chain must give a tensor of shape {(n, *shape)}, got "
                              f"{show(out)[:100]}", {"inputs": shown})
    if not torch.isfinite(out).all():
        return Verdict.failed("the chain's output holds nan or inf",
                              {"inputs": shown})
    mean, std = gaussian_chain_law(case["mu"][0], case["s"][0], betas)
    res = normal_moment_test(out.double(), mean, std, alpha)
    details.update(z_critical=round(res["z_critical"], 3),
                   worst_z_mean=round(res["worst_z_mean"], 3),
                   worst_z_var=round(res["worst_z_var"], 3), alpha=alpha)
    if res["mean_ok"] and res["var_ok"]:
        return None
    what = "mean" if not res["mean_ok"] else "standard deviation"
    idx = int(((res["sample_mean"] - mean).abs() / std).flatten().argmax()) \
        if what == "mean" else int((res["sample_std"] / std - 1).abs().flatten().argmax())
    ce = {"inputs": shown,
          "expected": f"pixel {idx}: mean {float(mean.flatten()[idx]):.5f}, std "
                      f"{float(std.flatten()[idx]):.5f}",
          "actual": f"pixel {idx}: mean {float(res['sample_mean'].flatten()[idx]):.5f}, std "
                    f"{float(res['sample_std'].flatten()[idx]):.5f}"}
    return Verdict.failed(
        f"driven by the exact noise predictor of Gaussian data, {via} does not reproduce the "
        f"Gaussian: the {what} of its {n} samples is wrong (z = "
        f"{max(res['worst_z_mean'], res['worst_z_var']):.1f}, limit {res['z_critical']:.1f} at "
        f"false-alarm rate {alpha:g}); check the mean (x_t - beta_t / sqrt(1 - alpha_bar_t) "
        "eps) / sqrt(alpha_t), sigma_t^2 = beta_t" + (
            "" if via == "p_sample" else ", x_T ~ N(0, I), t = T-1 .. 0, and that samples stay "
            "in [-1, 1] (not mapped to [0, 1])"), ce, **details)


@check("reverse_chain_gaussian",
       optional=("function", "via", "verify", "schedule", "schedule_args", "T", "n", "alpha",
                 "mean_max", "std_range", "shape", "rtol", "atol"), types=_CHAIN)
def check_reverse_chain_gaussian(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """The ancestral sampler, driven by the exact noise predictor of N(mu, diag s^2)
    (instrument ``diffusion.GaussianDenoiser``). ``via: p_sample``: the grader draws
    x_{T-1} ~ N(0, I) and calls ``p_sample(model, x, t, betas)`` for t = T-1 .. 0 (keeping
    x in the kernel); ``via: sample``: one call ``sample(model, n, betas)``. ``verify``:
    ``law`` (the output's per-pixel mean and std equal the exact law of a correct chain,
    propagated in float64 by the grader; z-tests at family-wise false-alarm rate
    ``alpha``), ``t0`` (p_sample at t = 0 returns the exact mean of the last step, computed
    by the grader, within ``atol`` + ``rtol`` |mean|: no noise, whatever its generator)."""
    via = params.get("via", "p_sample")
    fn = params.get("function", via)
    ctx.require(fn)
    verify = list(params.get("verify", ["law"]))
    betas = _schedule(ctx, params)
    ab = torch.cumprod(1 - betas.double(), 0)
    shape = tuple(int(s) for s in params.get("shape", [1, 8, 8]))
    case = gaussian_case(shape, ctx.seed, float(params.get("mean_max", 0.3)),
                         tuple(params.get("std_range", [0.05, 0.1])))
    model = ctx.kernel.instrument("diffusion", "GaussianDenoiser", case["mu"], case["s"], ab)
    details: dict[str, Any] = {"T": len(betas), "n": int(params.get("n", 2000))}
    try:
        failure = (_t0_verdict(ctx, fn, model, case, betas, params) if "t0" in verify
                   else None)
        if failure is None and "law" in verify:
            failure = _law_verdict(ctx, fn, via, model, case, betas, params, details)
    except StudentException as exc:
        shown = {"T": len(betas), "mu": case["mu"], "s": case["s"]}
        return Verdict.failed(f"your code raised {exc.ename}: {exc.evalue}",
                              {"inputs": shown}, traceback=exc.traceback)
    if failure is not None:
        return failure
    return Verdict.passed(f"{via} with the exact denoiser of a Gaussian reproduces its law "
                          f"({', '.join(verify)}; T = {len(betas)})"
                          if "law" in verify else
                          f"{via} at t = 0 returns the exact mean, no noise", **details)
