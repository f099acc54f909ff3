"""Angle conventions: every conversion round-trips and matches the documented axes."""

import numpy as np
import pytest

from nlml_hpe import geometry as g
from nlml_hpe.face_stream import target_offset_deg


def _random_angles(n, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(-85, 85, n), rng.uniform(-85, 85, n), rng.uniform(-85, 85, n)], 1)


def test_euler_matrix_round_trip():
    ang = _random_angles(500)
    mats = g.euler_to_matrix(ang[:, 0], ang[:, 1], ang[:, 2])
    assert mats.shape == (500, 3, 3)
    np.testing.assert_allclose(np.einsum('nij,nkj->nik', mats, mats),
                               np.broadcast_to(np.eye(3), (500, 3, 3)), atol=1e-12)
    np.testing.assert_allclose(g.matrix_to_euler(mats), ang, atol=1e-9)


def test_matches_3ddfa_angle2matrix():
    # 3DDFA / face3d angle2matrix: R = Rx(p) Ry(y) Rz(r) with these matrices.
    p, y, r = np.radians([12.0, -33.0, 7.0])
    rx = np.array([[1, 0, 0], [0, np.cos(p), np.sin(p)], [0, -np.sin(p), np.cos(p)]])
    ry = np.array([[np.cos(y), 0, -np.sin(y)], [0, 1, 0], [np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(r), np.sin(r), 0], [-np.sin(r), np.cos(r), 0], [0, 0, 1]])
    np.testing.assert_allclose(g.euler_to_matrix(12.0, -33.0, 7.0), rx @ ry @ rz, atol=1e-12)


def test_frontal_face_frame_axes():
    # A frontal face looks at the camera: REP-155 x (out of the face) points along
    # optical -z, z (up) along optical -y, y (subject's left) along optical +x.
    face = g.face_frame_in_optical(g.euler_to_matrix(0, 0, 0))
    np.testing.assert_allclose(face, [[0, 1, 0], [0, 0, -1], [-1, 0, 0]], atol=1e-12)


@pytest.mark.parametrize('yaw', [30.0, -30.0])
def test_yaw_turns_face_sideways(yaw):
    face = g.face_frame_in_optical(g.euler_to_matrix(0, yaw, 0))
    forward = face[:, 0]
    # The facing direction leaves the optical axis by |yaw| in the x-z plane only.
    assert abs(forward[1]) < 1e-12
    assert g.angle_between_deg(forward, [0, 0, -1]) == pytest.approx(abs(yaw))


def test_quaternion_round_trip():
    ang = _random_angles(200, seed=1)
    for p, y, r in ang:
        q = g.euler_to_optical_face_quaternion(p, y, r)
        assert np.linalg.norm(q) == pytest.approx(1.0)
        np.testing.assert_allclose(g.optical_face_quaternion_to_euler(q), [p, y, r], atol=1e-9)


def test_euler_to_matrix_is_scipy_zyx_transposed():
    from scipy.spatial.transform import Rotation

    ang = _random_angles(300, seed=2) * 2.0  # beyond +-90 too
    ref = Rotation.from_euler('ZYX', ang[:, ::-1], degrees=True).as_matrix()
    np.testing.assert_allclose(g.euler_to_matrix(ang[:, 0], ang[:, 1], ang[:, 2]),
                               np.swapaxes(ref, -1, -2), atol=1e-12)
    assert g.euler_to_matrix(ang[:4, 0].reshape(2, 2), 0.0, 0.0).shape == (2, 2, 3, 3)


def test_matrix_to_quaternion_matches_scipy():
    from scipy.spatial.transform import Rotation

    rots = Rotation.random(2000, random_state=3)
    # Every branch of Shepperd's method, including half turns about each axis.
    half = Rotation.from_rotvec(np.pi * np.vstack([np.eye(3), [[1, 1, 0]] / np.sqrt(2)]))
    for r in (rots, half, Rotation.identity(3)):
        ref = r.as_quat()
        ref *= np.where(ref[:, 3:] < 0, -1.0, 1.0)
        q = g.matrix_to_quaternion(r.as_matrix())
        assert q.shape == ref.shape and np.all(q[:, 3] >= 0)
        # q and -q are the same rotation: compare up to sign where w == 0.
        np.testing.assert_allclose(np.abs(np.sum(q * ref, axis=1)), 1.0, atol=1e-12)
    assert g.matrix_to_quaternion(np.eye(3)).tolist() == [0.0, 0.0, 0.0, 1.0]


def test_quaternion_to_matrix_matches_scipy():
    from scipy.spatial.transform import Rotation

    quats = Rotation.random(500, random_state=7).as_quat()
    for q, scale in zip(quats, np.linspace(0.2, 5.0, len(quats))):  # normalised here
        np.testing.assert_allclose(g.quaternion_to_matrix(q * scale),
                                   Rotation.from_quat(q).as_matrix(), atol=1e-12)
    for bad in ([0.0, 0.0, 0.0, 0.0], [np.nan, 0.0, 0.0, 1.0], [np.inf, 0.0, 0.0, 1.0]):
        with pytest.raises(ValueError, match='quaternion'):
            g.quaternion_to_matrix(bad)


def test_gaze_offset():
    face = g.face_frame_in_optical(g.euler_to_matrix(0, 0, 0))
    assert target_offset_deg(face, [0, 0, 1.0]) == pytest.approx(0.0, abs=1e-9)
    # A frontal face 1 m away and 1 m to the side is looking 45 deg past the camera.
    assert target_offset_deg(face, [1.0, 0, 1.0]) == pytest.approx(45.0)


def test_rotation_angle_deg_is_the_angle_of_a_b_transposed():
    from scipy.spatial.transform import Rotation

    a, b = Rotation.random(200, random_state=4), Rotation.random(200, random_state=5)
    ref = np.degrees((a * b.inv()).magnitude())
    np.testing.assert_allclose(g.rotation_angle_deg(a.as_matrix(), b.as_matrix()), ref,
                               atol=1e-5)
    assert g.rotation_angle_deg(np.eye(3), np.eye(3)) == 0.0


def test_rotation_between_turns_a_onto_b():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(200, 3)), rng.normal(size=(200, 3))
    rot = g.rotation_between(a, b)
    unit = b / np.linalg.norm(b, axis=1, keepdims=True)
    np.testing.assert_allclose(np.einsum('nij,nj->ni', rot, a / np.linalg.norm(
        a, axis=1, keepdims=True)), unit, atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-12)
    # Smallest rotation: its angle is the angle between a and b, and it fixes a x b.
    angle = g.rotation_angle_deg(rot, np.eye(3))
    np.testing.assert_allclose(angle, g.angle_between_deg(a, b), atol=1e-6)
    axis = np.cross(a, b)
    np.testing.assert_allclose(np.einsum('nij,nj->ni', rot, axis), axis, atol=1e-9)
    np.testing.assert_allclose(g.rotation_between([0, 0, 1.0], [0, 0, 3.0]), np.eye(3))
    with pytest.raises(ValueError, match='opposite'):
        g.rotation_between([0, 0, 1.0], [0, 0, -1.0])


def test_line_of_sight_rotation():
    # A face at (1, 0, 1) m with zero angles relative to the line of sight looks
    # back along the ray: its forward axis points at the camera.
    pos = np.array([1.0, 0.0, 1.0])
    rot = g.line_of_sight_rotation(pos) @ g.face_frame_in_optical(g.euler_to_matrix(0, 0, 0))
    assert target_offset_deg(rot, pos) < 1e-5  # arccos near 1: ~1e-6 deg of rounding
    # Seen from the optical axis it is turned 45 deg (yaw: towards the image centre).
    pitch, yaw, roll = g.matrix_to_euler(g.optical_to_viewer(
        g.line_of_sight_rotation(pos) @ g.viewer_to_optical(np.eye(3))))
    assert abs(abs(yaw) - 45.0) < 1e-9 and abs(pitch) < 1e-9 and abs(roll) < 1e-9


def test_gaze_frame_quaternion_follows_rep155():
    from scipy.spatial.transform import Rotation

    from nlml_hpe.geometry import gaze_frame_quaternion

    # A face looking straight into the camera: its x (forward) is the optical -z.
    face = np.column_stack([[0, 0, -1.0], [1.0, 0, 0], [0, -1.0, 0]])  # columns x, y, z
    gaze = Rotation.from_quat(gaze_frame_quaternion(face)).as_matrix()
    np.testing.assert_allclose(gaze[:, 2], face[:, 0], atol=1e-12)   # z along the gaze
    np.testing.assert_allclose(gaze[:, 0], -face[:, 1], atol=1e-12)  # x: subject's right
    np.testing.assert_allclose(gaze[:, 1], -face[:, 2], atol=1e-12)  # y: down
    assert gaze_frame_quaternion(np.stack([face, face])).shape == (2, 4)


def test_a_few_faces_convert_as_a_batch_does():
    """The per-frame path (plain floats for up to 16 faces) gives the batch path's values."""
    ang = _random_angles(40, seed=3)
    batch = g.euler_to_matrix(ang[:, 0], ang[:, 1], ang[:, 2])  # > 16: numpy
    few = g.euler_to_matrix(ang[:3, 0], ang[:3, 1], ang[:3, 2])
    assert few.shape == (3, 3, 3)
    np.testing.assert_allclose(few, batch[:3], rtol=0, atol=1e-15)
    np.testing.assert_allclose(g.matrix_to_euler(batch[:3]), g.matrix_to_euler(batch)[:3],
                               rtol=0, atol=1e-12)
    assert g.matrix_to_euler(batch[0]).shape == (3,)
    assert g.euler_to_matrix(np.zeros(0), np.zeros(0), np.zeros(0)).shape == (0, 3, 3)
    # An infinite angle gives NaN rows (numpy's sin), as in a batch, not a math error.
    assert np.isnan(g.euler_to_matrix(np.array([np.inf]), np.zeros(1), np.zeros(1))).any()


def test_box_cover_is_the_share_of_the_smaller_box_inside_the_other():
    big, inner, half_out, apart = [0, 0, 10, 10], [2, 2, 6, 6], [8, 0, 12, 4], [20, 20, 30, 30]
    cover = g.box_cover([big], [inner, half_out, apart, big])[0]
    np.testing.assert_allclose(cover, [1.0, 0.5, 0.0, 1.0])
    assert g.box_iou([big], [inner])[0, 0] == pytest.approx(0.16)
    np.testing.assert_allclose(g.box_cover([inner, apart], [big]),
                               g.box_cover([big], [inner, apart]).T)
    assert g.box_cover([[0, 0, 0, 5]], [big])[0, 0] == 0.0  # an empty box covers nothing
