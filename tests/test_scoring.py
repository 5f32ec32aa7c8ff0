"""``grader.scoring``: partial credit and linear credit between calibrated anchors.

Properties for any input the checks can hand it (non-finite metrics of a diverged model
included): 0 <= score <= points, monotone in the metric the way it improves, exactly full
credit from ``full_at`` on and none from ``zero_at`` on, and equal anchors refused, both
by the function and when the rubric is loaded.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from grader.checks import REGISTRY
from grader.errors import RubricError
from grader.rubric import load_rubric
from grader.scoring import item_score, linear_credit

RULES = st.sampled_from(["all_or_nothing", "proportional"])
ANCHORS = st.floats(-1e6, 1e6)
METRICS = st.floats(allow_nan=True, allow_infinity=True)


def _anchors(draw_a: float, draw_b: float, higher_is_better: bool) -> tuple[float, float]:
    """(zero_at, full_at) in the direction the metric improves."""
    assume(draw_a != draw_b)
    lo, hi = sorted((draw_a, draw_b))
    return (lo, hi) if higher_is_better else (hi, lo)


# --- partial credit ---------------------------------------------------------------------

@given(st.floats(0, 100), st.floats(allow_nan=True), RULES)
def test_item_score_stays_within_zero_and_points(points: float, fraction: float, rule: str
                                                 ) -> None:
    score = item_score(points, fraction, rule)
    assert 0.0 <= score <= points + 1e-9


@given(st.floats(0, 1), st.floats(0, 1))
def test_proportional_score_is_monotone(a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    assert item_score(5, lo, "proportional") <= item_score(5, hi, "proportional")


def test_all_or_nothing_needs_full_fraction() -> None:
    assert item_score(3, 0.999, "all_or_nothing") == 0.0
    assert item_score(3, 1.0, "all_or_nothing") == 3.0


def test_unknown_partial_rule_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown partial-credit rule"):
        item_score(3, 1.0, "generous")


# --- linear credit between anchors ------------------------------------------------------

@given(METRICS, ANCHORS, ANCHORS, st.booleans(), st.floats(0, 100), RULES)
def test_metric_score_stays_within_zero_and_points(value: float, a: float, b: float,
                                                   higher: bool, points: float, rule: str
                                                   ) -> None:
    zero_at, full_at = _anchors(a, b, higher)
    fraction = linear_credit(value, zero_at, full_at)
    assert 0.0 <= fraction <= 1.0
    assert 0.0 <= item_score(points, fraction, rule) <= points + 1e-9


@given(st.floats(allow_nan=False, allow_infinity=False), st.floats(allow_nan=False,
       allow_infinity=False), ANCHORS, ANCHORS, st.booleans())
def test_linear_credit_is_monotone_in_the_metric(v1: float, v2: float, a: float, b: float,
                                                 higher: bool) -> None:
    zero_at, full_at = _anchors(a, b, higher)
    worse, better = sorted((v1, v2)) if higher else sorted((v1, v2), reverse=True)
    assert linear_credit(worse, zero_at, full_at) <= linear_credit(better, zero_at, full_at)


@given(ANCHORS, ANCHORS, st.booleans(), st.floats(0, 1e6))
def test_linear_credit_is_full_from_full_at_and_none_from_zero_at(a: float, b: float,
                                                                  higher: bool, beyond: float
                                                                  ) -> None:
    zero_at, full_at = _anchors(a, b, higher)
    step = beyond if higher else -beyond
    assert linear_credit(full_at, zero_at, full_at) == 1.0
    assert linear_credit(full_at + step, zero_at, full_at) == 1.0
    assert linear_credit(zero_at, zero_at, full_at) == 0.0
    assert linear_credit(zero_at - step, zero_at, full_at) == 0.0


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_metric_earns_nothing(value: float) -> None:
    assert linear_credit(value, 0.9, 0.96) == 0.0
    assert linear_credit(value, 160.0, 40.0) == 0.0


def test_linear_credit_is_linear_between_the_anchors() -> None:
    assert linear_credit(0.95, 0.90, 0.96) == pytest.approx(5 / 6)
    assert linear_credit(100.0, 160.0, 40.0) == pytest.approx(0.5)     # lower is better


@given(ANCHORS, METRICS)
def test_equal_anchors_are_refused(anchor: float, value: float) -> None:
    with pytest.raises(ValueError, match="zero_at and full_at are both"):
        linear_credit(value, anchor, anchor)


def test_every_metric_check_credits_through_linear_credit() -> None:
    """No check computes its own line between the anchors: the rule lives in scoring."""
    metric_checks = [spec for spec in REGISTRY.values() if spec.metric is not None]
    assert len(metric_checks) >= 5
    for spec in metric_checks:
        source = inspect.getsource(spec.fn)
        assert "linear_credit(" in source, spec.kind
        assert not re.search(r"/ \((hi|full|lo|zero)\w* - ", source), spec.kind


# --- anchors refused when the rubric is loaded ------------------------------------------

RUBRIC = """assignment: demo
items:
  - id: acc
    points: 2
    visibility: public
    check: test_accuracy
    params:
      zero_at: {zero}
      full_at: {full}
"""


@pytest.mark.parametrize("zero, full, words", [
    (0.9, 0.9, "zero_at and full_at are both 0.9"),
    (0.96, 0.9, "full_at 0.9 is below zero_at 0.96, but a higher test_accuracy is better"),
])
def test_rubric_with_unusable_anchors_is_refused(tmp_path: Path, zero: float, full: float,
                                                 words: str) -> None:
    path = tmp_path / "demo.yaml"
    path.write_text(RUBRIC.format(zero=zero, full=full))
    with pytest.raises(RubricError) as info:
        load_rubric(path)
    assert words in str(info.value)
    assert (info.value.path, info.value.line, info.value.key) == (path, 9, "params.full_at")
    assert "full_at (full credit) must be higher than zero_at" in info.value.hint


def test_rubric_with_anchors_in_the_metric_direction_loads(tmp_path: Path) -> None:
    path = tmp_path / "demo.yaml"
    path.write_text(RUBRIC.format(zero=0.9, full=0.96))
    assert load_rubric(path).items[0].params == {"zero_at": 0.9, "full_at": 0.96}
