"""Stage 10 -- uncertainty: per-angle sigma and the readable-range state, fitted on renders.

Face Mesh's landmarks saturate on strongly turned faces: beyond about 60 deg of
yaw the network reads 50-60 deg whatever the true turn.  This stage measures,
without real labelled faces, how far the exported model's readings can be
trusted, and fits the small model of :mod:`nlml_hpe.uncertainty` that says so:

1. **collect** -- render *fresh* identities (this stage's own seed: neither
   training nor stage 1's held-out ones) with random expressions and the
   landmarks stage's cameras over the full turn, and read them as at run time:
   single images with flip averaging (the direct landmarks alone give the
   one-pass reading), and *sequences* (a head turning to one side and back)
   through the streaming estimator, one pass, as the node runs;
2. **read** both modes from the stored landmarks (a re-fit renders nothing);
3. **fit**, on 3 in 4 single images and half the sequences (|yaw| bins weighted
   alike), per mode: the beyond-range classifier (logistic regression on
   :data:`~nlml_hpe.uncertainty.RANGE_FEATURES`, label true |yaw| > ``label_deg``;
   threshold: the most faces beyond 65 deg set, at most ``max_false_beyond`` of
   those under 45 deg) and per angle the sigma model (linear quantile regression
   of ``log |error|`` at :data:`~nlml_hpe.uncertainty.COVERAGE`);
4. **check** on the rest; write ``uncertainty.json`` (also into
   ``export.out_dir``, beside the model it describes) and ``report.md``.

``samples.npz`` keeps the collected faces, reused while the options, face and
camera config, seed and model weights are unchanged.
"""

import hashlib
import json
import multiprocessing
from pathlib import Path
import time

import numpy as np
from tqdm import tqdm

DEFAULTS = {'enabled': True, 'identities': 400, 'samples': 2000, 'yaw': [-90, 90],
            'pitch': [-50, 50], 'roll': [-40, 40], 'typical_sd': [12, 8],
            'typical_fraction': 0.6, 'sequences': 16, 'frames': 48, 'workers': 2,
            'label_deg': 55.0, 'max_false_beyond': 0.005, 'err_floor_deg': 0.05}

#: The options the collected samples depend on (the others only change the fit).
COLLECT_KEYS = ('identities', 'samples', 'yaw', 'pitch', 'roll', 'typical_sd', 'typical_fraction',
                'sequences', 'frames')
_WORKER = {}


def options(cfg):
    """Merge ``cfg['uncertainty']`` over :data:`DEFAULTS` and validate it."""
    opts = dict(DEFAULTS, **(cfg.get('uncertainty') or {}))
    for key in ('identities', 'samples', 'sequences', 'frames', 'workers'):
        if int(opts[key]) < 0:
            raise ValueError(f'uncertainty.{key} must be >= 0')
    for key in ('yaw', 'pitch', 'roll'):
        if not float(opts[key][0]) < float(opts[key][1]):
            raise ValueError(f'uncertainty.{key} must be [low, high] with low < high')
    if not 0.0 <= float(opts['typical_fraction']) <= 1.0:
        raise ValueError('uncertainty.typical_fraction must be in [0, 1]')
    return opts


def draw_static(opts, rng):
    """Angles ``(n, 3)`` (pitch, yaw, roll, deg) of the single images.

    Yaw uniform; pitch and roll normal (``typical_sd``, clipped: most heads are
    near upright) for ``typical_fraction`` of them, else uniform over their ranges.
    """
    n = int(opts['samples'])
    yaw = rng.uniform(*(float(v) for v in opts['yaw']), n)
    typical = rng.random(n) < float(opts['typical_fraction'])
    out = [None, yaw, None]
    for col, key, sd in ((0, 'pitch', opts['typical_sd'][0]), (2, 'roll', opts['typical_sd'][1])):
        lo, hi = (float(v) for v in opts[key])
        wide = rng.uniform(lo, hi, n)
        out[col] = np.where(typical, np.clip(rng.normal(0.0, float(sd), n), lo, hi), wide)
    return np.stack(out, axis=1)


def draw_sequence(opts, rng):
    """Angles ``(frames, 3)`` of one sequence: a head turning to one side and back.

    Yaw: near frontal to a peak between 60 deg and the range's end and back (half
    a sine period); pitch and roll drift slowly around a random offset.
    """
    n = int(opts['frames'])
    t = np.linspace(0.0, 1.0, n)
    lo, hi = (float(v) for v in opts['yaw'])
    peak = rng.uniform(min(60.0, hi), hi) * rng.choice([-1.0, 1.0])
    start = rng.uniform(-15.0, 15.0)
    yaw = start + (peak - start) * np.sin(np.pi * t)
    sd_p, sd_r = (float(v) for v in opts['typical_sd'])
    pitch = rng.normal(0.0, sd_p) + 5.0 * np.sin(2 * np.pi * t + rng.uniform(0, 6.3))
    roll = rng.normal(0.0, sd_r) + 4.0 * np.sin(2 * np.pi * t + rng.uniform(0, 6.3))
    return np.stack([pitch, np.clip(yaw, lo, hi), roll], axis=1)


# ---------------------------------------------------------------- rendering workers

def _init_worker(cfg_faces, corr, size, model_dir):
    from nlml_hpe.estimator import HeadPoseEstimator

    from .faces import load_source
    from .render import make_renderer

    source = load_source(cfg_faces)
    _WORKER.update(source=source, corr=corr, size=size, model_dir=model_dir,
                   renderer=make_renderer(source, cfg_faces, size),
                   static=HeadPoseEstimator.from_pretrained(model_dir, flip_average=True,
                                                            num_threads=1))


def _render(coeffs, expr, rot, cam):
    from .correspondence import to_head_frame

    verts = to_head_frame(_WORKER['source'].vertices(coeffs, expr), _WORKER['corr'])
    return _WORKER['renderer'].render(verts, rot, cam['distance'], cam['focal'], cam['offset'])


def _record(poses, i, out):
    """Store the largest face of ``poses`` (if any) as row ``i`` of ``out``."""
    if poses:
        out['found'][i], out['landmarks'][i], out['score'][i] = True, poses[0].landmarks, \
            poses[0].score
        if poses[0].mirrored_landmarks is not None:
            out['mirrored'][i] = poses[0].mirrored_landmarks


def _empty(n):
    nan = np.full((n, 468, 3), np.nan, np.float32)
    return {'found': np.zeros(n, bool), 'landmarks': nan, 'mirrored': nan.copy(),
            'score': np.zeros(n, np.float32)}


def _static_chunk(task):
    """Render and read a chunk of single-image samples (flip averaging on)."""
    from nlml_hpe.camera import Camera

    coeffs, expr, rots, cams, ks = task
    out = _empty(len(coeffs))
    for i in range(len(coeffs)):
        cam = {k: v[i] for k, v in cams.items()}
        rgb = _render(coeffs[i], expr[i], rots[i], cam)
        _record(_WORKER['static'].estimate(rgb, camera=Camera(ks[i], *_WORKER['size'])), i, out)
    return out


def _sequence(task):
    """Render and read one sequence with a fresh streaming estimator (one pass)."""
    from nlml_hpe.camera import Camera
    from nlml_hpe.estimator import HeadPoseEstimator

    coeffs, expr, rots, cam, k = task
    out = _empty(len(rots))
    camera = Camera(k, *_WORKER['size'])
    with HeadPoseEstimator.from_pretrained(_WORKER['model_dir'], streaming=True,
                                           flip_average=False, num_threads=1) as est:
        for i, rot in enumerate(rots):
            _record(est.estimate(_render(coeffs, expr, rot, cam), camera=camera), i, out)
    return out


def _run_tasks(fn, tasks, n, workers, init_args, desc):
    bar = tqdm(total=n, desc=desc, unit='render')
    results = []
    if workers <= 1:
        _init_worker(*init_args)
        try:
            for t in tasks:
                results.append(fn(t))
                bar.update(len(results[-1]['found']))
        finally:
            _WORKER['renderer'].release()
            _WORKER['static'].close()
            _WORKER.clear()
    else:
        ctx = multiprocessing.get_context('spawn')
        with ctx.Pool(workers, _init_worker, init_args) as pool:
            for res in pool.imap(fn, tasks):
                results.append(res)
                bar.update(len(res['found']))
    bar.close()
    return {k: np.concatenate([r[k] for r in results]) for k in results[0]} if results else \
        _empty(0)


def collect(cfg, opts, inputs, model_dir, rng, chunk=20):
    """Render and read the single images and the sequences: a dict of arrays.

    Per face: ``angles`` (true pitch, yaw, roll), ``k`` (intrinsics), ``found``,
    ``landmarks``, ``mirrored``, ``score``, ``sequence`` (-1: a single image).
    """
    from .correspondence import load_correspondence
    from .faces import load_source, sample_expressions, sample_identities
    from .synth_landmarks import Projector

    source = load_source(cfg['faces'])
    corr = load_correspondence(inputs['correspondence'])
    projector = Projector(cfg.get('landmarks', {}), rng)
    ecfg = cfg['faces'].get('expressions', {}) or {}
    expressions = lambda n: sample_expressions(  # noqa: E731
        source, n, rng, float(ecfg.get('max_weight', 0.0)), int(ecfg.get('n_active', 0)))
    n_ids = max(int(opts['identities']), 1)
    pool = sample_identities(source, n_ids, rng, float(cfg['faces'].get('identity_scale', 1.0)))
    init = (cfg['faces'], corr, projector.size, str(model_dir))
    workers = int(opts['workers'])

    n = int(opts['samples'])
    angles = draw_static(opts, rng)
    ids = rng.integers(0, n_ids, n)
    expr = expressions(n)
    cams = projector.cameras(n)
    rots = projector.rotations(angles, cams)
    ks = projector.camera_matrices(cams)
    cams = {k: cams[k] for k in ('focal', 'distance', 'offset')}
    tasks = [(pool[ids[s:s + chunk]], expr[s:s + chunk], rots[s:s + chunk],
              {k: v[s:s + chunk] for k, v in cams.items()}, ks[s:s + chunk])
             for s in range(0, n, chunk)]
    static = _run_tasks(_static_chunk, tasks, n, workers, init, 'uncertainty: renders')

    seq_angles, seq_ks, seq_tasks = [], [], []
    for _ in range(int(opts['sequences'])):
        ang = draw_sequence(opts, rng)
        e = expressions(1)[0]
        cam = projector.cameras(1)
        # One camera and head position for the whole sequence: the head turns in place.
        rot = projector.rotations(ang, {k: np.repeat(v, len(ang), 0) for k, v in cam.items()})
        k = projector.camera_matrices(cam)[0]
        seq_tasks.append((pool[rng.integers(0, n_ids)], e, rot,
                          {key: cam[key][0] for key in ('focal', 'distance', 'offset')}, k))
        seq_angles.append(ang)
        seq_ks.append(np.repeat(k[None], len(ang), 0))
    seqs = _run_tasks(_sequence, seq_tasks, sum(len(a) for a in seq_angles), workers, init,
                      'uncertainty: sequences') if seq_tasks else _empty(0)
    merged = {k: np.concatenate([static[k], seqs[k]]) for k in static}
    merged['angles'] = np.concatenate([angles] + seq_angles).astype(np.float32)
    merged['k'] = np.concatenate([ks] + seq_ks)
    merged['sequence'] = np.concatenate([np.full(n, -1)] + [np.full(len(a), i) for i, a in
                                                            enumerate(seq_angles)])
    merged['image_size'] = np.array(projector.size)
    return merged


def collection_key(cfg, opts, model_dir):
    """Hash of what the collected samples depend on (options, faces, cameras, seed, model)."""
    weights = Path(model_dir) / 'nlml_hpe.safetensors'
    part = {'opts': {k: opts[k] for k in COLLECT_KEYS},
            'faces': cfg.get('faces'), 'landmarks': cfg.get('landmarks'),
            'seed': cfg.get('seed'),
            'model': hashlib.sha256(weights.read_bytes()).hexdigest()}
    return hashlib.sha256(json.dumps(part, sort_keys=True, default=str).encode()).hexdigest()


def load_or_collect(cfg, opts, inputs, model_dir, out_dir):
    """Return the samples, from ``samples.npz`` when it matches :func:`collection_key`."""
    key = collection_key(cfg, opts, model_dir)
    path = Path(out_dir) / 'samples.npz'
    if path.is_file():
        with np.load(path, allow_pickle=False) as data:
            if str(data['key']) == key:
                return {k: data[k] for k in data.files if k != 'key'}, True
    rng = np.random.default_rng(int(cfg.get('seed', 0)) + 10)
    t = time.time()
    samples = collect(cfg, opts, inputs, model_dir, rng)
    samples['collect_seconds'] = np.array(time.time() - t)
    np.savez_compressed(path, key=np.array(key), **samples)
    return samples, False


# ---------------------------------------------------------------- reading and fitting

def read_all(samples, model_dir):
    """Per mode (``one_pass``, ``flip``): fused and network angles of every sample.

    Sequences were read one pass (as the node runs): their ``flip`` rows are NaN.
    """
    from nlml_hpe.camera import Camera
    from nlml_hpe.estimator import HeadPoseEstimator
    from nlml_hpe.uncertainty import read_landmarks

    size = tuple(int(v) for v in samples['image_size'])
    cams = [Camera(k, *size) for k in samples['k']]
    est = HeadPoseEstimator.from_pretrained(model_dir)
    single = (samples['sequence'] < 0)[:, None, None]
    return {'one_pass': read_landmarks(est, samples['landmarks'], samples['mirrored'], cams,
                                       False),
            'flip': read_landmarks(est, np.where(single, samples['landmarks'], np.nan),
                                   samples['mirrored'], cams, True)}


def fit_split(samples):
    """``(fit, check)`` masks: 3 in 4 single images and the even sequences are fitted on."""
    seq = samples['sequence']
    fit = np.where(seq < 0, np.arange(len(seq)) % 4 != 0, seq % 2 == 0)
    return fit, ~fit


def bin_weights(abs_yaw, mask, bins):
    """Weights giving every |yaw| bin the same total weight among ``mask`` (mean 1)."""
    b = np.clip(np.digitize(abs_yaw, bins[1:-1]), 0, len(bins) - 2)
    w = np.where(mask, 1.0 / np.maximum(np.bincount(b[mask], minlength=len(bins) - 1)[b], 1), 0)
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
    """Weighted linear quantile regression (level ``tau``) as a linear program."""
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


def fit_mode(feats, true, angles, fit, opts):
    """Fit one mode's range classifier and sigma model on the rows ``fit``; a JSON dict."""
    from nlml_hpe import uncertainty as U

    abs_yaw = np.abs(true[:, 1])
    w = bin_weights(abs_yaw, fit, U.YAW_BINS)[fit]
    f = feats[fit]
    cols = [U.FEATURES.index(k) for k in U.RANGE_FEATURES]
    x = f[:, cols]
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std < 1e-9] = 1.0
    label = (abs_yaw[fit] > float(opts['label_deg'])).astype(float)
    coef, icpt = fit_logistic((x - mean) / std, label, w)
    p = 1.0 / (1.0 + np.exp(-np.clip((x - mean) / std @ coef + icpt, -40, 40)))
    thr = choose_threshold(p, abs_yaw[fit], float(opts['max_false_beyond']), U.BEYOND_DEG,
                           U.WITHIN_DEG)
    err = np.abs(angles[fit] - true[fit])
    sigma = [fit_quantile(U.sigma_terms(f, p, a), np.log(err[:, a] + opts['err_floor_deg']),
                          U.COVERAGE, w) for a in range(3)]
    r6 = lambda v: [round(float(e), 6) for e in np.ravel(v)]  # noqa: E731
    return {'features': list(U.FEATURES), 'feature_low': r6(f.min(axis=0)),
            'feature_high': r6(f.max(axis=0)),
            'range': {'features': list(U.RANGE_FEATURES), 'mean': r6(mean), 'std': r6(std),
                      'coef': r6(coef), 'intercept': round(icpt, 6), 'threshold': round(thr, 6),
                      'label_deg': float(opts['label_deg'])},
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


def evaluate(samples, readings, artifact, mask):
    """Calibration tables of the rows ``mask``: single images (both modes) and sequences."""
    from nlml_hpe import uncertainty as U

    model = U.UncertaintyModel(artifact)
    single = samples['sequence'] < 0
    twin = np.all(np.isfinite(samples['mirrored']), axis=(1, 2))
    out = {}
    for name, mode, sel in (('single images, one pass', 'one_pass', mask & single),
                            ('single images, flip averaging', 'flip', mask & single),
                            ('sequences (tracked, one pass)', 'one_pass', mask & ~single)):
        if sel.any():
            ang, net = (v[sel] for v in readings[mode])
            out[name] = U.check_readings(model, samples['angles'][sel], ang, net,
                                         samples['landmarks'][sel], samples['score'][sel],
                                         (mode == 'flip') & twin[sel])
    return out


def fit_all(samples, readings, opts):
    """Fit both modes on the fit split; return the artifact's ``modes``."""
    from nlml_hpe import uncertainty as U

    fit, _ = fit_split(samples)
    modes = {}
    twin = np.all(np.isfinite(samples['mirrored']), axis=(1, 2))
    for mode in U.MODES:
        ang, net = readings[mode]
        # A face whose mirrored twin was not found reads as one pass: not a flip sample.
        ok = np.all(np.isfinite(ang), axis=1) & (twin if mode == 'flip' else True)
        feats = np.full((len(ang), len(U.FEATURES)), np.nan)
        feats[ok] = U.features(samples['landmarks'][ok], ang[ok], net[ok], samples['score'][ok])
        modes[mode] = fit_mode(feats, samples['angles'].astype(np.float64), ang, fit & ok, opts)
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
    readings, (fit, check) = read_all(samples, model_dir), fit_split(samples)
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
            'fitted_on': 'single images with index % 4 != 0 and even sequences; checked on '
                         'the rest'}}
    tables = evaluate(samples, readings, artifact, check)
    artifact['render_check'] = {k: v['targets'] for k, v in tables.items()}
    text = json.dumps(artifact, indent=1) + '\n'
    (out_dir / U.FILE_NAME).write_text(text)
    (model_dir / U.FILE_NAME).write_text(text)
    U.load_uncertainty(model_dir / U.FILE_NAME, weights)  # what ships must load
    _write_report(out_dir, artifact, tables, evaluate(samples, readings, artifact, fit), cached)
    return {'samples_cached': cached, 'found': int(samples['found'].sum()),
            'render_check': artifact['render_check'], 'artifact': str(model_dir / U.FILE_NAME),
            'seconds': round(time.time() - t0, 1)}


def _repo_relative(path):
    repo, full = Path(__file__).resolve().parents[1], Path(path or '.').resolve()
    return str(full.relative_to(repo)) if path and full.is_relative_to(repo) else path


def _write_report(out_dir, artifact, check, fit, cached):
    from nlml_hpe.uncertainty import format_table

    prov = artifact['provenance']
    lines = ['# Stage 10: uncertainty', '',
             f"- {prov['single_images']} single images ({prov['single_found']} found) and "
             f"{prov['sequences']} sequences of {prov['sequence_frames']} frames "
             f"({prov['sequence_found']} found) of fresh identities"
             + (' (samples.npz reused)' if cached else ''),
             f"- {prov['fitted_on']}; model sha256 {prov['model_sha256'][:16]}...", '']
    for part, tables in (('Check split (not fitted on)', check), ('Fit split', fit)):
        lines += [f'## {part}', ''] + [format_table(t, f'### {n}') + '\n' for n, t in
                                      tables.items()]
    (Path(out_dir) / 'report.md').write_text('\n'.join(lines))
