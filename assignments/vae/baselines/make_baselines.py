"""Baseline submissions for `grader calibrate vae`: models that must earn no metric credit.

    .venv/bin/python assignments/vae/baselines/make_baselines.py

Each is the reference solution with one cell appended that replaces what the model does
(its checkpoint is the reference's, so `VAE()` still loads):

- `independent_pixels`: q(z|x) = p(z) (zero mean and log-variance) and a decoder that
  ignores z, returning the logits of the training pixel frequencies; samples are
  independent Bernoulli pixels at those frequencies.
- `noise`: a decoder of zero logits (every pixel 1/2, ELBO = -64 ln 2) and samples of
  uniform noise.
- `blurred`: the independent-pixel likelihood, and samples drawn from training images
  blurred by a 3 x 3 box filter (blurred data).

Copies of training images are no baseline here: they score well on FID by construction and
are the memorisation check's business (tests/test_sample_checks.py).
"""

from __future__ import annotations

from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]

INDEPENDENT = '''
from grader.data import digits as _digits
_p = _digits("train", "binary").mean(0, keepdim=True).clamp(1e-3, 1 - 1e-3)
_logit = torch.log(_p) - torch.log1p(-_p)
Encoder.forward = lambda self, x: (x.new_zeros(len(x), LATENT), x.new_zeros(len(x), LATENT))
Decoder.forward = lambda self, z: _logit.to(z.dtype).expand(len(z), 1, 8, 8)
VAE.sample = lambda self, n: torch.bernoulli(_p.expand(n, 1, 8, 8))
'''

BLURRED = INDEPENDENT + '''
_train = _digits("train", "binary")
def _blurred(self, n):
    x = _train[torch.arange(n) % len(_train)]
    return torch.nn.functional.conv2d(x, torch.ones(1, 1, 3, 3) / 9, padding=1)
VAE.sample = _blurred
'''

NOISE = '''
Encoder.forward = lambda self, x: (x.new_zeros(len(x), LATENT), x.new_zeros(len(x), LATENT))
Decoder.forward = lambda self, z: z.new_zeros(len(z), 1, 8, 8)
VAE.sample = lambda self, n: torch.rand(n, 1, 8, 8)
'''


def build(name: str, cell: str) -> Path:
    folder = HERE / name
    folder.mkdir(exist_ok=True)
    nb = nbformat.v4.new_notebook(metadata={"grader": {"assignment": "vae"}})
    nb.cells = [nbformat.v4.new_code_cell("TRAIN = False\nSEED = 0\nDEVICE = 'cpu'",
                                          metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell((REPO / "reference" / "vae.py").read_text()),
                nbformat.v4.new_code_cell("LATENT = VAE().latent_dim\n" + cell.strip() + "\n")]
    for i, c in enumerate(nb.cells):
        c["id"] = f"{name}-{i}"
    nbformat.write(nb, folder / "vae.ipynb")
    (folder / "vae.pt").write_bytes((REPO / "reference/checkpoints/vae.pt").read_bytes())
    return folder


if __name__ == "__main__":
    for name, cell in (("independent_pixels", INDEPENDENT), ("noise", NOISE),
                       ("blurred", BLURRED)):
        print("wrote", build(name, cell))
