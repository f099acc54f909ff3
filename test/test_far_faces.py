"""Far faces in clutter (nlml_hpe.landmarks): found when blurred, and no face in clutter alone.

Real models, a shipped demo face (an ICT-FaceKit render), benchmark scenes
(:mod:`nlml_hpe.bench.clutter`).  The blurred frames are ones the landmark
stage missed before small faces got a second look and a presence floor.
"""

from importlib import resources

import numpy as np
import pytest

from nlml_hpe.bench.aflw2000 import pick_labelled_face, read_rgb
from nlml_hpe.bench.clutter import BACKGROUND_KINDS, frame_rng, scene
from nlml_hpe.estimator import HeadPoseEstimator
from nlml_hpe.landmarks import LandmarkExtractor, Roi


@pytest.fixture(scope='module')
def estimator():
    est = HeadPoseEstimator.from_pretrained(flip_average=False)
    yield est
    est.close()


def demo(name):
    return read_rgb(resources.files('nlml_hpe') / 'data' / 'demo' / name)


@pytest.mark.parametrize('seed', [1, 2, 3])
def test_a_blurred_40px_face_in_clutter_is_found(estimator, seed):
    rgb = demo('003.jpg')
    box = estimator.estimate(rgb)[0].box
    frame, label = scene((rgb, box), 640, 480, 40, 'clutter', 'photo',
                         frame_rng(seed, '003.jpg'), fault='blur')
    poses = estimator.estimate(frame)
    pick = pick_labelled_face([p.box for p in poses], label)
    assert pick is not None
    assert len(poses) == 1  # and nothing else
    # The demo frame's labelled pose (poses.json: 003 is yaw 40): read within a few degrees.
    assert abs(poses[pick].yaw - estimator.estimate(rgb)[0].yaw) < 8.0


def test_small_faces_are_read_mirrored_too(estimator):
    rgb = demo('000.jpg')
    box = estimator.estimate(rgb)[0].box
    frame, _ = scene((rgb, box), 640, 480, 40, 'smooth', 'photo', frame_rng(0))
    reading = estimator.extractor.read_frame(frame)
    assert len(reading.faces) == 1 and reading.mirrored[0] is not None
    estimator.extractor.mirror_small_px = None
    try:
        assert estimator.extractor.read_frame(frame).mirrored is None
    finally:
        from nlml_hpe.landmarks import MIRROR_SMALL_PX
        estimator.extractor.mirror_small_px = MIRROR_SMALL_PX
    # A large face is read once, as before.
    assert estimator.extractor.read_frame(rgb).mirrored is None


@pytest.mark.parametrize('kind', [k for k in BACKGROUND_KINDS if k != 'photo'])
def test_face_free_clutter_gives_no_face(estimator, kind):
    for i in range(4):
        frame, _ = scene(None, 640, 480, 0, kind, 'photo', frame_rng(7, kind, i))
        assert estimator.estimate(frame) == [], (kind, i)


def test_presence_floor_only_for_small_strong_detections():
    ext = LandmarkExtractor(max_faces=1)
    try:
        small = Roi(100.0, 100.0, 60.0, 0.0, score=0.9)
        assert ext.presence_floor(small) == pytest.approx(0.1)
        assert ext.presence_floor(Roi(100.0, 100.0, 60.0, 0.0, score=0.6)) == 0.5
        assert ext.presence_floor(Roi(100.0, 100.0, 300.0, 0.0, score=0.99)) == 0.5
        assert ext.presence_floor(Roi(100.0, 100.0, 60.0, 0.0)) == 0.5  # from landmarks
    finally:
        ext.close()


def test_detect_keeps_the_best_score_of_a_face_over_all_runs(estimator):
    rgb = demo('000.jpg')
    box = estimator.estimate(rgb)[0].box
    frame, label = scene((rgb, box), 640, 480, 40, 'clutter', 'photo', frame_rng(4))
    ext = estimator.extractor
    found = ext.detect(frame, boxes=True)
    best = 0.0
    for kind, region in ext.regions(640, 480):
        dets = ext._detector(kind).detect(frame, region)
        for b, s in zip(dets.boxes, dets.scores):
            if pick_labelled_face([b], label) is not None:
                best = max(best, float(s))
    mine = [roi.score for b, roi in found if pick_labelled_face([b], label) is not None]
    assert len(mine) == 1 and mine[0] == pytest.approx(best)
    assert np.isfinite(best) and best > 0.5
