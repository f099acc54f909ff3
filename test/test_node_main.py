"""head_pose_node as a process: starts, reports ready, stops cleanly; bad model exits clearly."""

import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip('rclpy', reason='rclpy is not installed (run bootstrap.sh)')
pytest.importorskip('nlml_hpe.estimator', reason='the inference core is not in this checkout')

REPO = Path(__file__).resolve().parents[1]


def _run(args):
    env = dict(os.environ, PYTHONUNBUFFERED='1', RCUTILS_LOGGING_BUFFERED_STREAM='0',
               PYTHONPATH=str(REPO / 'src') + os.pathsep + os.environ.get('PYTHONPATH', ''))
    return subprocess.Popen([sys.executable, '-m', 'nlml_hpe.node', '--ros-args', *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


@pytest.mark.ros
def test_node_process_starts_and_stops_on_sigint():
    from nlml_hpe.model import default_model_dir

    proc = _run(['-p', f'model_path:={default_model_dir()}', '-r', 'image:=/nlml_test/image'])
    lines = []
    deadline = time.monotonic() + 60
    try:
        for line in proc.stdout:
            lines.append(line)
            if 'head_pose_node ready' in line or time.monotonic() > deadline:
                break
        assert any('/nlml_test/image' in ln and 'ready' in ln for ln in lines), ''.join(lines)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.ros
def test_node_process_with_bad_model_exits_with_a_reason(tmp_path):
    bad = tmp_path / 'nlml_hpe.safetensors'
    bad.write_bytes(b'not a safetensors file')
    proc = _run(['-p', f'model_path:={bad}'])
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert 'cannot start' in out and str(bad) in out
