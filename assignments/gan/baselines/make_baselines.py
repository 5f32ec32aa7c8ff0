"""Baseline submissions for `grader calibrate gan`: generators that must earn no FID credit.

    .venv/bin/python assignments/gan/baselines/make_baselines.py

Each is the reference solution with one cell appended that replaces `Generator.sample`
(its checkpoint is the reference's, so `Generator()` still loads):

- `independent_pixels`: every pixel drawn independently from that pixel's values in the
  `continuous` training digits (the right marginals, no structure);
- `noise`: uniform noise in [0, 1];
- `blurred`: training images blurred by a 3 x 3 box filter;
- `collapsed`: a collapsed generator: the mean training image plus a little noise.

Copies of training images are no baseline: they are the memorisation check's business.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]

PRELUDE = '''
from grader.data import digits as _digits
_train = _digits("train", "continuous")
'''

CELLS = {
    "independent_pixels": PRELUDE + '''
def _independent(self, n):
    idx = torch.randint(len(_train), (n, 64))
    return _train.flatten(1).gather(0, idx).reshape(n, 1, 8, 8)
Generator.sample = _independent
''',
    "noise": '''
Generator.sample = lambda self, n: torch.rand(n, 1, 8, 8)
''',
    "blurred": PRELUDE + '''
def _blurred(self, n):
    x = _train[torch.arange(n) % len(_train)]
    return torch.nn.functional.conv2d(x, torch.ones(1, 1, 3, 3) / 9, padding=1)
Generator.sample = _blurred
''',
    "collapsed": PRELUDE + '''
def _collapsed(self, n):
    return (_train.mean(0, keepdim=True) + 0.02 * torch.randn(n, 1, 8, 8)).clamp(0, 1)
Generator.sample = _collapsed
''',
}


def build(name: str, cell: str) -> Path:
    folder = HERE / name
    folder.mkdir(exist_ok=True)
    nb = nbformat.v4.new_notebook(metadata={"grader": {"assignment": "gan"}})
    nb.cells = [nbformat.v4.new_code_cell("TRAIN = False\nSEED = 0\nDEVICE = 'cpu'",
                                          metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell((REPO / "reference" / "gan.py").read_text()),
                nbformat.v4.new_code_cell(cell.strip() + "\n")]
    for i, c in enumerate(nb.cells):
        c["id"] = f"{name}-{i}"
    nbformat.write(nb, folder / "gan.ipynb")
    (folder / "gan.pt").write_bytes((REPO / "reference/checkpoints/gan.pt").read_bytes())
    return folder


if __name__ == "__main__":
    for name, cell in CELLS.items():
        print("wrote", build(name, cell))
