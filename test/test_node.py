"""head_pose_node with real rclpy on an isolated ROS_DOMAIN_ID (set by conftest.py).

The node runs in-process with the real estimator (MediaPipe's face models run by
LiteRT + the shipped model; plumbing only, angles are not asserted here).  A
probe node publishes good and bad input and records every output.  The face
images come from the shipped demo clip (src/nlml_hpe/data/demo), so these tests
need no ../shared data.
"""

import sys
import threading
import time
import traceback

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy', reason='rclpy is not installed (run bootstrap.sh)')
pytest.importorskip('nlml_hpe.estimator', reason='the inference core (nlml_hpe.estimator) '
                    'is not in this checkout yet')
from builtin_interfaces.msg import Time  # noqa: E402
from conftest import spin_while_ok  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import (  # noqa: E402
    PoseArray,
    PoseStamped,
    PoseWithCovarianceStamped,
)
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402
from std_msgs.msg import (  # noqa: E402
    Bool,
    Float32MultiArray,
    Int32MultiArray,
    UInt8MultiArray,
)
from tf2_msgs.msg import TFMessage  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from nlml_hpe.bench.demo import DEMO_DIR, load_clip  # noqa: E402
from nlml_hpe.model import default_model_dir  # noqa: E402
from nlml_hpe.ros.node import HeadPoseNode  # noqa: E402

FRAME = 'test_cam_optical_frame'
OUTPUTS = {
    'head_pose': PoseStamped, 'head_poses': PoseArray, '/tf': TFMessage,
    'head_markers': MarkerArray, 'gaze_offsets': Float32MultiArray,
    'looking_at_camera': Bool, 'face_ids': Int32MultiArray, '/diagnostics': DiagnosticArray,
    'target_offsets': Float32MultiArray, 'looking_at_target': UInt8MultiArray,
    'head_pose_cov': PoseWithCovarianceStamped,
}


def _face_rgb():
    """Return the demo clip's frontal face (640x480 RGB, shipped with the package)."""
    frames, _, _ = load_clip(DEMO_DIR)
    return frames[0][1].copy()


class Rig:
    """Node under test + probe node + a background executor."""

    def __init__(self, model_dir, namespace='', estimator=None, **params):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        overrides = [Parameter('model_path', value=str(model_dir))]
        # These tests read a frame's outputs: a face is listed at once (the listing's
        # hysteresis is the stream's, test_tracking.py and test_node_hri.py).
        params.setdefault('track_confirm_frames', 1)
        overrides += [Parameter(k, value=v) for k, v in params.items()]
        self.node = HeadPoseNode(context=self.context, parameter_overrides=overrides,
                                 namespace=namespace, estimator=estimator)
        self.probe = rclpy.create_node('nlml_test_probe', context=self.context,
                                       namespace=namespace)
        self.received = {name: [] for name in OUTPUTS}
        self.spin_errors = []  # a callback's exception, which stopped the spinner
        self._lock = threading.Lock()
        for name, kind in OUTPUTS.items():
            self.probe.create_subscription(kind, name, self._recorder(name), 50)
        self.image_pub = self.probe.create_publisher(Image, 'image', qos_profile_sensor_data)
        self.jpeg_pub = self.probe.create_publisher(CompressedImage, 'image/compressed',
                                                    qos_profile_sensor_data)
        self.info_pub = self.probe.create_publisher(CameraInfo, 'camera_info',
                                                    qos_profile_sensor_data)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.probe)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()
        pub = self.jpeg_pub if params.get('use_compressed') else self.image_pub
        self._wait(lambda: pub.get_subscription_count() > 0
                   and self.info_pub.get_subscription_count() > 0
                   and all(p is not None and p.get_subscription_count() > 0
                           for p in self._node_pubs()),
                   'discovery')

    def _node_pubs(self):
        """Return the node's publishers the probe listens to ([None] before configure)."""
        outputs = self.node.outputs
        if outputs is None:
            return [None]
        return [outputs.publisher(t) for t in ('head_pose', 'head_poses', '/tf', 'head_markers',
                                               'gaze_offsets')]

    def _spin(self):
        spin_while_ok(self.executor, self.context, self.spin_errors)

    def _recorder(self, name):
        def record(msg):
            with self._lock:
                self.received[name].append(msg)
        return record

    def _wait(self, cond, what, timeout=20.0):
        deadline = time.monotonic() + timeout
        while not cond():
            self._check_spinner()
            assert time.monotonic() < deadline, \
                f'timed out waiting for {what}; ' + self.spinner_state()
            time.sleep(0.01)

    def _check_spinner(self):
        """Fail with the callback's exception if one stopped the spinner."""
        assert not self.spin_errors, 'a callback raised; the spinner stopped:\n' + \
            self.spin_errors[0]

    def spinner_state(self):
        """Return where the spinner thread is (its stack), for a timeout's message."""
        frame = sys._current_frames().get(self._thread.ident)
        if frame is None:
            return 'the spinner thread has ended'
        return 'the spinner is at:\n' + ''.join(traceback.format_stack(frame))

    def clear(self):
        with self._lock:
            for v in self.received.values():
                v.clear()

    def count(self, name):
        with self._lock:
            return len(self.received[name])

    def last(self, name):
        with self._lock:
            return self.received[name][-1]

    def handled(self):
        s = self.node.stats
        return s['processed'] + s['rejected'] + s['errors']

    def send(self, msg, pub=None):
        """Publish until the node has taken the frame, then wait until it is handled."""
        pub = pub or self.image_pub
        before, got = self.handled(), self.node.stats['received']
        deadline = time.monotonic() + 10.0
        while self.node.stats['received'] == got:  # best effort: resend if lost
            self._check_spinner()
            assert time.monotonic() < deadline, \
                'node never received the frame; ' + self.spinner_state()
            pub.publish(msg)
            resend = time.monotonic() + 0.5  # a loaded machine delivers late, not twice
            while self.node.stats['received'] == got and time.monotonic() < resend:
                time.sleep(0.01)
        self._wait(lambda: self.handled() > before, 'frame handled')
        time.sleep(0.3)  # let the outputs reach the probe

    def close(self):
        self.node.destroy_node()
        self.probe.destroy_node()
        rclpy.shutdown(context=self.context)
        self._thread.join(timeout=5)


def _image_msg(rgb, stamp, encoding='rgb8', frame=FRAME):
    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding=encoding, is_bigendian=0,
                step=rgb.shape[1] * (rgb.shape[2] if rgb.ndim == 3 else 1), data=rgb.tobytes())
    msg.header.stamp, msg.header.frame_id = stamp, frame
    return msg


def _info(k, w=640, h=480):
    msg = CameraInfo(width=w, height=h, k=[float(v) for v in k])
    msg.header.frame_id = FRAME
    return msg


GOOD_K = [600.0, 0, 320, 0, 600.0, 240, 0, 0, 1]


@pytest.fixture(scope='module')
def model_dir():
    """Return the shipped model (no torch needed to make one)."""
    return default_model_dir()


@pytest.fixture(scope='module')
def rig(model_dir):
    r = Rig(model_dir, smoothing=False, publish_gaze_frames=True)
    yield r
    r.close()


@pytest.mark.ros
def test_bad_images_warn_and_publish_nothing(rig):
    rgb = np.full((48, 64, 3), 128, np.uint8)
    good = _image_msg(rgb, Time(sec=5))
    cases = []
    m = _image_msg(np.zeros((48, 64), np.uint16).view(np.uint8).reshape(48, 128), Time(sec=6),
                   encoding='mono16')
    m.width, m.step = 64, 128
    cases.append(('16-bit', m))
    m = _image_msg(rgb, Time(sec=7))
    m.encoding = '32FC1'
    cases.append(('float encoding', m))
    m = _image_msg(rgb, Time(sec=8))
    m.height = m.width = m.step = 0
    m.data = b''
    cases.append(('zero size', m))
    m = _image_msg(rgb, Time(sec=9))
    m.data = bytes(good.data)[:-100]
    cases.append(('truncated', m))
    m = _image_msg(rgb, Time(sec=10))
    m.step = 64 * 3 - 3
    cases.append(('step too small', m))
    m = _image_msg(rgb, Time(sec=11))
    m.step = 64 * 3 + 8
    cases.append(('step/size mismatch', m))
    rig.clear()
    for what, msg in cases:
        before = rig.node.warnings['image']
        rig.send(msg)
        assert rig.node.warnings['image'] == before + 1, what
    for name in ('head_pose', 'head_poses', '/tf', 'head_markers', 'gaze_offsets',
                 'looking_at_camera', 'face_ids'):
        assert rig.count(name) == 0, f'{name} published for bad input'
    assert rig.node.stats['rejected'] >= len(cases)
    assert rig.node.pump.running


@pytest.mark.ros
def test_frame_without_face_publishes_no_pose(rig):
    rig.clear()
    before = rig.node.warnings['no_face']
    rig.send(_image_msg(np.full((480, 640, 3), 128, np.uint8), Time(sec=20, nanosec=5)))
    assert rig.node.warnings['no_face'] == before + 1
    assert rig.count('head_pose') == 0 and rig.count('looking_at_camera') == 0
    assert rig.count('/tf') == 0
    poses = rig.last('head_poses')
    assert poses.poses == [] and poses.header.frame_id == FRAME
    assert (poses.header.stamp.sec, poses.header.stamp.nanosec) == (20, 5)
    assert list(rig.last('gaze_offsets').data) == []
    # Old markers are cleared.
    assert [m.action for m in rig.last('head_markers').markers] == [Marker.DELETEALL]


@pytest.mark.ros
def test_invalid_camera_info_is_ignored_with_a_warning(rig):
    for k in ([float('nan')] * 9, [0.0] * 9):
        before = rig.node.warnings['camera_info']
        deadline = time.monotonic() + 10
        while rig.node.warnings['camera_info'] == before:
            assert time.monotonic() < deadline
            rig.info_pub.publish(_info(k))
            time.sleep(0.05)
        assert rig.node.camera_matrix is None
    deadline = time.monotonic() + 10
    while rig.node.camera_matrix is None:
        assert time.monotonic() < deadline
        rig.info_pub.publish(_info(GOOD_K))
        time.sleep(0.05)
    np.testing.assert_allclose(rig.node.camera_matrix, np.reshape(GOOD_K, (3, 3)))


def _send_info(rig, k):
    want = None if k is None else np.reshape(k, (3, 3))
    deadline = time.monotonic() + 10
    while True:
        cur = rig.node.camera_matrix
        if (want is None and cur is None) or (want is not None and cur is not None
                                               and np.allclose(cur, want)):
            return
        assert time.monotonic() < deadline
        rig.info_pub.publish(_info(k if k is not None else [0.0] * 9))
        time.sleep(0.05)


@pytest.mark.ros
def test_face_frame_outputs_carry_stamp_and_frame(rig):
    _send_info(rig, GOOD_K)
    rgb = _face_rgb()
    rig.clear()
    rig.send(_image_msg(rgb, Time(sec=1234, nanosec=5678)))
    assert rig.count('head_pose') == 1
    pose = rig.last('head_pose')
    assert pose.header.frame_id == FRAME
    assert (pose.header.stamp.sec, pose.header.stamp.nanosec) == (1234, 5678)
    q = pose.pose.orientation
    assert abs(np.linalg.norm([q.x, q.y, q.z, q.w]) - 1.0) < 1e-6
    assert 0.1 < pose.pose.position.z < 5.0  # metric, in front of the camera
    poses = rig.last('head_poses')
    assert poses.header == pose.header and len(poses.poses) >= 1
    assert poses.poses[0] == pose.pose
    ids = list(rig.last('face_ids').data)
    offsets = list(rig.last('gaze_offsets').data)
    assert len(ids) == len(offsets) == len(poses.poses)
    assert all(0.0 <= o <= 180.0 for o in offsets)
    looking = rig.last('looking_at_camera').data
    assert looking == (offsets[0] <= rig.node.get_parameter('looking_threshold_deg').value)
    tf = rig.last('/tf').transforms
    # One face frame per face and, with publish_gaze_frames, one gaze frame.
    faces = [t for t in tf if t.child_frame_id.startswith('face_')]
    gazes = [t for t in tf if t.child_frame_id.startswith('gaze_')]
    assert len(faces) == len(gazes) == len(ids) and len(tf) == 2 * len(ids)
    face = faces[0]
    assert gazes[0].child_frame_id == 'gaze_' + face.child_frame_id[len('face_'):]
    assert face.header.frame_id == FRAME and face.header.stamp == pose.header.stamp
    p = pose.pose.position
    t = face.transform.translation
    assert (t.x, t.y, t.z) == (p.x, p.y, p.z)
    assert face.transform.rotation == pose.pose.orientation
    markers = rig.last('head_markers').markers
    arrows = [m for m in markers if m.type == Marker.ARROW and m.action == Marker.ADD]
    assert len(arrows) == 4 * len(ids)
    assert all(m.header.frame_id == FRAME and m.header.stamp == pose.header.stamp
               for m in markers)
    # Same face in the next frame keeps its id.
    rig.send(_image_msg(rgb, Time(sec=1234, nanosec=40_000_000)))
    assert list(rig.last('face_ids').data)[0] == ids[0]


@pytest.mark.ros
def test_primary_face_uncertainty_on_head_pose_cov(rig):
    _send_info(rig, GOOD_K)
    rig.clear()
    rig.send(_image_msg(_face_rgb(), Time(sec=1300)))
    assert rig.count('head_pose_cov') == 1
    msg = rig.last('head_pose_cov')
    assert msg.header == rig.last('head_pose').header
    assert msg.pose.pose == rig.last('head_pose').pose
    cov = np.reshape(msg.pose.covariance, (6, 6))
    assert np.allclose(cov, cov.T) and np.all(np.linalg.eigvalsh(cov) > 0)
    assert np.all(np.degrees(np.sqrt(np.diag(cov)[3:])) < 45.0)  # σ in rad², not deg²


@pytest.mark.ros
def test_without_intrinsics_face_is_at_default_distance(rig):
    _send_info(rig, None)
    rig.node.set_parameters([Parameter('default_distance_m', value=2.5)])
    rig.clear()
    rig.send(_image_msg(_face_rgb()[:, :, ::-1].copy(), Time(sec=50), encoding='bgr8'))
    p = rig.last('head_pose').pose.position
    assert abs(np.linalg.norm([p.x, p.y, p.z]) - 2.5) < 1e-6 and p.z > 0
    rig.node.set_parameters([Parameter('default_distance_m', value=1.0)])


@pytest.mark.ros
def test_only_the_newest_frame_is_processed(rig):
    rgb = _face_rgb()
    stats0 = dict(rig.node.stats)
    rig.clear()
    stamps = [Time(sec=300 + i) for i in range(15)]
    for st in stamps:
        rig.image_pub.publish(_image_msg(rgb, st))
        time.sleep(0.002)
    rig._wait(lambda: not rig.node.pump.pending and rig.count('head_poses') > 0, 'drain')
    time.sleep(1.0)
    received = rig.node.stats['received'] - stats0.get('received', 0)
    processed = rig.node.stats['processed'] - stats0.get('processed', 0)
    dropped = rig.node.stats['dropped'] - stats0.get('dropped', 0)
    assert received >= 2
    assert processed < received and dropped == received - processed
    got = [m.header.stamp.sec for m in rig.received['head_poses']]
    assert got == sorted(got) and set(got) <= {s.sec for s in stamps}
    assert got[-1] == max(s.sec for s in stamps[:received]) or got[-1] == stamps[-1].sec


@pytest.mark.ros
def test_diagnostics_report_rates_and_counts(rig):
    rig._wait(lambda: rig.count('/diagnostics') > 0, 'diagnostics', timeout=5)
    rig.clear()
    rig._wait(lambda: rig.count('/diagnostics') > 0, 'diagnostics', timeout=5)
    status = rig.last('/diagnostics').status[0]
    values = {kv.key: kv.value for kv in status.values}
    for key in ('input_rate_hz', 'processing_latency_ms_p50', 'faces', 'frames_dropped',
                'frames_rejected', 'frames_processed', 'faces_reread_off_axis', 'landmarks_ms',
                'crops_motion_blur_undone'):
        assert key in values
    assert int(values['frames_rejected']) == rig.node.stats['rejected']
    assert int(values['frames_processed']) >= 1


@pytest.mark.ros
def test_compressed_input(model_dir):
    rig = Rig(model_dir, use_compressed=True)
    try:
        rgb = _face_rgb()
        ok, jpg = cv2.imencode('.jpg', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        assert ok
        bad = CompressedImage(format='jpeg', data=jpg.tobytes()[:500])
        bad.header.frame_id = FRAME
        rig.send(bad, rig.jpeg_pub)
        assert rig.node.warnings['image'] == 1 and rig.count('head_poses') == 0
        good = CompressedImage(format='jpeg', data=jpg.tobytes())
        good.header.frame_id, good.header.stamp = FRAME, Time(sec=77)
        rig.send(good, rig.jpeg_pub)
        assert rig.count('head_pose') == 1
        assert rig.last('head_pose').header.stamp.sec == 77
    finally:
        rig.close()


@pytest.mark.ros
def test_rate_cap_and_tracking_switch(rig):
    rgb = _face_rgb()
    rig.node.set_parameters([Parameter('max_rate', value=2.0), Parameter('tracking', value=False)])
    try:
        processed0 = rig.node.stats['processed']
        received0 = rig.node.stats['received']
        t_end = time.monotonic() + 1.5
        i = 0
        while time.monotonic() < t_end:
            rig.image_pub.publish(_image_msg(rgb, Time(sec=500 + i)))
            i += 1
            time.sleep(0.05)
        time.sleep(0.8)
        processed = rig.node.stats['processed'] - processed0
        received = rig.node.stats['received'] - received0
        assert received >= 10
        assert 1 <= processed <= 5  # ~2 Hz over ~2 s, never a backlog
        assert list(rig.last('face_ids').data) == list(range(len(rig.last('head_poses').poses)))
    finally:
        rig.node.set_parameters([Parameter('max_rate', value=0.0),
                                 Parameter('tracking', value=True)])
