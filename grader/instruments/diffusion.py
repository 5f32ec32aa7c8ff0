"""Instruments of the diffusion lab: noise predictors that are exact in closed form.

``PointMassDenoiser`` is exact for data that is one point c (every row of x0 equal to c):
eps_hat(x_t, t) = (x_t - sqrt(ab_t) c) / sqrt(1 - ab_t) + delta, so the noise-prediction
MSE of a correct loss is mean(delta^2) whatever t and noise were drawn. ``GaussianDenoiser``
is the exact predictor E[eps | x_t] for data N(mu, diag s^2):
sqrt(1 - ab_t) (x_t - sqrt(ab_t) mu) / (ab_t s^2 + 1 - ab_t). Both record the time steps
they are called with. Instruments run in the kernel and import nothing but torch.
"""

import torch
from torch import nn

__all__ = ["PointMassDenoiser", "GaussianDenoiser", "recorded_steps"]

_MAX_RECORDS = 16   # the first calls only: enough to see the steps a loss drew


def _steps(t, batch, device):
    t = torch.as_tensor(t, device=device)
    if t.is_floating_point():
        t = t.round()
    return t.long().reshape(-1).expand(batch) if t.numel() == 1 else t.long().reshape(-1)


class _Exact(nn.Module):
    def __init__(self, alphas_cumprod):
        super().__init__()
        self.register_buffer("alphas_cumprod", torch.as_tensor(alphas_cumprod).double().clone())
        # a parameter, so that next(model.parameters()) gives the dtype and device
        self.anchor = nn.Parameter(torch.zeros(1, dtype=torch.float32), requires_grad=False)
        self.steps = []

    def _ab(self, x_t, t):
        t = _steps(t, x_t.shape[0], x_t.device)
        if len(self.steps) < _MAX_RECORDS:
            self.steps.append(t.detach().cpu().clone())
        ab = self.alphas_cumprod.to(x_t.device)[t]
        return ab.reshape(-1, *([1] * (x_t.dim() - 1)))


class PointMassDenoiser(_Exact):
    """Exact noise predictor for x0 = c (shape (1, ...)), plus a known offset ``delta``."""

    def __init__(self, c, delta, alphas_cumprod):
        super().__init__(alphas_cumprod)
        self.register_buffer("c", torch.as_tensor(c).double().clone())
        self.register_buffer("delta", torch.as_tensor(delta).double().clone())

    def forward(self, x_t, t):
        ab = self._ab(x_t, t)
        eps = (x_t.double() - ab.sqrt() * self.c) / (1 - ab).sqrt() + self.delta
        return eps.to(x_t.dtype)


class GaussianDenoiser(_Exact):
    """E[eps | x_t] for data N(mu, diag s^2) (mu, s of shape (1, ...))."""

    def __init__(self, mu, s, alphas_cumprod):
        super().__init__(alphas_cumprod)
        self.register_buffer("mu", torch.as_tensor(mu).double().clone())
        self.register_buffer("s", torch.as_tensor(s).double().clone())

    def forward(self, x_t, t):
        ab = self._ab(x_t, t)
        eps = (1 - ab).sqrt() * (x_t.double() - ab.sqrt() * self.mu) / (
            ab * self.s ** 2 + 1 - ab)
        return eps.to(x_t.dtype)


def recorded_steps(model):
    """The time steps ``model`` was called with, concatenated (int64), and the call count."""
    steps = list(model.steps)
    flat = torch.cat(steps) if steps else torch.zeros(0, dtype=torch.long)
    return {"steps": flat, "calls": len(steps)}
