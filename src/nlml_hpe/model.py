"""The NLML-HPE networks: landmark encoder and per-angle heads, with safe I/O.

* Encoder: 1404 -> 1024 -> 512 -> 256 -> 128 -> 64 -> 9 (ReLU, tanh at 64 as in
  the authors' code).  Its 9 outputs are three 3-d latents: yaw, pitch, roll.
* Heads: one per angle, 3 -> 128 -> 256 -> 128 -> 64 -> 1 (ReLU), each mapping a
  3-d latent to its angle in radians.

Optional calibration: ``calibration.<angle>`` tensors hold the coefficients
``c1, c3, ...`` of an odd polynomial ``c1*x + c3*x**3 + ...`` (x: the head's
output in radians) that maps the head's output to the calibrated angle (see
``training/calibrate.py``: it undoes MediaPipe's compression of large yaw,
measured on renders).  Angles without one are returned as the heads give them.

Weights are stored as safetensors (never pickles) beside a small JSON file of
metadata.  :func:`load_model` validates every tensor's name and shape, then
runs the model once on MediaPipe's canonical face (:func:`sanity_check`): it
must read finite angles within :data:`SANITY_MAX_DEG` of zero on the frontal
face and finite ones on turned copies.  Every failure, whatever raised it
(a corrupt file, deeply nested metadata, overflowing weights), is a
:class:`ModelFileError` naming the file.

Inference is numpy-only: :func:`load_model` reads the weights with
``safetensors.numpy`` and :class:`PoseModel` runs the MLPs in float32 numpy, so
the ROS node never imports torch.  The torch module of the same architecture,
used for training, is ``training.nlmlnet.NLMLNet`` (it takes its sizes from
here).
"""

from functools import lru_cache
import json
from pathlib import Path

import numpy as np

from .features import N_FEATURES
from .small_json import read_small_json
from .uncertainty import FILE_NAME as UNCERTAINTY_FILE
from .uncertainty import UncertaintyFileError, load_uncertainty

ENCODER_SIZES = (N_FEATURES, 1024, 512, 256, 128, 64, 9)
HEAD_SIZES = (3, 128, 256, 128, 64, 1)
#: Order of the latents and heads.
LATENT_ANGLES = ('yaw', 'pitch', 'roll')
#: Columns of the heads' (yaw, pitch, roll) that give (pitch, yaw, roll).
_PITCH_YAW_ROLL = [1, 0, 2]
WEIGHTS_NAME = 'nlml_hpe.safetensors'
METADATA_NAME = 'nlml_hpe.json'


#: Frames a model's angles can be in (metadata ``angle_frame``): ``apparent`` =
#: relative to the line of sight to the head (what the face's image shows);
#: ``camera`` = relative to the optical axis (models exported before
#: ``angle_frame`` existed, which have no such key).
ANGLE_FRAMES = ('apparent', 'camera')

#: Prefix of the optional per-angle calibration tensors.
CALIBRATION_PREFIX = 'calibration.'
#: Most odd-polynomial coefficients a calibration may have (c1, c3, c5, c7).
MAX_CALIBRATION_TERMS = 4
#: A calibration must be strictly increasing on |x| <= this (radians; 120 deg).
CALIBRATION_CHECK_RAD = np.radians(120.0)


#: Largest weights file :func:`load_model` reads (bytes): the architecture's
#: tensors in float64 and calibrations are about 17 MB.
MAX_WEIGHTS_BYTES = 64 * 2 ** 20
#: Largest metadata file (bytes).
MAX_METADATA_BYTES = 2 ** 20
#: Largest |angle| (degrees) a model may read on MediaPipe's canonical face seen
#: frontally.  The shipped model reads (pitch, yaw, roll) = (0.23, -0.09, -0.05)
#: there; untrained networks (random initialisation, the tests' fixtures) read
#: at most 8.3 over 20 seeds.  A model beyond 15 deg is broken or not an
#: NLML-HPE head pose model.
SANITY_MAX_DEG = 15.0
#: Turned copies of the canonical face the sanity check also runs (pitch, yaw, roll).
SANITY_TURNS_DEG = ((0.0, 40.0, 0.0), (0.0, -40.0, 0.0), (25.0, 0.0, 0.0),
                    (-25.0, 0.0, 0.0), (0.0, 0.0, 30.0))


class ModelFileError(ValueError):
    """A model file is missing, unreadable or does not match the architecture."""


def odd_polynomial(coeffs, x):
    """Evaluate ``c1*x + c3*x**3 + ...`` for coefficients ``(c1, c3, ...)``.

    Horner's rule in ``x**2``: ``x * (c1 + x**2 * (c3 + x**2 * c5))``; cheap
    enough for the per-frame path (a few microseconds for one face).  ``coeffs``
    may also be a ``(terms, K)`` table: column ``k`` is the polynomial of
    ``x[..., k]`` (zero-padded high terms leave a shorter polynomial as it is).
    """
    x = np.asarray(x, dtype=np.float64)
    c = np.asarray(coeffs, dtype=np.float64)
    x2 = x * x
    acc = c[-1]
    for ck in c[-2::-1]:
        acc = acc * x2 + ck
    return x * acc


def check_calibration(coeffs, name='calibration'):
    """Raise ``ValueError`` unless ``coeffs`` is a usable odd polynomial.

    Usable: 1 to :data:`MAX_CALIBRATION_TERMS` finite coefficients whose
    polynomial is strictly increasing on ``|x| <=`` :data:`CALIBRATION_CHECK_RAD`
    (so it never folds two head outputs onto one angle).
    """
    c = np.asarray(coeffs)
    if c.ndim != 1 or not 1 <= len(c) <= MAX_CALIBRATION_TERMS:
        raise ValueError(f'{name}: expected 1 to {MAX_CALIBRATION_TERMS} coefficients, '
                         f'got shape {c.shape}')
    if not np.issubdtype(c.dtype, np.floating) or not np.all(np.isfinite(c)):
        raise ValueError(f'{name}: coefficients must be finite floats')
    x = np.linspace(-CALIBRATION_CHECK_RAD, CALIBRATION_CHECK_RAD, 2001)
    slope = sum((2 * k + 1) * float(ck) * x ** (2 * k) for k, ck in enumerate(c))
    if not np.all(slope > 0):
        raise ValueError(f'{name}: polynomial is not strictly increasing within '
                         f'+-{np.degrees(CALIBRATION_CHECK_RAD):.0f} deg')


def _linear_keys(prefix, sizes):
    """``[(weight_key, bias_key, (out, in)), ...]`` of an MLP of layer ``sizes``.

    ``nn.Sequential`` numbers Linear layers 0, 2, 4, ... (activations between).
    """
    return [(f'{prefix}.{2 * i}.weight', f'{prefix}.{2 * i}.bias', (b, a))
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))]


def expected_shapes():
    """Return ``{tensor name: shape}`` of a complete NLML-HPE state dict."""
    shapes = {'feature_mean': (N_FEATURES,), 'feature_std': (N_FEATURES,)}
    mlps = [('encoder', ENCODER_SIZES)] + [(f'heads.{i}', HEAD_SIZES)
                                           for i in range(len(LATENT_ANGLES))]
    for prefix, sizes in mlps:
        for wkey, bkey, (out, inp) in _linear_keys(prefix, sizes):
            shapes[wkey] = (out, inp)
            shapes[bkey] = (out,)
    return shapes


# --------------------------------------------------------------------------- numpy inference

class PoseModel:
    """Numpy-in, numpy-out model: features ``(N, 1404)`` -> ``(N, 3)`` pitch, yaw, roll (deg).

    ``weights`` is a state dict (name -> array) as written by :func:`save_model`
    (a torch ``training.nlmlnet.NLMLNet``'s through
    ``training.nlmlnet.state_dict_to_numpy``).  The forward pass is float32
    numpy and matches the torch forward within 1e-4.
    """

    #: The :class:`~nlml_hpe.uncertainty.UncertaintyModel` fitted to these weights'
    #: errors (``uncertainty.json`` beside them; :func:`load_model`), or None.
    uncertainty = None

    def __init__(self, weights, metadata=None):
        _check_state(weights, '<in-memory weights>')
        w = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
        self.metadata = dict(metadata or {})
        #: Frame of the predicted angles (see :data:`ANGLE_FRAMES`).
        self.angle_frame = self.metadata.get('angle_frame', 'camera')
        if self.angle_frame not in ANGLE_FRAMES:
            raise ModelFileError(f'model metadata angle_frame must be one of {ANGLE_FRAMES}, '
                                 f'got {self.angle_frame!r}')
        self._mean = w['feature_mean'].copy()
        with np.errstate(all='ignore'):
            self._inv_std = (1.0 / w['feature_std']).astype(np.float32)
        # Weights keep torch's (out, in) layout: ``h @ w.T`` is a fast BLAS call for
        # one face as well as for a batch.  The three heads are stacked so each of
        # their layers is one batched matmul.
        self._encoder = [(np.ascontiguousarray(w[wk]), w[bk].copy())
                         for wk, bk, _ in _linear_keys('encoder', ENCODER_SIZES)]
        self._calibration = {a: w[f'{CALIBRATION_PREFIX}{a}'].astype(np.float64)
                             for a in LATENT_ANGLES if f'{CALIBRATION_PREFIX}{a}' in w}
        # The same as one (terms, 3) table for odd_polynomial, column j the coefficients
        # of angle j (an uncalibrated angle: c1 = 1), highest terms zero-padded: one
        # Horner pass for all angles, exactly the arithmetic of one pass per angle.
        terms = max([len(c) for c in self._calibration.values()], default=1)
        self._calibration_table = np.zeros((terms, len(LATENT_ANGLES)))
        for j, a in enumerate(LATENT_ANGLES):
            c = self._calibration.get(a, np.ones(1))
            self._calibration_table[:len(c), j] = c
        n_heads = len(LATENT_ANGLES)
        self._heads = []
        for wk, bk, _ in _linear_keys('head', HEAD_SIZES):
            wk, bk = wk.split('.', 1)[1], bk.split('.', 1)[1]
            self._heads.append((
                np.stack([w[f'heads.{j}.{wk}'].T for j in range(n_heads)]),
                np.stack([w[f'heads.{j}.{bk}'] for j in range(n_heads)])[:, None, :]))

    @staticmethod
    def _check(features):
        x = np.asarray(features, dtype=np.float32)
        if x.ndim == 1 and x.shape[0] == N_FEATURES:
            x = x[None]
        if x.ndim != 2 or x.shape[1] != N_FEATURES:
            raise ValueError(f'expected features of shape (N, {N_FEATURES}), got {x.shape}')
        if not np.all(np.isfinite(x)):
            raise ValueError('features contain NaN or inf')
        return x

    def _encode(self, x):
        h = (x - self._mean) * self._inv_std
        last = len(self._encoder) - 1
        for i, (w, b) in enumerate(self._encoder):
            h = h @ w.T
            h += b
            if i == last - 1:
                np.tanh(h, out=h)
            elif i < last:
                np.maximum(h, 0.0, out=h)
        return h

    def _decode(self, latents):
        n_heads = len(LATENT_ANGLES)
        # (N, 9) -> (3, N, 3): one 3-d latent per head.
        h = np.ascontiguousarray(latents.reshape(len(latents), n_heads, 3).transpose(1, 0, 2))
        last = len(self._heads) - 1
        for i, (w, b) in enumerate(self._heads):
            h = np.matmul(h, w)
            h += b
            if i < last:
                np.maximum(h, 0.0, out=h)
        return np.ascontiguousarray(h[:, :, 0].T)

    def _forward(self, x):
        latents = self._encode(x)
        return latents, self._decode(latents)

    def forward(self, features):
        """Return ``(latents (N, 9), angles (N, 3) radians ordered yaw, pitch, roll)``.

        The angles are the heads' raw output, before any calibration.
        """
        return self._forward(self._check(features))

    @property
    def calibration(self):
        """``{angle: (c1, c3, ...)}`` odd-polynomial calibration per angle (may be empty)."""
        return {a: c.copy() for a, c in self._calibration.items()}

    def calibrate(self, angles_rad):
        """Apply the calibration to raw head outputs ``(N, 3)`` (radians, yaw, pitch, roll)."""
        x = np.asarray(angles_rad, dtype=np.float64)
        if not self._calibration:
            return x.copy()
        return odd_polynomial(self._calibration_table, x)

    def predict(self, features, calibrated=True):
        """Predict AFLW2000-convention ``(pitch, yaw, roll)`` in degrees for each row.

        ``calibrated=False`` returns the heads' raw output.
        """
        x = self._check(features)
        if len(x) == 0:
            return np.zeros((0, 3), dtype=np.float64)
        _, ang = self._forward(x)
        ang = self.calibrate(ang) if calibrated else ang.astype(np.float64)
        return np.degrees(ang[:, _PITCH_YAW_ROLL])

    def decode(self, latents):
        """Map latents ``(N, 9)`` to ``(N, 3)`` radians ordered yaw, pitch, roll (heads only)."""
        lat = np.asarray(latents, dtype=np.float32)
        if lat.ndim != 2 or lat.shape[1] != 3 * len(LATENT_ANGLES):
            raise ValueError(f'expected latents of shape (N, 9), got {lat.shape}')
        if not np.all(np.isfinite(lat)):
            raise ValueError('latents contain NaN or inf')
        return self._decode(lat)

    def latents(self, features):
        """Return the encoder's ``(N, 9)`` latents (yaw, pitch, roll blocks)."""
        x = self._check(features)
        if len(x) == 0:
            return np.zeros((0, 9), dtype=np.float32)
        return self._encode(x)


def _check_state(state, name):
    expected = expected_shapes()
    calibration = {f'{CALIBRATION_PREFIX}{a}' for a in LATENT_ANGLES}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected) - calibration)
    if missing or unexpected:
        raise ModelFileError(f'{name} does not match the NLML-HPE architecture: '
                             f'missing {missing[:5]}, unexpected {unexpected[:5]}')
    for key, shape in expected.items():
        arr = np.asarray(state[key])
        if tuple(arr.shape) != shape:
            raise ModelFileError(f'{name}: tensor {key!r} has shape {tuple(arr.shape)}, '
                                 f'expected {shape}')
        if not np.issubdtype(arr.dtype, np.floating):
            raise ModelFileError(f'{name}: tensor {key!r} has dtype {arr.dtype}, expected float')
        if not np.all(np.isfinite(arr)):
            raise ModelFileError(f'{name}: tensor {key!r} contains NaN or inf')
    std = np.asarray(state['feature_std'], dtype=np.float32)
    if np.any(std <= 0):
        raise ModelFileError(f'{name}: feature_std must be positive')
    with np.errstate(all='ignore'):
        if not np.all(np.isfinite(np.float32(1.0) / std)):
            raise ModelFileError(f'{name}: feature_std has values too small to divide by '
                                 f'(min {float(std.min()):g})')
    for key in sorted(calibration & set(state)):
        try:
            check_calibration(np.asarray(state[key]), f'{name}: tensor {key!r}')
        except ValueError as exc:
            raise ModelFileError(str(exc)) from exc


def save_model(state, directory, metadata):
    """Write ``nlml_hpe.safetensors`` and ``nlml_hpe.json`` into ``directory``.

    ``state`` is a state dict of numpy arrays (tensor name -> array).
    """
    from safetensors.numpy import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in dict(state).items()}
    save_file(state, str(directory / WEIGHTS_NAME), metadata={'format': 'pt'})
    (directory / METADATA_NAME).write_text(json.dumps(metadata, indent=2, sort_keys=True) + '\n')
    return directory / WEIGHTS_NAME


@lru_cache(maxsize=1)
def canonical_features():
    """Features ``(6, 1404)`` of MediaPipe's canonical face: frontal, then turned.

    The face (``data/canonical_face_468.npy``, shipped with the package) is
    seen orthographically at 5 px per cm, as MediaPipe's landmarks of a face
    looking at the camera (rows 1-5 turned by :data:`SANITY_TURNS_DEG`).
    """
    from .features import normalise_landmarks
    from .geometry import euler_to_matrix
    from .position import canonical_face_m

    pts = canonical_face_m() * 100.0
    faces = []
    for turn in ((0.0, 0.0, 0.0),) + SANITY_TURNS_DEG:
        p = pts @ np.asarray(euler_to_matrix(*turn)).reshape(3, 3).T
        faces.append(np.column_stack([320.0 + 5.0 * p[:, 0], 240.0 - 5.0 * p[:, 1],
                                      -5.0 * p[:, 2]]))
    out = normalise_landmarks(np.stack(faces))
    out.setflags(write=False)
    return out


def sanity_check(model, name='<model>'):
    """Raise :class:`ModelFileError` unless ``model`` reads the canonical face sensibly.

    Finite angles on the frontal and turned canonical faces
    (:func:`canonical_features`), within :data:`SANITY_MAX_DEG` of zero on the
    frontal one.  One batched forward pass, about 1 ms.
    """
    with np.errstate(all='ignore'):
        angles = model.predict(canonical_features())
    if not np.all(np.isfinite(angles)):
        raise ModelFileError(f"{name}: the model returns non-finite angles on MediaPipe's "
                             'canonical face (overflowing weights or a vanishing '
                             'feature_std?)')
    worst = float(np.max(np.abs(angles[0])))
    if worst > SANITY_MAX_DEG:
        p, y, r = angles[0]
        raise ModelFileError(f"{name}: the model reads MediaPipe's frontal canonical face as "
                             f'pitch {p:.1f}, yaw {y:.1f}, roll {r:.1f} deg (more than '
                             f'{SANITY_MAX_DEG:g} deg from zero): not a usable head pose model')


def load_model(path):
    """Load a :class:`PoseModel` from a directory or a ``.safetensors`` file (no torch).

    Raises :class:`ModelFileError` (a ``ValueError``) naming the file when it is
    missing, not a regular file, too large, corrupt, of the wrong architecture,
    or fails :func:`sanity_check`.
    """
    from safetensors.numpy import load_file

    path = Path(path)
    weights = path / WEIGHTS_NAME if path.is_dir() else path
    meta_path = weights.with_suffix('.json')
    if not weights.is_file():
        raise ModelFileError(f'model weights not found: {weights}')
    try:
        size = weights.stat().st_size
    except OSError as exc:
        raise ModelFileError(f'cannot read model weights {weights}: {exc}') from exc
    if size > MAX_WEIGHTS_BYTES:
        raise ModelFileError(f'model weights {weights} are {size} bytes, more than the '
                             f'{MAX_WEIGHTS_BYTES} this architecture can need')
    try:
        state = load_file(str(weights))
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types; all mean this
        raise ModelFileError(f'cannot read model weights {weights}: {type(exc).__name__}: '
                             f'{exc}') from exc
    _check_state(state, str(weights))
    metadata = {}
    if meta_path.exists():
        try:
            metadata = read_small_json(meta_path, MAX_METADATA_BYTES)
        except (OSError, ValueError, RecursionError) as exc:
            raise ModelFileError(f'cannot read model metadata {meta_path}: '
                                 f'{type(exc).__name__}: {exc}') from exc
        if not isinstance(metadata, dict):
            raise ModelFileError(f'model metadata {meta_path} must be a JSON object')
    try:
        model = PoseModel(state, metadata)
    except ModelFileError as exc:
        raise ModelFileError(f'{meta_path}: {exc}') from exc
    except (ValueError, TypeError, ArithmeticError, RecursionError, MemoryError) as exc:
        raise ModelFileError(f'cannot use model {weights}: {type(exc).__name__}: '
                             f'{exc}') from exc
    sanity_check(model, str(weights))
    artifact = weights.parent / UNCERTAINTY_FILE
    if artifact.is_file():  # fitted to these weights' errors (checked), or refused
        try:
            model.uncertainty = load_uncertainty(artifact, weights)
        except UncertaintyFileError as exc:
            raise ModelFileError(str(exc)) from exc
    return model


def default_model_dir():
    """Locate the shipped ``models/`` directory.

    Order: ``$NLML_HPE_MODEL_DIR``; the source tree (editable install); the
    install prefix ``share/nlml_hpe/models`` (pip or colcon); the ament index.
    When no candidate holds weights, returns ``$NLML_HPE_MODEL_DIR`` if set, else
    the source-tree ``models/`` (source checkout) or the last install location.
    """
    import os
    import sys

    candidates = []
    if os.environ.get('NLML_HPE_MODEL_DIR'):
        candidates.append(Path(os.environ['NLML_HPE_MODEL_DIR']))
    candidates.append(Path(__file__).resolve().parents[2] / 'models')
    candidates.append(Path(sys.prefix) / 'share' / 'nlml_hpe' / 'models')
    try:
        from ament_index_python.packages import get_package_share_directory
        candidates.append(Path(get_package_share_directory('nlml_hpe')) / 'models')
    except Exception:  # noqa: BLE001 - ament index absent or package not installed
        pass
    for cand in candidates:
        if (cand / WEIGHTS_NAME).is_file():
            return cand
    # Nothing found: name the most relevant place in the caller's error message.
    if os.environ.get('NLML_HPE_MODEL_DIR'):
        return candidates[0]
    source = Path(__file__).resolve().parents[2]
    return source / 'models' if (source / 'setup.py').is_file() else candidates[-1]
