"""Points from verdicts: pure arithmetic, no I/O, property-tested (``tests/test_scoring.py``).

Two rules live here and nowhere else: how a fraction of an item becomes points (the
rubric's ``partial``), and how a metric earns a fraction between two calibrated anchors
(``zero_at``: no credit, ``full_at``: full credit), whichever way the metric improves.
"""

from __future__ import annotations

import math

__all__ = ["item_score", "total", "linear_credit", "anchor_problem"]

_EQUAL_ANCHORS = ("zero_at and full_at are both {value!r}: credit between equal anchors is "
                  "undefined")


def item_score(points: float, fraction: float, rule: str) -> float:
    """Points earned for ``fraction`` in [0, 1] of an item worth ``points``.

    ``all_or_nothing`` gives the points only at fraction 1; ``proportional``
    gives ``points * fraction``. Non-finite fractions earn nothing.
    """
    if not math.isfinite(fraction):
        return 0.0
    fraction = min(1.0, max(0.0, fraction))
    if rule == "all_or_nothing":
        return float(points) if fraction >= 1.0 else 0.0
    if rule == "proportional":
        return min(float(points), round(points * fraction, 4))
    raise ValueError(f"unknown partial-credit rule {rule!r}")


def total(scores: list[float]) -> float:
    return round(sum(scores), 4)


def anchor_problem(zero_at: float, full_at: float) -> str | None:
    """Why ``zero_at``/``full_at`` cannot anchor linear credit (None when they can).

    Equal anchors give no line to credit along, so ``load_rubric`` refuses them.
    """
    if zero_at == full_at:
        return _EQUAL_ANCHORS.format(value=zero_at)
    return None


def linear_credit(value: float, zero_at: float, full_at: float) -> float:
    """The fraction in [0, 1] a metric ``value`` earns: 0 at or beyond ``zero_at``, 1 at or
    beyond ``full_at``, linear between. The anchors give the direction: ``full_at`` above
    ``zero_at`` for a metric where higher is better (accuracy, ELBO), below it where lower
    is better (NLL, FID). A non-finite value (a diverged model) earns nothing.

    Raises:
        ValueError: equal anchors (a rubric that ``load_rubric`` should have refused).
    """
    problem = anchor_problem(zero_at, full_at)
    if problem:
        raise ValueError(problem)
    if not math.isfinite(value):
        return 0.0
    return min(1.0, max(0.0, (value - zero_at) / (full_at - zero_at)))
