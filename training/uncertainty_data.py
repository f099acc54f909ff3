"""The uncertainty stage's renders: fresh faces, a robot camera's conditions, read as at run time.

:func:`collect` renders identities drawn for this stage alone (neither training
nor stage 1's held-out ones) with random expressions, the landmarks stage's
cameras (at the stage's own distances) and, per sample, a draw of camera
conditions (:mod:`training.camera_conditions`: lighting, skin tone, hair,
background, occluders, blur, noise, JPEG, resolution), and reads them with the
run-time estimator: single images with flip averaging (whose direct landmarks
give the one-pass reading), and *sequences* (a head turning to one side and
back, one set of conditions per sequence, fresh sensor noise per frame) through
the streaming estimator, one pass, as the node runs.

:func:`load_or_collect` keeps the result in ``samples.npz``, reused while
:func:`collection_key` (the collection options, face and camera config, seed
and model weights) is unchanged.
"""

import hashlib
import json
import multiprocessing
from pathlib import Path
import time

import numpy as np
from tqdm import tqdm

#: The stage options the collected samples depend on (the others only change the fit).
COLLECT_KEYS = ('identities', 'samples', 'yaw', 'yaw_sampling', 'pitch', 'roll', 'typical_sd',
                'typical_fraction', 'sequences', 'frames', 'distance_cm', 'conditions')
_WORKER = {}


def draw_static(opts, rng):
    """Angles ``(n, 3)`` (pitch, yaw, roll, deg) of the single images.

    Yaw (``yaw_sampling``): ``uniform`` over its range, or ``bins``: as many
    faces in each |yaw| bin of :data:`nlml_hpe.uncertainty.YAW_BINS` (clipped to
    the range; uniform within a bin, either sign), so that the narrow bins of
    strong turns, where most faces are lost, are measured as well as the wide
    near-frontal one.  Pitch and roll normal (``typical_sd``, clipped: most
    heads are near upright) for ``typical_fraction`` of them, else uniform over
    their ranges.
    """
    n = int(opts['samples'])
    lo, hi = (float(v) for v in opts['yaw'])
    if opts['yaw_sampling'] == 'bins':
        from nlml_hpe.uncertainty import YAW_BINS

        edges = np.clip(YAW_BINS, 0.0, max(abs(lo), abs(hi)))
        k = rng.integers(0, len(edges) - 1, n)
        yaw = np.clip(rng.uniform(edges[k], edges[k + 1]) * rng.choice([-1.0, 1.0], n), lo, hi)
    else:
        yaw = rng.uniform(lo, hi, n)
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

def _init_worker(cfg_faces, corr, size, model_dir, conditions):
    from nlml_hpe.estimator import HeadPoseEstimator

    from .camera_conditions import Appearance
    from .correspondence import to_head_frame
    from .faces import load_source
    from .render import make_renderer

    source = load_source(cfg_faces)
    renderer = make_renderer(source, cfg_faces, size)
    look = (Appearance(renderer.colours, to_head_frame(source.neutral, corr), conditions)
            if conditions['enabled'] else None)
    _WORKER.update(source=source, corr=corr, size=size, model_dir=model_dir,
                   renderer=renderer, look=look, colours=renderer.colours,
                   static=HeadPoseEstimator.from_pretrained(model_dir, flip_average=True,
                                                            num_threads=1))


def _render(coeffs, expr, rot, cam, cond):
    """Render one face; under the camera conditions ``cond`` unless they are off."""
    from .camera_conditions import head_mask
    from .correspondence import landmarks_of, to_head_frame
    from .render import camera_centre, project, vertex_normals

    w = _WORKER
    verts = to_head_frame(w['source'].vertices(coeffs, expr), w['corr'])
    args = (cam['distance'], cam['focal'], cam['offset'])
    if w['look'] is None:
        return w['renderer'].render(verts, rot, *args)
    view = verts @ rot.T + camera_centre(*args)
    w['renderer'].colours = w['look'].colours(cond, vertex_normals(view, w['renderer'].triangles)
                                              ).astype(np.float32)
    try:
        rgb = w['renderer'].render(verts, rot, *args)
    finally:
        w['renderer'].colours = w['colours']
    points = landmarks_of(w['source'], w['corr'], coeffs[None], expr[None])[0]
    pts = project(points, rot, cam['distance'], cam['focal'], w['size'], cam['offset'])
    return w['look'].finish(rgb, head_mask(w['renderer']), cond, pts[:, :2])


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

    coeffs, expr, rots, cams, ks, conds = task
    out = _empty(len(coeffs))
    for i in range(len(coeffs)):
        cam = {k: v[i] for k, v in cams.items()}
        rgb = _render(coeffs[i], expr[i], rots[i], cam, conds[i])
        _record(_WORKER['static'].estimate(rgb, camera=Camera(ks[i], *_WORKER['size'])), i, out)
    return out


def _sequence(task):
    """Render and read one sequence with a fresh streaming estimator (one pass).

    One draw of the conditions for the whole sequence; the sensor noise (its
    seed) changes every frame.
    """
    from nlml_hpe.camera import Camera
    from nlml_hpe.estimator import HeadPoseEstimator

    from .camera_conditions import COLUMNS

    coeffs, expr, rots, cam, k, cond = task
    out = _empty(len(rots))
    camera = Camera(k, *_WORKER['size'])
    with HeadPoseEstimator.from_pretrained(_WORKER['model_dir'], streaming=True,
                                           flip_average=False, num_threads=1) as est:
        for i, rot in enumerate(rots):
            frame = cond.copy()
            frame[COLUMNS.index('seed')] += 7919 * i
            _record(est.estimate(_render(coeffs, expr, rot, cam, frame), camera=camera), i, out)
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
    ``landmarks``, ``mirrored``, ``score``, ``sequence`` (-1: a single image),
    ``conditions`` (a row of :data:`training.camera_conditions.COLUMNS`; NaN
    with the conditions off).
    """
    from .camera_conditions import COLUMNS
    from .camera_conditions import draw as draw_conditions
    from .correspondence import load_correspondence
    from .faces import load_source, sample_expressions, sample_identities
    from .synth_landmarks import Projector

    source = load_source(cfg['faces'])
    corr = load_correspondence(inputs['correspondence'])
    lcfg = dict(cfg.get('landmarks', {}), distance_cm=list(opts['distance_cm']))
    projector = Projector(lcfg, rng)
    ecfg = cfg['faces'].get('expressions', {}) or {}
    expressions = lambda n: sample_expressions(  # noqa: E731
        source, n, rng, float(ecfg.get('max_weight', 0.0)), int(ecfg.get('n_active', 0)))
    n_ids = max(int(opts['identities']), 1)
    pool = sample_identities(source, n_ids, rng, float(cfg['faces'].get('identity_scale', 1.0)))
    cond_opts = opts['conditions']
    init = (cfg['faces'], corr, projector.size, str(model_dir), cond_opts)
    draw = (lambda: draw_conditions(cond_opts, rng)) if cond_opts['enabled'] else \
        (lambda: np.full(len(COLUMNS), np.nan))
    workers = int(opts['workers'])

    n = int(opts['samples'])
    angles = draw_static(opts, rng)
    ids = rng.integers(0, n_ids, n)
    expr = expressions(n)
    cams = projector.cameras(n)
    rots = projector.rotations(angles, cams)
    ks = projector.camera_matrices(cams)
    cams = {k: cams[k] for k in ('focal', 'distance', 'offset')}
    conds = np.stack([draw() for _ in range(n)]) if n else np.zeros((0, len(COLUMNS)))
    tasks = [(pool[ids[s:s + chunk]], expr[s:s + chunk], rots[s:s + chunk],
              {k: v[s:s + chunk] for k, v in cams.items()}, ks[s:s + chunk], conds[s:s + chunk])
             for s in range(0, n, chunk)]
    static = _run_tasks(_static_chunk, tasks, n, workers, init, 'uncertainty: renders')

    seq_angles, seq_ks, seq_tasks, seq_conds = [], [], [], []
    for _ in range(int(opts['sequences'])):
        ang = draw_sequence(opts, rng)
        e = expressions(1)[0]
        cam = projector.cameras(1)
        # One camera and head position for the whole sequence: the head turns in place.
        rot = projector.rotations(ang, {k: np.repeat(v, len(ang), 0) for k, v in cam.items()})
        k = projector.camera_matrices(cam)[0]
        cond = draw()
        seq_tasks.append((pool[rng.integers(0, n_ids)], e, rot,
                          {key: cam[key][0] for key in ('focal', 'distance', 'offset')}, k, cond))
        seq_angles.append(ang)
        seq_ks.append(np.repeat(k[None], len(ang), 0))
        seq_conds.append(np.repeat(cond[None], len(ang), 0))
    seqs = _run_tasks(_sequence, seq_tasks, sum(len(a) for a in seq_angles), workers, init,
                      'uncertainty: sequences') if seq_tasks else _empty(0)
    merged = {k: np.concatenate([static[k], seqs[k]]) for k in static}
    merged['angles'] = np.concatenate([angles] + seq_angles).astype(np.float32)
    merged['k'] = np.concatenate([ks] + seq_ks)
    merged['conditions'] = np.concatenate([conds] + seq_conds)
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
    """Return ``(samples, reused)``: ``samples.npz`` when it matches :func:`collection_key`."""
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
