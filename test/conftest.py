"""Shared pytest fixtures: isolated ROS domain, shared data location, repo path."""

import os
from pathlib import Path
import sys

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get('NLML_HPE_SHARED', REPO.parent / 'shared')) / 'data'

# Each test session gets its own DDS domain so parallel runs and other ROS
# systems on the machine never see our traffic.
os.environ.setdefault('ROS_DOMAIN_ID', str(100 + os.getpid() % 100))
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # the training/ pipeline lives beside src/


def shared_path(*parts):
    """Return a path under ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f'shared data not available: {path} is absent '
                    '(set NLML_HPE_SHARED or place shared/ beside the repo)')
    return path


@pytest.fixture
def aflw_dir():
    """Return the AFLW2000-3D dev split (skip when absent)."""
    return shared_path('aflw2000_dev')


@pytest.fixture
def ict_npz():
    """Return the ICT-FaceKit morphable model (skip when absent)."""
    return shared_path('ict_facekit', 'ict_facekit.npz')


@pytest.fixture
def canonical_obj():
    """Return MediaPipe's canonical face mesh (skip when absent)."""
    return shared_path('mediapipe_canonical', 'canonical_face_model.obj')


def turned_camera_view(rgb, k, rot, size):
    """Return what a camera of intrinsics ``k`` sees after turning by ``rot`` (optical frame).

    ``rgb`` is pasted at the centre of a ``size`` canvas first; a pure camera
    rotation is the homography ``K R K^-1``: what the scene looks like along
    each line of sight does not change, only where it lands in the image.
    """
    import cv2

    w, h = size
    canvas = np.zeros((h, w, 3), np.uint8)
    y0, x0 = (h - rgb.shape[0]) // 2, (w - rgb.shape[1]) // 2
    canvas[y0:y0 + rgb.shape[0], x0:x0 + rgb.shape[1]] = rgb
    hom = k @ rot @ np.linalg.inv(k)
    return canvas, cv2.warpPerspective(canvas, hom, (w, h), flags=cv2.INTER_LINEAR)
