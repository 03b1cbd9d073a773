"""The code style pyproject states is the code style of the tree: ruff's lint
rules and its formatter, enforced here so CI fails on a violation."""

import os
import pathlib
import re
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


def test_no_test_module_imports_another():
    """Tests share helpers through conftest and helper modules (releases,
    parity), never through another test module."""
    pattern = re.compile(r"^\s*(from|import)\s+test_\w+", re.MULTILINE)
    found = {
        path.name: pattern.findall(path.read_text())
        for path in sorted(pathlib.Path(ROOT, "tests").glob("*.py"))
    }
    assert {n: m for n, m in found.items() if m} == {}
