"""Every bundled example and variant of every lab graded in the sandbox, with its expected
per-item outcome.

A correct example gets every point; each bug fails exactly the items its lab's
``expected.yaml`` lists (the properties it breaks, including what its own buggy training did
to its checkpoint) and keeps the rest; the message names the property and, for generated
inputs, the shrunk input. Every variant (a correct-but-different solution chosen to stress the
checks) gets every point. The expectations live beside the examples, where ``grader
validate`` reads them too: the reports come from one ``validate`` run per lab
(``conftest.validation``), shared with the mutant tests of test_authoring.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from grader.authoring import load_expectations, load_variants
from grader.rubric import load_rubric

from conftest import assert_example_outcomes, validation

pytestmark = pytest.mark.kernel
REPO = Path(__file__).resolve().parent.parent
Report = dict


def _accuracy_is_the_graders(name: str, report: Report) -> None:
    item = next(i for i in report["items"] if i["id"] == "mlp_test_accuracy")
    assert item["details"]["images"] == 360
    assert len(item["details"]["per_class_accuracy"]) == 10


def _agent_item_reads_the_graders_record(name: str, report: Report) -> None:
    details = next(i for i in report["items"] if i["id"] == "run_agent_tmaze")["details"]
    assert details["episodes"] == 40 and details["requested_episodes"] == 40
    if name in ("correct", "different"):
        assert details["correct_arm"] == 40 and details["cue_visited"] == 40
        assert details["reported_totals_match"] is True


def _fid_comes_with_its_figure(name: str, report: Report) -> None:
    for item in report["items"]:
        if item["check"] == "sample_fid" and "fid" in item["details"]:
            assert item["figures"] and item["figures"][0]["png_base64"], item["id"]


@dataclass(frozen=True)
class Lab:
    """What the examples of one lab must show beyond their expected outcomes."""

    generated: tuple[str, ...]           # checks whose failures must name a shrunk input
    bugs: int                            # at least this many bug_* examples
    seconds: float = 60                  # per grading, the bundled checkpoints loaded
    with_values: bool = False            # counterexamples also give expected and actual
    details: tuple[Callable[[str, Report], None], ...] = field(default=())
    stubs_fail_a_cell: bool = True       # the template's training cell raises NotImplemented


LABS = {
    "vae": Lab(("matches_reference", "output_bounds"), bugs=4),
    "backprop": Lab(("matches_reference", "backward_pass"), bugs=5, with_values=True,
                    details=(_accuracy_is_the_graders,)),
    "autoregressive": Lab(("matches_torch_module", "causal_dependence"), bugs=7),
    "active_inference": Lab(("discrete_matches_reference", "discrete_distribution",
                             "free_energy_bound"), bugs=4,
                            seconds=30, details=(_agent_item_reads_the_graders_record,),
                            stubs_fail_a_cell=False),
    "gan": Lab(("matches_reference", "interpolation_penalty", "adversarial_train_step"),
               bugs=4, details=(_fid_comes_with_its_figure,)),
    "flow": Lab(("flow_invertibility", "flow_logdet", "flow_structure", "flow_log_prob"),
                bugs=4),
    "diffusion": Lab(("matches_reference", "exact_denoiser_loss"), bugs=5, seconds=120),
}
ITEMS = {lab: [i.id for i in load_rubric(REPO / "rubrics" / f"{lab}.yaml").items]
         for lab in LABS}
EXPECTED = {lab: load_expectations(REPO / "assignments" / lab, set(ITEMS[lab])).examples
            for lab in LABS}


def test_every_lab_and_every_example_folder_has_an_expectation() -> None:
    rubrics = {p.stem for p in (REPO / "rubrics").glob("*.yaml")}
    assert set(LABS) == rubrics, f"add {sorted(rubrics - set(LABS))} to LABS in this file"
    for lab, spec in LABS.items():
        folders = {p.name for p in (REPO / "assignments" / lab / "examples").iterdir()
                   if p.is_dir()}
        assert folders == set(EXPECTED[lab]), lab
        assert len([f for f in folders if f.startswith("bug_")]) >= spec.bugs, lab


VARIANTS = {lab: [v.name for v in load_variants(REPO / "assignments" / lab)] for lab in LABS}


def report_of(lab: str, kind: str, name: str) -> Report:
    row = validation(lab).row(kind, name)
    assert row.report is not None, row.problems
    return row.report


@pytest.fixture(scope="module", ids="/".join,
                params=[(lab, name) for lab in LABS for name in sorted(EXPECTED[lab])])
def graded(request: pytest.FixtureRequest) -> tuple[str, str, Report]:
    lab, name = request.param
    return lab, name, report_of(lab, "example", name)


def test_every_lab_has_five_variants_that_stress_its_checks() -> None:
    for lab in LABS:
        assert len(VARIANTS[lab]) >= 5, f"{lab} has {len(VARIANTS[lab])} variants"


@pytest.mark.parametrize("lab,name", [(lab, name) for lab in LABS for name in VARIANTS[lab]],
                         ids="/".join)
def test_variant_gets_full_marks(lab: str, name: str) -> None:
    """A correct-but-different solution loses nothing: the worst bug the grader can ship."""
    report = report_of(lab, "variant", name)
    assert_example_outcomes(report, {}, ITEMS[lab])


def test_example_fails_exactly_its_items(graded: tuple[str, str, Report]) -> None:
    lab, name, report = graded
    assert_example_outcomes(report, EXPECTED[lab][name], ITEMS[lab])


def test_example_report_carries_its_evidence(graded: tuple[str, str, Report]) -> None:
    """Generated failures name their shrunk input; the lab's own details are the grader's."""
    lab, name, report = graded
    spec = LABS[lab]
    for item in report["items"]:
        if item["outcome"] == "failed" and item["check"] in spec.generated:
            assert item["counterexample"]["inputs"], item
            if spec.with_values:
                assert item["counterexample"]["expected"] and item["counterexample"]["actual"]
    for check in spec.details:
        check(name, report)


def test_example_runs_in_the_sandbox_quickly(graded: tuple[str, str, Report]) -> None:
    lab, _, report = graded
    assert report["execution"]["sandbox"]["enabled"] is True
    assert report["execution"]["parameters"]["TRAIN"] is False
    assert all(c["status"] == "ok" for c in report["execution"]["cells"])
    assert report["timings"]["total_s"] < LABS[lab].seconds


@pytest.mark.parametrize("lab", sorted(LABS))
def test_the_template_scores_zero(lab: str) -> None:
    report = report_of(lab, "template", "template")
    assert report["score"] == 0.0
    checked = [i for i in report["items"] if i["outcome"] != "pending"]   # a TA's: no verdict
    assert {i["outcome"] for i in checked} <= {"failed", "error", "skipped"}
    if LABS[lab].stubs_fail_a_cell:
        training = [c for c in report["execution"]["cells"] if c["status"] == "error"]
        assert training and training[0]["error"]["ename"] == "NotImplementedError"
    else:                                  # nothing runs the stubs until the grader calls them
        assert all("NotImplementedError" in i["message"] for i in checked), \
            [i["message"] for i in checked]
