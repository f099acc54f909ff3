"""ROS4HRI interoperability: a consumer that knows only hri_msgs, against the real node.

The node runs with the shipped model and is fed the shipped demo clip (no
../shared data needed).  The consumer behaves as pyhri/libhri do: it follows
``/humans/faces/tracked`` (hri_msgs/IdsList) and subscribes to each new face's
``/humans/faces/<id>/roi`` (hri_msgs/NormalizedRegionOfInterest2D); it uses no
other message type.  The cropped faces and the REP-155 TF frames are checked
with the test's probe.
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
from scipy.spatial.transform import Rotation  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from test_node import FRAME, Rig, _image_msg, _send_info  # noqa: E402

from nlml_hpe.bench.demo import DEMO_DIR, load_clip  # noqa: E402
from nlml_hpe.model import default_model_dir  # noqa: E402

IdsList = hri_msgs.IdsList
NormalizedRegionOfInterest2D = hri_msgs.NormalizedRegionOfInterest2D


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


def _stamp(i):
    return Time(sec=100 + i // 10, nanosec=(i % 10) * 100_000_000)  # 10 Hz


@pytest.fixture(scope='module')
def played():
    """Play the demo clip twice through the node; yield what the tests inspect."""
    frames, K, _ = load_clip(DEMO_DIR)
    rig = Rig(default_model_dir(), namespace='hri_test', smoothing=False)
    consumer = Ros4hriConsumer(rig.context, rig.executor)
    cropped = []
    try:
        rig._wait(lambda: rig.node._pub_tracked.get_subscription_count() > 0, 'consumer')
        _send_info(rig, K.ravel())
        face_ids = []
        for i, (_, rgb, _) in enumerate(frames * 2):  # twice: the roi subscriptions catch up
            rig.send(_image_msg(rgb, _stamp(i)))
            face_ids.append(list(rig.last('face_ids').data))
            if i == 0:
                rig.probe.create_subscription(
                    Image, f'/humans/faces/f{face_ids[0][0]}/cropped', cropped.append, 10)
        yield rig, consumer, frames, K, cropped, face_ids
    finally:
        rig.executor.remove_node(consumer.node)
        consumer.node.destroy_node()
        rig.close()


@pytest.mark.ros
def test_ros4hri_consumer_sees_one_stable_face_and_its_roi(played):
    rig, consumer, frames, K, _, face_ids = played
    assert all(len(ids) == 1 for ids in face_ids) and len({i[0] for i in face_ids}) == 1
    want = f'f{face_ids[0][0]}'
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
        # The head's position, projected with K, lies inside the region.
        pose = poses[(roi.header.stamp.sec, roi.header.stamp.nanosec)]
        p = np.array([pose.position.x, pose.position.y, pose.position.z])
        u, v = (K @ p)[:2] / p[2]
        assert roi.xmin * width < u < roi.xmax * width
        assert roi.ymin * height < v < roi.ymax * height
        assert 0.1 < roi.xmax - roi.xmin < 0.6  # a face at 55 cm, not the whole image


@pytest.mark.ros
def test_cropped_faces_and_rep155_frames(played):
    rig, _, frames, _, cropped, face_ids = played
    fid = face_ids[0][0]
    assert len(cropped) >= len(frames)
    background = np.array([90, 80, 70])  # the clip's backdrop, RGB
    for msg in cropped:
        assert (msg.width, msg.height, msg.encoding, msg.step) == (128, 128, 'rgb8', 384)
        assert msg.header.frame_id == FRAME
        img = np.frombuffer(bytes(msg.data), np.uint8).reshape(128, 128, 3)
        centre = img[48:80, 48:80].reshape(-1, 3).mean(axis=0)
        assert np.abs(centre - background).max() > 20  # the face, not the backdrop
    seen = 0
    for tf_msg in rig.received['/tf']:
        tfs = {t.child_frame_id: t for t in tf_msg.transforms}
        if f'face_f{fid}' not in tfs:
            continue
        seen += 1
        face, gaze = tfs[f'face_f{fid}'], tfs[f'gaze_f{fid}']
        legacy = tfs[f'face_{fid}']  # publish_tf's frames stay as they were
        assert face.transform == legacy.transform
        assert face.header.frame_id == gaze.header.frame_id == FRAME
        assert face.header.stamp == gaze.header.stamp
        assert face.transform.translation == gaze.transform.translation  # collocated
        rf = Rotation.from_quat([getattr(face.transform.rotation, a) for a in 'xyzw'])
        rg = Rotation.from_quat([getattr(gaze.transform.rotation, a) for a in 'xyzw'])
        f, g = rf.as_matrix(), rg.as_matrix()
        np.testing.assert_allclose(g[:, 2], f[:, 0], atol=1e-6)   # z along the gaze
        np.testing.assert_allclose(g[:, 0], -f[:, 1], atol=1e-6)  # x right
        np.testing.assert_allclose(g[:, 1], -f[:, 2], atol=1e-6)  # y down
    assert seen >= len(frames)


@pytest.mark.ros
def test_no_face_empties_the_list_and_ended_tracks_drop_their_topics(played):
    rig, consumer, frames, _, _, face_ids = played
    topic = f'/humans/faces/f{face_ids[0][0]}/roi'
    assert rig.probe.count_publishers(topic) == 1
    blank = np.full_like(frames[0][1], 90)
    with consumer.lock:
        before = len(consumer.tracked)
    rig.send(_image_msg(blank, Time(sec=200)))
    deadline = time.monotonic() + 10
    while True:
        with consumer.lock:
            if len(consumer.tracked) > before:
                break
        assert time.monotonic() < deadline, 'no IdsList for the frame without a face'
        time.sleep(0.02)
    with consumer.lock:
        assert list(consumer.tracked[-1].ids) == []
    # The track outlives one missed frame; once it has ended (> 1 s), its topics go.
    rig.send(_image_msg(blank, Time(sec=202)))
    rig._wait(lambda: rig.probe.count_publishers(topic) == 0, 'roi publisher destroyed')
