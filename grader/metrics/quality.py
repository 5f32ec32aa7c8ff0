"""Precision/recall, class coverage, memorisation and bits/dim: pure functions on tensors."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from scipy import stats

__all__ = ["precision_recall", "ClassCoverage", "class_coverage", "Memorisation",
           "memorisation", "bits_per_dim"]


def _kth_radius(x: torch.Tensor, k: int) -> torch.Tensor:
    d = torch.cdist(x, x)
    return d.kthvalue(k + 1, dim=1).values          # +1: the point itself is at distance 0


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN balls in features.

    Precision: the share of fake points inside the k-NN ball of some real point;
    recall: the share of real points inside the k-NN ball of some fake point.
    """
    real, fake = real.double(), fake.double()
    r_real, r_fake = _kth_radius(real, k), _kth_radius(fake, k)
    d = torch.cdist(fake, real)                      # (F, R)
    precision = (d <= r_real.unsqueeze(0)).any(1).double().mean()
    recall = (d.T <= r_fake.unsqueeze(0)).any(1).double().mean()
    return float(precision), float(recall)


@dataclass(frozen=True)
class ClassCoverage:
    """What the course classifier sees in a set of samples."""

    counts: tuple[int, ...]        # predicted class counts, 0..9
    covered: int                   # classes holding at least ``min_share`` / 10 of the samples
    chi2_p: float                  # chi-square test of the counts against uniform
    confidence: float              # mean max softmax probability


def class_coverage(images: torch.Tensor, min_share: float = 0.25) -> ClassCoverage:
    """Predicted classes of (N, 1, 8, 8) images by the shipped digits network."""
    from .features import digits_cnn

    with torch.no_grad():
        probs = digits_cnn()(images.float().reshape(-1, 1, 8, 8)).softmax(1)
    counts = torch.bincount(probs.argmax(1), minlength=10)
    expected = len(images) / 10
    covered = int((counts >= min_share * expected).sum())
    p = float(stats.chisquare(counts.numpy()).pvalue) if len(images) >= 50 else float("nan")
    return ClassCoverage(tuple(int(c) for c in counts), covered, p,
                         float(probs.max(1).values.mean()))


@dataclass(frozen=True)
class Memorisation:
    """Nearest-neighbour distances to the training set, generated vs held-out test."""

    fake_median: float             # median distance generated -> nearest training image
    test_median: float             # median distance test -> nearest training image
    ratio: float                   # fake_median / test_median (copies: ~0; honest: ~1)
    copied_share: float            # share of samples at most as far as the 1st percentile of test


def memorisation(train: torch.Tensor, test: torch.Tensor, fake: torch.Tensor,
                 features: object = None) -> Memorisation:
    """Compare how close samples sit to training images with how close unseen data sits."""
    def embed(x: torch.Tensor) -> torch.Tensor:
        if features is None:
            return x.reshape(len(x), -1).double()
        return features(x).double()  # type: ignore[operator]

    tr = embed(train)
    d_fake = torch.cdist(embed(fake), tr).min(1).values
    d_test = torch.cdist(embed(test), tr).min(1).values
    fake_med, test_med = float(d_fake.median()), float(d_test.median())
    floor = torch.quantile(d_test, 0.01)
    return Memorisation(fake_med, test_med, fake_med / max(test_med, 1e-12),
                        float((d_fake <= floor).double().mean()))


def bits_per_dim(nll_nats: float, dims: int, levels: int | None = None) -> float:
    """Bits per dimension of a per-image negative log-likelihood in nats.

    With ``levels`` (e.g. 17 for dequantised 0..16 digits scaled to (0, 1)), the density
    NLL of the continuous data becomes the NLL of the discrete data it stands for:
    -log P(bin) = -log p(y) + D log(levels), each bin having width 1 / levels.
    """
    discrete = nll_nats + (dims * math.log(levels) if levels else 0.0)
    return discrete / (dims * math.log(2))
