"""Sample quality of trained image models, measured by the grader on samples it asks for.

The kernel is asked only for ``model.sample(n)``; the grader validates the tensor, turns
Bernoulli means into draws with its own generator where the lab's data is binary,
computes FID against the test split with the shipped digits network, and shows a
grid of samples beside real digits in the report.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import torch
import torch.nn.functional as F

from ..data import digits
from ..metrics import fid
from ..protocol import Attr
from .registry import CheckContext, Verdict, check

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


@check("sample_fid", required=("zero_at", "full_at"),
       optional=("model", "method", "n", "data", "binarize", "value_range"))
def check_sample_fid(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """FID of ``model.sample(n)`` against the test split; linear credit between anchors.

    ``full_at`` is the calibrated FID of reference models (full credit at or below it),
    ``zero_at`` the FID of a baseline (no credit at or above it). ``value_range: [-1, 1]``
    maps samples by (x + 1) / 2 first; ``binarize`` draws Bernoulli pixels from them.
    """
    spec = params.get("model", {"class": "VAE", "checkpoint": None})
    model = ctx.model(spec["class"], spec.get("checkpoint"), tuple(spec.get("args", [])))
    n = int(params.get("n", 1000))
    samples = ctx.kernel.call(Attr(model, params.get("method", "sample")), n, seed=ctx.seed)
    if not torch.is_tensor(samples) or tuple(samples.shape) != (n, 1, 8, 8):
        return Verdict.failed(f"sample({n}) must return a tensor of shape ({n}, 1, 8, 8), got "
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
    data = params.get("data", {})
    real = digits(data.get("split", "test"), data.get("form", "binary"))
    value = fid(real, x)
    zero, full = float(params["zero_at"]), float(params["full_at"])
    fraction = min(1.0, max(0.0, (zero - value) / (zero - full)))
    figure = {"title": f"{min(n, 64)} samples (left) beside {min(len(real), 64)} test digits "
                       "(right)", "png_base64": sample_grid_png(x, real)}
    return Verdict(fraction, f"sample FID {value:.2f} on {n} samples (full credit at <= "
                   f"{full:g}, none at >= {zero:g})",
                   details={"fid": round(value, 3), "n": n, "full_at": full, "zero_at": zero},
                   figures=[figure])
