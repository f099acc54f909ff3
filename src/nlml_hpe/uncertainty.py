"""How far a face's pose can be trusted: per-angle sigma and the readable-range state.

Face Mesh's landmarks saturate on strongly turned faces: beyond about 60 deg
of yaw its mesh hardly turns any more, so the network reads about 50-60 deg
whatever the true turn, with confidence it has not earned.  This module says
so, from cues the estimator already has (:mod:`nlml_hpe.uncertainty_cues`;
numpy only, a small fraction of what the estimator spends on a face):

* **beyond_range** / ``p_beyond`` -- the face is turned away beyond the
  readable range (true |yaw| above about 55-65 deg): a quadratic logistic
  regression on a few cues of self-occlusion and image quality
  (:data:`~nlml_hpe.uncertainty_cues.RANGE_FEATURES`), with the decision
  threshold chosen on renders;
* **sigma_deg** ``(pitch, yaw, roll)`` -- the spread of each angle's error with
  respect to the true pose: per angle, ``log sigma`` is linear in
  :data:`~nlml_hpe.uncertainty_cues.SIGMA_TERMS`, fitted on renders by quantile
  regression so that about :data:`COVERAGE` of the errors fall within one
  sigma in every |yaw| bin (a Gaussian's 1-sigma share).

Both models are fitted by the training stage :mod:`training.uncertainty` on
renders of identities used nowhere in training, under a mixture of a robot
camera's conditions (:mod:`training.camera_conditions`), and checked without
refitting on the AFLW2000 dev split (:mod:`nlml_hpe.bench.uncertainty`; the
tables: :mod:`nlml_hpe.uncertainty_tables`).  Their
coefficients ship in ``models/uncertainty.json`` (:func:`load_uncertainty`),
one set per reading mode: ``one_pass`` (as the node runs) and ``flip`` (flip
averaging on).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .small_json import read_small_json
from .uncertainty_cues import (
    ANGLES,
    FEATURES,
    N_RANGE_TERMS,
    RANGE_FEATURES,
    SIGMA_TERMS,
    features,
    range_terms,
    sigma_terms,
    sigma_terms_all,
)

__all__ = ['ANGLES', 'FEATURES', 'RANGE_FEATURES', 'SIGMA_TERMS', 'Assessment',
           'UncertaintyFileError', 'UncertaintyModel', 'features',
           'load_uncertainty', 'sigma_terms']

#: Share of errors meant to fall within one sigma (the 1-sigma share of a Gaussian).
COVERAGE = 0.68
#: Reading modes with their own coefficients.
MODES = ('one_pass', 'flip')
#: Sigma is kept within these bounds (degrees).
SIGMA_BOUNDS_DEG = (0.3, 90.0)
#: The |yaw| bins (degrees) of the calibration tables.
YAW_BINS = (0.0, 30.0, 50.0, 60.0, 70.0, 80.0, 90.0)
#: The readable-range targets: set in >= 95 % of faces beyond ``BEYOND_DEG``, in
#: <= 3 % of faces within ``WITHIN_DEG``.
BEYOND_DEG, WITHIN_DEG = 65.0, 45.0
#: 2: quadratic range classifier on seven cues, sigma calibrated per |yaw| bin.
FORMAT_VERSION = 2
FILE_NAME = 'uncertainty.json'
MAX_FILE_BYTES = 256 * 1024


class UncertaintyFileError(ValueError):
    """The uncertainty artifact is missing, malformed or for another feature set."""


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
        flip = np.asarray(flip_average, dtype=bool)
        if flip.ndim and flip.shape != (len(f),):
            raise ValueError(f'flip_average must be one value or {len(f)}, got {flip.shape}')
        if flip.ndim == 0 or not (flip.any() and not flip.all()):  # one mode for all (usual)
            mode = 'flip' if flip.size and bool(flip.flat[0]) else 'one_pass'
            return Assessment(*self._assess_mode(self.modes[mode], f))
        sigma, p = np.empty((len(f), 3)), np.empty(len(f))
        beyond = np.zeros(len(f), dtype=bool)
        for mode, sel in (('flip', flip), ('one_pass', ~flip)):
            sigma[sel], beyond[sel], p[sel] = self._assess_mode(self.modes[mode], f[sel])
        return Assessment(sigma, beyond, p)

    @staticmethod
    def _assess_mode(m, feats):
        f = np.clip(feats, m['feature_low'], m['feature_high'])  # no extrapolation
        r = m['range']
        z = range_terms((f[:, r['columns']] - r['mean']) / r['std']) @ r['coef'] + r['intercept']
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -40.0, 40.0)))
        terms = sigma_terms_all(f, p)  # (3, N, T): each angle's terms
        log_sigma = np.stack([terms[a] @ m['sigma'][a] for a in range(3)], axis=1)
        sigma = np.exp(np.clip(log_sigma, -5.0, 5.0))
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
        if r.get('terms') != 'quadratic':
            raise UncertaintyFileError(f"{name}: range terms {r.get('terms')!r} are not "
                                       "'quadratic'")
        out = {'feature_low': _vector(m['feature_low'], nf, f'{name}.feature_low'),
               'feature_high': _vector(m['feature_high'], nf, f'{name}.feature_high'),
               'range': {'columns': [FEATURES.index(k) for k in RANGE_FEATURES],
                         'mean': _vector(r['mean'], nr, f'{name}.range.mean'),
                         'std': _vector(r['std'], nr, f'{name}.range.std'),
                         'coef': _vector(r['coef'], N_RANGE_TERMS, f'{name}.range.coef'),
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


def load_uncertainty(path, model_weights=None):
    """Load and validate an uncertainty artifact (``path``: the file, or its model's folder).

    ``model_weights``: the ``.safetensors`` file the poses come from; the
    artifact must name its sha256 (it was fitted to that model's errors).
    Raises :class:`UncertaintyFileError` (a ``ValueError``) naming the file.
    """
    path = Path(path)
    if path.is_dir():
        path = path / FILE_NAME
    try:
        data = read_small_json(path, MAX_FILE_BYTES)
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
