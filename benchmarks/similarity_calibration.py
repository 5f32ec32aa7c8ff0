"""Calibrate `grader similarity` on the bundled solutions of every lab.

    .venv/bin/python benchmarks/similarity_calibration.py [--labs vae,flow] [--k 35] [--pairs]

For each lab it fingerprints the correct solutions the repository ships (the examples
``correct`` and ``different`` and every folder variant: notebooks written by hand), a
disguised copy of ``correct`` and of ``different`` (``tests/disguise.py``: locals and
parameters renamed, comments rewritten, reformatted, functions, methods and cells reordered)
and the ``bug_*`` examples (``correct`` with one line changed), and prints one Markdown row:

- independent: the most similar pair of correct solutions that share fewer than 20 % of
  their lines verbatim (the template's lines left out): written independently;
- partly shared: the range of the pairs that share 20-50 % of their lines;
- derived: the least similar pair that shares half or more (a variant written from
  ``correct``, keeping the functions it does not vary);
- disguised: each disguised copy against its original (the lower of the two);
- one-line bugs: the least similar ``bug_*`` example against ``correct``.

A threshold belongs above every independent pair and below the disguised copies.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
LABS = ("active_inference", "autoregressive", "backprop", "diffusion", "flow", "gan", "vae")
INDEPENDENT, DERIVED = 0.2, 0.5      # fractions of their lines two solutions share verbatim


def _lines(path: Path) -> set[str]:
    from grader.authoring.markers import notebook_code

    return {ln.strip() for ln in notebook_code(path).splitlines()
            if len(ln.strip()) >= 12 and not ln.strip().startswith("#")}


def _verbatim(a: set[str], b: set[str], template: set[str]) -> float:
    a, b = a - template, b - template
    return len(a & b) / max(1, min(len(a), len(b)))


def _solutions(lab_dir: Path) -> dict[str, Path]:
    from grader.authoring import load_variants

    found = {name: next((lab_dir / "examples" / name).glob("*.ipynb"))
             for name in ("correct", "different")}
    for variant in load_variants(lab_dir):
        if variant.folder is not None:
            found[variant.name] = next(variant.folder.glob("*.ipynb"))
    return found


def calibrate(lab: str, k: int, scratch: Path) -> dict:
    from disguise import disguise

    from grader.rubric import load_rubric
    from grader.similarity.code import boilerplate, fingerprint, notebook_units
    from grader.similarity.compare import compare_pair, handed_units
    from grader.similarity.sources import Submitted

    rubric = load_rubric(REPO / "rubrics" / f"{lab}.yaml")
    lab_dir = REPO / "assignments" / lab
    handed = boilerplate(handed_units(REPO, rubric), k)
    notebooks = _solutions(lab_dir)
    solutions = list(notebooks)
    for name in ("correct", "different"):
        copy = scratch / lab / f"disguised_{name}.ipynb"
        copy.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(disguise(nbformat.read(notebooks[name], as_version=4)), copy)
        notebooks[f"disguised_{name}"] = copy
    bugs = sorted((lab_dir / "examples").glob("bug_*/*.ipynb"))
    notebooks.update({p.parent.name: p for p in bugs})
    codes = {n: fingerprint(notebook_units(p, 10**6), k, handed) for n, p in notebooks.items()}

    def similarity(a: str, b: str) -> float:
        pair, _ = compare_pair(Submitted(a, "", notebooks[a]), Submitted(b, "", notebooks[b]),
                               codes[a], codes[b], 0.5)
        return pair.similarity

    template = _lines(lab_dir / rubric.notebook)
    lines = {n: _lines(notebooks[n]) for n in solutions}
    pairs = [(similarity(a, b), _verbatim(lines[a], lines[b], template), a, b)
             for a, b in itertools.combinations(solutions, 2)]
    partly = [p for p in pairs if INDEPENDENT <= p[1] < DERIVED]
    return {"lab": lab, "pairs": sorted(pairs, reverse=True),
            "independent": max((p for p in pairs if p[1] < INDEPENDENT), default=None),
            "partly": (min(partly)[0], max(partly)[0], len(partly)) if partly else None,
            "derived": min((p for p in pairs if p[1] >= DERIVED), default=None),
            "disguised": min(similarity(n, f"disguised_{n}") for n in ("correct", "different")),
            "bugs": min((similarity("correct", p.parent.name), p.parent.name) for p in bugs)}


def _cell(pair: tuple | None) -> str:
    return "-" if pair is None else f"{pair[0]:.2f} ({pair[2]} / {pair[3]})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labs", default=",".join(LABS))
    parser.add_argument("--k", type=int, default=35)
    parser.add_argument("--pairs", action="store_true", help="also every pair of solutions")
    args = parser.parse_args()
    print("| lab | independent: max | partly shared | derived: min | disguised copy | "
          "one-line bugs: min |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for lab in args.labs.split(","):
            r = calibrate(lab, args.k, Path(tmp))
            partly = "-" if r["partly"] is None else \
                "{:.2f}-{:.2f} ({} pairs)".format(*r["partly"])
            print(f"| {lab} | {_cell(r['independent'])} | {partly} | {_cell(r['derived'])} | "
                  f"{r['disguised']:.2f} | {r['bugs'][0]:.2f} ({r['bugs'][1]}) |")
            for s, v, a, b in r["pairs"] if args.pairs else ():
                print(f"|   | {a} / {b}: {s:.2f} ({100 * v:.0f} % of lines verbatim) | | | | |")


if __name__ == "__main__":
    main()
