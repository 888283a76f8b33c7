"""The code passes `ruff check` with the rules in pyproject.toml, so `make lint` stays green.

ruff is pinned in constraints.txt: a newer release may add checks to the selected rule sets,
and a lint rule should change when someone decides it, not when PyPI does.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_ruff_check_passes() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (it comes with the dev extra: make test installs it)")
    res = subprocess.run(
        [ruff, "check", "--no-cache", "fusion_edge", "tests", "benchmarks"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, f"ruff check found problems (run `make lint`):\n{res.stdout}{res.stderr}"
