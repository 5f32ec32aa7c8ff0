"""Train the reference GAN and regenerate every example's checkpoint; report sample FIDs.

Run from the repository root:

    .venv/bin/python assignments/gan/make_checkpoints.py                 # everything
    .venv/bin/python assignments/gan/make_checkpoints.py --only correct   # some examples
    .venv/bin/python assignments/gan/make_checkpoints.py --no-reference

(a) trains ``reference/gan.py``'s ``Generator()``/``Discriminator()`` with its ``train_step``
    (Adam 2e-4, betas (0.5, 0.999), batch 64, 600 epochs, seed 0) on
    ``digits("train", "continuous")`` and saves the generator to
    ``reference/checkpoints/gan.pt``;
(b) runs each ``assignments/gan/examples/<name>/gan.ipynb`` with nbclient in a fresh kernel,
    cwd = its folder, ``TRAIN = True`` as committed, so the example's own training cell writes
    its ``gan.pt`` (notebooks are executed in memory, never written back);
(c) prints the FID (grader.metrics, 1,000 samples vs the continuous test digits) and the
    class counts of every generator.

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
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
EXAMPLES = HERE / "examples"
sys.path.insert(0, str(ROOT))

from grader.data import digits  # noqa: E402
from grader.metrics import class_coverage, fid  # noqa: E402

os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
os.environ["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")

EPOCHS, BATCH, LR = 600, 64, 2e-4


def load_reference():
    spec = importlib.util.spec_from_file_location("gan_reference", ROOT / "reference" / "gan.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


R = load_reference()


def train_reference(seed: int, epochs: int = EPOCHS):
    torch.manual_seed(seed)
    x = digits("train", "continuous")
    G, D = R.Generator(), R.Discriminator()
    opt_g = torch.optim.Adam(G.parameters(), lr=LR, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=LR, betas=(0.5, 0.999))
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(len(x))
        for i in range(0, len(x) - BATCH + 1, BATCH):
            losses = R.train_step(G, D, opt_g, opt_d, x[perm[i:i + BATCH]])
        if epoch % 100 == 0:
            print(f"  reference seed {seed} epoch {epoch}: {losses}", flush=True)
    return G.eval()


def run_notebook(path: Path, timeout: int = 600) -> list[str]:
    """Execute with TRAIN = True as committed; returns the error lines."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    return [f"{c.get('id')}: {o.ename}: {o.evalue}"[:200] for c in nb.cells
            if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]


def load_generator(folder: Path):
    nb = nbformat.read(folder / "gan.ipynb", as_version=4)
    ns: dict = {"__name__": f"example_{folder.name}"}
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.get("id") != "train":
            exec(compile(cell.source, f"{folder.name}#{cell.get('id')}", "exec"), ns)  # noqa: S102
    G = ns["Generator"]()
    G.load_state_dict(torch.load(folder / "gan.pt", weights_only=True))
    return G.eval()


def report(name: str, G) -> None:
    torch.manual_seed(0)
    s = G.sample(1000).double()
    cov = class_coverage(s, 0.25)
    print(f"{name:26s} FID {fid(digits('test', 'continuous'), s):8.2f}  classes {cov.covered} "
          f"{list(cov.counts)}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*", help="example names to retrain")
    ap.add_argument("--no-reference", action="store_true")
    args = ap.parse_args()
    ckpt = ROOT / "reference" / "checkpoints" / "gan.pt"
    if not args.no_reference and not args.only:
        t0 = time.perf_counter()
        torch.save(train_reference(0).state_dict(), ckpt)
        print(f"saved {ckpt.relative_to(ROOT)} ({ckpt.stat().st_size // 1024} KB) in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
    ref = R.Generator()
    ref.load_state_dict(torch.load(ckpt, weights_only=True))
    report("reference", ref.eval())
    names = sorted(p.name for p in EXAMPLES.iterdir() if (p / "gan.ipynb").exists())
    for name in [n for n in names if not args.only or n in args.only]:
        t0 = time.perf_counter()
        errors = run_notebook(EXAMPLES / name / "gan.ipynb")
        print(f"[{name}] trained in {time.perf_counter() - t0:.1f} s"
              f"{'; ERRORS ' + '; '.join(errors) if errors else ''}", flush=True)
        report(name, load_generator(EXAMPLES / name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
