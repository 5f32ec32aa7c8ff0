"""Build the example submissions ``assignments/gan/examples/<name>/gan.ipynb``.

Run from the repository root:  .venv/bin/python assignments/gan/make_examples.py

Each example is the template with its solution cells filled in. ``correct`` is a plain
solution; ``different`` is correct but makes other choices where the contract allows;
each ``bug_*`` is ``correct`` with exactly one change (see examples/README.md). The
checkpoints ``gan.pt`` are written by ``make_checkpoints.py``, which runs each
notebook's own training cell.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grader.authoring.cells import write_notebook

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_template import build_notebook  # noqa: E402

CORRECT: dict[str, str] = {
    "config": """LATENT_DIM = 16   # default noise size; you may change it
HIDDEN = 192
""",
    "generator": '''class Generator(nn.Module):
    """G(z): (B, latent_dim) -> (B, 1, 8, 8) in [0, 1] (sigmoid output)."""

    def __init__(self, latent_dim=LATENT_DIM, hidden=HIDDEN):
        super().__init__()
        self.latent_dim = latent_dim
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.LeakyReLU(0.2),
                                 nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
                                 nn.Linear(hidden, 64))

    def forward(self, z):
        return torch.sigmoid(self.net(z)).view(-1, 1, 8, 8)

    @torch.no_grad()
    def sample(self, n):
        w = next(self.parameters())
        return self(torch.randn(n, self.latent_dim, dtype=w.dtype, device=w.device))
''',
    "discriminator": '''class Discriminator(nn.Module):
    """D(x): (B, 1, 8, 8) -> (B,) logits."""

    def __init__(self, hidden=HIDDEN):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.LeakyReLU(0.2),
                                 nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
                                 nn.Linear(hidden, 1))

    def forward(self, x):
        return self.net(x).squeeze(-1)
''',
    "discriminator_loss": '''def discriminator_loss(real_logits, fake_logits):
    """softplus(-real) + softplus(fake), each averaged over the batch."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
''',
    "generator_loss": '''def generator_loss(fake_logits):
    """Non-saturating: mean softplus(-fake) = mean(-log sigmoid(fake))."""
    return F.softplus(-fake_logits).mean()
''',
    "gradient_penalty": '''def gradient_penalty(discriminator, real, fake):
    """WGAN-GP penalty at random interpolates, one e per example, graph kept."""
    e = torch.rand(real.shape[0], 1, 1, 1, dtype=real.dtype, device=real.device)
    x_hat = (e * real + (1 - e) * fake).detach().requires_grad_(True)
    grad = torch.autograd.grad(discriminator(x_hat).sum(), x_hat, create_graph=True)[0]
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
''',
    "train_step": '''def train_step(G, D, opt_G, opt_D, real):
    """One D step on real and detached fakes, then one G step through the updated D."""
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
    return {"d_loss": d_loss.item(), "g_loss": g_loss.item()}
''',
}

DIFFERENT: dict[str, str] = {
    "config": """LATENT_DIM = 10   # a different noise size
""",
    "generator": '''class Generator(nn.Module):
    """An MLP with ELU activations, widening 128 -> 256; pixels through a sigmoid."""

    def __init__(self, latent_dim=LATENT_DIM, hidden=128):
        super().__init__()
        self.latent_dim = latent_dim
        self.fc1 = nn.Linear(latent_dim, hidden)
        self.fc2 = nn.Linear(hidden, 2 * hidden)
        self.out = nn.Linear(2 * hidden, 64)

    def forward(self, z):
        h = F.elu(self.fc2(F.elu(self.fc1(z))))
        return self.out(h).sigmoid().reshape(z.shape[0], 1, 8, 8)

    def sample(self, n):
        with torch.no_grad():
            p = self.out.weight
            return self.forward(torch.randn(n, self.latent_dim, device=p.device).to(p.dtype))
''',
    "discriminator": '''class Discriminator(nn.Module):
    """An MLP critic with SiLU activations and explicit layers."""

    def __init__(self, hidden=160):
        super().__init__()
        self.fc1 = nn.Linear(64, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):
        h = F.silu(self.fc2(F.silu(self.fc1(x.reshape(x.shape[0], -1)))))
        return self.head(h)[:, 0]
''',
    "discriminator_loss": '''def discriminator_loss(real_logits, fake_logits):
    """Binary cross-entropy with logits: real labelled 1, fake labelled 0."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake
''',
    "generator_loss": '''def generator_loss(fake_logits):
    """-mean log sigmoid(fake), via F.logsigmoid."""
    return -F.logsigmoid(fake_logits).mean()
''',
    "gradient_penalty": '''def gradient_penalty(discriminator, real, fake):
    """Interpolates built with torch.lerp; the norm via torch.linalg.vector_norm."""
    eps = torch.rand(len(real), device=real.device, dtype=real.dtype)
    eps = eps.view(-1, *([1] * (real.dim() - 1)))
    x_hat = torch.lerp(fake.detach(), real.detach(), eps).requires_grad_()
    scores = discriminator(x_hat)
    (grads,) = torch.autograd.grad(scores, x_hat, grad_outputs=torch.ones_like(scores),
                                   create_graph=True, retain_graph=True)
    norms = torch.linalg.vector_norm(grads.reshape(len(real), -1), dim=1)
    return (norms - 1).pow(2).mean()
''',
    "train_step": '''def train_step(G, D, opt_G, opt_D, real):
    """D step (real and fake scored in one batch), then a G step; set_to_none zeroing."""
    n = real.size(0)
    fake = G(torch.randn(n, G.latent_dim, device=real.device, dtype=real.dtype))
    opt_D.zero_grad(set_to_none=True)
    logits = D(torch.cat([real, fake.detach()]))
    d_loss = discriminator_loss(logits[:n], logits[n:])
    d_loss.backward()
    opt_D.step()
    opt_G.zero_grad(set_to_none=True)
    g_loss = generator_loss(D(fake))
    g_loss.backward()
    opt_G.step()
    return {"d_loss": float(d_loss.detach()), "g_loss": float(g_loss.detach())}
''',
    "hyper": """EPOCHS = 600
BATCH_SIZE = 64
LR_G = 4e-4      # a faster schedule than the template's
LR_D = 4e-4
""",
}

BUGS: dict[str, dict[str, str]] = {
    # real and fake targets swapped in the discriminator loss
    "bug_labels_swapped": {"discriminator_loss": '''def discriminator_loss(real_logits, fake_logits):
    """BUG: real labelled 0 and fake labelled 1."""
    return F.softplus(real_logits).mean() + F.softplus(-fake_logits).mean()
'''},
    # the saturating generator loss: minimise log(1 - sigmoid(fake))
    "bug_saturating_g_loss": {"generator_loss": '''def generator_loss(fake_logits):
    """BUG: the saturating loss mean(log(1 - sigmoid(fake))) = -mean softplus(fake)."""
    return -F.softplus(fake_logits).mean()
'''},
    # log(sigmoid(x)) written literally: -inf / nan at large logits
    "bug_log_sigmoid_overflow": {
        "discriminator_loss": '''def discriminator_loss(real_logits, fake_logits):
    """BUG: log(sigmoid(.)) written literally."""
    real = -torch.log(torch.sigmoid(real_logits)).mean()
    fake = -torch.log(1 - torch.sigmoid(fake_logits)).mean()
    return real + fake
''',
        "generator_loss": '''def generator_loss(fake_logits):
    """BUG: log(sigmoid(.)) written literally."""
    return -torch.log(torch.sigmoid(fake_logits)).mean()
'''},
    # the penalty evaluated at the real images instead of interpolates
    "bug_gp_on_real": {"gradient_penalty": '''def gradient_penalty(discriminator, real, fake):
    """BUG: evaluated at the real images, not at interpolates."""
    x_hat = real.detach().clone().requires_grad_(True)
    grad = torch.autograd.grad(discriminator(x_hat).sum(), x_hat, create_graph=True)[0]
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
'''},
    # one norm over the whole batch instead of one per example
    "bug_gp_batch_norm": {"gradient_penalty": '''def gradient_penalty(discriminator, real, fake):
    """BUG: one gradient norm over the whole batch."""
    e = torch.rand(real.shape[0], 1, 1, 1, dtype=real.dtype, device=real.device)
    x_hat = (e * real + (1 - e) * fake).detach().requires_grad_(True)
    grad = torch.autograd.grad(discriminator(x_hat).sum(), x_hat, create_graph=True)[0]
    return (grad.norm() - 1) ** 2
'''},
    # fakes not detached in the D step; G's gradients zeroed only at the top
    "bug_fakes_not_detached": {"train_step": '''def train_step(G, D, opt_G, opt_D, real):
    """BUG: the D loss's gradient reaches G and is kept for G's step."""
    opt_G.zero_grad()
    opt_D.zero_grad()
    z = torch.randn(real.shape[0], G.latent_dim, dtype=real.dtype, device=real.device)
    fake = G(z)
    d_loss = discriminator_loss(D(real), D(fake))
    d_loss.backward(retain_graph=True)
    opt_D.step()
    g_loss = generator_loss(D(fake))
    g_loss.backward()
    opt_G.step()
    return {"d_loss": d_loss.item(), "g_loss": g_loss.item()}
'''},
    # a correct notebook trained with lr_G 200 x lr_D: the generator collapses to one mode
    "bug_mode_collapse": {"hyper": """EPOCHS = 150
BATCH_SIZE = 64
LR_G = 2e-3      # BUG (training, not code): G far faster than D collapses the generator
LR_D = 1e-5
"""},
}


def examples() -> dict[str, dict[str, str]]:
    out = {"correct": CORRECT, "different": DIFFERENT}
    for name, change in BUGS.items():
        out[name] = {**CORRECT, **change}
    return out


def main() -> int:
    for name, solution in examples().items():
        path = HERE / "examples" / name / "gan.ipynb"
        write_notebook(build_notebook(solution), path)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
