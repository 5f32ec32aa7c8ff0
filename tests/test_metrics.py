"""FID and KID against independent computations and published unit values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg

from grader.data import digit_labels, digits
from grader.metrics import digit_features, digits_cnn, fid, frechet_distance, kid


def test_frechet_distance_unit_value_from_checks_md() -> None:
    value = frechet_distance(torch.ones(3), 5 * torch.eye(3), 10 * torch.ones(3), 3 * torch.eye(3))
    assert value == pytest.approx(243.7621, abs=1e-4)


def test_frechet_distance_of_a_distribution_with_itself_is_zero() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(50, 20, generator=gen, dtype=torch.float64)
    sigma = a.T @ a / 50
    assert frechet_distance(torch.zeros(20), sigma, torch.zeros(20), sigma) < 1e-6


def test_frechet_distance_matches_scipy_sqrtm_on_random_gaussians() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(40, 8)), rng.normal(size=(40, 8))
    s1, s2 = a.T @ a / 40 + 0.1 * np.eye(8), b.T @ b / 40 + 0.1 * np.eye(8)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    covmean = linalg.sqrtm(s1 @ s2).real
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean)
    got = frechet_distance(*(torch.from_numpy(t) for t in (mu1, s1, mu2, s2)))
    assert got == pytest.approx(expected, rel=1e-8)


def test_fid_of_identical_sets_is_zero_and_of_shuffled_pixels_large() -> None:
    x = digits("test", "binary")
    assert fid(x, x) < 1e-6
    noise = torch.rand_like(x).round()
    assert fid(x, noise) > 10 * fid(digits("train", "binary")[:360], x)


def test_kid_is_unbiased_near_zero_for_same_distribution() -> None:
    ident = lambda t: t.reshape(len(t), -1).double()  # noqa: E731 - raw pixels as features
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(600, 16, generator=gen), torch.randn(600, 16, generator=gen)
    mean, std = kid(a, b, ident, subsets=50, subset_size=300)
    assert abs(mean) < 3 * std + 1e-3
    far, _ = kid(a, b + 1.0, ident, subsets=20, subset_size=300)
    assert far > 10 * max(std, 1e-4)


def test_the_shipped_feature_network_classifies_test_digits() -> None:
    model = digits_cnn()
    for form, floor in (("scaled", 0.97), ("continuous", 0.97), ("binary", 0.93)):
        acc = (model(digits("test", form)).argmax(1) == digit_labels("test")).double().mean()
        assert acc >= floor, (form, float(acc))
    assert digit_features(digits("test")).shape == (360, 128)
