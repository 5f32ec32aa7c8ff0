"""Trusted reference of the VAE lab (LABS.md section 3).

A Bernoulli VAE for the 8x8 binary digits: MLP encoder and decoder, a diagonal
Gaussian posterior q(z|x) = N(mu, exp(logvar)) and a standard normal prior.
All quantities are in nats, one value per image. Every function follows the dtype
and device of its inputs (float64 in, float64 out); nothing creates float32
tensors internally. Only torch is imported, so this file can also run as a
notebook cell.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["LATENT_DIM", "HIDDEN", "Encoder", "Decoder", "reparameterize",
           "reparameterize_moments", "gaussian_kl", "bernoulli_log_likelihood", "elbo", "VAE"]

LATENT_DIM = 8
HIDDEN = 128
PIXELS = 64


class Encoder(nn.Module):
    """q(z|x): (B,1,8,8) images -> (mu (B,L), logvar (B,L)), logvar = log-variance."""

    def __init__(self, latent_dim: int = LATENT_DIM, hidden: int = HIDDEN):
        super().__init__()
        self.latent_dim = latent_dim
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(PIXELS, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent_dim))

    def forward(self, x):
        mu, logvar = self.net(x).chunk(2, dim=-1)
        return mu, logvar


class Decoder(nn.Module):
    """p(x|z): (B,L) latents -> Bernoulli logits (B,1,8,8) (no sigmoid)."""

    def __init__(self, latent_dim: int = LATENT_DIM, hidden: int = HIDDEN):
        super().__init__()
        self.latent_dim = latent_dim
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, PIXELS))

    def forward(self, z):
        return self.net(z).reshape(-1, 1, 8, 8)


def reparameterize(mu, logvar):
    """z = mu + exp(0.5 * logvar) * eps, eps ~ N(0, I) drawn with ``randn_like``.

    The sample is a differentiable function of mu and logvar (pathwise gradient).
    """
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def reparameterize_moments(mu, logvar):
    """Mean and standard deviation of ``reparameterize(mu, logvar)``: (mu, exp(0.5*logvar))."""
    return mu, torch.exp(0.5 * logvar)


def gaussian_kl(mu, logvar):
    """KL(N(mu, exp(logvar)) || N(0, I)) in nats, summed over latents: (B,L) -> (B,).

    0.5 * sum(mu^2 + exp(logvar) - 1 - logvar); ``expm1`` keeps exp(logvar) - 1
    accurate for logvar near 0.
    """
    return 0.5 * (mu.pow(2) + torch.expm1(logvar) - logvar).sum(dim=-1)


def bernoulli_log_likelihood(x, logits):
    """log p(x | logits) in nats, summed over all pixels: (B,1,8,8) x2 -> (B,).

    Computed as -BCE-with-logits (x*l - softplus(l)), finite and exact at logits of +-100.
    """
    nll = F.binary_cross_entropy_with_logits(logits, x.to(logits.dtype), reduction="none")
    return -nll.flatten(start_dim=1).sum(dim=1)


def elbo(x, encoder, decoder):
    """One-sample ELBO estimate per image in nats: log p(x|z) - KL(q(z|x) || p(z)), (B,)."""
    mu, logvar = encoder(x)
    z = reparameterize(mu, logvar)
    logits = decoder(z)
    return bernoulli_log_likelihood(x, logits) - gaussian_kl(mu, logvar)


class VAE(nn.Module):
    """Encoder + decoder with a N(0, I) prior over ``latent_dim`` latents."""

    def __init__(self, latent_dim: int = LATENT_DIM, hidden: int = HIDDEN):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = Encoder(latent_dim, hidden)
        self.decoder = Decoder(latent_dim, hidden)

    def forward(self, x):
        """The one-sample ELBO of each image, (B,) nats."""
        return elbo(x, self.encoder, self.decoder)

    @torch.no_grad()
    def sample(self, n: int):
        """n images (n,1,8,8) in [0,1]: the Bernoulli means sigmoid(decoder(z)), z ~ N(0, I).

        These are pixel probabilities, not binary draws.
        """
        p = next(self.parameters())
        z = torch.randn(n, self.latent_dim, dtype=p.dtype, device=p.device)
        return torch.sigmoid(self.decoder(z))
