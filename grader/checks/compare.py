"""Numerical comparison and distribution tests, all in the grader (finite differences:
``numeric.py``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from scipy import stats

__all__ = ["Tolerance", "mismatch", "normal_moment_test", "as_tensor"]


@dataclass(frozen=True)
class Tolerance:
    """|actual - expected| <= atol + rtol * |expected|, element-wise."""

    rtol: float
    atol: float

    @classmethod
    def of(cls, params: dict[str, Any], precision: str) -> Tolerance:
        if precision == "float64":
            return cls(float(params.get("rtol", 1e-6)), float(params.get("atol", 1e-6)))
        return cls(float(params.get("rtol32", 1e-4)), float(params.get("atol32", 1e-3)))


def as_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.tensor(float(value), dtype=torch.float64)
    return None


def mismatch(actual: Any, expected: Any, tol: Tolerance, path: str = "output") -> str | None:
    """Why ``actual`` is not ``expected`` within ``tol``; None when it is."""
    if isinstance(expected, (tuple, list)):
        if not isinstance(actual, (tuple, list)) or len(actual) != len(expected):
            return f"{path}: expected a tuple of {len(expected)}, got {_kind(actual)}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            why = mismatch(a, e, tol, f"{path}[{i}]")
            if why:
                return why
        return None
    exp, act = as_tensor(expected), as_tensor(actual)
    if act is None:
        return f"{path}: expected a tensor, got {_kind(actual)}"
    if tuple(act.shape) != tuple(exp.shape):
        return f"{path}: expected shape {tuple(exp.shape)}, got {tuple(act.shape)}"
    if not (act.is_floating_point() or act.dtype == torch.bool or not exp.is_floating_point()):
        act = act.double()
    act, exp = act.double(), exp.double()
    finite_e, finite_a = torch.isfinite(exp), torch.isfinite(act)
    bad = finite_e & ~finite_a
    if bad.any():
        idx = _index(bad)
        return (f"{path}{_where(idx)}: got {act[idx].item()} where {exp[idx].item():.6g} was "
                "expected (overflow or log of 0?)")
    same_nonfinite = ~finite_e & (act == exp)
    diff = torch.where(same_nonfinite, torch.zeros_like(act), (act - exp).abs())
    diff = torch.where(torch.isnan(diff), torch.full_like(diff, math.inf), diff)
    allowed = tol.atol + tol.rtol * exp.abs().nan_to_num(posinf=0.0, neginf=0.0)
    over = diff > allowed
    if over.any():
        excess = torch.where(over, diff - allowed, torch.zeros_like(diff))
        idx = _index(excess == excess.max())
        return (f"{path}{_where(idx)}: got {act[idx].item():.8g}, expected {exp[idx].item():.8g} "
                f"(off by {diff[idx].item():.3g}; allowed {allowed[idx].item():.3g})")
    return None


def _index(mask: torch.Tensor) -> tuple[int, ...]:
    """The first position where ``mask`` holds, as a tuple usable for indexing."""
    return tuple(int(i) for i in mask.nonzero()[0]) if mask.dim() else ()


def _where(idx: tuple[int, ...]) -> str:
    return str(list(idx)) if idx else ""


def _kind(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return type(value).__name__


def normal_moment_test(samples: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                       alpha: float) -> dict[str, Any]:
    """Test samples (N, ...) against per-coordinate normal mean and std.

    Uses z-tests on the sample mean and on the sample variance (its standard error
    is var * sqrt(2 / (N - 1)) for normal data), Bonferroni-corrected so that the
    family-wise false-alarm rate is ``alpha``.
    """
    n = samples.shape[0]
    tests = 2 * mean.numel()
    z = float(stats.norm.isf(alpha / (2 * tests)))
    sample_mean = samples.double().mean(0)
    sample_var = samples.double().var(0, unbiased=True)
    var = std.double() ** 2
    z_mean = (sample_mean - mean.double()).abs() / (std.double() / math.sqrt(n)).clamp_min(1e-300)
    z_var = (sample_var - var).abs() / (var * math.sqrt(2.0 / (n - 1))).clamp_min(1e-300)
    return {"z_critical": z, "worst_z_mean": float(z_mean.max()), "worst_z_var": float(z_var.max()),
            "mean_ok": bool((z_mean <= z).all()), "var_ok": bool((z_var <= z).all()),
            "sample_mean": sample_mean, "sample_std": sample_var.sqrt(), "n": n}


def broadcast_outputs(actual: Any, expected: Any, shape: tuple[int, ...]) -> tuple[Any, str | None]:
    """Each tensor of ``actual`` broadcast to ``shape`` (as ``expected`` is); why not, else."""
    if isinstance(expected, (tuple, list)):
        if not isinstance(actual, (tuple, list)) or len(actual) != len(expected):
            return actual, (f"expected a tuple of {len(expected)}, got "
                            f"{type(actual).__name__}")
        out = []
        for i, (a, e) in enumerate(zip(actual, expected)):
            b, why = broadcast_outputs(a, e, shape)
            if why:
                return actual, f"output[{i}]: {why}"
            out.append(b)
        return tuple(out), None
    if not isinstance(actual, torch.Tensor):
        return actual, f"expected a tensor, got {type(actual).__name__}"
    try:
        return torch.broadcast_to(actual, shape), None
    except RuntimeError:
        return actual, f"shape {tuple(actual.shape)} does not broadcast to {shape}"
