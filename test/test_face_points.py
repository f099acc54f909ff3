"""The 70 ROS4HRI landmarks, the sellion and the aligned face, checked on the canonical face."""

from pathlib import Path
import re

import numpy as np
import pytest

from nlml_hpe.face_points import (
    MESH_OF_70,
    SELLION,
    UNMEASURED_70,
    aligned_face,
    aligned_transform,
    eye_centres,
    points_70,
    sellion_offset_m,
)
from nlml_hpe.geometry import FACE_TO_HEAD
from nlml_hpe.position import canonical_face_m

REPO = Path(__file__).resolve().parents[1]
MSG = REPO / 'tools' / 'msggen' / 'hri_msgs' / 'msg' / 'FacialLandmarks.msg'
#: Numbered runs that go from the subject's right to the left: name -> run length.
RUNS = {'MOUTH_OUTER_TOP_': 5, 'MOUTH_OUTER_BOTTOM_': 5, 'MOUTH_INNER_TOP_': 3,
        'MOUTH_INNER_BOTTOM_': 3, 'NOSTRIL_': 5}
MIDLINE = {'MENTON', 'SELLION', 'NOSE_1', 'NOSE_2', 'NOSE'}


@pytest.fixture(scope='module')
def codes():
    """Return the codes of hri_msgs/FacialLandmarks (name -> index), from its definition."""
    found = dict(re.findall(r'^uint8 (\w+)=(\d+)$', MSG.read_text(), re.M))
    out = {k: int(v) for k, v in found.items()}
    assert sorted(out.values()) == list(range(70))
    return out


@pytest.fixture(scope='module')
def pts(codes):
    """Return the 70 points of the canonical face (cm; x to the left, y up, z forward)."""
    p = points_70(canonical_face_m() * 100.0)
    return {name: p[i] for name, i in codes.items()}


def _mirror(name):
    if 'RIGHT' in name:
        return name.replace('RIGHT', 'LEFT')
    if 'LEFT' in name:
        return name.replace('LEFT', 'RIGHT')
    for run, n in RUNS.items():
        if name.startswith(run):
            return f'{run}{n + 1 - int(name[len(run):])}'
    return name


def _side(name):
    """-1: the subject's right, +1: left, 0: midline."""
    if 'RIGHT' in name:
        return -1
    if 'LEFT' in name:
        return 1
    for run, n in RUNS.items():
        if name.startswith(run):
            return int(np.sign(int(name[len(run):]) - (n + 1) / 2))
    assert name in MIDLINE, name
    return 0


def test_every_point_on_its_side_and_mirrored(pts):
    for name, p in pts.items():
        side = _side(name)
        if side == 0:
            assert abs(p[0]) < 1e-6, name
        else:
            assert side * p[0] > 0.3, (name, p)
        np.testing.assert_allclose(pts[_mirror(name)], p * [-1, 1, 1], atol=1e-6,
                                   err_msg=name)


def test_heights_and_depths(pts):
    def y(prefix):
        return [p[1] for n, p in pts.items() if n.startswith(prefix)]
    brows = y('RIGHT_EYEBROW') + y('LEFT_EYEBROW')
    eyes = y('RIGHT_EYE_') + y('LEFT_EYE_')
    mouth = y('MOUTH')
    assert min(brows) > max(eyes) > pts['NOSE'][1] > max(mouth) > pts['MENTON'][1]
    mesh = canonical_face_m() * 100.0
    assert pts['MENTON'][1] == pytest.approx(mesh[:, 1].min())  # the chin's lowest point
    assert max(pts, key=lambda n: pts[n][2]) == 'NOSE'  # the tip is the most forward
    # The sellion: the deepest point of the midline between the brows and the nose tip.
    mid = [p for p in mesh if abs(p[0]) < 1e-6 and pts['NOSE'][1] < p[1] < max(brows)]
    assert min(p[2] for p in mid) == pytest.approx(pts['SELLION'][2])
    np.testing.assert_allclose(pts['SELLION'], mesh[SELLION])
    nose = [pts[n][1] for n in ('SELLION', 'NOSE_1', 'NOSE_2', 'NOSE')]
    assert nose == sorted(nose, reverse=True)


def test_jaw_runs_evenly_from_ear_to_chin(pts):
    side = ['RIGHT_EAR'] + [f'RIGHT_PROFILE_{i}' for i in range(1, 8)] + ['MENTON']
    p = np.array([pts[n] for n in side])
    assert np.all(np.diff(p[:, 1]) < 0)  # downwards
    assert np.all(np.diff(np.abs(p[:, 0])) < 0)  # towards the midline
    # Spread evenly along the face contour (MediaPipe's face oval, ear to chin).
    oval = canonical_face_m()[[127, 234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152]] * 100
    arc = np.r_[0, np.cumsum(np.linalg.norm(np.diff(oval, axis=0), axis=1))]
    at = [arc[np.flatnonzero(np.all(np.isclose(oval, q), axis=1))[0]] for q in p]
    np.testing.assert_allclose(np.array(at) / arc[-1], np.linspace(0, 1, 9), atol=0.06)


def test_eyes_brows_and_mouth_in_order(pts):
    for s in ('RIGHT', 'LEFT'):
        e = {k[len(s) + 5:]: abs(v[0]) for k, v in pts.items() if k.startswith(f'{s}_EYE_')}
        assert e['OUTSIDE'] > e['TOP_1'] > e['TOP_2'] > e['INSIDE']
        assert e['OUTSIDE'] > e['BOTTOM_1'] > e['BOTTOM_2'] > e['INSIDE']
        for i in (1, 2):
            assert pts[f'{s}_EYE_TOP_{i}'][1] > pts[f'{s}_EYE_BOTTOM_{i}'][1]
        b = [abs(pts[f'{s}_EYEBROW_{k}'][0]) for k in ('OUTSIDE', '1', '2', '3', 'INSIDE')]
        assert b == sorted(b, reverse=True)
        lo = np.min([v for k, v in pts.items() if k.startswith(f'{s}_EYE_')], axis=0)
        hi = np.max([v for k, v in pts.items() if k.startswith(f'{s}_EYE_')], axis=0)
        assert np.all(lo[:2] < pts[f'{s}_PUPIL'][:2]) and np.all(pts[f'{s}_PUPIL'][:2] < hi[:2])
    outer = [pts[f'MOUTH_OUTER_TOP_{i}'][0] for i in range(1, 6)]
    assert outer == sorted(outer)
    assert abs(pts['MOUTH_OUTER_RIGHT'][0]) == max(abs(p[0]) for n, p in pts.items()
                                                     if n.startswith('MOUTH'))
    for i in range(1, 4):
        assert pts[f'MOUTH_INNER_TOP_{i}'][1] > pts[f'MOUTH_INNER_BOTTOM_{i}'][1]
        assert pts[f'MOUTH_OUTER_TOP_{i + 1}'][1] > pts[f'MOUTH_INNER_TOP_{i}'][1]
    assert len(MESH_OF_70) == 70 and UNMEASURED_70 == (68, 69)


def test_sellion_offset_places_the_sellion_of_a_posed_head():
    from scipy.spatial.transform import Rotation

    offset = sellion_offset_m()
    assert 0.05 < np.linalg.norm(offset) < 0.07 and offset[0] > 0.04  # ~6 cm, in front
    head = Rotation.from_euler('xyz', [20, -35, 10], degrees=True).as_matrix()
    t = np.array([0.1, -0.05, 1.2])
    face_axes = head @ FACE_TO_HEAD  # REP-155 axes in the camera frame
    want = head @ canonical_face_m()[SELLION] + t
    np.testing.assert_allclose(t + face_axes @ offset, want, atol=1e-12)


def test_aligned_transform_levels_the_eyes():
    mesh = canonical_face_m()[:, :2] * [4000.0, -4000.0] + [320.0, 240.0]  # image, y down
    for deg in (-40.0, 0.0, 25.0):
        a = np.radians(deg)
        turn = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        lm = (mesh - [320, 240]) @ turn.T + [300, 260]
        m = aligned_transform(lm, 128)
        right, left = (m[:, :2] @ p + m[:, 2] for p in eye_centres(lm))
        assert abs(right[1] - left[1]) < 1e-6 and right[0] < left[0]
        mapped = lm @ m[:, :2].T + m[:, 2]
        assert mapped.min() >= 0 and mapped.max() <= 128
        assert mapped.max(axis=0).max() - mapped.min(axis=0).min() > 100  # fills the square


def test_aligned_face_of_a_rolled_face_matches_the_upright_one():
    """The demo clip's frontal face, and the same image turned 25 deg: the same aligned face."""
    import cv2

    from nlml_hpe.bench.demo import DEMO_DIR, load_clip
    from nlml_hpe.estimator import landmark_box
    from nlml_hpe.images import square_crop
    from nlml_hpe.landmarks import LandmarkExtractor

    rgb = load_clip(DEMO_DIR)[0][0][1]
    h, w = rgb.shape[:2]
    turned = cv2.warpAffine(rgb, cv2.getRotationMatrix2D((w / 2, h / 2), 25.0, 1.0), (w, h),
                            borderMode=cv2.BORDER_REPLICATE)
    with LandmarkExtractor(max_faces=1) as extractor:
        marks = [extractor.extract(img)[0] for img in (rgb, turned)]
    aligned = [aligned_face(img, lm) for img, lm in zip((rgb, turned), marks)]
    square = [square_crop(img, landmark_box(lm), 128) for img, lm in zip((rgb, turned), marks)]
    assert aligned[0].shape == (128, 128, 3) and aligned[0].dtype == np.uint8
    diff = np.abs(aligned[0].astype(float) - aligned[1]).mean()
    rolled = np.abs(square[0].astype(float) - square[1]).mean()  # the plain crops differ
    assert diff < 6.0 and diff < rolled / 3, (diff, rolled)
