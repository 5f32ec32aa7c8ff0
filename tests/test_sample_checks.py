"""Sample-quality checks: a model that returns training images or noise cannot score."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from grader.pipeline import grade

pytestmark = pytest.mark.kernel
REPO = Path(__file__).resolve().parent.parent
RUBRIC = """assignment: vae
reference: reference/vae.py
checkpoints: [vae.pt]
items:
  - {id: fid, points: 2, visibility: public, check: sample_fid, partial: proportional,
     params: {model: {class: VAE, checkpoint: vae.pt}, n: 1000, binarize: true,
              full_at: 35.0, zero_at: 150.0}}
  - {id: coverage, points: 1, visibility: public, check: sample_coverage,
     params: {model: {class: VAE, checkpoint: vae.pt}, n: 1000, binarize: true}}
  - {id: memorisation, points: 1, visibility: public, check: sample_memorisation,
     params: {model: {class: VAE, checkpoint: vae.pt}, n: 1000, binarize: true}}
"""
COPIES = '''
from grader.data import digits as _digits
def _copies(self, n):
    return _digits("train", "binary")[torch.arange(n) % 1437]
VAE.sample = _copies
'''
NOISE = "VAE.sample = lambda self, n: torch.rand(n, 1, 8, 8)"
ONE_DIGIT = '''
from grader.data import digits as _digits, digit_labels as _labels
_sevens = _digits("test", "binary")[_labels("test") == 7]
VAE.sample = lambda self, n: _sevens[torch.arange(n) % len(_sevens)]
'''


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("course")
    (root / "rubrics").mkdir()
    (root / "rubrics" / "vae.yaml").write_text(RUBRIC)
    shutil.copytree(REPO / "reference", root / "reference")
    return root


def _outcomes(folder: Path, course: Path) -> dict[str, tuple[str, float, str]]:
    report = grade(folder, course=course)
    return {i["id"]: (i["outcome"], i["score"], i["message"]) for i in report["items"]}


def test_the_reference_model_passes_every_sample_check(make_submission, course: Path) -> None:
    out = _outcomes(make_submission(checkpoint=REPO / "reference/checkpoints/vae.pt"), course)
    assert {k: v[0] for k, v in out.items()} == {"fid": "passed", "coverage": "passed",
                                                  "memorisation": "passed"}, out


def test_a_model_returning_training_images_is_caught(make_submission, course: Path) -> None:
    out = _outcomes(make_submission(COPIES, checkpoint=REPO / "reference/checkpoints/vae.pt"),
                    course)
    assert out["memorisation"][0] == "failed" and "training images" in out["memorisation"][2]


def test_noise_scores_zero_on_quality(make_submission, course: Path) -> None:
    out = _outcomes(make_submission(NOISE, checkpoint=REPO / "reference/checkpoints/vae.pt"),
                    course)
    assert out["fid"][:2] == ("failed", 0.0) and out["coverage"][1] == 0.0


def test_a_collapsed_model_misses_classes(make_submission, course: Path) -> None:
    out = _outcomes(make_submission(ONE_DIGIT, checkpoint=REPO / "reference/checkpoints/vae.pt"),
                    course)
    assert out["coverage"][0] == "failed" and "need 10" in out["coverage"][2]
