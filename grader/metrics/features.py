"""The shipped feature network for 8x8 digits: a small CNN classifier.

Trained by ``python -m grader.metrics.train_features`` (seeded, a few seconds on a CPU) on
the train split in all three image forms (binary, continuous, scaled), so that samples of
any lab land in the same feature space. Its weights ship beside this file as a
``state_dict`` (well under 1 MB) and load with ``weights_only=True``; nothing downloads.
"""

from __future__ import annotations

import functools
from importlib import resources

import torch
from torch import nn

__all__ = ["DigitsCNN", "digits_cnn", "digit_features", "inception_features", "WEIGHTS"]

WEIGHTS = "digits_cnn.pt"


class DigitsCNN(nn.Module):
    """Conv(1->32) -> Conv(32->64) -> 4x4 pool -> 128-d features -> 10 logits."""

    feature_dim = 128

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 4 * 4, self.feature_dim), nn.ReLU(),
        )
        self.head = nn.Linear(self.feature_dim, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@functools.lru_cache(maxsize=1)
def digits_cnn() -> DigitsCNN:
    """The shipped network, in eval mode, float32, on the CPU."""
    model = DigitsCNN()
    path = resources.files("grader.metrics").joinpath(WEIGHTS)
    with resources.as_file(path) as file:
        if not file.is_file():
            raise FileNotFoundError(f"{file}: the digits feature network is missing; train it "
                                    "with `python -m grader.metrics.train_features`")
        model.load_state_dict(torch.load(file, map_location="cpu", weights_only=True))
    return model.eval()


@torch.no_grad()
def digit_features(images: torch.Tensor, batch: int = 2048) -> torch.Tensor:
    """128-d features of (N, 1, 8, 8) images in [0, 1], float64 for the statistics."""
    model = digits_cnn()
    parts = [model.features(chunk.float().reshape(-1, 1, 8, 8)) for chunk in images.split(batch)]
    return torch.cat(parts).double()


def inception_features(weights: str, *, batch: int = 64):  # type: ignore[no-untyped-def]
    """A feature function from a LOCAL Inception-v3 ``state_dict`` (pool3, 2048-d).

    For MNIST-scale or natural images where the digits network does not apply; nothing is
    downloaded: pass the path of torchvision's ``inception_v3`` weights saved with
    ``torch.save(model.state_dict(), path)``. Grey images are repeated to three channels and
    resized to 299 x 299 (bilinear); values are expected in [0, 1].
    """
    import torch.nn.functional as F
    from torchvision.models import inception_v3

    model = inception_v3(weights=None, aux_logits=True, init_weights=False)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    model.fc = nn.Identity()
    model.eval()

    @torch.no_grad()
    def features(images: torch.Tensor) -> torch.Tensor:
        parts = []
        for chunk in images.float().split(batch):
            x = chunk.expand(-1, 3, -1, -1) if chunk.shape[1] == 1 else chunk
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
            std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
            parts.append(model((x - mean) / std))
        return torch.cat(parts).double()

    return features
