"""Calibration tables of :mod:`nlml_hpe.uncertainty`: how well sigma and the range state hold.

Given labelled faces and their readings, :func:`calibration_table` says per
true-|yaw| bin how many faces were found, the MAE, the share of errors within
one sigma (the model aims at :data:`~nlml_hpe.uncertainty.COVERAGE`) and the
share whose beyond-range state is set; :func:`format_table` writes it as
Markdown.  :func:`read_landmarks` and :func:`assess_readings` turn stored
landmarks into the readings and their uncertainty, both modes from one
flip-averaged collection.

Where the labelled faces come from is the caller's: renders of held-out
identities in the training stage (:mod:`training.uncertainty`), the AFLW2000
dev split in the check (:mod:`nlml_hpe.bench.uncertainty`).  Nothing here reads
a file or fits anything.
"""

import numpy as np

from .uncertainty import BEYOND_DEG, WITHIN_DEG, YAW_BINS


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


def pooled_line(table):
    """One line: the pooled share within one sigma per |yaw| bin (%), e.g. ``64 / 58 / ...``."""
    return ' / '.join('' if 'within_sigma_pooled' not in r else
                      f"{100 * r['within_sigma_pooled']:.0f}" for r in table['bins'])



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
