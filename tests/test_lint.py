"""The engine passes ruff (with the bandit S rules: pickle, subprocess, temp files)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_grader_package_passes_ruff() -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "grader", "tests"],
                            cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_grader_never_deserialises_with_pickle() -> None:
    """The trust boundary: nothing in grader/ unpickles; torch.load only with weights_only."""
    for path in (REPO / "grader").rglob("*.py"):
        text = path.read_text()
        for banned in ("pickle.load", "pickle.loads", "dill.", "Unpickler"):
            assert banned not in text, f"{path}: {banned}"
        for line in text.splitlines():
            if "torch.load(" in line:
                assert "weights_only=True" in line, f"{path}: {line.strip()}"
