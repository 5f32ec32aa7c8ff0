"""Baseline submissions for `grader calibrate diffusion`: samplers that must earn no FID credit.

    .venv/bin/python assignments/diffusion/baselines/make_baselines.py

Each is the reference solution with one cell appended that replaces `sample` (its
checkpoint is the reference's, so `Denoiser()` still loads); every sampler returns
values in [-1, 1], as the lab's `sample` does:

- `independent_pixels`: every pixel drawn independently from that pixel's values in the
  `continuous` training digits (the right marginals, no structure);
- `noise`: uniform noise in [-1, 1];
- `blurred`: training images blurred by a 3 x 3 box filter.

(The trained denoiser sampled with only 10 steps of a 10-step schedule scores FID 59, as well
as the 1000-step reference: it is no baseline.)

Copies of training images are no baseline: they are the memorisation check's business.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]

PRELUDE = '''
from grader.data import digits as _digits
_train = _digits("train", "continuous") * 2 - 1
'''

CELLS = {
    "independent_pixels": PRELUDE + '''
def sample(model, n, betas):
    idx = torch.randint(len(_train), (n, 64))
    return _train.flatten(1).gather(0, idx).reshape(n, 1, 8, 8)
''',
    "noise": '''
def sample(model, n, betas):
    return torch.rand(n, 1, 8, 8) * 2 - 1
''',
    "blurred": PRELUDE + '''
def sample(model, n, betas):
    x = _train[torch.arange(n) % len(_train)]
    return torch.nn.functional.conv2d(x, torch.ones(1, 1, 3, 3) / 9, padding=1).clamp(-1, 1)
''',
}


def build(name: str, cell: str) -> Path:
    folder = HERE / name
    folder.mkdir(exist_ok=True)
    nb = nbformat.v4.new_notebook(metadata={"grader": {"assignment": "diffusion"}})
    nb.cells = [nbformat.v4.new_code_cell("TRAIN = False\nSEED = 0\nDEVICE = 'cpu'",
                                          metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell((REPO / "reference" / "diffusion.py").read_text()),
                nbformat.v4.new_code_cell(cell.strip() + "\n")]
    for i, c in enumerate(nb.cells):
        c["id"] = f"{name}-{i}"
    nbformat.write(nb, folder / "diffusion.ipynb")
    (folder / "ddpm.pt").write_bytes((REPO / "reference/checkpoints/ddpm.pt").read_bytes())
    return folder


if __name__ == "__main__":
    for name, cell in CELLS.items():
        print("wrote", build(name, cell))
