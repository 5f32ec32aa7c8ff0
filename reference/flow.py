"""Trusted reference of the normalising-flow lab (LABS.md section 5).

A RealNVP: a stack of affine couplings with alternating binary masks and a standard
normal base. A coupling leaves the dimensions whose mask is 1 unchanged (bit-identical)
and maps the others by y = x * exp(s) + t, where (s, t) are computed from the unchanged
dimensions; its log|det J| is the sum of s over the transformed dimensions. The log-scale
is soft-clamped (s = 2 tanh(raw / 2)) so the flow stays invertible in floating point for
inputs up to +-10 with any parameters. Every function follows the dtype and device of
its inputs. Only torch is imported, so this file can also run as a notebook cell.
"""

import math

import torch
import torch.nn as nn

__all__ = ["HIDDEN", "N_COUPLINGS", "AffineCoupling", "RealNVP", "standard_normal_log_prob",
           "alternating_masks", "train_flow"]

HIDDEN = 40
N_COUPLINGS = 6
CLAMP = 2.0


def standard_normal_log_prob(z):
    """log N(z; 0, I) summed over the last dimension: (B, D) -> (B,)."""
    return -0.5 * (z * z).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)


def alternating_masks(dim, n):
    """n masks (dim,) of 0/1 floats: parity of the index, flipped at every coupling."""
    base = (torch.arange(dim) % 2).float()
    return [base if i % 2 == 0 else 1.0 - base for i in range(n)]


class AffineCoupling(nn.Module):
    """y = x where mask = 1; y = x * exp(s(x_m)) + t(x_m) elsewhere, with x_m = x * mask.

    AffineCoupling(dim, mask, hidden=64): mask is a (dim,) tensor of 0s and 1s.
    forward(x (B, D)) -> (y, logdet (B,)); inverse(y) -> (x, logdet (B,)).
    """

    def __init__(self, dim, mask, hidden=64):
        super().__init__()
        self.register_buffer("mask", torch.as_tensor(mask, dtype=torch.float32).reshape(dim))
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(),
                                 nn.Linear(hidden, hidden), nn.Tanh(),
                                 nn.Linear(hidden, 2 * dim))
        nn.init.zeros_(self.net[-1].weight)   # starts as the identity
        nn.init.zeros_(self.net[-1].bias)

    def _scale_shift(self, x_masked):
        raw_s, t = self.net(x_masked).chunk(2, dim=-1)
        free = 1.0 - self.mask
        s = CLAMP * torch.tanh(raw_s / CLAMP) * free
        return s, t * free

    def forward(self, x):
        keep = self.mask.bool()
        s, t = self._scale_shift(x * self.mask)
        y = torch.where(keep, x, x * torch.exp(s) + t)
        return y, s.sum(-1)

    def inverse(self, y):
        keep = self.mask.bool()
        s, t = self._scale_shift(y * self.mask)
        x = torch.where(keep, y, (y - t) * torch.exp(-s))
        return x, -s.sum(-1)


class RealNVP(nn.Module):
    """A stack of couplings with alternating masks and a standard normal base.

    RealNVP(dim): forward(x) -> (z, logdet); inverse(z) -> x; log_prob(x) -> (B,);
    sample(n) -> (n, dim) in data space.
    """

    def __init__(self, dim, n_couplings=N_COUPLINGS, hidden=HIDDEN):
        super().__init__()
        self.dim = dim
        self.couplings = nn.ModuleList(
            AffineCoupling(dim, m, hidden) for m in alternating_masks(dim, n_couplings))

    def forward(self, x):
        logdet = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for coupling in self.couplings:
            x, ld = coupling(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, z):
        for coupling in reversed(self.couplings):
            z, _ = coupling.inverse(z)
        return z

    def log_prob(self, x):
        z, logdet = self(x)
        return standard_normal_log_prob(z) + logdet

    @torch.no_grad()
    def sample(self, n):
        w = next(self.parameters())
        return self.inverse(torch.randn(n, self.dim, dtype=w.dtype, device=w.device))


def train_flow(flow, data, epochs, batch_size=128, lr=2e-3, seed=0):
    """Maximum likelihood with Adam; returns the final epoch's mean NLL (nats)."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(flow.parameters(), lr=lr)
    flow.train()
    total = float("nan")
    for _ in range(epochs):
        perm = torch.randperm(len(data))
        total, count = 0.0, 0
        for i in range(0, len(data), batch_size):
            x = data[perm[i:i + batch_size]]
            loss = -flow.log_prob(x).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, count = total + loss.item() * len(x), count + len(x)
        total /= count
    return total
