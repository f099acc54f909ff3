"""tools/aflw_diagnostics.py on benchmark-shaped per-image output."""

import json
import subprocess
import sys

from conftest import REPO
import numpy as np


def _run_file(path, gt, preds, detected):
    per_image = [{'image': f'img{i:03d}.jpg', 'gt_pitch_yaw_roll': g.tolist(), 'detected': bool(d),
                  **{m: p[i].tolist() for m, p in preds.items()}}
                 for i, (g, d) in enumerate(zip(gt, detected))]
    path.write_text(json.dumps({'methods': list(preds), 'per_image': per_image}))
    return str(path)


def test_aflw_diagnostics_ensemble_bias_and_worst_faces(tmp_path):
    rng = np.random.default_rng(0)
    n = 60
    gt = rng.uniform([-30, -45, -25], [30, 45, 25], (n, 3))
    detected = np.ones(n, bool)
    detected[3] = False  # missed faces are left out, as in the benchmark's MAE
    # Two models with opposite constant errors: each is 2 deg off, their mean is exact.
    a = _run_file(tmp_path / 'a.json', gt, {'model': gt + 2.0}, detected)
    b = _run_file(tmp_path / 'b.json', gt, {'model': gt - 2.0}, detected)
    out = subprocess.run([sys.executable, str(REPO / 'tools' / 'aflw_diagnostics.py'), a, b],
                         capture_output=True, text=True, check=True).stdout
    paper = out.split('== paper range')[1]
    assert 'MAE per file 2.000, 2.000; mean of the files 0.000' in paper
    # One model: its error is a constant bias, visible in every bin and not in the slope.
    one = subprocess.run([sys.executable, str(REPO / 'tools' / 'aflw_diagnostics.py'), a],
                         capture_output=True, text=True, check=True).stdout
    assert 'slope 1.000' in one and '-2.00' in one and '+2.00' not in one
    assert 'the 5 worst faces add 0.000' in one  # every face is equally wrong
    # Files that score different detections cannot be averaged.
    other = detected.copy()
    other[5] = False
    c = _run_file(tmp_path / 'c.json', gt, {'model': gt}, other)
    bad = subprocess.run([sys.executable, str(REPO / 'tools' / 'aflw_diagnostics.py'), a, c],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and 'different images or detections' in bad.stderr


def _registry_faces():
    """Import tools/registry_faces.py (tools/ is not a package)."""
    sys.path.insert(0, str(REPO / 'tools'))
    try:
        import registry_faces
    finally:
        sys.path.pop(0)
    return registry_faces


def test_registry_faces_writes_labels_the_range_benchmark_reads(tmp_path):
    """tools/registry_faces.py: each usable face becomes an AFLW2000-shaped pair."""
    from importlib import resources

    registry_faces = _registry_faces()
    from nlml_hpe.bench.aflw2000 import read_rgb
    from nlml_hpe.bench.range import load_faces
    from nlml_hpe.estimator import HeadPoseEstimator
    from nlml_hpe.geometry import box_iou

    demo = resources.files('nlml_hpe') / 'data' / 'demo'
    photos = [('demo:000.jpg', (demo / '000.jpg').read_bytes()),
              ('demo:007.jpg', (demo / '007.jpg').read_bytes()),
              ('junk', b'not an image')]
    index = registry_faces.label(photos, tmp_path)
    assert [i['source'] for i in index] == ['demo:000.jpg', 'demo:007.jpg']
    faces = load_faces(tmp_path)
    assert len(faces) == 2
    with HeadPoseEstimator.from_pretrained(flip_average=True) as est:
        for (rgb, box, pose), entry, (name, _) in zip(faces, index, photos):
            assert rgb.shape == read_rgb(demo / name.split(':')[1]).shape
            np.testing.assert_allclose(pose, entry['pitch_yaw_roll'], atol=0.01)
            assert box[2] - box[0] >= registry_faces.MIN_PX
            # The label is the estimator's own full-size reading (of the photo before
            # it was stored again, as JPEG q97).
            seen = est.estimate(rgb)[0]
            assert box_iou([seen.box], [box])[0, 0] > 0.5
            np.testing.assert_allclose(seen.angles, pose, atol=0.5)
    # A face the photo's edge cuts is found, but is no label.
    import cv2

    rgb = read_rgb(demo / '000.jpg')
    with HeadPoseEstimator.from_pretrained(flip_average=True) as est:
        x0, _, x1, _ = est.estimate(rgb)[0].box
        cut = np.ascontiguousarray(rgb[:, int(x0 + 0.3 * (x1 - x0)):])
        assert est.estimate(cut), 'the cut face is still found: the rule must drop it'
    ok, jpg = cv2.imencode('.jpg', cv2.cvtColor(cut, cv2.COLOR_RGB2BGR))
    assert registry_faces.label([('demo:cut', jpg.tobytes())], tmp_path / 'cut') == []
    assert registry_faces.wanted('package/examples/media/cage.jpg', ('examples/media/',))
    for name in ('package/examples/media/joconde.jpg', 'package/examples/media/audrey_crop.jpg',
                 'package/examples/media/franck.mp4', 'package/docs/cage.jpg'):
        assert not registry_faces.wanted(name, ('examples/media/',))


def test_registry_free_pieces_leave_out_faces(tmp_path):
    """tools/registry_faces.py --free-pieces: a photo's pieces skip its face and its margin."""
    from importlib import resources

    import cv2

    registry_faces = _registry_faces()
    from nlml_hpe.bench.clutter import clutter_background, paste_face

    rng = np.random.default_rng(3)
    room = clutter_background(640, 480, rng)
    demo = cv2.imread(str(resources.files('nlml_hpe') / 'data' / 'demo' / '000.jpg'))[..., ::-1]
    h, w = demo.shape[:2]
    with_face = room.copy()
    paste_face(with_face, demo, (w * 0.3, h * 0.3, w * 0.7, h * 0.7), 120, 'ellipse', rng)

    def encode(rgb):
        return cv2.imencode('.png', np.ascontiguousarray(rgb[..., ::-1]))[1].tobytes()

    grid = ((480 - registry_faces.PIECE_PX) // registry_faces.PIECE_STEP + 1) \
        * ((640 - registry_faces.PIECE_PX) // registry_faces.PIECE_STEP + 1)
    counts = {}
    for name, photo in (('room', room), ('face', with_face)):
        out = tmp_path / name
        out.mkdir()
        counts[name] = registry_faces.free_pieces([(f'{name}.png', encode(photo)),
                                                   ('junk', b'not an image'),
                                                   ('x/BWPictureHuman.jpg', encode(room))], out)
        pieces = sorted(out.glob('piece*.png'))
        assert len(pieces) == counts[name]
        assert all(cv2.imread(str(p)).shape == (96, 96, 3) for p in pieces)
    # Every piece of the face-free room, none of the scene named in NOT_SCENES; with a
    # 120 px face pasted, the pieces within its box and margin are left out.
    assert counts['room'] == grid
    assert 0 < counts['face'] <= grid - 4


def test_haar_verifier_sees_a_demo_face_at_the_crops_scale_and_no_face_in_flat_or_noise(
        estimator):
    from conftest import demo_frame

    from nlml_hpe.landmarks.face_verifier import HaarVerifier

    haar = HaarVerifier()
    rgb = demo_frame('000.jpg')
    lm = np.asarray(estimator.estimate(rgb)[0].landmarks)[None]
    assert haar.scores(rgb, lm).tolist() == [1.0]  # on the 32 px crop the verifier sees
    rng = np.random.default_rng(0)
    assert not haar.face_at_centre(np.full((32, 32, 3), 128, np.uint8))
    assert not haar.face_at_centre(rng.integers(0, 256, (32, 32, 3), np.uint8))
