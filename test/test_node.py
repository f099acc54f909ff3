"""head_pose_node with real rclpy on an isolated ROS_DOMAIN_ID (set by conftest.py).

The node runs in-process with the real estimator (MediaPipe's face models run by
LiteRT + the shipped model; plumbing only, angles are not asserted here).  A
probe node publishes good and bad input and records every output.  The face
images come from the shipped demo clip (src/nlml_hpe/data/demo), so these tests
need no ../shared data.
"""

import threading
import time

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy', reason='rclpy is not installed (run bootstrap.sh)')
pytest.importorskip('nlml_hpe.estimator', reason='the inference core (nlml_hpe.estimator) '
                    'is not in this checkout yet')
from builtin_interfaces.msg import Time  # noqa: E402
from conftest import spin_while_ok  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import PoseArray, PoseStamped  # noqa: E402
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

from nlml_hpe.demo import DEMO_DIR, load_clip  # noqa: E402
from nlml_hpe.model import default_model_dir  # noqa: E402
from nlml_hpe.node import HeadPoseNode  # noqa: E402

FRAME = 'test_cam_optical_frame'
OUTPUTS = {
    'head_pose': PoseStamped, 'head_poses': PoseArray, '/tf': TFMessage,
    'head_markers': MarkerArray, 'gaze_offsets': Float32MultiArray,
    'looking_at_camera': Bool, 'face_ids': Int32MultiArray, '/diagnostics': DiagnosticArray,
    'target_offsets': Float32MultiArray, 'looking_at_target': UInt8MultiArray,
}


def _face_rgb():
    """Return the demo clip's frontal face (640x480 RGB, shipped with the package)."""
    frames, _, _ = load_clip(DEMO_DIR)
    return frames[0][1].copy()


class Rig:
    """Node under test + probe node + a background executor."""

    def __init__(self, model_dir, namespace='', **params):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        overrides = [Parameter('model_path', value=str(model_dir))]
        overrides += [Parameter(k, value=v) for k, v in params.items()]
        self.node = HeadPoseNode(context=self.context, parameter_overrides=overrides,
                                 namespace=namespace)
        self.probe = rclpy.create_node('nlml_test_probe', context=self.context,
                                       namespace=namespace)
        self.received = {name: [] for name in OUTPUTS}
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
                   and all(p.get_subscription_count() > 0 for p in self._node_pubs()),
                   'discovery')

    def _node_pubs(self):
        n = self.node
        return [n._pub_pose, n._pub_poses, n._pub_tf, n._pub_markers, n._pub_offsets]

    def _spin(self):
        spin_while_ok(self.executor, self.context)

    def _recorder(self, name):
        def record(msg):
            with self._lock:
                self.received[name].append(msg)
        return record

    @staticmethod
    def _wait(cond, what, timeout=20.0):
        deadline = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < deadline, f'timed out waiting for {what}'
            time.sleep(0.01)

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
            assert time.monotonic() < deadline, 'node never received the frame'
            pub.publish(msg)
            time.sleep(0.05)
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
    assert rig.node._worker.is_alive()


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
        assert rig.node._camera_matrix is None
    deadline = time.monotonic() + 10
    while rig.node._camera_matrix is None:
        assert time.monotonic() < deadline
        rig.info_pub.publish(_info(GOOD_K))
        time.sleep(0.05)
    np.testing.assert_allclose(rig.node._camera_matrix, np.reshape(GOOD_K, (3, 3)))


def _send_info(rig, k):
    want = None if k is None else np.reshape(k, (3, 3))
    deadline = time.monotonic() + 10
    while True:
        cur = rig.node._camera_matrix
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
    children = {t.child_frame_id: t for t in tf}
    face = children[f'face_{ids[0]}']
    assert face.header.frame_id == FRAME and face.header.stamp == pose.header.stamp
    assert face.transform.translation.z == pose.pose.position.z
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
    rig._wait(lambda: rig.node._pending is None and rig.count('head_poses') > 0, 'drain')
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
def test_parameters_validated_at_runtime(rig):
    node = rig.node
    bad = [Parameter('max_faces', value=0), Parameter('min_detection_confidence', value=1.5),
           Parameter('face_frame_prefix', value=''), Parameter('model_path', value='/nope/x'),
           Parameter('looking_threshold_deg', value=-1.0), Parameter('max_rate', value='fast')]
    for p in bad:
        result = node.set_parameters([p])[0]
        assert not result.successful, p.name
    assert node.get_parameter('max_faces').value == 5
    ok = node.set_parameters([Parameter('looking_threshold_deg', value=30.0),
                              Parameter('smoothing_beta', value=0.5)])
    assert all(r.successful for r in ok)
    assert node._p['looking_threshold_deg'] == 30.0
    node.set_parameters([Parameter('looking_threshold_deg', value=15.0)])
    assert not node.set_parameters([Parameter('use_compressed', value=True)])[0].successful
    desc = node.describe_parameter('max_faces')
    assert desc.integer_range[0].from_value == 1 and desc.description


@pytest.mark.ros
def test_diagnostics_report_rates_and_counts(rig):
    rig._wait(lambda: rig.count('/diagnostics') > 0, 'diagnostics', timeout=5)
    rig.clear()
    rig._wait(lambda: rig.count('/diagnostics') > 0, 'diagnostics', timeout=5)
    status = rig.last('/diagnostics').status[0]
    values = {kv.key: kv.value for kv in status.values}
    for key in ('input_rate_hz', 'processing_latency_ms_p50', 'faces', 'frames_dropped',
                'frames_rejected', 'frames_processed', 'faces_reread_off_axis', 'landmarks_ms'):
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


@pytest.mark.ros
def test_flip_average_switch_reloads_and_publishes(rig):
    assert rig.node.get_parameter('flip_average').value is False  # the node's default
    assert not rig.node._estimator.flip_average
    rig.node.set_parameters([Parameter('flip_average', value=True)])
    try:
        rig.clear()
        rig.send(_image_msg(_face_rgb(), Time(sec=900)))
        assert rig.node._estimator.flip_average
        assert rig.node._estimator.last_timings['flip_matched'] == 1
        assert rig.count('head_pose') == 1
    finally:
        rig.node.set_parameters([Parameter('flip_average', value=False)])
        rig.send(_image_msg(_face_rgb(), Time(sec=901)))
        assert not rig.node._estimator.flip_average
        assert rig.node._estimator.last_timings['flip_matched'] == 0


@pytest.mark.ros
def test_perspective_warp_switch_reloads(rig):
    assert rig.node.get_parameter('perspective_warp').value is True
    config = rig.node._estimator.config
    assert config.perspective_warp and config.warp_min_deg == 10.0
    result = rig.node.set_parameters([Parameter('perspective_warp_min_deg', value=120.0)])[0]
    assert not result.successful  # out of its 0-90 range
    rig.node.set_parameters([Parameter('perspective_warp', value=False),
                             Parameter('perspective_warp_min_deg', value=5.0)])
    try:
        rig.send(_image_msg(_face_rgb(), Time(sec=960)))
        est = rig.node._estimator
        assert not est.config.perspective_warp and est.config.warp_min_deg == 5.0
        assert rig.count('head_pose') >= 1
    finally:
        rig.node.set_parameters([Parameter('perspective_warp', value=True),
                                 Parameter('perspective_warp_min_deg', value=10.0)])
        rig.send(_image_msg(_face_rgb(), Time(sec=961)))
        assert rig.node._estimator.config.perspective_warp


@pytest.mark.ros
def test_rigid_fusion_switch_reloads(rig):
    assert rig.node.get_parameter('rigid_fusion').value is True
    assert rig.node._estimator.config.rigid_fusion
    rig.node.set_parameters([Parameter('rigid_fusion', value=False)])
    try:
        rig.send(_image_msg(_face_rgb(), Time(sec=950)))
        assert not rig.node._estimator.config.rigid_fusion and rig.count('head_pose') >= 1
    finally:
        rig.node.set_parameters([Parameter('rigid_fusion', value=True)])
        rig.send(_image_msg(_face_rgb(), Time(sec=951)))
        assert rig.node._estimator.config.rigid_fusion


@pytest.mark.ros
@pytest.mark.parametrize('warp', [False, True])
def test_person_off_centre_looking_at_the_camera_is_looking(warp):
    """A frontal face 30 deg off the optical axis: looking_at_camera, TF x axis at the camera.

    The image is the demo clip's frontal face as a camera turned away from it sees it (a
    pure camera rotation), so the person still looks straight at the camera;
    the face frame's x axis (REP-155: out of the face) must point back along
    the ray to the camera, not along the optical axis.  Needs the shipped model.
    """
    from scipy.spatial.transform import Rotation

    from nlml_hpe.benchmark import turned_camera_view
    from nlml_hpe.model import default_model_dir, load_model

    if load_model(default_model_dir()).angle_frame != 'apparent':
        pytest.skip('the shipped model reads angles relative to the optical axis')
    k = np.array([[600.0, 0, 480], [0, 600.0, 360], [0, 0, 1]])
    turn = Rotation.from_euler('yx', [28.0, -12.0], degrees=True).as_matrix()
    rgb = turned_camera_view(_face_rgb(), k, turn, (960, 720))[1]  # the demo's frontal face
    # Its own namespace: the module's rig publishes head_pose too.
    r = Rig(default_model_dir(), namespace=f'off_centre_{int(warp)}', smoothing=False,
            perspective_warp=warp)
    try:
        deadline = time.monotonic() + 10
        while r.node._camera_matrix is None:
            assert time.monotonic() < deadline
            r.info_pub.publish(_info(k.ravel(), 960, 720))
            time.sleep(0.05)
        r.send(_image_msg(rgb, Time(sec=7)))
        pose = r.last('head_pose').pose
        offset = list(r.last('gaze_offsets').data)[0]
        looking = r.last('looking_at_camera').data
        assert r.node._estimator.last_timings['warped'] == int(warp)
        # /diagnostics is shared by every node: take this one's status, by its full name.
        name = f'/off_centre_{int(warp)}/head_pose_node: head pose estimation'

        def mine():
            with r._lock:
                return [s for m in r.received['/diagnostics'] for s in m.status
                        if s.name == name]
        r.clear()
        r._wait(lambda: len(mine()) > 0, 'diagnostics', timeout=5)
        values = {kv.key: kv.value for kv in mine()[-1].values}
        assert values['faces_reread_off_axis'] == str(int(warp))
        assert float(values['landmarks_ms']) > 0
    finally:
        r.close()
    pos = np.array([pose.position.x, pose.position.y, pose.position.z])
    q = pose.orientation
    forward = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()[:, 0]
    ray_angle = np.degrees(np.arccos(pos[2] / np.linalg.norm(pos)))
    assert ray_angle > 25.0                       # the face really is off-centre
    assert looking and offset < 10.0, offset      # ... and looks at the camera
    to_camera = -pos / np.linalg.norm(pos)
    assert np.degrees(np.arccos(forward @ to_camera)) == pytest.approx(offset, abs=1e-3)
    assert np.degrees(np.arccos(-forward[2])) > 20.0  # not along the optical axis


@pytest.mark.ros
def test_looking_at_a_target_20_cm_beside_the_camera():
    """The demo face turned 20 deg at 55 cm: its gaze passes 20 cm beside the camera.

    It does not look at the camera, looks at a target placed where its gaze
    crosses the camera plane, and not at the mirror point on the other side.
    Needs the shipped model (the clip's known pose gives the crossing point).
    """
    from nlml_hpe.geometry import euler_to_matrix

    frames, K, _ = load_clip(DEMO_DIR)
    _, rgb, (pitch, yaw, roll) = frames[1]
    assert (pitch, yaw, roll) == (0.0, 20.0, 0.0)
    # The clip's renderer: head frame z out of the face, optical = viewer * (1, -1, -1),
    # head 55 cm in front of the camera on its optical axis.
    forward = (euler_to_matrix(pitch, yaw, roll) @ [0.0, 0.0, 1.0]) * [1.0, -1.0, -1.0]
    head = np.array([0.0, 0.0, 0.55])
    hit = head - head[2] / forward[2] * forward
    assert abs(np.linalg.norm(hit) - 0.20) < 0.005 and abs(hit[2]) < 1e-9
    r = Rig(default_model_dir(), namespace='target_test', smoothing=False,
            looking_threshold_deg=10.0, looking_target=[float(hit[0]), float(hit[1]), 0.0])
    try:
        _send_info(r, K.ravel())
        r.send(_image_msg(rgb, Time(sec=1)))
        camera_offset = list(r.last('gaze_offsets').data)[0]
        assert not r.last('looking_at_camera').data and camera_offset > 12.0, camera_offset
        target_offset = list(r.last('target_offsets').data)[0]
        assert list(r.last('looking_at_target').data) == [1] and target_offset < 7.0, \
            target_offset
        # The mirror point, 20 cm on the other side of the camera: about 40 deg off.
        mirror = [float(-hit[0]), float(hit[1]), 0.0]
        assert r.node.set_parameters([Parameter('looking_target', value=mirror)])[0].successful
        r.send(_image_msg(rgb, Time(sec=2)))
        assert list(r.last('looking_at_target').data) == [0]
        assert list(r.last('target_offsets').data)[0] > 30.0
        # ... unless the target is large: a 40 cm radius covers the gaze's crossing point.
        r.node.set_parameters([Parameter('looking_target_tolerance_m', value=0.4)])
        r.send(_image_msg(rgb, Time(sec=3)))
        assert list(r.last('looking_at_target').data) == [1]
        # The camera as target gives looking_at_camera's offset (the special case).
        r.node.set_parameters([Parameter('looking_target', value=[0.0, 0.0, 0.0]),
                               Parameter('looking_target_tolerance_m', value=0.0)])
        r.send(_image_msg(rgb, Time(sec=4)))
        assert list(r.last('target_offsets').data)[0] == pytest.approx(
            list(r.last('gaze_offsets').data)[0], abs=1e-4)
        assert list(r.last('looking_at_target').data) == [int(r.last('looking_at_camera').data)]
        for bad in ([0.0, 0.0], [float('nan'), 0.0, 0.0]):
            result = r.node.set_parameters([Parameter('looking_target', value=bad)])[0]
            assert not result.successful and 'looking_target' in result.reason
    finally:
        r.close()
