"""Build the student template ``assignments/vae/vae.ipynb`` (reproducibly, no outputs).

Run from the repository root:  .venv/bin/python assignments/vae/make_template.py

The notebook is a list of cells; the cells a student completes have a key
(``config``, ``encoder``, ``decoder``, ``reparameterize``, ``gaussian_kl``,
``bernoulli_log_likelihood``, ``elbo``, ``vae``). ``make_examples.py`` builds the
example submissions from the same list, replacing only keyed cells, so every
example has exactly the template's structure, parameters cell and metadata.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

from grader.authoring.cells import keyed_notebook, write_notebook

HERE = Path(__file__).resolve().parent

METADATA = {
    "grader": {"assignment": "vae"},
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
    "language_info": {"name": "python"},
}

INTRO = r"""# Lab 3 — Variational autoencoders

You will implement a variational autoencoder (VAE) for the 8x8 binary digits
(`digits("train", "binary")`: 1,437 images, pixels in {0, 1}) and train it.

**What you submit:** this notebook, `vae.ipynb`, and the checkpoint `vae.pt` that its last
cell writes (`torch.save(model.state_dict(), "vae.pt")`).

**How it is graded.** The grader runs your notebook with `TRAIN = False` (so it does not retrain),
then imports only the names below and calls them on inputs it chooses: random shapes and values,
extreme values such as logits of ±100, `float32` and sometimes `float64` tensors (after `.double()`
on your modules). It never reads what your notebook prints. So:

- keep the names, argument order, shapes and units exactly as documented in each stub;
- every function must work for any batch size >= 1 and must follow the dtype of its inputs
  (create new tensors with `torch.randn_like`, `x.new_zeros(...)`, ... rather than
  `torch.randn(...)` with a fixed dtype);
- every constructor argument needs a default: the grader builds `VAE()` with no arguments and
  loads `vae.pt` into it;
- the grader computes the ELBO of your trained encoder and decoder itself; your own `elbo` is
  checked against it.

Layer sizes, activations, and how you write the maths (hand-written or `torch.nn.functional`,
`logvar` or a log-std *inside* your encoder) are your choice.
"""

THEORY = r"""## Background

**Model.** A latent variable $z \in \mathbb{R}^L$ with prior $p(z) = \mathcal{N}(0, I)$ and a
decoder $p_\theta(x \mid z) = \prod_{i=1}^{64} \mathrm{Bernoulli}(x_i; \sigma(\ell_i))$, where
$\ell = \mathrm{Decoder}(z)$ are **logits** (no sigmoid in the network).

**ELBO.** With the encoder $q_\phi(z \mid x) = \mathcal{N}(\mu, \mathrm{diag}(\sigma^2))$,
$$\log p(x) \;\ge\; \mathrm{ELBO}(x) = \mathbb{E}_{q_\phi(z\mid x)}\big[\log p_\theta(x \mid z)\big]
- \mathrm{KL}\big(q_\phi(z \mid x)\,\|\,p(z)\big).$$
Both terms are **sums** (over the 64 pixels and over the $L$ latents): the ELBO of one image is in
nats, a number around -20 to -45 for these digits. Training maximises the mean ELBO over a batch.

**Log-variance.** The encoder returns `(mu, logvar)` with `logvar` $= \log \sigma^2$, so
`std = exp(0.5 * logvar)` (not `exp(logvar)`). Predicting the log keeps $\sigma > 0$ without
constraints.

**Reparameterisation trick.** Sample $\varepsilon \sim \mathcal{N}(0, I)$ and set
$z = \mu + \sigma \odot \varepsilon$. Then $z \sim q_\phi(z \mid x)$ and $z$ is a differentiable
function of $\mu$ and $\log\sigma^2$, so the one-sample estimate
$\log p_\theta(x \mid z) - \mathrm{KL}$ gives unbiased gradients for the encoder as well as the
decoder. Drawing $z$ with `torch.normal(mu, std)`, or `.detach()`-ing it, cuts that gradient.

**Gaussian KL in closed form.** For a diagonal Gaussian against $\mathcal{N}(0, I)$,
$$\mathrm{KL} = \tfrac12 \sum_{j=1}^{L} \big(\mu_j^2 + \sigma_j^2 - 1 - \log \sigma_j^2\big)
\;\ge 0,$$
zero only at $\mu = 0$, $\log\sigma^2 = 0$.

**Bernoulli log-likelihood from logits.** With $\log\sigma(\ell) = -\mathrm{softplus}(-\ell)$ and
$\log(1 - \sigma(\ell)) = -\mathrm{softplus}(\ell)$,
$$\log p(x \mid \ell) = \sum_i \big(x_i \log \sigma(\ell_i) + (1 - x_i)\log(1 - \sigma(\ell_i))\big)
= \sum_i \big(x_i \ell_i - \mathrm{softplus}(\ell_i)\big).$$

**Numerical stability.** Computing `torch.log(torch.sigmoid(l))` literally fails: in float32,
`sigmoid(100)` is exactly 1, so `log(1 - sigmoid(100))` is `-inf` and `0 * -inf` is `nan`.
Use the softplus form, `F.logsigmoid`, or
`F.binary_cross_entropy_with_logits(..., reduction="none")` (which is the *negative*
log-likelihood per pixel). The grader tests logits of ±100.
"""

IMPORTS = """import torch
import torch.nn as nn
import torch.nn.functional as F  # noqa: F401  (for your solutions)

from grader.data import digits
"""

PARAMETERS = """TRAIN = True      # the grader sets TRAIN = False when vae.pt is submitted
SEED = 0
DEVICE = "cpu"
"""

MD_MODULES = """## 1. Encoder and decoder

Any architecture works; a multilayer perceptron with one or two hidden layers of 128-256 units is
plenty for 8x8 digits. `LATENT_DIM` is the default latent size used by `VAE()`.
"""

CONFIG = """LATENT_DIM = 8    # default latent size; you may change it
"""

ENCODER = '''class Encoder(nn.Module):
    """q(z | x) = N(mu, diag(exp(logvar))).

    Encoder(latent_dim=LATENT_DIM)    every constructor argument must have a default
    forward(x): x (B, 1, 8, 8) binary images as floats
        -> (mu, logvar), each (B, latent_dim); logvar is the LOG-VARIANCE (std = exp(0.5 * logvar)).
    """

    def __init__(self, latent_dim=LATENT_DIM):
        super().__init__()
        self.latent_dim = latent_dim
        # TODO: define your layers

    def forward(self, x):
        raise NotImplementedError("Encoder.forward: return (mu, logvar), each (B, latent_dim)")
'''

DECODER = '''class Decoder(nn.Module):
    """p(x | z): Bernoulli over the 64 pixels.

    Decoder(latent_dim=LATENT_DIM)
    forward(z): z (B, latent_dim) -> logits (B, 1, 8, 8)   (logits, NOT probabilities: no sigmoid)
    """

    def __init__(self, latent_dim=LATENT_DIM):
        super().__init__()
        self.latent_dim = latent_dim
        # TODO: define your layers

    def forward(self, z):
        raise NotImplementedError("Decoder.forward: return logits of shape (B, 1, 8, 8)")
'''

MD_REPARAM = """## 2. Reparameterisation

The grader checks the mean and standard deviation of many draws, and that gradients reach both
`mu` and `logvar` through the sample.
"""

REPARAM = '''def reparameterize(mu, logvar):
    """Draw z ~ N(mu, diag(exp(logvar))) as a differentiable function of mu and logvar.

    mu, logvar: (B, L), logvar = log-variance  ->  z: (B, L), same dtype and device as mu.
    """
    raise NotImplementedError("reparameterize: z = mu + std * eps")
'''

MD_KL = """## 3. KL divergence to the prior

Checked against a reference on random inputs, on published values, and for non-negativity.
"""

KL = '''def gaussian_kl(mu, logvar):
    """KL( N(mu, diag(exp(logvar))) || N(0, I) ) in nats, SUMMED over the latent dimension.

    mu, logvar: (B, L)  ->  (B,)
    """
    raise NotImplementedError("gaussian_kl: closed-form KL, one value per row")
'''

MD_BERNOULLI = """## 4. Bernoulli log-likelihood

Checked against a reference, including logits of ±100 (the result must stay finite and exact).
"""

BERNOULLI = '''def bernoulli_log_likelihood(x, logits):
    """log p(x | logits) in nats, SUMMED over all pixels (a log-likelihood: <= 0, not a loss).

    x: (B, 1, 8, 8) in {0, 1}, logits: (B, 1, 8, 8)  ->  (B,)
    """
    raise NotImplementedError("bernoulli_log_likelihood: sum of per-pixel log-probabilities")
'''

MD_ELBO = """## 5. The ELBO

The grader averages many calls of your `elbo` on the same images and compares the mean with its
own ELBO of your trained encoder and decoder.
"""

ELBO = '''def elbo(x, encoder, decoder):
    """One-sample Monte-Carlo estimate of the ELBO of each image, in nats.

    x: (B, 1, 8, 8); encoder(x) -> (mu, logvar); decoder(z) -> logits.
    Returns (B,): log p(x | z) summed over pixels minus KL summed over latents, z ~ q(z | x).
    """
    raise NotImplementedError("elbo: reconstruction log-likelihood minus KL, per image")
'''

MD_VAE = """## 6. The VAE

`VAE()` must build with no arguments and hold `encoder`, `decoder` and `latent_dim`.
`sample(n)` decodes `n` draws from the prior and returns images in [0, 1]: the Bernoulli means
`sigmoid(logits)` or binary draws from them.
"""

VAE = '''class VAE(nn.Module):
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
        raise NotImplementedError("VAE.sample: decode prior samples to images in [0, 1]")
'''

MD_TRAIN = """## 7. Training

This cell trains `VAE()` by maximising your `elbo` with Adam and saves `vae.pt`. It runs only
when `TRAIN` is true; the grader sets `TRAIN = False` and loads your `vae.pt` instead. On a laptop
CPU it takes well under a minute for an MLP. An untrained model starts near -44 nats
(64 ln 1/2); a good one reaches about -18 nats on the test split.
"""

TRAIN = '''EPOCHS = 200
BATCH_SIZE = 128
LR = 1e-3

if TRAIN:
    torch.manual_seed(SEED)
    x_train = digits("train", "binary").to(DEVICE)
    x_test = digits("test", "binary").to(DEVICE)
    model = VAE().to(DEVICE)
    with torch.no_grad():
        start = elbo(x_test, model.encoder, model.decoder).mean().item()
    print(f"untrained: test ELBO {start:.2f} nats per image")
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    for epoch in range(1, EPOCHS + 1):
        model.train()
        perm = torch.randperm(len(x_train), device=DEVICE)
        total = 0.0
        for i in range(0, len(x_train), BATCH_SIZE):
            batch = x_train[perm[i:i + BATCH_SIZE]]
            loss = -elbo(batch, model.encoder, model.decoder).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        if epoch == 1 or epoch % 20 == 0:
            model.eval()
            with torch.no_grad():
                test = elbo(x_test, model.encoder, model.decoder).mean().item()
            print(f"epoch {epoch:4d}   train ELBO {-total / len(x_train):8.2f}   "
                  f"test ELBO {test:8.2f} nats per image")
    model.eval()
    model.to("cpu")
    torch.save(model.state_dict(), "vae.pt")
    print("saved vae.pt")
'''

SUBMIT = """## Before you submit

- Restart the kernel and run all cells: the notebook must run top to bottom.
- Submit `vae.ipynb` together with the `vae.pt` written by the training cell.
- Do not rename anything the stubs define; do not change the `parameters` cell.
"""

# (kind, key, source); key names the cells a solution replaces.
CELLS: list[tuple[str, str, str]] = [
    ("markdown", "intro", INTRO),
    ("markdown", "theory", THEORY),
    ("code", "imports", IMPORTS),
    ("code", "parameters", PARAMETERS),
    ("markdown", "md-modules", MD_MODULES),
    ("code", "config", CONFIG),
    ("code", "encoder", ENCODER),
    ("code", "decoder", DECODER),
    ("markdown", "md-reparameterize", MD_REPARAM),
    ("code", "reparameterize", REPARAM),
    ("markdown", "md-kl", MD_KL),
    ("code", "gaussian_kl", KL),
    ("markdown", "md-bernoulli", MD_BERNOULLI),
    ("code", "bernoulli_log_likelihood", BERNOULLI),
    ("markdown", "md-elbo", MD_ELBO),
    ("code", "elbo", ELBO),
    ("markdown", "md-vae", MD_VAE),
    ("code", "vae", VAE),
    ("markdown", "md-train", MD_TRAIN),
    ("code", "train", TRAIN),
    ("markdown", "submit", SUBMIT),
]

SOLUTION_KEYS = ("config", "encoder", "decoder", "reparameterize", "gaussian_kl",
                 "bernoulli_log_likelihood", "elbo", "vae")


def build_notebook(solution: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """The template, with the keyed cells in ``solution`` replaced by its sources."""
    return keyed_notebook(CELLS, METADATA, solution, SOLUTION_KEYS)


def main() -> int:
    write_notebook(build_notebook(), HERE / "vae.ipynb")
    print(f"wrote {HERE / 'vae.ipynb'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
