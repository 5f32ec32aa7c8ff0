"""Build the example submissions ``assignments/flow/examples/<name>/flow.ipynb``.

Run from the repository root:  .venv/bin/python assignments/flow/make_examples.py

Each example is the template with its solution cells filled in. ``correct`` is a plain
solution; ``different`` is correct but makes other choices where the contract allows;
each ``bug_*`` is ``correct`` with exactly one change (see examples/README.md). The
checkpoints are written by ``make_checkpoints.py``, which runs each notebook's own
training cell.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grader.authoring.cells import write_notebook

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_template import build_notebook  # noqa: E402

COUPLING = '''class AffineCoupling(nn.Module):
    """y = x where mask = 1, x * exp(s) + t elsewhere; s, t from the masked input."""

    def __init__(self, dim, mask, hidden=64):
        super().__init__()
        self.register_buffer("mask", torch.as_tensor(mask, dtype=torch.float32).reshape(dim))
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(),
                                 nn.Linear(hidden, hidden), nn.Tanh(),
                                 nn.Linear(hidden, 2 * dim))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _scale_shift(self, x_masked):
        raw_s, t = self.net(x_masked).chunk(2, dim=-1)
        free = 1.0 - self.mask
        return 2.0 * torch.tanh(raw_s / 2.0) * free, t * free

    def forward(self, x):
        s, t = self._scale_shift(x * self.mask)
        y = torch.where(self.mask.bool(), x, x * torch.exp(s) + t)
        return y, s.sum(-1)

    def inverse(self, y):
        s, t = self._scale_shift(y * self.mask)
        x = torch.where(self.mask.bool(), y, (y - t) * torch.exp(-s))
        return x, -s.sum(-1)
'''

REALNVP = '''class RealNVP(nn.Module):
    """Six couplings with alternating parity masks; standard normal base."""

    def __init__(self, dim, n_couplings=6, hidden=40):
        super().__init__()
        self.dim = dim
        parity = (torch.arange(dim) % 2).float()
        masks = [parity if i % 2 == 0 else 1.0 - parity for i in range(n_couplings)]
        self.couplings = nn.ModuleList(AffineCoupling(dim, m, hidden) for m in masks)

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
        log_base = -0.5 * (z ** 2).sum(-1) - 0.5 * self.dim * math.log(2 * math.pi)
        return log_base + logdet

    @torch.no_grad()
    def sample(self, n):
        w = next(self.parameters())
        return self.inverse(torch.randn(n, self.dim, dtype=w.dtype, device=w.device))
'''

CORRECT: dict[str, str] = {"coupling": COUPLING, "realnvp": REALNVP}

DIFFERENT: dict[str, str] = {
    "coupling": '''class AffineCoupling(nn.Module):
    """Separate s and t networks (ReLU), s = scale * tanh(.), masks kept as a bool buffer."""

    def __init__(self, dim, mask, hidden=64):
        super().__init__()
        self.register_buffer("keep", torch.as_tensor(mask).reshape(dim) > 0.5)
        self.s_net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        self.t_net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        self.scale = nn.Parameter(torch.zeros(dim))
        nn.init.zeros_(self.t_net[-1].weight)
        nn.init.zeros_(self.t_net[-1].bias)

    def _st(self, v):
        h = torch.where(self.keep, v, torch.zeros_like(v))
        s = self.scale.to(v.dtype) * torch.tanh(self.s_net(h))
        s = s.clamp(-3.0, 3.0)
        s = torch.where(self.keep, torch.zeros_like(s), s)
        t = torch.where(self.keep, torch.zeros_like(v), self.t_net(h))
        return s, t

    def forward(self, x):
        s, t = self._st(x)
        out = x.clone()
        out[:, ~self.keep] = (x * s.exp() + t)[:, ~self.keep]
        return out, torch.sum(s, dim=1)

    def inverse(self, y):
        s, t = self._st(y)
        out = y.clone()
        out[:, ~self.keep] = ((y - t) / s.exp())[:, ~self.keep]
        return out, -torch.sum(s, dim=1)
''',
    "realnvp": '''class RealNVP(nn.Module):
    """Eight couplings, half-split masks (first half / second half), torch.distributions base."""

    def __init__(self, dim, n_couplings=8, hidden=32):
        super().__init__()
        self.dim = dim
        first = (torch.arange(dim) < (dim + 1) // 2).float()
        self.layers = nn.ModuleList(
            AffineCoupling(dim, first if k % 2 else 1 - first, hidden) for k in range(n_couplings))

    def forward(self, x):
        total = x.new_zeros(len(x))
        for layer in self.layers:
            x, ld = layer(x)
            total += ld
        return x, total

    def inverse(self, z):
        x = z
        for layer in self.layers[::-1]:
            x = layer.inverse(x)[0]
        return x

    def log_prob(self, x):
        z, logdet = self.forward(x)
        base = torch.distributions.Normal(torch.zeros_like(z), torch.ones_like(z))
        return base.log_prob(z).sum(dim=1) + logdet

    def sample(self, n):
        p = next(self.parameters())
        with torch.no_grad():
            return self.inverse(torch.randn(n, self.dim, device=p.device, dtype=p.dtype))
''',
    "hyper": """EPOCHS_MOONS = 80
EPOCHS_DIGITS = 40
BATCH_SIZE = 100
LR = 3e-3
""",
}

BUGS: dict[str, dict[str, str]] = {
    # the coupling's log-determinant averaged over the dimensions instead of summed
    "bug_logdet_not_summed": {"coupling": COUPLING.replace(
        "        return y, s.sum(-1)", "        return y, s.mean(-1)  # BUG: averaged, not summed"
    ).replace("        return x, -s.sum(-1)", "        return x, -s.mean(-1)  # BUG")},
    # the inverse's log-determinant has the forward's sign
    "bug_inverse_logdet_sign": {"coupling": COUPLING.replace(
        "        return x, -s.sum(-1)", "        return x, s.sum(-1)  # BUG: the forward's sign")},
    # RealNVP.inverse applies the couplings' inverses in forward order
    "bug_inverse_forward_order": {"realnvp": REALNVP.replace(
        "        for coupling in reversed(self.couplings):\n            z, _ = coupling.inverse(z)",
        "        for coupling in self.couplings:  # BUG: not reversed\n"
        "            z, _ = coupling.inverse(z)")},
    # every coupling gets the same mask: half of the dimensions are never transformed
    "bug_masks_never_alternate": {"realnvp": REALNVP.replace(
        "        masks = [parity if i % 2 == 0 else 1.0 - parity for i in range(n_couplings)]",
        "        masks = [parity for i in range(n_couplings)]  # BUG: never alternate")},
    # log_prob without the log-determinant (and trained with it)
    "bug_log_prob_no_logdet": {"realnvp": REALNVP.replace(
        "        return log_base + logdet", "        return log_base  # BUG: no logdet")},
}


def examples() -> dict[str, dict[str, str]]:
    out = {"correct": CORRECT, "different": DIFFERENT}
    for name, change in BUGS.items():
        base = {**CORRECT, **change}
        if base == CORRECT:
            raise ValueError(f"{name}: the patch changed nothing")
        out[name] = base
    return out


def main() -> int:
    for name, solution in examples().items():
        path = HERE / "examples" / name / "flow.ipynb"
        write_notebook(build_notebook(solution), path)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
