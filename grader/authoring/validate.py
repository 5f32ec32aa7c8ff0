"""``grader validate LAB``: prove a rubric fair and sharp before a student sees it.

The reference run as a submission must get every point; the blank template none (but for
the items ``expected.yaml`` lets it pass); every variant (a correct-but-different solution
in ``variants/``) every point too; every example and every mutant must lose points on
exactly the items it is declared to break, with the declared words in the message.
Manual items (``check: manual``) are graded by a TA, not by the grader: they are left out of
the comparison and shown as ``manual`` in the matrix.
The result is a matrix of submissions by items and a mutation score.
"""

from __future__ import annotations

import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..batch.runner import threads_per_grading
from ..calibrate import reference_submission
from ..errors import CourseError
from ..model import Report
from ..rubric import Rubric, load_rubric
from .examples import submission_folder
from .expected import load_expectations, load_mutants, load_variants

__all__ = ["Row", "Validation", "validate"]


@dataclass
class Row:
    """One graded submission of a validation and what was expected of it."""

    name: str
    kind: str                        # reference | template | variant | example | mutant
    expect_fail: dict[str, str]      # item -> words (the items it must fail)
    may_pass: frozenset[str] = frozenset()   # template only: items it may pass
    outcomes: dict[str, str] = field(default_factory=dict)     # item -> passed|failed|...
    scores: dict[str, float] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)
    score: float = 0.0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    report: dict[str, Any] | None = field(default=None, repr=False)   # the full report

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class Validation:
    lab: str
    items: list[str]
    max_points: dict[str, float]
    rows: list[Row]
    manual: frozenset[str] = frozenset()     # items a TA grades: not compared

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    def row(self, kind: str, name: str) -> Row:
        """The row of one submission (KeyError if it was not graded)."""
        for r in self.rows:
            if (r.kind, r.name) == (kind, name):
                return r
        raise KeyError(f"{self.lab}: no {kind} row `{name}`")

    @property
    def mutation_score(self) -> tuple[int, int]:
        """(mutants killed, mutants): killed = loses points on at least one item."""
        mutants = [r for r in self.rows if r.kind == "mutant"]
        return sum(any(s < self.max_points[i] for i, s in r.scores.items()
                       if i not in self.manual) for r in mutants), len(mutants)

    def markdown(self) -> str:
        """The matrix as a Markdown table: pass, fail (expected) or !fail/!pass (not)."""
        head = "| submission | " + " | ".join(self.items) + " | score | ok |"
        lines = [head, "|" + "---|" * (len(self.items) + 3)]
        for r in self.rows:
            cells = [_cell(r, i) for i in self.items]
            lines.append(f"| {r.kind}: {r.name} | " + " | ".join(cells) +
                         f" | {r.score:.4g} | {'yes' if r.ok else 'NO'} |")
        killed, total = self.mutation_score
        lines.append(f"\nmutation score: {killed}/{total}")
        return "\n".join(lines)


def _cell(row: Row, item: str) -> str:
    outcome = row.outcomes.get(item, "-")
    if outcome == "pending":
        return "manual"
    expected_fail = item in row.expect_fail or (row.kind == "template"
                                                and item not in row.may_pass)
    if outcome == "passed":
        return "pass" if not expected_fail or item in row.may_pass else "**!pass**"
    return "fail" if expected_fail else f"**!{outcome}**"


def _judge(row: Row, rubric: Rubric, reviews: dict[str, bool]) -> None:
    for item_id, review in reviews.items():
        if review:
            row.problems.append(f"{item_id}: needs review (a grader-side problem): "
                                f"{row.messages.get(item_id, '')[:200]}")
    for item in (i for i in rubric.items if not i.manual):
        outcome, message = row.outcomes.get(item.id), row.messages.get(item.id, "")
        full = row.scores.get(item.id, 0.0) >= item.points - 1e-9
        if row.kind == "template":
            if row.scores.get(item.id, 0.0) > 0 and item.id not in row.may_pass:
                row.problems.append(f"{item.id}: the blank template scores "
                                    f"{row.scores[item.id]:g} (list it under template.may_pass "
                                    "if that is intended)")
        elif item.id in row.expect_fail:
            words = row.expect_fail[item.id]
            if full:
                row.problems.append(f"{item.id}: expected to lose points, passed")
            elif words and words not in message:
                row.problems.append(f"{item.id}: lost points but the message lacks "
                                    f"{words!r}: {message[:200]!r}")
        elif not full:
            row.problems.append(f"{item.id}: expected to pass, {outcome}: {message[:200]}")


def _grade(args: tuple[str, str, str, bool, int]) -> dict[str, Any]:
    import torch

    from ..pipeline import grade

    path, lab, course, sandbox, threads = args
    torch.set_num_threads(threads)            # the grader's own checks share the cores too
    try:
        return grade(path, assignment=lab, course=course, sandbox=sandbox, threads=threads)
    except Exception as exc:  # noqa: BLE001 - one submission that cannot be graded is a row
        return {"error": f"{type(exc).__name__}: {exc}"}


def _rows(course: Path, rubric: Rubric, scratch: Path) -> list[tuple[Row, Path]]:
    lab_dir = course / "assignments" / rubric.assignment
    ids = {i.id for i in rubric.items}
    expectations = load_expectations(lab_dir, ids)
    rows = [(Row("reference", "reference", {}),
             reference_submission(course, rubric, scratch / "reference"))]
    template = lab_dir / rubric.notebook
    if not template.is_file():
        raise CourseError(f"{template}: the lab has no template notebook")
    rows.append((Row("template", "template", {}, expectations.template_may_pass), template))
    examples = sorted(p for p in (lab_dir / "examples").glob("*") if p.is_dir())
    for folder in examples:
        if folder.name not in expectations.examples:
            raise CourseError(f"{lab_dir / 'expected.yaml'}: no expectation for the example "
                              f"`{folder.name}`; add it under `examples:` (or give it a patch, "
                              f"examples/{folder.name}.yaml, with its `breaks`)")
        rows.append((Row(folder.name, "example", expectations.examples[folder.name]),
                     submission_folder(folder, scratch)))
    missing = sorted(set(expectations.examples) - {p.name for p in examples})
    if missing:
        raise CourseError(f"{expectations.path}: examples {', '.join(missing)} have no folder "
                          f"in {lab_dir / 'examples'}")
    source = (course / rubric.reference).read_text()
    for variant in load_variants(lab_dir):
        if variant.folder is not None:
            folder = submission_folder(variant.folder, scratch)
        else:
            folder = reference_submission(course, rubric, scratch / "variants" / variant.name,
                                          source=variant.patch.apply(source))  # type: ignore[union-attr]
        rows.append((Row(variant.name, "variant", {}), folder))
    for mutant in load_mutants(lab_dir, ids):
        folder = reference_submission(course, rubric, scratch / "mutants" / mutant.name,
                                      source=mutant.apply(source))
        rows.append((Row(mutant.name, "mutant", mutant.breaks), folder))
    return rows


KINDS = ("reference", "template", "variant", "example", "mutant")


def validate(lab: str, *, course: Path, jobs: int | None = None, sandbox: bool = True,
             kinds: tuple[str, ...] = KINDS,
             progress: Callable[[str], None] | None = None) -> Validation:
    """Grade the reference, the template, the variants, the examples and the mutants of ``lab``.

    ``kinds`` restricts the rows graded (the test suite grades examples elsewhere).
    """
    from ..workers import adopt_template, prepare_workers
    from ..pipeline import require_sandbox

    note = progress or (lambda _m: None)
    rubric = load_rubric(course / "rubrics" / f"{lab}.yaml")
    if sandbox:
        require_sandbox()       # refused once, here: not a row "could not be graded" each
    jobs = max(1, jobs or os.cpu_count() or 1)
    with tempfile.TemporaryDirectory(prefix=f"grader-validate-{lab}-") as tmp:
        rows = [r for r in _rows(course, rubric, Path(tmp)) if r[0].kind in kinds]
        # the cores shared out, as grader batch does: `jobs` gradings never ask for `jobs`
        # times the machine (each kernel and each worker's checks get cores/jobs threads)
        threads = threads_per_grading(min(jobs, len(rows)))
        work = [(str(path), lab, str(course), sandbox, threads) for _, path in rows]
        context, template = prepare_workers(sandbox)     # one template for every worker
        with ProcessPoolExecutor(max_workers=min(jobs, len(work)), mp_context=context,
                                 initializer=adopt_template if sandbox else None,
                                 initargs=(template,) if sandbox else ()) as pool:
            for (row, _), report in zip(rows, pool.map(_grade, work)):
                if "error" in report:
                    row.problems.append(f"could not be graded: {report['error'][:300]}")
                    note(f"{row.kind} {row.name}: could not be graded")
                    continue
                graded = Report.from_json(report)
                for item in graded.items:
                    row.outcomes[item.id] = item.outcome
                    row.scores[item.id] = float(item.score)
                    row.messages[item.id] = item.message
                row.score, row.seconds = graded.score, graded.timings["total_s"]
                row.report = report
                _judge(row, rubric, {i.id: i.needs_review for i in graded.items})
                note(f"{row.kind} {row.name}: {row.score:g}/{graded.max_score:g}"
                     + ("" if row.ok else f" — {len(row.problems)} problem(s)"))
    return Validation(lab, [i.id for i in rubric.items], {i.id: i.points for i in rubric.items},
                      [row for row, _ in rows], frozenset(i.id for i in rubric.items if i.manual))
