"""docs/lecturer-guide.md, followed command by command for a new (tiny) lab: scaffold, fill
the solution notebook, build, train the checkpoints, validate, release; then change the lab
(a new bug as a patch) and build again."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
import torch
import yaml

from grader.cli import main

REPO = Path(__file__).resolve().parent.parent
GUIDE = REPO / "docs" / "lecturer-guide.md"

# What the lecturer adds to the scaffold's solution notebook (guide, step 2): a model with a
# checkpoint, trained by a cell guarded by TRAIN, and its hyper-parameters in their own cell.
MODEL = '''class Scale(torch.nn.Module):
    """y = w * x with one learned weight; Scale() builds with no arguments."""

    def __init__(self):
        super().__init__()
        ### BEGIN SOLUTION
        self.w = torch.nn.Parameter(torch.zeros(()))
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        return self.w * x
        ### END SOLUTION'''
STEPS = "STEPS = 100"
TRAINING = '''if TRAIN:
    torch.manual_seed(SEED)
    model = Scale()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(STEPS):
        x = torch.randn(32)
        loss = ((model(x) - 3 * x) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.save(model.state_dict(), "scale.pt")'''
ITEM = {"id": "scale_learned", "title": "the trained Scale maps 1 to 3", "points": 1,
        "visibility": "public", "check": "known_values",
        "params": {"model": {"class": "Scale", "checkpoint": "scale.pt"}, "atol": 1e-3,
                   "cases": [{"label": "x = 1", "args": [[1.0]], "expected": [3.0]}]}}
PATCHES = {
    "bug_untrained.yaml": {"description": "trains for no step: w stays 0",
                           "breaks": {"scale_learned": ""}, "checkpoints": "trained",
                           "patch": [{"cell": "steps", "find": "100", "replace": "0"}]},
    "bug_softplus_no_max.yaml": {"description": "softplus without max(x, 0)",
                                 "breaks": {"softplus_matches_reference": "expected"},
                                 "checkpoints": "solution",
                                 "patch": [{"find": "torch.clamp(x, min=0) + ",
                                            "replace": ""}]}}


def guide_commands() -> list[str]:
    """The `grader ...` commands of the guide's walk-through, in order."""
    return re.findall(r"^grader (new|build|validate|release)\b", GUIDE.read_text(), re.M)


def run(*argv: str) -> None:
    assert main(list(argv)) == 0, argv


def fill(course: Path, lab: str) -> None:
    """Step 2 and 4 of the guide: the solution notebook and the rubric."""
    path = course / "reference" / f"{lab}.ipynb"
    nb = nbformat.read(path, as_version=4)
    for cell_id, source in (("model", MODEL), ("steps", STEPS), ("training", TRAINING)):
        cell = nbformat.v4.new_code_cell(source)
        cell["id"] = cell_id
        nb.cells.append(cell)
    nbformat.write(nb, path)
    rubric = course / "rubrics" / f"{lab}.yaml"
    doc = yaml.safe_load(rubric.read_text())
    doc.update(checkpoints=["scale.pt"], total_points=doc["total_points"] + 1)
    doc["items"].append(ITEM)
    rubric.write_text(yaml.safe_dump(doc, sort_keys=False))
    for name, patch in PATCHES.items():
        (course / "assignments" / lab / "examples" / name).write_text(yaml.safe_dump(patch))


def test_the_guide_shows_every_command_this_test_runs() -> None:
    assert {"new", "build", "validate", "release"} <= set(guide_commands())
    assert "grader build LAB --checkpoints" in GUIDE.read_text()


@pytest.mark.kernel
def test_a_new_lab_from_scaffold_to_release_by_the_guides_commands(tmp_path: Path) -> None:
    course, lab = tmp_path / "course", "tiny"
    run("new", lab, "--course", str(course))
    fill(course, lab)
    run("build", lab, "--course", str(course))
    first = {p: p.read_bytes() for p in (course / "assignments").rglob("*.ipynb")}
    run("build", lab, "--course", str(course), "--checkpoints")
    assert {p: p.read_bytes() for p in (course / "assignments").rglob("*.ipynb")} == first
    examples = course / "assignments" / lab / "examples"
    # the solution's checkpoint where the lab expects it; the untrained bug's its own; the
    # softplus bug, whose training is the solution's, holds none (it shares the solution's)
    solution = torch.load(course / "reference" / "checkpoints" / "scale.pt", weights_only=True)
    untrained = torch.load(examples / "bug_untrained" / "scale.pt", weights_only=True)
    assert abs(float(solution["w"]) - 3) < 1e-3 and float(untrained["w"]) == 0.0
    assert not (examples / "bug_softplus_no_max" / "scale.pt").exists()
    assert not (examples / "correct" / "scale.pt").exists()
    run("validate", lab, "--course", str(course), "--markdown", str(tmp_path / "v.md"))
    matrix = (tmp_path / "v.md").read_text()
    assert "| example: bug_untrained | pass | pass | fail |" in matrix
    assert "| example: bug_softplus_no_max | fail | pass | pass |" in matrix
    run("release", lab, "--out", str(tmp_path / "kits"), "--course", str(course))
    assert (tmp_path / "kits" / lab / f"{lab}.ipynb").is_file()
    assert not list((tmp_path / "kits" / lab).rglob("*.pt"))


def test_changing_a_lab_is_an_edit_and_a_build(tmp_path: Path) -> None:
    """Change the solution and every derived file follows; a new bug is one patch file."""
    course, lab = tmp_path / "course", "tiny"
    run("new", lab, "--course", str(course))
    path = course / "reference" / f"{lab}.ipynb"
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "def softplus" in c.source)
    cell.source = cell.source.replace("(An example exercise", "(A changed exercise")
    nbformat.write(nb, path)
    (course / "assignments" / lab / "examples" / "bug_softplus_relu.yaml").write_text(
        yaml.safe_dump({"description": "softplus returns relu", "checkpoints": "solution",
                        "breaks": {"softplus_matches_reference": ""},
                        "patch": [{"find": " + torch.log1p(torch.exp(-x.abs()))",
                                   "replace": ""}]}))
    run("build", lab, "--course", str(course))
    template = (course / "assignments" / lab / f"{lab}.ipynb").read_text()
    bug = nbformat.read(course / "assignments" / lab / "examples" / "bug_softplus_relu" /
                        f"{lab}.ipynb", as_version=4)
    source = next(c.source for c in bug.cells if "def softplus" in c.source)
    assert "(A changed exercise" in template and "NotImplementedError" in template
    assert "return torch.clamp(x, min=0)\n" in source + "\n" and "log1p" not in source
    assert "(A changed exercise" in (course / "reference" / f"{lab}.py").read_text()
