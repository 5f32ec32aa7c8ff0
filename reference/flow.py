"""Reference solution of the flow lab (trusted; never sent to a student).

Generated from reference/flow.ipynb by `grader build flow`: edit the notebook, not this file.
"""

import math
import torch
import torch.nn as nn
import torch.nn.functional as F
from grader.data import digits, moons
TRAIN = True
SEED = 0
DEVICE = "cpu"


class AffineCoupling(nn.Module):
    """AffineCoupling(dim, mask, hidden=64); mask: a (dim,) tensor of 0s and 1s (1 = pass through).

    forward(x (B, D)) -> (y (B, D), logdet (B,));  inverse(y) -> (x, logdet (B,)).
    """

    def __init__(self, dim, mask, hidden=64):
        super().__init__()
        self.register_buffer("mask", torch.as_tensor(mask, dtype=torch.float32).reshape(dim))
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(),
                                 nn.Linear(hidden, hidden), nn.Tanh(),
                                 nn.Linear(hidden, 2 * dim))
        nn.init.zeros_(self.net[-1].weight)   # starts as the identity
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x):
        keep = self.mask.bool()
        raw_s, t = self.net(x * self.mask).chunk(2, dim=-1)
        s = 2.0 * torch.tanh(raw_s / 2.0) * (1.0 - self.mask)   # soft clamp: |s| < 2
        y = torch.where(keep, x, x * torch.exp(s) + t)
        return y, s.sum(-1)

    def inverse(self, y):
        keep = self.mask.bool()
        raw_s, t = self.net(y * self.mask).chunk(2, dim=-1)
        s = 2.0 * torch.tanh(raw_s / 2.0) * (1.0 - self.mask)
        x = torch.where(keep, y, (y - t) * torch.exp(-s))
        return x, -s.sum(-1)


class RealNVP(nn.Module):
    """RealNVP(dim): couplings with alternating masks and a standard normal base.

    forward(x) -> (z, logdet (B,));  inverse(z) -> x;  log_prob(x) -> (B,);  sample(n) -> (n, dim).
    """

    def __init__(self, dim):
        super().__init__()
        self.dim = dim
        parity = (torch.arange(dim) % 2).float()
        masks = [parity if i % 2 == 0 else 1.0 - parity for i in range(6)]
        self.couplings = nn.ModuleList(AffineCoupling(dim, m, hidden=40) for m in masks)

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
        log_base = -0.5 * (z * z).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)
        return log_base + logdet

    @torch.no_grad()
    def sample(self, n):
        w = next(self.parameters())
        return self.inverse(torch.randn(n, self.dim, dtype=w.dtype, device=w.device))


EPOCHS_MOONS = 80
EPOCHS_DIGITS = 40
BATCH_SIZE = 128
LR = 2e-3


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


def fit(flow, data, epochs):
    print(f"untrained: nll {-flow.log_prob(data[:256]).mean().item():.3f}")
    opt = torch.optim.Adam(flow.parameters(), lr=LR)
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(len(data), device=DEVICE)
        for i in range(0, len(data), BATCH_SIZE):
            loss = -flow.log_prob(data[perm[i:i + BATCH_SIZE]]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        if epoch == 1 or epoch % 20 == 0:
            print(f"epoch {epoch:3d}   nll {loss.item():.3f}")
    return flow.eval().to("cpu")
