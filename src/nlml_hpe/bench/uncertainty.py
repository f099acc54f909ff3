"""The uncertainty model's check on the AFLW2000-3D dev split (a check: nothing is fitted).

``python -m nlml_hpe.bench.uncertainty DIR [--label-noise DEG ...]`` reads an
AFLW2000-3D directory and prints, per true-|yaw| bin and reading mode, the found
share, the MAE, the share of errors within one sigma and the beyond-range share
(:func:`nlml_hpe.uncertainty_tables.calibration_table`).

AFLW2000-3D's labels are themselves fits (a 3D morphable model fitted to 68
landmarks, Zhu et al., CVPR 2016), "coarse and approximate annotations" (Gupta
et al., ICASSP 2019), so part of each error on it is the label's.  The shipped
sigma describes the error of the reading with respect to the true pose; with
``--label-noise`` the tables are repeated with a label error of that many
degrees per angle added in quadrature (``sqrt(sigma^2 + L^2)``), as a
sensitivity: how much label error would explain the gap.  No value of it is
fitted or chosen here.
"""

import json
from pathlib import Path

import numpy as np

from ..camera import Camera
from ..estimator import HeadPoseEstimator, landmark_box
from ..model import WEIGHTS_NAME, default_model_dir
from ..uncertainty import FILE_NAME, MODES, load_uncertainty
from ..uncertainty_tables import (
    assess_readings,
    calibration_table,
    format_table,
    pooled_line,
    read_landmarks,
)
from .aflw2000 import list_aflw2000, pick_labelled_face, read_aflw_box, read_aflw_pose, read_rgb


def collect_aflw(directory, estimator, limit=None, progress=False):
    """Return the labelled face of each AFLW2000-3D image, as ``estimator`` reads it.

    ``estimator`` should flip-average (then both readings can be derived:
    :func:`read_landmarks`).  The labelled face is picked as
    :func:`~nlml_hpe.bench.aflw2000.run_aflw2000` does.  Returns a dict of arrays:
    ``true`` (pitch, yaw, roll), ``landmarks``, ``mirrored`` (NaN where none),
    ``score`` and ``cameras`` (the guessed camera of each image).
    """
    pairs = list_aflw2000(directory, limit)
    if progress:
        from tqdm import tqdm
        pairs = tqdm(pairs, desc='aflw2000', unit='img')
    nan = np.full((468, 3), np.nan)
    out = {'true': [], 'landmarks': [], 'mirrored': [], 'score': [], 'cameras': []}
    for jpg, mat in pairs:
        rgb = read_rgb(jpg)
        size = (rgb.shape[1], rgb.shape[0])
        poses = estimator.estimate(rgb)
        pick = pick_labelled_face([landmark_box(p.landmarks, size) for p in poses],
                                  read_aflw_box(mat))
        face = poses[pick] if pick is not None else None
        out['true'].append(read_aflw_pose(mat))
        out['landmarks'].append(nan if face is None else face.landmarks)
        twin = None if face is None else face.mirrored_landmarks
        out['mirrored'].append(nan if twin is None else twin)
        out['score'].append(0.0 if face is None else face.score)
        out['cameras'].append(Camera.guess(*size))
    return {k: v if k == 'cameras' else np.array(v) for k, v in out.items()}


def dev_check(directory, model_dir=None, artifact=None, limit=None, progress=False,
              label_noise=()):
    """Per-|yaw|-bin :func:`calibration_table` of both modes on an AFLW2000 directory.

    Nothing is fitted here: the model (``model_dir``, default the shipped one)
    reads each image once with flip averaging; its one-pass reading is that of
    the direct landmarks alone.  ``artifact``: the uncertainty file (default:
    beside the model, checked to be fitted to it).  Returns ``{mode: table}``
    plus ``label_noise``: ``{L: {mode: table}}`` for each label error ``L``
    (degrees) of ``label_noise``.
    """
    model_dir = Path(default_model_dir() if model_dir is None else model_dir)
    unc = load_uncertainty(model_dir / FILE_NAME if artifact is None else artifact,
                           model_dir / WEIGHTS_NAME)
    with HeadPoseEstimator.from_pretrained(model_dir, flip_average=True) as est:
        faces = collect_aflw(directory, est, limit, progress)
        out = {'dataset': str(directory), 'images': len(faces['true']),
               'label_noise': {str(float(v)): {} for v in label_noise}}
        twin = np.all(np.isfinite(faces['mirrored']), axis=(1, 2))
        for mode in MODES:
            flip = mode == 'flip'
            ang, net = read_landmarks(est, faces['landmarks'], faces['mirrored'],
                                      faces['cameras'], flip)
            sigma, beyond = assess_readings(unc, ang, net, faces['landmarks'], faces['score'],
                                            flip & twin)
            out[mode] = calibration_table(faces['true'], ang, sigma, beyond)
            for v in label_noise:
                out['label_noise'][str(float(v))][mode] = calibration_table(
                    faces['true'], ang, sigma, beyond, label_noise_deg=float(v))
    return out


def main(argv=None):
    """``python -m nlml_hpe.bench.uncertainty DIR``: print the dev-split calibration tables."""
    import argparse

    parser = argparse.ArgumentParser(
        prog='python -m nlml_hpe.bench.uncertainty',
        description='Per-|yaw|-bin calibration of the uncertainty model on an AFLW2000-3D '
                    'directory (a check: nothing is fitted).')
    parser.add_argument('directory', help='AFLW2000-3D images + .mat labels')
    parser.add_argument('--model', help='model directory (default: the shipped one)')
    parser.add_argument('--uncertainty', help='uncertainty.json (default: beside the model)')
    parser.add_argument('--limit', type=int, help='first N images only')
    parser.add_argument('--label-noise', type=float, nargs='+', default=[], metavar='DEG',
                        help='also show the within-sigma shares with this label error (deg '
                             'per angle) added in quadrature (a sensitivity, not a fit)')
    parser.add_argument('--json', help='also write the tables to this file')
    args = parser.parse_args(argv)
    if any(not 0.0 <= v <= 30.0 for v in args.label_noise):
        parser.error('--label-noise values must be in [0, 30] degrees')
    try:
        result = dev_check(args.directory, args.model, args.uncertainty, args.limit, True,
                           args.label_noise)
    except ValueError as exc:
        parser.exit(2, f'error: {exc}\n')
    for mode, title in (('one_pass', 'one pass (as the node runs)'),
                        ('flip', 'flip averaging (the CLI default for single images)')):
        print(format_table(result[mode], f"{result['dataset']}: {title}"), end='\n\n')
    for noise, tables in result['label_noise'].items():
        for mode, table in tables.items():
            print(f'label error {noise} deg in quadrature, {mode}: within 1 sigma pooled per '
                  f'|yaw| bin {pooled_line(table)} %')
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + '\n')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
