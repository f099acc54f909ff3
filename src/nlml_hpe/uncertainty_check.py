"""Calibration tables of :mod:`nlml_hpe.uncertainty`, and its check on AFLW2000-3D.

``python -m nlml_hpe.uncertainty_check DIR [--label-noise DEG ...]`` reads an
AFLW2000-3D directory (the dev split: a check, nothing is fitted) and prints,
per true-|yaw| bin and reading mode, the found share, the MAE, the share of
errors within one sigma and the beyond-range share (:func:`calibration_table`).

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

from .uncertainty import BEYOND_DEG, FILE_NAME, MODES, WITHIN_DEG, YAW_BINS, load_uncertainty


def calibration_table(true_angles, angles, sigma, beyond, found=None, bins=YAW_BINS,
                      label_noise_deg=0.0):
    """Per |yaw| bin: found share, MAE, share of errors within 1 sigma, beyond-range share.

    ``true_angles`` ``(N, 3)`` (pitch, yaw, roll) of every face shown; the
    rest are the readings of the found ones (rows of missed faces are
    ignored; ``found`` marks them, default: finite ``angles``).
    ``label_noise_deg``: a label error added to sigma in quadrature (a
    sensitivity for labels that err themselves; 0: sigma as it is).  Returns a
    dict with ``bins`` (one entry per bin) and ``targets`` (the readable-range
    shares beyond :data:`BEYOND_DEG` and within :data:`WITHIN_DEG`).
    """
    t = np.asarray(true_angles, dtype=np.float64)
    a = np.asarray(angles, dtype=np.float64)
    s = np.asarray(sigma, dtype=np.float64)
    b = np.asarray(beyond, dtype=bool)
    found = np.all(np.isfinite(a), axis=1) if found is None else np.asarray(found, bool)
    ay = np.abs(t[:, 1])
    inside = np.abs(a - t) <= np.hypot(s, float(label_noise_deg))
    rows = []
    for k, (lo, hi) in enumerate(zip(bins[:-1], bins[1:])):
        shown = (ay >= lo) & ((ay < hi) if k < len(bins) - 2 else (ay <= hi))
        sel = shown & found
        row = {'bin': [lo, hi], 'shown': int(shown.sum()), 'found': int(sel.sum())}
        if sel.any():
            row.update(mae=np.abs(a[sel] - t[sel]).mean(axis=0).tolist(),
                       within_sigma=inside[sel].mean(axis=0).tolist(),
                       within_sigma_pooled=float(inside[sel].mean()),
                       sigma_median=np.median(s[sel], axis=0).tolist(),
                       beyond=float(b[sel].mean()))
        rows.append(row)
    far, near = found & (ay > BEYOND_DEG), found & (ay < WITHIN_DEG)
    return {'bins': rows, 'targets': {
        'beyond_set_above_65': [float(b[far].mean()) if far.any() else None, int(far.sum())],
        'beyond_set_below_45': [float(b[near].mean()) if near.any() else None,
                                int(near.sum())]}}


def assess_readings(model, angles, network_angles, landmarks, scores, flip):
    """Sigma ``(N, 3)`` and beyond-range ``(N,)`` of readings (NaN rows: faces not found).

    ``model``: an :class:`~nlml_hpe.uncertainty.UncertaintyModel`; ``flip``
    (per face) marks flip-averaged readings.
    """
    angles = np.asarray(angles, dtype=np.float64)
    ok = np.all(np.isfinite(angles), axis=1)
    sigma, beyond = np.full((len(angles), 3), np.nan), np.zeros(len(angles), dtype=bool)
    if ok.any():
        a = model.assess(np.asarray(landmarks)[ok], angles[ok],
                         np.asarray(network_angles)[ok], np.asarray(scores)[ok],
                         flip_average=np.broadcast_to(flip, ok.shape)[ok])
        sigma[ok], beyond[ok] = a.sigma_deg, a.beyond_range
    return sigma, beyond


def check_readings(model, true_angles, angles, network_angles, landmarks, scores, flip):
    """Return the :func:`calibration_table` of readings (arguments: :func:`assess_readings`)."""
    sigma, beyond = assess_readings(model, angles, network_angles, landmarks, scores, flip)
    return calibration_table(true_angles, angles, sigma, beyond)


def format_table(table, title=''):
    """Markdown of :func:`calibration_table` (shares in %)."""
    pct = lambda v: '' if v is None else f'{100 * v:.0f}'  # noqa: E731
    lines = [title] if title else []
    lines += ['| \\|yaw\\| | shown | found | MAE p / y / r (deg) | within 1 sigma p / y / r '
              '| pooled | median sigma p / y / r | beyond set |',
              '|---|---|---|---|---|---|---|---|']
    for r in table['bins']:
        lo, hi = r['bin']
        if 'mae' not in r:
            lines.append(f"| {lo:g}-{hi:g} | {r['shown']} | {r['found']} | | | | | |")
            continue
        lines.append(
            f"| {lo:g}-{hi:g} | {r['shown']} | {r['found']} ({pct(r['found'] / r['shown'])} %) "
            f"| {' / '.join(f'{v:.1f}' for v in r['mae'])} "
            f"| {' / '.join(pct(v) for v in r['within_sigma'])} % "
            f"| {pct(r['within_sigma_pooled'])} % "
            f"| {' / '.join(f'{v:.1f}' for v in r['sigma_median'])} "
            f"| {pct(r['beyond'])} % |")
    far, near = table['targets']['beyond_set_above_65'], table['targets']['beyond_set_below_45']
    pct1 = lambda v: '' if v is None else f'{100 * v:.1f}'  # noqa: E731 - near the targets
    lines.append('')
    lines.append(f'beyond-range set: {pct1(far[0])} % of {far[1]} found faces with |yaw| > '
                 f'{BEYOND_DEG:g} (target >= 95 %), {pct1(near[0])} % of {near[1]} with |yaw| < '
                 f'{WITHIN_DEG:g} (target <= 3 %); within 1 sigma target: 60-75 % per bin')
    return '\n'.join(lines)


# ---------------------------------------------------------------- readings from landmarks

def read_landmarks(estimator, landmarks, mirrored, cameras, flip):
    """Fused and network angles ``(N, 3)`` of stored faces (NaN rows: none stored).

    ``landmarks``/``mirrored`` ``(N, 468, 3)`` (NaN rows where there is none),
    ``cameras`` one :class:`~nlml_hpe.camera.Camera` per face; ``flip``: average
    each face with its mirrored twin, else one pass.  What
    :meth:`HeadPoseEstimator.estimate` would have reported for those landmarks.
    """
    n = len(landmarks)
    fused, net = np.full((n, 3), np.nan), np.full((n, 3), np.nan)
    for i in range(n):
        if not np.all(np.isfinite(landmarks[i])):
            continue
        twin = [mirrored[i]] if flip and np.all(np.isfinite(mirrored[i])) else None
        pose = estimator.estimate_landmarks([landmarks[i]], camera=cameras[i], twins=twin)[0]
        fused[i], net[i] = pose.angles, pose.network_angles
    return fused, net


# ---------------------------------------------------------------- the AFLW2000 dev check

def collect_aflw(directory, estimator, limit=None, progress=False):
    """Return the labelled face of each AFLW2000-3D image, as ``estimator`` reads it.

    ``estimator`` should flip-average (then both readings can be derived:
    :func:`read_landmarks`).  The labelled face is picked as
    :func:`nlml_hpe.bench.aflw2000.run_aflw2000` does.  Returns a dict of arrays:
    ``true`` (pitch, yaw, roll), ``landmarks``, ``mirrored`` (NaN where none),
    ``score`` and ``cameras`` (the guessed camera of each image).
    """
    from .bench.aflw2000 import (
        list_aflw2000,
        pick_labelled_face,
        read_aflw_box,
        read_aflw_pose,
        read_rgb,
    )
    from .camera import Camera
    from .estimator import landmark_box

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
    from .estimator import HeadPoseEstimator
    from .model import WEIGHTS_NAME, default_model_dir

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


def pooled_line(table):
    """One line: the pooled share within one sigma per |yaw| bin (%), e.g. ``64 / 58 / ...``."""
    return ' / '.join('' if 'within_sigma_pooled' not in r else
                      f"{100 * r['within_sigma_pooled']:.0f}" for r in table['bins'])


def main(argv=None):
    """``python -m nlml_hpe.uncertainty_check DIR``: print the dev-split calibration tables."""
    import argparse

    parser = argparse.ArgumentParser(
        prog='python -m nlml_hpe.uncertainty_check',
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
