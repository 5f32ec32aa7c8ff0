"""Sample quality of trained image models, measured by the grader on samples it asks for.

The kernel is asked only for ``model.sample(n)``; the grader validates the tensor, turns
Bernoulli means into draws with its own generator where the lab's data is binary,
computes FID against the test split with the shipped digits network, and shows a
grid of samples beside real digits in the report.
"""

from __future__ import annotations

import base64
import io
import json
import math
from typing import Any

import torch
import torch.nn.functional as F

from ..data import digits
from ..metrics import class_coverage, fid, memorisation
from ..protocol import Attr, Name
from ..scoring import linear_credit
from .params import integer, number
from .registry import CheckContext, Metric, Verdict, check

__all__ = ["sample_grid_png"]


def sample_grid_png(images: torch.Tensor, real: torch.Tensor | None = None, *, count: int = 64,
                    scale: int = 4) -> str:
    """Base64 PNG: up to ``count`` images in a square grid (and real ones beside them)."""
    from PIL import Image

    def grid(x: torch.Tensor) -> torch.Tensor:
        x = x[:count].float().clamp(0, 1).reshape(-1, 1, 8, 8)
        side = math.ceil(math.sqrt(len(x)))
        x = torch.cat([x, torch.zeros(side * side - len(x), 1, 8, 8)])
        x = F.pad(x, (1, 1, 1, 1), value=0.5).reshape(side, side, 10, 10)
        return x.permute(0, 2, 1, 3).reshape(side * 10, side * 10)

    panels = [grid(images)] + ([torch.full((grid(images).shape[0], 4), 1.0), grid(real)]
                               if real is not None else [])
    height = max(p.shape[0] for p in panels)
    panels = [F.pad(p, (0, 0, 0, height - p.shape[0]), value=1.0) for p in panels]
    pixels = (torch.cat(panels, dim=1) * 255).round().to(torch.uint8)
    pixels = pixels.repeat_interleave(scale, 0).repeat_interleave(scale, 1)
    buffer = io.BytesIO()
    Image.fromarray(pixels.numpy(), mode="L").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


_SAMPLING = ("model", "method", "n", "binarize", "value_range", "sampler")


def draw_samples(ctx: CheckContext, params: dict[str, Any]) -> torch.Tensor | Verdict:
    """``model.sample(n)`` from the kernel, validated and mapped to [0, 1] (or a failure).

    With ``sampler: {function: sample, T: 1000, schedule: linear_beta_schedule}`` the
    notebook's function ``sample(model, n, betas)`` is called instead, with betas computed
    by the grader from the trusted reference's ``schedule(T)`` (the diffusion lab).
    """
    spec = params.get("model", {"class": "VAE", "checkpoint": None})
    model = ctx.model(spec)
    n = int(params.get("n", 1000))
    sampler = params.get("sampler")
    key = json.dumps(["samples", spec, n, sampler, params.get("method")], sort_keys=True,
                     default=str)
    if sampler:
        fn = str(sampler.get("function", "sample"))
        ctx.require(fn)
        schedule = ctx.ref(str(sampler.get("schedule", "linear_beta_schedule")))
        betas = torch.as_tensor(schedule(int(sampler.get("T", 1000)))).float()
        samples = ctx.memo(key, lambda: ctx.kernel.call(Name(fn), model, n, betas,
                                                        seed=ctx.seed))
        called = f"{fn}(model, {n}, betas)"
    else:
        method = Attr(model, params.get("method", "sample"))
        samples = ctx.memo(key, lambda: ctx.kernel.call(method, n, seed=ctx.seed))
        called = f"sample({n})"
    if not torch.is_tensor(samples) or tuple(samples.shape) != (n, 1, 8, 8):
        return Verdict.failed(f"{called} must return a tensor of shape ({n}, 1, 8, 8), got "
                              f"{getattr(samples, 'shape', type(samples).__name__)}")
    x = samples.double()
    lo, hi = params.get("value_range", [0.0, 1.0])
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).sum())
        return Verdict.failed(f"{bad} of the sampled pixel values are nan or inf")
    if x.min() < lo - 1e-6 or x.max() > hi + 1e-6:
        return Verdict.failed(f"samples must lie within [{lo}, {hi}]; got min "
                              f"{float(x.min()):.4g}, max {float(x.max()):.4g}")
    x = (x - lo) / (hi - lo)
    if params.get("binarize"):
        x = torch.bernoulli(x.clamp(0, 1), generator=torch.Generator().manual_seed(ctx.seed))
    return x


def _real(params: dict[str, Any]) -> torch.Tensor:
    data = params.get("data", {})
    return digits(data.get("split", "test"), data.get("form", "binary"))


@check("sample_fid", required=("zero_at", "full_at"), optional=(*_SAMPLING, "data"),
       metric=Metric("fid", False))
def check_sample_fid(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """FID of ``model.sample(n)`` against the test split; linear credit between anchors.

    ``full_at`` is the calibrated FID of reference models (full credit at or below it),
    ``zero_at`` the FID of a baseline (no credit at or above it). ``value_range: [-1, 1]``
    maps samples by (x + 1) / 2 first; ``binarize`` draws Bernoulli pixels from them.
    """
    x = draw_samples(ctx, params)
    if isinstance(x, Verdict):
        return x
    real = _real(params)
    value = fid(real, x)
    zero, full = float(params["zero_at"]), float(params["full_at"])
    figure = {"title": f"{min(len(x), 64)} samples (left) beside {min(len(real), 64)} test "
                       "digits (right)", "png_base64": sample_grid_png(x, real)}
    return Verdict(linear_credit(value, zero, full), f"sample FID {value:.2f} on {len(x)} samples "
                   f"(full credit at <= {full:g}, none at >= {zero:g})",
                   details={"fid": round(value, 3), "n": len(x), "full_at": full, "zero_at": zero},
                   figures=[figure])


@check("sample_coverage", optional=(*_SAMPLING, "min_classes", "min_share"),
       types={"min_classes": integer(min=1, max=10)})
def check_sample_coverage(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """The course classifier finds at least ``min_classes`` digit classes among the samples."""
    x = draw_samples(ctx, params)
    if isinstance(x, Verdict):
        return x
    cov = class_coverage(x, float(params.get("min_share", 0.25)))
    need = int(params.get("min_classes", 10))
    details = {"counts": list(cov.counts), "classes_covered": cov.covered,
               "chi2_p_uniform": cov.chi2_p, "mean_confidence": round(cov.confidence, 4)}
    message = (f"{cov.covered} of 10 digit classes appear among {len(x)} samples (need "
               f"{need}); predicted counts {list(cov.counts)}")
    return Verdict(1.0 if cov.covered >= need else 0.0, message, details=details)


@check("sample_memorisation", optional=(*_SAMPLING, "data", "max_copied_share", "min_ratio"),
       types={"max_copied_share": number(min=0, max=1), "min_ratio": number(min=0)})
def check_sample_memorisation(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """Samples are not training images: nearest-neighbour distances vs held-out test data."""
    x = draw_samples(ctx, params)
    if isinstance(x, Verdict):
        return x
    form = params.get("data", {}).get("form", "binary")
    mem = memorisation(digits("train", form), digits("test", form), x)
    max_share, min_ratio = float(params.get("max_copied_share", 0.2)), float(
        params.get("min_ratio", 0.5))
    details = {"median_distance_to_train": round(mem.fake_median, 4),
               "test_median_distance_to_train": round(mem.test_median, 4),
               "ratio": round(mem.ratio, 4), "copied_share": round(mem.copied_share, 4)}
    if mem.copied_share > max_share or mem.ratio < min_ratio:
        return Verdict.failed(f"samples sit on training images: {mem.copied_share:.0%} are as "
                              f"close to a training image as the closest 1% of test images, "
                              f"median distance {mem.fake_median:.3g} vs {mem.test_median:.3g} "
                              "for test images", **details)
    return Verdict.passed(f"samples are no closer to training images than test images are "
                          f"(ratio {mem.ratio:.2f})", **details)
