"""The house style is checked by the suite: ruff (lint and format) and mypy on the package."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["mypy"],
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_clean(command: list[str]) -> None:
    venv_bin = str(REPO / ".venv" / "bin")
    tool = shutil.which(command[0], path=venv_bin) or shutil.which(command[0])
    argv = [tool] if tool else [sys.executable, "-m", command[0]]
    proc = subprocess.run(
        [*argv, *command[1:]], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
