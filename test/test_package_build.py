"""colcon builds the package into an install space that ros2 run/launch can use."""

import os
from pathlib import Path
import shutil
import subprocess
import sys

import pytest

REPO = Path(__file__).resolve().parents[1]


def _colcon():
    exe = shutil.which('colcon') or str(Path(sys.executable).with_name('colcon'))
    if not Path(exe).exists():
        pytest.skip('colcon is not installed (bootstrap.sh installs it on the pip route)')
    return exe


def test_colcon_build_installs_executables_and_share(tmp_path):
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE='1')
    result = subprocess.run(
        [_colcon(), '--log-base', str(tmp_path / 'log'), 'build',
         '--base-paths', str(REPO), '--packages-select', 'nlml_hpe',
         '--build-base', str(tmp_path / 'build'), '--install-base', str(tmp_path / 'install')],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    prefix = tmp_path / 'install' / 'nlml_hpe'
    marker = prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' / 'nlml_hpe'
    assert marker.is_file()
    assert os.access(prefix / 'lib' / 'nlml_hpe' / 'head_pose_node', os.X_OK)
    share = prefix / 'share' / 'nlml_hpe'
    assert (share / 'package.xml').is_file()
    for rel in ['launch/pose.launch.py', 'config/pose.yaml', 'config/nlml_hpe.rviz',
                'models/nlml_hpe.safetensors', 'models/nlml_hpe.json']:
        assert (share / rel).is_file(), f'{rel} not installed'
    site = list(prefix.glob('lib/python3*/site-packages/nlml_hpe/geometry.py'))
    assert site, 'python package not installed'
