"""Fréchet distance (FID) and kernel inception distance (KID), in float64.

The matrix square root of FID uses symmetric eigen-decompositions, not
``scipy.linalg.sqrtm`` (which produced large imaginary parts in scipy 1.11.2-1.12):
``tr sqrt(S1^1/2 S2 S1^1/2)`` with the inner matrix symmetrised and eigenvalues clipped
at 0. Values depend on the feature extractor: compare only numbers computed with the
same features, at the same sample size (FID is biased at small n; KID is not).
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["frechet_distance", "gaussian_stats", "fid", "kid"]

Features = Callable[[torch.Tensor], torch.Tensor]


def _psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor,
                     sigma2: torch.Tensor) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2), computed in float64."""
    mu1, mu2, s1, s2 = (torch.as_tensor(t, dtype=torch.float64) for t in (mu1, mu2, sigma1,
                                                                           sigma2))
    root1 = _psd_sqrt(s1)
    inner = root1 @ s2 @ root1
    covmean_trace = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp_min(0).sqrt().sum()
    value = (mu1 - mu2).pow(2).sum() + torch.trace(s1) + torch.trace(s2) - 2 * covmean_trace
    return float(value.clamp_min(0))


def gaussian_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance of (N, d) features, float64."""
    f = features.double()
    return f.mean(0), torch.cov(f.T)


def _features(images: torch.Tensor, features: Features | None) -> torch.Tensor:
    if features is None:
        from .features import digit_features

        features = digit_features
    return features(images).double()


def fid(real: torch.Tensor, fake: torch.Tensor, features: Features | None = None) -> float:
    """FID between two image sets (default features: the shipped digits network)."""
    return frechet_distance(*gaussian_stats(_features(real, features)),
                            *gaussian_stats(_features(fake, features)))


def _mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    d = x.shape[1]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    m, n = len(x), len(y)
    return float((kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
                 + (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1)) - 2 * kxy.mean())


def kid(real: torch.Tensor, fake: torch.Tensor, features: Features | None = None, *,
        subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """KID: unbiased MMD^2 with the kernel (x.y/d + 1)^3, mean and std over subsets."""
    fr, ff = _features(real, features), _features(fake, features)
    size = min(subset_size, len(fr), len(ff))
    gen = torch.Generator().manual_seed(seed)
    values = torch.tensor([
        _mmd2_unbiased(fr[torch.randperm(len(fr), generator=gen)[:size]],
                       ff[torch.randperm(len(ff), generator=gen)[:size]])
        for _ in range(subsets)], dtype=torch.float64)
    return float(values.mean()), float(values.std())
