"""The command line: exit codes, reports written, bad input named, sandbox refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grader import cli, pipeline
from grader.errors import SandboxUnavailable

from conftest import example

REPO = Path(__file__).resolve().parent.parent
BUG = REPO / "assignments" / "vae" / "examples" / "bug_log_sigmoid"   # trains its own vae.pt


@pytest.fixture(scope="module")
def correct(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The correct example with the solution's vae.pt beside it (it ships none)."""
    return example("vae", "correct", tmp_path_factory.mktemp("cli") / "correct")


@pytest.mark.kernel
def test_check_passes_the_correct_example_and_shows_only_public_items(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, correct: Path) -> None:
    assert cli.main(["check", str(correct), "--out", str(tmp_path)]) == cli.EXIT_OK
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["mode"] == "check" and report["score"] == report["max_score"]
    assert {i["visibility"] for i in report["items"]} == {"public"}
    assert "passed" in capsys.readouterr().out


@pytest.mark.kernel
def test_check_fails_a_bug_with_the_smallest_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check", str(BUG)]) == cli.EXIT_FAILED
    out = capsys.readouterr().out
    assert "bernoulli_stable" in out and "smallest failing input" in out


@pytest.mark.kernel
def test_grade_writes_json_and_html_with_hidden_items(tmp_path: Path, correct: Path) -> None:
    assert cli.main(["grade", str(correct), "--assignment", "vae", "--out",
                     str(tmp_path)]) == cli.EXIT_OK
    report = json.loads((tmp_path / "report.json").read_text())
    assert "hidden" in {i["visibility"] for i in report["items"]}
    html = (tmp_path / "report.html").read_text()
    assert report["title"] in html and "<script" not in html.lower()


def test_a_broken_notebook_is_named_with_what_to_do(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "vae.ipynb"
    bad.write_text("{not json")
    assert cli.main(["check", str(bad), "--assignment", "vae"]) == cli.EXIT_USAGE
    out = capsys.readouterr().out
    assert "vae.ipynb" in out and "not a valid Jupyter notebook" in out


def test_a_folder_with_two_notebooks_is_refused(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("a.ipynb", "b.ipynb"):
        (tmp_path / name).write_text("{}")
    assert cli.main(["check", str(tmp_path)]) == cli.EXIT_USAGE
    assert "exactly one notebook" in capsys.readouterr().out


def test_an_unknown_lab_asks_for_assignment(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    import nbformat

    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "homework.ipynb")
    assert cli.main(["check", str(tmp_path)]) == cli.EXIT_USAGE
    assert "--assignment" in capsys.readouterr().out


def test_grading_is_refused_without_bubblewrap(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str],
                                               correct: Path) -> None:
    monkeypatch.setattr(pipeline, "check_sandbox", lambda: (False, "bwrap: no user namespaces"))
    assert cli.main(["check", str(correct)]) == cli.EXIT_REFUSED
    out = capsys.readouterr().out
    assert "--unsafe-no-sandbox" in out and "no user namespaces" in out
    with pytest.raises(SandboxUnavailable):
        pipeline.grade(correct)


@pytest.mark.kernel
def test_unsafe_mode_grades_and_says_so(monkeypatch: pytest.MonkeyPatch, correct: Path) -> None:
    monkeypatch.setattr(pipeline, "check_sandbox", lambda: (False, "no bwrap"))
    report = pipeline.grade(correct, sandbox=False, only={"kl_matches_reference"})
    assert report["execution"]["sandbox"]["enabled"] is False
    assert any("WITHOUT a sandbox" in w for w in report["warnings"])
    assert report["items"][0]["outcome"] == "passed"
