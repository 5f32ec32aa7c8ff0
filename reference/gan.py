"""Trusted reference of the GAN lab (LABS.md section 4).

A non-saturating GAN for the 8x8 `continuous` digits: an MLP generator ending in a
sigmoid (images in [0, 1]) and an MLP discriminator returning one logit per image.
Losses are written with softplus, so they are exact and finite at any logit:
-log sigmoid(x) = softplus(-x) and -log(1 - sigmoid(x)) = softplus(x). Every
function follows the dtype and device of its inputs. Only torch is imported, so
this file can also run as a notebook cell.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["LATENT_DIM", "HIDDEN", "Generator", "Discriminator", "discriminator_loss",
           "generator_loss", "gradient_penalty", "train_step"]

LATENT_DIM = 16
HIDDEN = 192
PIXELS = 64


class Generator(nn.Module):
    """G(z): (B, latent_dim) noise -> (B, 1, 8, 8) images in [0, 1]."""

    def __init__(self, latent_dim: int = LATENT_DIM, hidden: int = HIDDEN):
        super().__init__()
        self.latent_dim = latent_dim
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, PIXELS))

    def forward(self, z):
        return torch.sigmoid(self.net(z)).view(-1, 1, 8, 8)

    @torch.no_grad()
    def sample(self, n):
        w = next(self.parameters())
        return self(torch.randn(n, self.latent_dim, dtype=w.dtype, device=w.device))


class Discriminator(nn.Module):
    """D(x): (B, 1, 8, 8) images in [0, 1] -> (B,) logits of "x is real"."""

    def __init__(self, hidden: int = HIDDEN):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(PIXELS, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    def forward(self, x):
        return self.net(x).squeeze(-1)


def discriminator_loss(real_logits, fake_logits):
    """mean(-log sigmoid(real)) + mean(-log(1 - sigmoid(fake))): (B,), (B,) -> scalar."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits):
    """Non-saturating: mean(-log sigmoid(fake)): (B,) -> scalar (ln 2 at logit 0)."""
    return F.softplus(-fake_logits).mean()


def gradient_penalty(discriminator, real, fake):
    """mean over examples of (||grad_x D(x_hat)|| - 1)^2, x_hat = e real + (1 - e) fake.

    One e ~ U[0, 1] per example; the graph is kept (create_graph=True) so the penalty
    can be back-propagated into the discriminator's parameters. No factor lambda.
    """
    e = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), dtype=real.dtype,
                   device=real.device)
    x_hat = (e * real + (1 - e) * fake).detach().requires_grad_(True)
    out = discriminator(x_hat)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def train_step(G, D, opt_G, opt_D, real):
    """One discriminator update, then one generator update; returns the two losses."""
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
