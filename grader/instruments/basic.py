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
    """Redraw the trainable floating parameters of ``module`` at random, in place; return it.

    Flows initialised to the identity (zero last layers) hide most bugs, so a check
    redraws the parameters of the student's freshly built module before testing its
    maths. The redraw keeps the module the flow the student wrote, only elsewhere in
    its parameter space:

    - only parameters an optimiser moves (``requires_grad``) are redrawn: a mask or a
      permutation kept as a frozen ``nn.Parameter`` is part of the architecture;
    - a tensor whose entries all share one strict sign when built (a scale initialised
      to ones whose log the student takes, an ActNorm scale) keeps that sign: it is
      multiplied by exp(N(0, std^2)) instead of replaced;
    - every other tensor is drawn from N(0, s^2), s = ``std`` capped at 1/sqrt(fan_in)
      for a weight of two or more dimensions, so that a layer's outputs stay about as
      large as its inputs whatever its width. Uncapped, N(0, 0.3^2) on 64 inputs
      multiplies them by 2.4 a layer: six couplings of ELU networks then take |x| = 10
      to 1e5 and a Jacobian condition of 1e16, where a correct flow's float64 round trip
      is off by 1e-2 and no log-determinant can be checked.
    """
    generator = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for p in module.parameters():
            if isinstance(p, nn.parameter.UninitializedParameter):
                continue      # a lazy layer not yet called: its first call draws it
            if p.is_floating_point() and p.requires_grad and p.numel():
                noise = torch.randn(p.shape, generator=generator, dtype=torch.float64)
                p.copy_(_redrawn(p.detach().double(), noise, float(std)).to(p.dtype))
    return module


def _redrawn(p, noise, std):
    """The new value of one parameter ``p`` (float64) from standard normal ``noise``."""
    if bool((p > 0).all()) or bool((p < 0).all()):
        return p * torch.exp(noise * std)
    if p.dim() >= 2 and p[0].numel():
        std = min(std, p[0].numel() ** -0.5)
    return noise * std
