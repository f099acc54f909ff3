"""Face tracker ids and One-Euro smoothing (ROS-free)."""

import numpy as np
import pytest

from nlml_hpe.tracking import FaceTracker, OneEuroFilter, PoseSmoother, box_iou


def test_box_iou_values():
    iou = box_iou([[0, 0, 10, 10]], [[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    np.testing.assert_allclose(iou, [[1.0, 50 / 150, 0.0]])


def test_tracker_keeps_ids_when_faces_move_and_swap_order():
    tracker = FaceTracker()
    a, b = np.array([0, 0, 100, 100.0]), np.array([300, 0, 400, 100.0])
    ids0 = tracker.update([a, b], 0.0)
    assert len(set(ids0)) == 2
    # Both move by 20 px and the detector lists them in the other order.
    ids1 = tracker.update([b + 20, a + 20], 0.033)
    assert ids1 == [ids0[1], ids0[0]]
    # A fast jump without overlap is still matched by centre distance.
    ids2 = tracker.update([a + [60, 0, 60, 0]], 0.066)
    assert ids2 == [ids0[0]]


def test_tracker_new_face_gets_new_id_and_old_tracks_expire():
    tracker = FaceTracker(max_age=0.5)
    first = tracker.update([[0, 0, 100, 100]], 0.0)[0]
    assert tracker.update([], 0.1) == []
    # Far away: a new face.
    second = tracker.update([[500, 500, 600, 600]], 0.2)[0]
    assert second != first
    # After max_age the first track is gone; the same box gets a fresh id, never reused.
    third = tracker.update([[0, 0, 100, 100]], 1.0)[0]
    assert third not in (first, second)


def test_tracker_rejects_bad_boxes():
    tracker = FaceTracker()
    with pytest.raises(ValueError, match='shape'):
        tracker.update([[0, 0, 1]], 0.0)
    with pytest.raises(ValueError, match='NaN'):
        tracker.update([[0, 0, np.nan, 1]], 0.0)
    with pytest.raises(ValueError, match='x1 >= x0'):
        tracker.update([[10, 0, 0, 1]], 0.0)


def test_one_euro_reduces_jitter_and_follows_steps():
    rng = np.random.default_rng(0)
    f = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    t = np.arange(300) / 30.0
    noisy = 5.0 + rng.normal(0, 1.0, size=t.shape)
    out = np.array([f(x, ti) for x, ti in zip(noisy, t)])
    assert np.std(out[30:]) < 0.5 * np.std(noisy[30:])
    # With a speed term it follows a large step quickly.
    g = OneEuroFilter(min_cutoff=1.0, beta=1.0)
    for ti in t[:30]:
        g(0.0, ti)
    outs = [g(100.0, ti) for ti in t[30:45]]
    assert outs[-1] > 90.0


def test_one_euro_validation_and_repeated_stamps():
    with pytest.raises(ValueError, match='min_cutoff'):
        OneEuroFilter(min_cutoff=0.0)
    with pytest.raises(ValueError, match='beta'):
        OneEuroFilter(beta=-1.0)
    f = OneEuroFilter()
    f(np.zeros(3), 1.0)
    out = f(np.ones(3), 1.0)  # same stamp: nominal dt, finite output
    assert np.all(np.isfinite(out)) and np.all(out > 0) and np.all(out < 1)
    with pytest.raises(ValueError, match='NaN'):
        f(np.array([np.nan, 0, 0]), 2.0)


def test_pose_smoother_handles_quaternion_sign_flip():
    s = PoseSmoother(min_cutoff=1.0, beta=0.0)
    q = np.array([0.0, 0.0, 0.38268343, 0.92387953])
    s(1, q, [0, 0, 1.0], 0.0)
    # -q is the same rotation: the output must stay at q, not collapse toward zero.
    out_q, out_p = s(1, -q, [0, 0, 1.0], 0.033)
    assert abs(abs(np.dot(out_q, q)) - 1.0) < 1e-6
    np.testing.assert_allclose(out_p, [0, 0, 1.0])
    with pytest.raises(ValueError, match='quaternion'):
        s(1, [0, 0, 0, 0], [0, 0, 1.0], 0.066)
