"""The lecturer's workflow: markers, new/build, lint, release with its leak scan, validate."""

from __future__ import annotations

import re
import shutil
from importlib import metadata
from pathlib import Path

import nbformat
import pytest

from grader.authoring import (ReleaseRefused, build_lab, lint, new_lab, release, scan_kit,
                              split_solution, validate)
from grader.authoring.examples import submission_folder
from grader.authoring.scaffold import built_files
from grader.cli import main
from grader.errors import CourseError
from grader.rubric import load_rubric

from conftest import validation

REPO = Path(__file__).resolve().parent.parent
LABS = sorted(p.stem for p in (REPO / "rubrics").glob("*.yaml"))


def notebook(*cells: tuple[str, str], **metadata: object) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(metadata=metadata)
    for kind, source in cells:
        maker = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
        nb.cells.append(maker(source))
    return nb


NBGRADER = notebook(
    ("markdown", "# Squares\nWrite `square` and `Scaler`."),
    ("code", "%precision 3\nimport torch\nSCALE = 3\nprint('hello')"),
    ("code", "def square(x):\n    \"\"\"x ** 2 elementwise.\"\"\"\n    ### BEGIN SOLUTION\n"
             "    result = x * x  # multiply the tensor by itself\n    return result\n"
             "    ### END SOLUTION\n\n\nclass Scaler(torch.nn.Module):\n"
             "    def forward(self, x):\n        ### BEGIN SOLUTION\n"
             "        return SCALE * x + torch.zeros_like(x)\n        ### END SOLUTION"),
    ("markdown", "Why is the square never negative?\n### BEGIN SOLUTION\nBecause a real number "
                 "times itself is never negative.\n### END SOLUTION"),
    ("code", "assert square(torch.tensor(2.0)) == 4\n### BEGIN HIDDEN TESTS\n"
             "assert square(torch.tensor(-3.0)) == 9\n### END HIDDEN TESTS"),
    ("code", "for epoch in range(3):\n    pass"),
    nbgrader={"nbgrader_version": "0.9"})

SQUARES_RUBRIC = """assignment: squares
title: Squares
notebook: squares.ipynb
reference: reference/squares.py
total_points: 3
items:
  - id: square_matches_reference
    title: square equals x * x
    points: 2
    visibility: public
    check: matches_reference
    params:
      function: square
      inputs: {x: {shape: [B], min: -10, max: 10}}
      dims: {B: [1, 6]}
  - id: scaler_known_values
    title: Scaler()(1) = 3
    points: 1
    visibility: hidden
    check: known_values
    params:
      module: {class: Scaler}
      cases: [{label: one, args: [[1.0]], expected: [3.0]}]
"""


# --- markers -----------------------------------------------------------------------------

def test_markers_make_a_template_with_stubs_and_a_reference_with_only_definitions() -> None:
    split = split_solution(NBGRADER, "squares")
    code = [c.source for c in split.template.cells if c.cell_type == "code"]
    assert "parameters" in split.template.cells[1].metadata["tags"]       # added before code
    assert "    # YOUR CODE HERE\n    raise NotImplementedError()" in code[2]
    assert "        raise NotImplementedError()" in code[2]               # nested indent kept
    assert "x * x" not in "\n".join(code) and "SCALE * x" not in "\n".join(code)
    assert "-3.0" not in "\n".join(code) and "square(torch.tensor(2.0)) == 4" in code[3]
    assert "YOUR ANSWER HERE" in split.template.cells[4].source
    assert split.template.metadata["grader"]["assignment"] == "squares"
    assert "nbgrader" not in split.template.metadata
    assert split.hidden_tests == 1 and len(split.solutions) == 3
    namespace: dict = {}
    exec(compile(split.reference, "reference", "exec"), namespace)  # noqa: S102 - our own text
    import torch

    assert float(namespace["square"](torch.tensor(3.0))) == 9.0
    assert float(namespace["Scaler"]()(torch.tensor(1.0))) == 3.0
    assert "print(" not in split.reference and "BEGIN" not in split.reference
    assert "for epoch" not in split.reference and "assert" not in split.reference
    assert any("print('hello')" in d for d in split.dropped)


@pytest.mark.parametrize("source, words", [
    ("### BEGIN SOLUTION\nx = 1", "never closed"),
    ("x = 1\n### END SOLUTION", "without a matching"),
    ("### BEGIN SOLUTION\n### BEGIN HIDDEN TESTS\n### END HIDDEN TESTS\n### END SOLUTION",
     "inside an open"),
])
def test_malformed_markers_name_the_cell_and_line(source: str, words: str) -> None:
    with pytest.raises(CourseError, match=f"cell 2, line .*{words}"):
        split_solution(notebook(("code", "import torch"), ("code", source)), "lab",
                       "reference/lab.ipynb")


# --- new, build, lint, validate, release on a fresh course --------------------------------

@pytest.fixture
def course(tmp_path: Path) -> Path:
    (tmp_path / "rubrics").mkdir()
    return tmp_path


def test_new_scaffolds_a_lab_that_lints_releases_and_refuses_to_overwrite(course: Path) -> None:
    written = new_lab(course, "demo_lab", title="Demo")
    names = {str(p.relative_to(course)) for p in written}
    assert {"reference/demo_lab.ipynb", "reference/demo_lab.py", "rubrics/demo_lab.yaml",
            "assignments/demo_lab/demo_lab.ipynb", "assignments/demo_lab/expected.yaml",
            "assignments/demo_lab/examples/correct/demo_lab.ipynb"} <= names
    assert lint(course)[course / "rubrics" / "demo_lab.yaml"] == []
    kit = release(course, "demo_lab", course / "kits", record=False)
    wheel = f"wheels/grader-{metadata.version('grader')}-py3-none-any.whl"
    assert sorted(p.relative_to(kit).as_posix() for p in kit.rglob("*") if p.is_file()) == [
        "README.md", "demo_lab.ipynb", "kit.json", "rubrics/demo_lab.yaml", wheel]
    assert f"python -m pip install {wheel}" in (kit / "README.md").read_text()
    assert [i.id for i in load_rubric(kit / "rubrics" / "demo_lab.yaml").items] == [
        "softplus_matches_reference"]
    with pytest.raises(CourseError, match="already exists"):
        new_lab(course, "demo_lab")
    with pytest.raises(CourseError, match="lower-case"):
        new_lab(course, "Bad-Name")


@pytest.mark.kernel
def test_a_scaffolded_lab_filled_in_validates(course: Path) -> None:
    new_lab(course, "demo_lab")
    solution = course / "reference" / "demo_lab.ipynb"
    nb = nbformat.read(solution, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "def double(x):\n    \"\"\"2 x.\"\"\"\n    ### BEGIN SOLUTION\n    return x + x\n"
        "    ### END SOLUTION"))
    nbformat.write(nb, solution)
    rubric = course / "rubrics" / "demo_lab.yaml"
    rubric.write_text(rubric.read_text().replace("total_points: 3", "total_points: 4") +
                      "\n  - id: double_matches_reference\n    title: double\n    points: 1\n"
                      "    visibility: public\n    check: matches_reference\n    params:\n"
                      "      function: double\n      inputs: {x: {shape: [B], min: -5, max: 5}}\n"
                      "      dims: {B: [1, 4]}\n")
    build_lab(course, "demo_lab")
    (course / "assignments" / "demo_lab" / "mutants" / "double_triple.yaml").write_text(
        "description: three x\nbreaks: {double_matches_reference: ''}\npatch:\n"
        "  - {find: 'return x + x', replace: 'return x + x + x'}\n")
    result = validate("demo_lab", course=course, jobs=2)
    assert result.ok, [(r.name, r.problems) for r in result.rows]
    assert [(r.kind, r.score) for r in result.rows] == [
        ("reference", 4.0), ("template", 0.0), ("example", 4.0), ("mutant", 3.0),
        ("mutant", 2.0)]
    assert result.mutation_score == (2, 2)
    assert "| mutant: double_triple | pass | pass | fail |" in result.markdown()


@pytest.mark.kernel
def test_an_nbgrader_notebook_converts_into_a_template_and_reference_that_validate(
        course: Path, tmp_path: Path) -> None:
    source = tmp_path / "squares_solution.ipynb"
    nbformat.write(NBGRADER, source)
    new_lab(course, "squares", from_notebook=source)
    skeleton = (course / "rubrics" / "squares.yaml").read_text()
    assert "function: square" in skeleton and "module: {class: Scaler}" in skeleton
    (course / "rubrics" / "squares.yaml").write_text(SQUARES_RUBRIC)
    (course / "assignments" / "squares" / "mutants").mkdir()
    (course / "assignments" / "squares" / "mutants" / "scale_two.yaml").write_text(
        "breaks: {scaler_known_values: 'expected'}\npatch:\n"
        "  - {find: 'SCALE * x', replace: '2 * x'}\n")
    result = validate("squares", course=course, jobs=2)
    assert result.ok, [(r.name, r.problems) for r in result.rows]
    assert [r.score for r in result.rows] == [3.0, 0.0, 3.0, 2.0]
    kit = release(course, "squares", tmp_path / "kits")
    assert [i.id for i in load_rubric(kit / "rubrics" / "squares.yaml").items] == [
        "square_matches_reference"]


@pytest.mark.kernel
def test_validate_fails_when_a_mutant_survives_or_an_example_breaks_other_items(
        course: Path) -> None:
    new_lab(course, "demo_lab")
    mutants = course / "assignments" / "demo_lab" / "mutants"
    (mutants / "harmless.yaml").write_text(
        "breaks: {softplus_matches_reference: ''}\npatch:\n"
        "  - {find: 'torch.clamp(x, min=0)', replace: 'x.clamp(min=0)'}\n")
    expected = course / "assignments" / "demo_lab" / "expected.yaml"
    expected.write_text(expected.read_text().replace("correct: {}",
                                                     "correct: {softplus_known_values: ''}"))
    assert main(["validate", "demo_lab", "--course", str(course), "--jobs", "2"]) == 1
    result = validate("demo_lab", course=course, jobs=2)
    problems = {r.name: r.problems for r in result.rows if r.problems}
    assert problems == {
        "correct": ["softplus_known_values: expected to lose points, passed"],
        "harmless": ["softplus_matches_reference: expected to lose points, passed"]}
    assert result.mutation_score == (1, 2)


def test_release_refuses_a_kit_with_reference_code_hidden_items_or_solution_text(
        course: Path) -> None:
    new_lab(course, "demo_lab")
    template = course / "assignments" / "demo_lab" / "demo_lab.ipynb"
    nb = nbformat.read(template, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "def helper(x):\n    return torch.clamp(x, min=0) + torch.log1p(torch.exp(-x.abs()))"))
    nb.cells.append(nbformat.v4.new_markdown_cell("Bonus: softplus_known_values is hidden."))
    nbformat.write(nb, template)
    out = course / "kits"
    with pytest.raises(ReleaseRefused) as refused:
        release(course, "demo_lab", out)
    found = "\n".join(map(str, refused.value.leaks))
    assert "reference code: `return torch.clamp(x, min=0)" in found
    assert "solution text" in found
    assert "names the hidden item `softplus_known_values`" in found
    assert not (out / "demo_lab").exists() and not list(out.iterdir())
    assert main(["release", "demo_lab", "--course", str(course), "--out", str(out)]) == 1


def test_the_scan_refuses_checkpoints_stray_files_and_a_rubric_with_hidden_items(
        course: Path) -> None:
    new_lab(course, "demo_lab")
    kit = release(course, "demo_lab", course / "kits", record=False)
    checkpoints = course / "reference" / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "model.pt").write_bytes(b"weights")
    (kit / "model.pt").write_bytes(b"weights")
    (kit / "solution.py").write_text("x = 1\n")
    shutil.copy(course / "rubrics" / "demo_lab.yaml", kit / "rubrics" / "demo_lab.yaml")
    rubric = load_rubric(course / "rubrics" / "demo_lab.yaml")
    found = "\n".join(map(str, scan_kit(kit, course, rubric)))
    assert "model.pt: is the reference checkpoint model.pt" in found
    assert "solution.py: a .py file has no place in a kit" in found
    assert "hidden items softplus_known_values" in found


@pytest.mark.parametrize("lab", LABS)
def test_every_lab_of_the_repo_releases_a_kit_that_passes_the_leak_scan(lab: str,
                                                                         tmp_path: Path) -> None:
    kit = release(REPO, lab, tmp_path, record=False)     # the scan; recording: below
    rubric = load_rubric(kit / "rubrics" / f"{lab}.yaml")
    assert rubric.items and all(i.visibility == "public" for i in rubric.items)


@pytest.mark.kernel
@pytest.mark.parametrize("lab", [lab for lab in LABS
                                 if (REPO / "assignments" / lab / "mutants").is_dir()])
def test_every_lab_gives_its_reference_full_marks_and_loses_exactly_each_mutants_items(
        lab: str) -> None:
    """`grader validate` (the examples' and variants' rows: tests/test_examples.py)."""
    result = validation(lab)
    rows = [r for r in result.rows if r.kind in ("reference", "mutant")]
    assert all(r.ok for r in rows), {r.name: r.problems for r in rows if r.problems}
    killed, total = result.mutation_score
    assert total >= 2 and killed == total


# --- lint --------------------------------------------------------------------------------

def test_lint_names_file_line_and_fix_for_each_mistake(course: Path) -> None:
    new_lab(course, "demo_lab")
    path = course / "rubrics" / "demo_lab.yaml"
    text = path.read_text()
    path.write_text(text.replace("function: softplus\n      inputs", "function: softplsu\n"
                                 "      inputs"))
    finding, student_side = lint(course)[path]
    assert finding.line == text[:text.index("- id: softplus_matches")].count("\n") + 1
    assert "names `softplsu`, which reference/demo_lab.py does not define" in finding.message
    assert "calls `softplsu`, which the template does not define" in student_side.message
    path.write_text(text.replace("total_points: 3", "total_points: 5"))
    [finding] = lint(course)[path]
    assert "add up to 3, not the declared total_points 5" in finding.message
    assert finding.line == text[:text.index("\ntotal_points:") + 1].count("\n") + 1
    assert "total_points: 3" in finding.fix
    path.write_text(text.replace("check: known_values", "check: known_valeus"))
    [finding] = lint(course)[path]
    assert "known_valeus" in finding.message and finding.line
    assert main(["lint", "demo_lab", "--course", str(course)]) == 1


def test_lint_wants_a_calibration_record_for_metric_thresholds(course: Path) -> None:
    new_lab(course, "demo_lab")
    path = course / "rubrics" / "demo_lab.yaml"
    text = path.read_text().replace("total_points: 3", "total_points: 4")
    path.write_text(text.replace("checkpoints: []", "checkpoints: [m.pt]") + """
  - id: accuracy
    title: accuracy
    points: 1
    visibility: hidden
    check: test_accuracy
    params: {model: {class: MLP, checkpoint: m.pt}, zero_at: 0.5, full_at: 0.9}
""")
    messages = [f.message for f in lint(course)[path]]
    assert any("without a calibration record" in m for m in messages)
    assert any("m.pt is not in reference/checkpoints/" in m for m in messages)
    assert any("calls `MLP`, which the template does not define" in m for m in messages)
    assert any("names `MLP`, which reference/demo_lab.py does not define" in m for m in messages)


def test_every_rubric_of_the_repo_lints_clean() -> None:
    findings = {p.name: [str(f) for f in fs] for p, fs in lint(REPO).items() if fs}
    assert findings == {}


# --- the kit's own `grader check`: recorded answers, no reference -------------------------

@pytest.mark.kernel
def test_a_kit_checks_submissions_like_the_course_does_without_the_reference(
        tmp_path: Path) -> None:
    """Every backprop example: the kit's verdict on each kit item equals the course's."""
    import json

    from grader.pipeline import grade

    kit = release(REPO, "backprop", tmp_path)
    oracle = json.loads((kit / "oracle" / "backprop.json").read_text())
    assert set(oracle) >= {"answers", "examples", "grader", "hypothesis"}
    kit_items = [i.id for i in load_rubric(kit / "rubrics" / "backprop.yaml").items]
    # backward_pass differentiates through the reference: not replayable, left out
    assert "linear_backward" not in kit_items and "softmax_stable" in kit_items
    assert "checked when graded" in (kit / "README.md").read_text()
    for folder in sorted((REPO / "assignments" / "backprop" / "examples").glob("*/")):
        example = submission_folder(folder, tmp_path / "staged")   # the solution's mlp.pt
        course_report = grade(example, public_only=True)
        kit_report = grade(example, course=kit, public_only=True)
        course_outcomes = {i["id"]: i["outcome"] for i in course_report["items"]}
        kit_outcomes = {i["id"]: i["outcome"] for i in kit_report["items"]}
        assert kit_outcomes == {i: course_outcomes[i] for i in kit_items}, example.name
        assert kit_report["versions"]["rubric_sha256"] != course_report["versions"][
            "rubric_sha256"]
        assert any("recorded in this kit" in w for w in kit_report["warnings"])


def test_recorded_answers_refuse_what_is_not_theirs(tmp_path: Path) -> None:
    import torch

    from grader.oracle import OracleMiss, Recorder, RecordedReference

    class Module:
        SCALE = 2.0

        @staticmethod
        def double(x: torch.Tensor) -> torch.Tensor:
            return x * Module.SCALE

    recorder = Recorder(Module())
    assert torch.equal(recorder.double(torch.ones(2)), torch.full((2,), 2.0))
    assert recorder.SCALE == 2.0
    path = tmp_path / "oracle" / "lab.json"
    recorder.save(path, "lab")
    replay = RecordedReference(path)
    assert torch.equal(replay.double(torch.ones(2)), torch.full((2,), 2.0))
    assert replay.SCALE == 2.0
    with pytest.raises(OracleMiss, match="no recorded answer of `double`"):
        replay.double(torch.zeros(2))
    path.write_text("\x80\x04pickle")
    with pytest.raises(CourseError, match="not a readable answer file"):
        RecordedReference(path)
    path.write_text('{"answers": []}')
    with pytest.raises(CourseError, match="not an answer file"):
        RecordedReference(path)


@pytest.mark.parametrize("lab", LABS)
def test_every_notebook_of_a_built_lab_is_what_grader_build_writes(lab: str) -> None:
    """Template, reference module, examples and variants: byte for byte what `grader build`
    derives from reference/LAB.ipynb and the patches, the same on every build; and the lab
    ships no notebook that build does not write."""
    files = built_files(REPO, lab)
    assert built_files(REPO, lab) == files
    for path, text in files.items():
        assert path.read_text() == text, f"{path} differs from what `grader build {lab}` writes"
    shipped = set((REPO / "assignments" / lab).rglob("*.ipynb"))
    assert shipped == {p for p in files if p.suffix == ".ipynb"}


# --- one solution notebook: lecturer code cells, cell ids, patches, checkpoint sources ----

def _tiny_solution() -> nbformat.NotebookNode:
    nb = notebook(("code", "import torch"),
                  ("code", "def forward(x):\n    return torch.clamp(x, min=0)"),
                  ("markdown", "staff only"),
                  ("code", "def f(x):\n    ### BEGIN SOLUTION\n    return forward(x) * 2\n"
                           "    ### END SOLUTION"),
                  ("code", "EPOCHS = 3"))
    for i, cell in enumerate(nb.cells):
        cell["id"] = ["imports", "helper", "note", "f", "config"][i]
    for i in (1, 2):
        nb.cells[i].metadata["tags"] = ["lecturer"]
    return nb


def test_a_lecturer_code_cell_reaches_the_reference_and_never_the_template() -> None:
    split = split_solution(_tiny_solution(), "tiny")
    assert "def forward(x):" in split.reference and "staff only" not in split.reference
    template = nbformat.writes(split.template)
    assert "torch.clamp" not in template and "staff only" not in template
    assert [c["id"] for c in split.template.cells] == ["parameters", "imports", "f", "config"]
    assert nbformat.writes(split_solution(_tiny_solution(), "tiny").template) == template


def test_a_given_code_cell_reaches_the_template_and_the_student_never_the_reference() -> None:
    """A cell tagged `given` (code handed out complete, e.g. a copy of an environment) is no
    part of the solution: the reference module keeps none of its definitions."""
    from grader.authoring.markers import solution_submission

    nb = _tiny_solution()
    env = nbformat.v4.new_code_cell("ROOMS = {1: 'a'}\n\n\nclass Env:\n    def reset(self):\n"
                                    "        return ROOMS[1]", metadata={"tags": ["given"]})
    env["id"] = "env"
    nb.cells.insert(4, env)
    split = split_solution(nb, "tiny")
    assert "class Env" not in split.reference and "ROOMS" not in split.reference
    assert "def f(x):" in split.reference
    assert [c["id"] for c in split.template.cells] == ["parameters", "imports", "f", "env",
                                                       "config"]
    assert split.template.cells[3].source == env.source
    assert "class Env" in solution_submission(nb).cells[3].source


def test_the_reference_keeps_the_decorators_of_a_definition() -> None:
    """`@torch.no_grad()` above a solution's `def` reaches the reference (the AST's segment of
    a decorated definition starts at `def`)."""
    nb = notebook(("code", "import torch"),
                  ("code", "@torch.no_grad()\n@staticmethod  # two\ndef f(x):\n"
                           "    ### BEGIN SOLUTION\n    return x * 2\n    ### END SOLUTION"),
                  ("code", "@torch.no_grad()\ndef g(x):\n    return f(x)"))
    reference = split_solution(nb, "tiny").reference
    assert "import torch\n\n\n@torch.no_grad()\n@staticmethod  # two\ndef f(x):\n" \
           "    return x * 2\n\n\n@torch.no_grad()\ndef g(x):\n" in reference
    assert reference.count("@torch.no_grad()") == 2


def test_the_solutions_training_run_keeps_the_lecturers_code_cells_and_no_markdown() -> None:
    from grader.authoring.markers import solution_submission

    student = solution_submission(_tiny_solution())
    trained = solution_submission(_tiny_solution(), lecturer=True)
    assert [c["id"] for c in student.cells] == ["parameters", "imports", "f", "config"]
    assert [c["id"] for c in trained.cells] == ["parameters", "imports", "helper", "f", "config"]
    assert "### BEGIN" not in nbformat.writes(trained)


def _patch(tmp_path: Path, doc: dict, kind: str = "examples") -> Path:
    import yaml

    path = tmp_path / "tiny" / kind / "p.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_patch_edits_the_students_version_by_text_or_by_cell(tmp_path: Path) -> None:
    from grader.authoring.examples import load_notebook_patches
    from grader.authoring.markers import solution_submission

    student = solution_submission(_tiny_solution())
    _patch(tmp_path, {"checkpoints": "trained", "breaks": {"a": "x"}, "patch": [
        {"find": "* 2", "replace": "* 3"}, {"cell": "config", "source": "EPOCHS = 1\n"}]})
    [patch] = load_notebook_patches(tmp_path / "tiny", {"a"})
    out = patch.apply(student)
    assert [c.source for c in out.cells if c.get("id") in ("f", "config")] == [
        "def f(x):\n    return forward(x) * 3", "EPOCHS = 1"]
    assert "* 2" in student.cells[2].source                  # the solution is untouched
    assert (patch.folder, patch.breaks, patch.checkpoints) == (
        tmp_path / "tiny" / "examples" / "p", {"a": "x"}, "trained")


def test_a_baseline_appends_a_cell_with_a_stable_id_and_shares_the_checkpoints(
        tmp_path: Path) -> None:
    from grader.authoring.examples import load_notebook_patches, shares_solution_checkpoints
    from grader.authoring.markers import solution_submission

    student = solution_submission(_tiny_solution())
    path = _patch(tmp_path, {"checkpoints": "solution", "patch": [
        {"append": "f = lambda x: x * 0\n"}]}, kind="baselines")
    [patch] = load_notebook_patches(tmp_path / "tiny")
    out = patch.apply(student)
    assert (patch.kind, out.cells[-1].source, out.cells[-1]["id"]) == (
        "baseline", "f = lambda x: x * 0", "p-1")
    assert len(out.cells) == len(student.cells) + 1
    assert nbformat.writes(patch.apply(student)) == nbformat.writes(out)
    course = tmp_path / "course" / "assignments" / "tiny" / "baselines"
    course.mkdir(parents=True)
    (course / "p.yaml").write_text(path.read_text())
    (course / "p").mkdir()
    assert shares_solution_checkpoints(course / "p")
    path.write_text("checkpoints: solution\nbreaks: {a: x}\npatch: [{append: y}]\n")
    with pytest.raises(CourseError, match="a baseline declares no `breaks`"):
        load_notebook_patches(tmp_path / "tiny")


@pytest.mark.parametrize("doc,message", [
    ({"checkpoints": "solution", "patch": [{"find": "x", "replace": "y"}]}, "occurs 2 times"),
    ({"checkpoints": "solution", "patch": [{"cell": "nope", "source": ""}]}, "no cell `nope`"),
    ({"patch": [{"find": "* 2", "replace": "* 3"}]}, "`checkpoints` is None"),
    ({"checkpoints": "solution", "patch": [{"find": "* 2"}]}, "`patch` must be a list"),
])
def test_a_malformed_patch_names_its_file_and_the_fix(tmp_path: Path, doc: dict,
                                                      message: str) -> None:
    from grader.authoring.examples import load_notebook_patches
    from grader.authoring.markers import solution_submission

    path = _patch(tmp_path, doc)
    with pytest.raises(CourseError, match=re.escape(message)) as info:
        for patch in load_notebook_patches(tmp_path / "tiny"):
            patch.apply(solution_submission(_tiny_solution()))
    assert str(path) in str(info.value)


def test_a_notebook_variant_keeps_every_point(tmp_path: Path) -> None:
    from grader.authoring import load_variants

    _patch(tmp_path, {"of": "notebook", "checkpoints": "trained", "breaks": {"a": ""},
                      "patch": [{"find": "* 2", "replace": "+ x"}]}, kind="variants")
    with pytest.raises(CourseError, match="a variant must keep every point"):
        load_variants(tmp_path / "tiny")


def test_an_example_sharing_the_solutions_checkpoint_is_graded_with_it(tmp_path: Path) -> None:
    from grader.authoring.examples import (copy_submission, shares_solution_checkpoints,
                                           submission_folder)

    examples = REPO / "assignments" / "backprop" / "examples"
    assert shares_solution_checkpoints(examples / "correct")
    assert shares_solution_checkpoints(examples / "bug_grad_w_transposed")
    assert not shares_solution_checkpoints(examples / "different")
    assert not (examples / "correct" / "mlp.pt").exists()
    assert submission_folder(examples / "different", tmp_path) == examples / "different"
    staged = submission_folder(examples / "correct", tmp_path)
    assert (staged / "mlp.pt").read_bytes() == (
        REPO / "reference" / "checkpoints" / "mlp.pt").read_bytes()
    assert not shares_solution_checkpoints(copy_submission(staged, tmp_path / "elsewhere"))


def test_the_trainer_stores_only_a_state_dict(tmp_path: Path) -> None:
    import io

    import torch

    from grader.authoring.train import _state_dict

    def saved(obj: object) -> bytes:
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        return buffer.getvalue()

    _state_dict(saved({"w": torch.ones(2)}), "ok")
    with pytest.raises(CourseError, match="not a state_dict"):
        _state_dict(saved({"w": 1.0}), "floats")
    with pytest.raises(CourseError, match="weights_only=True"):
        _state_dict(saved(torch.nn.Linear(1, 1)), "a whole module")
    with pytest.raises(CourseError, match="weights_only=True"):
        _state_dict(b"not a checkpoint", "junk")


def test_a_failed_training_run_names_the_cell_that_raised() -> None:
    """The record counts cells of the notebook as run (the injected parameters cell included):
    the message names the failing cell by its id and first line, not its neighbour's."""
    from grader.authoring.train import _failed
    from grader.execute import CellRecord, ExecutionRecord, inject_parameters

    nb = _tiny_solution()
    ran = inject_parameters(nb, {"TRAIN": True})
    failing = next(i for i, c in enumerate(ran.cells) if c.get("id") == "f")
    record = ExecutionRecord(cells=[CellRecord(i, "ok") for i in range(failing)] + [
        CellRecord(failing, "error", error={"ename": "ValueError", "evalue": "bad lr"})])
    message = _failed(record, "solution", ran)
    assert message == "solution: cell 'f' (def f(x):) raised ValueError: bad lr"
    assert _failed(ExecutionRecord(cells=[CellRecord(0, "ok")]), "solution", ran) is None
