"""The code's lint: ruff with the project's own rule selection (pyproject.toml and grader/pyproject.toml) finds
nothing, and pre-commit runs the same check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# the environment's ruff, wherever its scripts folder is (python -m finds the binary the ruff package installed)
RUFF = [sys.executable, "-m", "ruff"]


def _ruff(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([*RUFF, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_ruff_finds_nothing():
    out = _ruff("check", "--no-cache", ".")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_the_rule_selection_is_the_projects_and_it_bites(tmp_path):
    """The configuration is read (not ruff's defaults): an unused import, a blind except and an unsorted import
    block in a file under the project are each found."""
    shown = _ruff("check", "--show-settings", "lnkit/__init__.py").stdout
    assert "linter.line_length = 120" in shown and "linter.unresolved_target_version = 3.10" in shown
    bad = tmp_path / "probe.py"  # outside the tree: a ruff run beside this one never sees it
    bad.write_text("import sys\nimport os\n\ntry:\n    pass\nexcept Exception:\n    pass\n")
    out = _ruff("check", "--no-cache", "--config", str(ROOT / "pyproject.toml"), "--output-format", "concise", str(bad))
    assert out.returncode == 1
    for code in ("F401", "BLE001", "I001"):
        assert code in out.stdout, out.stdout


def test_pre_commit_runs_the_same_ruff():
    out = subprocess.run([sys.executable, "-m", "pre_commit", "validate-config"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    config = (ROOT / ".pre-commit-config.yaml").read_text()
    assert "entry: ruff check" in config and "language: system" in config
