"""The code passes ruff with the rules and line length that pyproject.toml sets (ruff comes with the `test`
extra, so the README's test command runs the linter too)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _ruff() -> list[str]:
    """The command that runs the ruff of this interpreter's environment."""
    if importlib.util.find_spec("ruff") is not None:
        return [sys.executable, "-m", "ruff"]
    beside = Path(sys.executable).parent / "ruff"
    assert beside.is_file(), 'ruff is not installed; `pip install -e ".[test]"` installs it'
    return [str(beside)]


def test_ruff_reports_nothing():
    result = subprocess.run([*_ruff(), "check", "--no-cache", "--output-format", "concise", str(REPO)],
                            cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"ruff check found problems:\n{result.stdout}{result.stderr}"
