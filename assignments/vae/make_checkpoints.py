"""Train the reference VAE and regenerate every example's checkpoint; report test ELBOs.

Run from the repository root:

    .venv/bin/python assignments/vae/make_checkpoints.py            # everything
    .venv/bin/python assignments/vae/make_checkpoints.py --skip-training   # only evaluate/check
    .venv/bin/python assignments/vae/make_checkpoints.py --reference-seeds 5   # calibration runs

(a) trains ``reference/vae.py``'s ``VAE()`` on ``digits("train", "binary")`` (seeded) and
    saves ``reference/checkpoints/vae.pt``;
(b) runs each ``assignments/vae/examples/<name>/vae.ipynb`` with nbclient in a fresh kernel,
    cwd = its folder, ``TRAIN = True`` as committed, so the example's own training cell writes
    its ``vae.pt``; notebooks are executed in memory and never written back;
(c) prints the test-split ELBO (nats per image, mean over 10 draws) of every model, computed
    the way the grader does: the model's ``encoder``/``decoder`` outputs are read as
    (mu, logvar) and logits and put through the reference formulas in float64. For examples it
    also prints the mean of the student's own ``elbo`` and the IWAE bound (K = 256, 100 images);
(d) re-runs every notebook with ``TRAIN = False`` injected after the parameters cell (as the
    grader does) in a fresh kernel and reports errors and times.

These are trusted course files: nothing here is sandboxed.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from datetime import datetime
from pathlib import Path

import nbformat
import torch
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
EXAMPLES = HERE / "examples"
sys.path.insert(0, str(ROOT))

from grader.data import digits  # noqa: E402

# Kernels start the "python" of PATH: make it this interpreter's, with the repo importable.
os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
os.environ["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")

REF_EPOCHS = 600
REF_LR = 1e-3
REF_BATCH = 128
EVAL_DRAWS = 10
EVAL_SEED = 1234


def load_reference():
    import importlib.util

    spec = importlib.util.spec_from_file_location("vae_reference", ROOT / "reference" / "vae.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


R = load_reference()


# ----------------------------------------------------------------------------- (a) reference
def train_reference(seed: int, epochs: int = REF_EPOCHS, verbose: bool = True):
    """Adam, lr 1e-3 with cosine decay to 0, batch 128, maximising the reference ELBO."""
    torch.manual_seed(seed)
    x = digits("train", "binary")
    model = R.VAE()
    opt = torch.optim.Adam(model.parameters(), lr=REF_LR)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(len(x))
        total = 0.0
        for i in range(0, len(x), REF_BATCH):
            batch = x[perm[i:i + REF_BATCH]]
            loss = -R.elbo(batch, model.encoder, model.decoder).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(batch)
        sched.step()
        if verbose and (epoch == 1 or epoch % 50 == 0):
            print(f"  reference seed {seed} epoch {epoch:4d}  train ELBO {-total / len(x):8.3f}",
                  flush=True)
    return model.eval()


# ----------------------------------------------------------------------------- (c) evaluation
@torch.no_grad()
def grader_view_elbo(model, x, draws: int = EVAL_DRAWS, seed: int = EVAL_SEED) -> float:
    """Mean ELBO (nats per image) by the reference formulas from the model's outputs, float64."""
    gen = torch.Generator().manual_seed(seed)
    mu, logvar = (t.double() for t in model.encoder(x))
    values = []
    for _ in range(draws):
        eps = torch.randn(mu.shape, generator=gen, dtype=torch.float64)
        z = mu + torch.exp(0.5 * logvar) * eps
        logits = model.decoder(z.float()).double()
        values.append(R.bernoulli_log_likelihood(x.double(), logits) - R.gaussian_kl(mu, logvar))
    return float(torch.stack(values).mean())


@torch.no_grad()
def grader_view_iwae(model, x, k: int = 256, seed: int = EVAL_SEED) -> float:
    """Importance-weighted bound with K samples from q, mean over images (nats)."""
    gen = torch.Generator().manual_seed(seed)
    mu, logvar = (t.double() for t in model.encoder(x))
    eps = torch.randn((k, *mu.shape), generator=gen, dtype=torch.float64)
    z = mu + torch.exp(0.5 * logvar) * eps
    logits = model.decoder(z.reshape(-1, mu.shape[1]).float()).double()
    logits = logits.reshape(k, *x.shape)
    log_px = R.bernoulli_log_likelihood(x.double().expand(k, *x.shape).reshape(-1, *x.shape[1:]),
                                        logits.reshape(-1, *x.shape[1:])).reshape(k, -1)
    log_pz = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(-1)
    log_qz = -0.5 * (eps.pow(2) + math.log(2 * math.pi) + logvar).sum(-1)
    return float((torch.logsumexp(log_px + log_pz - log_qz, 0) - math.log(k)).mean())


@torch.no_grad()
def own_elbo(elbo_fn, model, x, draws: int = EVAL_DRAWS, seed: int = EVAL_SEED) -> float:
    torch.manual_seed(seed)
    return float(torch.stack([elbo_fn(x, model.encoder, model.decoder)
                              for _ in range(draws)]).mean())


def load_example(folder: Path):
    """Exec the example's code cells (not the training cell; TRAIN = False) in a new namespace."""
    nb = nbformat.read(folder / "vae.ipynb", as_version=4)
    ns: dict = {"__name__": f"example_{folder.name}"}
    for cell in nb.cells:
        if cell.cell_type != "code" or cell.get("id") == "train":
            continue
        code = compile(cell.source, f"{folder.name}/vae.ipynb#{cell.get('id')}", "exec")
        exec(code, ns)  # noqa: S102 - trusted course files
        if "parameters" in cell.metadata.get("tags", []):
            ns["TRAIN"] = False
    model = ns["VAE"]()
    model.load_state_dict(torch.load(folder / "vae.pt", weights_only=True))
    return ns, model.eval()


# ----------------------------------------------------------------------------- notebooks
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
                            record_timing=True, resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    wall = time.perf_counter() - start
    errors, cells_s, imports_s, stdout = [], 0.0, 0.0, []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        timing = cell.metadata.get("execution", {})
        if "iopub.execute_input" in timing and "shell.execute_reply" in timing:
            t0 = datetime.fromisoformat(timing["iopub.execute_input"].replace("Z", "+00:00"))
            t1 = datetime.fromisoformat(timing["shell.execute_reply"].replace("Z", "+00:00"))
            dt = (t1 - t0).total_seconds()
            cells_s += dt
            if cell.get("id") == "imports":
                imports_s = dt
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                errors.append(f"{cell.get('id')}: {out.ename}: {out.evalue}"[:200])
            elif out.output_type == "stream" and out.name == "stdout":
                stdout.append(out.text)
    return {"wall_s": wall, "cells_s": cells_s, "imports_s": imports_s,
            "after_imports_s": cells_s - imports_s, "errors": errors, "stdout": "".join(stdout)}


def example_names(only: list[str] | None) -> list[str]:
    names = sorted(p.name for p in EXAMPLES.iterdir() if (p / "vae.ipynb").exists())
    return [n for n in names if not only or n in only]


# ----------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skip-training", action="store_true",
                    help="retrain nothing; evaluate the committed checkpoints and check runs")
    ap.add_argument("--only", nargs="*", help="example names to (re)train and evaluate")
    ap.add_argument("--no-reference", action="store_true", help="do not retrain the reference")
    ap.add_argument("--reference-seeds", type=int, default=0,
                    help="also train this many extra reference seeds (1..N) for calibration; "
                         "only seed 0 is saved")
    args = ap.parse_args()

    torch.set_num_threads(min(4, torch.get_num_threads()))
    x_test = digits("test", "binary")
    ref_ckpt = ROOT / "reference" / "checkpoints" / "vae.pt"
    results: dict[str, dict] = {}

    if not args.skip_training and not args.no_reference and not args.only:
        t0 = time.perf_counter()
        model = train_reference(0)
        ref_ckpt.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), ref_ckpt)
        print(f"saved {ref_ckpt.relative_to(ROOT)} ({ref_ckpt.stat().st_size // 1024} KB) in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
    if ref_ckpt.exists():
        ref = R.VAE()
        ref.load_state_dict(torch.load(ref_ckpt, weights_only=True))
        ref.eval()
        results["reference"] = {"test_elbo": grader_view_elbo(ref, x_test),
                                "iwae256_100": grader_view_iwae(ref, x_test[:100]),
                                "elbo_100": grader_view_elbo(ref, x_test[:100])}
    for seed in range(1, args.reference_seeds + 1):
        extra = train_reference(seed, verbose=False)
        value = grader_view_elbo(extra, x_test)
        results[f"reference_seed{seed}"] = {"test_elbo": value}
        print(f"  reference seed {seed}: test ELBO {value:.3f}", flush=True)

    names = example_names(args.only)
    for name in names:
        folder = EXAMPLES / name
        if not args.skip_training:
            run = run_notebook(folder / "vae.ipynb", train=True)
            tail = run["stdout"].strip().splitlines()[-3:]
            print(f"[{name}] trained in {run['wall_s']:.1f} s (cells {run['cells_s']:.1f} s)"
                  f"{'; ERRORS ' + '; '.join(run['errors']) if run['errors'] else ''}\n    "
                  + "\n    ".join(tail), flush=True)
        ns, model = load_example(folder)
        results[name] = {
            "test_elbo": grader_view_elbo(model, x_test),
            "own_elbo": own_elbo(ns["elbo"], model, x_test),
            "iwae256_100": grader_view_iwae(model, x_test[:100]),
            "elbo_100": grader_view_elbo(model, x_test[:100]),
            "vae_pt_kb": round((folder / "vae.pt").stat().st_size / 1024, 1),
        }

    print("\nTest split, nats per image (grader-view ELBO: reference formulas on the model's "
          "encoder/decoder outputs, mean of 10 draws; own = the example's elbo; IWAE K=256 and "
          "ELBO on the first 100 test images)")
    print(f"{'model':22s} {'test ELBO':>10s} {'own elbo':>10s} {'ELBO@100':>10s} "
          f"{'IWAE256@100':>12s} {'vae.pt KB':>10s}")

    def fmt(r: dict, key: str, width: int) -> str:
        v = r.get(key)
        return f"{v:{width}.3f}" if isinstance(v, float) else f"{'-':>{width}s}"

    for name, r in results.items():
        print(f"{name:22s} {fmt(r, 'test_elbo', 10)} {fmt(r, 'own_elbo', 10)} "
              f"{fmt(r, 'elbo_100', 10)} {fmt(r, 'iwae256_100', 12)} "
              f"{str(r.get('vae_pt_kb', '-')):>10s}")

    print("\nTRAIN = False runs (fresh kernel, cwd = the notebook's folder):")
    for path in [HERE / "vae.ipynb"] + [EXAMPLES / n / "vae.ipynb" for n in names]:
        run = run_notebook(path, train=False)
        label = path.parent.name if path.parent != HERE else "template"
        print(f"  {label:22s} wall {run['wall_s']:5.2f} s  imports {run['imports_s']:4.2f} s  "
              f"other cells {run['after_imports_s']:4.2f} s  "
              f"{'errors: ' + '; '.join(run['errors']) if run['errors'] else 'no errors'}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
