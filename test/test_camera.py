"""The frame's camera (nlml_hpe.camera) and the estimate's result object."""

import numpy as np
import pytest

from nlml_hpe.bench.aflw2000 import read_rgb
from nlml_hpe.camera import Camera
from nlml_hpe.estimator import Estimate, HeadPoseEstimator
from nlml_hpe.model import default_model_dir, load_model


def test_camera_is_validated_once_and_read_only():
    cam = Camera.pinhole(600.0, 640, 480)
    assert cam.size == (640, 480) and not cam.guessed
    np.testing.assert_allclose(cam.k @ cam.k_inv, np.eye(3), atol=1e-12)
    with pytest.raises(ValueError):
        cam.k[0, 0] = 1.0
    for bad in (np.eye(2), np.full((3, 3), np.nan), np.diag([-1.0, 1.0, 1.0])):
        with pytest.raises(ValueError):
            Camera(bad, 640, 480)
    with pytest.raises(ValueError, match='positive'):
        Camera(cam.k, 0, 480)
    guess = Camera.guess(640, 480)
    assert guess.guessed and guess.k[0, 0] == pytest.approx(320 / np.tan(np.radians(30)))


def test_mirrored_camera():
    k = np.array([[600.0, 2.0, 300.0], [0.0, 610.0, 250.0], [0.0, 0.0, 1.0]])
    m = Camera(k, 640, 480).mirrored()
    assert m.k[0, 2] == 340.0 and m.k[0, 1] == -2.0 and m.k[1, 2] == 250.0
    np.testing.assert_allclose(m.mirrored().k, k)


def test_estimate_returns_faces_timings_and_camera():
    from importlib import resources

    rgb = read_rgb(resources.files('nlml_hpe') / 'data' / 'demo' / '000.jpg')
    with HeadPoseEstimator(load_model(default_model_dir()), flip_average=False) as est:
        guessed = est.estimate(rgb)
        assert isinstance(guessed, Estimate) and len(guessed) == 1
        assert guessed.camera.guessed and guessed[0].position is None  # no metric position
        assert guessed.timings['faces'] == 1 and guessed.timings['landmarks_ms'] > 0
        assert guessed[0].network_angles.shape == (3,)
        cam = Camera.pinhole(700.0, 640, 480)  # the demo clip's camera
        calibrated = est.estimate(rgb, camera=cam)
        assert calibrated.camera is cam and 0.2 < calibrated[0].position[2] < 2.0
        same = est.estimate(rgb, camera_matrix=cam.k)  # a plain K: the same
        np.testing.assert_allclose(same[0].position, calibrated[0].position)
        with pytest.raises(ValueError, match='640x480'):
            est.estimate(rgb[:240], camera=cam)
