"""Angle conventions and frame conversions, free of ROS.

Three frames matter:

* **Head (model) frame** -- the frame of the training faces and of MediaPipe's
  canonical face: x toward the subject's left, y up, z out of the face (cm).
* **Viewer frame** -- the AFLW2000 / 300W-LP / 3DDFA camera frame: x right in
  the image, y up, z toward the viewer.
* **Optical frame** (REP-103 ``*_optical_frame``): x right, y down, z forward.

Output angles follow AFLW2000-3D: ``pitch, yaw, roll = Pose_Para[:3]``
(degrees here).  A head with those angles has the head-to-viewer rotation

    R = Rx'(pitch) @ Ry'(yaw) @ Rz'(roll)

where ``Rx'`` etc. are the *transposed* elementary rotations used by 3DDFA's
``angle2matrix``.  Equivalently ``R.T = Rz(roll) Ry(yaw) Rx(pitch)`` with
standard rotations, i.e. ``scipy`` intrinsic ``'ZYX'`` Euler angles
``[roll, yaw, pitch]`` of ``R.T``.  The convention was checked against the
AFLW2000 labels with MediaPipe + solvePnP (see ``nlml_hpe.baseline``).

REP-155 face frame: x out of the face, y to the subject's left, z up.
"""

import math

import numpy as np
from scipy.spatial.transform import Rotation

#: Up to this many faces, the per-frame helpers compute face by face in plain floats:
#: a numpy call on a 3x3 matrix or a single face costs more than its arithmetic.
FEW_FACES = 16

#: Optical frame from viewer frame (flip y and z).
VIEWER_TO_OPTICAL = np.diag([1.0, -1.0, -1.0])

#: Columns are the REP-155 face axes (x fwd, y left, z up) in head-frame coordinates.
FACE_TO_HEAD = np.array([[0.0, 1.0, 0.0],
                         [0.0, 0.0, 1.0],
                         [1.0, 0.0, 0.0]])


def euler_to_matrix(pitch, yaw, roll):
    """Head-to-viewer rotation(s) from AFLW2000 angles in degrees.

    Accepts scalars or arrays of equal shape; returns ``(..., 3, 3)``.  Closed
    form of ``Rotation.from_euler('ZYX', [roll, yaw, pitch]).as_matrix().T``
    (cheap enough for every face of every frame).
    """
    pitch, yaw, roll = (np.asarray(a, float) for a in (pitch, yaw, roll))
    if pitch.ndim == yaw.ndim == roll.ndim == 1 and len(pitch) == len(yaw) == len(roll) \
            <= FEW_FACES:
        try:  # a few faces (the per-frame path): plain floats per face
            return np.array([_euler_rows(*(f(math.radians(a)) for a in angles
                                           for f in (math.sin, math.cos)))
                             for angles in zip(pitch.tolist(), yaw.tolist(), roll.tolist())]
                            ).reshape(-1, 3, 3)
        except ValueError:  # math.sin of an infinite angle: numpy's NaN below
            pass
    p, y, r = np.broadcast_arrays(np.radians(pitch), np.radians(yaw), np.radians(roll))
    rows = _euler_rows(np.sin(p), np.cos(p), np.sin(y), np.cos(y), np.sin(r), np.cos(r))
    out = np.empty(p.shape + (3, 3))
    for i, row in enumerate(rows):
        for j, v in enumerate(row):
            out[..., i, j] = v
    return out


def _euler_rows(sp, cp, sy, cy, sr, cr):
    """Rows of :func:`euler_to_matrix` from the angles' sines and cosines (floats or arrays).

    ``R^T = Rz(roll) Ry(yaw) Rx(pitch)``, written out and transposed.
    """
    return ((cr * cy, sr * cy, -sy),
            (-sr * cp + cr * sy * sp, cr * cp + sr * sy * sp, cy * sp),
            (sr * sp + cr * sy * cp, -cr * sp + sr * sy * cp, cy * cp))


def matrix_to_euler(rot):
    """AFLW2000 ``(pitch, yaw, roll)`` in degrees from head-to-viewer rotation(s).

    ``rot`` is ``(3, 3)`` or ``(N, 3, 3)``; returns ``(3,)`` or ``(N, 3)``.
    Closed form of scipy's intrinsic ``'ZYX'`` angles ``[roll, yaw, pitch]`` of
    ``R.T`` (cheap enough for every face of every frame).
    """
    rot = np.asarray(rot, float)
    flat = rot.reshape(-1, 3, 3)
    if len(flat) <= FEW_FACES:  # a few faces (the per-frame path): plain floats per face
        out = np.array([(math.degrees(math.atan2(m[1][2], m[2][2])),
                         math.degrees(-math.asin(min(max(m[0][2], -1.0), 1.0))),
                         math.degrees(math.atan2(m[0][1], m[0][0]))) for m in flat.tolist()])
        return out.reshape(rot.shape[:-2] + (3,))
    yaw = -np.arcsin(np.clip(flat[:, 0, 2], -1.0, 1.0))
    roll = np.arctan2(flat[:, 0, 1], flat[:, 0, 0])
    pitch = np.arctan2(flat[:, 1, 2], flat[:, 2, 2])
    out = np.degrees(np.stack([pitch, yaw, roll], axis=-1))
    return out.reshape(rot.shape[:-2] + (3,))


def rotation_between(a, b):
    """Smallest rotation(s) ``(..., 3, 3)`` turning direction ``a`` onto direction ``b``.

    ``a`` and ``b`` are ``(..., 3)`` vectors (any length, broadcast); opposite
    directions are not supported (the rotation is not unique).
    """
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    if a.shape == b.shape == (3,):
        return _rotation_between_one(*a.tolist(), *b.tolist())
    a = a / np.sqrt(np.sum(a * a, axis=-1, keepdims=True))
    b = b / np.sqrt(np.sum(b * b, axis=-1, keepdims=True))
    ax, ay, az = a[..., 0], a[..., 1], a[..., 2]
    bx, by, bz = b[..., 0], b[..., 1], b[..., 2]
    # axis = a x b (|axis| = sin), written out: np.cross and np.stack are slow on the
    # small arrays of the per-frame path.
    ux, uy, uz = ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx
    cos = np.asarray(ax * bx + ay * by + az * bz)
    if np.any(cos <= -1.0 + 1e-9):
        raise ValueError('rotation_between: opposite directions')
    k = np.zeros(cos.shape + (3, 3))
    k[..., 0, 1], k[..., 0, 2], k[..., 1, 2] = -uz, uy, -ux
    k[..., 1, 0], k[..., 2, 0], k[..., 2, 1] = uz, -uy, ux
    # Rodrigues with the unnormalised axis: I + K + K^2 / (1 + cos).
    return np.eye(3) + k + (k @ k) / (1.0 + cos)[..., None, None]


def _rotation_between_one(ax, ay, az, bx, by, bz):
    """:func:`rotation_between` of two 3-vectors, in plain floats (the per-face path)."""
    na, nb = math.sqrt(ax * ax + ay * ay + az * az), math.sqrt(bx * bx + by * by + bz * bz)
    ax, ay, az, bx, by, bz = ax / na, ay / na, az / na, bx / nb, by / nb, bz / nb
    ux, uy, uz = ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx
    cos = ax * bx + ay * by + az * bz
    if cos <= -1.0 + 1e-9:
        raise ValueError('rotation_between: opposite directions')
    f = 1.0 / (1.0 + cos)
    # I + K + K^2 f, with K the cross-product matrix of u.
    return np.array([
        [1.0 - f * (uy * uy + uz * uz), -uz + f * ux * uy, uy + f * ux * uz],
        [uz + f * ux * uy, 1.0 - f * (ux * ux + uz * uz), -ux + f * uy * uz],
        [-uy + f * ux * uz, ux + f * uy * uz, 1.0 - f * (ux * ux + uy * uy)]])


def line_of_sight_rotation(position_optical):
    """Rotation(s) turning the optical axis (+z) onto the ray to ``position_optical``.

    A head at ``position_optical`` whose rotation *relative to the line of
    sight* is ``R_los`` (what the image of the face shows, the convention of
    weak-perspective labels such as AFLW2000's) has the head-to-optical
    rotation ``line_of_sight_rotation(position) @ R_los``.
    """
    pos = np.asarray(position_optical, float)
    if pos.ndim == 2 and len(pos) <= FEW_FACES:  # a few faces: plain floats per face
        return np.array([_rotation_between_one(0.0, 0.0, 1.0, *p) for p in pos.tolist()]
                        ).reshape(-1, 3, 3)
    return rotation_between(np.array([0.0, 0.0, 1.0]), pos)


def viewer_to_optical(rot_viewer):
    """Head-to-optical-frame rotation from a head-to-viewer rotation."""
    return VIEWER_TO_OPTICAL @ np.asarray(rot_viewer, float)


def optical_to_viewer(rot_optical):
    """Head-to-viewer rotation from a head-to-optical-frame rotation."""
    return VIEWER_TO_OPTICAL @ np.asarray(rot_optical, float)


def face_frame_in_optical(rot_viewer):
    """REP-155 face frame (x out of the face, z up) expressed in the optical frame."""
    return viewer_to_optical(rot_viewer) @ FACE_TO_HEAD


def matrix_to_quaternion(rot):
    """Quaternion(s) ``(x, y, z, w)``, ``w >= 0``, of rotations ``(3, 3)`` or ``(N, 3, 3)``.

    Shepperd's method in plain floats, per matrix: the per-frame path, a few
    microseconds a face (``scipy``'s ``Rotation.from_matrix`` costs about 20 us
    a call).  The input must be a rotation (it is not re-orthogonalised).
    """
    mats = np.asarray(rot, float)
    flat = mats.reshape(-1, 9).tolist()
    out = np.array([_quaternion_one(*m) for m in flat]).reshape(mats.shape[:-2] + (4,))
    return out


def quaternion_to_matrix(quat):
    """Rotation matrix ``(3, 3)`` of one quaternion ``(x, y, z, w)`` (normalised here).

    Plain floats: the per-face path (``scipy``'s ``Rotation.from_quat`` costs
    about 0.1 ms a call in the node).
    """
    x, y, z, w = (float(v) for v in quat)
    n = x * x + y * y + z * z + w * w
    if not n > 0.0 or not math.isfinite(n):
        raise ValueError(f'quaternion must be finite and non-zero, got {quat}')
    s = 2.0 / n
    return np.array([
        [1.0 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w)],
        [s * (x * y + z * w), 1.0 - s * (x * x + z * z), s * (y * z - x * w)],
        [s * (x * z - y * w), s * (y * z + x * w), 1.0 - s * (x * x + y * y)]])


def _quaternion_one(m00, m01, m02, m10, m11, m12, m20, m21, m22):
    trace = m00 + m11 + m22
    if trace >= max(m00, m11, m22):
        s = 2.0 * math.sqrt(max(1.0 + trace, 0.0))
        q = ((m21 - m12) / s, (m02 - m20) / s, (m10 - m01) / s, 0.25 * s)
    elif m00 >= m11 and m00 >= m22:
        s = 2.0 * math.sqrt(max(1.0 + m00 - m11 - m22, 0.0))
        q = (0.25 * s, (m01 + m10) / s, (m02 + m20) / s, (m21 - m12) / s)
    elif m11 >= m22:
        s = 2.0 * math.sqrt(max(1.0 - m00 + m11 - m22, 0.0))
        q = ((m01 + m10) / s, 0.25 * s, (m12 + m21) / s, (m02 - m20) / s)
    else:
        s = 2.0 * math.sqrt(max(1.0 - m00 - m11 + m22, 0.0))
        q = ((m02 + m20) / s, (m12 + m21) / s, 0.25 * s, (m10 - m01) / s)
    norm = math.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3])
    if q[3] < 0:
        norm = -norm
    return (q[0] / norm, q[1] / norm, q[2] / norm, q[3] / norm)


def euler_to_optical_face_quaternion(pitch, yaw, roll):
    """Quaternion ``(x, y, z, w)`` of the REP-155 face frame in the optical frame."""
    mat = face_frame_in_optical(euler_to_matrix(pitch, yaw, roll))
    return Rotation.from_matrix(mat).as_quat()


def optical_face_quaternion_to_euler(quat):
    """Inverse of :func:`euler_to_optical_face_quaternion`."""
    mat = Rotation.from_quat(np.asarray(quat, float)).as_matrix()
    rot_viewer = optical_to_viewer(mat @ FACE_TO_HEAD.T)
    return matrix_to_euler(rot_viewer)


def angle_between_deg(u, v):
    """Angle in degrees between vectors ``u`` and ``v`` (last axis)."""
    u = np.asarray(u, float)
    v = np.asarray(v, float)
    nu = np.linalg.norm(u, axis=-1)
    nv = np.linalg.norm(v, axis=-1)
    cos = np.sum(u * v, axis=-1) / np.maximum(nu * nv, 1e-12)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def rotation_angle_deg(a, b):
    """Angle in degrees of the rotation between rotation matrices ``a`` and ``b`` (``a b^T``).

    ``a`` and ``b`` are ``(..., 3, 3)`` and broadcast; returns ``(...)``.
    """
    cos = (np.einsum('...ij,...ij->...', np.asarray(a, float), np.asarray(b, float)) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def gaze_frame_quaternion(rot):
    """REP-155 gaze frame orientation ``(x, y, z, w)`` of faces with axes ``rot`` (columns).

    ``rot`` ``(3, 3)`` or ``(N, 3, 3)``: the face frame (x out of the face, y to the
    subject's left, z up) in the camera frame.  The gaze frame has the face's
    origin, ``z`` along the face's forward ``x``, ``x`` to the subject's right
    (face ``-y``) and ``y`` down (face ``-z``): the optical-frame convention.
    """
    rot = np.asarray(rot, float)
    gaze = np.stack([-rot[..., :, 1], -rot[..., :, 2], rot[..., :, 0]], axis=-1)
    return matrix_to_quaternion(gaze)


def _overlap(a, b):
    """Intersections ``(N, M)`` and areas of boxes ``a`` ``(N, 4)`` and ``b`` ``(M, 4)``."""
    a = np.asarray(a, float).reshape(-1, 4)
    b = np.asarray(b, float).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    return inter, area_a, area_b


def box_iou(a, b):
    """IoU matrix ``(N, M)`` of boxes ``a`` ``(N, 4)`` and ``b`` ``(M, 4)`` as (x0, y0, x1, y1)."""
    inter, area_a, area_b = _overlap(a, b)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def box_cover(a, b):
    """Matrix ``(N, M)``: the fraction of the smaller box of each pair inside the other."""
    inter, area_a, area_b = _overlap(a, b)
    smaller = np.minimum(area_a[:, None], area_b[None, :])
    return np.where(smaller > 0, inter / np.maximum(smaller, 1e-12), 0.0)
