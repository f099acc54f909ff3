"""The face-free scenery of synthetic frames (:mod:`nlml_hpe.scenery`)."""

import numpy as np
import pytest

from nlml_hpe.scenery import CameraView, room_background


def test_room_is_seeded_and_not_flat():
    a = room_background(320, 240, np.random.default_rng(3))
    b = room_background(320, 240, np.random.default_rng(3))
    c = room_background(320, 240, np.random.default_rng(4))
    assert a.shape == (240, 320, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)  # the uncertainty renders rely on seeded rooms
    assert np.abs(a.astype(int) - c).mean() > 10  # another seed: another room
    assert a.reshape(-1, 3).std(axis=0).min() > 10  # walls, furniture, decor: not a flat grey


def test_camera_moves_over_the_scene_and_adds_noise():
    rng = np.random.default_rng(0)
    view = CameraView(room_background(400, 300, rng), (320, 240), rng, pan_px=30.0)
    f0, f1 = view.frame(0.0), view.frame(2.0)
    assert f0.shape == (240, 320, 3)
    assert np.abs(f0.astype(int) - f1).mean() > 1  # pan and shake move the view
    noisy = view.finish(f0, 0.0)
    assert noisy.dtype == np.uint8 and 0 < np.abs(noisy.astype(int) - f0).mean() < 10
    with pytest.raises(ValueError, match='smaller than the frame'):
        CameraView(np.zeros((100, 100, 3), np.uint8), (320, 240), rng)
