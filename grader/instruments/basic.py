"""Generic instruments: an affine critic with a known input gradient; parameter redraws."""

import torch
from torch import nn

__all__ = ["AffineCritic", "redraw_parameters"]


class AffineCritic(nn.Module):
    """``f(x) = x.flatten(1) @ w + b``, one value per row: its input gradient is ``w``."""

    def __init__(self, w, b=0.0):
        super().__init__()
        self.w = nn.Parameter(torch.as_tensor(w).reshape(-1).clone())
        self.b = nn.Parameter(torch.as_tensor(float(b), dtype=self.w.dtype))

    def forward(self, x):
        return x.flatten(1).to(self.w.dtype) @ self.w + self.b


def redraw_parameters(module, std=0.5, seed=0):
    """Redraw every floating parameter of ``module`` from N(0, std^2), in place; return it.

    Flows initialised to the identity (zero last layers) hide most bugs; a check redraws
    the parameters of the student's freshly built module before testing its maths.
    """
    generator = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for p in module.parameters():
            if p.is_floating_point():
                noise = torch.randn(p.shape, generator=generator, dtype=torch.float64)
                p.copy_((noise * float(std)).to(p.dtype))
    return module
