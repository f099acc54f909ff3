"""What the ROS outputs read from a StreamFace (nlml_hpe.ros.faces): ids, state, origin, σ."""

import numpy as np
import pytest

from nlml_hpe.estimator import FacePose
from nlml_hpe.face_points import sellion_offset_m
from nlml_hpe.face_stream import StreamFace
from nlml_hpe.geometry import (
    FACE_TO_HEAD,
    euler_to_matrix,
    matrix_to_quaternion,
    viewer_to_optical,
)
from nlml_hpe.ros import faces as fv


def _face(yaw=0.0, pitch=0.0, roll=0.0, position=(0.0, 0.0, 1.0), metric=True, track=3):
    """Return a real StreamFace (and FacePose) of a head at ``position``, turned so."""
    head = viewer_to_optical(euler_to_matrix(pitch, yaw, roll))
    rot = head @ FACE_TO_HEAD
    pose = FacePose(yaw=yaw, pitch=pitch, roll=roll, rotation=head,
                    quaternion=matrix_to_quaternion(rot), box=(200.0, 150.0, 300.0, 260.0),
                    landmarks=np.zeros((468, 3)), score=0.9, position=np.array(position))
    return StreamFace(id=track, quaternion=matrix_to_quaternion(rot), rotation=rot,
                      position=np.array(position, float), metric=metric,
                      box=pose.box, score=0.9, gaze_offset_deg=0.0, looking_at_camera=True,
                      pose=pose)


def test_ids_are_unique_per_node_and_the_stream_uid_wins():
    a, b = fv.FaceIds(), fv.FaceIds()
    face = _face(track=3)
    assert a.uid(face) != b.uid(face)  # two nodes, the same track number
    assert a.uid(face).startswith(a.prefix) and a.uid(face)[0].isalpha()
    assert a.frame_key(face) == a.uid(face)
    assert fv.FaceIds(rep155=False).frame_key(face) == '3'  # ROS4HRI off: the track number
    face.uid = 'kqzxa'  # the stream's own id (the track contract)
    assert a.uid(face) == b.uid(face) == 'kqzxa'


def test_track_state_and_seen():
    face = _face()
    assert fv.listed(face) and fv.seen(face)  # a stream without states: confirmed, seen
    face.state, face.seen = 'tentative', True
    assert not fv.listed(face)
    face.state, face.seen = 'coasting', False
    assert fv.listed(face) and not fv.seen(face)


def test_origin_is_the_sellion_for_a_metric_face_and_the_guess_otherwise():
    face = _face(yaw=30.0, position=(0.1, 0.0, 1.2))
    want = face.position + face.pose.rotation @ (FACE_TO_HEAD @ sellion_offset_m())
    np.testing.assert_allclose(fv.origin(face), want, atol=1e-12)
    assert 0.05 < np.linalg.norm(fv.origin(face) - face.position) < 0.07
    guess = _face(metric=False, position=(0.0, 0.0, 2.5))
    np.testing.assert_allclose(fv.origin(guess), [0.0, 0.0, 2.5])


def test_beyond_the_readable_range_never_looks():
    face = _face()
    face.looking_at_target = True
    assert fv.looking_at_camera(face) and fv.looking_at_target(face)
    face.pose.beyond_range = True  # the estimator cannot read it
    assert not fv.looking_at_camera(face) and not fv.looking_at_target(face)
    face.looking_at_target = None  # the target is unknown
    assert fv.looking_at_target(face) is None


def test_sigma_order_is_the_uncertainty_modules():
    from nlml_hpe.uncertainty import ANGLES

    assert fv.SIGMA_ORDER == ANGLES


def test_pose_covariance_from_sigma():
    face = _face(yaw=40.0, pitch=10.0, position=(0.3, 0.0, 1.5))
    assert fv.pose_covariance(face) is None  # σ unknown: no covariance
    face.pose.sigma_deg = np.array([3.0, 6.0, 2.0])  # pitch, yaw, roll (uncertainty.ANGLES)
    assert list(fv.sigma_deg(face)) == [6.0, 3.0, 2.0]  # yaw, pitch, roll
    cov = fv.pose_covariance(face)
    assert cov.shape == (6, 6) and np.allclose(cov, cov.T)
    assert np.all(cov[:3, 3:] == 0)
    rot = face.rotation
    angular = cov[3:, 3:]
    for axis, sigma in ((2, 6.0), (1, 3.0), (0, 2.0)):  # yaw about z, pitch y, roll x
        v = rot[:, axis]
        assert v @ angular @ v == pytest.approx(np.radians(sigma) ** 2)
    pos = fv.origin(face)
    ray = pos / np.linalg.norm(pos)
    d = np.linalg.norm(pos)
    assert ray @ cov[:3, :3] @ ray == pytest.approx((fv.METRIC_SIGMA_ALONG * d) ** 2)
    across = np.cross(ray, [0.0, 1.0, 0.0])
    across /= np.linalg.norm(across)
    assert across @ cov[:3, :3] @ across == pytest.approx((fv.METRIC_SIGMA_ACROSS * d) ** 2)
    assert np.all(np.linalg.eigvalsh(cov) > 0)
