"""Build the student template ``assignments/diffusion/diffusion.ipynb`` (reproducibly, no outputs).

Run from the repository root:  .venv/bin/python assignments/diffusion/make_template.py

The cells a student completes have a key (``schedule``, ``q_sample``, ``posterior``,
``denoiser``, ``loss``, ``p_sample``, ``sample``, ``hyper``); ``make_examples.py`` builds the
example submissions from the same list, replacing only keyed cells.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

from grader.authoring.cells import keyed_notebook, write_notebook

HERE = Path(__file__).resolve().parent

METADATA = {
    "grader": {"assignment": "diffusion"},
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
    "language_info": {"name": "python"},
}

INTRO = r"""# Lab 6 — Denoising diffusion models

You will implement a DDPM for the 8x8 digits in the `continuous` form, scaled to $[-1, 1]$
(`digits("train", "continuous") * 2 - 1`), and train it.

**What you submit:** this notebook, `diffusion.ipynb`, and the checkpoint `ddpm.pt` that the training
cell writes (`torch.save(model.state_dict(), "ddpm.pt")`, your `Denoiser`).

**How it is graded.** The grader runs your notebook with `TRAIN = False`, then calls the names below on
inputs it chooses (random batch sizes, random schedules, `float32` and `float64` tensors), and hands your
`diffusion_loss`, `p_sample` and `sample` noise predictors of its own whose exact answers it knows.
Keep names, argument order and shapes exactly as documented, follow the dtype and device of your
inputs, and give every constructor argument a default (`Denoiser()` is built with no arguments to
load `ddpm.pt`). The architecture is your choice.
"""

THEORY = r"""## Background

Time steps are **0-based**: $t = 0, \dots, T-1$. With a schedule $\beta_t$, let $\alpha_t = 1 - \beta_t$ and
$\bar\alpha_t = \prod_{s \le t} \alpha_s$ (and $\bar\alpha_{-1} = 1$).

**Forward process.** $q(x_t \mid x_0) = \mathcal N\big(\sqrt{\bar\alpha_t}\, x_0,\ (1 - \bar\alpha_t) I\big)$, i.e.
$x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon$ with $\epsilon \sim \mathcal N(0, I)$.
With the linear schedule ($T = 1000$, $\beta$ from $10^{-4}$ to $0.02$), $\bar\alpha_{999} \approx 4.0358 \cdot 10^{-5}$.

**Posterior.** $q(x_{t-1} \mid x_t, x_0) = \mathcal N(\tilde\mu_t, \tilde\beta_t I)$ with
$$\tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1 - \bar\alpha_t}\, x_0 + \frac{\sqrt{\alpha_t}\,(1 - \bar\alpha_{t-1})}{1 - \bar\alpha_t}\, x_t,
\qquad \tilde\beta_t = \frac{1 - \bar\alpha_{t-1}}{1 - \bar\alpha_t}\, \beta_t \quad (\tilde\beta_0 = 0).$$

**Training.** A network $\epsilon_\theta(x_t, t)$ predicts the noise: minimise
$\mathbb E_{t, x_0, \epsilon}\,\lVert \epsilon - \epsilon_\theta(x_t, t) \rVert^2$ (mean over all elements), with
$t \sim U\{0, \dots, T-1\}$ drawn **per example**.

**Sampling.** From $x_{T-1} \sim \mathcal N(0, I)$, for $t = T-1, \dots, 0$:
$$x_{t-1} = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{\sqrt{1 - \bar\alpha_t}}\,\epsilon_\theta(x_t, t)\Big) + \sigma_t z,
\qquad \sigma_t^2 = \beta_t,\ z \sim \mathcal N(0, I),$$
and **no noise at the last step** $t = 0$. Samples live in $[-1, 1]$ (clamp at the end; do not map them
back to $[0, 1]$: the grader does that).
"""

IMPORTS = """import math  # noqa: F401  (for your solutions)

import torch
import torch.nn as nn
import torch.nn.functional as F  # noqa: F401  (for your solutions)

from grader.data import digits
"""

PARAMETERS = """TRAIN = True      # the grader sets TRAIN = False when ddpm.pt is submitted
SEED = 0
DEVICE = "cpu"
"""

MD_SCHEDULE = """## 1. Schedule and forward process
"""

SCHEDULE = '''def linear_beta_schedule(T, beta_start=1e-4, beta_end=0.02):
    """betas (T,): evenly spaced from beta_start to beta_end (float32)."""
    raise NotImplementedError("linear_beta_schedule")
'''

Q_SAMPLE = '''def q_sample(x0, t, noise, alphas_cumprod):
    """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise.

    x0, noise: (B, ...); t: (B,) long, one step per example; alphas_cumprod: (T,).
    """
    raise NotImplementedError("q_sample")
'''

POSTERIOR = '''def q_posterior_mean_variance(x0, x_t, t, betas):
    """Mean and variance of q(x_{t-1} | x_t, x0).

    x0, x_t: (B, ...); t: (B,) long; betas: (T,). The variance may have any shape that
    broadcasts to x0's, e.g. (B, 1, 1, 1). It is 0 at t = 0.
    """
    raise NotImplementedError("q_posterior_mean_variance")
'''

MD_MODEL = """## 2. The noise predictor and its loss

`Denoiser()` maps `(x_t (B, 1, 8, 8), t (B,) long)` to predicted noise of shape `(B, 1, 8, 8)`. A small MLP
on the flattened image concatenated with a sinusoidal embedding of `t` works well; keep the checkpoint
small (under ~300 KB).
"""

DENOISER = '''class Denoiser(nn.Module):
    """eps_theta(x_t, t): (B, 1, 8, 8), (B,) long -> (B, 1, 8, 8)."""

    def __init__(self):
        super().__init__()
        # TODO: define your layers

    def forward(self, x_t, t):
        raise NotImplementedError("Denoiser.forward")
'''

LOSS = '''def diffusion_loss(model, x0, betas):
    """Noise-prediction MSE: draw t ~ U{0..T-1} per example and noise ~ N(0, I) yourself.

    model(x_t, t) predicts the noise; returns a 0-d tensor (mean over all elements).
    """
    raise NotImplementedError("diffusion_loss")
'''

MD_SAMPLE = """## 3. Sampling

The grader drives your `p_sample` and `sample` with a noise predictor that is exact for Gaussian data:
a correct sampler then reproduces that Gaussian.
"""

P_SAMPLE = '''@torch.no_grad()
def p_sample(model, x_t, t, betas):
    """One step x_t -> x_{t-1} (t a Python int): sigma_t^2 = beta_t, no noise at t = 0."""
    raise NotImplementedError("p_sample")
'''

SAMPLE = '''@torch.no_grad()
def sample(model, n, betas):
    """n images (n, 1, 8, 8) in [-1, 1]: x_{T-1} ~ N(0, I), then p_sample for t = T-1 .. 0."""
    raise NotImplementedError("sample")
'''

MD_TRAIN = """## 4. Training

Trains `Denoiser()` with your `diffusion_loss` (T = 1000, `linear_beta_schedule(1000)`) and Adam, then
saves its `state_dict` to `ddpm.pt`. About a minute on a laptop CPU; it runs only when `TRAIN` is true.
"""

HYPER = """T = 1000
STEPS = 20000
BATCH_SIZE = 128
LR = 2e-3
"""

TRAIN = '''if TRAIN:
    torch.manual_seed(SEED)
    x_train = (digits("train", "continuous") * 2 - 1).to(DEVICE)
    betas = linear_beta_schedule(T).to(DEVICE)
    model = Denoiser().to(DEVICE)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, STEPS)
    for step in range(1, STEPS + 1):
        model.train()
        batch = x_train[torch.randint(len(x_train), (BATCH_SIZE,), device=DEVICE)]
        loss = diffusion_loss(model, batch, betas)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step == 1 or step % 2000 == 0:
            print(f"step {step:6d}   loss {loss.item():.4f}")
    model.eval()
    model.to("cpu")
    torch.save(model.state_dict(), "ddpm.pt")
    print("saved ddpm.pt")
'''

SUBMIT = """## Before you submit

- Restart the kernel and run all cells: the notebook must run top to bottom.
- Submit `diffusion.ipynb` together with the `ddpm.pt` written by the training cell.
- Do not rename anything the stubs define; do not change the `parameters` cell.
"""

CELLS: list[tuple[str, str, str]] = [
    ("markdown", "intro", INTRO),
    ("markdown", "theory", THEORY),
    ("code", "imports", IMPORTS),
    ("code", "parameters", PARAMETERS),
    ("markdown", "md-schedule", MD_SCHEDULE),
    ("code", "schedule", SCHEDULE),
    ("code", "q_sample", Q_SAMPLE),
    ("code", "posterior", POSTERIOR),
    ("markdown", "md-model", MD_MODEL),
    ("code", "denoiser", DENOISER),
    ("code", "loss", LOSS),
    ("markdown", "md-sample", MD_SAMPLE),
    ("code", "p_sample", P_SAMPLE),
    ("code", "sample", SAMPLE),
    ("markdown", "md-train", MD_TRAIN),
    ("code", "hyper", HYPER),
    ("code", "train", TRAIN),
    ("markdown", "submit", SUBMIT),
]

SOLUTION_KEYS = ("schedule", "q_sample", "posterior", "denoiser", "loss", "p_sample", "sample",
                 "hyper")


def build_notebook(solution: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """The template, with the keyed cells in ``solution`` replaced by its sources."""
    return keyed_notebook(CELLS, METADATA, solution, SOLUTION_KEYS)


def main() -> int:
    write_notebook(build_notebook(), HERE / "diffusion.ipynb")
    print(f"wrote {HERE / 'diffusion.ipynb'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
