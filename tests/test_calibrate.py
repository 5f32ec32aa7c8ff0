"""Calibration: anchors proposed from measurements and written into the rubric in place."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from grader.calibrate import Anchor, write_anchors
from grader.errors import CourseError
from grader.rubric import load_rubric

REPO = Path(__file__).resolve().parent.parent


def test_anchor_proposal_leaves_room_for_noise_and_zeroes_the_best_baseline() -> None:
    fid = Anchor("sample_fid", higher_is_better=False, reference=[19.4, 19.9, 18.6],
                 baselines={"independent_pixels": 169.0, "noise": 313.8})
    fid.propose()
    assert fid.zero_at == 169.0 and 19.9 < fid.full_at < 169.0
    elbo = Anchor("test_elbo", higher_is_better=True, reference=[-17.87, -17.85],
                  baselines={"independent_pixels": -25.22, "noise": -44.36})
    elbo.propose()
    assert elbo.zero_at == -25.22 and -25.22 < elbo.full_at < -17.87


def test_write_anchors_updates_only_the_numbers_and_stays_valid(tmp_path: Path) -> None:
    path = tmp_path / "vae.yaml"
    shutil.copy(REPO / "rubrics" / "vae.yaml", path)
    anchor = Anchor("test_elbo", True, [-17.9, -17.8], {"noise": -44.4}, full_at=-19.5,
                    zero_at=-26.0)
    before = load_rubric(path)
    comments = path.read_text().count("by `grader calibrate`")
    write_anchors(path, {"test_elbo": anchor})
    write_anchors(path, {"test_elbo": anchor})          # twice: one comment per item, not two
    text = path.read_text()
    assert text.count("by `grader calibrate`") == max(comments, 1)
    assert "reference [-17.90, -17.80]; baselines [noise -44.40]" in text
    after = load_rubric(path)
    item = next(i for i in after.items if i.id == "test_elbo")
    assert item.params["full_at"] == -19.5 and item.params["zero_at"] == -26.0
    untouched = [(a, b) for a, b in zip(before.items, after.items) if a.id != "test_elbo"]
    assert all(a == b for a, b in untouched)


def test_write_anchors_names_a_missing_item(tmp_path: Path) -> None:
    path = tmp_path / "vae.yaml"
    shutil.copy(REPO / "rubrics" / "vae.yaml", path)
    with pytest.raises(CourseError, match="no item block"):
        write_anchors(path, {"nope": Anchor("nope", True, [1.0], full_at=1.0)})


@pytest.mark.kernel
def test_calibrate_measures_the_reference_and_baselines() -> None:
    from grader.calibrate import calibrate

    anchors = calibrate("vae", course=REPO, seeds=2)
    fid, elbo = anchors["sample_fid"], anchors["test_elbo"]
    assert set(fid.baselines) == {"blurred", "independent_pixels", "noise"}
    assert max(fid.reference) < 30 and fid.baselines["independent_pixels"] > 150
    assert elbo.baselines["noise"] == pytest.approx(-64 * 0.6931471805599453, abs=1e-3)
    assert elbo.full_at > elbo.zero_at
