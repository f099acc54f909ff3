"""ROS4HRI (REP-155) against the real node: ids, frames, per-face topics, deactivate.

The node runs with the shipped model and is fed the shipped demo clip (no
../shared data needed).  The consumer behaves as pyhri/libhri do: it follows
``/humans/faces/tracked`` (hri_msgs/IdsList) and subscribes to each new face's
``/humans/faces/<id>/roi``; it uses no other message type.  The other per-face
topics and the REP-155 TF frames are checked with the test's probe.
"""

import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy', reason='rclpy is not installed (run bootstrap.sh)')
hri_msgs = pytest.importorskip('hri_msgs.msg', reason='hri_msgs is not installed (run '
                               'bootstrap.sh, which generates it, or install ros-<distro>-'
                               'hri-msgs)')
from builtin_interfaces.msg import Time  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from scipy.spatial.transform import Rotation  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from test_node import FRAME, Rig, _image_msg, _send_info  # noqa: E402

from nlml_hpe.bench.demo import DEMO_DIR, load_clip  # noqa: E402
from nlml_hpe.model import default_model_dir  # noqa: E402
from nlml_hpe.ros.hri import FaceTopic  # noqa: E402

IdsList = hri_msgs.IdsList
NormalizedRegionOfInterest2D = hri_msgs.NormalizedRegionOfInterest2D
PER_FACE = ('roi', 'cropped', 'aligned', 'landmarks')


class Ros4hriConsumer:
    """Follow /humans/faces/tracked and each tracked face's roi, with hri_msgs only."""

    def __init__(self, context, executor):
        self.node = rclpy.create_node('ros4hri_consumer', context=context)
        self.lock = threading.Lock()
        self.tracked = []
        self.rois = {}  # face id -> [NormalizedRegionOfInterest2D]
        self.node.create_subscription(IdsList, '/humans/faces/tracked', self._on_tracked, 10)
        executor.add_node(self.node)

    def _on_tracked(self, msg):
        with self.lock:
            self.tracked.append(msg)
            new = [i for i in msg.ids if i not in self.rois]
            for face_id in new:
                self.rois[face_id] = []
        for face_id in new:
            self.node.create_subscription(
                NormalizedRegionOfInterest2D, f'/humans/faces/{face_id}/roi',
                lambda m, face_id=face_id: self._on_roi(face_id, m), 10)

    def _on_roi(self, face_id, msg):
        with self.lock:
            self.rois[face_id].append(msg)

    def last_ids(self):
        with self.lock:
            return list(self.tracked[-1].ids) if self.tracked else None


_CLOCK = [200]  # tenths of a second: the module's tests continue one 10 Hz stream


def _next():
    """Return the next stamp of the stream (the face keeps its track and id)."""
    _CLOCK[0] += 1
    return Time(sec=_CLOCK[0] // 10, nanosec=(_CLOCK[0] % 10) * 100_000_000)


def _hri_ready(rig, consumer=None):
    def ready():
        hri = rig.node.hri
        return hri is not None and hri.tracked_publisher.get_subscription_count() > 0
    rig._wait(ready, 'the /humans/faces/tracked subscriber')


def _listed(rig):
    """Return the id the node advertises per-face topics for (one face in the demo clip)."""
    ids = rig.node.hri.listed
    assert len(ids) == 1, ids
    return ids[0]


@pytest.fixture(scope='module')
def played():
    """Play the demo clip twice through the node; yield what the tests inspect."""
    frames, K, _ = load_clip(DEMO_DIR)
    rig = Rig(default_model_dir(), namespace='hri_test', smoothing=False)
    consumer = Ros4hriConsumer(rig.context, rig.executor)
    cropped = []
    try:
        _hri_ready(rig)
        _send_info(rig, K.ravel())
        listed = []
        for i, (_, rgb, _) in enumerate(frames * 2):  # twice: the roi subscriptions catch up
            rig.send(_image_msg(rgb, _next()))
            listed.append(_listed(rig))
            if i == 0:
                rig.probe.create_subscription(
                    Image, f'/humans/faces/{listed[0]}/cropped', cropped.append, 10)
        yield rig, consumer, frames, K, cropped, listed
    finally:
        rig.executor.remove_node(consumer.node)
        consumer.node.destroy_node()
        rig.close()


@pytest.mark.ros
def test_ros4hri_consumer_sees_one_stable_face_and_its_roi(played):
    rig, consumer, frames, K, _, listed = played
    assert len(set(listed)) == 1
    want = listed[0]
    assert want[0].isalpha() and want.isalnum()  # a ROS name token
    with consumer.lock:
        tracked = list(consumer.tracked)
        rois = {k: list(v) for k, v in consumer.rois.items()}
    assert len(tracked) >= len(frames)
    assert all(list(m.ids) == [want] for m in tracked)
    assert all(m.header.frame_id == FRAME for m in tracked)
    assert set(rois) == {want}
    assert len(rois[want]) >= len(frames)  # the second pass at least
    poses = {(m.header.stamp.sec, m.header.stamp.nanosec): m.poses[0]
             for m in rig.received['head_poses'] if m.poses}
    width, height = frames[0][1].shape[1], frames[0][1].shape[0]
    for roi in rois[want]:
        assert 0.0 <= roi.xmin < roi.xmax <= 1.0 and 0.0 <= roi.ymin < roi.ymax <= 1.0
        assert 0.0 < roi.c <= 1.0
        assert roi.header.frame_id == FRAME
        # The face's origin (the sellion), projected with K, lies inside the region.
        pose = poses[(roi.header.stamp.sec, roi.header.stamp.nanosec)]
        p = np.array([pose.position.x, pose.position.y, pose.position.z])
        u, v = (K @ p)[:2] / p[2]
        assert roi.xmin * width < u < roi.xmax * width
        assert roi.ymin * height < v < roi.ymax * height
        assert 0.1 < roi.xmax - roi.xmin < 0.6  # a face at 55 cm, not the whole image


@pytest.mark.ros
def test_cropped_faces_and_one_tf_frame_per_face(played):
    rig, _, frames, _, cropped, listed = played
    uid = listed[0]
    assert len(cropped) >= len(frames)
    background = np.array([90, 80, 70])  # the clip's backdrop, RGB
    for msg in cropped:
        assert (msg.width, msg.height, msg.encoding, msg.step) == (128, 128, 'rgb8', 384)
        assert msg.header.frame_id == FRAME
        img = np.frombuffer(bytes(msg.data), np.uint8).reshape(128, 128, 3)
        centre = img[48:80, 48:80].reshape(-1, 3).mean(axis=0)
        assert np.abs(centre - background).max() > 20  # the face, not the backdrop
    poses = {(m.header.stamp.sec, m.header.stamp.nanosec): m.pose
             for m in rig.received['head_pose']}
    seen = 0
    for tf_msg in rig.received['/tf']:
        # Exactly one frame per face, named after its REP-155 id: no gaze frame
        # (publish_gaze_frames is false), no frame named after the track number.
        assert [t.child_frame_id for t in tf_msg.transforms] == [f'face_{uid}']
        face = tf_msg.transforms[0]
        assert face.header.frame_id == FRAME
        pose = poses[(face.header.stamp.sec, face.header.stamp.nanosec)]
        t = face.transform.translation
        assert (t.x, t.y, t.z) == (pose.position.x, pose.position.y, pose.position.z)
        seen += 1
    assert seen >= len(frames)


@pytest.mark.ros
def test_gaze_frames_only_when_asked(played):
    rig, _, frames, _, _, listed = played
    uid = listed[0]
    assert rig.node.set_parameters([Parameter('publish_gaze_frames', value=True)])[0].successful
    try:
        rig.clear()
        rig.send(_image_msg(frames[3][1], _next()))
        tfs = {t.child_frame_id: t for t in rig.last('/tf').transforms}
    finally:
        rig.node.set_parameters([Parameter('publish_gaze_frames', value=False)])
    assert set(tfs) == {f'face_{uid}', f'gaze_{uid}'}
    face, gaze = tfs[f'face_{uid}'], tfs[f'gaze_{uid}']
    assert face.header.stamp == gaze.header.stamp
    assert face.transform.translation == gaze.transform.translation  # collocated
    f = Rotation.from_quat([getattr(face.transform.rotation, a) for a in 'xyzw']).as_matrix()
    g = Rotation.from_quat([getattr(gaze.transform.rotation, a) for a in 'xyzw']).as_matrix()
    np.testing.assert_allclose(g[:, 2], f[:, 0], atol=1e-6)   # z along the gaze
    np.testing.assert_allclose(g[:, 0], -f[:, 1], atol=1e-6)  # x right
    np.testing.assert_allclose(g[:, 1], -f[:, 2], atol=1e-6)  # y down


@pytest.mark.ros
def test_landmarks_and_aligned_arrive_while_subscribed_and_are_not_built_otherwise(played):
    if not hasattr(hri_msgs, 'FacialLandmarks'):
        pytest.skip('this hri_msgs has no FacialLandmarks (an old local build)')
    rig, _, frames, K, _, listed = played
    uid = listed[0]
    hri = rig.node.hri
    builds = {}

    def counted(row):
        def build(*args):
            builds[row.name] = builds.get(row.name, 0) + 1
            return row.build(*args)
        return FaceTopic(row.name, row.type, build, row.on_demand)
    hri.rows[:] = [counted(r) for r in hri.rows]
    rgb = frames[0][1]
    rig.send(_image_msg(rgb, _next()))
    assert builds == {'roi': 1, 'cropped': 1}  # the fixture's probe reads cropped
    got = {'aligned': [], 'landmarks': []}
    subs = [rig.probe.create_subscription(Image, f'/humans/faces/{uid}/aligned',
                                          got['aligned'].append, 10),
            rig.probe.create_subscription(hri_msgs.FacialLandmarks,
                                          f'/humans/faces/{uid}/landmarks',
                                          got['landmarks'].append, 10)]
    rig._wait(lambda: all(hri.publisher(uid, n).get_subscription_count() == 1
                          for n in got), 'the node sees the subscriptions')
    for _ in range(3):
        rig.send(_image_msg(rgb, _next()))
    assert builds['aligned'] == builds['landmarks'] == 3
    rig._wait(lambda: len(got['aligned']) == len(got['landmarks']) == 3, 'the messages')
    for sub in subs:
        rig.probe.destroy_subscription(sub)
    rig._wait(lambda: all(hri.publisher(uid, n).get_subscription_count() == 0
                          for n in got), 'the node sees them go')
    rig.send(_image_msg(rgb, _next()))
    assert builds['aligned'] == builds['landmarks'] == 3 and builds['roi'] == 5

    aligned = got['aligned'][-1]
    assert (aligned.width, aligned.height, aligned.encoding) == (128, 128, 'rgb8')
    img = np.frombuffer(bytes(aligned.data), np.uint8).reshape(128, 128, 3)
    assert np.abs(img[40:88, 40:88].reshape(-1, 3).mean(axis=0) - [90, 80, 70]).max() > 20
    lm = got['landmarks'][-1]
    F = hri_msgs.FacialLandmarks
    assert (lm.width, lm.height) == (rgb.shape[1], rgb.shape[0]) and len(lm.landmarks) == 70
    assert lm.header.frame_id == FRAME
    pts = np.array([(p.x, p.y) for p in lm.landmarks])
    conf = np.array([p.c for p in lm.landmarks])
    assert conf[F.RIGHT_PUPIL] == conf[F.LEFT_PUPIL] == 0.0  # not measured
    assert np.all(conf[:68] > 0)  # the face is inside the image
    # Image geometry of a frontal face: the subject's right eye on the image's left,
    # eyes above the nose tip above the mouth above the chin.
    assert pts[F.RIGHT_EYE_OUTSIDE, 0] < pts[F.SELLION, 0] < pts[F.LEFT_EYE_OUTSIDE, 0]
    assert pts[F.RIGHT_PUPIL, 1] < pts[F.NOSE, 1] < pts[F.MOUTH_OUTER_TOP_3, 1] < \
        pts[F.MENTON, 1]
    # The sellion lies where the node's face frame origin projects.
    pose = rig.last('head_pose').pose.position
    u, v = (K @ [pose.x, pose.y, pose.z])[:2] / pose.z
    assert np.hypot(u - pts[F.SELLION, 0] * lm.width, v - pts[F.SELLION, 1] * lm.height) < 15


@pytest.mark.ros
def test_a_face_missed_for_two_frames_keeps_its_id_on_the_list(played):
    """The stream's hysteresis: a face missed for 0.2 s coasts, listed under its id."""
    rig, consumer, frames, _, _, listed = played
    uid = listed[0]
    rgb = frames[0][1]
    blank = np.full_like(rgb, 90)
    rig.send(_image_msg(rgb, _next()))
    for i, image in enumerate((blank, blank, rgb)):
        rig.clear()
        rig.send(_image_msg(image, _next()))
        rig._wait(lambda: consumer.last_ids() is not None, 'a list')
        time.sleep(0.2)
        assert consumer.last_ids() == [uid]
        seen = i == 2  # a coasting face is listed, but gets no pose, frame or region
        assert rig.count('head_pose') == rig.count('/tf') == int(seen)
        assert len(rig.last('head_poses').poses) == int(seen)
        assert rig.node.hri.listed == [uid]


@pytest.mark.ros
def test_no_face_empties_the_list_and_ended_faces_drop_their_topics(played):
    rig, consumer, frames, _, _, listed = played
    uid = listed[0]
    rig.send(_image_msg(frames[0][1], _next()))
    uid = _listed(rig)
    topics = [f'/humans/faces/{uid}/{name}' for name in PER_FACE]
    rig._wait(lambda: rig.probe.count_publishers(topics[0]) == 1, 'roi advertised')
    blank = np.full_like(frames[0][1], 90)
    for _ in range(10):  # until the track has ended (coasting, if any, is over)
        _CLOCK[0] += 9  # a second a frame
        rig.send(_image_msg(blank, _next()))
        time.sleep(0.2)
        if consumer.last_ids() == []:
            break
    assert consumer.last_ids() == []
    assert rig.node.hri.listed == []
    for topic in topics:
        rig._wait(lambda topic=topic: rig.probe.count_publishers(topic) == 0, f'{topic} gone')


@pytest.mark.ros
def test_faces_come_and_go_without_touching_the_wait_set(played):
    """A face's topics add nothing to the executor's wait set, listed or withdrawn.

    The worker creates and destroys them while the executor spins: an event handler
    destroyed while the executor built a wait set raised InvalidHandle out of the
    spin, and the node died.
    """
    rig, consumer, frames, _, _, _ = played
    node = rig.node
    blank = np.full_like(frames[0][1], 90)
    for cycle in range(2):
        before = len(list(node.waitables))
        rig.send(_image_msg(frames[cycle][1], _next()))
        uid = _listed(rig)
        roi = f'/humans/faces/{uid}/roi'
        rig._wait(lambda roi=roi: rig.probe.count_publishers(roi) == 1, 'roi advertised')
        assert len(list(node.waitables)) == before
        for _ in range(10):
            _CLOCK[0] += 9
            rig.send(_image_msg(blank, _next()))
            if not node.hri.listed:
                break
        assert node.hri.listed == []
        rig._wait(lambda roi=roi: rig.probe.count_publishers(roi) == 0, f'{roi} gone')
        assert len(list(node.waitables)) == before
    rig._check_spinner()


@pytest.mark.ros
def test_faces_come_and_go_under_a_multithreaded_executor():
    """Advertise and withdraw faces from a worker while a multi-threaded executor spins.

    As in the demo and in a multi-threaded component container: one thread builds
    wait sets (a timer every half millisecond), another runs callbacks, and the
    worker creates and destroys per-face publishers meanwhile.  Nothing raises and
    the executor keeps spinning.  (With the default event handlers the demo's
    executor raised InvalidHandle in 2 of 12 runs.)
    """
    from conftest import spin_while_ok
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.lifecycle import LifecycleNode

    from nlml_hpe.ros.hri import HriFaces

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(time.time() * 1000) % 100 + 100)
    node = LifecycleNode('hri_churn', context=context)
    ticks = []
    node.create_timer(0.0005, lambda: ticks.append(1))
    faces = HriFaces(node)
    faces.create()
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    executor.add_node(node)
    errors = []
    spinner = threading.Thread(target=spin_while_ok, args=(executor, context, errors),
                               daemon=True)
    spinner.start()
    try:
        uid, end = 0, time.monotonic() + 3.0
        while uid < 300 or time.monotonic() < end:  # 3 s of wait sets at least
            faces._advertise(f'churn{uid}')
            faces._withdraw_face(f'churn{uid}')
            assert spinner.is_alive(), errors
            uid += 1
        assert faces.listed == [] and ticks
    finally:
        faces.destroy()
        rclpy.shutdown(context=context)
        spinner.join(timeout=5)
        executor.shutdown(timeout_sec=2)
        node.destroy_node()
    assert errors == []


def _change_state(rig, transition):
    client = rig.probe.create_client(ChangeState, 'head_pose_node/change_state')
    assert client.wait_for_service(timeout_sec=10)
    future = client.call_async(ChangeState.Request(transition=Transition(id=transition)))
    rig._wait(future.done, 'the transition', timeout=60)
    rig.probe.destroy_client(client)
    return future.result().success


@pytest.mark.ros
def test_deactivate_empties_the_list_and_withdraws_the_faces():
    frames, K, _ = load_clip(DEMO_DIR)
    rig = Rig(default_model_dir(), namespace='hri_deactivate')
    consumer = Ros4hriConsumer(rig.context, rig.executor)
    try:
        _hri_ready(rig)
        rig.send(_image_msg(frames[0][1], Time(sec=1)))
        uid = _listed(rig)
        rig._wait(lambda: consumer.last_ids() == [uid], 'the face listed')
        topics = [f'/humans/faces/{uid}/{name}' for name in PER_FACE]
        rig._wait(lambda: rig.probe.count_publishers(topics[0]) == 1, 'roi advertised')
        assert _change_state(rig, Transition.TRANSITION_DEACTIVATE)
        rig._wait(lambda: consumer.last_ids() == [], 'an empty list')
        for topic in topics:
            rig._wait(lambda topic=topic: rig.probe.count_publishers(topic) == 0,
                      f'{topic} withdrawn')
        assert rig.node.hri.listed == []
        # Active again, the face is listed again.
        assert _change_state(rig, Transition.TRANSITION_ACTIVATE)
        rig._wait(lambda: rig.node.pump.running, 'active')
        rig.send(_image_msg(frames[0][1], Time(sec=5)))
        rig._wait(lambda: len(rig.node.hri.listed) == 1, 'listed again')
    finally:
        rig.executor.remove_node(consumer.node)
        consumer.node.destroy_node()
        rig.close()


@pytest.mark.ros
def test_two_nodes_and_a_restart_share_no_face_id():
    """Two cameras' nodes (namespaces robot1, robot2) see the same person; a node restarts."""
    frames, _, _ = load_clip(DEMO_DIR)
    rgb = frames[0][1]
    ids, frames_tf = [], []
    for namespace in ('robot1', 'robot2', 'robot1'):  # robot1 twice: a restart
        rig = Rig(default_model_dir(), namespace=namespace, smoothing=False)
        try:
            for i in range(3):
                rig.send(_image_msg(rgb, Time(sec=1 + i)))
            ids.append(_listed(rig))
            frames_tf.append([t.child_frame_id for t in rig.last('/tf').transforms])
        finally:
            rig.close()
    assert len(set(ids)) == 3, ids
    assert frames_tf == [[f'face_{uid}'] for uid in ids]
