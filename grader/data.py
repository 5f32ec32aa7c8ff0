"""The embedded datasets, in the forms fixed by LABS.md.

These loaders are what the student templates import and what the grader uses to
evaluate trained models, so both sides see exactly the same tensors. Everything
is deterministic and offline: scikit-learn bundles the digits with the package.

Forms of the 8x8 digits (values 0..16), all shaped (N, 1, 8, 8), float32:

- ``binary``: ``pixels >= 8`` as {0, 1}
- ``continuous``: ``(pixels + U[0, 1)) / 17`` in (0, 1), dequantised with a fixed seed
- ``scaled``: ``pixels / 16`` in [0, 1]
- ``raw``: the integer pixel values 0..16 as floats
"""

from __future__ import annotations

import functools
import os

import numpy as np
import torch

__all__ = ["DIGIT_FORMS", "digits", "digit_labels", "mnist", "moons"]

DIGIT_FORMS = ("binary", "continuous", "scaled", "raw")
_SPLITS = ("train", "test")
_TEST_SIZE = 360
_SPLIT_SEED = 0
_DEQUANT_SEED = {"train": 1, "test": 2}


@functools.lru_cache(maxsize=1)
def _split() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(
        data.images, data.target, test_size=_TEST_SIZE, stratify=data.target,
        random_state=_SPLIT_SEED,
    )
    return {"train": (x_tr, y_tr), "test": (x_te, y_te)}


def _check_split(split: str) -> None:
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")


def digits(split: str = "train", form: str = "binary") -> torch.Tensor:
    """The digits of one split in one form, shaped (N, 1, 8, 8), float32.

    Args:
        split: ``"train"`` (1,437 images) or ``"test"`` (360 images).
        form: one of ``binary``, ``continuous``, ``scaled``, ``raw``.
    """
    _check_split(split)
    pixels = _split()[split][0].astype(np.float64)
    if form == "binary":
        out = (pixels >= 8).astype(np.float64)
    elif form == "continuous":
        noise = np.random.default_rng(_DEQUANT_SEED[split]).random(pixels.shape)
        out = (pixels + noise) / 17.0
    elif form == "scaled":
        out = pixels / 16.0
    elif form == "raw":
        out = pixels
    else:
        raise ValueError(f"form must be one of {DIGIT_FORMS}, got {form!r}")
    return torch.from_numpy(out.astype(np.float32)).reshape(-1, 1, 8, 8)


def digit_labels(split: str = "train") -> torch.Tensor:
    """The class labels 0..9 of one split, shaped (N,), int64."""
    _check_split(split)
    return torch.from_numpy(_split()[split][1].astype(np.int64))


@functools.lru_cache(maxsize=1)
def _moons() -> dict[str, np.ndarray]:
    from sklearn.datasets import make_moons

    train, _ = make_moons(n_samples=2000, noise=0.05, random_state=0)
    test, _ = make_moons(n_samples=1000, noise=0.05, random_state=1)
    mean, std = train.mean(axis=0), train.std(axis=0)
    return {"train": (train - mean) / std, "test": (test - mean) / std}


def moons(split: str = "train") -> torch.Tensor:
    """Two moons (noise 0.05), standardised with the train statistics, shaped (N, 2)."""
    _check_split(split)
    return torch.from_numpy(_moons()[split].astype(np.float32))


def mnist(root: str | os.PathLike[str], split: str = "train", form: str = "binary"
          ) -> torch.Tensor:
    """MNIST from a local torchvision folder (``root/MNIST/raw``), (N, 1, 28, 28) float32.

    Nothing downloads: a missing folder is an error that names it. Forms as for the
    digits (``binary``: pixels >= 128; ``continuous``: (pixels + U[0,1)) / 256 with a
    fixed seed; ``scaled``: pixels / 255; ``raw``: 0..255).
    """
    _check_split(split)
    from torchvision.datasets import MNIST

    try:
        data = MNIST(os.fspath(root), train=split == "train", download=False)
    except RuntimeError as exc:
        raise FileNotFoundError(
            f"{root}: no MNIST here ({exc}). Put the four files of MNIST's raw/ folder under "
            f"{os.path.join(os.fspath(root), 'MNIST', 'raw')}; grader never downloads.") from None
    pixels = data.data.double().unsqueeze(1)
    if form == "binary":
        out = (pixels >= 128).double()
    elif form == "continuous":
        gen = torch.Generator().manual_seed(_DEQUANT_SEED[split])
        out = (pixels + torch.rand(pixels.shape, generator=gen, dtype=torch.float64)) / 256.0
    elif form == "scaled":
        out = pixels / 255.0
    elif form == "raw":
        out = pixels
    else:
        raise ValueError(f"form must be one of {DIGIT_FORMS}, got {form!r}")
    return out.float()
