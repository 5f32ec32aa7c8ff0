"""Train the reference MLP and regenerate every example's checkpoint; report test accuracies.

Run from the repository root:

    .venv/bin/python assignments/backprop/make_checkpoints.py                  # everything
    .venv/bin/python assignments/backprop/make_checkpoints.py --skip-training  # evaluate only
    .venv/bin/python assignments/backprop/make_checkpoints.py --reference-seeds 5

(a) trains ``reference/backprop.py``'s ``MLP()`` on ``digits("train", "scaled")`` with the
    template's recipe (SGD, momentum 0.9, lr 0.1, batch 64, 30 epochs; the reference
    ``softmax_cross_entropy`` gradient fed to autograd) for seeds 0..N-1 (the calibration
    runs of the ``mlp_test_accuracy`` anchors) and saves seed 0 as
    ``reference/checkpoints/mlp.pt``;
(b) runs each ``examples/<name>/backprop.ipynb`` with nbclient in a fresh kernel, cwd = its
    folder, ``TRAIN = True`` as committed, so the example's own training cell writes its
    ``mlp.pt`` (notebooks are executed in memory and never written back);
(c) prints the test accuracy of every model (argmax of its logits on the 360 ``scaled`` test
    digits, eval mode, as the grader computes it) and the nearest-class-mean baseline;
(d) re-runs every notebook with ``TRAIN = False`` injected after the parameters cell.

These are trusted course files: nothing here is sandboxed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path

import nbformat
import torch
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
EXAMPLES = HERE / "examples"
sys.path.insert(0, str(ROOT))

from grader.data import digit_labels, digits  # noqa: E402

os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
os.environ["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")

EPOCHS, LR, MOMENTUM, BATCH = 30, 0.1, 0.9, 64


def load_reference():
    spec = importlib.util.spec_from_file_location("backprop_reference",
                                                  ROOT / "reference" / "backprop.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


R = load_reference()


def train_reference(seed: int):
    torch.manual_seed(seed)
    x, y = digits("train", "scaled"), digit_labels("train")
    model = R.MLP()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    for _ in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(x))
        for i in range(0, len(x), BATCH):
            idx = perm[i:i + BATCH]
            logits = model(x[idx])
            _, grad = R.softmax_cross_entropy(logits.detach(), y[idx])
            opt.zero_grad()
            logits.backward(grad)
            opt.step()
    return model.eval()


@torch.no_grad()
def test_accuracy(model) -> float:
    x, y = digits("test", "scaled"), digit_labels("test")
    return float((model.eval()(x).double().argmax(1) == y).double().mean())


def nearest_centroid_accuracy() -> float:
    x, y = digits("train", "scaled").flatten(1).double(), digit_labels("train")
    xt, yt = digits("test", "scaled").flatten(1).double(), digit_labels("test")
    centroids = torch.stack([x[y == c].mean(0) for c in range(10)])
    return float((torch.cdist(xt, centroids).argmin(1) == yt).double().mean())


def load_example(folder: Path):
    """Exec the example's code cells except the training cell, build MLP(), load mlp.pt."""
    nb = nbformat.read(folder / "backprop.ipynb", as_version=4)
    ns: dict = {"__name__": f"example_{folder.name}"}
    for cell in nb.cells:
        if cell.cell_type != "code" or cell.get("id") == "train":
            continue
        exec(compile(cell.source, f"{folder.name}#{cell.get('id')}", "exec"), ns)  # noqa: S102
    model = ns["MLP"]()
    model.load_state_dict(torch.load(folder / "mlp.pt", weights_only=True))
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
    errors, stdout = [], []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                errors.append(f"{cell.get('id')}: {out.ename}: {out.evalue}"[:200])
            elif out.output_type == "stream" and out.name == "stdout":
                stdout.append(out.text)
    return {"wall_s": time.perf_counter() - start, "errors": errors, "stdout": "".join(stdout)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skip-training", action="store_true")
    ap.add_argument("--only", nargs="*", help="example names to (re)train and evaluate")
    ap.add_argument("--reference-seeds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)

    ckpt = ROOT / "reference" / "checkpoints" / "mlp.pt"
    if not args.skip_training and not args.only:
        accs = []
        for seed in range(args.reference_seeds):
            model = train_reference(seed)
            accs.append(test_accuracy(model))
            if seed == 0:
                ckpt.parent.mkdir(parents=True, exist_ok=True)
                torch.save(model.state_dict(), ckpt)
        print(f"reference seeds 0..{len(accs) - 1}: test accuracy "
              f"{[round(a, 4) for a in accs]} (mean {statistics.mean(accs):.4f}, sd "
              f"{statistics.stdev(accs) if len(accs) > 1 else 0.0:.4f}); saved "
              f"{ckpt.relative_to(ROOT)} ({ckpt.stat().st_size // 1024} KB)")
    ref = R.MLP()
    ref.load_state_dict(torch.load(ckpt, weights_only=True))
    print(f"reference/checkpoints/mlp.pt: test accuracy {test_accuracy(ref):.4f}")
    print(f"nearest-class-mean baseline: test accuracy {nearest_centroid_accuracy():.4f}")

    names = sorted(p.name for p in EXAMPLES.iterdir() if (p / "backprop.ipynb").exists())
    names = [n for n in names if not args.only or n in args.only]
    for name in names:
        folder = EXAMPLES / name
        if not args.skip_training:
            run = run_notebook(folder / "backprop.ipynb", train=True)
            tail = run["stdout"].strip().splitlines()[-2:]
            print(f"[{name}] trained in {run['wall_s']:.1f} s"
                  f"{'; ERRORS ' + '; '.join(run['errors']) if run['errors'] else ''}\n    "
                  + "\n    ".join(tail), flush=True)
        model = load_example(folder)
        print(f"  {name:26s} test accuracy {test_accuracy(model):.4f}  mlp.pt "
              f"{(folder / 'mlp.pt').stat().st_size // 1024} KB", flush=True)

    print("\nTRAIN = False runs (fresh kernel, cwd = the notebook's folder):")
    for path in [HERE / "backprop.ipynb"] + [EXAMPLES / n / "backprop.ipynb" for n in names]:
        run = run_notebook(path, train=False)
        label = path.parent.name if path.parent != HERE else "template"
        print(f"  {label:26s} wall {run['wall_s']:5.2f} s  "
              f"{'errors: ' + '; '.join(run['errors']) if run['errors'] else 'no errors'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
