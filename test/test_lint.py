"""Lint the package the way ROS 2 packages are linted (flake8 + pep257 rules, via ruff)."""

from pathlib import Path
import shutil
import subprocess
import sys

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.linter
def test_ruff_clean():
    ruff = shutil.which('ruff') or str(Path(sys.executable).with_name('ruff'))
    if not Path(ruff).exists():
        pytest.skip('ruff is not installed (pip install ruff, or use ament_flake8)')
    result = subprocess.run([ruff, 'check', '--no-cache', str(REPO)], capture_output=True,
                            text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
