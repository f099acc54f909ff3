"""head_pose_node as a process: starts, reports ready, stops cleanly; bad input exits clearly."""

import os
from pathlib import Path
import signal
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip('rclpy', reason='rclpy is not installed (run bootstrap.sh)')
pytest.importorskip('nlml_hpe.estimator', reason='the inference core is not in this checkout')

REPO = Path(__file__).resolve().parents[1]


def _run(args):
    env = dict(os.environ, PYTHONUNBUFFERED='1', RCUTILS_LOGGING_BUFFERED_STREAM='0',
               PYTHONPATH=str(REPO / 'src') + os.pathsep + os.environ.get('PYTHONPATH', ''))
    return subprocess.Popen([sys.executable, '-m', 'nlml_hpe.ros.node', '--ros-args', *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _until_ready(proc, timeout=60):
    """Read the node's output until it is ready (or exits); return the lines read."""
    lines = []
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        lines.append(line)
        if 'head_pose_node ready' in line or time.monotonic() > deadline:
            break
    return lines


def _params_file(tmp_path, text):
    path = tmp_path / 'params.yaml'
    path.write_text('/**:\n  ros__parameters:\n' + ''.join(f'    {line}\n'
                                                         for line in text.splitlines()))
    return str(path)


@pytest.mark.ros
def test_node_process_starts_and_stops_on_sigint():
    from nlml_hpe.model import default_model_dir

    proc = _run(['-p', f'model_path:={default_model_dir()}', '-r', 'image:=/nlml_test/image'])
    try:
        lines = _until_ready(proc)
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
    assert 'Traceback' not in out


@pytest.mark.ros
@pytest.mark.parametrize('value, reason', [
    ('"five"', "max_faces: must be an integer (INTEGER), got 'five'"),
    ('5.0', 'max_faces: must be an integer (INTEGER), got 5.0'),
    ('50', 'max_faces: must be in [1, 20], got 50')])
def test_params_file_of_the_wrong_type_gives_the_reason_not_a_traceback(tmp_path, value,
                                                                         reason):
    path = _params_file(tmp_path, f'max_faces: {value}')
    proc = _run(['--params-file', path])
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    assert f'cannot start: {reason}' in out, out
    assert 'Traceback' not in out, out


@pytest.mark.ros
def test_params_file_integers_for_doubles_work_and_unknown_keys_are_reported(tmp_path):
    path = _params_file(tmp_path, 'looking_threshold_deg: 30\nlooking_target: [0, 0, 1]\n'
                        'max_facez: 3')
    proc = _run(['--params-file', path, '-r', '__ns:=/nlml_main_params'])
    try:
        lines = _until_ready(proc)
        out = ''.join(lines)
        assert 'head_pose_node ready' in out, out
        assert 'ignoring unknown parameter(s): max_facez' in out, out
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)


@pytest.mark.ros
def test_ctrl_c_while_a_frame_is_processed_is_quiet():
    """SIGINT while the worker decodes large frames: a clean exit, nothing logged about it.

    (The node before the split logged "frame skipped: RCLError: ... publisher's
    context is invalid" here.)
    """
    from conftest import spin_while_ok
    import cv2
    from diagnostic_msgs.msg import DiagnosticArray
    import numpy as np
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CompressedImage

    image = np.full((6000, 6000, 3), 120, np.uint8)  # ~0.7 s to decode, 120 kB to send
    image[::64] = 200
    ok, png = cv2.imencode('.png', image)
    assert ok
    msg = CompressedImage(format='png', data=png.tobytes())
    msg.header.frame_id = 'cam'
    proc = _run(['-r', '__ns:=/nlml_main_sigint', '-p', 'use_compressed:=true'])
    context = rclpy.Context()
    rclpy.init(context=context)
    lines, received = [], []
    try:
        lines += _until_ready(proc)
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
        reader.start()
        node = rclpy.create_node('nlml_main_sigint_pub', context=context)
        pub = node.create_publisher(CompressedImage, '/nlml_main_sigint/image/compressed',
                                    qos_profile_sensor_data)

        def on_diag(m):
            for status in m.status:
                if status.name.startswith('/nlml_main_sigint/head_pose_node'):
                    received.extend(int(kv.value) for kv in status.values
                                    if kv.key == 'frames_received')
        node.create_subscription(DiagnosticArray, '/diagnostics', on_diag, 10)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        threading.Thread(target=spin_while_ok, args=(executor, context), daemon=True).start()
        deadline = time.monotonic() + 30
        while not (received and received[-1] > 0):  # the worker is busy with a frame
            assert time.monotonic() < deadline, 'no frame reached the node'
            pub.publish(msg)
            time.sleep(0.1)
        for _ in range(3):
            pub.publish(msg)
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        reader.join(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
        rclpy.shutdown(context=context)
    out = ''.join(lines)
    for bad in ('RCLError', 'context is invalid', 'Traceback', 'frame skipped'):
        assert bad not in out, out
