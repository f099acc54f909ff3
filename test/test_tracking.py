"""Face tracks (lifecycle, ids) and One-Euro smoothing (ROS-free)."""

import re

import numpy as np
import pytest

from nlml_hpe.geometry import box_iou
from nlml_hpe.smoothing import OneEuroFilter, PoseSmoother
from nlml_hpe.tracking import (
    COASTING,
    CONFIRMED,
    LOST,
    TENTATIVE,
    FaceTracker,
    new_uid,
)


def test_box_iou_values():
    iou = box_iou([[0, 0, 10, 10]], [[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    np.testing.assert_allclose(iou, [[1.0, 50 / 150, 0.0]])


def _ids(tracks):
    return [t.id for t in tracks]


def test_tracker_keeps_ids_when_faces_move_and_swap_order():
    tracker = FaceTracker(confirm_frames=1)
    a, b = np.array([0, 0, 100, 100.0]), np.array([300, 0, 400, 100.0])
    ids0 = _ids(tracker.update([a, b], 0.0))
    assert len(set(ids0)) == 2
    # Both move by 20 px and the detector lists them in the other order.
    ids1 = _ids(tracker.update([b + 20, a + 20], 0.033))
    assert ids1 == [ids0[1], ids0[0]]
    # A fast jump without overlap is still matched by centre distance.
    ids2 = _ids(tracker.update([a + [60, 0, 60, 0]], 0.066))
    assert ids2 == [ids0[0]]


def test_lifecycle_tentative_confirmed_coasting_lost_ended():
    tracker = FaceTracker(confirm_frames=3, coast_s=0.3, memory_s=1.0)
    box, t = np.array([100, 100, 200, 200.0]), 0.0
    states = []
    for _ in range(3):
        (track,) = tracker.update([box], t)
        states.append(track.state)
        t += 0.033
    assert states == [TENTATIVE, TENTATIVE, CONFIRMED] and track.listed
    first = track.id
    # Missed for two frames: still listed (coasting), same track.
    for _ in range(2):
        assert tracker.update([], t) == []
        assert tracker.tracks[first].state == COASTING and tracker.tracks[first].listed
        t += 0.033
    (track,) = tracker.update([box], t)
    assert track.id == first and track.state == CONFIRMED
    # Missed for longer than coast_s: lost (no longer listed) but remembered ...
    t += 0.4
    tracker.update([], t)
    assert tracker.tracks[first].state == LOST and not tracker.tracks[first].listed
    # ... and back where it was within memory_s: the same id, listed at once.
    t += 0.5
    (track,) = tracker.update([box + 5], t)
    assert track.id == first and track.state == CONFIRMED
    # Gone for longer than memory_s: ended; a face there later is a new, tentative track,
    # also when it is the first frame after memory_s (no frame in between to end it).
    tracker.update([], t + 0.5)
    (track,) = tracker.update([box], t + 1.01)
    assert track.id != first and track.state == TENTATIVE and first not in tracker.tracks


def test_a_one_frame_false_face_is_never_listed():
    tracker = FaceTracker(confirm_frames=3)
    (flash,) = tracker.update([[10, 10, 40, 40]], 0.0)
    assert flash.state == TENTATIVE
    tracker.update([], 0.033)
    assert flash.id not in tracker.tracks  # a tentative track ends at its first miss


def test_a_face_passing_behind_another_gets_its_id_back():
    """One face walks right at 300 px/s behind a standing one, hidden for 0.4 s."""
    tracker = FaceTracker(confirm_frames=1)
    still = np.array([300, 100, 400, 200.0])
    dt, t, x = 1 / 30, 0.0, 100.0
    a, b = tracker.update([[x, 100, x + 100, 200], still], t)
    walker, stander = a.id, b.id
    for _ in range(14):
        t, x = t + dt, x + 300 * dt
        a, b = tracker.update([[x, 100, x + 100, 200], still], t)
        assert (a.id, b.id) == (walker, stander)
    for _ in range(12):  # hidden: only the standing face is seen
        t, x = t + dt, x + 300 * dt
        (b,) = tracker.update([still], t)
        assert b.id == stander
    assert tracker.tracks[walker].state == LOST
    t, x = t + dt, x + 300 * dt
    a, b = tracker.update([[x, 100, x + 100, 200], still], t)
    assert (a.id, b.id) == (walker, stander)


def test_the_far_face_of_two_that_cross_keeps_its_id():
    """A far face passes behind a near one; its reading slides onto the near face first.

    While a larger box covers it, its readings are not taken for its motion, so its
    prediction goes on where it was heading and it is found there again.
    """
    tracker = FaceTracker(confirm_frames=1)
    dt, t = 1 / 30, 0.0
    near = lambda t: np.array([400 - 300 * t, 100, 490 - 300 * t, 200])  # noqa: E731
    far = lambda t: np.array([100 + 200 * t, 110, 160 + 200 * t, 170])  # noqa: E731
    a, b = tracker.update([near(t), far(t)], t)
    near_id, far_id = a.id, b.id
    while far(t)[2] < near(t)[0] + 20:  # apart: both seen
        t += dt
        a, b = tracker.update([near(t), far(t)], t)
        assert (a.id, b.id) == (near_id, far_id)
    for _ in range(4):  # covered: the far face's region reads the near face, cut off
        t += dt
        hijacked = near(t) + [5, 10, -20, -20]
        a, b = tracker.update([near(t), hijacked], t)
        assert a.id == near_id
    for _ in range(6):  # then only the near face is read
        t += dt
        (a,) = tracker.update([near(t)], t)
        assert a.id == near_id
    t += dt
    a, b = tracker.update([near(t), far(t)], t)  # out on the other side
    assert (a.id, b.id) == (near_id, far_id)


def test_a_face_leaving_the_image_is_dropped_at_once():
    tracker = FaceTracker(confirm_frames=1, coast_s=0.3)
    t, x = 0.0, 500.0
    for _ in range(10):  # moving right at 600 px/s towards the edge of a 640 px image
        (track,) = tracker.update([[x, 100, x + 80, 180]], t, (640, 480))
        t, x = t + 1 / 30, x + 20
    tracker.update([], t, (640, 480))  # its predicted centre is outside: not listed
    assert tracker.tracks[track.id].state == LOST


def _walk_out(tracker):
    """Walk a face right out of a 640x480 image; return its track and the time it left."""
    t, x = 0.0, 500.0
    for _ in range(10):  # moving right at 600 px/s towards the edge of a 640 px image
        (track,) = tracker.update([[x, 100, x + 80, 180]], t, (640, 480))
        t, x = t + 1 / 30, x + 20
    tracker.update([], t, (640, 480))  # its predicted centre is outside: lost
    return track, t


def test_a_face_that_walks_out_and_back_within_memory_keeps_its_id():
    """Expected back where it left (the image's edge), not where its walk would have led."""
    tracker = FaceTracker(confirm_frames=1, coast_s=0.3, memory_s=1.5)
    track, t = _walk_out(tracker)
    assert tracker.tracks[track.id].state == LOST
    t += 0.8  # away 0.8 s: its walk would have taken it ~500 px further out
    (back,) = tracker.update([[570, 105, 640, 185]], t, (640, 480))  # back at the right edge
    assert back.id == track.id and back.state == CONFIRMED


def test_a_face_entering_at_another_edge_is_a_new_person():
    tracker = FaceTracker(confirm_frames=1, coast_s=0.3, memory_s=1.5)
    track, t = _walk_out(tracker)
    (other,) = tracker.update([[0, 105, 70, 185]], t + 0.5, (640, 480))  # the left edge
    assert other.id != track.id
    # ... and after memory_s the one who left is forgotten, even at its own edge.
    tracker2 = FaceTracker(confirm_frames=1, coast_s=0.3, memory_s=1.5)
    track2, t2 = _walk_out(tracker2)
    tracker2.update([], t2 + 1.0, (640, 480))
    (late,) = tracker2.update([[570, 105, 640, 185]], t2 + 1.6, (640, 480))
    assert late.id != track2.id


def test_uids_are_random_letters_and_never_repeat():
    uids = set()
    for _ in range(20):
        tracker = FaceTracker(confirm_frames=1)
        for track in tracker.update([[0, 0, 10, 10], [50, 0, 60, 10]], 0.0):
            assert re.fullmatch('[a-z]{5}', track.uid)
            uids.add(track.uid)
    assert len(uids) == 40  # 2 of 11.9 million each: a repeat would be a bug
    assert new_uid({'aaaaa'}) != 'aaaaa'


def test_tracker_rejects_bad_boxes_and_options():
    tracker = FaceTracker()
    with pytest.raises(ValueError, match='shape'):
        tracker.update([[0, 0, 1]], 0.0)
    with pytest.raises(ValueError, match='NaN'):
        tracker.update([[0, 0, np.nan, 1]], 0.0)
    with pytest.raises(ValueError, match='x1 >= x0'):
        tracker.update([[10, 0, 0, 1]], 0.0)
    with pytest.raises(ValueError, match='confirm_frames'):
        FaceTracker(confirm_frames=0)
    with pytest.raises(ValueError, match='memory_s'):
        FaceTracker(memory_s=-1.0)


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
