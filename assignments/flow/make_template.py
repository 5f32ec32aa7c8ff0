"""Build the student template ``assignments/flow/flow.ipynb`` (reproducibly, no outputs).

Run from the repository root:  .venv/bin/python assignments/flow/make_template.py

The cells a student completes have a key (``coupling``, ``realnvp``, ``hyper``);
``make_examples.py`` builds the example submissions from the same list, replacing only
keyed cells.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

from grader.authoring.cells import keyed_notebook, write_notebook

HERE = Path(__file__).resolve().parent

METADATA = {
    "grader": {"assignment": "flow"},
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
    "language_info": {"name": "python"},
}

INTRO = r"""# Lab 5 — Normalising flows (RealNVP)

You will implement an affine coupling layer and a RealNVP, and train one flow on the 2-D `moons`
data and one on the 8x8 digits in the `continuous` form, flattened to 64 dimensions.

**What you submit:** this notebook, `flow.ipynb`, and the checkpoints `flow_moons.pt` (`RealNVP(2)`)
and `flow_digits.pt` (`RealNVP(64)`) that the training cell writes (`state_dict`s).

**How it is graded.** The grader runs your notebook with `TRAIN = False`, builds your classes on
inputs it chooses (random sizes, random masks, values up to ±10, `float32` and `float64`), **redraws
their parameters at random** (a freshly initialised coupling is the identity and would hide every
mistake), and checks invertibility, log-determinants against the Jacobian it computes itself,
pass-through dimensions, `log_prob`, the normalisation of your moons density, and test likelihoods.
Keep names, argument order and shapes as documented, follow the dtype and device of your inputs,
and give every constructor argument other than `dim` (and `mask`) a default.
"""

THEORY = r"""## Background

**Change of variables.** With an invertible $f$ mapping data $x$ to $z = f(x)$ and a base density
$p_Z = \mathcal{N}(0, I)$,
$$\log p_X(x) = \log p_Z(f(x)) + \log\left|\det \frac{\partial f}{\partial x}\right|.$$

**Affine coupling.** With a binary mask $m$ (1 = pass through),
$$y = m \odot x + (1 - m) \odot \big(x \odot e^{s(m \odot x)} + t(m \odot x)\big).$$
The Jacobian is triangular (after a permutation), so $\log|\det J| = \sum_i (1 - m_i)\, s_i$: **summed**
over the transformed dimensions, one value per example. The inverse is
$x = m \odot y + (1 - m) \odot \big((y - t(m \odot y)) \odot e^{-s(m \odot y)}\big)$ with log-determinant
$-\sum_i (1 - m_i) s_i$. The dimensions with mask 1 must come out **bit-identical**: use
`torch.where(mask.bool(), x, ...)` rather than arithmetic that may round. Bounding $s$ (e.g.
$s = c \tanh(\cdot / c)$) keeps $e^{s}$ finite for any parameters.

**RealNVP.** Stack couplings whose masks **alternate** (a dimension passed through by one coupling
is transformed by the next), so that every dimension is transformed. The forward direction maps data
to $z$ and sums the log-determinants; `inverse` applies the couplings' inverses in **reverse order**;
`sample(n)` draws $z \sim \mathcal{N}(0, I)$ and returns `inverse(z)`.

**Density in data space.** `log_prob(x)` $= \log \mathcal{N}(f(x); 0, I) + \log|\det J_f(x)|$, a
density of $x$ itself: its exponential integrates to 1. For the digits it is a density on $(0, 1)^{64}$;
the grader reports bits/dim of the 17-level digits it stands for.
"""

IMPORTS = """import math

import torch
import torch.nn as nn
import torch.nn.functional as F  # noqa: F401  (for your solutions)

from grader.data import digits, moons
"""

PARAMETERS = """TRAIN = True      # the grader sets TRAIN = False when both checkpoints are submitted
SEED = 0
DEVICE = "cpu"
"""

MD_COUPLING = """## 1. Affine coupling

Checked on random masks and dimensions 1..16, with redrawn parameters, in `float64` where your code
allows it: `inverse(forward(x)) = x`, `logdet` equals $\\log|\\det J|$ of the Jacobian, the inverse's
logdet is minus the forward's, and mask-1 dimensions pass unchanged.
"""

COUPLING = '''class AffineCoupling(nn.Module):
    """AffineCoupling(dim, mask, hidden=64); mask: a (dim,) tensor of 0s and 1s (1 = pass through).

    forward(x (B, D)) -> (y (B, D), logdet (B,));  inverse(y) -> (x, logdet (B,)).
    """

    def __init__(self, dim, mask, hidden=64):
        super().__init__()
        # TODO: keep the mask (register_buffer) and build the networks s(.) and t(.)

    def forward(self, x):
        raise NotImplementedError("AffineCoupling.forward: return (y, logdet)")

    def inverse(self, y):
        raise NotImplementedError("AffineCoupling.inverse: return (x, logdet)")
'''

MD_REALNVP = """## 2. RealNVP

`RealNVP(2)` and `RealNVP(64)` are built with no other arguments to load your checkpoints.
"""

REALNVP = '''class RealNVP(nn.Module):
    """RealNVP(dim): couplings with alternating masks and a standard normal base.

    forward(x) -> (z, logdet (B,));  inverse(z) -> x;  log_prob(x) -> (B,);  sample(n) -> (n, dim).
    """

    def __init__(self, dim):
        super().__init__()
        self.dim = dim
        # TODO: an nn.ModuleList of AffineCoupling layers with alternating masks

    def forward(self, x):
        raise NotImplementedError("RealNVP.forward: return (z, logdet)")

    def inverse(self, z):
        raise NotImplementedError("RealNVP.inverse: return x")

    def log_prob(self, x):
        raise NotImplementedError("RealNVP.log_prob: log N(z; 0, I) + logdet")

    @torch.no_grad()
    def sample(self, n):
        raise NotImplementedError("RealNVP.sample: inverse of z ~ N(0, I)")
'''

MD_TRAIN = """## 3. Training

Maximum likelihood (minimise `-log_prob(x).mean()`) with Adam on `moons("train")` and on the
flattened continuous training digits; saves both `state_dict`s. About 15 seconds on a laptop CPU; it
runs only when `TRAIN` is true.
"""

HYPER = """EPOCHS_MOONS = 80
EPOCHS_DIGITS = 40
BATCH_SIZE = 128
LR = 2e-3
"""

TRAIN = '''def fit(flow, data, epochs):
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


if TRAIN:
    torch.manual_seed(SEED)
    flow_moons = fit(RealNVP(2).to(DEVICE), moons("train").to(DEVICE), EPOCHS_MOONS)
    torch.save(flow_moons.state_dict(), "flow_moons.pt")
    x_digits = digits("train", "continuous").flatten(1).to(DEVICE)
    flow_digits = fit(RealNVP(64).to(DEVICE), x_digits, EPOCHS_DIGITS)
    torch.save(flow_digits.state_dict(), "flow_digits.pt")
    print("saved flow_moons.pt and flow_digits.pt")
'''

SUBMIT = """## Before you submit

- Restart the kernel and run all cells: the notebook must run top to bottom.
- Submit `flow.ipynb` together with `flow_moons.pt` and `flow_digits.pt`.
- Do not rename anything the stubs define; do not change the `parameters` cell.
"""

CELLS: list[tuple[str, str, str]] = [
    ("markdown", "intro", INTRO),
    ("markdown", "theory", THEORY),
    ("code", "imports", IMPORTS),
    ("code", "parameters", PARAMETERS),
    ("markdown", "md-coupling", MD_COUPLING),
    ("code", "coupling", COUPLING),
    ("markdown", "md-realnvp", MD_REALNVP),
    ("code", "realnvp", REALNVP),
    ("markdown", "md-train", MD_TRAIN),
    ("code", "hyper", HYPER),
    ("code", "train", TRAIN),
    ("markdown", "submit", SUBMIT),
]

SOLUTION_KEYS = ("coupling", "realnvp", "hyper")


def build_notebook(solution: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """The template, with the keyed cells in ``solution`` replaced by its sources."""
    return keyed_notebook(CELLS, METADATA, solution, SOLUTION_KEYS)


def main() -> int:
    write_notebook(build_notebook(), HERE / "flow.ipynb")
    print(f"wrote {HERE / 'flow.ipynb'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
