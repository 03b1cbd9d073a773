"""The code style pyproject states is the code style of the tree: ruff's lint
rules and its formatter, enforced here so CI fails on a violation."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize(
    "args", [["check", "--output-format=concise", "."], ["format", "--check", "."]]
)
def test_ruff_passes(args):
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
