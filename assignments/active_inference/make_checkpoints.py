"""Calibration runs of the active-inference lab (it has no checkpoint to train).

Run from the repository root:

    .venv/bin/python assignments/active_inference/make_checkpoints.py            # everything
    .venv/bin/python assignments/active_inference/make_checkpoints.py --seeds 10

(a) prints the T-maze's expected-free-energy margins at the agent's two decisions (the
    reason no correct agent meets an exact tie), for the reference's G and for G without
    the ambiguity term;
(b) plays the grader's T-maze (``grader/envs/tmaze.py``, 40 episodes, as the rubric's
    ``run_agent_tmaze`` item) with the reference agent and with every example's own
    ``run_agent`` (its cells exec'd in this process), for grader seeds 0..N-1, and prints
    the share of episodes that entered the cued rewarding arm: the anchor of ``min_share``;
(c) runs the template and every example notebook with nbclient in a fresh kernel, cwd = its
    folder, once as committed (``TRAIN = True``: the demo cell plays 100 episodes of the
    notebook's own copy of the T-maze) and once with ``TRAIN = False`` injected, as the
    grader does (notebooks are executed in memory and never written back).

These are trusted course files: nothing here is sandboxed.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
EXAMPLES = HERE / "examples"
sys.path.insert(0, str(ROOT))

from grader.envs import TMaze  # noqa: E402

os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
EPISODES = 40


def load_reference():
    spec = importlib.util.spec_from_file_location("active_inference_reference",
                                                  ROOT / "reference" / "active_inference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


R = load_reference()


def margins() -> None:
    env = TMaze(0)
    A, B, C, D = env.A, env.B, env.C, env.D

    def no_ambiguity(q, A, B, C, policy):
        return R.expected_free_energy(q, A, B, C, policy) - sum(
            float(R.entropy_of_columns(A) @ qs) for qs in _beliefs(q, B, policy))

    q0 = R.infer_states(0, A, D)
    q1 = R.infer_states(1, A, B[:, :, 1] @ q0)
    for label, q in (("start (centre)", q0), ("after the cue says left", q1)):
        for name, efe in (("G", R.expected_free_energy), ("G without ambiguity", no_ambiguity)):
            for horizon in (1, 2):
                pols = [list(p) for p in itertools.product(range(4), repeat=horizon)]
                ranked = sorted((efe(q, A, B, C, p), p) for p in pols)
                best = ranked[0]
                other = next(g for g, p in ranked if p[0] != best[1][0])
                print(f"  {label:24s} {name:20s} horizon {horizon}: best {best[1]} "
                      f"G = {best[0]:.4f}; best policy with another first action "
                      f"G = {other:.4f} (margin {other - best[0]:.4f})")


def _beliefs(q, B, policy):
    out = []
    for u in policy:
        q = B[:, :, u] @ q
        out.append(q)
    return out


def example_namespace(folder: Path) -> dict:
    """Exec the example's code cells except the demo and its T-maze copy, in this process."""
    nb = nbformat.read(folder / "active_inference.ipynb", as_version=4)
    ns: dict = {"__name__": f"example_{folder.name}"}
    for cell in nb.cells:
        if cell.cell_type != "code" or cell.get("id") in ("demo", "tmaze"):
            continue
        exec(compile(cell.source, f"{folder.name}#{cell.get('id')}", "exec"), ns)  # noqa: S102
    return ns


def play(run_agent, seed: int) -> tuple[int, int]:
    env = TMaze(seed=seed)
    run_agent(env, EPISODES)
    return env.summary()["correct_arm"], len(env.episodes)


def run_notebook(path: Path, train: bool, timeout: int = 300) -> dict:
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
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--skip-notebooks", action="store_true")
    args = ap.parse_args()

    print("(a) expected-free-energy margins on the T-maze:")
    margins()

    print(f"\n(b) cued rewarding arm, {EPISODES} episodes, grader seeds 0..{args.seeds - 1}:")
    agents = {"reference": R.run_agent}
    names = sorted(p.name for p in EXAMPLES.iterdir() if (p / "active_inference.ipynb").exists())
    for name in names:
        agents[name] = example_namespace(EXAMPLES / name)["run_agent"]
    for name, agent in agents.items():
        results = [play(agent, seed) for seed in range(args.seeds)]
        shares = [c / n for c, n in results]
        print(f"  {name:30s} " + " ".join(f"{c}/{n}" for c, n in results)
              + f"   min share {min(shares):.3f}")

    if args.skip_notebooks:
        return 0
    print("\n(c) notebooks in a fresh kernel:")
    for path in [HERE / "active_inference.ipynb"] + [EXAMPLES / n / "active_inference.ipynb"
                                                     for n in names]:
        label = path.parent.name if path.parent != HERE else "template"
        for train in (True, False):
            run = run_notebook(path, train=train)
            tail = run["stdout"].strip().splitlines()[-1:] if run["stdout"].strip() else []
            print(f"  {label:30s} TRAIN={train!s:5s} wall {run['wall_s']:5.2f} s  "
                  f"{'errors: ' + '; '.join(run['errors']) if run['errors'] else 'no errors'}"
                  f"{'  | ' + tail[0] if tail else ''}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
