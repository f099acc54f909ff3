"""How far a face's pose can be trusted: per-angle sigma and the readable-range state.

Face Mesh's landmarks saturate on strongly turned faces: beyond about 60 deg
of yaw its mesh hardly turns any more, so the network reads about 50-60 deg
whatever the true turn, with confidence it has not earned.  This module says
so, from cues the estimator already has (numpy only; about a tenth of the time
the estimator spends on a face after the landmark model):

* **beyond_range** / ``p_beyond`` -- the face is turned away beyond the
  readable range (true |yaw| above about 55-65 deg): a logistic regression on
  a few cues of self-occlusion (:data:`RANGE_FEATURES`), with the decision
  threshold chosen on renders;
* **sigma_deg** ``(pitch, yaw, roll)`` -- the spread of each angle's error:
  per angle, ``log sigma`` is linear in :data:`SIGMA_TERMS`, fitted on renders
  by quantile regression so that about :data:`COVERAGE` of the errors fall
  within one sigma (a Gaussian's 1-sigma share).

The cues (:func:`features`): the fused angles; the disagreement of the network
with the rigid fit (:attr:`FacePose.network_angles <nlml_hpe.estimator.FacePose>`
against the fused angles); the landmark model's face-presence score, which
drops steeply beyond 60 deg (``log10(1 - score)``); the far eye's and far
cheek's foreshortening; the depth extent of the mesh; the face's size in pixels.

Both models are fitted by the training stage :mod:`training.uncertainty` on
renders of identities used nowhere in training, and checked without refitting on
the AFLW2000 dev split (``python -m nlml_hpe.uncertainty DIR`` prints the table,
:func:`calibration_table`).  Their coefficients ship in
``models/uncertainty.json`` (:func:`load_uncertainty`), one set per reading mode:
``one_pass`` (as the node runs) and ``flip`` (flip averaging on).
"""

from dataclasses import dataclass
import json
from pathlib import Path

import numpy as np

from .features import as_landmark_batch

#: Share of errors meant to fall within one sigma (the 1-sigma share of a Gaussian).
COVERAGE = 0.68
#: Order of the angles of ``sigma_deg`` (that of :attr:`FacePose.angles`).
ANGLES = ('pitch', 'yaw', 'roll')
#: Reading modes with their own coefficients.
MODES = ('one_pass', 'flip')
#: The per-face cues of :func:`features`, in column order.
FEATURES = ('abs_pitch', 'abs_yaw', 'abs_roll', 'split_pitch', 'split_yaw', 'split_roll',
            'presence', 'eye_ratio', 'cheek_ratio', 'depth_extent', 'log_eye_px')
#: Cues of the beyond-range classifier.
RANGE_FEATURES = ('abs_yaw', 'split_yaw', 'presence', 'eye_ratio', 'cheek_ratio',
                  'depth_extent')
#: Terms of each angle's ``log sigma`` (``split`` is that angle's own split).
SIGMA_TERMS = ('one', 'p_beyond', 'abs_yaw', 'abs_yaw_sq', 'abs_pitch', 'abs_roll', 'split',
               'presence', 'presence_hinge', 'log_eye_px')
#: ``presence_hinge = max(presence - PRESENCE_KNEE, 0)``: the presence cue's steep part.
PRESENCE_KNEE = -4.0
#: ``log10(1 - score)`` is clipped here (a float32 score of 1.0 reads as this).
PRESENCE_FLOOR = -7.0
#: Sigma is kept within these bounds (degrees).
SIGMA_BOUNDS_DEG = (0.3, 90.0)
#: The |yaw| bins (degrees) of the calibration tables.
YAW_BINS = (0.0, 30.0, 50.0, 60.0, 70.0, 80.0, 90.0)
#: The readable-range targets: set in >= 95 % of faces beyond ``BEYOND_DEG``, in
#: <= 3 % of faces within ``WITHIN_DEG``.
BEYOND_DEG, WITHIN_DEG = 65.0, 45.0
FORMAT_VERSION = 1
FILE_NAME = 'uncertainty.json'
MAX_FILE_BYTES = 256 * 1024
# Landmarks: outer and inner eye corners (subject's right eye 33-133, left 263-362),
# the cheeks' outermost contour points (234 right, 454 left) and the nose tip.
_R_OUT, _R_IN, _L_OUT, _L_IN, _R_CHEEK, _L_CHEEK, _NOSE = 33, 133, 263, 362, 234, 454, 1


class UncertaintyFileError(ValueError):
    """The uncertainty artifact is missing, malformed or for another feature set."""


def features(landmarks_px, angles, network_angles, scores, rigid_angles=None):
    """Return the cues :data:`FEATURES` of ``N`` faces: ``(N, len(FEATURES))``.

    ``landmarks_px`` ``(N, 468, 3)`` (or one face) as on :class:`FacePose`;
    ``angles`` ``(N, 3)`` the reported (fused) pitch, yaw, roll in degrees;
    ``network_angles`` the network's alone; ``scores`` the landmark model's
    face-presence scores (:attr:`FacePose.score` from
    :meth:`~nlml_hpe.estimator.HeadPoseEstimator.estimate`; a stand-in 1.0 hides
    the strongest cue beyond the range); ``rigid_angles`` the rigid fit's
    angles (default: what rigid fusion implies, ``2 * angles - network_angles``).
    """
    lm = as_landmark_batch(landmarks_px)
    n = len(lm)
    ang = _rows(angles, n, 'angles')
    net = _rows(network_angles, n, 'network_angles')
    rig = 2.0 * ang - net if rigid_angles is None else _rows(rigid_angles, n, 'rigid_angles')
    sc = np.asarray(scores, dtype=np.float64).reshape(-1)
    if sc.shape != (n,) or not np.all((sc >= 0.0) & (sc <= 1.0)):
        raise ValueError(f'scores must be {n} values in [0, 1], got {np.asarray(scores)!r}')
    eye = lm[:, _L_OUT, :2] - lm[:, _R_OUT, :2]
    iod = np.maximum(np.linalg.norm(eye, axis=1), 1e-6)
    x = np.einsum('nij,nj->ni', lm[:, :, :2], eye / iod[:, None])  # along the eye axis
    width = np.maximum(x.max(axis=1) - x.min(axis=1), 1e-6)
    out = np.empty((n, len(FEATURES)))
    out[:, 0:3] = np.abs(ang) / 90.0
    out[:, 3:6] = np.log1p(np.abs(net - rig))
    out[:, 6] = np.log10(np.maximum(1.0 - sc, 10.0 ** PRESENCE_FLOOR))
    out[:, 7] = _log_ratio(np.abs(x[:, _R_IN] - x[:, _R_OUT]), np.abs(x[:, _L_OUT] - x[:, _L_IN]))
    out[:, 8] = _log_ratio(np.abs(x[:, _NOSE] - x[:, _R_CHEEK]),
                           np.abs(x[:, _L_CHEEK] - x[:, _NOSE]))
    out[:, 9] = (lm[:, :, 2].max(axis=1) - lm[:, :, 2].min(axis=1)) / width
    out[:, 10] = np.log(iod)
    return out


def _rows(a, n, name):
    a = np.asarray(a, dtype=np.float64).reshape(-1, 3) if np.size(a) else np.zeros((0, 3))
    if a.shape != (n, 3) or not np.all(np.isfinite(a)):
        raise ValueError(f'{name} must be {n} finite (pitch, yaw, roll) rows')
    return a


def _log_ratio(a, b):
    """``log(min / max)`` of two positive lengths (0: equal; very negative: one collapsed)."""
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    return np.log(np.maximum(lo, 1e-3 * hi + 1e-9) / np.maximum(hi, 1e-9))


def sigma_terms(feats, p_beyond, angle):
    """Return the :data:`SIGMA_TERMS` matrix ``(N, len(SIGMA_TERMS))`` of angle 0, 1 or 2."""
    f = {k: feats[:, i] for i, k in enumerate(FEATURES)}
    presence = f['presence']
    return np.stack([np.ones(len(feats)), p_beyond, f['abs_yaw'], f['abs_yaw'] ** 2,
                     f['abs_pitch'], f['abs_roll'], f[f'split_{ANGLES[angle]}'], presence,
                     np.maximum(presence - PRESENCE_KNEE, 0.0), f['log_eye_px']], axis=1)


@dataclass
class Assessment:
    """The uncertainty of ``N`` faces' poses.

    ``sigma_deg`` ``(N, 3)``: pitch, yaw, roll (the order of
    :attr:`FacePose.angles`); ``beyond_range`` ``(N,)`` bool; ``p_beyond``
    ``(N,)`` the classifier's probability that the face is turned beyond the
    readable range.
    """

    sigma_deg: np.ndarray
    beyond_range: np.ndarray
    p_beyond: np.ndarray


class UncertaintyModel:
    """The fitted coefficients of one artifact (see :func:`load_uncertainty`)."""

    def __init__(self, data, name='<uncertainty>'):
        self.name = name
        self.data = data
        self.modes = {m: _check_mode(data['modes'][m], f'{name}: modes.{m}') for m in MODES}
        self.provenance = data.get('provenance', {})

    def assess(self, landmarks_px, angles, network_angles, scores, *, flip_average=False,
               rigid_angles=None):
        """Return the :class:`Assessment` of ``N`` faces (arguments as :func:`features`).

        ``flip_average``: whether the readings were flip-averaged (the ``flip``
        coefficients; else ``one_pass``), for all faces or per face (a face
        whose mirrored twin was not found is a one-pass reading).
        """
        return self.assess_features(features(landmarks_px, angles, network_angles, scores,
                                             rigid_angles), flip_average=flip_average)

    def assess_features(self, feats, *, flip_average=False):
        """:meth:`assess` from precomputed :func:`features` ``(N, len(FEATURES))``."""
        f = np.asarray(feats, dtype=np.float64).reshape(-1, len(FEATURES))
        flip = np.broadcast_to(np.asarray(flip_average, dtype=bool), (len(f),))
        sigma, p = np.empty((len(f), 3)), np.empty(len(f))
        beyond = np.zeros(len(f), dtype=bool)
        for mode, sel in (('flip', flip), ('one_pass', ~flip)):
            if sel.any():
                sigma[sel], beyond[sel], p[sel] = self._assess_mode(self.modes[mode], f[sel])
        return Assessment(sigma, beyond, p)

    @staticmethod
    def _assess_mode(m, feats):
        f = np.clip(feats, m['feature_low'], m['feature_high'])  # no extrapolation
        r = m['range']
        z = (f[:, r['columns']] - r['mean']) / r['std'] @ r['coef'] + r['intercept']
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -40.0, 40.0)))
        sigma = np.empty((len(f), 3))
        for a in range(3):
            sigma[:, a] = np.exp(np.clip(sigma_terms(f, p, a) @ m['sigma'][a], -5.0, 5.0))
        return np.clip(sigma, *SIGMA_BOUNDS_DEG), p >= r['threshold'], p

    def assess_poses(self, poses):
        """:meth:`assess` of a list of :class:`~nlml_hpe.estimator.FacePose` (rigid fusion on).

        A face with ``mirrored_landmarks`` was flip-averaged.
        """
        if not poses:
            return Assessment(np.zeros((0, 3)), np.zeros(0, bool), np.zeros(0))
        return self.assess(np.stack([p.landmarks for p in poses]),
                           np.stack([p.angles for p in poses]),
                           np.stack([p.network_angles for p in poses]),
                           [p.score for p in poses],
                           flip_average=[p.mirrored_landmarks is not None for p in poses])


def _check_mode(m, name):
    """Validate one mode's coefficients; return them as numpy arrays."""
    try:
        if list(m['features']) != list(FEATURES):
            raise UncertaintyFileError(f'{name}: features {m["features"]} are not this '
                                       f"version's {list(FEATURES)}")
        r = m['range']
        if list(r['features']) != list(RANGE_FEATURES):
            raise UncertaintyFileError(f'{name}: range features {r["features"]} are not '
                                       f'{list(RANGE_FEATURES)}')
        if list(m['sigma_terms']) != list(SIGMA_TERMS):
            raise UncertaintyFileError(f'{name}: sigma terms {m["sigma_terms"]} are not '
                                       f'{list(SIGMA_TERMS)}')
        nr, nt, nf = len(RANGE_FEATURES), len(SIGMA_TERMS), len(FEATURES)
        out = {'feature_low': _vector(m['feature_low'], nf, f'{name}.feature_low'),
               'feature_high': _vector(m['feature_high'], nf, f'{name}.feature_high'),
               'range': {'columns': [FEATURES.index(k) for k in RANGE_FEATURES],
                         'mean': _vector(r['mean'], nr, f'{name}.range.mean'),
                         'std': _vector(r['std'], nr, f'{name}.range.std'),
                         'coef': _vector(r['coef'], nr, f'{name}.range.coef'),
                         'intercept': float(_vector([r['intercept']], 1, name)[0]),
                         'threshold': float(_vector([r['threshold']], 1, name)[0])},
               'sigma': [_vector(m['sigma'][a], nt, f'{name}.sigma.{a}') for a in ANGLES]}
    except (KeyError, TypeError) as exc:
        raise UncertaintyFileError(f'{name}: missing or malformed entry {exc}') from None
    if not np.all(out['feature_low'] <= out['feature_high']):
        raise UncertaintyFileError(f'{name}: feature_low above feature_high')
    if not np.all(out['range']['std'] > 0):
        raise UncertaintyFileError(f'{name}: range.std must be positive')
    if not 0.0 < out['range']['threshold'] < 1.0:
        raise UncertaintyFileError(f'{name}: range.threshold must be in (0, 1)')
    return out


def _vector(v, n, name):
    a = np.asarray(v, dtype=np.float64)
    if a.shape != (n,) or not np.all(np.isfinite(a)):
        raise UncertaintyFileError(f'{name}: expected {n} finite numbers')
    return a


def default_path():
    """``uncertainty.json`` beside the shipped model (:func:`nlml_hpe.model.default_model_dir`)."""
    from .model import default_model_dir

    return default_model_dir() / FILE_NAME


def load_uncertainty(path=None, model_weights=None):
    """Load and validate an uncertainty artifact (default: :func:`default_path`).

    ``model_weights``: the ``.safetensors`` file the poses come from; the
    artifact must name its sha256 (it was fitted to that model's errors).
    Raises :class:`UncertaintyFileError` (a ``ValueError``) naming the file.
    """
    path = Path(default_path() if path is None else path)
    if path.is_dir():
        path = path / FILE_NAME
    try:
        if not path.is_file():
            raise OSError('not found or not a regular file')
        if path.stat().st_size > MAX_FILE_BYTES:
            raise OSError(f'larger than {MAX_FILE_BYTES} bytes')
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise UncertaintyFileError(f'cannot read uncertainty artifact {path}: '
                                   f'{type(exc).__name__}: {exc}') from None
    if not isinstance(data, dict) or data.get('format_version') != FORMAT_VERSION:
        raise UncertaintyFileError(f'{path}: not an uncertainty artifact of format version '
                                   f'{FORMAT_VERSION}')
    if not isinstance(data.get('modes'), dict) or set(data['modes']) != set(MODES):
        raise UncertaintyFileError(f'{path}: modes must be {list(MODES)}')
    if model_weights is not None:
        import hashlib

        digest = hashlib.sha256(Path(model_weights).read_bytes()).hexdigest()
        fitted = data.get('provenance', {}).get('model_sha256')
        if digest != fitted:
            raise UncertaintyFileError(f'{path} was fitted to model weights of sha256 '
                                       f'{fitted}, not to {model_weights} ({digest})')
    return UncertaintyModel(data, str(path))


# ---------------------------------------------------------------- calibration tables

def calibration_table(true_angles, angles, sigma, beyond, found=None, bins=YAW_BINS):
    """Per |yaw| bin: found share, MAE, share of errors within 1 sigma, beyond-range share.

    ``true_angles`` ``(N, 3)`` (pitch, yaw, roll) of every face shown; the
    rest are the readings of the found ones (rows of missed faces are
    ignored; ``found`` marks them, default: finite ``angles``).  Returns a
    dict with ``bins`` (one entry per bin) and ``targets`` (the readable-range
    shares beyond :data:`BEYOND_DEG` and within :data:`WITHIN_DEG`).
    """
    t = np.asarray(true_angles, dtype=np.float64)
    a = np.asarray(angles, dtype=np.float64)
    s = np.asarray(sigma, dtype=np.float64)
    b = np.asarray(beyond, dtype=bool)
    found = np.all(np.isfinite(a), axis=1) if found is None else np.asarray(found, bool)
    ay = np.abs(t[:, 1])
    inside = np.abs(a - t) <= s
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


def check_readings(model, true_angles, angles, network_angles, landmarks, scores, flip):
    """:func:`calibration_table` of readings assessed by ``model`` (an :class:`UncertaintyModel`).

    Rows of ``angles`` that are NaN are faces not found; ``flip`` (per face)
    marks flip-averaged readings.
    """
    angles = np.asarray(angles, dtype=np.float64)
    ok = np.all(np.isfinite(angles), axis=1)
    sigma, beyond = np.full((len(angles), 3), np.nan), np.zeros(len(angles), dtype=bool)
    if ok.any():
        a = model.assess(np.asarray(landmarks)[ok], angles[ok],
                         np.asarray(network_angles)[ok], np.asarray(scores)[ok],
                         flip_average=np.broadcast_to(flip, ok.shape)[ok])
        sigma[ok], beyond[ok] = a.sigma_deg, a.beyond_range
    return calibration_table(true_angles, angles, sigma, beyond, ok)


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
    lines.append('')
    lines.append(f'beyond-range set: {pct(far[0])} % of {far[1]} found faces with |yaw| > '
                 f'{BEYOND_DEG:g} (target >= 95 %), {pct(near[0])} % of {near[1]} with |yaw| < '
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


def dev_check(directory, model_dir=None, artifact=None, limit=None, progress=False):
    """Per-|yaw|-bin :func:`calibration_table` of both modes on an AFLW2000 directory.

    Nothing is fitted here: the model (``model_dir``, default the shipped one)
    reads each image once with flip averaging; its one-pass reading is that of
    the direct landmarks alone.  ``artifact``: the uncertainty file (default:
    beside the model, checked to be fitted to it).
    """
    from .estimator import HeadPoseEstimator
    from .model import WEIGHTS_NAME, default_model_dir

    model_dir = Path(default_model_dir() if model_dir is None else model_dir)
    unc = load_uncertainty(model_dir / FILE_NAME if artifact is None else artifact,
                           model_dir / WEIGHTS_NAME)
    with HeadPoseEstimator.from_pretrained(model_dir, flip_average=True) as est:
        faces = collect_aflw(directory, est, limit, progress)
        out = {'dataset': str(directory), 'images': len(faces['true'])}
        twin = np.all(np.isfinite(faces['mirrored']), axis=(1, 2))
        for mode in MODES:
            flip = mode == 'flip'
            ang, net = read_landmarks(est, faces['landmarks'], faces['mirrored'],
                                      faces['cameras'], flip)
            out[mode] = check_readings(unc, faces['true'], ang, net, faces['landmarks'],
                                       faces['score'], flip & twin)
    return out


def main(argv=None):
    """``python -m nlml_hpe.uncertainty DIR``: print the dev-split calibration tables."""
    import argparse

    parser = argparse.ArgumentParser(
        prog='python -m nlml_hpe.uncertainty',
        description='Per-|yaw|-bin calibration of the uncertainty model on an AFLW2000-3D '
                    'directory (a check: nothing is fitted).')
    parser.add_argument('directory', help='AFLW2000-3D images + .mat labels')
    parser.add_argument('--model', help='model directory (default: the shipped one)')
    parser.add_argument('--uncertainty', help='uncertainty.json (default: beside the model)')
    parser.add_argument('--limit', type=int, help='first N images only')
    parser.add_argument('--json', help='also write the tables to this file')
    args = parser.parse_args(argv)
    try:
        result = dev_check(args.directory, args.model, args.uncertainty, args.limit, True)
    except ValueError as exc:
        parser.exit(2, f'error: {exc}\n')
    for mode, title in (('one_pass', 'one pass (as the node runs)'),
                        ('flip', 'flip averaging (the CLI default for single images)')):
        print(format_table(result[mode], f"{result['dataset']}: {title}"), end='\n\n')
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + '\n')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
