"""Calibrate the anchors of threshold items from reference runs and baselines.

For every rubric item whose check kind grades a metric linearly between ``zero_at`` and
``full_at``, grade the reference (its source and its checkpoints, as a submission) under
several seeds, and each baseline submission in ``assignments/LAB/baselines/*``. Propose

- ``full_at``: the worst reference value less a margin for noise,
  max(3 standard deviations, 15 % of the gap to the baselines) -- the reference runs vary
  only the grader's seeds, so the margin must also cover how correct students' training
  differs from the reference's (the correct examples lie well inside it);
- ``zero_at``: the best baseline value (a baseline must earn nothing),

and with ``write=True`` put them in the rubric text, in place, with a comment line that
says where they came from. Everything runs through the same sandboxed pipeline as grading.
"""

from __future__ import annotations

import datetime as _dt
import re
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import nbformat

from .checks.registry import REGISTRY, Metric
from .errors import CourseError
from .model import Report
from .pipeline import find_course, grade
from .rubric import Rubric, load_rubric

__all__ = ["metrics", "Anchor", "calibrate", "write_anchors", "reference_submission"]

def metrics() -> dict[str, Metric]:
    """Check kind -> what it measures, for every threshold check (each declares its
    ``metric`` on its ``@check``: the one place that says so)."""
    return {kind: spec.metric for kind, spec in REGISTRY.items() if spec.metric is not None}


@dataclass
class Anchor:
    """Measurements of one item and the anchors they suggest."""

    item: str
    higher_is_better: bool
    reference: list[float] = field(default_factory=list)
    baselines: dict[str, float] = field(default_factory=dict)
    full_at: float | None = None
    zero_at: float | None = None

    def propose(self) -> None:
        ref = self.reference
        spread = statistics.stdev(ref) if len(ref) > 1 else 0.0
        sign = 1.0 if self.higher_is_better else -1.0
        worst = min(ref) if self.higher_is_better else max(ref)
        if self.baselines:
            best_base = (max if self.higher_is_better else min)(self.baselines.values())
            self.zero_at = round(best_base, 2)
            gap = abs(statistics.mean(ref) - best_base)
        else:
            gap = abs(statistics.mean(ref))
        margin = max(3 * spread, 0.15 * gap)
        self.full_at = round(worst - sign * margin, 2)


def reference_submission(course: Path, rubric: Rubric, folder: Path,
                         source: str | None = None) -> Path:
    """A submission folder: the reference's source as a notebook, its checkpoints beside.

    ``source`` replaces the reference's source (a mutant of it).
    """
    source = (course / rubric.reference).read_text() if source is None else source
    nb = nbformat.v4.new_notebook(metadata={"grader": {"assignment": rubric.assignment}})
    nb.cells = [nbformat.v4.new_code_cell("TRAIN = False\nSEED = 0\nDEVICE = 'cpu'",
                                          metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(source)]
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / rubric.notebook)
    for name in rubric.checkpoints:
        path = course / "reference" / "checkpoints" / name
        if not path.is_file():
            raise CourseError(f"{path}: the reference checkpoint is missing; train it first")
        (folder / name).write_bytes(path.read_bytes())
    return folder


def _values(report: Report, anchors: dict[str, Anchor], kinds: dict[str, str]
            ) -> dict[str, float]:
    out = {}
    for item in report.items:
        key = metrics()[kinds[item.id]].detail
        if key in item.details:
            out[item.id] = float(item.details[key])
    return out


def calibrate(lab: str, *, course: str | Path | None = None, seeds: int = 5,
              progress: Callable[[str], None] | None = None) -> dict[str, Anchor]:
    """Measure every calibratable item of ``lab``; returns proposals by item id."""
    from .authoring.examples import submission_folder   # authoring's lint imports this module

    note = progress or (lambda _m: None)
    course_dir = find_course(course)
    rubric = load_rubric(course_dir / "rubrics" / f"{lab}.yaml")
    known = metrics()
    kinds = {i.id: i.check for i in rubric.items if i.check in known}
    if not kinds:
        raise CourseError(f"{rubric.path}: no item uses a calibrated check "
                          f"({', '.join(sorted(known))})")
    anchors = {i: Anchor(i, known[k].higher_is_better) for i, k in kinds.items()}
    with tempfile.TemporaryDirectory(prefix="grader-calibrate-") as tmp:
        ref = reference_submission(course_dir, rubric, Path(tmp) / "reference")
        for seed in range(seeds):
            note(f"reference, seed {seed}")
            report = Report.from_json(grade(ref, course=course_dir, only=set(kinds), seed=seed))
            for item, value in _values(report, anchors, kinds).items():
                anchors[item].reference.append(value)
        baselines = course_dir / "assignments" / lab / "baselines"
        for folder in sorted(p for p in baselines.glob("*") if p.is_dir()):
            note(f"baseline {folder.name}")
            report = Report.from_json(grade(submission_folder(folder, Path(tmp)),
                                            course=course_dir, only=set(kinds)))
            for item, value in _values(report, anchors, kinds).items():
                anchors[item].baselines[folder.name] = value
    for anchor in anchors.values():
        if not anchor.reference:
            raise CourseError(f"{rubric.path}: the reference produced no value for item "
                              f"`{anchor.item}`: grade the reference and look at its report")
        anchor.propose()
    return anchors


def write_anchors(rubric_path: Path, anchors: dict[str, Anchor]) -> str:
    """Replace ``full_at``/``zero_at`` of each item in the rubric text; keep all else."""
    text = Path(rubric_path).read_text()
    today = _dt.date.today().isoformat()
    for anchor in anchors.values():
        block = re.search(rf"(?ms)^(\s*)- id: {re.escape(anchor.item)}\s*$.*?(?=^\1- id: |\Z)",
                          text)
        if block is None:
            raise CourseError(f"{rubric_path}: no item block `- id: {anchor.item}` to update")
        body = re.sub(r"(?m)^[ \t]*# calibrated \S+ by `grader calibrate`.*\n", "",
                      block.group(0))
        refs = ", ".join(f"{v:.2f}" for v in anchor.reference)
        bases = ", ".join(f"{k} {v:.2f}" for k, v in anchor.baselines.items()) or "none"
        for key, value in (("full_at", anchor.full_at), ("zero_at", anchor.zero_at)):
            if value is None:
                continue
            pattern = rf"(?m)^(\s*){key}:\s*[-+0-9.eE]+.*$"
            match = re.search(pattern, body)
            if match is None:
                raise CourseError(f"{rubric_path}: item `{anchor.item}` has no `{key}:` line")
            indent = match.group(1)
            line = f"{indent}{key}: {value}"
            if key == "full_at":
                line = (f"{indent}# calibrated {today} by `grader calibrate`: reference "
                        f"[{refs}]; baselines [{bases}]\n{line}")
            body = body[:match.start()] + line + body[match.end():]
        text = text[:block.start()] + body + text[block.end():]
    Path(rubric_path).write_text(text)
    load_rubric(Path(rubric_path))          # the result must still be a valid rubric
    return text
