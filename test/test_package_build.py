"""colcon builds the package warning-free into an install space ros2 run/launch can use.

package.xml's run-time dependencies are what the node imports.
"""

import ast
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
    env = dict(os.environ)
    env.pop('PYTHONDONTWRITEBYTECODE', None)  # else setuptools warns that it cannot byte-compile
    result = subprocess.run(
        [_colcon(), '--log-base', str(tmp_path / 'log'), 'build',
         '--base-paths', str(REPO), '--packages-select', 'nlml_hpe',
         '--build-base', str(tmp_path / 'build'), '--install-base', str(tmp_path / 'install')],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    # No warnings (e.g. setuptools on data folders missing from `packages`).
    assert 'stderr output' not in result.stdout, result.stdout
    prefix = tmp_path / 'install' / 'nlml_hpe'
    marker = prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' / 'nlml_hpe'
    assert marker.is_file()
    assert os.access(prefix / 'lib' / 'nlml_hpe' / 'head_pose_node', os.X_OK)
    share = prefix / 'share' / 'nlml_hpe'
    assert (share / 'package.xml').is_file()
    for rel in ['launch/pose.launch.py', 'config/pose.yaml', 'config/nlml_hpe.rviz',
                'models/nlml_hpe.safetensors', 'models/nlml_hpe.json']:
        assert (share / rel).is_file(), f'{rel} not installed'
    site = list(prefix.glob('lib/python3*/site-packages/nlml_hpe'))
    assert site and (site[0] / 'geometry.py').is_file(), 'python package not installed'
    # The package data the node loads at run time: the face models and the demo clip.
    for rel in ['data/mediapipe/face_landmark.tflite',
                'data/mediapipe/face_detection_short_range.tflite',
                'data/mediapipe/face_detection_full_range_sparse.tflite',
                'data/mediapipe/LICENSE', 'data/canonical_face_468.npy',
                'data/demo/poses.json', 'data/demo/000.jpg']:
        assert (site[0] / rel).is_file(), f'{rel} not installed'


#: Python import name -> rosdep key, for the node's non-ROS imports.
ROSDEP_KEYS = {'cv2': 'python3-opencv', 'numpy': 'python3-numpy', 'scipy': 'python3-scipy'}
#: Imported by the node but without a rosdep key: pip install -r requirements-runtime.txt.
PIP_ONLY = {'ai_edge_litert', 'safetensors'}
#: Imported by the training code only (training/nlmlnet.py), never by the node.
TRAINING_ONLY = {'torch'}
#: What launch/pose.launch.py imports besides the node's imports (it runs rviz2 only with
#: rviz:=true, and rviz2 is no dependency: it would pull Qt onto headless robots).
LAUNCH = {'launch', 'launch_ros'}


def _module_file(src, dotted):
    """Return the file of module ``dotted`` (in nlml_hpe): ``a/b.py`` or ``a/b/__init__.py``."""
    path = src.joinpath(*dotted.split('.'))
    return path / '__init__.py' if path.is_dir() else path.with_suffix('.py')


def _node_imports():
    """Top-level names imported by the node (nlml_hpe.ros.node) and the modules it imports."""
    src = REPO / 'src'
    seen, found, todo = set(), set(), ['nlml_hpe.ros.node']
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = src.joinpath(*name.split('.'))
        path = path / '__init__.py' if path.is_dir() else path.with_suffix('.py')
        package = name if path.name == '__init__.py' else name.rpartition('.')[0]
        for n in ast.walk(ast.parse(path.read_text())):
            if isinstance(n, ast.ImportFrom) and n.level:
                base = package.split('.')[:len(package.split('.')) - n.level + 1]
                todo += (['.'.join(base + n.module.split('.'))] if n.module
                         else ['.'.join(base + [a.name]) for a in n.names])
            elif isinstance(n, ast.ImportFrom):
                found.add(n.module.split('.')[0])
            elif isinstance(n, ast.Import):
                found |= {a.name.split('.')[0] for a in n.names}
    return found - set(sys.stdlib_module_names)


def test_package_xml_run_dependencies_are_the_node_imports():
    import xml.etree.ElementTree as ET

    root = ET.parse(REPO / 'package.xml').getroot()
    exec_deps = {e.text for e in root.iter('exec_depend')}
    test_deps = {e.text for e in root.iter('test_depend')}
    imports = _node_imports()
    assert PIP_ONLY <= imports and not TRAINING_ONLY & imports
    want = {ROSDEP_KEYS.get(m, m) for m in imports - PIP_ONLY}
    assert exec_deps - LAUNCH == want
    assert LAUNCH & exec_deps == LAUNCH
    assert 'rviz2' not in exec_deps | test_deps
    assert 'apt install ros-$ROS_DISTRO-rviz2' in (REPO / 'package.xml').read_text()
    # torch (training) is never pulled by rosdep, not even as a test dependency.
    assert not any('torch' in d for d in exec_deps | test_deps)
    text = (REPO / 'package.xml').read_text()
    assert 'ai-edge-litert' in text and 'safetensors' in text  # the pip-only note
    assert 'mediapipe' not in {d for d in exec_deps | test_deps}
