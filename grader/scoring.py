"""Points from verdicts: pure arithmetic, no I/O."""

from __future__ import annotations

import math

__all__ = ["item_score", "total"]


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
