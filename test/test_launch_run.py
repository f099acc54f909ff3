"""The real launch/pose.launch.py, run by `ros2 launch` as a user runs it.

Each test starts ``ros2 launch nlml_hpe pose.launch.py ...`` as a subprocess in a
random ROS_DOMAIN_ID, from an install prefix in a temporary directory laid out as
colcon installs the package (share/nlml_hpe with links to this checkout's launch/,
config/ and models/, lib/nlml_hpe/head_pose_node running this checkout's node), and
watches it from a probe node: with the defaults the node answers a face image on
/head_pose and /diagnostics; a namespace and use_compressed move its topics;
autostart:=false waits for `ros2 lifecycle set`; SIGINT (Ctrl-C) stops everything
without a traceback; rviz:=true without rviz2 and a params file of the wrong type
fail with a clear message.  Every test checks that no head_pose_node outlives its
launch.  ros2 CLI calls get a timeout and a retry (DDS replies are occasionally lost).

launch, launch_ros and the ros2 CLI are not on PyPI: on the pip route bootstrap.sh
installs them from ../shared/ros2_launch when present; otherwise these tests skip.
"""

import collections
import importlib.util
import os
from pathlib import Path
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

rclpy = pytest.importorskip('rclpy', reason='rclpy is not installed (run bootstrap.sh)')
from conftest import spin_while_ok  # noqa: E402
from test_launch import _require_launch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: Bound of one ros2 CLI call, and how many times it is tried.
CLI_TIMEOUT, CLI_TRIES = 30.0, 3
#: No ros2 daemon (it would outlive the test); 2 s of discovery, since the default 0.5 s
#: often missed the node's lifecycle services ("Node not found").
CLI_DIRECT = ('--no-daemon', '--spin-time', '2')
NODE = 'head_pose_node'
#: What colcon installs under share/nlml_hpe (setup.py's data_files).
SHARE_FILES = ['package.xml', 'launch/*.launch.py', 'config/*.yaml', 'config/*.rviz',
               'models/*.safetensors', 'models/*.json']


def _ros2():
    """Return the ros2 executable beside this Python (the pip route) or on PATH."""
    _require_launch()
    for module in ('ros2launch', 'ros2lifecycle'):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f'{module} is not importable (bootstrap.sh installs the ros2 CLI from '
                        '../shared/ros2_launch when present; or source a ROS 2 install)')
    sibling = Path(sys.executable).with_name('ros2')
    exe = str(sibling) if sibling.exists() else shutil.which('ros2')
    if not exe:
        pytest.skip('no ros2 executable beside this Python or on PATH')
    return exe


@pytest.fixture(scope='module')
def prefix(tmp_path_factory):
    """Return an ament prefix holding nlml_hpe as colcon installs it (links to this checkout)."""
    root = tmp_path_factory.mktemp('prefix')
    marker = root / 'share' / 'ament_index' / 'resource_index' / 'packages' / 'nlml_hpe'
    marker.parent.mkdir(parents=True)
    marker.write_text('')
    for pattern in SHARE_FILES:
        for path in REPO.glob(pattern):
            dest = root / 'share' / 'nlml_hpe' / path.relative_to(REPO)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.symlink_to(path)
    exe = root / 'lib' / 'nlml_hpe' / NODE
    exe.parent.mkdir(parents=True)
    exe.write_text(f'#!{sys.executable}\nimport sys\n\nfrom nlml_hpe.ros.node import main\n\n'
                   'sys.exit(main())\n')
    exe.chmod(0o755)
    return root


@pytest.fixture
def ros(prefix, tmp_path):
    """Yield a Ros: environment, launches and probe of one test, all cleaned up after it."""
    ros = Ros(prefix, tmp_path)
    try:
        yield ros
    finally:
        ros.close()


class Launch:
    """``ros2 launch nlml_hpe pose.launch.py <args>`` in its own session; output collected."""

    def __init__(self, ros2, args, env):
        self.proc = subprocess.Popen([ros2, 'launch', 'nlml_hpe', 'pose.launch.py', *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env, start_new_session=True)
        self.lines = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self):
        return ''.join(self.lines)

    def wait_for(self, text, timeout=30.0):
        """Wait until ``text`` appears in the output."""
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert self.proc.poll() is None, f'launch ended before {text!r}:\n{self.output}'
            assert time.monotonic() < deadline, f'no {text!r} in {timeout} s:\n{self.output}'
            time.sleep(0.1)

    def wait_exit(self, timeout=30.0):
        """Wait for the launch to end; return its exit code (output read to the end)."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f'launch still running after {timeout} s:\n{self.output}')
        self._reader.join(timeout=5)
        return code

    def interrupt(self, group=False):
        """Send SIGINT to the launch process, or to its process group as Ctrl-C does."""
        if group:
            os.killpg(self.proc.pid, signal.SIGINT)
        else:
            self.proc.send_signal(signal.SIGINT)
        return self.wait_exit(timeout=30.0)


class Ros:
    """One test's ROS domain: its launches, CLI calls and a probe node in that domain."""

    def __init__(self, prefix, tmp_path):
        self.ros2 = _ros2()
        self.prefix = prefix
        self.domain = random.SystemRandom().randint(1, 99)  # conftest's session uses 100+
        self.env = dict(
            os.environ, ROS_DOMAIN_ID=str(self.domain), ROS_LOG_DIR=str(tmp_path / 'log'),
            AMENT_PREFIX_PATH=os.pathsep.join(
                filter(None, [str(prefix), os.environ.get('AMENT_PREFIX_PATH')])),
            PYTHONPATH=os.pathsep.join(
                filter(None, [str(REPO / 'src'), os.environ.get('PYTHONPATH')])),
            PYTHONUNBUFFERED='1', RCUTILS_COLORIZED_OUTPUT='0')
        self.launches = []
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=self.domain)
        self.node = rclpy.create_node('nlml_launch_probe', context=self.context)
        self.got = collections.defaultdict(list)
        executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        executor.add_node(self.node)
        self._spinner = threading.Thread(target=spin_while_ok, args=(executor, self.context),
                                         daemon=True)
        self._spinner.start()

    def launch(self, *args):
        launch = Launch(self.ros2, list(args), self.env)
        self.launches.append(launch)
        return launch

    def survivors(self):
        """Return the head_pose_node processes of this prefix still running (after 5 s)."""
        psutil = pytest.importorskip('psutil')
        deadline = time.monotonic() + 5.0
        while True:
            found = [p for p in psutil.process_iter(['cmdline'])
                     if str(self.prefix) in ' '.join(p.info['cmdline'] or [])]
            if not found or time.monotonic() > deadline:
                return found
            time.sleep(0.2)

    def assert_clean_end(self, launch, code):
        """Assert that the launch exited 0 without a traceback and left no node behind."""
        assert code == 0, launch.output
        assert 'Traceback' not in launch.output, launch.output
        assert 'process has finished cleanly' in launch.output, launch.output
        assert not self.survivors(), launch.output

    def cli(self, *args):
        """Run ``ros2 <args>`` (timeout, retried); return stdout of the first success."""
        problem = ''
        for _ in range(CLI_TRIES):
            try:
                result = subprocess.run([self.ros2, *args], env=self.env, capture_output=True,
                                        text=True, timeout=CLI_TIMEOUT)
            except subprocess.TimeoutExpired:
                problem = f'timed out after {CLI_TIMEOUT} s'
                continue
            if result.returncode == 0:
                return result.stdout
            problem = result.stdout + result.stderr
            time.sleep(1.0)
        pytest.fail(f'ros2 {" ".join(args)} failed {CLI_TRIES} times: {problem}')

    def state(self, node):
        """Return the lifecycle state label of ``node`` (``ros2 lifecycle get``)."""
        return self.cli('lifecycle', 'get', *CLI_DIRECT, node).split()[0]

    def transition(self, node, transition, then):
        """``ros2 lifecycle set`` until ``node`` is in state ``then`` (a retry may find it so)."""
        for _ in range(CLI_TRIES):
            try:
                result = subprocess.run(
                    [self.ros2, 'lifecycle', 'set', *CLI_DIRECT, node, transition],
                    env=self.env, capture_output=True, text=True, timeout=CLI_TIMEOUT)
                if 'Transitioning successful' in result.stdout:
                    return
            except subprocess.TimeoutExpired:
                pass
            if self.state(node) == then:  # an answer lost, not the transition
                return
        pytest.fail(f'{node} not {then} after {CLI_TRIES} tries of {transition}')

    def topics(self, name, namespace):
        """Return (subscribed, published) topic names of a node, or None while unseen."""
        try:
            subs = self.node.get_subscriber_names_and_types_by_node(name, namespace)
            pubs = self.node.get_publisher_names_and_types_by_node(name, namespace)
        except Exception:  # noqa: BLE001 - rclpy raises NodeNameNonExistentError while unseen
            return None
        return {t for t, _ in subs}, {t for t, _ in pubs}

    def wait(self, cond, what, timeout=30.0):
        deadline = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < deadline, f'{what} not seen in {timeout} s'
            time.sleep(0.1)

    def listen(self, topic, msg_type):
        self.node.create_subscription(msg_type, topic, self.got[topic].append, 10)

    def feed_until(self, topic, msg, answer, timeout=30.0, period=0.2):
        """Publish ``msg`` on ``topic`` every ``period`` s until one arrives on ``answer``."""
        from rclpy.qos import qos_profile_sensor_data

        pub = self.node.create_publisher(type(msg), topic, qos_profile_sensor_data)
        deadline = time.monotonic() + timeout
        while not self.got[answer]:
            assert time.monotonic() < deadline, f'nothing on {answer} in {timeout} s'
            msg.header.stamp = self.node.get_clock().now().to_msg()
            pub.publish(msg)
            time.sleep(period)
        return self.got[answer][-1]

    def close(self):
        for launch in self.launches:  # only after a failed test: kill what it started
            if launch.proc.poll() is None:
                os.killpg(launch.proc.pid, signal.SIGKILL)
                launch.proc.wait(timeout=10)
        for proc in self.survivors():
            proc.kill()
        self.context.try_shutdown()
        self._spinner.join(timeout=5)


def _face_image(compressed=False):
    """Return the demo clip's frontal face as a sensor_msgs Image (or CompressedImage).

    At half the clip's size (320x240, the face ~100 px wide): a raw image crosses the
    session's transport (UDP, LOCALHOST discovery) in a quarter of the fragments, any
    of which lost loses the frame; at 640x480 the launched node sometimes got none of
    60 frames in 30 s.
    """
    import cv2
    from sensor_msgs.msg import CompressedImage, Image

    from nlml_hpe.bench.demo import DEMO_DIR, FRAME_ID, load_clip

    rgb = cv2.resize(load_clip(DEMO_DIR)[0][0][1], (320, 240), interpolation=cv2.INTER_AREA)
    if compressed:
        ok, jpg = cv2.imencode('.jpg', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        assert ok
        msg = CompressedImage(format='jpeg', data=jpg.tobytes())
    else:
        h, w = rgb.shape[:2]
        msg = Image(height=h, width=w, encoding='rgb8', step=w * 3, data=rgb.tobytes())
    msg.header.frame_id = FRAME_ID
    return msg


@pytest.mark.ros
def test_defaults_answer_a_face_and_sigint_stops_the_node(ros):
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PoseStamped

    from nlml_hpe.bench.demo import FRAME_ID

    ros.listen('/head_pose', PoseStamped)
    ros.listen('/diagnostics', DiagnosticArray)
    launch = ros.launch()
    ros.wait(lambda: '/camera/image_raw' in (ros.topics(NODE, '/') or [()])[0],
             'head_pose_node subscribed to /camera/image_raw')
    pose = ros.feed_until('/camera/image_raw', _face_image(), '/head_pose')
    assert pose.header.frame_id == FRAME_ID
    assert 0.2 < pose.pose.position.z < 3.0  # a face in front of the camera
    ros.wait(lambda: ros.got['/diagnostics'], '/diagnostics', timeout=5.0)
    ros.assert_clean_end(launch, launch.interrupt())  # SIGINT to the launch process only


@pytest.mark.ros
def test_namespace_and_compressed_input(ros, tmp_path):
    """namespace:=robot1 moves the node and its relative topics; use_compressed reads JPEG.

    /diagnostics, /tf and /humans/* stay absolute (README); an unknown params-file key
    gets a warning.
    """
    from geometry_msgs.msg import PoseStamped

    params = tmp_path / 'pose.yaml'
    params.write_text((REPO / 'config' / 'pose.yaml').read_text() + '    max_facez: 3\n')
    ros.listen('/robot1/head_pose', PoseStamped)
    launch = ros.launch('namespace:=robot1', 'use_compressed:=true', f'params_file:={params}')
    ros.wait(lambda: ros.topics(NODE, '/robot1') is not None, '/robot1/head_pose_node')
    ros.wait(lambda: '/camera/image_raw/compressed' in ros.topics(NODE, '/robot1')[0],
             'the subscription to /camera/image_raw/compressed')
    subs, pubs = ros.topics(NODE, '/robot1')
    assert '/camera/image_raw' not in subs and '/camera/camera_info' in subs
    assert {'/robot1/head_pose', '/robot1/head_markers', '/diagnostics', '/tf',
            '/humans/faces/tracked'} <= pubs
    assert '/head_pose' not in pubs
    assert ros.topics(NODE, '/') is None
    ros.feed_until('/camera/image_raw/compressed', _face_image(compressed=True),
                   '/robot1/head_pose')
    launch.wait_for('ignoring unknown parameter(s): max_facez')
    ros.assert_clean_end(launch, launch.interrupt())


@pytest.mark.ros
def test_autostart_false_is_driven_through_the_lifecycle(ros):
    launch = ros.launch('autostart:=false')
    ros.wait(lambda: ros.topics(NODE, '/') is not None, 'head_pose_node')
    assert ros.state('/head_pose_node') == 'unconfigured'
    assert '/camera/image_raw' not in ros.topics(NODE, '/')[0]
    ros.transition('/head_pose_node', 'configure', 'inactive')
    ros.transition('/head_pose_node', 'activate', 'active')
    ros.wait(lambda: '/camera/image_raw' in ros.topics(NODE, '/')[0],
             'the subscription to /camera/image_raw after activate')
    ros.assert_clean_end(launch, launch.interrupt())


@pytest.mark.ros
def test_ctrl_c_stops_everything_without_a_traceback(ros):
    """Ctrl-C in a terminal signals the whole process group: launch and node."""
    launch = ros.launch()
    ros.wait(lambda: '/camera/image_raw' in (ros.topics(NODE, '/') or [()])[0],
             'head_pose_node subscribed to /camera/image_raw')
    ros.assert_clean_end(launch, launch.interrupt(group=True))


@pytest.mark.ros
def test_rviz_without_rviz2_fails_cleanly(ros):
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        get_package_prefix('rviz2')
        pytest.skip('rviz2 is installed: this test checks rviz:=true without it')
    except (PackageNotFoundError, OSError):
        pass
    launch = ros.launch('rviz:=true')
    assert launch.wait_exit() != 0
    assert 'rviz2) is not installed' in launch.output
    assert 'apt install ros-$ROS_DISTRO-rviz2' in launch.output
    assert 'process started' not in launch.output and 'Traceback' not in launch.output
    assert not ros.survivors(), launch.output


@pytest.mark.ros
@pytest.mark.parametrize('value', ['"five"', '5.0'])
def test_params_file_of_the_wrong_type_fails_cleanly(ros, tmp_path, value):
    params = tmp_path / 'pose.yaml'
    params.write_text(f'/**:\n  ros__parameters:\n    max_faces: {value}\n')
    launch = ros.launch(f'params_file:={params}')
    launch.wait_exit()
    assert 'cannot start: max_faces: ' in launch.output and 'INTEGER' in launch.output
    assert 'Traceback' not in launch.output, launch.output
    assert not ros.survivors(), launch.output


def test_bootstrap_makes_the_venv_an_ament_prefix_of_nlml_hpe():
    """bootstrap.sh registers nlml_hpe in its venv: `ros2 launch` there needs nothing sourced."""
    ros2 = _ros2()
    venv = Path(sys.prefix)
    if not (venv / 'share' / 'ament_index' / 'resource_index' / 'packages' / 'nlml_hpe').exists():
        pytest.skip(f'{venv} is not a venv made by bootstrap.sh')
    for pattern in SHARE_FILES:
        found = list((venv / 'share' / 'nlml_hpe').glob(pattern))
        assert found and all(p.resolve().is_file() for p in found), pattern
    assert os.access(venv / 'lib' / 'nlml_hpe' / NODE, os.X_OK)
    env = {k: v for k, v in os.environ.items() if k != 'AMENT_PREFIX_PATH'}
    result = subprocess.run([ros2, 'launch', '--show-args', 'nlml_hpe', 'pose.launch.py'],
                            env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "'autostart':" in result.stdout and "'rviz':" in result.stdout
