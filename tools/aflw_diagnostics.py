"""Where the AFLW2000 error of a model lies: bias by reading, outliers, ensembles.

Reads the per-image output of ``nlml-hpe benchmark aflw2000 DIR --json`` (one
file per model) and prints, per protocol:

* the MAE of each method, and of the mean of every method over all files
  (an ensemble of the models; ``model`` of several files averages their fused
  readings, which is the fusion of their averaged networks: the rigid fit is
  the same for all);
* the error binned by the method's own reading (mean of label - reading per
  bin) and the least-squares slope of the labels on the readings: a bias that
  a monotone re-mapping of the angles could remove shows here;
* how much the worst faces add to the MAE.

Usage::

    .venv/bin/nlml-hpe benchmark aflw2000 ../shared/data/aflw2000_dev --json > shipped.json
    .venv/bin/python tools/aflw_diagnostics.py shipped.json [other_model.json ...]

Diagnostic only: nothing here feeds back into training or the shipped model.
"""

import argparse
import json
from pathlib import Path

import numpy as np

from nlml_hpe.bench.aflw2000 import PROTOCOLS, in_protocol

ANGLES = ('pitch', 'yaw', 'roll')  # column order of the benchmark's angles
BINS = (-90.0, -40.0, -20.0, -5.0, 5.0, 20.0, 40.0, 90.0)


def load(paths):
    """Return ``(images, gt (N, 3), {method: (files, N, 3)})`` of detected faces."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    rows = [[r for r in run['per_image'] if r['detected']] for run in runs]
    images = [r['image'] for r in rows[0]]
    if any([r['image'] for r in rr] != images for rr in rows):
        raise SystemExit('the files score different images or detections')
    gt = np.array([r['gt_pitch_yaw_roll'] for r in rows[0]])
    methods = [m for m in runs[0]['methods'] if all(m in run['methods'] for run in runs)]
    preds = {m: np.array([[r[m] for r in rr] for rr in rows]) for m in methods}
    return images, gt, preds


def mae(pred, gt):
    return float(np.abs(pred - gt).mean())


def report(paths, worst=5):
    images, gt, preds = load(paths)
    lines = []
    for name, bounds in PROTOCOLS.items():
        sel = np.array([in_protocol(g, bounds) for g in gt])
        g = gt[sel]
        lines.append(f'== {name} range: {int(sel.sum())} faces')
        for m, p in preds.items():
            each = ', '.join(f'{mae(f[sel], g):.3f}' for f in p)
            lines.append(f'{m:<14} MAE per file {each}; '
                         f'mean of the files {mae(p.mean(0)[sel], g):.3f}')
        for m, p in preds.items():
            q = p.mean(0)[sel]
            per_face = np.abs(q - g).mean(axis=1)
            top = np.sort(per_face)[::-1]
            added = per_face.mean() - top[worst:].mean()
            lines.append(f'{m}: the {worst} worst faces add {added:.3f} to the MAE '
                         f'({", ".join(f"{v:.1f}" for v in top[:worst])} deg)')
            for i, ang in enumerate(ANGLES):
                slope = np.polyfit(q[:, i], g[:, i], 1)[0]
                cells = []
                for lo, hi in zip(BINS[:-1], BINS[1:]):
                    b = (q[:, i] >= lo) & (q[:, i] < hi)
                    if b.any():
                        cells.append(f'[{lo:+.0f},{hi:+.0f}) n={int(b.sum())} '
                                     f'{(g[b, i] - q[b, i]).mean():+.2f}')
                lines.append(f'  {ang:<5} label ~ reading slope {slope:.3f}; '
                             f'mean(label - reading) by reading: ' + '  '.join(cells))
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('json', nargs='+', help='outputs of nlml-hpe benchmark aflw2000 --json')
    parser.add_argument('--worst', type=int, default=5)
    args = parser.parse_args(argv)
    print(report(args.json, args.worst))


if __name__ == '__main__':
    main()
