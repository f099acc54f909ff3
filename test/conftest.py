"""Shared pytest fixtures: isolated ROS domain, shared data location, repo path."""

import os
from pathlib import Path
import sys
import traceback

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get('NLML_HPE_SHARED', REPO.parent / 'shared')) / 'data'

# Each test session gets its own DDS domain so parallel runs and other ROS
# systems on the machine never see our traffic.
os.environ.setdefault('ROS_DOMAIN_ID', str(100 + os.getpid() % 100))
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # the training/ pipeline lives beside src/


def spin_while_ok(executor, context, errors=None):
    """Spin ``executor`` until ``context`` shuts down (a test rig's spinner thread).

    A callback's exception while the context is still up stops the spinner like
    ``rclpy.spin`` would; it is appended, formatted, to ``errors`` for the test to
    report (a rig that stops taking frames then says why).
    """
    while context.ok():
        try:
            executor.spin_once(timeout_sec=0.05)
        except Exception:  # noqa: BLE001 - context shut down while spinning, or a callback
            if context.ok() and errors is not None:
                errors.append(traceback.format_exc())
            return


def demo_frame(name='000.jpg'):
    """Return a frame of the shipped demo clip (640x480, one rendered face)."""
    from importlib import resources

    from nlml_hpe.bench.aflw2000 import read_rgb

    return read_rgb(resources.files('nlml_hpe') / 'data' / 'demo' / name)


@pytest.fixture(scope='module')
def estimator():
    """Return a one-pass estimator (no flip averaging), shared by a test module."""
    from nlml_hpe.estimator import HeadPoseEstimator

    est = HeadPoseEstimator.from_pretrained(flip_average=False)
    yield est
    est.close()


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
