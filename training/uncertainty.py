"""Stage 10 -- uncertainty: per-angle sigma and the readable-range state, fitted on renders.

Face Mesh's landmarks saturate on strongly turned faces: beyond about 60 deg of
yaw the network reads 50-60 deg whatever the true turn.  This stage measures,
without real labelled faces, how far the exported model's readings can be
trusted, and fits the small model of :mod:`nlml_hpe.uncertainty` that says so:

1. **collect** (:mod:`training.uncertainty_data`) -- render *fresh*
   identities (this stage's own seed: neither training nor stage 1's held-out
   ones) with random expressions, the landmarks stage's cameras at the stage's
   own distances, over the full turn, each under a draw of a robot camera's
   conditions (:mod:`training.camera_conditions`), and read them as at run
   time: single images with flip averaging (the direct landmarks alone give the
   one-pass reading), and *sequences* (a head turning to one side and back)
   through the streaming estimator, one pass, as the node runs;
2. **read** both modes from the stored landmarks (a re-fit renders nothing);
3. **fit**, on all of them (|yaw| bins weighted alike; in a bin, tracked frames
   and single images share the weight as ``tracked_share`` says), per mode:
   the beyond-range classifier (L2-regularised quadratic logistic regression
   on :data:`~nlml_hpe.uncertainty_cues.RANGE_FEATURES`, label true |yaw| >
   ``label_deg``; threshold: the most faces beyond 65 deg set, at most
   ``max_false_beyond`` of those under 45 deg) and per angle the sigma model
   (linear quantile regression of ``log |error|``, its level moved per |yaw|
   bin until :data:`~nlml_hpe.uncertainty.COVERAGE` of the fitted errors fall
   within sigma in every bin: :func:`fit_calibrated`);
4. **check** by ``folds``-fold cross-validation (each face assessed by a model
   fitted without it; a sequence's frames stay in one fold); write
   ``uncertainty.json`` (also into ``export.out_dir``, beside the model it
   describes) and ``report.md``.

``samples.npz`` keeps the collected faces, reused while the collection options,
face and camera config, seed and model weights are unchanged.
"""

import hashlib
import json
from pathlib import Path
import time

import numpy as np

from nlml_hpe.uncertainty_tables import (
    assess_readings,
    calibration_table,
    format_table,
    read_landmarks,
)

from .camera_conditions import options as condition_options
from .uncertainty_data import load_or_collect

DEFAULTS = {'enabled': True, 'identities': 400, 'samples': 2000, 'yaw': [-90, 90],
            'yaw_sampling': 'bins',
            'pitch': [-60, 60], 'roll': [-40, 40], 'typical_sd': [12, 8],
            'typical_fraction': 0.6, 'sequences': 16, 'frames': 48, 'workers': 2,
            'distance_cm': [45, 200], 'conditions': {},
            'label_deg': 55.0, 'max_false_beyond': 0.02, 'range_l2': 1.0, 'tracked_share': 0.5,
            'folds': 4,
            'err_floor_deg': 0.05}


def options(cfg):
    """Merge ``cfg['uncertainty']`` over :data:`DEFAULTS` and validate it."""
    opts = dict(DEFAULTS, **(cfg.get('uncertainty') or {}))
    for key in ('identities', 'samples', 'sequences', 'frames', 'workers'):
        if int(opts[key]) < 0:
            raise ValueError(f'uncertainty.{key} must be >= 0')
    if int(opts['folds']) < 2:
        raise ValueError('uncertainty.folds must be >= 2')
    if opts['tracked_share'] is not None and not 0.0 <= float(opts['tracked_share']) <= 1.0:
        raise ValueError('uncertainty.tracked_share must be in [0, 1] or null')
    for key in ('yaw', 'pitch', 'roll', 'distance_cm'):
        if not float(opts[key][0]) < float(opts[key][1]):
            raise ValueError(f'uncertainty.{key} must be [low, high] with low < high')
    if opts['yaw_sampling'] not in ('bins', 'uniform'):
        raise ValueError("uncertainty.yaw_sampling must be 'bins' or 'uniform'")
    if not float(opts['distance_cm'][0]) > 0:
        raise ValueError('uncertainty.distance_cm must be positive')
    opts['conditions'] = condition_options(opts['conditions'])
    if not 0.0 <= float(opts['typical_fraction']) <= 1.0:
        raise ValueError('uncertainty.typical_fraction must be in [0, 1]')
    return opts


# ---------------------------------------------------------------- reading and fitting

def read_all(samples, model_dir):
    """Per mode (``one_pass``, ``flip``): fused and network angles of every sample.

    Sequences were read one pass (as the node runs): their ``flip`` rows are NaN.
    """
    from nlml_hpe.camera import Camera
    from nlml_hpe.estimator import HeadPoseEstimator

    size = tuple(int(v) for v in samples['image_size'])
    cams = [Camera(k, *size) for k in samples['k']]
    est = HeadPoseEstimator.from_pretrained(model_dir)
    single = (samples['sequence'] < 0)[:, None, None]
    return {'one_pass': read_landmarks(est, samples['landmarks'], samples['mirrored'], cams,
                                       False),
            'flip': read_landmarks(est, np.where(single, samples['landmarks'], np.nan),
                                   samples['mirrored'], cams, True)}


def folds(samples, k):
    """Fold ``0 .. k-1`` of every row: single images by index, sequences whole (by number).

    A sequence's frames share a face, camera and conditions, so they stay in
    one fold: a check never sees a sequence it was fitted on.
    """
    seq = samples['sequence']
    return np.where(seq < 0, np.arange(len(seq)) % int(k), seq % int(k))


def bin_weights(abs_yaw, mask, bins, tracked=None, tracked_share=None):
    """Weights giving every |yaw| bin the same total weight among ``mask`` (mean 1).

    With ``tracked`` (per row: a frame of a tracked sequence) and
    ``tracked_share``, the tracked frames of a bin share that part of its
    weight and its single images the rest (a bin with only one kind gives it
    all); else every row of a bin weighs the same.
    """
    nb = len(bins) - 1
    b = np.clip(np.digitize(abs_yaw, bins[1:-1]), 0, nb - 1)
    if tracked is None or tracked_share is None:
        kind, share = np.zeros(len(b), int), np.ones((nb, 1))
    else:
        kind = np.asarray(tracked, bool).astype(int)
        have = np.stack([np.bincount(b[mask & (kind == k)], minlength=nb) > 0 for k in (0, 1)], 1)
        share = np.where(have, [1.0 - float(tracked_share), float(tracked_share)], 0.0)
        share /= np.maximum(share.sum(axis=1, keepdims=True), 1e-12)
    cell = b * 2 + kind
    count = np.bincount(cell[mask], minlength=2 * nb)[cell]
    w = np.where(mask, share[b, kind] / np.maximum(count, 1), 0.0)
    return w * mask.sum() / max(w.sum(), 1e-12)


def fit_logistic(x, y, weights, l2=1e-2):
    """Weighted L2-regularised logistic regression: ``(coef, intercept)``."""
    from scipy.optimize import minimize

    x1 = np.c_[np.ones(len(x)), x]

    def loss(b):
        z, reg = x1 @ b, np.r_[0.0, b[1:]]
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))
        return ((weights * (np.logaddexp(0.0, z) - y * z)).sum() + l2 * reg @ reg,
                x1.T @ (weights * (p - y)) + 2 * l2 * reg)

    b = minimize(loss, np.zeros(x1.shape[1]), jac=True, method='L-BFGS-B').x
    return b[1:], float(b[0])


def choose_threshold(p, abs_yaw, max_false, beyond_deg, within_deg):
    """Return the threshold setting the state on most faces beyond ``beyond_deg``.

    At most ``max_false`` of the faces within ``within_deg`` may be set (no
    faces on either side: 0.5).
    """
    near = np.sort(p[abs_yaw < within_deg])[::-1]
    if not len(near) or not (abs_yaw > beyond_deg).any():
        return 0.5
    k = int(np.floor(max_false * len(near)))
    thr = near[k] + 1e-9 if k < len(near) else 0.0
    return float(np.clip(thr, 0.01, 0.99))


def fit_quantile(terms, target, tau, weights):
    """Weighted linear quantile regression as a linear program.

    ``tau``: the quantile level, one for all rows or one per row.
    """
    from scipy.optimize import linprog
    from scipy.sparse import csr_matrix, hstack, identity

    n, k = terms.shape
    cost = np.r_[np.zeros(k), tau * weights, (1.0 - tau) * weights]
    a_eq = hstack([csr_matrix(terms), identity(n), -identity(n)]).tocsr()
    res = linprog(cost, A_eq=a_eq, b_eq=target, bounds=[(None, None)] * k + [(0, None)] * (2 * n),
                  method='highs')
    if not res.success:
        raise RuntimeError(f'uncertainty: quantile regression failed: {res.message}')
    return res.x[:k]


def fit_calibrated(terms, target, groups, weights, goal, rounds=10):
    """Quantile regression whose share below the fit is ``goal`` within every group.

    A single level ``goal`` makes the share right over all rows, but not in
    each |yaw| bin (``groups``: a bin index per row) when the terms cannot tell
    the bins apart (a true 65 deg and a true 85 deg face read alike).  Each
    round moves every group's level by its (weighted) share's miss (levels kept
    in [0.3, 0.97]) and refits; returns the coefficients of the round whose
    worst group missed least.
    """
    groups = np.asarray(groups)
    names = np.unique(groups)
    tau = np.full(len(names), float(goal))
    best, best_miss = None, np.inf
    for _ in range(int(rounds)):
        w = fit_quantile(terms, target, tau[np.searchsorted(names, groups)], weights)
        below = target <= terms @ w
        share = np.array([np.average(below[groups == g], weights=weights[groups == g] + 1e-12)
                          for g in names])
        miss = np.abs(share - goal).max()
        if miss < best_miss:
            best, best_miss = w, miss
        tau = np.clip(tau + (goal - share), 0.3, 0.97)
    return best


def fit_mode(feats, true, angles, fit, opts, tracked=None):
    """Fit one mode's range classifier and sigma model on the rows ``fit``; a JSON dict.

    ``tracked``: rows that are frames of tracked sequences (weighted by
    ``tracked_share``: :func:`bin_weights`).
    """
    from nlml_hpe import uncertainty as U
    from nlml_hpe.uncertainty_cues import range_terms

    abs_yaw = np.abs(true[:, 1])
    w = bin_weights(abs_yaw, fit, U.YAW_BINS, tracked, opts['tracked_share'])[fit]
    f = feats[fit]
    cols = [U.FEATURES.index(k) for k in U.RANGE_FEATURES]
    x = f[:, cols]
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std < 1e-9] = 1.0
    label = (abs_yaw[fit] > float(opts['label_deg'])).astype(float)
    terms = range_terms((x - mean) / std)
    coef, icpt = fit_logistic(terms, label, w, float(opts['range_l2']))
    p = 1.0 / (1.0 + np.exp(-np.clip(terms @ coef + icpt, -40, 40)))
    thr = choose_threshold(p, abs_yaw[fit], float(opts['max_false_beyond']), U.BEYOND_DEG,
                           U.WITHIN_DEG)
    err = np.abs(angles[fit] - true[fit])
    groups = np.digitize(abs_yaw[fit], U.YAW_BINS[1:-1])
    sigma = [fit_calibrated(U.sigma_terms(f, p, a), np.log(err[:, a] + opts['err_floor_deg']),
                            groups, w, U.COVERAGE) for a in range(3)]
    r6 = lambda v: [round(float(e), 6) for e in np.ravel(v)]  # noqa: E731
    return {'features': list(U.FEATURES), 'feature_low': r6(f.min(axis=0)),
            'feature_high': r6(f.max(axis=0)),
            'range': {'features': list(U.RANGE_FEATURES), 'mean': r6(mean), 'std': r6(std),
                      'terms': 'quadratic', 'coef': r6(coef), 'intercept': round(icpt, 6),
                      'threshold': round(thr, 6), 'label_deg': float(opts['label_deg'])},
            'sigma_terms': list(U.SIGMA_TERMS),
            'sigma': {a: r6(s) for a, s in zip(U.ANGLES, sigma)},
            'fitted_on': int(fit.sum())}


# ---------------------------------------------------------------- stage

def model_dir_of(cfg):
    """Return the exported model's directory (``export.out_dir``, ``{workdir}`` expanded)."""
    out = (cfg.get('export') or {}).get('out_dir')
    if not out:
        raise ValueError('export.out_dir is not set')
    return Path(out.replace('{workdir}', str(cfg['workdir']))).resolve()


def _skip_reason(cfg, opts, inputs, model_dir):
    from .correspondence import face_model_available
    from .render import renderer_available

    if not opts['enabled']:
        return 'disabled by uncertainty.enabled: false'
    if not face_model_available(inputs):
        return 'no face model to render (external landmarks artifact: stages 1-2 skipped)'
    if not (model_dir / 'nlml_hpe.safetensors').is_file():
        return f'no exported model in {model_dir}'
    if int(opts['samples']) < 20:
        return 'too few samples to fit (uncertainty.samples < 20)'
    return renderer_available()[1] or None


def assess_all(samples, readings, artifact, rows=None):
    """Per mode: sigma ``(N, 3)`` and beyond-range ``(N,)`` of the ``rows`` (NaN elsewhere)."""
    from nlml_hpe import uncertainty as U

    model = U.UncertaintyModel(artifact)
    rows = np.ones(len(samples['sequence']), bool) if rows is None else rows
    twin = np.all(np.isfinite(samples['mirrored']), axis=(1, 2))
    out = {}
    for mode in U.MODES:
        ang, net = (np.where(rows[:, None], v, np.nan) for v in readings[mode])
        out[mode] = assess_readings(model, ang, net, samples['landmarks'], samples['score'],
                                    (mode == 'flip') & twin)
    return out


def cross_validate(samples, readings, opts):
    """:func:`assess_all` of every row by a model fitted on the other ``opts['folds']`` folds."""
    fold = folds(samples, opts['folds'])
    out = None
    for f in range(int(opts['folds'])):
        part = assess_all(samples, readings, {'modes': fit_all(samples, readings, opts,
                                                               fold != f)}, fold == f)
        if out is None:
            out = part
            continue
        for mode, (sigma, beyond) in part.items():
            out[mode][0][fold == f], out[mode][1][fold == f] = sigma[fold == f], \
                beyond[fold == f]
    return out


def evaluate(samples, readings, assessed):
    """Calibration tables of single images (both modes) and sequences, from :func:`assess_all`."""
    single = samples['sequence'] < 0
    out = {}
    for name, mode, sel in (('single images, one pass', 'one_pass', single),
                            ('single images, flip averaging', 'flip', single),
                            ('sequences (tracked, one pass)', 'one_pass', ~single)):
        if sel.any():
            sigma, beyond = assessed[mode]
            out[name] = calibration_table(samples['angles'][sel], readings[mode][0][sel],
                                          sigma[sel], beyond[sel])
    return out


def fit_all(samples, readings, opts, rows=None):
    """Fit both modes on the ``rows`` (default: all); return the artifact's ``modes``."""
    from nlml_hpe import uncertainty as U

    fit = np.ones(len(samples['sequence']), bool) if rows is None else rows
    modes = {}
    twin = np.all(np.isfinite(samples['mirrored']), axis=(1, 2))
    for mode in U.MODES:
        ang, net = readings[mode]
        # A face whose mirrored twin was not found reads as one pass: not a flip sample.
        ok = np.all(np.isfinite(ang), axis=1) & (twin if mode == 'flip' else True)
        feats = np.full((len(ang), len(U.FEATURES)), np.nan)
        feats[ok] = U.features(samples['landmarks'][ok], ang[ok], net[ok], samples['score'][ok])
        modes[mode] = fit_mode(feats, samples['angles'].astype(np.float64), ang, fit & ok, opts,
                               samples['sequence'] >= 0)
    return modes


def run(cfg, out_dir, inputs):
    """Stage entry point: fit, check and write ``uncertainty.json`` and ``report.md``."""
    from nlml_hpe import uncertainty as U

    t0, out_dir, opts, model_dir = time.time(), Path(out_dir), options(cfg), model_dir_of(cfg)
    why = _skip_reason(cfg, opts, inputs, model_dir)
    if why is not None:
        (out_dir / 'report.md').write_text(f'# Stage 10: uncertainty\n\nSkipped: {why}.\n')
        return {'skipped': why}
    samples, cached = load_or_collect(cfg, opts, inputs, model_dir, out_dir)
    readings = read_all(samples, model_dir)
    weights, single = model_dir / 'nlml_hpe.safetensors', samples['sequence'] < 0
    artifact = {
        'format_version': U.FORMAT_VERSION,
        'description': 'nlml_hpe.uncertainty: sigma (deg) and readable-range classifier',
        'coverage': U.COVERAGE, 'modes': fit_all(samples, readings, opts),
        'provenance': {
            'created': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
            'config': _repo_relative(cfg.get('config_path')), 'config_name': cfg.get('name'),
            'seed': int(cfg.get('seed', 0)), 'options': opts,
            'model_sha256': hashlib.sha256(weights.read_bytes()).hexdigest(),
            'identities': 'fresh: drawn with seed + 10 from the face model (neither the '
                          "training nor stage 1's held-out identities)",
            'single_images': int(single.sum()), 'sequence_frames': int((~single).sum()),
            'single_found': int(samples['found'][single].sum()),
            'sequence_found': int(samples['found'][~single].sum()),
            'sequences': int(samples['sequence'].max() + 1) if (~single).any() else 0,
            'fitted_on': f"all single images and sequences; checked by {opts['folds']}-fold "
                         'cross-validation (each face assessed by a model not fitted on it; a '
                         "sequence's frames in one fold)"}}
    tables = evaluate(samples, readings, cross_validate(samples, readings, opts))
    artifact['render_check'] = {k: {'targets': v['targets'], 'within_sigma_pooled': [
        r.get('within_sigma_pooled') for r in v['bins']]} for k, v in tables.items()}
    text = json.dumps(artifact, indent=1) + '\n'
    (out_dir / U.FILE_NAME).write_text(text)
    (model_dir / U.FILE_NAME).write_text(text)
    U.load_uncertainty(model_dir / U.FILE_NAME, weights)  # what ships must load
    _write_report(out_dir, artifact, tables,
                  evaluate(samples, readings, assess_all(samples, readings, artifact)), cached)
    return {'samples_cached': cached, 'found': int(samples['found'].sum()),
            'render_check': artifact['render_check'], 'artifact': str(model_dir / U.FILE_NAME),
            'seconds': round(time.time() - t0, 1)}


def _repo_relative(path):
    repo, full = Path(__file__).resolve().parents[1], Path(path or '.').resolve()
    return str(full.relative_to(repo)) if path and full.is_relative_to(repo) else path


def _write_report(out_dir, artifact, check, fit, cached):
    prov = artifact['provenance']
    lines = ['# Stage 10: uncertainty', '',
             f"- {prov['single_images']} single images ({prov['single_found']} found) and "
             f"{prov['sequences']} sequences of {prov['sequence_frames']} frames "
             f"({prov['sequence_found']} found) of fresh identities"
             + (' (samples.npz reused)' if cached else ''),
             f"- {prov['fitted_on']}; model sha256 {prov['model_sha256'][:16]}...", '']
    for part, tables in (('Cross-validated (each face assessed by a model not fitted on it)',
                          check), ('In-sample (the shipped fit, on the faces it was fitted on)',
                                   fit)):
        lines += [f'## {part}', ''] + [format_table(t, f'### {n}') + '\n' for n, t in
                                      tables.items()]
    (Path(out_dir) / 'report.md').write_text('\n'.join(lines))
