"""Numerical derivatives: the one place every finite-difference comparison goes through.

A difference quotient is wrong wherever a ReLU, ``abs``, ``clamp``, max-pooling or
``torch.where`` switches inside its step, and LABS.md promises students that any
subgradient is right at a non-smooth point. Measured on a correct 8-coupling RealNVP with
ReLU networks (CHECKS.md): one draw in ten disagreed with autograd by 0.46 at a step of
1e-4, and hypothesis shrinks inputs toward exact zeros, where kinks sit. So a derivative
someone claims (autograd in the kernel, a hand-written backward, the reference's own
autograd) is compared with the grader's differences in three stages, and a mismatch is
reported only if it survives all three:

1. central differences at two steps, ``step`` and ``step / 8``: agreement with either is
   agreement (a kink inside the larger step only);
2. one-sided differences at the smaller step: where forward and backward quotients
   disagree a kink lies inside the step, and any value between them (a subgradient, up to
   the tolerance) is accepted — this also settles points exactly at a kink, e.g. ReLU at
   0 whose autograd derivative 0 equals the backward quotient;
3. a nearby point in general position, ``x + delta`` with a seeded random ``delta`` of a
   few dozen steps: a claim that agrees there was fooled at ``x`` by a kink, not wrong.

Everything runs in float64 on points the grader chose. ``evaluate`` takes all the points
of one stage at once ((M, n) -> (M, m)), so a row-wise function (a flow) answers a whole
stage in one call of the student's kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

__all__ = ["Mismatch", "jacobian_mismatch", "gradient_mismatch", "central_differences",
           "central_jacobian", "SMALLER", "NEARBY"]

SMALLER = 8.0          # the second central step is step / SMALLER
NEARBY = 32.0          # the nearby point lies about this many steps away (per coordinate)

Evaluate = Callable[[torch.Tensor], torch.Tensor]
Claim = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Mismatch:
    """A claimed derivative the grader's differences refute at a point and near it.

    ``index`` is (row, output, input) of the worst entry at the first point; ``claimed``
    and ``numeric`` are its values there (``numeric`` from the smaller central step),
    ``error`` their difference and ``allowed`` the tolerance; ``nearby_error`` is the
    worst excess at the nearby point. ``missing`` is True when the claim is exactly zero
    wherever the grader's differences are clearly not, at both points: no derivative
    reaches the input at all (detached), which the grader has then shown.
    """

    index: tuple[int, int, int]
    claimed: float
    numeric: float
    error: float
    allowed: float
    nearby_error: float
    missing: bool

    def describe(self, what: str = "the derivative") -> str:
        row, out, inp = self.index
        where = f"d output[{out}] / d input[{inp}]" + (f" of row {row}" if row else "")
        if self.missing:
            return (f"{what} is zero where the grader's finite differences are not "
                    f"({where}: {self.numeric:.6g}); no gradient reaches the input (a "
                    ".detach(), .item(), or a copy out of the graph?)")
        return (f"{what} differs from the grader's finite differences: {where} is "
                f"{self.claimed:.8g}, the differences give {self.numeric:.8g} (off by "
                f"{self.error:.3g}, allowed {self.allowed:.3g}); confirmed at two steps, "
                f"one-sided, and at a nearby point (off by {self.nearby_error:.3g} there)")


@dataclass(frozen=True)
class _Quotients:
    """Central at step and step / SMALLER, forward and backward at step / SMALLER."""

    big: torch.Tensor
    small: torch.Tensor
    forward: torch.Tensor
    backward: torch.Tensor


def _quotients(evaluate: Evaluate, x: torch.Tensor, step: float) -> _Quotients:
    b, n = x.shape
    small = step / SMALLER
    eye = torch.eye(n, dtype=torch.float64)
    shifted = [(x[:, None, :] + s * eye[None]).reshape(b * n, n)
               for s in (step, -step, small, -small)]
    out = evaluate(torch.cat([x, *shifted])).detach().double()
    f0 = out[:b]
    m = out.shape[1]
    plus, minus, plus_s, minus_s = (out[b + k * b * n: b + (k + 1) * b * n]
                                    .reshape(b, n, m).transpose(1, 2) for k in range(4))
    return _Quotients(big=(plus - minus) / (2 * step), small=(plus_s - minus_s) / (2 * small),
                      forward=(plus_s - f0[:, :, None]) / small,
                      backward=(f0[:, :, None] - minus_s) / small)


def _excess(claimed: torch.Tensor, q: _Quotients, rtol: float, atol: float
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """How far each claimed entry lies outside every accepted value, and the tolerance."""
    scale = q.small.abs().flatten(1).amax(1).clamp_min(1.0)[:, None, None]
    allowed = atol + rtol * scale.expand_as(claimed)
    lo, hi = torch.minimum(q.forward, q.backward), torch.maximum(q.forward, q.backward)
    outside = torch.clamp(lo - claimed, min=0) + torch.clamp(claimed - hi, min=0)
    gaps = torch.stack([(claimed - q.big).abs(), (claimed - q.small).abs(), outside])
    gap = gaps.nan_to_num(nan=float("inf")).amin(0)
    gap = torch.where(torch.isfinite(claimed), gap, torch.full_like(gap, float("inf")))
    return gap - allowed, allowed


def _missing(claimed: torch.Tensor, q: _Quotients, allowed: torch.Tensor) -> bool:
    """The claim is zero on every entry where the differences are clearly non-zero."""
    clear = (q.small.abs() > 10 * allowed) & (q.big.abs() > 10 * allowed)
    return bool(clear.any()) and bool((claimed[clear] == 0).all())


def jacobian_mismatch(evaluate: Evaluate, claim: Claim, x: torch.Tensor, claimed: torch.Tensor,
                      *, step: float, rtol: float, atol: float = 0.0, seed: int = 0
                      ) -> Mismatch | None:
    """None when ``claimed`` (B, m, n) is the Jacobian of ``evaluate`` at the rows ``x`` (B, n).

    ``evaluate`` maps points (M, n) row by row to (M, m); ``claim`` gives the claimed
    Jacobians at other points (for the nearby retest). An entry agrees when it is within
    ``atol + rtol * max(1, max |J_row|)`` of an accepted value (module docstring).
    """
    x, claimed = x.detach().double(), claimed.detach().double()
    q = _quotients(evaluate, x, step)
    excess, allowed = _excess(claimed, q, rtol, atol)
    if not bool((excess > 0).any()):
        return None
    gen = torch.Generator().manual_seed(seed)
    delta = torch.randn(x.shape, generator=gen, dtype=torch.float64) * NEARBY * step
    near = x + delta * x.abs().clamp_min(1.0)
    q_near = _quotients(evaluate, near, step)
    claimed_near = claim(near).detach().double()
    if tuple(claimed_near.shape) != tuple(claimed.shape):
        raise ValueError(f"the claimed Jacobian at the nearby point has shape "
                         f"{tuple(claimed_near.shape)}, not {tuple(claimed.shape)}")
    excess_near, allowed_near = _excess(claimed_near, q_near, rtol, atol)
    if not bool((excess_near > 0).any()):
        return None
    index, _ = _worst(excess)
    _, near_gap = _worst(excess_near, allowed_near)
    return Mismatch(index=index, claimed=float(claimed[index]), numeric=float(q.small[index]),
                    error=float((claimed[index] - q.small[index]).abs()),
                    allowed=float(allowed[index]), nearby_error=near_gap,
                    missing=_missing(claimed, q, allowed)
                    and _missing(claimed_near, q_near, allowed_near))


def _worst(excess: torch.Tensor, allowed: torch.Tensor | None = None
           ) -> tuple[tuple[int, int, int], float]:
    """Where the excess is largest, and the gap (excess + allowed) there."""
    flat = int(excess.flatten().nan_to_num(nan=float("inf")).argmax())
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), excess.shape))
    gap = float(excess[index] + (allowed[index] if allowed is not None else 0.0))
    return index, gap  # type: ignore[return-value]


def gradient_mismatch(f: Callable[[list[torch.Tensor]], torch.Tensor], inputs: list[torch.Tensor],
                      index: int, cotangent: torch.Tensor, claimed: torch.Tensor,
                      claim: Callable[[list[torch.Tensor]], torch.Tensor], *, step: float,
                      rtol: float, atol: float = 0.0, seed: int = 0) -> Mismatch | None:
    """None when ``claimed`` is d <cotangent, f(inputs)> / d inputs[index].

    ``f`` takes the full list of inputs (one call per point: it need not be row-wise);
    ``claim(inputs)`` is the claimed gradient at other inputs (the nearby retest). The
    ``Mismatch.index`` is (0, 0, flat position in inputs[index]).
    """
    base = inputs[index].double()
    shape = base.shape
    scalar = _directional(f, inputs, index, cotangent)

    def claim_flat(points: torch.Tensor) -> torch.Tensor:
        args = list(inputs)
        args[index] = points[0].reshape(shape)
        return claim(args).double().reshape(1, 1, -1)

    return jacobian_mismatch(scalar, claim_flat, base.reshape(1, -1),
                             claimed.double().reshape(1, 1, -1), step=step, rtol=rtol,
                             atol=atol, seed=seed)


def central_jacobian(evaluate: Evaluate, x: torch.Tensor, step: float) -> torch.Tensor:
    """J[b, i, j] = d f(x)[b, i] / d x[b, j] by central differences, in ONE call of
    ``evaluate`` (row-wise, (M, n) -> (M, m)). Only for values that do not decide a
    verdict alone; comparisons go through :func:`jacobian_mismatch`."""
    b, n = x.shape
    eye = torch.eye(n, dtype=torch.float64) * step
    x = x.double()
    out = evaluate(torch.cat([(x[:, None, :] + eye[None]).reshape(b * n, n),
                              (x[:, None, :] - eye[None]).reshape(b * n, n)])).detach().double()
    hi, lo = out[: b * n].reshape(b, n, -1), out[b * n:].reshape(b, n, -1)
    return ((hi - lo) / (2 * step)).transpose(1, 2)


def central_differences(f: Callable[[list[torch.Tensor]], torch.Tensor],
                        inputs: list[torch.Tensor], index: int, cotangent: torch.Tensor,
                        eps: float) -> torch.Tensor:
    """d <cotangent, f(inputs)> / d inputs[index], by central differences (grader-side)."""
    base = inputs[index].double()
    scalar = _directional(f, inputs, index, cotangent)
    return central_jacobian(scalar, base.reshape(1, -1), eps).reshape(base.shape)


def _directional(f: Callable[[list[torch.Tensor]], torch.Tensor], inputs: list[torch.Tensor],
                 index: int, cotangent: torch.Tensor) -> Evaluate:
    """Points (M, numel of inputs[index]) -> <cotangent, f(inputs with that one replaced)>
    (M, 1), one call of ``f`` per point (``f`` need not be row-wise)."""
    shape = inputs[index].shape

    def scalar(points: torch.Tensor) -> torch.Tensor:
        values = []
        for p in points:
            args = list(inputs)
            args[index] = p.reshape(shape)
            values.append((f(args).double() * cotangent.double()).sum())
        return torch.stack(values)[:, None]

    return scalar
