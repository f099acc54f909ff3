"""Motion blur of small faces (nlml_hpe.landmarks.motion_blur): measured, undone, read twice.

The measurement runs on a fine-grained texture smeared with known kernels, and
on sharp, defocused, noisy, JPEG-blocked and straight-edged windows that are no
smear.  The end-to-end tests run the real estimator on a shipped demo face
pasted 40 px wide into a benchmark scene (:mod:`nlml_hpe.bench.clutter`).
How much it helps real faces is a benchmark figure (docs/robustness.md, round 6).
"""

from importlib import resources

import cv2
import numpy as np
import pytest

from nlml_hpe.bench.aflw2000 import pick_labelled_face, read_rgb
from nlml_hpe.bench.clutter import apply_fault, frame_rng, scene
from nlml_hpe.estimator import HeadPoseEstimator
from nlml_hpe.landmarks import motion_blur as mb
from nlml_hpe.landmarks.landmark_model import LandmarkModel
from nlml_hpe.landmarks.roi import CROP_PX, crop_box


def texture(seed, size=(240, 320)):
    """Return a fine-grained colour texture (every frequency present, as a camera's detail)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(128.0, 40.0, size + (3,)).astype(np.float32)
    return np.clip(cv2.GaussianBlur(noise, (0, 0), 0.7), 0, 255).astype(np.uint8)


def smeared(rgb, angle, length):
    return cv2.filter2D(rgb, -1, mb.line_kernel(angle, length), borderType=cv2.BORDER_REFLECT)


def centre(rgb, half=60):
    h, w = rgb.shape[:2]
    return cv2.cvtColor(rgb[h // 2 - half:h // 2 + half, w // 2 - half:w // 2 + half],
                        cv2.COLOR_RGB2GRAY)


def angle_gap(a, b):
    d = abs(a - b) % 180.0
    return min(d, 180.0 - d)


def test_line_kernel_is_a_line_of_the_length_and_direction_asked():
    k = mb.line_kernel(0.0, 9.0)
    assert k.sum() == pytest.approx(1.0)
    rows = np.flatnonzero(k.sum(axis=1) > 1e-6)
    assert len(rows) <= 2  # horizontal: one row (two where the splat straddles)
    cols = np.flatnonzero(k.sum(axis=0) > 0.01)
    assert 9 <= len(cols) <= 11
    assert np.allclose(mb.line_kernel(90.0, 9.0), k.T, atol=1e-6)
    ys, xs = np.nonzero(mb.line_kernel(45.0, 12.0) > 0.01)
    assert np.corrcoef(xs, -ys)[0, 1] > 0.9  # up and to the right: angles count from +x, image up


@pytest.mark.parametrize('seed', [0, 1, 2])
@pytest.mark.parametrize('angle,length', [(0.0, 9.0), (90.0, 8.0), (0.0, 14.0), (45.0, 12.0),
                                          (135.0, 12.0), (30.0, 12.0)])
def test_a_smear_is_measured(seed, angle, length):
    """Along the axes from 7-8 px, diagonally from about 12 px (weaker ones are left alone)."""
    frame = apply_fault(smeared(texture(seed), angle, length), 'none', frame_rng(seed, 'smear'))
    blur = mb.measure(centre(frame))  # stored as a camera stores it (JPEG q92)
    assert blur is not None
    assert angle_gap(blur.angle_deg, angle) <= 7.5 + 1e-9
    assert abs(blur.length_px - length) <= 1.5


@pytest.mark.parametrize('angle,length', [(0.0, 5.0), (90.0, 5.0), (0.0, 20.0), (0.0, 25.0)])
def test_short_and_overlong_smears_are_left_as_they_are(angle, length):
    """Under MIN_LENGTH undoing costs more than it gives; from the last length it is an edge."""
    frame = apply_fault(smeared(texture(3), angle, length), 'none', frame_rng(3, 'smear'))
    assert mb.measure(centre(frame)) is None


@pytest.mark.parametrize('seed', [0, 1, 2])
@pytest.mark.parametrize('fault', ['none', 'blur', 'noise', 'dim', 'jpeg25'])
def test_sharp_defocused_noisy_dim_and_jpeg_windows_are_no_smear(seed, fault):
    frame = apply_fault(texture(seed), fault, frame_rng(seed, fault))
    assert mb.measure(centre(frame)) is None


@pytest.mark.parametrize('angle', [0.0, 90.0, 30.0])
def test_a_straight_edge_is_no_smear(angle):
    """A door frame or a shelf correlates along its line at every lag; a smear only up to L."""
    rng = np.random.default_rng(4)
    h, w = 240, 320
    ys, xs = np.mgrid[0:h, 0:w]
    t = np.deg2rad(angle)
    side = (xs - w / 2) * np.sin(t) + (ys - h / 2) * np.cos(t) > 0
    rgb = np.where(side[..., None], 200.0, 60.0) + rng.normal(0.0, 4.0, (h, w, 3))
    rgb = apply_fault(np.clip(rgb, 0, 255).astype(np.uint8), 'none', frame_rng(4, 'edge'))
    assert mb.measure(centre(rgb)) is None


def test_too_small_or_flat_windows_are_no_smear():
    assert mb.measure(np.zeros((20, 200), np.uint8)) is None
    assert mb.measure(np.full((120, 120), 90, np.uint8)) is None
    assert mb.measure(np.zeros((4, 4, 3), np.uint8)) is None


def test_restore_undoes_a_known_smear():
    sharp = texture(5)
    blurred = smeared(sharp, 0.0, 9.0)
    region = (40, 40, 280, 200)
    fixed = mb.restore(blurred, region, mb.Blur(0.0, 9.0))
    assert fixed.shape == (160, 240, 3) and fixed.dtype == np.uint8
    truth = sharp[40:200, 40:280].astype(float)
    before = np.abs(blurred[40:200, 40:280] - truth).mean()
    after = np.abs(fixed - truth).mean()
    assert after < 0.6 * before


def test_the_restorer_copies_no_sharp_frame_and_measures_each_place_once():
    sharp = texture(6, (480, 640))
    r = mb.Restorer(sharp)
    assert r.image_for((280.0, 200.0, 340.0, 260.0)) is sharp
    assert r.image_for((290.0, 210.0, 350.0, 270.0)) is sharp  # centred in the first: not measured
    assert r.image_for((0.0, 0.0, 300.0, 300.0)) is sharp  # too large to be a far face
    assert r.blurs == []

    frame = smeared(sharp, 0.0, 9.0)
    r = mb.Restorer(frame)
    box = (280.0, 200.0, 340.0, 260.0)
    image = r.image_for(box)
    assert image is not frame and len(r.blurs) == 1
    assert abs(r.blurs[0].length_px - 9.0) <= 1.5
    changed = np.argwhere(np.any(image != frame, axis=2))
    (y0, x0), (y1, x1) = changed.min(axis=0), changed.max(axis=0)
    assert x0 >= 200 and x1 <= 420 and y0 >= 120 and y1 <= 340  # around the crop only
    assert r.image_for((300.0, 220.0, 330.0, 250.0)) is image  # the same place, once
    assert np.array_equal(frame, smeared(sharp, 0.0, 9.0))  # the frame itself is untouched


def test_crop_box_is_the_image_region_a_crop_covers():
    m = np.array([[2.0, 0.0, -100.0], [0.0, 2.0, -60.0], [0.0, 0.0, 1.0]])  # 96 px at (50, 30)
    assert crop_box(m) == pytest.approx((50.0, 30.0, 50.0 + CROP_PX / 2, 30.0 + CROP_PX / 2))


def test_the_landmark_model_reads_each_crop_from_its_own_image():
    rgb = read_rgb(resources.files('nlml_hpe') / 'data' / 'demo' / '003.jpg')
    with HeadPoseEstimator.from_pretrained() as est:
        face = est.estimate(rgb)[0]
    x0, y0, x1, y1 = face.box
    side = 1.5 * max(x1 - x0, y1 - y0)
    k = CROP_PX / side
    m = np.array([[k, 0.0, -k * ((x0 + x1) / 2 - side / 2)],
                  [0.0, k, -k * ((y0 + y1) / 2 - side / 2)], [0.0, 0.0, 1.0]])
    model = LandmarkModel(1)
    try:
        lm, score = model.read(rgb, [m, m])
        lm2, score2 = model.read(rgb, [m, m], images=[rgb, np.zeros_like(rgb)])
    finally:
        model.close()
    assert np.allclose(lm2[0], lm[0]) and score2[0] == pytest.approx(score[0])
    assert score[0] > 0.9 and score2[1] < 0.5  # the second crop was cut from the black image


@pytest.fixture(scope='module')
def estimators():
    on = HeadPoseEstimator.from_pretrained(flip_average=False)
    off = HeadPoseEstimator.from_pretrained(flip_average=False, undo_motion_blur=False)
    yield on, off
    on.close()
    off.close()


@pytest.mark.parametrize('seed', [1, 2])
def test_a_smeared_far_face_is_also_read_restored_and_a_sharp_one_never(estimators, seed):
    on, off = estimators
    rgb = read_rgb(resources.files('nlml_hpe') / 'data' / 'demo' / '003.jpg')
    box = on.estimate(rgb)[0].box
    for fault, restored in (('none', False), ('motion', True)):
        frame, label = scene((rgb, box), 640, 480, 40, 'clutter', 'photo',
                             frame_rng(seed, '003.jpg'), fault=fault)
        unblurred = {}
        for name, est in (('on', on), ('off', off)):
            poses = est.estimate(frame)
            assert pick_labelled_face([p.box for p in poses], label) is not None, (fault, name)
            unblurred[name] = est.extractor.last_stats['unblurred']
            assert est.last_timings['unblurred'] == unblurred[name]
        assert unblurred['off'] == 0
        assert (unblurred['on'] >= 1) == restored, (fault, unblurred)
    assert on.config.undo_motion_blur and not off.config.undo_motion_blur
