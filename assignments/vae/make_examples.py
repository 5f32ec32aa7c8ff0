"""Build the example submissions ``assignments/vae/examples/<name>/vae.ipynb``.

Run from the repository root:  .venv/bin/python assignments/vae/make_examples.py

Each example is the template of ``make_template.py`` with its solution cells filled
in; only the keyed cells differ, so structure, parameters cell and metadata are the
template's. ``correct`` is a plain solution; ``different`` is correct but makes other
choices everywhere the contract allows; each ``bug_*`` is ``correct`` with exactly one
function changed (see examples/README.md). The checkpoints ``vae.pt`` are written by
``make_checkpoints.py``, which runs each notebook's own training cell.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grader.authoring.cells import write_notebook

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_template import build_notebook  # noqa: E402

CORRECT: dict[str, str] = {
    "config": """LATENT_DIM = 8    # default latent size; you may change it
HIDDEN = 128
""",
    "encoder": '''class Encoder(nn.Module):
    """q(z | x) = N(mu, diag(exp(logvar))): (B, 1, 8, 8) -> (mu, logvar), each (B, latent_dim)."""

    def __init__(self, latent_dim=LATENT_DIM, hidden=HIDDEN):
        super().__init__()
        self.latent_dim = latent_dim
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(),
                                  nn.Linear(hidden, hidden), nn.ReLU())
        self.mu = nn.Linear(hidden, latent_dim)
        self.logvar = nn.Linear(hidden, latent_dim)

    def forward(self, x):
        h = self.body(x)
        return self.mu(h), self.logvar(h)
''',
    "decoder": '''class Decoder(nn.Module):
    """p(x | z): (B, latent_dim) -> Bernoulli logits (B, 1, 8, 8)."""

    def __init__(self, latent_dim=LATENT_DIM, hidden=HIDDEN):
        super().__init__()
        self.latent_dim = latent_dim
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 64))

    def forward(self, z):
        return self.net(z).view(-1, 1, 8, 8)
''',
    "reparameterize": '''def reparameterize(mu, logvar):
    """z = mu + std * eps, std = exp(0.5 * logvar), eps ~ N(0, I): (B, L) -> (B, L)."""
    std = torch.exp(0.5 * logvar)
    eps = torch.randn_like(std)
    return mu + std * eps
''',
    "gaussian_kl": '''def gaussian_kl(mu, logvar):
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over latents: (B, L) -> (B,) nats."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=-1)
''',
    "bernoulli_log_likelihood": '''def bernoulli_log_likelihood(x, logits):
    """sum over pixels of x * l - softplus(l) = log p(x | l): (B, 1, 8, 8) x2 -> (B,) nats."""
    return (x * logits - F.softplus(logits)).flatten(start_dim=1).sum(dim=1)
''',
    "elbo": '''def elbo(x, encoder, decoder):
    """One-sample ELBO per image in nats: (B, 1, 8, 8) -> (B,)."""
    mu, logvar = encoder(x)
    z = reparameterize(mu, logvar)
    logits = decoder(z)
    return bernoulli_log_likelihood(x, logits) - gaussian_kl(mu, logvar)
''',
    "vae": '''class VAE(nn.Module):
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
        """n Bernoulli-mean images sigmoid(decoder(z)), z ~ N(0, I): (n, 1, 8, 8) in [0, 1]."""
        w = next(self.parameters())
        z = torch.randn(n, self.latent_dim, dtype=w.dtype, device=w.device)
        return torch.sigmoid(self.decoder(z))
''',
}

DIFFERENT: dict[str, str] = {
    "config": """LATENT_DIM = 12   # a different latent size
""",
    "encoder": '''class Encoder(nn.Module):
    """Small convolutional encoder. It predicts log std and returns logvar = 2 * log std."""

    def __init__(self, latent_dim=LATENT_DIM, channels=16, hidden=128):
        super().__init__()
        self.latent_dim = latent_dim
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.SiLU(),                  # 8x8
            nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.SiLU(),  # 4x4
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(channels * 16, hidden), nn.SiLU(),
                                  nn.Linear(hidden, 2 * latent_dim))

    def forward(self, x):
        mu, log_std = self.head(self.conv(x)).chunk(2, dim=1)
        return mu, 2.0 * log_std
''',
    "decoder": '''class Decoder(nn.Module):
    """MLP decoder with ELU activations and one hidden layer of 192 units, then logits."""

    def __init__(self, latent_dim=LATENT_DIM, hidden=192):
        super().__init__()
        self.latent_dim = latent_dim
        self.fc1 = nn.Linear(latent_dim, hidden)
        self.fc2 = nn.Linear(hidden, 64)

    def forward(self, z):
        return self.fc2(F.elu(self.fc1(z))).reshape(z.shape[0], 1, 8, 8)
''',
    "reparameterize": '''def reparameterize(mu, logvar):
    """Pathwise sample from N(mu, exp(logvar)) via torch.distributions' rsample."""
    return torch.distributions.Normal(mu, torch.exp(0.5 * logvar)).rsample()
''',
    "gaussian_kl": '''def gaussian_kl(mu, logvar):
    """Kingma & Welling's form: -0.5 * sum(1 + logvar - mu^2 - exp(logvar)) per row."""
    return -0.5 * torch.sum(1 + logvar - mu ** 2 - torch.exp(logvar), dim=1)
''',
    "bernoulli_log_likelihood": '''def bernoulli_log_likelihood(x, logits):
    """Minus the per-pixel binary cross-entropy (computed from logits), summed over pixels."""
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    return -bce.sum(dim=(1, 2, 3))
''',
    "elbo": '''def elbo(x, encoder, decoder):
    """Single-sample ELBO in nats, one value per image."""
    mu, logvar = encoder(x)
    recon = bernoulli_log_likelihood(x, decoder(reparameterize(mu, logvar)))
    return recon - gaussian_kl(mu, logvar)
''',
    "vae": '''class VAE(nn.Module):
    """VAE whose forward returns (logits, mu, logvar); sample() returns binary draws."""

    def __init__(self, latent_dim=LATENT_DIM):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = Encoder(latent_dim)
        self.decoder = Decoder(latent_dim)

    def forward(self, x):
        mu, logvar = self.encoder(x)
        return self.decoder(reparameterize(mu, logvar)), mu, logvar

    @torch.no_grad()
    def sample(self, n):
        """n binary images (0.0 or 1.0) drawn from p(x | z), z ~ N(0, I): (n, 1, 8, 8)."""
        ref = self.decoder.fc1.weight
        z = torch.randn(n, self.latent_dim, dtype=ref.dtype, device=ref.device)
        return torch.bernoulli(torch.sigmoid(self.decoder(z)))
''',
}

# Each bug: (the one solution cell it replaces, its source, what the bug is).
BUGS: dict[str, tuple[str, str, str]] = {
    "bug_kl_sign": ("gaussian_kl", '''def gaussian_kl(mu, logvar):
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over latents: (B, L) -> (B,) nats."""
    return 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=-1)
''', "gaussian_kl returns -KL: Kingma's form without its leading minus sign"),
    "bug_std_exp_logvar": ("reparameterize", '''def reparameterize(mu, logvar):
    """z = mu + std * eps, eps ~ N(0, I): (B, L) -> (B, L)."""
    std = torch.exp(logvar)
    eps = torch.randn_like(std)
    return mu + std * eps
''', "reparameterize uses std = exp(logvar) instead of exp(0.5 * logvar)"),
    "bug_detached_sample": ("reparameterize", '''def reparameterize(mu, logvar):
    """z ~ N(mu, std^2), std = exp(0.5 * logvar): (B, L) -> (B, L)."""
    std = torch.exp(0.5 * logvar)
    return torch.normal(mu, std)
''', "reparameterize draws z = torch.normal(mu, std): right distribution, zero gradient"),
    "bug_log_sigmoid": ("bernoulli_log_likelihood", '''def bernoulli_log_likelihood(x, logits):
    """sum over pixels of x log p + (1 - x) log(1 - p), p = sigmoid(l): -> (B,) nats."""
    p = torch.sigmoid(logits)
    return (x * torch.log(p) + (1 - x) * torch.log(1 - p)).flatten(start_dim=1).sum(dim=1)
''', "bernoulli_log_likelihood takes log(sigmoid(l)) literally: nan/-inf at logits of +-100"),
    "bug_log_sigmoid_eps": ("bernoulli_log_likelihood", '''def bernoulli_log_likelihood(x, logits):
    """sum over pixels of x log p + (1 - x) log(1 - p), p = sigmoid(l), guarded by eps: -> (B,)."""
    p = torch.sigmoid(logits)
    eps = 1e-7
    return (x * torch.log(p + eps) + (1 - x) * torch.log(1 - p + eps)).flatten(1).sum(dim=1)
''', "bernoulli_log_likelihood adds eps = 1e-7 inside the logs: finite, but wrong by up to "
        "~84 nats per pixel at logits of +-100 (and ~1e-7 relative elsewhere)"),
    "bug_elbo_pixel_mean": ("elbo", '''def elbo(x, encoder, decoder):
    """One-sample ELBO per image in nats: (B, 1, 8, 8) -> (B,)."""
    mu, logvar = encoder(x)
    z = reparameterize(mu, logvar)
    logits = decoder(z)
    recon = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").mean(dim=(1, 2, 3))
    return recon - gaussian_kl(mu, logvar)
''', "elbo averages the reconstruction log-likelihood over the 64 pixels instead of summing"),
}

EXAMPLES: dict[str, dict[str, str]] = {
    "correct": CORRECT,
    "different": DIFFERENT,
    **{name: {**CORRECT, key: source} for name, (key, source, _) in BUGS.items()},
}


def main() -> int:
    for name, solution in EXAMPLES.items():
        path = HERE / "examples" / name / "vae.ipynb"
        write_notebook(build_notebook(solution), path)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
