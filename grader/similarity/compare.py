"""``grader similarity``: every pair of a class (and each student against earlier cohorts),
ranked by how much of their own code they share.

A pair's ``similarity`` is the shared part of both students' own code (code that is not the
template's nor a given function, normalised: ``grader.similarity.code``):
``(shared_a + shared_b) / (own_a + own_b)``, in [0, 1]. Weighted by size, a student who
wrote almost nothing shares little with everyone, instead of everything with whoever wrote
the same one line. ``share_a`` and ``share_b`` are each side's own fractions (MOSS's two
percentages). A pair is above the threshold at ``similarity >= threshold``.

Calibration (``benchmarks/similarity_calibration.py``, docs/batch.md): over the seven
bundled labs, independent correct solutions of one template score at most 0.20, a disguised
copy (locals renamed, comments rewritten, reformatted, functions, methods and cells
reordered) 1.00, an example with one line changed at least 0.90, variants written from
another solution (half their lines or more verbatim) 0.57-0.80. Hence ``threshold = 0.5``.
"""

from __future__ import annotations

import itertools
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..authoring.expected import load_expectations
from ..batch.ingest import Skipped
from ..errors import CourseError
from ..pipeline import find_course
from ..rubric import Rubric, load_rubric
from .code import Code, boilerplate, fingerprint, given_units, notebook_units
from .sources import Submitted, read_class

__all__ = ["Options", "Pair", "SimilarityResult", "find_similar", "compare_pair",
           "handed_units"]


@dataclass(frozen=True)
class Options:
    """How pairs are found and which are shown."""

    k: int = 35                  # shortest match that counts, in normalised characters
    threshold: float = 0.5       # similarity at which a pair is flagged for a TA to look at
    top: int = 20                # pairs shown side by side besides those above the threshold
    most: int = 100              # pairs shown side by side at most (the rest: the CSV)
    max_code_chars: int = 400_000   # of one notebook's code; a larger one is cut there


@dataclass(frozen=True)
class Pair:
    """Two students and what they share; ``b`` may be of an earlier cohort."""

    a: Submitted
    b: Submitted
    similarity: float            # (shared_a + shared_b) / (own_a + own_b)
    share_a: float               # shared_a / own_a
    share_b: float
    shared_a: int                # normalised characters of a's own code found in b
    shared_b: int
    own_a: int
    own_b: int
    above: bool                  # similarity >= the threshold


@dataclass
class SimilarityResult:
    assignment: str
    title: str
    students: list[Submitted]
    past: list[Submitted]
    pairs: list[Pair]            # most similar first
    skipped: list[Skipped]
    options: Options
    layout: str
    rubric: Rubric
    codes: dict[tuple[str, str], Code] = field(repr=False, default_factory=dict)

    @property
    def above(self) -> int:
        """How many pairs are at or above the threshold."""
        return sum(p.above for p in self.pairs)

    @property
    def shown(self) -> list[Pair]:
        """The pairs a TA sees side by side: every one above the threshold and at least the
        top few, at most ``options.most`` (the most similar first: the head of the ranking)."""
        return self.pairs[:min(self.options.most, max(self.options.top, self.above))]


def handed_units(course: Path, rubric: Rubric) -> list[str]:
    """The code a student is handed: the template's code cells and the reference functions
    that ``release.given`` names."""
    lab_dir = course / "assignments" / rubric.assignment
    template = lab_dir / rubric.notebook
    if not template.is_file():
        raise CourseError(f"{template}: the lab has no template notebook; its code is what "
                          f"`grader similarity` subtracts (run `grader build {rubric.assignment}`)")
    given = load_expectations(lab_dir, {i.id for i in rubric.items}).given
    return notebook_units(template, 10**7) + given_units(course / rubric.reference, given)


def compare_pair(a: Submitted, b: Submitted, code_a: Code, code_b: Code,
                 threshold: float) -> tuple[Pair, tuple]:
    """The pair's measures, and copydetect's slices of the shared code in each text."""
    from copydetect import compare_files

    _, (share_a, share_b), slices = compare_files(code_a.fingerprint, code_b.fingerprint)
    own_a, own_b = code_a.own, code_b.own
    shared_a = min(own_a, round(float(share_a) * own_a))
    shared_b = min(own_b, round(float(share_b) * own_b))
    total = own_a + own_b
    similarity = (shared_a + shared_b) / total if total else 0.0
    return Pair(a, b, similarity, shared_a / own_a if own_a else 0.0,
                shared_b / own_b if own_b else 0.0, shared_a, shared_b, own_a, own_b,
                similarity >= threshold), slices


def _codes(subs: list[Submitted], handed: np.ndarray, options: Options,
           skipped: list[Skipped]) -> dict[tuple[str, str], Code]:
    codes = {}
    for sub in subs:
        try:
            codes[sub.key] = fingerprint(notebook_units(sub.notebook, options.max_code_chars),
                                         options.k, handed)
        except Exception as exc:  # noqa: BLE001 - one unreadable notebook: skip it, say why
            skipped.append(Skipped(f"{sub.cohort + ': ' if sub.cohort else ''}{sub.student}",
                                   f"{sub.notebook.name} could not be read "
                                   f"({type(exc).__name__}: {str(exc)[:160]})"))
    return codes


def _past_label(path: Path, taken: set[str]) -> str:
    """An earlier cohort's label: its folder's (zip's) name, made unique."""
    base = (path.stem if path.is_file() else path.resolve().name) or "past"
    label, n = base, 2
    while label in taken:
        label, n = f"{base}-{n}", n + 1
    taken.add(label)
    return label


def find_similar(source: Path, lab: str, *, course: str | Path | None = None,
                 past: Sequence[Path] = (), options: Options = Options(),
                 progress: Callable[[str], None] | None = None) -> SimilarityResult:
    """Compare every pair of ``source``'s students, and each of them with every student of
    the ``past`` cohorts (never two past students). Nothing is written: ``write_results``."""
    note = progress or (lambda _m: None)
    course_dir = find_course(course)
    rubric = load_rubric(course_dir / "rubrics" / f"{lab}.yaml")
    with tempfile.TemporaryDirectory(prefix="grader-similarity-") as tmp:
        current, skipped, layout = read_class(Path(source), lab, Path(tmp) / "current")
        earlier: list[Submitted] = []
        taken: set[str] = set()
        for n, path in enumerate(past):
            label = _past_label(Path(path), taken)
            found, more, _ = read_class(Path(path), lab, Path(tmp) / f"past{n}", label)
            earlier += found
            skipped += [Skipped(f"{label}: {s.source}", s.reason) for s in more]
        note(f"fingerprinting {len(current) + len(earlier)} notebooks")
        handed = boilerplate(handed_units(course_dir, rubric), options.k)
        codes = _codes(current + earlier, handed, options, skipped)
    current = [s for s in current if s.key in codes]
    earlier = [s for s in earlier if s.key in codes]
    if len(current) + len(earlier) < 2 or not current:
        raise CourseError(f"{source}: {len(current)} readable notebook(s); comparing needs at "
                          "least two (add --past DIR to compare one class with an earlier one)")
    note(f"comparing {len(current)} students")
    candidates = list(itertools.combinations(current, 2)) + list(itertools.product(current,
                                                                                   earlier))
    pairs = [compare_pair(a, b, codes[a.key], codes[b.key], options.threshold)[0]
             for a, b in candidates]
    pairs.sort(key=lambda p: (-p.similarity, -(p.shared_a + p.shared_b), p.a.key, p.b.key))
    return SimilarityResult(lab, rubric.title, current, earlier, pairs, skipped, options,
                            layout, rubric, codes)
