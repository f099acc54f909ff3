"""Benchmark frames in clutter (nlml_hpe.bench.clutter): seeded, kinds differ, faults as named."""

import cv2
import numpy as np
import pytest

from nlml_hpe.bench import clutter
from nlml_hpe.bench.clutter import (
    BACKGROUND_KINDS,
    FAULTS,
    apply_fault,
    frame_rng,
    make_background,
    paste_face,
    photo_textures,
    scene,
)
from nlml_hpe.bench.range import parse_frames

W, H = 320, 240


def textures():
    """Two textured 'photos' with a face box each: stripes and a checkerboard."""
    rng = np.random.default_rng(5)
    a = np.zeros((200, 200, 3), np.uint8)
    a[:, ::8] = (200, 40, 40)
    b = (rng.random((200, 200, 3)) * 255).astype(np.uint8)
    boxes = [(80, 80, 120, 120), (90, 90, 110, 110)]
    return photo_textures([a, b], boxes)


def face_photo():
    """Return a 'photo' with a bright disc as its face, box (60, 60)-(140, 140)."""
    img = np.full((200, 200, 3), 90, np.uint8)
    cv2.circle(img, (100, 100), 40, (230, 180, 150), -1)
    return img, np.array([60.0, 60.0, 140.0, 140.0])


def grad_energy(img, axis):
    g = np.diff(img.astype(np.float64).mean(axis=2), axis=axis)
    return float(np.mean(g * g))


def test_scene_is_the_same_from_the_same_seed_and_differs_otherwise():
    tex = textures()
    face = face_photo()
    for kind in BACKGROUND_KINDS:
        a, la = scene(face, W, H, 40, kind, 'photo', frame_rng(3, kind, 1), tex, 'noise')
        b, lb = scene(face, W, H, 40, kind, 'photo', frame_rng(3, kind, 1), tex, 'noise')
        c, _ = scene(face, W, H, 40, kind, 'photo', frame_rng(4, kind, 1), tex, 'noise')
        assert np.array_equal(a, b) and np.allclose(la, lb), kind
        assert np.abs(a.astype(int) - c).mean() > 5.0, kind


def test_frame_rng_depends_on_every_key():
    draws = {tuple(frame_rng(*k).integers(0, 1 << 30, 4)) for k in
             [(0, 'a', 1), (0, 'a', 2), (0, 'b', 1), (1, 'a', 1)]}
    assert len(draws) == 4


def test_background_kinds_really_differ():
    tex = textures()
    bg = {k: make_background(k, W, H, frame_rng(0, k), tex).astype(np.float64)
          for k in BACKGROUND_KINDS}
    fine = {k: float(np.abs(b - cv2.GaussianBlur(b, (0, 0), 1.0)).mean()) for k, b in bg.items()}
    edges = {k: grad_energy(cv2.GaussianBlur(b, (0, 0), 2.0), 1) for k, b in bg.items()}
    # clutter has far more (noise-free) edges than smooth; noisy far more pixel noise.
    assert edges['clutter'] > 2.0 * edges['smooth']
    assert fine['noisy'] > 2.0 * fine['clutter']
    # jpeg: clutter squeezed to 8x8 blocks -- its steps line up with the block grid.
    d = np.abs(np.diff(bg['jpeg'].mean(axis=2), axis=1)).mean(axis=0)
    assert d[7::8].mean() > 1.3 * np.delete(d, np.s_[7::8]).mean()
    # photo: made of the textures (the stripes' red, or the random one's colours).
    assert np.any(np.all(np.abs(bg['photo'] - (200, 40, 40)) < 30, axis=2))
    for a in BACKGROUND_KINDS:
        for b in BACKGROUND_KINDS:
            if a < b:
                assert np.abs(bg[a] - bg[b]).mean() > 10.0, (a, b)


def test_photo_background_needs_textures_and_kinds_are_checked():
    with pytest.raises(ValueError, match='textures'):
        make_background('photo', W, H, frame_rng(0))
    with pytest.raises(ValueError, match='background kind'):
        make_background('wallpaper', W, H, frame_rng(0))
    with pytest.raises(ValueError, match='fault'):
        apply_fault(np.zeros((8, 8, 3), np.uint8), 'fog', frame_rng(0))
    with pytest.raises(ValueError, match='WxH'):
        parse_frames(['640by480'])


def test_textures_keep_away_from_the_face_and_skip_flat_patches():
    img = np.zeros((300, 300, 3), np.uint8)  # flat everywhere ...
    img[:, 180:] = (np.indices((300, 120)).sum(0) % 2 * 255)[..., None]  # ... but the right
    tex = photo_textures([img], [(20, 100, 120, 200)])  # face; 0.6 box widths kept clear
    assert len(tex) == 3 and all(t.std() > 100 for t in tex)  # 300 x 120: 3 of 96 px


def test_paste_modes_place_the_face_where_they_say():
    rgb, box = face_photo()
    for mode in ('photo', 'ellipse'):
        frame = np.zeros((H, W, 3), np.uint8)
        label = paste_face(frame, rgb, box, 40, mode, frame_rng(1, mode))
        assert label[2] - label[0] == pytest.approx(40.0)
        cx, cy = (label[0] + label[2]) / 2, (label[1] + label[3]) / 2
        assert abs(cx - W / 2) <= clutter.JITTER_PX and abs(cy - H / 2) <= clutter.JITTER_PX
        assert frame[int(cy), int(cx)].tolist() == pytest.approx([230, 180, 150], abs=3)
        # photo: the whole photo (200 px -> 100 px) with hard edges; ellipse: 2.2 boxes wide.
        row = frame[int(cy)].max(axis=1)
        covered = np.flatnonzero(row > 0)
        width = covered[-1] - covered[0] + 1
        if mode == 'photo':
            assert width == pytest.approx(100, abs=2)
            assert row[covered[0]] == row[covered[-1]] == 90  # hard edges: no fade
        else:
            assert width < 2.2 * 40 + 4 and len(set(row[covered].tolist())) > 3


def test_faults_do_what_they_say():
    rgb = make_background('clutter', W, H, frame_rng(2))
    rng = frame_rng(9)
    out = {f: apply_fault(rgb, f, rng).astype(np.float64) for f in FAULTS}
    clean = out['none']
    assert np.abs(clean - rgb).mean() < 5.0  # q92 barely changes a frame
    assert grad_energy(out['blur'], 0) < 0.5 * grad_energy(clean, 0)
    assert grad_energy(out['blur'], 1) < 0.5 * grad_energy(clean, 1)
    # Horizontal motion smears along x: x gradients fall far more than y gradients.
    rx = grad_energy(out['motion'], 1) / grad_energy(clean, 1)
    ry = grad_energy(out['motion'], 0) / grad_energy(clean, 0)
    assert rx < 0.3 and rx < 0.5 * ry
    resid = out['noise'] - clean
    assert 5.0 < resid.std() < 11.0 and abs(resid.mean()) < 1.0
    want = 255.0 * 0.35 * (rgb / 255.0) ** 2
    assert np.abs(out['dim'] - want).mean() < 2.0 and out['dim'].mean() < 0.4 * clean.mean()
    assert np.abs(out['jpeg25'] - rgb).mean() > 1.3 * np.abs(clean - rgb).mean()


@pytest.fixture(scope='module')
def one_pass():
    from nlml_hpe.estimator import HeadPoseEstimator

    est = HeadPoseEstimator.from_pretrained(flip_average=False)
    yield est
    est.close()


def test_range_benchmark_scores_pasted_faces_and_face_free_frames(aflw_dir, one_pass):
    from nlml_hpe.bench.range import format_range, run_range

    result = run_range(aflw_dir, {'nlml_hpe': one_pass}, widths=(100,), frames=((640, 480),),
                       backgrounds=('clutter', 'photo'), modes=('photo',), empty_frames=2,
                       limit=2, seed=1)
    assert [(r['background'], r['face_px']) for r in result['rows']] == [
        ('clutter', 100), ('photo', 100)]
    for row in result['rows']:
        m = row['methods']['nlml_hpe']
        assert m['detection_rate'] == 1.0 and m['mae']['mean'] < 10.0
    assert [e['methods']['nlml_hpe']['frames'] for e in result['empty']] == [2, 2]
    assert len(result['spread']) == 1 and 'clutter' in format_range(result)
    with pytest.raises(ValueError, match='background kind'):
        run_range(aflw_dir, {'nlml_hpe': one_pass}, backgrounds=('fog',))


def test_robustness_benchmark_reports_the_change_from_clean(aflw_dir, one_pass):
    from nlml_hpe.bench.robustness import format_robustness, run_robustness

    result = run_robustness(aflw_dir, {'nlml_hpe': one_pass}, faults=('none', 'jpeg25'),
                            conditions=('100px',), limit=2)
    clean, fault = (r['methods']['nlml_hpe'] for r in result['rows'])
    assert clean['rate_change'] == 0.0 and clean['mae_change'] == 0.0
    assert fault['mae_change'] == pytest.approx(fault['mae']['mean'] - clean['mae']['mean'])
    for m in (clean, fault):  # the shipped model gives every reading a sigma
        assert m['detected'] and m['sigma_median']['yaw'] > 0.0
        errors = 3 * m['detected']  # pitch, yaw and roll of each face found, pooled
        assert m['within_sigma'] * errors == pytest.approx(round(m['within_sigma'] * errors))
    assert 'jpeg25' in format_robustness(result) and 'in 1s' in format_robustness(result)


def test_robustness_trust_is_the_share_of_errors_within_sigma():
    from nlml_hpe.bench.robustness import trust

    gt = [[0.0, 10.0, 0.0], [5.0, -20.0, 1.0]]
    pred = [[1.0, 13.0, 0.5], [5.0, -20.5, 4.0]]  # errors 1, 3, 0.5 and 0, 0.5, 3
    sigma = [np.array([2.0, 2.0, 2.0]), np.array([1.0, 1.0, 1.0])]
    t = trust(pred, gt, sigma)
    assert t['within_sigma'] == pytest.approx(4 / 6)
    assert t['sigma_median'] == {'pitch': 1.5, 'yaw': 1.5, 'roll': 1.5}
    # A method whose readings give no sigma (the legacy graph) has none to judge.
    assert trust(pred, gt, [None, None]) == {'within_sigma': None, 'sigma_median': None}
    assert trust([], [], []) == {'within_sigma': None, 'sigma_median': None}


@pytest.mark.parametrize('name', ['range', 'robustness'])
def test_range_and_robustness_take_the_estimator_options(name, tmp_path, capsys):
    import argparse
    import importlib

    module = importlib.import_module(f'nlml_hpe.bench.{name}')
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    args = parser.parse_args([str(tmp_path), '--confirm-far-faces', '--min-face-px', '40'])
    from nlml_hpe.bench.range import estimator_config, make_estimators

    config = estimator_config(args, name)
    assert config.confirm_far_faces and config.min_face_px == 40.0
    est = make_estimators(legacy=False, config=config)['nlml_hpe']
    try:  # one pass whatever the options say, the options otherwise as given
        assert est.config.flip_average is False and est.config.confirm_far_faces
    finally:
        est.close()
    with pytest.raises(SystemExit, match=f'benchmark {name}: --min-face-px must be in'):
        estimator_config(parser.parse_args([str(tmp_path), '--min-face-px', '3']), name)
    with pytest.raises(SystemExit):  # one pass: no flip averaging flag
        parser.parse_args([str(tmp_path), '--flip-average'])
    capsys.readouterr()


def test_a_photo_showing_a_second_face_gives_no_texture(aflw_dir):
    """Face-free frames take no patch of a photo in which someone else's face shows."""
    from importlib import resources

    from nlml_hpe.bench.aflw2000 import read_rgb
    from nlml_hpe.bench.range import load_textures, other_faces
    from nlml_hpe.landmarks import LandmarkExtractor
    from nlml_hpe.landmarks.face_checks import landmark_boxes

    demo = resources.files('nlml_hpe') / 'data' / 'demo'
    a, b = (read_rgb(str(demo / n)) for n in ('000.jpg', '003.jpg'))
    h = min(a.shape[0], b.shape[0])
    two = np.ascontiguousarray(np.hstack([a[:h], b[:h]]))
    with LandmarkExtractor(max_faces=4) as ex:
        left = ex.read_frame(a[:h]).faces[0]
        box = tuple(landmark_boxes(left)[0])
        assert other_faces(a[:h], box, ex) == []
        (other,) = other_faces(two, box, ex)
        assert other[0] > a.shape[1] - 5  # the face of the right-hand photo
    # The dev split: the photo of two people behind the face-free frames' false faces.
    kept, left_out = load_textures(aflw_dir)
    everything, none = load_textures(aflw_dir, screen=False)
    assert 'image02490.jpg' in left_out and none == []
    assert 0 < len(everything) - len(kept) < 0.05 * len(everything)
