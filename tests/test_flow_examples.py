"""Every bundled flow example graded in the sandbox, with its expected per-item outcome.

A correct example gets every point; each bug fails exactly the items listed (the
properties it breaks, including what its own buggy training did to its checkpoints) and
keeps the rest; the message names the property and, for generated inputs, the shrunk input.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from grader.authoring import load_expectations
from grader.pipeline import grade
from grader.rubric import load_rubric

from conftest import assert_example_outcomes

pytestmark = pytest.mark.kernel
REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "assignments" / "flow" / "examples"
ITEMS = [i.id for i in load_rubric(REPO / "rubrics" / "flow.yaml").items]
GENERATED = ("flow_invertibility", "flow_logdet", "flow_structure", "flow_log_prob")

# example -> {item id: words its message must contain}; every other item passes.
# The expectations live beside the examples, where `grader validate` reads them.
EXPECTED = load_expectations(EXAMPLES.parent, set(ITEMS)).examples


def test_every_example_folder_has_an_expectation() -> None:
    folders = {p.name for p in EXAMPLES.iterdir() if p.is_dir()}
    assert folders == set(EXPECTED)
    assert len([f for f in folders if f.startswith("bug_")]) >= 4


@pytest.fixture(scope="module", params=sorted(EXPECTED))
def graded(request: pytest.FixtureRequest) -> tuple[str, dict]:
    return request.param, grade(EXAMPLES / request.param)


def test_example_fails_exactly_its_items(graded: tuple[str, dict]) -> None:
    name, report = graded
    assert_example_outcomes(report, EXPECTED[name], ITEMS)


def test_example_reports_the_shrunk_input_for_generated_failures(graded: tuple[str, dict]
                                                                 ) -> None:
    _, report = graded
    for item in report["items"]:
        if item["outcome"] == "failed" and item["check"] in GENERATED:
            assert item["counterexample"]["inputs"], item


def test_example_runs_in_the_sandbox_quickly(graded: tuple[str, dict]) -> None:
    _, report = graded
    assert report["execution"]["sandbox"]["enabled"] is True
    assert report["execution"]["parameters"]["TRAIN"] is False
    assert all(c["status"] == "ok" for c in report["execution"]["cells"])
    assert report["timings"]["total_s"] < 60


def test_the_template_scores_zero() -> None:
    report = grade(REPO / "assignments" / "flow" / "flow.ipynb")
    assert report["score"] == 0.0
    assert {i["outcome"] for i in report["items"]} <= {"failed", "error", "skipped"}
    training = [c for c in report["execution"]["cells"] if c["status"] == "error"]
    assert training and training[0]["error"]["ename"] == "NotImplementedError"
