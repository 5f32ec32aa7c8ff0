"""Shared fixtures: submissions built from the trusted reference plus extra cells."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent


def build_submission(folder: Path, *extra: str, checkpoint: Path | None = None) -> Path:
    """A folder with vae.ipynb defining the reference solution, then ``extra`` cells."""
    nb = nbformat.v4.new_notebook(metadata={"grader": {"assignment": "vae"}})
    nb.cells = [nbformat.v4.new_code_cell("TRAIN = False\nSEED = 0\nDEVICE = 'cpu'",
                                          metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell((REPO / "reference" / "vae.py").read_text()),
                *[nbformat.v4.new_code_cell(src) for src in extra]]
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / "vae.ipynb")
    if checkpoint is not None:
        (folder / "vae.pt").write_bytes(checkpoint.read_bytes())
    return folder


@pytest.fixture
def make_submission(tmp_path: Path) -> Callable[..., Path]:
    counter = iter(range(1000))

    def make(*extra: str, checkpoint: Path | None = None) -> Path:
        return build_submission(tmp_path / f"sub{next(counter)}", *extra, checkpoint=checkpoint)

    return make
