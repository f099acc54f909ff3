"""Named points of MediaPipe's 468-point face mesh: the ROS4HRI 70 landmarks, the sellion.

ROS4HRI's ``hri_msgs/FacialLandmarks`` carries 70 points in the layout of
dlib's / OpenPose's 68-point face model (0-16 jaw from the subject's right ear
to the left, 17-26 brows, 27-30 nose bridge, 31-35 nostrils, 36-47 eyes, 48-67
mouth) plus the two pupils (68 right, 69 left).  "Right" is the subject's right
(the image's left for a face looking at the camera).  :data:`MESH_OF_70` maps
each of the 70 to a mesh vertex, chosen on the canonical face
(``data/canonical_face_468.npy``) and checked there by ``test/test_face_points.py``:
right points lie on the subject's right, left ones mirror them, the jaw points
are spread evenly along the face contour from the ear to the chin (menton = the
lowest point), the nose tip is the most forward point, the sellion the deepest
point of the midline between brows and nose tip.  The 468-point mesh has no
iris: a pupil is the centre of its eye's six contour points (it does not follow
the eyeball; :data:`UNMEASURED_70` lists the two).

The sellion (vertex 168) is the origin of REP-155's ``face_<id>`` frame;
:func:`sellion_offset_m` gives it in the face frame of the canonical face's
origin, where :mod:`nlml_hpe.position` places a head.

:func:`aligned_face` cuts a face out of an image with the eyes level (REP-155's
``/humans/faces/<id>/aligned``).
"""

from functools import lru_cache

import numpy as np

from .geometry import FACE_TO_HEAD
from .position import canonical_face_m

#: Mesh vertex of the sellion (the deepest point of the nose bridge, between the eyes).
SELLION = 168
#: Mesh vertices of each eye's contour (outer corner, upper lid x2, inner corner, lower
#: lid x2), the subject's right eye first.
RIGHT_EYE = (33, 160, 158, 133, 153, 144)
LEFT_EYE = (263, 387, 385, 362, 380, 373)

#: Mesh vertex of each of the 70 ROS4HRI landmarks (code order); a tuple is averaged.
MESH_OF_70 = (
    # 0-16 jaw: subject's right ear ... menton (8) ... left ear
    127, 234, 132, 58, 172, 136, 150, 176, 152, 400, 379, 365, 397, 288, 361, 454, 356,
    # 17-21 right brow (outside -> inside), 22-26 left brow (inside -> outside)
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    # 27-30 nose bridge: sellion, nose 1, nose 2, tip
    SELLION, 197, 195, 4,
    # 31-35 nostrils, subject's right to left (33: below the tip)
    98, 97, 2, 326, 327,
    # 36-41 right eye: outside, top 1, top 2, inside, bottom 2, bottom 1
    33, 160, 158, 133, 153, 144,
    # 42-47 left eye: inside, top 2, top 1, outside, bottom 1, bottom 2
    362, 385, 387, 263, 373, 380,
    # 48-59 outer lips: right corner, upper lip to the left corner (54), lower lip back
    61, 40, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91,
    # 60-67 inner lips: right corner, upper to the left corner (64), lower back
    78, 81, 13, 311, 308, 402, 14, 178,
    # 68, 69 pupils (not measured: the eye's centre)
    RIGHT_EYE, LEFT_EYE,
)
#: Codes of the points the mesh does not measure (the pupils).
UNMEASURED_70 = (68, 69)


def _gather_matrix():
    """``(70, 468)`` averaging matrix: row i averages the vertices of point i."""
    m = np.zeros((70, 468))
    for i, vertices in enumerate(MESH_OF_70):
        vertices = vertices if isinstance(vertices, tuple) else (vertices,)
        m[i, list(vertices)] = 1.0 / len(vertices)
    m.setflags(write=False)
    return m


GATHER_70 = _gather_matrix()


def points_70(landmarks):
    """Return the 70 ROS4HRI points ``(70, k)`` of mesh landmarks ``(468, k)``."""
    return GATHER_70 @ np.asarray(landmarks, float)


@lru_cache(maxsize=1)
def sellion_offset_m():
    """Return the sellion ``(3,)`` in metres in the REP-155 face frame of the canonical origin.

    (x forward, y to the subject's left, z up.)  A head at ``position`` with face
    axes ``rotation`` (columns) has its sellion at ``position + rotation @ offset``.
    """
    offset = FACE_TO_HEAD.T @ canonical_face_m()[SELLION]
    offset.setflags(write=False)
    return offset


def eye_centres(landmarks):
    """Return the centres ``(right, left)`` ``(2,)`` of the eyes of landmarks ``(468, 2+)``."""
    lm = np.asarray(landmarks, float)[:, :2]
    return lm[list(RIGHT_EYE)].mean(axis=0), lm[list(LEFT_EYE)].mean(axis=0)


def aligned_transform(landmarks, size=128, margin=1.1):
    """Return the 2x3 affine of image pixels to a ``size``-px aligned face.

    The face is turned so that its eyes are level (the subject's right eye on the
    left) and scaled so that its landmarks, turned so, fill ``1 / margin`` of the
    square, centred.
    """
    lm = np.asarray(landmarks, float)[:, :2]
    right, left = eye_centres(lm)
    dx, dy = left - right
    angle = np.arctan2(dy, dx)  # eye line in the image
    c, s = np.cos(angle), np.sin(angle)
    turn = np.array([[c, s], [-s, c]])  # turns the eye line onto +x
    turned = lm @ turn.T
    lo, hi = turned.min(axis=0), turned.max(axis=0)
    k = size / (max(hi[0] - lo[0], hi[1] - lo[1], 1.0) * margin)
    centre = (lo + hi) / 2
    return np.hstack([k * turn, (size / 2 - k * centre)[:, None]])


def aligned_face(rgb, landmarks, size=128):
    """Return the face of ``rgb`` with its eyes level, ``(size, size, 3)`` uint8, zero-padded."""
    import cv2

    m = aligned_transform(landmarks, size)
    shrink = np.hypot(m[0, 0], m[0, 1]) < 1.0
    return cv2.warpAffine(np.ascontiguousarray(rgb), m, (size, size),
                          flags=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
