"""Build the example submissions ``assignments/diffusion/examples/<name>/diffusion.ipynb``.

Run from the repository root:  .venv/bin/python assignments/diffusion/make_examples.py

Each example is the template with its solution cells filled in. ``correct`` is a plain
solution; ``different`` is correct but makes other choices where the contract allows;
each ``bug_*`` is ``correct`` with exactly one change (see examples/README.md). The
checkpoints ``ddpm.pt`` are written by ``make_checkpoints.py``, which runs each
notebook's own training cell.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grader.authoring.cells import write_notebook

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_template import build_notebook  # noqa: E402

SCHEDULE = '''def linear_beta_schedule(T, beta_start=1e-4, beta_end=0.02):
    """betas (T,): evenly spaced from beta_start to beta_end (float32)."""
    return torch.linspace(beta_start, beta_end, T)


def alpha_bars(betas):
    """alpha_bar_t = prod_{s <= t} (1 - beta_s)."""
    return torch.cumprod(1 - betas, dim=0)


def gather(values, t, like):
    """values[t] shaped (B, 1, ..., 1) in like's dtype."""
    return values.to(like)[t.long()].reshape(-1, *([1] * (like.dim() - 1)))
'''

CORRECT: dict[str, str] = {
    "schedule": SCHEDULE,
    "q_sample": '''def q_sample(x0, t, noise, alphas_cumprod):
    """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise."""
    ab = gather(alphas_cumprod, t, x0)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise
''',
    "posterior": '''def q_posterior_mean_variance(x0, x_t, t, betas):
    """Mean and variance (B, 1, 1, 1) of q(x_{t-1} | x_t, x0)."""
    betas = betas.to(x0)
    ab = alpha_bars(betas)
    ab_prev = torch.cat([torch.ones_like(ab[:1]), ab[:-1]])
    b, a, abar, abar_prev = (gather(v, t, x0) for v in (betas, 1 - betas, ab, ab_prev))
    mean = abar_prev.sqrt() * b / (1 - abar) * x0 + a.sqrt() * (1 - abar_prev) / (1 - abar) * x_t
    variance = b * (1 - abar_prev) / (1 - abar)
    return mean, variance
''',
    "denoiser": '''def time_embedding(t, dim=32):
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class Denoiser(nn.Module):
    """MLP on [x_t, emb(t)] with the embedding fed again to the second layer."""

    def __init__(self, hidden=160, embed=32):
        super().__init__()
        self.embed = embed
        self.inp = nn.Linear(64 + embed, hidden)
        self.mid = nn.Linear(hidden + embed, hidden)
        self.out = nn.Linear(hidden, 64)

    def forward(self, x_t, t):
        e = time_embedding(t.reshape(-1), self.embed).to(x_t.dtype)
        h = F.silu(self.inp(torch.cat([x_t.flatten(1), e], 1)))
        h = F.silu(self.mid(torch.cat([h, e], 1)))
        return self.out(h).view(-1, 1, 8, 8)
''',
    "loss": '''def diffusion_loss(model, x0, betas):
    """MSE between the drawn noise and the model's prediction."""
    ab = alpha_bars(betas.to(x0))
    t = torch.randint(0, len(betas), (x0.shape[0],), device=x0.device)
    noise = torch.randn_like(x0)
    return F.mse_loss(model(q_sample(x0, t, noise, ab), t), noise)
''',
    "p_sample": '''@torch.no_grad()
def p_sample(model, x_t, t, betas):
    """x_{t-1} = (x_t - beta_t / sqrt(1 - ab_t) eps) / sqrt(alpha_t) + sqrt(beta_t) z."""
    betas = betas.to(x_t)
    ab = alpha_bars(betas)
    eps = model(x_t, torch.full((x_t.shape[0],), t, dtype=torch.long, device=x_t.device))
    mean = (x_t - betas[t] / (1 - ab[t]).sqrt() * eps) / (1 - betas[t]).sqrt()
    if t == 0:
        return mean
    return mean + betas[t].sqrt() * torch.randn_like(x_t)
''',
    "sample": '''@torch.no_grad()
def sample(model, n, betas):
    """T ancestral steps from pure noise; clamped to [-1, 1]."""
    p = next(model.parameters())
    x = torch.randn(n, 1, 8, 8, dtype=p.dtype, device=p.device)
    for t in reversed(range(len(betas))):
        x = p_sample(model, x, t, betas)
    return x.clamp(-1, 1)
''',
}

DIFFERENT: dict[str, str] = {
    "schedule": '''def linear_beta_schedule(T, beta_start=1e-4, beta_end=0.02):
    """Written as beta_start + (beta_end - beta_start) * i / (T - 1)."""
    i = torch.arange(T, dtype=torch.float64)
    return (beta_start + (beta_end - beta_start) * i / max(T - 1, 1)).float()
''',
    "q_sample": '''def q_sample(x0, t, noise, alphas_cumprod):
    """gather-based, in x0's dtype."""
    ab = alphas_cumprod.to(x0.dtype).gather(0, t.long()).view(-1, *([1] * (x0.dim() - 1)))
    return torch.sqrt(ab) * x0 + torch.sqrt(1.0 - ab) * noise
''',
    "posterior": '''def q_posterior_mean_variance(x0, x_t, t, betas):
    """Coefficients from log-space cumulative sums; variance expanded to x0's shape."""
    betas = betas.to(x0.dtype)
    log_ab = torch.cumsum(torch.log1p(-betas), 0)
    shape = (-1,) + (1,) * (x0.dim() - 1)
    abar = log_ab[t].exp().view(shape)
    abar_prev = torch.where(t > 0, log_ab[(t - 1).clamp_min(0)].exp(),
                            torch.ones_like(log_ab[t])).view(shape)
    beta = betas[t].view(shape)
    coef0 = beta * abar_prev.sqrt() / (1.0 - abar)
    coeft = (1.0 - abar_prev) * (1.0 - beta).sqrt() / (1.0 - abar)
    var = (beta * (1.0 - abar_prev) / (1.0 - abar)).expand_as(x0)
    return coef0 * x0 + coeft * x_t, var
''',
    "denoiser": '''class Denoiser(nn.Module):
    """A learned time embedding and a residual MLP with GELU."""

    def __init__(self, steps=1000, width=128, emb=24):
        super().__init__()
        self.temb = nn.Embedding(steps, emb)
        self.fc_in = nn.Linear(64 + emb, width)
        self.fc_h = nn.Linear(width, width)
        self.fc_t = nn.Linear(emb, width)
        self.fc_out = nn.Linear(width, 64)

    def forward(self, x_t, t):
        e = self.temb(t.long().reshape(-1)).to(x_t.dtype)
        h = F.gelu(self.fc_in(torch.cat([x_t.reshape(x_t.shape[0], 64), e], dim=1)))
        h = h + F.gelu(self.fc_h(h) + self.fc_t(e))
        return self.fc_out(h).reshape(x_t.shape)
''',
    "loss": '''def diffusion_loss(model, x0, betas):
    """Hand-written squared error, alphas_cumprod computed in float64."""
    alphas_cumprod = torch.cumprod(1.0 - betas.double(), 0).to(x0.dtype)
    t = torch.randint(len(betas), size=(len(x0),), device=x0.device)
    eps = torch.randn(x0.shape, dtype=x0.dtype, device=x0.device)
    x_t = q_sample(x0, t, eps, alphas_cumprod)
    return ((model(x_t, t) - eps) ** 2).mean()
''',
    "p_sample": '''@torch.no_grad()
def p_sample(model, x_t, t, betas):
    """Through x0_hat (clipped to [-1, 1]) and the posterior mean; sigma_t^2 = beta_t."""
    T = len(betas)
    tt = torch.full((x_t.shape[0],), t, dtype=torch.long, device=x_t.device)
    ab = torch.cumprod(1.0 - betas.double(), 0)[t].item()
    eps = model(x_t, tt)
    x0_hat = ((x_t - math.sqrt(1 - ab) * eps) / math.sqrt(ab)).clamp(-1, 1)
    mean, _ = q_posterior_mean_variance(x0_hat, x_t, tt, betas)
    noise = torch.randn_like(x_t) if t > 0 else torch.zeros_like(x_t)
    return mean + float(betas[t]) ** 0.5 * noise
''',
    "sample": '''def sample(model, n, betas):
    """Loop written with a while; no clamp needed when x0_hat is clipped."""
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        x = torch.randn(n, 1, 8, 8).to(dtype)
        t = len(betas) - 1
        while t >= 0:
            x = p_sample(model, x, t, betas)
            t -= 1
    return x.clamp(-1.0, 1.0)
''',
    "hyper": """T = 1000
STEPS = 20000
BATCH_SIZE = 96
LR = 1.5e-3
""",
}

BUGS: dict[str, dict[str, str]] = {
    # alpha_bar_{t-1} where alpha_bar_t belongs (an exclusive cumulative product)
    "bug_alphas_cumprod_off_by_one": {
        "schedule": SCHEDULE.replace(
            '''    return torch.cumprod(1 - betas, dim=0)''',
            '''    ab = torch.cumprod(1 - betas, dim=0)
    return torch.cat([torch.ones_like(ab[:1]), ab[:-1]])'''),
    },
    # q_sample scales x0 by sqrt(alpha_t) (recovered from the products) instead of sqrt(alpha_bar_t)
    "bug_sqrt_alpha_not_bar": {
        "q_sample": '''def q_sample(x0, t, noise, alphas_cumprod):
    """x_t = sqrt(alpha_t) x0 + sqrt(1 - alpha_bar_t) noise  (the bug: alpha_t, not alpha_bar_t)."""
    alphas = torch.cat([alphas_cumprod[:1], alphas_cumprod[1:] / alphas_cumprod[:-1]])
    a = gather(alphas, t, x0)
    ab = gather(alphas_cumprod, t, x0)
    return a.sqrt() * x0 + (1 - ab).sqrt() * noise
''',
    },
    # the posterior variance is beta_t, not beta-tilde_t
    "bug_posterior_variance": {
        "posterior": CORRECT["posterior"].replace(
            "    variance = b * (1 - abar_prev) / (1 - abar)\n", "    variance = b\n"),
    },
    # p_sample adds noise at the last step too
    "bug_noise_at_t0": {
        "p_sample": CORRECT["p_sample"].replace(
            "    if t == 0:\n        return mean\n", ""),
    },
    # sample maps its output to [0, 1] itself
    "bug_samples_01": {
        "sample": CORRECT["sample"].replace("    return x.clamp(-1, 1)\n",
                                            "    return (x.clamp(-1, 1) + 1) / 2\n"),
    },
}


def main() -> int:
    examples = {"correct": CORRECT, "different": DIFFERENT,
                **{name: {**CORRECT, **cells} for name, cells in BUGS.items()}}
    for name, cells in examples.items():
        for key, source in cells.items():
            if name.startswith("bug_") and key in BUGS[name] and source == CORRECT.get(key):
                raise ValueError(f"{name}: the patch of {key} changed nothing")
        path = HERE / "examples" / name / "diffusion.ipynb"
        write_notebook(build_notebook(cells), path)
        print(f"wrote {path.relative_to(HERE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
