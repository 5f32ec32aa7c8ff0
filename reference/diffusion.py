"""Reference solution of the diffusion lab (trusted; never sent to a student).

Generated from reference/diffusion.ipynb by `grader build diffusion`: edit the notebook, not this file.
"""

import math
import torch
import torch.nn as nn
import torch.nn.functional as F
from grader.data import digits
TRAIN = True
SEED = 0
DEVICE = "cpu"


def linear_beta_schedule(T, beta_start=1e-4, beta_end=0.02):
    """betas (T,): evenly spaced from beta_start to beta_end (float32)."""
    return torch.linspace(beta_start, beta_end, int(T), dtype=torch.float32)


def alphas_cumprod_of(betas):
    """alpha_bar_t = prod_{s <= t} (1 - beta_s), shape (T,)."""
    return torch.cumprod(1.0 - betas, dim=0)


def _at(values, t, like):
    """values[t] reshaped to (B, 1, ..., 1) to broadcast against ``like``."""
    v = values.to(like.device)[t.long().to(like.device)].to(like.dtype)
    return v.reshape(-1, *([1] * (like.dim() - 1)))


def q_sample(x0, t, noise, alphas_cumprod):
    """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise.

    x0, noise: (B, ...); t: (B,) long, one step per example; alphas_cumprod: (T,).
    """
    ab = _at(alphas_cumprod, t, x0)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def q_posterior_mean_variance(x0, x_t, t, betas):
    """Mean and variance of q(x_{t-1} | x_t, x0).

    x0, x_t: (B, ...); t: (B,) long; betas: (T,). The variance may have any shape that
    broadcasts to x0's, e.g. (B, 1, 1, 1). It is 0 at t = 0.
    """
    betas = betas.to(x0.dtype)
    ab = alphas_cumprod_of(betas)
    ab_prev = torch.cat([torch.ones(1, dtype=ab.dtype, device=ab.device), ab[:-1]])
    b, a_t = _at(betas, t, x0), _at(1 - betas, t, x0)
    abar, abar_prev = _at(ab, t, x0), _at(ab_prev, t, x0)
    mean = (abar_prev.sqrt() * b / (1 - abar)) * x0 + (a_t.sqrt() * (1 - abar_prev)
                                                       / (1 - abar)) * x_t
    variance = b * (1 - abar_prev) / (1 - abar)
    return mean, variance


class Denoiser(nn.Module):
    """eps_theta(x_t, t): (B, 1, 8, 8), (B,) long -> (B, 1, 8, 8)."""

    def __init__(self):
        super().__init__()
        hidden, self.embed = HIDDEN, EMBED
        self.inp = nn.Linear(64 + self.embed, hidden)
        self.mid = nn.Linear(hidden + self.embed, hidden)
        self.out = nn.Linear(hidden, 64)

    def forward(self, x_t, t):
        t = torch.as_tensor(t, device=x_t.device).reshape(-1).expand(x_t.shape[0])
        e = _time_embedding(t, self.embed).to(x_t.dtype)
        h = F.silu(self.inp(torch.cat([x_t.flatten(1), e], 1)))
        h = F.silu(self.mid(torch.cat([h, e], 1)))
        return self.out(h).view(-1, 1, 8, 8)


HIDDEN = 160
EMBED = 32


def _time_embedding(t, dim=EMBED):
    """Sinusoidal features of the step: (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def diffusion_loss(model, x0, betas):
    """Noise-prediction MSE: draw t ~ U{0..T-1} per example and noise ~ N(0, I) yourself.

    model(x_t, t) predicts the noise; returns a 0-d tensor (mean over all elements).
    """
    ab = alphas_cumprod_of(betas.to(x0.dtype))
    t = torch.randint(0, len(betas), (x0.shape[0],), device=x0.device)
    noise = torch.randn_like(x0)
    return F.mse_loss(model(q_sample(x0, t, noise, ab), t), noise)


@torch.no_grad()
def p_sample(model, x_t, t, betas):
    """One step x_t -> x_{t-1} (t a Python int): sigma_t^2 = beta_t, no noise at t = 0."""
    betas = betas.to(x_t.dtype)
    ab = alphas_cumprod_of(betas)
    tt = torch.full((x_t.shape[0],), int(t), dtype=torch.long, device=x_t.device)
    eps = model(x_t, tt)
    mean = (x_t - betas[t] / (1 - ab[t]).sqrt() * eps) / (1 - betas[t]).sqrt()
    if int(t) == 0:
        return mean
    return mean + betas[t].sqrt() * torch.randn_like(x_t)


@torch.no_grad()
def sample(model, n, betas):
    """n images (n, 1, 8, 8) in [-1, 1]: x_{T-1} ~ N(0, I), then p_sample for t = T-1 .. 0."""
    p = next(model.parameters())
    x = torch.randn(n, 1, 8, 8, dtype=p.dtype, device=p.device)
    for t in reversed(range(len(betas))):
        x = p_sample(model, x, t, betas)
    return x.clamp(-1, 1)


T = 1000
STEPS = 20000
BATCH_SIZE = 128
LR = 2e-3
