"""Far faces in clutter (nlml_hpe.landmarks): found when blurred, and no face in clutter alone.

Real models, a shipped demo face (an ICT-FaceKit render), benchmark scenes
(:mod:`nlml_hpe.bench.clutter`).  The blurred frames are ones the landmark
stage missed before small faces got a second look and a presence floor.
"""

from conftest import demo_frame
import numpy as np
import pytest

from nlml_hpe.bench.aflw2000 import pick_labelled_face
from nlml_hpe.bench.clutter import BACKGROUND_KINDS, frame_rng, scene
from nlml_hpe.estimator import HeadPoseEstimator
from nlml_hpe.landmarks import Roi


@pytest.mark.parametrize('seed', [1, 2, 3])
def test_a_blurred_40px_face_in_clutter_is_found(estimator, seed):
    rgb = demo_frame('003.jpg')
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
    rgb = demo_frame('000.jpg')
    box = estimator.estimate(rgb)[0].box
    frame, _ = scene((rgb, box), 640, 480, 40, 'smooth', 'photo', frame_rng(0))
    reading = estimator.extractor.read_frame(frame)
    assert len(reading.faces) == 1 and reading.mirrored[0] is not None
    with HeadPoseEstimator.from_pretrained(flip_average=False, small_face_flip_px=0.0) as off:
        assert off.extractor.read_frame(frame).mirrored is None
    # A large face is read once, as before.
    assert estimator.extractor.read_frame(rgb).mirrored is None


@pytest.mark.parametrize('kind', [k for k in BACKGROUND_KINDS if k != 'photo'])
def test_face_free_clutter_gives_no_face(estimator, kind):
    for i in range(4):
        frame, _ = scene(None, 640, 480, 0, kind, 'photo', frame_rng(7, kind, i))
        assert estimator.estimate(frame) == [], (kind, i)


def test_presence_floor_only_for_small_strong_detections():
    from nlml_hpe.landmarks.detection_plan import Found
    from nlml_hpe.landmarks.face_checks import presence_floor
    from nlml_hpe.options import EstimatorConfig

    c = EstimatorConfig()
    small = Roi(100.0, 100.0, 60.0, 0.0)
    box = (70.0, 70.0, 130.0, 130.0)
    assert presence_floor(Found(box, small, 0.9), c) == pytest.approx(0.1)
    assert presence_floor(Found(box, small, 0.6), c) == 0.5
    assert presence_floor(Found(box, Roi(100.0, 100.0, 300.0, 0.0), 0.99), c) == 0.5
    assert presence_floor(Found(box, small, 0.9), c.updated(min_tracking_confidence=0.05)) \
        == pytest.approx(0.05)


def test_search_keeps_the_best_score_of_a_face_over_all_runs(estimator):
    rgb = demo_frame('000.jpg')
    box = estimator.estimate(rgb)[0].box
    frame, label = scene((rgb, box), 640, 480, 40, 'clutter', 'photo', frame_rng(4))
    ext = estimator.extractor
    found = ext.search(frame)
    best = 0.0
    for run in dict.fromkeys(ext.plan.runs(640, 480)):
        for f in ext.search(frame, [run]):
            if pick_labelled_face([f.box], label) is not None:
                best = max(best, f.score)
    mine = [f.score for f in found if pick_labelled_face([f.box], label) is not None]
    assert len(mine) == 1 and mine[0] == pytest.approx(best)
    assert np.isfinite(best) and best > 0.5


@pytest.mark.parametrize('width', [28, 40])
def test_a_small_face_whose_detection_is_turned_far_off_is_read_upright(estimator, width,
                                                                        monkeypatch):
    """A far face's eye keypoints can turn its ROI far off: the second look reads it upright."""
    from dataclasses import replace

    from nlml_hpe.landmarks import extractor as ex_module
    from nlml_hpe.landmarks.face_checks import landmark_boxes

    rgb = demo_frame('003.jpg')
    box = estimator.estimate(rgb)[0].box
    frame, label = scene((rgb, box), 640, 480, width, 'smooth', 'photo', frame_rng(0))
    ext = estimator.extractor
    found = [f for f in ext.search(frame) if pick_labelled_face([f.box], label) is not None]
    assert len(found) == 1
    right = ext._read_new(frame, found)[0]
    turned = replace(found[0], roi=replace(found[0].roi, angle=found[0].roi.angle
                                           + np.radians(120.0)))
    read = ext._read_new(frame, [turned])[0]
    assert read.landmarks is not None and right.landmarks is not None
    # The same face, read as well as through the detector's own ROI.
    assert pick_labelled_face(list(landmark_boxes(read.landmarks)), label) is not None
    assert np.abs(read.landmarks - right.landmarks)[:, :2].mean() < 0.1 * width
    monkeypatch.setattr(ex_module, 'SECOND_LOOK_UPRIGHT', False)
    assert ext._read_new(frame, [turned])[0].landmarks is None


def _worst_margin(width, height, overlap=None):
    """Return the smallest margin of a frame point to the nearest inner edge of its best tile."""
    from nlml_hpe.landmarks.detection_plan import detection_regions

    regions = detection_regions(width, height, 'full', 24.0, overlap)[1:]
    side = min(r[2] - r[0] for r in regions)
    tiles = np.array([r for r in regions if r[2] - r[0] < side + 1e-6])
    xs, ys = np.meshgrid(np.arange(0, width, 5.0), np.arange(0, height, 5.0))
    pts = np.stack([xs.ravel(), ys.ravel()], 1)
    inf = np.inf
    # Distance to each tile's edges, an edge on the image's border counting as far away.
    left = np.where(tiles[:, 0] > 0, pts[:, :1] - tiles[:, 0], inf)
    top = np.where(tiles[:, 1] > 0, pts[:, 1:] - tiles[:, 1], inf)
    right = np.where(tiles[:, 2] < width, tiles[:, 2] - pts[:, :1], inf)
    bottom = np.where(tiles[:, 3] < height, tiles[:, 3] - pts[:, 1:], inf)
    margin = np.minimum.reduce([left, top, right, bottom])
    return margin.max(axis=1).min(), side


@pytest.mark.parametrize('size', [(640, 480), (1280, 720), (1920, 1080)])
def test_every_small_face_lies_well_inside_a_finest_tile(size):
    margin, side = _worst_margin(*size)
    assert margin >= side / 4 - 1  # tiles overlap by half: a quarter side from every inner edge
    if size == (1280, 720):  # as the tiles were: a face at the centre sat near an edge
        # (the finest tiles overlapped by twice the largest face they had to find: 96 px)
        assert _worst_margin(*size, overlap=2 * side * 14.0 / 192 * 2)[0] < side / 4 - 1


def test_confirm_far_faces_drops_a_texture_the_mirror_does_not_read_as_a_face(aflw_dir):
    """Face-free frames of ``benchmark range`` (photo textures, seed 0) that gave a false face.

    As the textures were before photos showing a second face were left out.
    """
    from nlml_hpe.bench.range import load_textures

    textures, _ = load_textures(aflw_dir, screen=False)
    frames = [scene(None, w, h, 0, 'photo', 'photo', frame_rng(0, 'empty', w, h, 'photo', i),
                    textures)[0] for (w, h), i in [((640, 480), 17), ((1280, 720), 14)]]
    with HeadPoseEstimator.from_pretrained(flip_average=False, confirm_far_faces=False) as off, \
            HeadPoseEstimator.from_pretrained(flip_average=False) as on:  # on by default
        for frame in frames:
            assert len(off.estimate(frame)) == 1 and on.estimate(frame) == []
        # A real far face still passes.
        rgb = demo_frame('003.jpg')
        frame, label = scene((rgb, on.estimate(rgb)[0].box), 640, 480, 40, 'clutter', 'photo',
                             frame_rng(1, '003.jpg'))
        assert pick_labelled_face([p.box for p in on.estimate(frame)], label) is not None


def test_a_far_face_one_tile_alone_saw_must_be_found_again_in_a_view_of_its_own(aflw_dir):
    """A false face one tile alone found is gone; a real far face is found again.

    Face-free frames of ``benchmark range`` (seed 0, textures as before they were
    screened) whose false face passed the mirror check: the detector finds nothing
    there in a view centred on it.
    """
    from nlml_hpe.bench.range import load_textures

    textures, _ = load_textures(aflw_dir, screen=False)
    with HeadPoseEstimator.from_pretrained(flip_average=False) as on, \
            HeadPoseEstimator.from_pretrained(flip_average=False,
                                              confirm_far_faces=False) as off:
        search = on.extractor.search
        for i in (24, 85):
            frame = scene(None, 640, 480, 0, 'photo', 'photo',
                          frame_rng(0, 'empty', 640, 480, 'photo', i), textures)[0]
            assert len(off.estimate(frame)) == 1 and on.estimate(frame) == []
            (false,) = [f for f in search(frame) if f.views == 1][:1]
            assert not search.finds_again(frame, false.box)
        rgb = demo_frame('003.jpg')
        frame, label = scene((rgb, on.estimate(rgb)[0].box), 640, 480, 40, 'photo', 'photo',
                             frame_rng(1, '003.jpg'), textures)
        (face,) = [f for f in search(frame) if pick_labelled_face([f.box], label) is not None]
        assert face.views >= 2 and search.finds_again(frame, face.box)
        assert pick_labelled_face([p.box for p in on.estimate(frame)], label) is not None


@pytest.mark.parametrize('width, score, views, needs', [
    (40, 0.9, 1, True),     # small, one run: always
    (40, 0.9, 3, False),    # small, several runs
    (80, 0.55, 1, True),    # mid-size and unsure, one run
    (80, 0.8, 1, False),    # mid-size and sure
    (150, 0.55, 1, False),  # large
])
def test_which_new_faces_need_a_view_of_their_own(width, score, views, needs):
    from nlml_hpe.landmarks.detection_plan import Found
    from nlml_hpe.landmarks.extractor import FaceRead
    from nlml_hpe.landmarks.face_checks import NEW, TRACKED, needs_own_view
    from nlml_hpe.landmarks.roi import ROI_SCALE, ReadPlan
    from nlml_hpe.options import EstimatorConfig

    roi = Roi(320.0, 240.0, width * ROI_SCALE, 0.0)
    found = Found((320 - width / 2, 240 - width / 2, 320 + width / 2, 240 + width / 2),
                  roi, score, views)
    face = FaceRead(ReadPlan.of_roi(roi), NEW, landmarks=np.zeros((468, 3)), score=0.9,
                    detection=found)
    assert needs_own_view(face, EstimatorConfig()) is needs
    assert not needs_own_view(face, EstimatorConfig(confirm_far_faces=False))
    face.source = TRACKED
    assert not needs_own_view(face, EstimatorConfig())


@pytest.mark.parametrize('presence, views, refuted', [
    (0.95, 1, True),    # one run found it: the mirror decides
    (0.95, 2, True),
    (0.8, 4, True),     # several runs, but the landmark model is unsure
    (0.95, 3, False),   # seen clearly: several runs and a sure reading
    (1.0, 5, False),
])
def test_which_new_far_faces_the_mirror_check_can_refute(presence, views, refuted):
    from nlml_hpe.landmarks.detection_plan import Found
    from nlml_hpe.landmarks.extractor import FaceRead
    from nlml_hpe.landmarks.face_checks import NEW, refuted_by_mirror
    from nlml_hpe.landmarks.roi import ROI_SCALE, ReadPlan
    from nlml_hpe.options import EstimatorConfig

    roi = Roi(320.0, 240.0, 40 * ROI_SCALE, 0.0)
    found = Found((300, 220, 340, 260), roi, 0.7, views)
    plan = ReadPlan.of_roi(roi)
    face = FaceRead(plan, NEW, landmarks=np.zeros((468, 3)), score=presence, floor=0.5,
                    mirrored_score=0.1, detection=found)
    assert refuted_by_mirror(face, plan, EstimatorConfig()) is refuted
    assert not refuted_by_mirror(face, plan, EstimatorConfig(confirm_far_faces=False))
    face.mirrored_score = 0.6  # a face in its mirror image too
    assert not refuted_by_mirror(face, plan, EstimatorConfig())


def test_weaker_detections_leave_the_faces_at_the_threshold_as_they_are():
    """Small faces under the threshold join no merge of a face at it (weighted NMS)."""
    from nlml_hpe.geometry import box_iou
    from nlml_hpe.landmarks.face_detector import FaceDetector

    rgb = demo_frame('003.jpg')
    with HeadPoseEstimator.from_pretrained(flip_average=False) as est:
        box = est.estimate(rgb)[0].box
    det = FaceDetector('full', 0.5, 1)
    for seed in (0, 2):
        frame, _ = scene((rgb, box), 640, 480, 24, 'clutter', 'photo', frame_rng(seed, 'weak'))
        alone = det.detect(frame)
        strong, weak = det.detect_with_weak(frame, weak_score=0.05, weak_px=64.0)
        np.testing.assert_array_equal(strong.boxes, alone.boxes)
        np.testing.assert_array_equal(strong.scores, alone.scores)
        assert len(alone) == 1 and len(weak) > 10  # clutter scores 0.05 in many places
        assert np.all((weak.scores >= 0.05) & (weak.scores < 0.5))
        assert np.all(weak.boxes[:, 2] - weak.boxes[:, 0] <= 64.0)
        assert box_iou(weak.boxes, strong.boxes).max() == 0.0  # none touches the face
        assert len(det.detect_with_weak(frame)[1]) == 0  # none unless asked for


@pytest.mark.parametrize('seed, width', [(2, 20), (2, 28), (3, 28), (5, 24)])
def test_a_weak_detection_in_clutter_is_no_face(estimator, seed, width):
    """The search takes these frames' weaker small detections; the checks drop them."""
    from nlml_hpe.landmarks.detection_plan import WEAK_MARGIN

    rgb = demo_frame('003.jpg')
    box = estimator.estimate(rgb)[0].box
    frame, label = scene((rgb, box), 640, 480, width, 'clutter', 'photo',
                         frame_rng(seed, 'weak'))
    found = estimator.extractor.search(frame)
    weak = [f for f in found if f.weak]
    strong = [f for f in found if not f.weak]
    assert weak and all(0.5 - WEAK_MARGIN <= f.score < 0.5 for f in weak)
    assert all(f.score >= 0.5 for f in strong)
    poses = estimator.estimate(frame)
    assert len(poses) == 1 and pick_labelled_face([p.box for p in poses], label) == 0


def test_a_weak_detection_always_needs_a_view_of_its_own():
    from nlml_hpe.landmarks.detection_plan import Found
    from nlml_hpe.landmarks.extractor import FaceRead
    from nlml_hpe.landmarks.face_checks import NEW, TRACKED, needs_own_view, seen_clearly
    from nlml_hpe.landmarks.roi import ROI_SCALE, ReadPlan
    from nlml_hpe.options import EstimatorConfig

    roi = Roi(320.0, 240.0, 40 * ROI_SCALE, 0.0)
    found = Found((300, 220, 340, 260), roi, 0.45, views=5, weak=True)
    face = FaceRead(ReadPlan.of_roi(roi), NEW, landmarks=np.zeros((468, 3)), score=1.0,
                    detection=found)
    # Whatever the option and however many runs found it weakly.
    assert needs_own_view(face, EstimatorConfig())
    assert needs_own_view(face, EstimatorConfig(confirm_far_faces=False))
    assert not seen_clearly(face)  # and the mirror check applies
    face.source = TRACKED
    assert not needs_own_view(face, EstimatorConfig())
