"""Train the reference DDPM and regenerate every example's checkpoint; report sample FIDs.

Run from the repository root:

    .venv/bin/python assignments/diffusion/make_checkpoints.py                 # everything
    .venv/bin/python assignments/diffusion/make_checkpoints.py --only correct   # some examples
    .venv/bin/python assignments/diffusion/make_checkpoints.py --no-reference

(a) trains ``reference/diffusion.py``'s ``Denoiser()`` with its ``diffusion_loss`` (T = 1000,
    ``linear_beta_schedule(1000)``, Adam 2e-3 with cosine decay, batch 128, 20,000 steps,
    seed 0) on ``digits("train", "continuous") * 2 - 1`` and saves it to
    ``reference/checkpoints/ddpm.pt``;
(b) runs each ``assignments/diffusion/examples/<name>/diffusion.ipynb`` with nbclient in a
    fresh kernel, cwd = its folder, ``TRAIN = True`` as committed, so the example's own
    training cell writes its ``ddpm.pt`` (notebooks are executed in memory, never written back);
(c) prints the FID (grader.metrics, 1,000 samples of the example's own ``sample`` mapped by
    (x + 1) / 2, vs the continuous test digits) of every model.

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
from grader.metrics import fid  # noqa: E402

os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
os.environ["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")

T, STEPS, BATCH, LR = 1000, 20000, 128, 2e-3


def load_reference():
    spec = importlib.util.spec_from_file_location("diffusion_reference",
                                                  ROOT / "reference" / "diffusion.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


R = load_reference()


def train_reference(seed: int, steps: int = STEPS):
    torch.manual_seed(seed)
    x = digits("train", "continuous") * 2 - 1
    betas = R.linear_beta_schedule(T)
    model = R.Denoiser()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for step in range(1, steps + 1):
        model.train()
        loss = R.diffusion_loss(model, x[torch.randint(len(x), (BATCH,))], betas)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 5000 == 0:
            print(f"  reference seed {seed} step {step}: loss {loss.item():.4f}", flush=True)
    return model.eval()


def run_notebook(path: Path, timeout: int = 600) -> list[str]:
    """Execute with TRAIN = True as committed; returns the error lines."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    return [f"{c.get('id')}: {o.ename}: {o.evalue}"[:200] for c in nb.cells
            if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]


def load_example(folder: Path):
    nb = nbformat.read(folder / "diffusion.ipynb", as_version=4)
    ns: dict = {"__name__": f"example_{folder.name}"}
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.get("id") != "train":
            exec(compile(cell.source, f"{folder.name}#{cell.get('id')}", "exec"), ns)  # noqa: S102
    model = ns["Denoiser"]()
    model.load_state_dict(torch.load(folder / "ddpm.pt", weights_only=True))
    return model.eval(), ns["sample"]


def report(name: str, model, sample_fn) -> None:
    torch.manual_seed(0)
    s = sample_fn(model, 1000, R.linear_beta_schedule(T)).double()
    if not torch.isfinite(s).all():
        print(f"{name:30s} samples hold nan/inf", flush=True)
        return
    print(f"{name:30s} FID {fid(digits('test', 'continuous'), (s + 1) / 2):8.2f}  range "
          f"[{s.min():.3f}, {s.max():.3f}]", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*", help="example names to retrain")
    ap.add_argument("--no-reference", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    ckpt = ROOT / "reference" / "checkpoints" / "ddpm.pt"
    if not args.no_reference and not args.only:
        t0 = time.perf_counter()
        torch.save(train_reference(0).state_dict(), ckpt)
        print(f"saved {ckpt.relative_to(ROOT)} ({ckpt.stat().st_size // 1024} KB) in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
    ref = R.Denoiser()
    ref.load_state_dict(torch.load(ckpt, weights_only=True))
    report("reference", ref.eval(), R.sample)
    names = sorted(p.name for p in EXAMPLES.iterdir() if (p / "diffusion.ipynb").exists()) \
        if EXAMPLES.exists() else []
    for name in [n for n in names if not args.only or n in args.only]:
        t0 = time.perf_counter()
        errors = run_notebook(EXAMPLES / name / "diffusion.ipynb")
        print(f"[{name}] trained in {time.perf_counter() - t0:.1f} s"
              f"{'; ERRORS ' + '; '.join(errors) if errors else ''}", flush=True)
        report(name, *load_example(EXAMPLES / name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
