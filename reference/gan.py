"""Reference solution of the gan lab (trusted; never sent to a student).

Generated from reference/gan.ipynb by `grader build gan`: edit the notebook, not this file.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from grader.data import digits
TRAIN = True
SEED = 0
DEVICE = "cpu"
LATENT_DIM = 16


class Generator(nn.Module):
    """G(z): (B, latent_dim) noise -> (B, 1, 8, 8) images in [0, 1].

    Generator(latent_dim=LATENT_DIM)   every constructor argument must have a default
    attribute latent_dim; sample(n) -> (n, 1, 8, 8) images in [0, 1] from z ~ N(0, I).
    """

    def __init__(self, latent_dim=LATENT_DIM):
        super().__init__()
        self.latent_dim = latent_dim
        hidden = 192
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 64))

    def forward(self, z):
        return torch.sigmoid(self.net(z)).view(-1, 1, 8, 8)

    @torch.no_grad()
    def sample(self, n):
        w = next(self.parameters())
        return self(torch.randn(n, self.latent_dim, dtype=w.dtype, device=w.device))


class Discriminator(nn.Module):
    """D(x): (B, 1, 8, 8) images in [0, 1] -> (B,) logits (no sigmoid)."""

    def __init__(self):
        super().__init__()
        hidden = 192
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(64, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    def forward(self, x):
        return self.net(x).squeeze(-1)


def discriminator_loss(real_logits, fake_logits):
    """mean(-log sigmoid(real_logits)) + mean(-log(1 - sigmoid(fake_logits))).

    real_logits, fake_logits: (B,)  ->  0-d tensor
    """
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits):
    """Non-saturating generator loss mean(-log sigmoid(fake_logits)): (B,) -> 0-d tensor."""
    return F.softplus(-fake_logits).mean()


def gradient_penalty(discriminator, real, fake):
    """mean over examples of (||grad_x D(x_hat)||_2 - 1)^2, x_hat = e*real + (1-e)*fake,
    one e ~ U[0, 1] per example; keeps the graph. No factor lambda (the caller multiplies).

    real, fake: (B, 1, 8, 8)  ->  0-d tensor
    """
    e = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), dtype=real.dtype,
                   device=real.device)
    x_hat = (e * real + (1 - e) * fake).detach().requires_grad_(True)
    out = discriminator(x_hat)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def train_step(G, D, opt_G, opt_D, real):
    """One discriminator update, then one generator update (non-saturating loss).

    Draw B = len(real) noise vectors of size G.latent_dim (dtype and device of real).
    Returns {"d_loss": float, "g_loss": float}: the D loss before D's step and the G loss.
    """
    z = torch.randn(real.shape[0], G.latent_dim, dtype=real.dtype, device=real.device)
    fake = G(z)
    d_loss = discriminator_loss(D(real), D(fake.detach()))
    opt_D.zero_grad()
    d_loss.backward()
    opt_D.step()
    g_loss = generator_loss(D(fake))
    opt_G.zero_grad()
    g_loss.backward()
    opt_G.step()
    return {"d_loss": d_loss.detach().item(), "g_loss": g_loss.detach().item()}


EPOCHS = 600
BATCH_SIZE = 64
LR_G = 2e-4
LR_D = 2e-4
