"""`grader batch` side by side with nbgrader's `autograde` on the backprop examples.

    .venv/bin/python benchmarks/nbgrader_compare.py [--env DIR] [--workers 1] [--keep]

1. Creates (once) a separate virtual environment with nbgrader (``python3 -m venv`` +
   ``pip install nbgrader``) under ``--env`` (default ``~/.cache/grader-benchmarks/
   nbgrader-env``) and registers this repository's Python (torch, grader.data) as the
   kernelspec ``grader-torch`` inside it (``ipykernel install --prefix <env>``).
2. Builds an nbgrader course in a temp folder: ``source/backprop/backprop.ipynb`` is the
   backprop template's structure with nbgrader metadata: solution cells holding the
   reference solution (``reference/backprop.py``) between ``### BEGIN SOLUTION`` markers,
   and autograded test cells with plain assertions equivalent to the rubric's items as far
   as asserts can express them (fixed random inputs instead of hypothesis, autograd /
   ``F.conv2d`` / a log-sum-exp reference, logits of +-1e4, the MLP's test accuracy from
   ``mlp.pt`` with the rubric's proportional partial credit as the cell's value); the
   rubric's hidden items are ``### BEGIN HIDDEN TESTS`` blocks. ``TRAIN = False`` is set in
   the locked parameters cell (the grader injects it). Then ``nbgrader generate_assignment``.
3. One submission per example (correct, different, bug_*): the released notebook with its
   solution cells replaced by the example's cells at the same place, and its ``mlp.pt``.
4. Times ``nbgrader autograde backprop --force`` and reads the scores with
   ``nbgrader export``; times ``grader.batch.run_batch`` on the same examples (``--workers``,
   default 1: nbgrader grades one notebook at a time). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from grader.authoring.examples import copy_submission

REPO = Path(__file__).resolve().parent.parent
LAB = "backprop"
EXAMPLES = REPO / "assignments" / LAB / "examples"
TEMPLATE = REPO / "assignments" / LAB / f"{LAB}.ipynb"
KERNEL = "grader-torch"

# template cell index -> (grade id, reference source); these are the solution cells
SOLUTIONS = {5: "hidden", 6: "linear_forward", 7: "linear_backward", 9: "relu_backward",
             11: "softmax_cross_entropy", 13: "conv2d_forward", 15: "MLP", 17: "hyper"}

# tests inserted after the template cell of that index: (grade id, points, source)
T = "torch.float64"
TESTS: dict[int, list[tuple[str, int, str]]] = {
    6: [("linear_forward_matches_reference", 1, f"""\
torch.manual_seed(0)
for B, I, O in [(1, 1, 1), (4, 3, 5), (16, 10, 7), (2, 8, 8)]:
    x = 5 * torch.randn(B, I, dtype={T})
    W, b = 3 * torch.randn(O, I, dtype={T}), 3 * torch.randn(O, dtype={T})
    y = linear_forward(x, W, b)
    assert y.shape == (B, O), y.shape
    assert torch.allclose(y, x @ W.T + b, rtol=1e-6, atol=1e-8)
""")],
    7: [("linear_backward", 3, f"""\
def _autograd_linear(g, x, W, b):
    x, W, b = (t.clone().requires_grad_(True) for t in (x, W, b))
    (x @ W.T + b).backward(g)
    return x.grad, W.grad, b.grad

torch.manual_seed(1)
for B, I, O in [(1, 3, 2), (5, 4, 6), (8, 2, 7), (3, 8, 1)]:
    x, W = 5 * torch.randn(B, I, dtype={T}), 3 * torch.randn(O, I, dtype={T})
    b = torch.randn(O, dtype={T})
    g = 3 * torch.randn(B, O, dtype={T})
    got, want = linear_backward(g, x, W), _autograd_linear(g, x, W, b)
    assert len(got) == 3
    for a, e in zip(got, want):
        assert a.shape == e.shape, (a.shape, e.shape)
        assert torch.allclose(a, e, rtol=1e-6, atol=1e-8)
"""), ("linear_backward_square", 1, f"""\
### BEGIN HIDDEN TESTS
def _autograd_linear(g, x, W, b):
    x, W, b = (t.clone().requires_grad_(True) for t in (x, W, b))
    (x @ W.T + b).backward(g)
    return x.grad, W.grad, b.grad

torch.manual_seed(2)
for B, N in [(2, 2), (3, 4), (8, 8), (5, 3)]:
    x, W = 5 * torch.randn(B, N, dtype={T}), 3 * torch.randn(N, N, dtype={T})
    b = torch.randn(N, dtype={T})
    g = 3 * torch.randn(B, N, dtype={T})
    for a, e in zip(linear_backward(g, x, W), _autograd_linear(g, x, W, b)):
        assert a.shape == e.shape and torch.allclose(a, e, rtol=1e-6, atol=1e-8)
### END HIDDEN TESTS
""")],
    9: [("relu_backward", 2, f"""\
torch.manual_seed(3)
for B, D in [(1, 1), (4, 16), (8, 5)]:
    x = 5 * torch.randn(B, D, dtype={T})
    x = torch.where(x.abs() < 1e-3, torch.full_like(x, 0.5), x)   # never exactly 0
    g = 3 * torch.randn(B, D, dtype={T})
    xr = x.clone().requires_grad_(True)
    torch.clamp(xr, min=0).backward(g)
    got = relu_backward(g, x)
    assert got.shape == x.shape and torch.allclose(got, xr.grad)
""")],
    11: [("softmax_matches_reference", 2, f"""\
def _softmax_reference(z, t):
    z = z.detach().to(torch.float64).requires_grad_(True)
    loss = (torch.logsumexp(z, 1) - z.gather(1, t.view(-1, 1)).squeeze(1)).mean()
    loss.backward()
    return loss.detach(), z.grad

def _check_softmax(z, t):
    loss, grad = softmax_cross_entropy(z, t)
    ref_loss, ref_grad = _softmax_reference(z, t)
    assert loss.dim() == 0 and grad.shape == z.shape
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    # float32 rounds a loss of 1e4 to ~1e-3 and the gradient to ~1e-5 (the reference: float64)
    rtol, atol = (1e-6, 1e-8) if z.dtype == torch.float64 else (1e-4, 1e-4)
    assert torch.allclose(loss.to(torch.float64), ref_loss, rtol=rtol, atol=atol)
    assert torch.allclose(grad.to(torch.float64), ref_grad, rtol=rtol, atol=atol)

torch.manual_seed(4)
for B in (1, 5, 16):
    _check_softmax(20 * (2 * torch.rand(B, 10, dtype={T}) - 1), torch.randint(0, 10, (B,)))
"""), ("softmax_stable", 2, f"""\
torch.manual_seed(5)
for B in (1, 4, 8):
    for dtype in (torch.float32, {T}):
        z = (1e4 * torch.randint(-1, 2, (B, 10))).to(dtype) + torch.rand(B, 10, dtype=dtype)
        _check_softmax(z, torch.randint(0, 10, (B,)))
""")],
    13: [("conv2d_matches_reference", 2, f"""\
import torch.nn.functional as F

torch.manual_seed(7)
for B, C, O, K, H, W in [(1, 1, 1, 1, 3, 3), (2, 3, 4, 3, 8, 6), (3, 2, 2, 2, 5, 7)]:
    x, w = 3 * torch.randn(B, C, H, W, dtype={T}), 2 * torch.randn(O, C, K, K, dtype={T})
    b = 2 * torch.randn(O, dtype={T})
    got, want = conv2d_forward(x, w, b), F.conv2d(x, w, b)
    assert got.shape == want.shape and torch.allclose(got, want, rtol=1e-6, atol=1e-8)
""")],
    # conv2d_stride_padding is inserted after cell 13 too (below), the MLP tests at the end
}
TESTS[11].append(("softmax_more_classes", 1, f"""\
### BEGIN HIDDEN TESTS
torch.manual_seed(6)
for B in (1, 7, 32):
    _check_softmax(50 * (2 * torch.rand(B, 32, dtype={T}) - 1), torch.randint(0, 10, (B,)))
### END HIDDEN TESTS
"""))
TESTS[13].append(("conv2d_stride_padding", 2, f"""\
### BEGIN HIDDEN TESTS
torch.manual_seed(8)
for B, C, O, K, H, W, S, P in [(1, 2, 3, 3, 8, 8, 2, 1), (2, 3, 2, 2, 7, 5, 3, 2),
                               (1, 1, 1, 3, 3, 4, 1, 2), (2, 2, 2, 1, 6, 6, 2, 0)]:
    x, w = 3 * torch.randn(B, C, H, W, dtype={T}), 2 * torch.randn(O, C, K, K, dtype={T})
    b = 2 * torch.randn(O, dtype={T})
    got, want = conv2d_forward(x, w, b, S, P), F.conv2d(x, w, b, stride=S, padding=P)
    assert got.shape == want.shape and torch.allclose(got, want, rtol=1e-6, atol=1e-8)
### END HIDDEN TESTS
"""))
END_TESTS = [("mlp_shapes", 1, """\
_model = MLP()
_model.load_state_dict(torch.load("mlp.pt", weights_only=True))
_model.eval()
for B in (1, 7, 32):
    with torch.no_grad():
        out = _model(torch.rand(B, 1, 8, 8))
    assert out.shape == (B, 10) and torch.isfinite(out).all()
"""), ("mlp_test_accuracy", 3, """\
### BEGIN HIDDEN TESTS
from grader.data import digit_labels, digits

_model = MLP()
_model.load_state_dict(torch.load("mlp.pt", weights_only=True))
_model.eval()
with torch.no_grad():
    _pred = _model(digits("test", "scaled")).argmax(1)
_acc = (_pred == digit_labels("test")).float().mean().item()
# the rubric's proportional credit: 0 at accuracy 0.90, full at 0.961 (the cell's value)
round(3 * min(1.0, max(0.0, (_acc - 0.90) / (0.961 - 0.90))), 4)
### END HIDDEN TESTS
""")]


def reference_sources() -> dict[str, str]:
    """Each solution cell's reference code (from reference/backprop.py)."""
    text = (REPO / "reference" / f"{LAB}.py").read_text()
    tree = ast.parse(text)
    defs = {n.name: ast.get_source_segment(text, n) for n in tree.body
            if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    out = {name: defs[name] for name in ("linear_forward", "linear_backward", "relu_backward",
                                         "softmax_cross_entropy", "conv2d_forward")}
    out["MLP"] = defs["MLP"].replace("CLASSES", "10")
    out["hidden"] = "HIDDEN = 128      # hidden width of your MLP; you may change it"
    return out


def meta(grade_id: str, *, solution: bool = False, points: int | None = None) -> dict:
    m = {"grade": points is not None, "grade_id": grade_id, "locked": not solution,
         "schema_version": 3, "solution": solution}
    if points is not None:
        m["points"] = points
    return {"nbgrader": m}


def source_notebook() -> nbformat.NotebookNode:
    tpl = nbformat.read(TEMPLATE, as_version=4)
    refs = reference_sources()
    cells = []
    for k, cell in enumerate(tpl.cells):
        if k in SOLUTIONS:
            gid = SOLUTIONS[k]
            body = tpl.cells[k].source if gid == "hyper" else refs[gid]
            cell = nbformat.v4.new_code_cell(
                f"### BEGIN SOLUTION\n{body}\n### END SOLUTION",
                metadata=meta(f"solution_{gid}", solution=True))
        elif "parameters" in cell.get("metadata", {}).get("tags", []):
            cell = nbformat.v4.new_code_cell(
                'TRAIN = False     # the grader injects this too (mlp.pt is submitted)\n'
                'SEED = 0\nDEVICE = "cpu"', metadata={**meta("parameters"),
                                                      "tags": ["parameters"]})
        cells.append(cell)
        for gid, points, src in TESTS.get(k, []):
            cells.append(nbformat.v4.new_code_cell(src, metadata=meta(gid, points=points)))
    for gid, points, src in END_TESTS:
        cells.append(nbformat.v4.new_code_cell(src, metadata=meta(gid, points=points)))
    nb = nbformat.v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"name": KERNEL, "display_name": "grader torch", "language": "python"},
        "language_info": {"name": "python"}})
    return nb


def student_notebook(released: Path, example: str) -> nbformat.NotebookNode:
    """The released notebook with its solution cells from the example's notebook."""
    nb = nbformat.read(released, as_version=4)
    ex = nbformat.read(EXAMPLES / example / f"{LAB}.ipynb", as_version=4)
    by_id = {f"solution_{gid}": k for k, gid in SOLUTIONS.items()}
    for cell in nb.cells:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")
        if gid in by_id:
            cell.source = ex.cells[by_id[gid]].source
    return nb


def ensure_env(env: Path) -> Path:
    """The nbgrader virtual environment (made once) with the grader-torch kernel in it."""
    py = env / "bin" / "python"
    if not (env / "bin" / "nbgrader").exists():
        print(f"creating {env} (python3 -m venv; pip install nbgrader)", file=sys.stderr)
        subprocess.run(["python3", "-m", "venv", str(env)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "nbgrader"], check=True)
    if not (env / "share" / "jupyter" / "kernels" / KERNEL).exists():
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--prefix", str(env),
                        "--name", KERNEL, "--display-name", "grader torch"], check=True,
                       capture_output=True)
    return env


def nbgrader(env: Path, course: Path, *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    clean["PATH"] = f"{env / 'bin'}:{clean.get('PATH', '')}"
    proc = subprocess.run([str(env / "bin" / "nbgrader"), *args], cwd=course, env=clean,
                          capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"nbgrader {' '.join(args)} failed ({proc.returncode}):\n"
                         f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", type=Path,
                        default=Path.home() / ".cache" / "grader-benchmarks" / "nbgrader-env",
                        help="the nbgrader virtual environment (made if missing)")
    parser.add_argument("--workers", type=int, default=1, help="grader batch workers")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = parser.parse_args()
    from grader.batch import run_batch

    env = ensure_env(args.env.expanduser())
    print(f"nbgrader environment: {env}", file=sys.stderr)
    root = Path(tempfile.mkdtemp(prefix="grader-vs-nbgrader-"))
    print(f"working in {root}", file=sys.stderr)
    names = sorted((p.name for p in EXAMPLES.iterdir() if p.is_dir()),
                   key=lambda k: (k != "correct", k))
    try:
        course = root / "course"
        (course / "source" / LAB).mkdir(parents=True)
        (course / "nbgrader_config.py").write_text(
            "c = get_config()\n"
            "c.CourseDirectory.course_id = 'backprop-bench'\n"
            f"c.CourseDirectory.root = {str(course)!r}\n"
            f"c.CourseDirectory.db_url = 'sqlite:///{course}/gradebook.db'\n"
            "c.Execute.timeout = 300\n"
            "c.Autograde.create_student = True\n")
        nbformat.write(source_notebook(), course / "source" / LAB / f"{LAB}.ipynb")
        nbgrader(env, course, "generate_assignment", LAB, "--force")
        released = course / "release" / LAB / f"{LAB}.ipynb"
        for name in names:
            folder = course / "submitted" / name / LAB
            folder.mkdir(parents=True)
            nbformat.write(student_notebook(released, name), folder / f"{LAB}.ipynb")
            staged = copy_submission(EXAMPLES / name, root / "staged" / name)
            shutil.copy(staged / "mlp.pt", folder / "mlp.pt")
            (folder / "timestamp.txt").write_text("2026-11-21 10:00:00.000000 UTC")
        t0 = time.perf_counter()
        nbgrader(env, course, "autograde", LAB, "--force")
        nb_seconds = time.perf_counter() - t0
        nbgrader(env, course, "export", "--to", str(root / "grades.csv"))
        with open(root / "grades.csv", newline="") as f:
            nb_scores = {r["student_id"]: (float(r["score"]), float(r["max_score"]))
                         for r in csv.DictReader(f)}
        cells = nbgrader_cells(course)

        subs = root / "grader-class"
        for name in names:
            copy_submission(EXAMPLES / name, subs / name)
        t0 = time.perf_counter()
        result = run_batch(subs, LAB, root / "grader-out", course=REPO, workers=args.workers)
        gr_seconds = time.perf_counter() - t0
        with sqlite3.connect(root / "grader-out" / "gradebook.sqlite") as db:
            gr_scores = {r[0]: (r[1], r[2]) for r in db.execute(
                "SELECT student, score, max_score FROM results")}
        n = len(names)
        print(f"\n{n} backprop submissions (the examples); grader batch --workers "
              f"{args.workers}, nbgrader autograde (one notebook at a time)\n")
        print("| tool | total s | s/submission |")
        print("|---|---|---|")
        print(f"| grader batch (sandboxed, {result.graded} graded) | {gr_seconds:.1f} | "
              f"{gr_seconds / n:.2f} |")
        print(f"| nbgrader autograde | {nb_seconds:.1f} | {nb_seconds / n:.2f} |")
        print("\n| example | grader | nbgrader | nbgrader test cells lost |")
        print("|---|---|---|---|")
        for name in names:
            g, nbs = gr_scores.get(name), nb_scores.get(name)
            lost = ", ".join(f"{gid} ({s:g}/{m:g})" for gid, s, m in cells.get(name, [])
                             if s < m)
            print(f"| {name} | {g[0]:g}/{g[1]:g} | {nbs[0]:g}/{nbs[1]:g} | {lost or '-'} |"
                  if g and nbs else f"| {name} | {g} | {nbs} | |")
        (root / "scores.json").write_text(json.dumps({"grader": gr_scores,
                                                      "nbgrader": nb_scores}))
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


def nbgrader_cells(course: Path) -> dict[str, list[tuple[str, float, float]]]:
    """Per student, each autograded test cell's (id, score, max) from nbgrader's gradebook."""
    out: dict[str, list[tuple[str, float, float]]] = {}
    with sqlite3.connect(course / "gradebook.db") as db:
        rows = db.execute(
            "SELECT s.student_id, bc.name, COALESCE(g.manual_score, g.auto_score), "
            "gc.max_score FROM grade g JOIN grade_cells gc ON g.cell_id = gc.id "
            "JOIN base_cell bc ON bc.id = gc.id "
            "JOIN submitted_notebook sn ON g.notebook_id = sn.id "
            "JOIN submitted_assignment s ON sn.assignment_id = s.id")
        for student, gid, score, max_score in rows:
            out.setdefault(student, []).append((gid, score or 0.0, max_score))
    return out


if __name__ == "__main__":
    main()
