"""The embedded datasets: the split and forms LABS.md fixes, deterministic, offline."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import torch

from grader.data import digit_labels, digits, mnist, moons


def test_digits_split_sizes_stratified_and_forms() -> None:
    assert digits("train").shape == (1437, 1, 8, 8) and digits("test").shape == (360, 1, 8, 8)
    counts = torch.bincount(digit_labels("test"), minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37
    raw = digits("test", "raw")
    assert torch.equal(digits("test", "binary"), (raw >= 8).float())
    assert torch.allclose(digits("test", "scaled"), raw / 16)
    cont = digits("test", "continuous")
    assert ((cont * 17).floor() == raw).all() and cont.min() > 0 and cont.max() < 1


def test_digits_are_deterministic() -> None:
    assert torch.equal(digits("train", "continuous"), digits("train", "continuous"))


def test_moons_are_standardised_with_train_statistics() -> None:
    train, test = moons("train"), moons("test")
    assert train.shape == (2000, 2) and test.shape == (1000, 2)
    assert torch.allclose(train.mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(train.std(0, unbiased=False), torch.ones(2), atol=1e-4)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="split"):
        digits("validation")
    with pytest.raises(ValueError, match="form"):
        digits("train", "grey")


def _idx(path: Path, magic: int, dims: tuple[int, ...], data: bytes) -> None:
    path.write_bytes(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims)
                     + data)


def test_mnist_reads_a_local_folder_and_never_downloads(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="never downloads"):
        mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", 3), ("t10k", 2)):
        pixels = bytes(range(256)) * (n * 784 // 256) + bytes(n * 784 % 256)
        _idx(raw / f"{prefix}-images-idx3-ubyte", 2051, (n, 28, 28), pixels)
        _idx(raw / f"{prefix}-labels-idx1-ubyte", 2049, (n,), bytes(range(n)))
    x = mnist(tmp_path, "test", "binary")
    assert x.shape == (2, 1, 28, 28) and set(x.unique().tolist()) <= {0.0, 1.0}
    assert mnist(tmp_path, "train", "scaled").max() == 1.0
