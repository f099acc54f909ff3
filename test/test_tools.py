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
