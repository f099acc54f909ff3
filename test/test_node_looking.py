"""head_pose_node's looking-at signals with real rclpy, on the demo clip's known faces.

A face off the optical axis that looks at the camera looks at it; a target beside the
camera is looked at when the gaze crosses it (test_node's rig and helpers).
"""

import time

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy', reason='rclpy is not installed (run bootstrap.sh)')
pytest.importorskip('nlml_hpe.estimator', reason='the inference core (nlml_hpe.estimator) '
                    'is not in this checkout yet')
from builtin_interfaces.msg import Time  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from test_node import Rig, _face_rgb, _image_msg, _info, _send_info  # noqa: E402

from nlml_hpe.bench.demo import DEMO_DIR, load_clip  # noqa: E402
from nlml_hpe.model import default_model_dir  # noqa: E402


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

    from nlml_hpe.bench.offaxis import turned_camera_view
    from nlml_hpe.face_points import sellion_offset_m
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
        while r.node.camera_matrix is None:
            assert time.monotonic() < deadline
            r.info_pub.publish(_info(k.ravel(), 960, 720))
            time.sleep(0.05)
        r.send(_image_msg(rgb, Time(sec=7)))
        pose = r.last('head_pose').pose
        offset = list(r.last('gaze_offsets').data)[0]
        looking = r.last('looking_at_camera').data
        assert r.node.estimator.last_timings['warped'] == int(warp)
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
    axes = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()
    forward = axes[:, 0]
    ray_angle = np.degrees(np.arccos(pos[2] / np.linalg.norm(pos)))
    assert ray_angle > 25.0                       # the face really is off-centre
    assert looking and offset < 10.0, offset      # ... and looks at the camera
    # The published origin is the sellion; the offset is measured from the head centre
    # behind it (the estimator's line of sight), which the sellion's offset gives back.
    centre = pos - axes @ sellion_offset_m()
    to_camera = -centre / np.linalg.norm(centre)
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
