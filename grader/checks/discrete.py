"""Checks of discrete generative models and agents (beliefs, free energy, policies).

Inputs are drawn by hypothesis from kinds made for discrete models (float64)::

    inputs:
      A:        {kind: stochastic, shape: [O, S]}              # columns (axis 0) sum to 1
      prior:    {kind: stochastic, shape: [S], zeros: true}    # some entries exactly 0
      B:        {kind: stochastic, shape: [S, S, U], zeros: true}
      C:        {kind: floats, shape: [O], min: -3, max: 3}
      o:        {kind: outcome, likelihood: A, prior: prior}   # an int with p(o) > 0
      q:        {kind: stochastic, shape: [S]}
      policy:   {kind: policy, actions: U, length: [1, 3]}     # list[int]
      policies: {kind: policies, actions: U, length: [1, 2], count: [1, 6]}
      gamma:    {kind: scalar, min: 0.5, max: 32}              # a Python float
    dims: {O: [1, 5], S: [1, 5], U: [1, 3]}
    args: [q, A, B, C, policy]

``stochastic`` entries are drawn in [1e-3, 1] (or exactly 0 with ``zeros``; every
column keeps a positive entry) and normalised along axis 0. Everything the student's
code returns is compared with what the grader computes itself.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ..envs import TMaze
from ..errors import StudentException
from ..protocol import Name
from ..report.values import text as show
from .compare import Tolerance, mismatch
from .params import boolean, integer, one_of, string
from .harness import run_property
from .registry import CheckContext, PropertyFailure, Verdict, check
from .strategies import keyed

__all__ = ["discrete_inputs", "stochastic_array", "free_energy", "played_episodes",
           "ENVIRONMENTS"]

ENVIRONMENTS: dict[str, Callable[..., Any]] = {"tmaze": TMaze}
_DRAWN_FIRST = ("stochastic", "floats", "scalar", "policy", "policies")


def stochastic_array(shape: tuple[int, ...], zeros: bool = False
                     ) -> st.SearchStrategy[np.ndarray]:
    """Arrays whose columns (axis 0) are probability vectors, strictly positive unless ``zeros``."""
    positive = st.floats(1e-3, 1.0, allow_nan=False, allow_infinity=False)
    elements = st.one_of(st.just(0.0), positive) if zeros else positive

    def normalise(arr: np.ndarray) -> np.ndarray:
        cols = arr.reshape(shape[0], -1).copy()
        cols[0, cols.sum(axis=0) == 0] = 1.0
        return (cols / cols.sum(axis=0, keepdims=True)).reshape(shape)

    return hnp.arrays(np.float64, shape, elements=elements).map(normalise)


def _draw_one(draw: Callable[..., Any], spec: dict[str, Any], dims: dict[str, int],
              drawn: dict[str, Any]) -> Any:
    kind = spec.get("kind", "floats")
    shape = tuple(d if isinstance(d, int) else dims[d] for d in spec.get("shape", []))
    if kind == "stochastic":
        return draw(stochastic_array(shape, bool(spec.get("zeros"))))
    if kind == "floats":
        elements = st.floats(float(spec.get("min", -3)), float(spec.get("max", 3)),
                             allow_nan=False, allow_infinity=False, width=32)
        return draw(hnp.arrays(np.float64, shape, elements=elements))
    if kind == "scalar":
        return float(draw(st.floats(float(spec.get("min", 0)), float(spec.get("max", 1)),
                                    allow_nan=False, allow_infinity=False, width=32)))
    if kind in ("policy", "policies"):
        actions = dims[spec["actions"]] if isinstance(spec["actions"], str) else spec["actions"]
        lo, hi = spec.get("length", [1, 3])
        length = draw(st.integers(int(lo), int(hi)))
        one = st.lists(st.integers(0, actions - 1), min_size=length, max_size=length)
        if kind == "policy":
            return draw(one)
        clo, chi = spec.get("count", [1, 6])
        return draw(st.lists(one, min_size=int(clo), max_size=int(chi)))
    if kind == "outcome":
        p = drawn[spec["likelihood"]] @ drawn[spec["prior"]]
        return int(draw(st.sampled_from([int(i) for i in np.flatnonzero(p > 0)])))
    raise ValueError(f"unknown input kind {kind!r}")


def discrete_inputs(inputs: dict[str, Any], dims: dict[str, Any]
                    ) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts of named inputs (arrays, ints, lists); the drawn sizes ride along as ``_dims``."""

    @st.composite
    def draw(draw_fn: Callable[..., Any]) -> dict[str, Any]:
        sizes = {name: draw_fn(st.integers(int(lo), int(hi))) for name, (lo, hi) in dims.items()}
        drawn: dict[str, Any] = {}
        for name, spec in sorted(inputs.items(),
                                 key=lambda kv: kv[1].get("kind", "floats") not in _DRAWN_FIRST):
            drawn[name] = _draw_one(draw_fn, spec, sizes, drawn)
        return {name: drawn[name] for name in inputs} | {"_dims": sizes}

    return keyed(draw(), "discrete_inputs", inputs, dims)


def _args(example: dict[str, Any], names: list[str]) -> list[Any]:
    """Arrays become float64 tensors; ints, floats and lists go as they are."""
    return [torch.from_numpy(np.array(example[n], dtype=np.float64))
            if isinstance(example[n], np.ndarray) else example[n] for n in names]


def _names(params: dict[str, Any]) -> list[str]:
    return list(params.get("args") or params["inputs"].keys())


def _call(ctx: CheckContext, fn: str, args: list[Any], example: dict[str, Any]) -> Any:
    try:
        return ctx.kernel.call(Name(fn), *args, seed=ctx.seed)
    except StudentException as exc:
        failure = PropertyFailure(f"your code raised {exc.ename}: {exc.evalue}",
                                  {"inputs": _shown(example), "expected": None, "actual": None})
        failure.traceback = exc.traceback  # type: ignore[attr-defined]
        raise failure from None


def _shown(example: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in example.items() if not k.startswith("_")}


def _scalar_like(actual: Any, expected: Any) -> Any:
    """A one-element tensor stands for a float where a float is expected."""
    if isinstance(expected, (int, float)) and isinstance(actual, torch.Tensor) \
            and actual.numel() == 1:
        return actual.reshape(())
    return actual


def _verdict(failure: BaseException | None, tried: int, ok: str) -> Verdict:
    if failure is None:
        return Verdict.passed(ok, examples=tried)
    if isinstance(failure, PropertyFailure):
        verdict = Verdict.failed(failure.message, failure.counterexample, examples=tried)
        if getattr(failure, "traceback", None):
            verdict.details["traceback"] = failure.traceback  # type: ignore[attr-defined]
        return verdict
    raise failure


@check("discrete_matches_reference", required=("function", "inputs"),
       optional=("dims", "args", "reference", "rtol", "atol", "max_examples"))
def check_discrete_matches_reference(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """The student's function equals the reference on drawn discrete models (float64)."""
    ctx.require(params["function"])
    reference = ctx.ref(params.get("reference") or params["function"])
    tol = Tolerance(float(params.get("rtol", 1e-6)), float(params.get("atol", 1e-8)))
    names = _names(params)

    def prop(example: dict[str, Any]) -> None:
        args = _args(example, names)
        expected = reference(*args)
        actual = _scalar_like(_call(ctx, params["function"], args, example), expected)
        why = mismatch(actual, expected, tol)
        if why:
            raise PropertyFailure(why, {"inputs": _shown(example), "expected": expected,
                                        "actual": actual})

    tried, failure = run_property(discrete_inputs(params["inputs"], params.get("dims", {})),
                                  prop, int(params.get("max_examples", ctx.max_examples)))
    return _verdict(failure, tried, f"matches the reference on {tried} drawn models")


@check("discrete_distribution", required=("function", "inputs", "length"),
       optional=("dims", "args", "atol", "max_examples"),
       types={"length": one_of(integer(min=1), string())})
def check_discrete_distribution(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """The output is a probability vector: shape (``length``,), finite, >= 0, sums to 1.

    ``length`` is a number, a dims symbol, or the name of a list input (its length).
    """
    ctx.require(params["function"])
    atol = float(params.get("atol", 1e-9))
    names = _names(params)

    def prop(example: dict[str, Any]) -> None:
        args = _args(example, names)
        out = _call(ctx, params["function"], args, example)
        length = params["length"]
        want = (example["_dims"][length] if length in example["_dims"] else len(example[length])) \
            if isinstance(length, str) else int(length)
        ce = {"inputs": _shown(example), "expected": f"a probability vector of shape ({want},)",
              "actual": out}
        if not isinstance(out, torch.Tensor) or not out.is_floating_point():
            raise PropertyFailure("the output is not a floating tensor", ce)
        if tuple(out.shape) != (want,):
            raise PropertyFailure(f"the output has shape {tuple(out.shape)}, expected ({want},)",
                                  ce)
        p = out.double()
        if not torch.isfinite(p).all():
            raise PropertyFailure("the output contains nan or inf", ce)
        if p.min() < -atol:
            raise PropertyFailure(f"a probability is negative ({p.min().item():.3g})", ce)
        if abs(p.sum().item() - 1.0) > atol:
            raise PropertyFailure(f"the probabilities sum to {p.sum().item():.10g}, not 1", ce)

    tried, failure = run_property(discrete_inputs(params["inputs"], params.get("dims", {})),
                                  prop, int(params.get("max_examples", ctx.max_examples)))
    return _verdict(failure, tried, f"a probability vector summing to 1 on {tried} drawn models")


def free_energy(q: torch.Tensor, joint: torch.Tensor) -> float:
    """sum_s q(s) [ln q(s) - ln joint(s)] (0 ln 0 = 0; +inf where q > 0 = joint)."""
    mass = q > 0
    if bool((joint[mass] == 0).any()):
        return math.inf
    qm = q[mass]
    return float((qm * (qm.log() - joint[mass].log())).sum())


_BELIEFS = ("positive", "within_support", "outside_support", "posterior")


@check("free_energy_bound", required=("function", "inputs", "likelihood", "prior", "outcome",
                                      "belief"),
       optional=("dims", "args", "exact", "rtol", "atol", "max_examples"),
       types={"likelihood": string(), "prior": string(), "outcome": string(),
              "belief": string(), "exact": boolean()(False)})
def check_free_energy_bound(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """F(q) >= -ln p(o) for any belief q, with equality at the exact posterior.

    The grader computes p(o) = sum_s A[o, s] prior(s) and the posterior itself; the belief
    (argument ``belief``) is drawn strictly positive, with zeros inside the posterior's
    support, with mass on states the outcome rules out (F = +inf; any value >= -ln p(o)
    is accepted there), or equal to the posterior. With ``exact``, also F(q) + ln p(o) =
    KL(q || posterior) wherever that is finite.
    """
    ctx.require(params["function"])
    tol = Tolerance(float(params.get("rtol", 1e-7)), float(params.get("atol", 1e-8)))
    names, belief = _names(params), params["belief"]
    exact = bool(params.get("exact", False))
    base = discrete_inputs({k: v for k, v in params["inputs"].items() if k != belief},
                           params.get("dims", {}))

    @st.composite
    def with_belief(draw: Callable[..., Any]) -> dict[str, Any]:
        example = draw(base)
        A, prior = example[params["likelihood"]], example[params["prior"]]
        joint = A[example[params["outcome"]]] * prior
        post = joint / joint.sum()
        case = draw(st.sampled_from(_BELIEFS))
        size = len(prior)
        weights = draw(stochastic_array((size,), zeros=case == "within_support"))
        if case == "within_support":
            weights = weights * (post > 0)
            if weights.sum() == 0:
                weights = post.copy()
        elif case == "outside_support" and (post == 0).any():
            weights = weights * (post == 0) + (weights * (post > 0) if draw(st.booleans())
                                               else 0.0)
        elif case == "posterior":
            weights = post.copy()
        example[belief] = weights / weights.sum()
        return example

    def check_one(example: dict[str, Any], q: np.ndarray, label: str) -> None:
        A, prior = example[params["likelihood"]], example[params["prior"]]
        o = example[params["outcome"]]
        joint = torch.from_numpy(A[o] * prior)
        qt = torch.from_numpy(np.array(q, dtype=np.float64))
        log_evidence = math.log(float(joint.sum()))
        bound = -log_evidence
        shown = {**example, belief: q}
        args = _args(shown, names)
        actual = _scalar_like(_call(ctx, params["function"], args, shown), 0.0)
        value = actual.double().item() if isinstance(actual, torch.Tensor) \
            and actual.numel() == 1 else actual
        true_f = free_energy(qt, joint)
        ce = {"inputs": _shown(shown), "expected": f"F >= -ln p(o) = {bound:.10g}"
              + (f", F = {true_f:.10g} at this {label}" if label == "posterior" or exact else ""),
              "actual": actual}
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PropertyFailure(f"expected a float, got {show(actual)[:80]}", ce)
        if math.isnan(value) or value == -math.inf:
            raise PropertyFailure(f"F is {value} for a {label} belief (0 ln 0 must count as 0)",
                                  ce)
        slack = tol.atol + tol.rtol * abs(bound)
        if value < bound - slack:
            raise PropertyFailure(f"F = {value:.10g} is below -ln p(o) = {bound:.10g} for a "
                                  f"{label} belief: it is not an upper bound on surprise", ce)
        if label == "posterior" and abs(value - bound) > slack:
            raise PropertyFailure(f"at the exact posterior F = {value:.10g}, but it must equal "
                                  f"-ln p(o) = {bound:.10g} (off by {abs(value - bound):.3g})", ce)
        if exact and math.isfinite(true_f) and abs(value - true_f) > slack:
            raise PropertyFailure(f"F = {value:.10g}, but -ln p(o) + KL(q || posterior) = "
                                  f"{true_f:.10g} for this {label} belief "
                                  f"(off by {abs(value - true_f):.3g})", ce)

    def prop(example: dict[str, Any]) -> None:
        A, prior = example[params["likelihood"]], example[params["prior"]]
        joint = A[example[params["outcome"]]] * prior
        post = joint / joint.sum()
        q = example[belief]
        label = "posterior" if np.array_equal(q, post) else \
            "outside-support" if ((q > 0) & (post == 0)).any() else "positive" \
            if (q > 0).all() else "sparse"
        check_one(example, q, label)
        if label != "posterior":
            check_one(example, post, "posterior")

    tried, failure = run_property(with_belief(), prop,
                                  int(params.get("max_examples", ctx.max_examples)))
    what = "equals -ln p(o) + KL(q || posterior)" if exact else \
        "bounds -ln p(o), with equality at the posterior,"
    return _verdict(failure, tried, f"F {what} on {tried} drawn models and beliefs")


def played_episodes(env: Any) -> list[Any]:
    """The episodes of ``env``'s record in which the agent took at least one action.

    LABS.md fixes how many episodes ``run_agent`` plays, not how it calls ``env.reset()``:
    an agent that resets ahead of its next episode resets once more after its last one.
    That episode was never played: it is neither a miss in the share nor a total to match.
    """
    return [e for e in env.episodes if e.actions]


@check("agent_episodes", required=("function", "env", "episodes"),
       optional=("env_params", "min_share", "timeout"))
def check_agent_episodes(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """The agent, playing the grader's environment, succeeds in >= ``min_share`` of episodes.

    The environment lives in the grader's process: the kernel gets a stand-in object
    with the model's attributes (``A, B, C, D``) whose ``reset()``/``step(a)`` ask the
    grader over Jupyter's stdin channel. Success is read from the grader's own record of
    each episode (for the T-maze: the cued rewarding arm was entered), never from
    what the agent returns.
    """
    ctx.require(params["function"])
    env = ENVIRONMENTS[params["env"]](seed=ctx.seed, **params.get("env_params", {}))
    episodes, need = int(params["episodes"]), float(params.get("min_share", 0.9))
    attrs = {"A": env.A, "B": env.B, "C": env.C, "D": env.D}
    handle = ctx.kernel.remote(attrs, ["reset", "step"], name=type(env).__name__)
    raised = None
    try:
        out = ctx.kernel.call(Name(params["function"]), handle, episodes, seed=ctx.seed,
                              stdin_handler=env.answer, timeout=params.get("timeout"))
    except StudentException as exc:
        raised, out = exc, None
    summary = env.summary()
    played = played_episodes(env)
    unplayed = summary["episodes"] - len(played)
    share = summary["correct_arm"] / max(len(played), episodes)
    details = {**summary, "played": len(played), "share": round(share, 4),
               "required_share": need, "requested_episodes": episodes}
    record = (f"{summary['correct_arm']} of {max(len(played), episodes)} episodes in the cued "
              f"rewarding arm ({100 * share:.0f} %; {100 * need:.0f} % needed); "
              f"{summary['wrong_arm']} in the other arm, "
              f"{sum(e.arm is None for e in played)} in no arm; the cue visited in "
              f"{summary['cue_visited']}" + (f"; {unplayed} reset(s) with no action, not counted"
                                             if unplayed else ""))
    if raised is not None:
        verdict = Verdict.failed(f"your {params['function']} raised {raised.ename}: "
                                 f"{raised.evalue} (after {len(played)} episodes)", **details)
        verdict.details["traceback"] = raised.traceback
        return verdict
    if len(played) < episodes:
        return Verdict.failed(f"only {len(played)} of the {episodes} episodes were played "
                              f"(env.reset() starts each one, env.step() plays it): {record}",
                              **details)
    totals = out.tolist() if isinstance(out, torch.Tensor) and out.dim() == 1 else out
    if not isinstance(totals, (list, tuple)) or len(totals) != episodes or not all(
            isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t)
            for t in totals):
        return Verdict.failed(f"{params['function']} must return a list of {episodes} finite "
                              f"total rewards, one per episode; got {show(out)[:120]}",
                              **details)
    paid = [e.reward for e in played[-episodes:]]
    details["reported_totals_match"] = bool(np.allclose(totals, paid))
    if share < need:
        return Verdict.failed(f"the agent took the cued rewarding arm too rarely: {record}",
                              **details)
    return Verdict.passed(f"the agent took the cued rewarding arm: {record}", **details)
