"""Sample-quality metrics computed by the grader itself, offline.

Public API: ``frechet_distance(mu1, sigma1, mu2, sigma2)``, ``fid(real, fake, features=None)``,
``kid(real, fake, features=None)`` on image tensors; the default features are the shipped
digits network (``digit_features``), trained by ``python -m grader.metrics.train_features``.
"""

from .features import DigitsCNN, digit_features, digits_cnn, inception_features
from .frechet import fid, frechet_distance, gaussian_stats, kid
from .quality import (ClassCoverage, Memorisation, bits_per_dim, class_coverage, memorisation,
                      precision_recall)

__all__ = ["ClassCoverage", "DigitsCNN", "Memorisation", "bits_per_dim", "class_coverage",
           "digit_features", "digits_cnn", "fid", "frechet_distance", "gaussian_stats",
           "inception_features", "kid", "memorisation", "precision_recall"]
