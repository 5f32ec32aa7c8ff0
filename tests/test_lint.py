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


def test_generated_reference_modules_read_only_names_they_define() -> None:
    """`grader build` writes reference/<lab>.py from the solution notebook's definitions: a
    helper there that reads a name only the notebook defines (flow's `fit` read `DEVICE`, from
    the parameters cell) would raise NameError the day a check calls it. (Unused imports and
    long lines are the notebook's own and allowed.)"""
    modules = sorted(str(p.relative_to(REPO)) for p in (REPO / "reference").glob("*.py"))
    assert modules
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--select", "F821,F811,F404",
                             *modules], cwd=REPO, capture_output=True, text=True, check=False)
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
