"""Per-face signals computed from poses, free of ROS: the looking-at test of a target.

A face *looks at* a target when the angle between its forward axis (the first
column of its REP-155 rotation in the camera's optical frame) and the ray from
the head to the target is at most ``threshold_deg``, widened by the angle the
target's ``tolerance_m`` (its radius: half a screen, say) subtends at the
head.  The camera is the target ``(0, 0, 0)``: :func:`looking_at` then gives
the node's ``looking_at_camera`` with a zero tolerance.
"""

import math

import numpy as np

from .geometry import angle_between_deg

#: The camera's own position in its optical frame.
CAMERA = (0.0, 0.0, 0.0)


def check_target(target):
    """Return ``target`` as a finite ``(3,)`` float array (metres), or raise ValueError."""
    arr = np.asarray(target, float) if not isinstance(target, str) else np.array([])
    if arr.shape != (3,) or not np.all(np.isfinite(arr)):
        raise ValueError(f'a target must be 3 finite numbers (x, y, z in metres), got {target!r}')
    return arr


def target_offset_deg(rot_optical_face, position_optical, target=CAMERA):
    """Angle (deg) between the face's forward axis and the ray from the head to ``target``.

    All in the camera's optical frame; 0 means looking straight at the target.
    """
    forward = np.asarray(rot_optical_face, float)[..., :, 0]
    to_target = np.asarray(target, float) - np.asarray(position_optical, float)
    return float(angle_between_deg(forward, to_target))


def looking_at(offset_deg, position_optical, target=CAMERA, threshold_deg=15.0,
               tolerance_m=0.0):
    """Tell whether a face at ``position_optical`` with ``offset_deg`` looks at ``target``.

    ``tolerance_m`` widens ``threshold_deg`` by the angle a sphere of that radius
    around the target subtends at the head (a head inside the sphere always looks).
    """
    distance = float(np.linalg.norm(np.asarray(target, float)
                                    - np.asarray(position_optical, float)))
    if tolerance_m > 0 and distance <= tolerance_m:
        return True
    widen = math.degrees(math.asin(tolerance_m / distance)) if tolerance_m > 0 else 0.0
    return bool(offset_deg <= threshold_deg + widen)
