"""Build the student template ``assignments/gan/gan.ipynb`` (reproducibly, no outputs).

Run from the repository root:  .venv/bin/python assignments/gan/make_template.py

The cells a student completes have a key (``config``, ``generator``, ``discriminator``,
``discriminator_loss``, ``generator_loss``, ``gradient_penalty``, ``train_step``);
``make_examples.py`` builds the example submissions from the same list, replacing only
keyed cells (and, for one example, the training hyper-parameters cell ``hyper``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

from grader.authoring.cells import keyed_notebook, write_notebook

HERE = Path(__file__).resolve().parent

METADATA = {
    "grader": {"assignment": "gan"},
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
    "language_info": {"name": "python"},
}

INTRO = r"""# Lab 4 — Generative adversarial networks

You will implement a GAN for the 8x8 digits in the `continuous` form
(`digits("train", "continuous")`: 1,437 images, pixels (value + U[0,1)) / 17 in (0, 1)) and train it.

**What you submit:** this notebook, `gan.ipynb`, and the checkpoint `gan.pt` that the training cell
writes (`torch.save(G.state_dict(), "gan.pt")`, the **generator** only).

**How it is graded.** The grader runs your notebook with `TRAIN = False`, then calls the names below
on inputs it chooses: random batch sizes, logits of ±100, `float32` and `float64` tensors, and
test networks of its own whose gradients it knows exactly (your `gradient_penalty` and
`train_step` receive those). So keep names, argument order and shapes exactly as documented,
follow the dtype and device of your inputs, and give every constructor argument a default
(`Generator()` is built with no arguments to load `gan.pt`). Architectures are your choice.
"""

THEORY = r"""## Background

**Game.** A generator $G$ maps noise $z \sim \mathcal{N}(0, I)$ to images; a discriminator $D$ returns a
**logit** $D(x)$ of "x is real" (no sigmoid in the network). With $\sigma$ the logistic function,

$$\mathcal{L}_D = \mathbb{E}_{x}\big[-\log \sigma(D(x))\big] + \mathbb{E}_{z}\big[-\log(1 - \sigma(D(G(z))))\big].$$

**Non-saturating generator loss.** Minimising $\log(1 - \sigma(D(G(z))))$ gives $G$ almost no gradient
when $D$ confidently rejects its fakes (the *saturating* loss). Instead minimise
$\mathcal{L}_G = \mathbb{E}_z\big[-\log \sigma(D(G(z)))\big]$. At logit 0 it equals $\ln 2$.

**Stability.** $-\log\sigma(\ell) = \mathrm{softplus}(-\ell)$ and $-\log(1 - \sigma(\ell)) = \mathrm{softplus}(\ell)$.
Writing `torch.log(torch.sigmoid(l))` literally gives `-inf` at large logits (`sigmoid(100)` is exactly 1
in floating point). Use `F.softplus`, `F.logsigmoid` or `F.binary_cross_entropy_with_logits`.

**Gradient penalty (WGAN-GP).** With $\hat x = \epsilon x_{real} + (1 - \epsilon) x_{fake}$ and **one**
$\epsilon \sim U[0, 1]$ **per example**,
$$\mathrm{GP} = \frac1B \sum_{i=1}^{B} \big(\lVert \nabla_{\hat x} D(\hat x_i) \rVert_2 - 1\big)^2,$$
the norm taken over all pixels of one example. The penalty is added to the discriminator's loss, so
it must be differentiable w.r.t. $D$'s parameters: use `torch.autograd.grad(..., create_graph=True)`.

**One training step.** First update $D$ on real images and on fakes **detached** from $G$
(`fake.detach()`), then update $G$ through the *updated* $D$. Zero each optimiser's gradients before its
own backward pass, so that no gradient of one loss leaks into the other network's step.
"""

IMPORTS = """import torch
import torch.nn as nn
import torch.nn.functional as F  # noqa: F401  (for your solutions)

from grader.data import digits
"""

PARAMETERS = """TRAIN = True      # the grader sets TRAIN = False when gan.pt is submitted
SEED = 0
DEVICE = "cpu"
"""

MD_MODULES = """## 1. Generator and discriminator

Multilayer perceptrons with two hidden layers of 128-256 units work well. `LATENT_DIM` is the
default noise size used by `Generator()`.
"""

CONFIG = """LATENT_DIM = 16   # default noise size; you may change it
"""

GENERATOR = '''class Generator(nn.Module):
    """G(z): (B, latent_dim) noise -> (B, 1, 8, 8) images in [0, 1].

    Generator(latent_dim=LATENT_DIM)   every constructor argument must have a default
    attribute latent_dim; sample(n) -> (n, 1, 8, 8) images in [0, 1] from z ~ N(0, I).
    """

    def __init__(self, latent_dim=LATENT_DIM):
        super().__init__()
        self.latent_dim = latent_dim
        # TODO: define your layers

    def forward(self, z):
        raise NotImplementedError("Generator.forward: return images (B, 1, 8, 8) in [0, 1]")

    @torch.no_grad()
    def sample(self, n):
        raise NotImplementedError("Generator.sample: n images from z ~ N(0, I)")
'''

DISCRIMINATOR = '''class Discriminator(nn.Module):
    """D(x): (B, 1, 8, 8) images in [0, 1] -> (B,) logits (no sigmoid)."""

    def __init__(self):
        super().__init__()
        # TODO: define your layers

    def forward(self, x):
        raise NotImplementedError("Discriminator.forward: return logits of shape (B,)")
'''

MD_LOSSES = """## 2. Losses

Checked against a reference on random logits and at logits of ±100 (finite and exact).
"""

D_LOSS = '''def discriminator_loss(real_logits, fake_logits):
    """mean(-log sigmoid(real_logits)) + mean(-log(1 - sigmoid(fake_logits))).

    real_logits, fake_logits: (B,)  ->  0-d tensor
    """
    raise NotImplementedError("discriminator_loss")
'''

G_LOSS = '''def generator_loss(fake_logits):
    """Non-saturating generator loss mean(-log sigmoid(fake_logits)): (B,) -> 0-d tensor."""
    raise NotImplementedError("generator_loss")
'''

MD_GP = """## 3. Gradient penalty

The grader calls it with a critic whose input gradient it knows, and checks where the critic was
evaluated, the value, and that the result can be back-propagated into the critic's parameters.
"""

GP = '''def gradient_penalty(discriminator, real, fake):
    """mean over examples of (||grad_x D(x_hat)||_2 - 1)^2, x_hat = e*real + (1-e)*fake,
    one e ~ U[0, 1] per example; keeps the graph. No factor lambda (the caller multiplies).

    real, fake: (B, 1, 8, 8)  ->  0-d tensor
    """
    raise NotImplementedError("gradient_penalty")
'''

MD_STEP = """## 4. One training step

The grader calls `train_step` with its own networks and plain SGD optimisers, one of them with
learning rate 0, and checks the parameters after the step to the last digit.
"""

STEP = '''def train_step(G, D, opt_G, opt_D, real):
    """One discriminator update, then one generator update (non-saturating loss).

    Draw B = len(real) noise vectors of size G.latent_dim (dtype and device of real).
    Returns {"d_loss": float, "g_loss": float}: the D loss before D's step and the G loss.
    """
    raise NotImplementedError("train_step")
'''

MD_TRAIN = """## 5. Training

Trains `Generator()` and `Discriminator()` with your `train_step` and Adam, then saves the generator's
`state_dict` to `gan.pt`. About half a minute on a laptop CPU; it runs only when `TRAIN` is true.
"""

HYPER = """EPOCHS = 600
BATCH_SIZE = 64
LR_G = 2e-4
LR_D = 2e-4
"""

TRAIN = '''if TRAIN:
    torch.manual_seed(SEED)
    x_train = digits("train", "continuous").to(DEVICE)
    G, D = Generator().to(DEVICE), Discriminator().to(DEVICE)
    print(f"untrained D: mean logit on real digits {D(x_train[:256]).mean().item():.3f}")
    opt_G = torch.optim.Adam(G.parameters(), lr=LR_G, betas=(0.5, 0.999))
    opt_D = torch.optim.Adam(D.parameters(), lr=LR_D, betas=(0.5, 0.999))
    for epoch in range(1, EPOCHS + 1):
        G.train()
        D.train()
        perm = torch.randperm(len(x_train), device=DEVICE)
        for i in range(0, len(x_train) - BATCH_SIZE + 1, BATCH_SIZE):
            losses = train_step(G, D, opt_G, opt_D, x_train[perm[i:i + BATCH_SIZE]])
        if epoch == 1 or epoch % 100 == 0:
            print(f"epoch {epoch:4d}   d_loss {losses['d_loss']:.3f}   g_loss {losses['g_loss']:.3f}")
    G.eval()
    G.to("cpu")
    torch.save(G.state_dict(), "gan.pt")
    print("saved gan.pt")
'''

SUBMIT = """## Before you submit

- Restart the kernel and run all cells: the notebook must run top to bottom.
- Submit `gan.ipynb` together with the `gan.pt` written by the training cell.
- Do not rename anything the stubs define; do not change the `parameters` cell.
"""

CELLS: list[tuple[str, str, str]] = [
    ("markdown", "intro", INTRO),
    ("markdown", "theory", THEORY),
    ("code", "imports", IMPORTS),
    ("code", "parameters", PARAMETERS),
    ("markdown", "md-modules", MD_MODULES),
    ("code", "config", CONFIG),
    ("code", "generator", GENERATOR),
    ("code", "discriminator", DISCRIMINATOR),
    ("markdown", "md-losses", MD_LOSSES),
    ("code", "discriminator_loss", D_LOSS),
    ("code", "generator_loss", G_LOSS),
    ("markdown", "md-gp", MD_GP),
    ("code", "gradient_penalty", GP),
    ("markdown", "md-step", MD_STEP),
    ("code", "train_step", STEP),
    ("markdown", "md-train", MD_TRAIN),
    ("code", "hyper", HYPER),
    ("code", "train", TRAIN),
    ("markdown", "submit", SUBMIT),
]

SOLUTION_KEYS = ("config", "generator", "discriminator", "discriminator_loss", "generator_loss",
                 "gradient_penalty", "train_step", "hyper")


def build_notebook(solution: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """The template, with the keyed cells in ``solution`` replaced by its sources."""
    return keyed_notebook(CELLS, METADATA, solution, SOLUTION_KEYS)


def main() -> int:
    write_notebook(build_notebook(), HERE / "gan.ipynb")
    print(f"wrote {HERE / 'gan.ipynb'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
