"""Reference solution of the vae lab (trusted; never sent to a student).

Generated from reference/vae.ipynb by `grader build vae`: edit the notebook, not this file.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from grader.data import digits
TRAIN = True
SEED = 0
DEVICE = "cpu"
LATENT_DIM = 8


class Encoder(nn.Module):
    """q(z | x) = N(mu, diag(exp(logvar))).

    Encoder(latent_dim=LATENT_DIM)    every constructor argument must have a default
    forward(x): x (B, 1, 8, 8) binary images as floats
        -> (mu, logvar), each (B, latent_dim); logvar is the LOG-VARIANCE (std = exp(0.5 * logvar)).
    """

    def __init__(self, latent_dim=LATENT_DIM):
        super().__init__()
        self.latent_dim = latent_dim
        hidden = 128
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent_dim))

    def forward(self, x):
        mu, logvar = self.net(x).chunk(2, dim=-1)
        return mu, logvar


class Decoder(nn.Module):
    """p(x | z): Bernoulli over the 64 pixels.

    Decoder(latent_dim=LATENT_DIM)
    forward(z): z (B, latent_dim) -> logits (B, 1, 8, 8)   (logits, NOT probabilities: no sigmoid)
    """

    def __init__(self, latent_dim=LATENT_DIM):
        super().__init__()
        self.latent_dim = latent_dim
        hidden = 128
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 64))

    def forward(self, z):
        return self.net(z).reshape(-1, 1, 8, 8)


def reparameterize(mu, logvar):
    """Draw z ~ N(mu, diag(exp(logvar))) as a differentiable function of mu and logvar.

    mu, logvar: (B, L), logvar = log-variance  ->  z: (B, L), same dtype and device as mu.
    """
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def reparameterize_moments(mu, logvar):
    """Mean and standard deviation of ``reparameterize(mu, logvar)``: (mu, exp(0.5 * logvar))."""
    return mu, torch.exp(0.5 * logvar)


def gaussian_kl(mu, logvar):
    """KL( N(mu, diag(exp(logvar))) || N(0, I) ) in nats, SUMMED over the latent dimension.

    mu, logvar: (B, L)  ->  (B,)
    """
    return 0.5 * (mu.pow(2) + torch.expm1(logvar) - logvar).sum(dim=-1)


def bernoulli_log_likelihood(x, logits):
    """log p(x | logits) in nats, SUMMED over all pixels (a log-likelihood: <= 0, not a loss).

    x: (B, 1, 8, 8) in {0, 1}, logits: (B, 1, 8, 8)  ->  (B,)
    """
    nll = F.binary_cross_entropy_with_logits(logits, x.to(logits.dtype), reduction="none")
    return -nll.flatten(start_dim=1).sum(dim=1)


def elbo(x, encoder, decoder):
    """One-sample Monte-Carlo estimate of the ELBO of each image, in nats.

    x: (B, 1, 8, 8); encoder(x) -> (mu, logvar); decoder(z) -> logits.
    Returns (B,): log p(x | z) summed over pixels minus KL summed over latents, z ~ q(z | x).
    """
    mu, logvar = encoder(x)
    z = reparameterize(mu, logvar)
    logits = decoder(z)
    return bernoulli_log_likelihood(x, logits) - gaussian_kl(mu, logvar)


class VAE(nn.Module):
    """Encoder + decoder with the prior N(0, I) over latent_dim latents."""

    def __init__(self, latent_dim=LATENT_DIM):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = Encoder(latent_dim)
        self.decoder = Decoder(latent_dim)

    def forward(self, x):
        """Per-image one-sample ELBO, (B,) nats (the grader does not call forward)."""
        return elbo(x, self.encoder, self.decoder)

    @torch.no_grad()
    def sample(self, n):
        """n images (n, 1, 8, 8), floats in [0, 1], decoded from z ~ N(0, I)."""
        p = next(self.parameters())
        z = torch.randn(n, self.latent_dim, dtype=p.dtype, device=p.device)
        return torch.sigmoid(self.decoder(z))


EPOCHS = 200
BATCH_SIZE = 128
LR = 1e-3
