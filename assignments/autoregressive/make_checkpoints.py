"""Train the reference PixelAR and regenerate every example's checkpoint; report test NLLs.

Run from the repository root:

    .venv/bin/python assignments/autoregressive/make_checkpoints.py                  # everything
    .venv/bin/python assignments/autoregressive/make_checkpoints.py --skip-training  # evaluate only
    .venv/bin/python assignments/autoregressive/make_checkpoints.py --reference-seeds 5

(a) trains ``reference/autoregressive.py``'s ``PixelAR()`` (MADE) on ``digits("train",
    "binary")`` with seeds 0..N-1 (the calibration runs of the ``pixel_ar_test_nll`` anchors)
    and saves seed 0 as ``reference/checkpoints/pixel_ar.pt``;
(b) runs each ``examples/<name>/autoregressive.ipynb`` with nbclient in a fresh kernel, cwd =
    its folder, ``TRAIN = True`` as committed, so the example's own training cell writes its
    ``pixel_ar.pt`` (notebooks are executed in memory and never written back);
(c) prints the test NLL (nats per image) of every model computed from its logits as the grader
    does, and the independent-pixel baseline (Bernoulli with the train pixel frequencies).

These are trusted course files: nothing here is sandboxed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

import nbformat
import torch
import torch.nn.functional as F
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
EXAMPLES = HERE / "examples"
sys.path.insert(0, str(ROOT))

from grader.data import digits  # noqa: E402

os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
os.environ["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")

EPOCHS, LR, BATCH = 100, 3e-3, 64


def load_reference():
    spec = importlib.util.spec_from_file_location("ar_reference",
                                                  ROOT / "reference" / "autoregressive.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


R = load_reference()


def test_nll(model) -> float:
    """Mean over the test split of -sum_i log Bernoulli(x_i; sigmoid(logit_i)), float64."""
    x = digits("test", "binary")
    with torch.no_grad():
        logits = model(x).double()
    return float(F.binary_cross_entropy_with_logits(logits, x.double(), reduction="none")
                 .flatten(1).sum(1).mean())


def independent_pixels() -> float:
    p = digits("train", "binary").double().mean(0).clamp(1e-3, 1 - 1e-3)
    x = digits("test", "binary").double()
    return float(-(x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1).mean())


def train_reference(seed: int):
    torch.manual_seed(seed)
    x = digits("train", "binary")
    model = R.PixelAR()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, EPOCHS)
    for _ in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(x))
        for i in range(0, len(x), BATCH):
            loss = -model.log_prob(x[perm[i:i + BATCH]]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return model.eval()


def run_notebook(path: Path, train: bool, timeout: int = 600) -> dict:
    """Execute in a fresh kernel, cwd = the notebook's folder; never writes the file back."""
    nb = nbformat.read(path, as_version=4)
    if not train:
        index = next(i for i, c in enumerate(nb.cells)
                     if "parameters" in c.metadata.get("tags", []))
        nb.cells.insert(index + 1, nbformat.v4.new_code_cell(
            "# Parameters set by the grader\nTRAIN = False",
            metadata={"tags": ["injected-parameters"]}))
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    errors = [f"{c.get('id')}: {o.ename}: {o.evalue}"[:200] for c in nb.cells
              if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    return {"wall_s": time.perf_counter() - start, "errors": errors}


def load_example(folder: Path):
    """The example's PixelAR with its checkpoint (trusted course code, run unsandboxed)."""
    nb = nbformat.read(folder / "autoregressive.ipynb", as_version=4)
    ns: dict = {}
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.get("id") != "train":
            exec(compile(cell.source, str(folder), "exec"), ns)  # noqa: S102 - course code
    model = ns["PixelAR"]()
    model.load_state_dict(torch.load(folder / "pixel_ar.pt", weights_only=True))
    return model.eval()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skip-training", action="store_true")
    ap.add_argument("--reference-seeds", type=int, default=5)
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args()
    names = sorted(p.name for p in EXAMPLES.iterdir() if (p / "autoregressive.ipynb").exists())
    names = [n for n in names if not args.only or n in args.only]
    print(f"independent-pixel baseline: {independent_pixels():.3f} nats per test image; "
          f"uniform: {64 * 0.6931471805599453:.3f}")
    if not args.skip_training:
        values = []
        for seed in range(args.reference_seeds):
            t0 = time.perf_counter()
            model = train_reference(seed)
            values.append(test_nll(model))
            print(f"reference seed {seed}: test NLL {values[-1]:.3f} "
                  f"({time.perf_counter() - t0:.1f} s)", flush=True)
            if seed == 0:
                out = ROOT / "reference" / "checkpoints" / "pixel_ar.pt"
                torch.save(model.state_dict(), out)
                print(f"  saved {out} ({out.stat().st_size / 1024:.0f} KB)")
        print("reference test NLLs:", [round(v, 3) for v in values])
        for name in names:
            run = run_notebook(EXAMPLES / name / "autoregressive.ipynb", train=True)
            print(f"trained {name}: {run['wall_s']:.1f} s "
                  f"{'errors: ' + '; '.join(run['errors']) if run['errors'] else ''}", flush=True)
    for name in names:
        folder = EXAMPLES / name
        kb = (folder / "pixel_ar.pt").stat().st_size / 1024
        print(f"{name:30s} test NLL {test_nll(load_example(folder)):8.3f}   pixel_ar.pt {kb:.0f} KB")
    for path in [HERE / "autoregressive.ipynb"] + [EXAMPLES / n / "autoregressive.ipynb"
                                                   for n in names]:
        run = run_notebook(path, train=False)
        print(f"TRAIN=False {path.parent.name:30s} {run['wall_s']:5.2f} s "
              f"{'; '.join(run['errors']) or 'no errors'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
