"""The ROS-free looking-at signal (nlml_hpe.face_stream)."""

import math

import numpy as np
import pytest

from nlml_hpe.face_stream import check_target, looking_at, target_offset_deg
from nlml_hpe.geometry import gaze_offset_deg

# A face 1 m in front of the camera looking straight back at it: REP-155 axes (columns)
# in the optical frame, x out of the face = -z, y = the subject's left = +x, z up = -y.
FACING = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]])
HEAD = np.array([0.0, 0.0, 1.0])


def test_camera_target_is_the_gaze_offset():
    rot = FACING @ np.array([[math.cos(0.3), 0, math.sin(0.3)], [0, 1, 0],
                             [-math.sin(0.3), 0, math.cos(0.3)]])
    assert target_offset_deg(rot, HEAD) == pytest.approx(float(gaze_offset_deg(rot, HEAD)))


def test_target_beside_the_camera():
    # Gaze straight back at the camera; a target 20 cm to the side is atan(0.2) off.
    off = target_offset_deg(FACING, HEAD, (0.2, 0.0, 0.0))
    assert off == pytest.approx(math.degrees(math.atan(0.2)))
    assert not looking_at(off, HEAD, (0.2, 0.0, 0.0), threshold_deg=10.0)
    # A 20 cm radius widens the threshold by asin(0.2 / distance).
    assert looking_at(off, HEAD, (0.2, 0.0, 0.0), threshold_deg=10.0, tolerance_m=0.2)
    assert looking_at(90.0, HEAD, HEAD + 0.05, threshold_deg=10.0, tolerance_m=0.1)  # inside


@pytest.mark.parametrize('bad', [[0.0, 0.0], [0.0, 0.0, float('inf')], 'abc', [[0, 0, 0]]])
def test_bad_targets_are_refused(bad):
    with pytest.raises(ValueError, match='3 finite numbers'):
        check_target(bad)
