"""``grader new`` and ``grader build``: a lab from one solution notebook.

The lecturer's source of truth is the solution notebook ``reference/LAB.ipynb`` (it lives
under ``reference/`` because it is as secret as the reference). ``grader build LAB``
derives the two files the grader uses from it: the student template
``assignments/LAB/LAB.ipynb`` and the reference module ``reference/LAB.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import yaml

from ..errors import CourseError
from .examples import load_notebook_patches, shares_solution_checkpoints
from .markers import PARAMETERS_SOURCE, Split, solution_submission, split_solution

__all__ = ["new_lab", "build_lab", "built_files", "solution_path", "LAB_NAME"]

LAB_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

_LECTURER = """**Lecturer's note** (this cell is tagged `lecturer`: it stays in the solution
notebook and never reaches the template).

This is the solution notebook of the lab `{lab}`. Write each exercise with nbgrader's markers
(`### BEGIN SOLUTION` / `### END SOLUTION` on their own lines); `grader build {lab}` turns the
notebook into the student template `assignments/{lab}/{lab}.ipynb` (each marked region becomes
`raise NotImplementedError()`) and the reference `reference/{lab}.py` (the definitions, without
markers and without code that runs). Regions between `### BEGIN HIDDEN TESTS` and
`### END HIDDEN TESTS` are dropped from the template. Then: `grader lint {lab}`,
`grader validate {lab}`, `grader release {lab} --out kits` (docs/lecturer-guide.md).
"""

_INTRO = """# {title}

*(Replace this text with your lab's introduction for students.)*

**How you are graded.** The grader runs your notebook with the `parameters` cell set by the
course, then calls the functions below on inputs it chooses and compares them with its own
solution. Keep the names, argument order and shapes exactly as each docstring says. Check your
work with `grader check {lab}.ipynb` before you submit.
"""

_EXERCISE = '''import torch


def softplus(x):
    """log(1 + exp(x)) elementwise, for a tensor of any shape; finite for |x| up to 1e4.

    (An example exercise written by `grader new`: replace it with yours.)
    """
    ### BEGIN SOLUTION
    return torch.clamp(x, min=0) + torch.log1p(torch.exp(-x.abs()))
    ### END SOLUTION'''

_RUBRIC = """# Rubric of the {lab} lab. Every item names a check kind (docs/rubrics.md lists them
# with their parameters) and is validated when the rubric loads: `grader lint {lab}`.
# visibility: public items are what students see with `grader check`; hidden items only
# count when a TA grades. total_points must equal the sum of the items' points.
assignment: {lab}
title: "{title}"
notebook: {lab}.ipynb
reference: reference/{lab}.py
checkpoints: []              # state_dict files the students submit beside the notebook
parameters: {{DEVICE: cpu}}    # injected into the notebook's `parameters` cell
seed: 0
max_examples: 30
total_points: 3

items:
  - id: softplus_matches_reference
    title: "softplus equals log(1 + exp(x)) on random tensors, including |x| up to 1e4"
    points: 2
    visibility: public
    check: matches_reference
    params:
      function: softplus
      inputs:
        x: {{shape: [B, D], min: -30, max: 30, extremes: [-10000.0, 10000.0]}}
      dims: {{B: [1, 8], D: [1, 8]}}
    hint: "Use log1p(exp(-|x|)) + max(x, 0): exp(x) overflows for large x."

  - id: softplus_known_values
    title: "softplus(0) = ln 2"
    points: 1
    visibility: hidden
    check: known_values
    params:
      function: softplus
      cases:
        - {{label: "x = 0", args: [[0.0]], expected: [0.6931472]}}
"""

_EXPECTED = """# What `grader validate {lab}` expects of each example in examples/ (and of the blank
# template): the items each one must fail, with words its message must contain ("" = any).
# Every item not listed must pass. Add a folder under examples/ for each typical mistake.
template:
  may_pass: []               # items the blank template is allowed to pass
examples:
  correct: {{}}
"""

_MUTANT = """# A mutant: a small patch of reference/{lab}.py that `grader validate {lab}` grades.
# It must fail exactly the items under `breaks` (item id -> words its message must contain).
description: "softplus without the max(x, 0) term: wrong for positive x"
# (softplus_known_values still passes: at x = 0 the two agree.)
breaks:
  softplus_matches_reference: "expected"
patch:
  - find: "return torch.clamp(x, min=0) + torch.log1p(torch.exp(-x.abs()))"
    replace: "return torch.log1p(torch.exp(-x.abs()))"
"""

_EXAMPLES_README = """# {lab}: example submissions

Each folder is a submission (the notebook, and its checkpoints if the lab has any) that
`grader validate {lab}` and `grader demo` grade. `expected.yaml` beside this file says which
items each one must fail. `correct` is the reference solution notebook run through the
template (regenerate it with `grader build {lab}`); add one folder per typical mistake, each
a completed template with exactly one bug.
"""


def solution_path(course: Path, lab: str) -> Path:
    return course / "reference" / f"{lab}.ipynb"


def _write_new(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _solution_notebook(lab: str, title: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(metadata={
        "grader": {"assignment": lab},
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}})
    nb.cells = [nbformat.v4.new_markdown_cell(_LECTURER.format(lab=lab),
                                              metadata={"tags": ["lecturer"]}),
                nbformat.v4.new_markdown_cell(_INTRO.format(title=title, lab=lab)),
                nbformat.v4.new_code_cell(PARAMETERS_SOURCE, metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(_EXERCISE),
                nbformat.v4.new_code_cell("assert torch.isfinite(softplus(torch.tensor([1e4, "
                                          "-1e4]))).all()\n### BEGIN HIDDEN TESTS\nassert "
                                          "abs(float(softplus(torch.tensor(0.0))) - 0.6931472) "
                                          "< 1e-6\n### END HIDDEN TESTS")]
    return nb


def new_lab(course: Path, lab: str, *, title: str | None = None,
            from_notebook: Path | None = None) -> list[Path]:
    """Scaffold a lab; returns the files written. Refuses to overwrite anything."""
    if not LAB_NAME.match(lab):
        raise CourseError(f"{lab!r}: a lab name is lower-case letters, digits and underscores, "
                          "starting with a letter (it names files and a Python module)")
    title = title or lab.replace("_", " ").capitalize()
    files = {
        solution_path(course, lab): None,
        course / "rubrics" / f"{lab}.yaml": _RUBRIC.format(lab=lab, title=title),
        course / "assignments" / lab / "expected.yaml": _EXPECTED.format(lab=lab),
        course / "assignments" / lab / "mutants" / "softplus_no_max.yaml":
            _MUTANT.format(lab=lab),
        course / "assignments" / lab / "examples" / "README.md":
            _EXAMPLES_README.format(lab=lab),
    }
    existing = [str(p) for p in files if p.exists()] + [
        str(p) for p in (course / "reference" / f"{lab}.py",
                         course / "assignments" / lab / f"{lab}.ipynb") if p.exists()]
    if existing:
        raise CourseError(f"lab {lab} already exists ({', '.join(existing)}); pick another name "
                          "or edit those files")
    if from_notebook is not None:
        nb = read_notebook(from_notebook)
        files.pop(course / "assignments" / lab / "mutants" / "softplus_no_max.yaml")
        files[course / "rubrics" / f"{lab}.yaml"] = _rubric_from(lab, title, nb, from_notebook)
    else:
        nb = _solution_notebook(lab, title)
    for path, text in files.items():
        if text is not None:
            _write_new(path, text)
    solution = solution_path(course, lab)
    solution.parent.mkdir(parents=True, exist_ok=True)
    nb.metadata.setdefault("grader", {})["assignment"] = lab
    nbformat.write(nb, solution)
    return [*files, *build_lab(course, lab)]


def read_notebook(path: Path) -> nbformat.NotebookNode:
    try:
        return nbformat.read(path, as_version=4)
    except Exception as exc:  # noqa: BLE001 - nbformat raises many kinds
        raise CourseError(f"{path}: not a readable notebook ({type(exc).__name__}: {exc}); "
                          "open it in Jupyter and save it again") from None


def _rubric_from(lab: str, title: str, nb: nbformat.NotebookNode, path: Path) -> str:
    """A rubric skeleton naming each function the solution defines (to be completed)."""
    split = split_solution(nb, lab, path)
    found = re.findall(r"^(def|class) ([A-Za-z]\w*)", split.reference, re.M)
    items = "".join(
        f"  # - id: {name.lower()}_matches_reference\n"
        f"  #   title: \"{name} ...\"\n  #   points: 1\n  #   visibility: public\n"
        f"  #   check: matches_reference\n"
        + (f"  #   params: {{function: {name}, inputs: {{...}}, dims: {{...}}}}\n" if kind == "def"
           else f"  #   params: {{module: {{class: {name}}}, inputs: {{...}}, dims: {{...}}}}\n")
        for kind, name in found)
    return (f"# Rubric of the {lab} lab, converted from {path.name} by `grader new --from`.\n"
            f"# Write one item per property; the commented items name the functions found.\n"
            f"assignment: {lab}\ntitle: \"{title}\"\nnotebook: {lab}.ipynb\n"
            f"reference: reference/{lab}.py\ncheckpoints: []\nseed: 0\n\nitems:\n{items}")


def built_files(course: Path, lab: str) -> dict[Path, str]:
    """Every file ``grader build LAB`` derives from ``reference/LAB.ipynb``, and its text:
    the template, the reference module, ``examples/correct`` and each patched example and
    variant (grader/authoring/examples.py). The same text on every call (a test)."""
    source = solution_path(course, lab)
    if not source.is_file():
        raise CourseError(f"{source}: no solution notebook for lab {lab}; labs written as a "
                          f"reference module and a template (no solution notebook) need no build")
    solution = read_notebook(source)
    split: Split = split_solution(solution, lab, source.relative_to(course))
    lab_dir = course / "assignments" / lab
    out = {lab_dir / f"{lab}.ipynb": nbformat.writes(split.template),
           course / "reference" / f"{lab}.py": split.reference}
    student = solution_submission(solution)
    correct = lab_dir / "examples" / "correct"
    patches = load_notebook_patches(lab_dir)
    if correct.is_dir() or not patches and not any((correct.parent).glob("*/")):
        out[correct / f"{lab}.ipynb"] = nbformat.writes(student)
    for patch in patches:
        out[patch.folder / f"{lab}.ipynb"] = nbformat.writes(patch.apply(student))
    return {path: text if text.endswith("\n") else text + "\n" for path, text in out.items()}


def build_lab(course: Path, lab: str) -> list[Path]:
    """Template, reference, examples and variants from ``reference/LAB.ipynb`` and the
    patches; returns the files written. A folder that shares the solution's checkpoints
    loses any stale copy of them (it is graded with ``reference/checkpoints/``)."""
    files = built_files(course, lab)
    rubric = course / "rubrics" / f"{lab}.yaml"     # only its checkpoints: it may be a draft
    doc = yaml.safe_load(rubric.read_text()) if rubric.is_file() else None
    checkpoints = [str(c) for c in (doc or {}).get("checkpoints") or []] \
        if isinstance(doc, dict) else []
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if path.suffix == ".ipynb" and shares_solution_checkpoints(path.parent):
            for name in checkpoints:
                (path.parent / name).unlink(missing_ok=True)
    return list(files)
