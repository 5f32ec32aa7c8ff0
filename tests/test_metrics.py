"""FID and KID against independent computations and published unit values."""

from __future__ import annotations

import math

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


def test_precision_recall_bounds() -> None:
    from grader.metrics import precision_recall

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(300, 8, generator=gen)
    assert precision_recall(a, a) == (1.0, 1.0)
    p, r = precision_recall(a, a + 100.0)
    assert p == 0.0 and r == 0.0
    p, r = precision_recall(a, a[:30] * 0.1)       # mode collapse: precise, no recall
    assert p > 0.9 and r < 0.3


def test_class_coverage_sees_collapse() -> None:
    from grader.metrics import class_coverage

    x, y = digits("test", "scaled"), digit_labels("test")
    full = class_coverage(x)
    assert full.covered == 10 and full.chi2_p > 0.01 and full.confidence > 0.9
    ones = class_coverage(x[y == 1].repeat(3, 1, 1, 1))
    assert ones.covered == 1 and ones.chi2_p < 1e-6


def test_memorisation_flags_copies_not_fresh_data() -> None:
    from grader.metrics import memorisation

    train, test = digits("train", "binary"), digits("test", "binary")
    copies = memorisation(train, test, train[:360])
    fresh = memorisation(train, test, digits("test", "binary"))
    assert copies.ratio < 0.05 and copies.copied_share > 0.9
    assert fresh.ratio == pytest.approx(1.0) and fresh.copied_share < 0.1


def test_bits_per_dim_accounts_for_dequantisation() -> None:
    from grader.metrics import bits_per_dim

    assert bits_per_dim(64 * math.log(2), 64) == pytest.approx(1.0)
    # A uniform density on (0, 1)^64 of 17-level data: log2(17) bits per dim.
    assert bits_per_dim(0.0, 64, levels=17) == pytest.approx(math.log2(17))


def test_fid_with_inception_from_a_local_weights_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from torchvision.models import inception_v3

    from grader.metrics import inception_features

    torch.manual_seed(0)
    path = tmp_path / "inception.pt"
    torch.save(inception_v3(weights=None, aux_logits=True, init_weights=True).state_dict(), path)
    feats = inception_features(str(path))
    x = digits("test", "scaled")[:6]
    assert feats(x).shape == (6, 2048)
    assert fid(x, x, features=feats) < 1e-6


def test_kid_matches_a_direct_unbiased_mmd() -> None:
    from grader.metrics.frechet import _mmd2_unbiased

    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(40, 5)), rng.normal(0.3, 1.0, size=(30, 5))

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return (a @ b / 5 + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(40) for j in range(40) if i != j) / (40 * 39)
    yy = sum(k(y[i], y[j]) for i in range(30) for j in range(30) if i != j) / (30 * 29)
    xy = sum(k(a, b) for a in x for b in y) / (40 * 30)
    assert _mmd2_unbiased(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(
        xx + yy - 2 * xy, rel=1e-10)


def test_precision_recall_match_a_brute_force_loop() -> None:
    from grader.metrics import precision_recall

    rng = np.random.default_rng(4)
    real, fake = rng.normal(size=(25, 3)), rng.normal(0.5, 1.2, size=(20, 3))

    def radius(points: np.ndarray, i: int) -> float:
        return sorted(np.linalg.norm(points - points[i], axis=1))[3]     # k = 3, self at 0

    prec = np.mean([any(np.linalg.norm(f - r) <= radius(real, j) for j, r in enumerate(real))
                    for f in fake])
    rec = np.mean([any(np.linalg.norm(r - f) <= radius(fake, j) for j, f in enumerate(fake))
                   for r in real])
    got = precision_recall(torch.from_numpy(real), torch.from_numpy(fake), k=3)
    assert got == pytest.approx((prec, rec))
