"""Draw head poses on images: 3D axes per face, bounding box and the angles as text."""

import cv2
import numpy as np

from .features import NOSE_TIP

#: Axis colours (RGB): x (subject's left) red, y (up) green, z (out of the face) blue.
AXIS_COLOURS = ((255, 0, 0), (0, 200, 0), (0, 80, 255))


def draw_pose(rgb, pose, *, camera_matrix=None, axis_length=None, draw_box=True,
              draw_text=True):
    """Draw one :class:`~nlml_hpe.estimator.FacePose` on ``rgb`` (``uint8`` HxWx3, in place).

    The head-frame axes (x subject's left, y up, z out of the face) start at the
    nose tip.  With ``camera_matrix`` and a known ``pose.position`` they are
    projected in perspective; otherwise orthographically (rotation only).
    ``axis_length`` defaults to half the face box width in pixels.
    Returns ``rgb``.
    """
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f'draw_pose needs a uint8 HxWx3 image, got {rgb.dtype} {rgb.shape}')
    x0, y0, x1, y1 = pose.box
    if axis_length is None:
        axis_length = max(10.0, 0.5 * (x1 - x0))
    nose = np.asarray(pose.landmarks[NOSE_TIP][:2], dtype=np.float64)
    rot = np.asarray(pose.rotation, dtype=np.float64)  # head -> optical (x right, y down)
    thickness = max(1, int(round(axis_length / 40)))
    tips = []
    if camera_matrix is not None and pose.position is not None:
        k = np.asarray(camera_matrix, dtype=np.float64)
        nose_cam = np.array([nose[0] - k[0, 2], nose[1] - k[1, 2], k[0, 0]])
        depth = float(pose.position[2])
        nose3d = nose_cam / nose_cam[2] * depth * np.array([1, k[0, 0] / k[1, 1], 1])
        length_m = axis_length / k[0, 0] * depth
        for axis in range(3):
            p = nose3d + rot[:, axis] * length_m
            tips.append((k[0, 0] * p[0] / p[2] + k[0, 2], k[1, 1] * p[1] / p[2] + k[1, 2]))
    else:
        for axis in range(3):
            tips.append(tuple(nose + rot[:2, axis] * axis_length))
    start = tuple(int(round(v)) for v in nose)
    for axis, tip in enumerate(tips):
        end = tuple(int(round(v)) for v in tip)
        cv2.arrowedLine(rgb, start, end, AXIS_COLOURS[axis], thickness, cv2.LINE_AA,
                        tipLength=0.15)
    if draw_box:
        cv2.rectangle(rgb, (int(x0), int(y0)), (int(x1), int(y1)), (255, 255, 0), 1,
                      cv2.LINE_AA)
    if draw_text:
        text = f'yaw {pose.yaw:+.0f} pitch {pose.pitch:+.0f} roll {pose.roll:+.0f}'
        scale = max(0.4, min(1.0, (x1 - x0) / 250.0))
        org = (int(x0), max(12, int(y0) - 6))
        cv2.putText(rgb, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(rgb, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return rgb


def draw_poses(rgb, poses, *, camera_matrix=None):
    """Return a copy of ``rgb`` with every pose drawn."""
    out = np.ascontiguousarray(rgb, dtype=np.uint8).copy()
    for pose in poses:
        draw_pose(out, pose, camera_matrix=camera_matrix)
    return out
