"""Baseline submissions for `grader calibrate flow`: densities that must earn no NLL credit.

    .venv/bin/python assignments/flow/baselines/make_baselines.py

Each is the reference solution with one cell appended that replaces `RealNVP.forward` by a
transform with an exact log-determinant (its checkpoints are the reference's, so
`RealNVP(2)` and `RealNVP(64)` still load and the grader's logdet verification passes):

- `standard_normal`: the identity: the data scored by N(0, I) itself;
- `independent_gaussian`: z = (x - mean) / std per dimension with the training split's mean
  and std (logdet -sum log std): independent Gaussian dimensions, no structure.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]

CELLS = {
    "standard_normal": '''
RealNVP.forward = lambda self, x: (x, torch.zeros(x.shape[0], dtype=x.dtype, device=x.device))
''',
    "independent_gaussian": '''
from grader.data import digits as _digits, moons as _moons

_STATS = {}
for _x in (_moons("train"), _digits("train", "continuous").flatten(1)):
    _STATS[_x.shape[1]] = (_x.double().mean(0), _x.double().std(0))


def _independent(self, x):
    mean, std = (v.to(x.dtype) for v in _STATS[x.shape[1]])
    return (x - mean) / std, -torch.log(std).sum().expand(x.shape[0])


RealNVP.forward = _independent
''',
}


def build(name: str, cell: str) -> Path:
    folder = HERE / name
    folder.mkdir(exist_ok=True)
    nb = nbformat.v4.new_notebook(metadata={"grader": {"assignment": "flow"}})
    nb.cells = [nbformat.v4.new_code_cell("TRAIN = False\nSEED = 0\nDEVICE = 'cpu'",
                                          metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell((REPO / "reference" / "flow.py").read_text()),
                nbformat.v4.new_code_cell(cell.strip() + "\n")]
    for i, c in enumerate(nb.cells):
        c["id"] = f"{name}-{i}"
    nbformat.write(nb, folder / "flow.ipynb")
    for ckpt in ("flow_moons.pt", "flow_digits.pt"):
        (folder / ckpt).write_bytes((REPO / "reference" / "checkpoints" / ckpt).read_bytes())
    return folder


if __name__ == "__main__":
    for name, cell in CELLS.items():
        print("wrote", build(name, cell))
