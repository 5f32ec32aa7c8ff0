"""Train the reference flows and regenerate every example's checkpoints; report test NLLs.

Run from the repository root:

    .venv/bin/python assignments/flow/make_checkpoints.py                 # everything
    .venv/bin/python assignments/flow/make_checkpoints.py --only correct   # some examples
    .venv/bin/python assignments/flow/make_checkpoints.py --no-reference

(a) trains ``reference/flow.py``'s ``RealNVP(2)`` on ``moons("train")`` (80 epochs) and
    ``RealNVP(64)`` on the flattened continuous training digits (40 epochs), Adam 2e-3,
    batch 128, seed 0, and saves ``reference/checkpoints/flow_moons.pt`` / ``flow_digits.pt``;
(b) runs each ``assignments/flow/examples/<name>/flow.ipynb`` with nbclient in a fresh
    kernel, cwd = its folder, ``TRAIN = True`` as committed, so the example's own training
    cell writes its checkpoints (notebooks are executed in memory, never written back);
(c) prints the reference's test NLL (moons, nats) and bits/dim (digits, 17 levels).

These are trusted course files: nothing here is sandboxed.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
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

from grader.data import digits, moons  # noqa: E402
from grader.metrics import bits_per_dim  # noqa: E402

os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
os.environ["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
os.environ.setdefault("OMP_NUM_THREADS", "1")   # tiny networks: threads only contend
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

EPOCHS_MOONS, EPOCHS_DIGITS = 80, 40


def load_reference():
    spec = importlib.util.spec_from_file_location("flow_reference", ROOT / "reference" / "flow.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


R = load_reference()


def train_reference(seed: int = 0) -> tuple:
    torch.manual_seed(seed)
    f2 = R.RealNVP(2)
    R.train_flow(f2, moons("train"), EPOCHS_MOONS, seed=seed)
    f64 = R.RealNVP(64)
    R.train_flow(f64, digits("train", "continuous").flatten(1), EPOCHS_DIGITS, seed=seed)
    return f2.eval(), f64.eval()


def run_notebook(path: Path, timeout: int = 600) -> list[str]:
    """Execute with TRAIN = True as committed; returns the error lines."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    return [f"{c.get('id')}: {o.ename}: {o.evalue}"[:200] for c in nb.cells
            if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]


@torch.no_grad()
def report(name: str, f2, f64) -> None:
    nll2 = -float(f2.log_prob(moons("test")).double().mean())
    nll64 = -float(f64.log_prob(digits("test", "continuous").flatten(1)).double().mean())
    print(f"{name:28s} moons {nll2:.4f} nats   digits {bits_per_dim(nll64, 64, 17):.4f} bits/dim "
          f"({nll64:.2f} nats, {nll64 / 64 / math.log(2):.3f} continuous bits/dim)", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*", help="example names to retrain")
    ap.add_argument("--no-reference", action="store_true")
    args = ap.parse_args()
    out = ROOT / "reference" / "checkpoints"
    if not args.no_reference and not args.only:
        t0 = time.perf_counter()
        f2, f64 = train_reference(0)
        torch.save(f2.state_dict(), out / "flow_moons.pt")
        torch.save(f64.state_dict(), out / "flow_digits.pt")
        print(f"saved reference checkpoints in {time.perf_counter() - t0:.1f} s", flush=True)
    f2, f64 = R.RealNVP(2), R.RealNVP(64)
    f2.load_state_dict(torch.load(out / "flow_moons.pt", weights_only=True))
    f64.load_state_dict(torch.load(out / "flow_digits.pt", weights_only=True))
    report("reference", f2.eval(), f64.eval())
    names = sorted(p.name for p in EXAMPLES.iterdir() if (p / "flow.ipynb").exists())
    for name in [n for n in names if not args.only or n in args.only]:
        t0 = time.perf_counter()
        errors = run_notebook(EXAMPLES / name / "flow.ipynb")
        print(f"[{name}] trained in {time.perf_counter() - t0:.1f} s"
              f"{'; ERRORS ' + '; '.join(errors) if errors else ''}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
