"""The project's landmark stage (nlml_hpe.landmarks): real models, shipped demo faces."""

from importlib import resources
import threading

from conftest import demo_frame
import cv2
from face_clips import face_sequence
import numpy as np
import pytest

from nlml_hpe.bench import speed as speed_benchmark
from nlml_hpe.camera import Camera
from nlml_hpe.geometry import box_iou
from nlml_hpe.landmarks import CROP_PX, LandmarkExtractor, LandmarkModel, Roi, roi_transforms
from nlml_hpe.landmarks.detection_plan import DetectionPlan, FaceSearch
from nlml_hpe.landmarks.extractor import FaceRead
from nlml_hpe.landmarks.face_checks import NEW, SAME_FACE_IOU, keep_faces, landmark_boxes
from nlml_hpe.landmarks.litert import LANDMARK_MODEL, TFLiteModel, model_path
from nlml_hpe.landmarks.look import Look
from nlml_hpe.model import ModelFileError
from nlml_hpe.options import EstimatorConfig


@pytest.fixture(scope='module')
def face_rgb():
    """Return the shipped demo clip's frontal frame (640x480, one rendered face)."""
    return demo_frame()


@pytest.fixture(scope='module')
def face_crop(face_rgb):
    """Return the demo face with some context (for pasting at other sizes), and its share."""
    with LandmarkExtractor() as ex:
        return speed_benchmark.face_crop(face_rgb, ex.extract(face_rgb)[0])


def paste(frame, crop, share, face_px, centre):
    """Paste ``crop`` scaled so its face is ``face_px`` wide, centred at ``centre``."""
    side = max(int(round(face_px / share)), 4)
    small = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
    x, y = int(centre[0] - side / 2), int(centre[1] - side / 2)
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + side, w), min(y + side, h)
    frame[y0:y1, x0:x1] = small[y0 - y:y1 - y, x0 - x:x1 - x]
    return frame


def test_extract_one_face(face_rgb):
    with LandmarkExtractor() as ex:
        reading = ex.read_frame(face_rgb)
    faces, scores = reading.faces, reading.scores
    assert len(faces) == 1
    lm = faces[0]
    assert lm.shape == (468, 3) and lm.dtype == np.float64
    h, w = face_rgb.shape[:2]
    assert 0 < lm[1, 0] < w and 0 < lm[1, 1] < h  # nose tip inside the image
    assert lm[:, 0].max() - lm[:, 0].min() > 0.1 * w
    assert 0.5 <= scores[0] <= 1.0  # the landmark model's face-presence score


def test_no_face_gives_empty_list():
    rng = np.random.default_rng(0)
    with LandmarkExtractor() as ex:
        assert ex.extract(np.zeros((240, 320, 3), np.uint8)) == []
        assert ex.extract(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)) == []


def test_a_weaker_reading_inside_or_around_a_face_is_that_face(face_rgb):
    """A crop twice a face's size, or of part of it, read less surely than the face is dropped."""
    with LandmarkExtractor() as ex:
        lm = ex.read_frame(face_rgb).faces[0]
    centre = lm[:, :2].mean(axis=0)

    def moved(scale, shift=0.0):
        out = lm.copy()
        out[:, :2] = centre + scale * (lm[:, :2] - centre)
        out[:, 0] += shift * np.ptp(lm[:, 0])
        return out

    face = FaceRead(None, NEW, lm, 0.99)
    around = FaceRead(None, NEW, moved(2.0), 0.55)  # a crop twice its size, read weakly
    part = FaceRead(None, NEW, moved(0.6), 0.7)  # its inner features, read less surely
    boxes = landmark_boxes(np.stack([lm, part.landmarks, around.landmarks]))
    assert np.all(box_iou(boxes[:1], boxes[1:]) <= SAME_FACE_IOU)  # IoU alone: other faces
    assert keep_faces([around, face], 5) == [face]
    assert keep_faces([part, face], 5) == [face]
    assert keep_faces([around, part, face], 5) == [face]
    # As sure as the face, either could be the real one: both are reported.
    sure_part = FaceRead(None, NEW, part.landmarks, 0.98)
    assert keep_faces([sure_part, face], 5) == [face, sure_part]
    # A weaker face beside it, not inside, is another face.
    beside = FaceRead(None, NEW, moved(0.6, shift=1.0), 0.7)
    assert keep_faces([beside, face], 5) == [face, beside]


def test_grayscale_input_accepted(face_rgb):
    gray = face_rgb.mean(axis=2).astype(np.uint8)
    with LandmarkExtractor() as ex:
        assert len(ex.extract(gray)) == 1


def test_bad_input_and_arguments():
    with LandmarkExtractor() as ex:
        with pytest.raises(ValueError, match='empty'):
            ex.extract(np.zeros((0, 10, 3), np.uint8))
    for kwargs, match in (({'max_faces': 0}, 'max_faces'),
                          ({'min_detection_confidence': 1.5}, 'min_detection_confidence'),
                          ({'detection_interval': 0}, 'detection_interval'),
                          ({'detector': 'medium'}, 'detector'),
                          ({'num_threads': 0}, 'num_threads'),
                          ({'refine': 9}, 'refine'),
                          ({'min_face_px': 2}, 'min_face_px'),
                          ({'min_tracking_presence': -0.1}, 'min_tracking_presence')):
        with pytest.raises(ValueError, match=match):  # the options table's checks
            LandmarkExtractor(**kwargs)
    with pytest.raises(TypeError, match='EstimatorConfig'):
        LandmarkExtractor(max_face=2)
    with pytest.raises(TypeError, match='EstimatorConfig'):
        LandmarkExtractor({'max_faces': 2})


def test_built_from_the_options_table():
    config = EstimatorConfig(max_faces=2, detector='short', min_face_px=None)
    with LandmarkExtractor(config, streaming=True, refine=0) as ex:
        assert ex.config == config.updated(refine=0) and ex.streaming
        assert ex.plan.runs(640, 480) == [('short', (0.0, 0.0, 640.0, 480.0))]
        assert ex.max_candidates == 6


def test_closed_extractor_raises(face_rgb):
    ex = LandmarkExtractor()
    ex.close()
    ex.close()  # idempotent
    with pytest.raises(RuntimeError, match='closed'):
        ex.extract(face_rgb)


def test_missing_corrupt_and_wrong_model_files(tmp_path):
    with pytest.raises(ModelFileError, match='not found'):
        TFLiteModel(tmp_path / 'absent.tflite', (192, 192, 3), [(1, 1, 1404)])
    bad = tmp_path / 'corrupt.tflite'
    bad.write_bytes(model_path(LANDMARK_MODEL).read_bytes()[:5000])
    with pytest.raises(ModelFileError, match='corrupt.tflite'):
        TFLiteModel(bad, (192, 192, 3), [(1, 1, 1404)])
    # A real model, but not the one asked for: refused by its tensor shapes.
    with pytest.raises(ModelFileError, match='expected one float32 input'):
        TFLiteModel(model_path('face_detection_short_range.tflite'), (192, 192, 3),
                    [(1, 1, 1404)])


def test_roi_crop_transform_round_trip():
    roi = Roi(cx=300.0, cy=200.0, side=120.0, angle=0.4)
    m = roi.transform()
    c, s = np.cos(0.4), np.sin(0.4)
    # The ROI's centre maps to the crop's centre, and its turned top-left corner to (0, 0).
    corner = np.array([300.0, 200.0]) + np.array([[c, -s], [s, c]]) @ np.array([-60.0, -60.0])
    np.testing.assert_allclose((m @ [300.0, 200.0, 1.0])[:2], [CROP_PX / 2, CROP_PX / 2])
    np.testing.assert_allclose((m @ [*corner, 1.0])[:2], [0.0, 0.0], atol=1e-9)
    mirrored = roi.transform(mirror=True)
    np.testing.assert_allclose((mirrored @ [*corner, 1.0])[:2], [CROP_PX, 0.0], atol=1e-9)
    # A level face's ROI: eyes horizontal give angle 0; box 1.5x, square on the long side.
    lm = np.zeros((468, 3))
    lm[:, 0] = np.linspace(100, 180, 468)
    lm[:, 1] = np.linspace(50, 150, 468)
    lm[33, :2], lm[263, :2] = (110, 90), (170, 90)
    r = Roi.from_landmarks(lm)
    assert r.angle == pytest.approx(0.0) and r.side == pytest.approx(150.0)


def test_threads_share_a_frames_faces_and_read_them_alike(face_rgb):
    """Crops shared among single-threaded copies read as one copy reads them all, in order."""
    with LandmarkExtractor() as ex:
        lm = ex.extract(face_rgb)[0]
    base = roi_transforms(lm[None])[0]
    shift = np.eye(3)
    transforms = []
    for i in range(7):  # the same face through 7 crops, each shifted a little more
        shift[:2, 2] = (3.0 * i, -2.0 * i)
        transforms.append(shift @ base)
    one = LandmarkModel(num_threads=1)
    three = LandmarkModel(num_threads=3)
    try:
        lm1, s1 = one.read(face_rgb, transforms)
        lm3, s3 = three.read(face_rgb, transforms)
        assert three.num_threads == 3 and three.workers_started  # the workers did read
        np.testing.assert_array_equal(lm1, lm3)
        np.testing.assert_array_equal(s1, s3)
        # Each crop's landmarks follow its own transform: shifted crops, shifted landmarks.
        assert np.allclose(lm1[6, 1, :2] - lm1[0, 1, :2], (18.0, -12.0), atol=3.0)
        # Any thread budget reads alike: a lone crop on all three threads (one copy) or on
        # this thread alone, and crops shared among two copies.
        for threads in (3, 1):
            lone, s_lone = three.read(face_rgb, transforms[2:3], threads=threads)
            np.testing.assert_array_equal(lone, lm1[2:3])
            np.testing.assert_array_equal(s_lone, s1[2:3])
        np.testing.assert_array_equal(three.read(face_rgb, transforms, threads=2)[0], lm1)
    finally:
        one.close()
        three.close()
    assert not three.workers_started  # closed: no worker left behind
    three.close()  # idempotent


def test_run_scaled_writes_the_input_in_place_as_run_copies_it(face_rgb):
    model = TFLiteModel(model_path(LANDMARK_MODEL), (CROP_PX, CROP_PX, 3),
                        [(1, 1, 1404), (1, 1, 1)])
    crop = face_rgb[100:100 + CROP_PX, 200:200 + CROP_PX]
    a = model.run((crop / 255.0).astype(np.float32)[None])
    b = model.run_scaled(crop, 1.0 / 255.0)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match='shape'):
        model.run_scaled(face_rgb, 1.0 / 255.0)
    assert model.run_scaled(crop, 1.0 / 255.0)[0].shape == (1, 1, 1, 1404)  # still usable


def test_an_error_in_any_share_of_a_read_is_raised(face_rgb):
    good = roi_transforms(LandmarkExtractor().extract(face_rgb)[0][None])[0]
    bad = good[:2]  # not a 3x3 transform
    model = LandmarkModel(num_threads=2)
    try:
        for transforms in ([bad, good, good, good], [good, good, good, bad]):  # main, worker
            with pytest.raises(IndexError):
                model.read(face_rgb, transforms)
        assert model.read(face_rgb, [good] * 4)[0].shape == (4, 468, 3)  # still works
    finally:
        model.close()


def test_streaming_tracks_a_moving_face(face_rgb):
    frames = list(face_sequence(face_rgb, 12))
    with LandmarkExtractor(streaming=True) as stream, LandmarkExtractor() as static:
        for i, frame in enumerate(frames):
            tracked = stream.extract(frame)
            detected = static.extract(frame)
            assert len(tracked) == 1 and len(detected) == 1
            err = np.median(np.linalg.norm(tracked[0][:, :2] - detected[0][:, :2], axis=1))
            assert err < 3.0
            # Nothing tracked yet: the near-face detector and one more run of the plan.
            # Tracked: the detector runs only on the frames that look for new faces.
            assert stream.last_stats['detector_runs'] == (2 if i == 0 else
                                                          1 if i % 10 == 0 else 0)


def test_streaming_follows_the_number_of_faces(face_crop):
    crop, share = face_crop

    def frame(i, second):
        out = np.full((480, 640, 3), 100, np.uint8)
        paste(out, crop, share, 110, (170, 240 + 4 * np.sin(i / 5)))
        if second:
            paste(out, crop, share, 110, (470, 240))
        return out

    with LandmarkExtractor(max_faces=5, streaming=True, detection_interval=4) as ex:
        assert [len(ex.extract(frame(i, False))) for i in range(8)] == [1] * 8
        seen = [len(ex.extract(frame(i, True))) for i in range(8, 30)]
        assert seen[-1] == 2
        # Found within the time the detection plan takes to reach it.
        plan = len(ex.plan.runs(640, 480))
        assert seen.index(2) <= 4 * plan + 1, seen
        assert [len(ex.extract(frame(i, False))) for i in range(30, 33)] == [1, 1, 1]
        assert ex.extract(np.full((480, 640, 3), 100, np.uint8)) == []
        assert len(ex.extract(frame(40, False))) == 1  # nothing tracked: the plan runs
    with LandmarkExtractor(max_faces=1, streaming=True) as single:
        assert [len(single.extract(frame(i, True))) for i in range(6)] == [1] * 6


def test_looks_run_between_frames_and_their_faces_come_next_frame(face_crop):
    """While a face is tracked, a new one is found by a look that no frame waits for."""
    crop, share = face_crop

    def frame(i):
        out = np.full((480, 640, 3), 100, np.uint8)
        paste(out, crop, share, 110, (170, 240 + 4 * np.sin(i / 5)))
        if i > 0:
            paste(out, crop, share, 110, (470, 240))
        return out

    runs = {}
    for threads in (1, 2):
        with LandmarkExtractor(streaming=True, detection_interval=1, num_threads=threads) as ex:
            readings = [ex.read_frame(frame(0))]  # nothing tracked: searched in the frame
            for i in range(1, 3 * len(ex.plan.runs(640, 480))):
                readings.append(ex.read_frame(frame(i)))
                ex.look_ahead()  # as the estimator does once a frame's work is done
        runs[threads] = readings
        counts = [len(r.faces) for r in readings]
        assert counts[0] == 1 and counts[-1] == 2, counts
        first = counts.index(2)
        assert all(c == 2 for c in counts[first:]), counts
        # The look that found it was scheduled by the frame before, which it did not slow.
        assert readings[first - 1].detector_runs == 1 and readings[first].tracked == 1
    # The thread count changes where a look runs, not what is found, nor when.
    assert [len(r.faces) for r in runs[1]] == [len(r.faces) for r in runs[2]]
    for a, b in zip(runs[1], runs[2]):
        for fa, fb in zip(a.faces, b.faces):
            np.testing.assert_allclose(fa, fb, atol=1e-3)


def test_a_look_is_dropped_by_reset_and_by_a_new_frame_size(face_crop):
    crop, share = face_crop

    def frame(size, two):
        out = np.full((size[1], size[0], 3), 100, np.uint8)
        paste(out, crop, share, 110, (170, 240))
        if two:
            paste(out, crop, share, 110, (470, 240))
        return out

    with LandmarkExtractor(streaming=True, detection_interval=1, num_threads=2) as ex:
        assert len(ex.read_frame(frame((640, 480), False)).faces) == 1
        ex.read_frame(frame((640, 480), True))  # tracked: schedules a look
        ex.look_ahead()
        ex.reset()  # a new sequence: waits for the look, and drops it
        assert not ex.look.scheduled and not ex.look.started
        assert len(ex.read_frame(frame((640, 480), False)).faces) == 1
        r1 = ex.read_frame(frame((640, 480), True))
        ex.look_ahead()
        # The next frame has another size (the camera changed its resolution): the look
        # and the tracked landmarks belong to the old size, so the frame starts over and
        # is searched at once, like a first frame (issue 22: it read no face before).
        r2 = ex.read_frame(frame((800, 480), True))
        assert r1.detector_runs == 1 and r2.tracked == 0 and len(r2.faces) == 2


def test_the_first_frame_at_a_new_resolution_is_read_like_any_other(face_crop):
    """The same scene at 640x480, then at 1280x960: the face is found at once."""
    crop, share = face_crop
    small = np.full((480, 640, 3), 100, np.uint8)
    paste(small, crop, share, 110, (320, 240))
    large = cv2.resize(small, (1280, 960), interpolation=cv2.INTER_LINEAR)
    with LandmarkExtractor(streaming=True) as ex:
        for _ in range(3):
            assert len(ex.read_frame(small).faces) == 1
            ex.look_ahead()
        reading = ex.read_frame(large)
        assert len(reading.faces) == 1 and reading.tracked == 0
        box = reading.faces[0][:, :2]
        assert 500 < box[:, 0].mean() < 780 and 340 < box[:, 1].mean() < 620  # where it is


class GatedSearch(FaceSearch):
    """A real face search that runs only once its gate opens: holds a look mid-run."""

    def __init__(self, *args):
        super().__init__(*args)
        self.gate = threading.Event()

    def single_threaded(self):
        return self

    def __call__(self, rgb, runs=None):
        assert self.gate.wait(30.0)
        return super().__call__(rgb, runs)


def two_face_frame(crop, share):
    out = np.full((480, 640, 3), 100, np.uint8)
    paste(out, crop, share, 110, (170, 240))
    return paste(out, crop, share, 110, (470, 240))


def test_a_look_runs_on_its_own_worker_and_copy_of_the_frame(face_crop, face_rgb):
    """While a look runs, a frame reads on the rest of the budget; its buffer may be reused."""
    crop, share = face_crop
    buf = two_face_frame(crop, share)
    plan = DetectionPlan('auto', 24.0)
    gated = GatedSearch(plan, 0.5, 1)
    look = Look(gated, threads=2)
    model = LandmarkModel(num_threads=2)
    with LandmarkExtractor() as ex:
        face = roi_transforms(ex.extract(face_rgb)[0][None])[0]
    try:
        assert not look.scheduled and look.frame_threads == 2
        look.schedule(buf, plan.runs(640, 480)[:2])  # short- and full-range on the whole frame
        assert look.scheduled and not look.started
        look.start()  # on the look's worker: held at its gate
        assert look.started and look.running and look.frame_threads == 1
        buf[:] = 0  # the camera loop writes the next frame into the same buffer
        # A frame's reads meanwhile: one thread of the two, never waiting for the look.
        lm, _ = model.read(face_rgb, [face, face], threads=look.frame_threads)
        assert lm.shape == (2, 468, 3) and look.running and not model.workers_started
    finally:
        gated.gate.set()
        model.close()
    found = look.collect((640, 480))  # the look saw the frame as it was when it started
    assert len(found) == 2 and not look.started and look.frame_threads == 2
    assert sorted(round(f.roi.cx, -2) for f in found) == [200.0, 500.0]
    look.close()


def test_a_look_of_one_thread_runs_on_the_callers_thread(face_crop):
    crop, share = face_crop
    plan = DetectionPlan('auto', 24.0)
    search = FaceSearch(plan, 0.5, 1)
    look = Look(search, threads=1)
    look.schedule(two_face_frame(crop, share), plan.runs(640, 480)[:1])
    look.start()  # here, with the frame's own detectors: done when start returns
    assert look.started and not look.running and look.frame_threads == 1
    assert look.collect((800, 480)) == []  # another frame size: its regions do not apply
    look.close()


def test_a_look_reads_its_own_copy_of_the_frame(face_crop):
    """A camera loop may reuse its frame buffer as soon as a frame's call returns."""
    crop, share = face_crop
    buf = np.full((480, 640, 3), 100, np.uint8)
    paste(buf, crop, share, 110, (170, 240))
    one = buf.copy()
    two = two_face_frame(crop, share)
    with LandmarkExtractor(streaming=True, detection_interval=1, num_threads=2) as ex:
        ex.read_frame(one)
        counts = []
        for _ in range(len(ex.plan.runs(640, 480)) + 1):
            buf[:] = two
            counts.append(len(ex.read_frame(buf).faces))
            ex.look_ahead()
            buf[:] = 0  # the next frame is written into the same buffer at once
        assert counts[-1] == 2, counts


class SlowFrame:
    """A frame whose pixels come only when released (a slow camera driver)."""

    def __init__(self, rgb):
        self.rgb = rgb
        self.asked = threading.Event()
        self.release = threading.Event()

    def __array__(self, dtype=None, copy=None):
        self.asked.set()
        assert self.release.wait(30.0)
        return self.rgb


def test_calls_from_two_threads_at_once_are_refused(face_rgb):
    """One caller at a time: an overlapping call raises instead of corrupting the tracks."""
    with LandmarkExtractor(streaming=True) as ex:
        slow = SlowFrame(face_rgb)
        out = []
        first = threading.Thread(target=lambda: out.append(ex.read_frame(slow)))
        first.start()
        try:
            assert slow.asked.wait(30.0)  # the first call is in progress
            crop = roi_transforms(LandmarkExtractor().extract(face_rgb)[0][None])
            for call in (lambda: ex.read_frame(face_rgb), lambda: ex.read(face_rgb, crop),
                         ex.look_ahead, ex.reset, ex.close):
                with pytest.raises(RuntimeError, match='one caller at a time'):
                    call()
        finally:
            slow.release.set()
            first.join(30.0)
        assert len(out) == 1 and len(out[0].faces) == 1  # the first call was not disturbed
        assert len(ex.read_frame(face_rgb).faces) == 1 and ex.last_stats['tracked'] == 1


@pytest.mark.parametrize('size,face_px', [((640, 480), 28), ((1280, 720), 28),
                                          ((1920, 1080), 40)])
def test_small_faces_are_found_in_large_frames(face_crop, size, face_px):
    crop, share = face_crop
    frame = np.full((size[1], size[0], 3), 90, np.uint8)
    centre = (0.62 * size[0], 0.41 * size[1])
    paste(frame, crop, share, face_px, centre)
    with LandmarkExtractor() as ex:
        faces = ex.extract(frame)
    assert len(faces) == 1
    width = np.ptp(faces[0][:, 0])
    assert 0.7 * face_px < width < 1.4 * face_px
    assert np.hypot(*(faces[0][:, :2].mean(0) - centre)) < 0.3 * face_px
    # The legacy graph's short-range detector on the whole frame finds none of these.
    with LandmarkExtractor(detector='short', min_face_px=None) as legacy_like:
        assert legacy_like.extract(frame) == []


def test_a_tracked_face_is_kept_while_it_shrinks_to_24_px(face_crop):
    crop, share = face_crop
    widths = np.geomspace(100, 24, 40)
    with LandmarkExtractor(streaming=True, detection_interval=300) as ex:
        # Nothing tracked: one more run of the detection plan per frame until it is found.
        first = np.full((720, 1280, 3), 90, np.uint8)
        paste(first, crop, share, 100, (600, 380))
        found = [len(ex.extract(first)) for _ in ex.plan.runs(1280, 720)]
        assert 1 in found and found[found.index(1):] == [1] * (len(found) - found.index(1))
        for i, w in enumerate(widths):
            frame = np.full((720, 1280, 3), 90, np.uint8)
            paste(frame, crop, share, w, (600 + 2 * i, 380))
            faces = ex.extract(frame)
            assert len(faces) == 1, f'lost at {w:.0f} px (frame {i})'
            assert 0.7 * w < np.ptp(faces[0][:, 0]) < 1.4 * w
            assert ex.last_stats['detector_runs'] == 0  # tracked, never re-detected


def test_mirrored_crop_reads_the_mirrored_face(face_rgb):
    with LandmarkExtractor() as ex:
        reading = ex.read_frame(face_rgb, mirror=True)
        direct_mirror = ex.extract(np.ascontiguousarray(face_rgb[:, ::-1]))
    assert len(reading.faces) == 1 and reading.mirrored[0] is not None
    # The mirrored crop's landmarks, in the mirrored image's pixels, are where reading the
    # mirrored image itself puts them.
    err = np.linalg.norm(reading.mirrored[0][:, :2] - direct_mirror[0][:, :2], axis=1)
    assert np.median(err) < 2.0
    # ... and not where the unmirrored face's own landmarks are.
    w = face_rgb.shape[1]
    own = reading.faces[0].copy()
    own[:, 0] = w - own[:, 0]
    assert np.median(np.linalg.norm(own[:, :2] - reading.mirrored[0][:, :2], axis=1)) > 2.0


def test_off_axis_faces_are_read_on_their_line_of_sight(face_crop):
    crop, share = face_crop
    frame = np.full((480, 640, 3), 100, np.uint8)
    paste(frame, crop, share, 90, (520, 130))  # about 24 deg off the axis
    k = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    camera = Camera(k, 640, 480)
    with LandmarkExtractor() as ex:
        plain = ex.read_frame(frame)
        turned = ex.read_frame(frame, camera=camera, line_of_sight_deg=10.0)
        centred = ex.read_frame(frame, camera=camera, line_of_sight_deg=45.0)
    assert turned.reread == [True] and plain.reread == [False] and centred.reread == [False]
    # Same face, landmarks mapped back into the image (a few px apart, not elsewhere).
    d = np.linalg.norm(turned.faces[0][:, :2] - plain.faces[0][:, :2], axis=1)
    assert 0.05 < np.median(d) < 6.0
    with LandmarkExtractor(streaming=True) as stream:
        for _ in range(3):
            r = stream.read_frame(frame, camera=camera, line_of_sight_deg=10.0)
            assert r.reread == [True]
        # Tracked: the turned crop is the face's only read (no extra pass, no detector).
        assert stream.last_stats == {'detector_runs': 0, 'tracked': 1, 'reread': 1, 'unblurred': 0}


def test_a_few_faces_are_placed_as_a_batch_places_them():
    """The per-frame paths (plain floats for up to 16 faces) match the batch paths."""
    from nlml_hpe.camera import Camera
    from nlml_hpe.features import off_axis_deg
    from nlml_hpe.landmarks import from_crop

    rng = np.random.default_rng(5)
    canon = np.load(resources.files('nlml_hpe').joinpath('data/canonical_face_468.npy'))
    faces = []
    for _ in range(20):  # canonical faces turned in the image plane, scaled and moved
        a = rng.uniform(-0.6, 0.6)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        lm = canon * rng.uniform(3, 12)
        lm[:, :2] = lm[:, :2] @ rot.T + rng.uniform(50, 600, 2)
        faces.append(lm)
    faces = np.stack(faces)
    many = roi_transforms(faces)  # > 16 faces: numpy
    np.testing.assert_allclose(roi_transforms(faces[:3]), many[:3], rtol=0, atol=1e-9)
    for i in range(3):
        np.testing.assert_allclose(Roi.from_landmarks(faces[i]).transform(), many[i], atol=1e-9)
    cam = Camera.guess(640, 480)
    np.testing.assert_allclose(off_axis_deg(faces[:3], cam.k), off_axis_deg(faces, cam.k)[:3],
                               rtol=0, atol=1e-9)
    assert off_axis_deg(faces[0], cam.k) == pytest.approx(off_axis_deg(faces, cam.k)[0])
    # Crops back to the image: affine crops inverted in closed form, perspective ones by numpy.
    crop_lm = rng.uniform(0, CROP_PX, (3, 468, 3))
    persp = many[:3].copy()
    persp[:, 2, :2] = 1e-4  # no longer affine
    for mats in (many[:3], persp):
        back = from_crop(crop_lm, mats)
        again = np.einsum('nij,nkj->nki', mats, np.concatenate(
            [back[:, :, :2], np.ones((3, 468, 1))], axis=2))
        np.testing.assert_allclose(again[:, :, :2] / again[:, :, 2:], crop_lm[:, :, :2],
                                   atol=1e-9)


def test_a_face_turned_to_profile_stays_tracked_until_it_turns_away(ict_npz):
    """A tracked face needs min_tracking_presence, not the 0.5 a new face needs (issue 20).

    A rendered head turns to 80 deg yaw and holds it, nodding a little: the
    landmark model's presence score wavers around and below 0.5 there, so at
    0.5 the track breaks; the default keeps it more often.  Turned on to the
    back of the head, or gone, the score falls far below any threshold and
    the track ends.  (The default was chosen on held-out identities:
    ``tools/turning_faces.py``; this is the mean face.)
    """
    from nlml_hpe.bench.scenes import HeadKit

    try:
        kit = HeadKit(ict_npz)
    except RuntimeError as exc:  # no headless OpenGL, no training package
        pytest.skip(str(exc))
    head = kit.head((640, 480))
    try:
        turn = [head.render(5.0, y, 0.0) for y in range(0, 80, 5)]
        held = [head.render(5.0 + 2.0 * np.sin(k / 3.0), 80.0, 0.0) for k in range(20)]
        away = {y: head.render(5.0, y, 0.0) for y in range(85, 181, 5)}
    finally:
        kit.release()
    kept = {}
    for threshold in (None, 0.5):
        options = {} if threshold is None else {'min_tracking_presence': threshold}
        with LandmarkExtractor(streaming=True, **options) as ex:
            assert [len(ex.read_frame(f).faces) for f in turn] == [1] * len(turn)
            readings = [ex.read_frame(f) for f in held]
            kept[threshold] = sum(len(r.faces) for r in readings)
            scores = [s for r in readings for s in r.scores]
            if threshold is None:
                assert ex.config.min_tracking_presence < 0.5
                # Tracked faces under the new-face threshold are kept, none under their own.
                assert any(s < 0.5 for s in scores), scores
                assert min(scores) >= ex.config.min_tracking_presence
                reported = {y: len(ex.read_frame(f).faces) for y, f in away.items()}
                assert not any(n for y, n in reported.items() if y >= 120), reported
                assert ex.read_frame(np.full((480, 640, 3), 128, np.uint8)).faces == []
    assert kept[None] > kept[0.5], kept
