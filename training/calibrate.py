"""Stage 8 -- calibrate: undo MediaPipe's compression of large angles, measured on renders.

The encoder learns from analytically projected landmarks (stage 3), which follow
the head's geometry exactly.  MediaPipe does not: on strongly turned faces its
mesh turns less than the head does (it regresses towards the frontal pose), so a
model trained on exact geometry reads large yaw too small.  The effect is the
same on renders as on photos: on renders, a yaw of 60 deg reads ~7 deg short
and 75 deg ~16 deg short.

This stage measures it without real labelled faces:

1. render held-out identities (stage 1's test identities, with random
   expressions and the landmarks stage's cameras) at random poses over a range
   wider than the grid (``calibrate.yaw`` etc.) and run MediaPipe on them;
2. run the trained network (stage 7) on MediaPipe's landmarks;
3. for each angle in ``calibrate.angles``, fit with scipy a robust (soft-L1)
   odd polynomial ``true = c1*x + c3*x**3 + ...`` of the network's raw output
   ``x`` (radians), checked to be strictly increasing; the export stage stores
   it in the model (``calibration.<angle>`` tensors, see
   :mod:`nlml_hpe.model`).

Odd polynomials cannot add a bias, only stretch: renders are good at telling how
far MediaPipe under-reads a turn, but their absolute pitch zero depends on the
synthetic face's look (eyes, brows, lighting), so pitch is left out by default
(``angles: [yaw, roll]``).

Artifacts: ``calibration.npz`` (coefficients per calibrated angle),
``samples.npz`` (the rendered samples' MediaPipe landmarks, true angles and raw
predictions), ``calibration.png`` and ``report.md`` (detection rate, MAE on the
renders before and after, and bias by angle bin).  Without a working renderer
(or with ``calibrate.enabled: false``) the stage writes an empty calibration and
says why; the model then ships uncalibrated.
"""

from pathlib import Path
import time

import numpy as np

from nlml_hpe.model import LATENT_ANGLES, check_calibration, odd_polynomial

#: Column of each angle in the (pitch, yaw, roll) arrays of the training data.
_COLUMN = {'pitch': 0, 'yaw': 1, 'roll': 2}
#: Column of each angle in the network's raw output (yaw, pitch, roll).
_RAW_COLUMN = {a: i for i, a in enumerate(LATENT_ANGLES)}

DEFAULTS = {'enabled': True, 'samples': 2000, 'yaw': [-90, 90], 'pitch': [-50, 50],
            'roll': [-40, 40], 'angles': ['yaw', 'roll'], 'terms': 3, 'workers': 2,
            'robust_scale_deg': 5.0}


def options(cfg):
    """Merge ``cfg['calibrate']`` over :data:`DEFAULTS` and validate it."""
    opts = dict(DEFAULTS, **(cfg.get('calibrate') or {}))
    unknown = set(opts['angles']) - set(_COLUMN)
    if unknown:
        raise ValueError(f'calibrate.angles: unknown {sorted(unknown)} (known: pitch, yaw, roll)')
    if not 1 <= int(opts['terms']) <= 4:
        raise ValueError('calibrate.terms must be 1 to 4')
    if int(opts['samples']) < 0:
        raise ValueError('calibrate.samples must be >= 0')
    for name in _COLUMN:
        lo, hi = (float(v) for v in opts[name])
        if not lo < hi:
            raise ValueError(f'calibrate.{name} must be [low, high] with low < high')
    return opts


def fit_odd_polynomial(raw, true, terms=3, robust_scale=0.0873):
    """Robust least-squares fit of ``true ~ c1*raw + c3*raw**3 + ...`` (radians).

    ``robust_scale``: soft-L1 scale in radians (default about 5 deg).

    Tries ``terms`` down to 1 term and returns the first strictly increasing fit
    (:func:`nlml_hpe.model.check_calibration`) as a float64 array, or ``None``
    when even the linear fit is not increasing.
    """
    from scipy.optimize import least_squares

    raw = np.asarray(raw, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    for n in range(int(terms), 0, -1):
        basis = np.stack([raw ** (2 * k + 1) for k in range(n)], axis=1)
        start = np.r_[1.0, np.zeros(n - 1)]
        res = least_squares(lambda c, b=basis: b @ c - true, start, loss='soft_l1',
                            f_scale=float(robust_scale))
        try:
            check_calibration(res.x.astype(np.float32))
        except ValueError:
            continue
        return res.x
    return None


def _draw(cfg, opts, inputs, rng):
    """Render + MediaPipe of random poses of the held-out identities.

    Returns the landmarks as the network sees them (:meth:`Projector.centre`;
    NaN where MediaPipe found no face), the angles and the identities.
    """
    from .correspondence import load_correspondence
    from .faces import load_faces, load_source, sample_expressions
    from .synth_landmarks import Projector
    from .synth_render import render_mediapipe

    faces = load_faces(inputs['faces'])
    ids_pool = faces['test_coeffs'] if len(faces['test_coeffs']) else faces['train_coeffs']
    source = load_source(cfg['faces'])
    corr = load_correspondence(inputs['correspondence'])
    n = int(opts['samples'])
    ids = rng.integers(0, len(ids_pool), n)
    angles = np.stack([rng.uniform(*(float(v) for v in opts[k]), n)
                       for k in ('pitch', 'yaw', 'roll')], axis=1)
    ecfg = cfg['faces'].get('expressions', {}) or {}
    expr = sample_expressions(source, n, rng, float(ecfg.get('max_weight', 0.0)),
                              int(ecfg.get('n_active', 0)))
    projector = Projector(cfg.get('landmarks', {}), rng, float(corr.get('z_scale', 1.0)))
    cams = projector.cameras(n)
    lm = render_mediapipe(cfg['faces'], corr, projector.size, ids_pool[ids], expr,
                          projector.render_angles(angles, cams), cams, int(opts['workers']),
                          desc='calibrate: render + MediaPipe')
    return projector.centre(lm, cams), angles, ids


def _bias_table(true_deg, raw_deg, cal_deg, names):
    lines = ['| angle | bin (deg) | N | median error raw | median error calibrated |',
             '|---|---|---|---|---|']
    for name in names:
        c = _COLUMN[name]
        edges = np.arange(-90, 91, 15)
        b = np.digitize(true_deg[:, c], edges)
        for k in np.unique(b):
            sel = b == k
            if sel.sum() < 5:
                continue
            lo = edges[k - 1] if k > 0 else -np.inf
            lines.append(f'| {name} | {lo:g}..{lo + 15:g} | {int(sel.sum())} | '
                         f'{np.median(raw_deg[sel, c] - true_deg[sel, c]):+.1f} | '
                         f'{np.median(cal_deg[sel, c] - true_deg[sel, c]):+.1f} |')
    return lines


def _plot(path, true_deg, raw_deg, coeffs):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    for ax, name in zip(axes, ('yaw', 'pitch', 'roll')):
        c = _COLUMN[name]
        ax.scatter(raw_deg[:, c], true_deg[:, c], s=3, alpha=0.4, label='renders')
        lim = max(np.abs(raw_deg[:, c]).max(), np.abs(true_deg[:, c]).max(), 1.0)
        x = np.linspace(-lim, lim, 200)
        ax.plot(x, x, 'k:', lw=1, label='identity')
        if name in coeffs:
            ax.plot(x, np.degrees(odd_polynomial(coeffs[name], np.radians(x))), 'r-', lw=1.5,
                    label='calibration')
        ax.set_xlabel(f'network {name} on MediaPipe landmarks (deg)')
        ax.set_ylabel(f'true {name} (deg)')
        ax.set_title(name + (' (calibrated)' if name in coeffs else ''))
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run(cfg, out_dir, inputs):
    """Stage entry point: write ``calibration.npz``, ``samples.npz`` and the report."""
    from safetensors.numpy import load_file

    from nlml_hpe.features import normalise_landmarks
    from nlml_hpe.model import PoseModel

    from .correspondence import face_model_available
    from .render import renderer_available

    t0 = time.time()
    out_dir = Path(out_dir)
    opts = options(cfg)
    summary = {'angles': list(opts['angles']), 'coefficients': {}}
    why = None
    if not opts['enabled']:
        why = 'disabled by calibrate.enabled: false'
    elif not face_model_available(inputs):
        why = 'no face model to render (external landmarks artifact: stages 1-2 skipped)'
    elif int(opts['samples']) == 0 or not opts['angles']:
        why = 'nothing to calibrate (calibrate.samples or calibrate.angles empty)'
    else:
        ok, reason = renderer_available()
        if not ok:
            why = reason
    if why is not None:
        np.savez(out_dir / 'calibration.npz')
        summary['skipped'] = why
        (out_dir / 'report.md').write_text(
            f'# Stage 8: calibrate\n\nNo calibration: {why}. The model ships uncalibrated.\n')
        return summary

    rng = np.random.default_rng(int(cfg.get('seed', 0)) + 8)
    lm, true_deg, ids = _draw(cfg, opts, inputs, rng)
    found = np.all(np.isfinite(lm), axis=(1, 2))
    model = PoseModel(load_file(str(Path(inputs['networks']) / 'net.safetensors')))
    raw = np.full((len(lm), 3), np.nan)
    if found.any():
        raw[found] = model.forward(normalise_landmarks(lm[found].astype(np.float64)))[1]
    # raw is (yaw, pitch, roll) radians; reorder to (pitch, yaw, roll) degrees like the data.
    raw_deg = np.degrees(raw[:, [_RAW_COLUMN['pitch'], _RAW_COLUMN['yaw'], _RAW_COLUMN['roll']]])
    coeffs = {}
    for name in opts['angles']:
        c, rc = _COLUMN[name], _RAW_COLUMN[name]
        fit = fit_odd_polynomial(raw[found, rc], np.radians(true_deg[found, c]),
                                 int(opts['terms']), np.radians(opts['robust_scale_deg']))
        if fit is not None:
            coeffs[name] = fit
    np.savez(out_dir / 'calibration.npz', **{k: v.astype(np.float32) for k, v in coeffs.items()})
    np.savez(out_dir / 'samples.npz', landmarks=lm.astype(np.float32),
             angles=true_deg.astype(np.float32), identity=ids, detected=found,
             raw_pred=raw_deg.astype(np.float32))
    cal_deg = raw_deg.copy()
    for name, co in coeffs.items():
        c = _COLUMN[name]
        cal_deg[:, c] = np.degrees(odd_polynomial(co, np.radians(raw_deg[:, c])))
    t, r, k = true_deg[found], raw_deg[found], cal_deg[found]
    mae_raw = dict(zip(('pitch', 'yaw', 'roll'), np.abs(r - t).mean(0).round(3).tolist()))
    mae_cal = dict(zip(('pitch', 'yaw', 'roll'), np.abs(k - t).mean(0).round(3).tolist()))
    summary.update(
        samples=int(len(lm)), detected=int(found.sum()),
        detection_rate=round(float(found.mean()), 4),
        coefficients={n: [round(float(v), 6) for v in co] for n, co in coeffs.items()},
        render_mae_raw_deg=mae_raw, render_mae_calibrated_deg=mae_cal,
        seconds=round(time.time() - t0, 1))
    if found.any():
        _plot(out_dir / 'calibration.png', t, r, coeffs)
    lines = ['# Stage 8: calibrate', '',
             f"- {summary['samples']} renders of held-out identities; MediaPipe found "
             f"{summary['detected']} ({100 * summary['detection_rate']:.1f} %)",
             f"- ranges (deg): yaw {opts['yaw']}, pitch {opts['pitch']}, roll {opts['roll']}",
             f"- calibrated angles: {sorted(coeffs)}; odd-polynomial coefficients "
             f"(x in radians): {summary['coefficients']}",
             f'- MAE on the renders, raw network (deg): {mae_raw}',
             f'- MAE on the renders, calibrated (deg): {mae_cal}',
             '- plot: calibration.png', '', '## Median error by true angle', '']
    lines += _bias_table(t, r, k, opts['angles'])
    (out_dir / 'report.md').write_text('\n'.join(lines) + '\n')
    return summary
