"""The built-in demo: bundled clip of known poses -> head_pose_node -> printed table + images."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from nlml_hpe.bench.demo import DEMO_DIR, load_clip

REPO = Path(__file__).resolve().parents[1]


def test_clip_is_small_and_consistent():
    frames, K, meta = load_clip(DEMO_DIR)
    size = sum(p.stat().st_size for p in DEMO_DIR.iterdir())
    assert size < 3 * 2 ** 20
    assert len(frames) >= 8 and meta['license']
    poses = np.array([f[2] for f in frames])
    assert np.ptp(poses[:, 1]) >= 60 and np.ptp(poses[:, 0]) >= 30 and np.ptp(poses[:, 2]) >= 30
    assert K[0, 2] * 2 == frames[0][1].shape[1]


def test_clip_labels_agree_with_the_geometric_baseline():
    """MediaPipe + solvePnP (the convention reference) recovers the clip's known poses."""
    from nlml_hpe.baseline import baseline_angles
    from nlml_hpe.landmarks import LandmarkExtractor

    frames, K, _ = load_clip(DEMO_DIR)
    extractor = LandmarkExtractor(max_faces=1)
    errors = []
    for _, rgb, known in frames:
        lms = extractor.extract(rgb)
        assert len(lms) == 1
        errors.append(baseline_angles(lms, rgb.shape[1], rgb.shape[0], K)[0] - known)
    extractor.close()
    err = np.abs(np.array(errors))
    assert err.mean() < 4.0 and err.max() < 10.0, err.round(1)


@pytest.mark.ros
def test_demo_runs_and_writes_annotated_output(tmp_path, capsys):
    pytest.importorskip('rclpy', reason='rclpy is not installed (run bootstrap.sh)')
    from nlml_hpe.bench.demo import main
    from nlml_hpe.model import expected_shapes, save_model

    shipped = REPO / 'models' / 'nlml_hpe.safetensors'
    if shipped.is_file():
        model = shipped
    else:  # an untrained model still finds the faces (the landmark stage does)
        rng = np.random.default_rng(0)
        model = save_model({k: rng.normal(0, 0.05, s).astype(np.float32) + (k == 'feature_std')
                            for k, s in expected_shapes().items()}, tmp_path / 'm', {})
    out = tmp_path / 'demo_out'
    assert main(['--out', str(out), '--model', str(model)]) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / 'results.json').read_text())
    frames, _, _ = load_clip(DEMO_DIR)
    assert [r['file'] for r in results] == [f[0] for f in frames]
    assert all(r['estimated'] is not None for r in results), printed
    assert all(r['position_m'][2] > 0.2 for r in results)
    for i, r in enumerate(results):
        img = cv2.imread(str(out / f'annotated_{i:03d}.jpg'))
        assert img is not None and img.shape == frames[i][1].shape
        assert r['file'] in printed
    assert f'faces found in {len(frames)}/{len(frames)} frames' in printed
    if shipped.is_file():  # the trained model must get the known poses roughly right
        err = [abs(r['estimated'][k] - r['known'][k]) for r in results
               for k in ('yaw', 'pitch', 'roll')]
        assert np.mean(err) < 12.0, printed


def test_demo_reports_a_missing_clip(tmp_path, capsys):
    from nlml_hpe.bench.demo import main

    assert main(['--clip', str(tmp_path), '--out', str(tmp_path / 'o')]) == 2
    assert 'poses.json is missing' in capsys.readouterr().err
