"""The per-face cues of :mod:`nlml_hpe.uncertainty` and the terms its models are linear in.

Everything here comes from what the estimator already has for a face: its
landmarks, the fused and the network's angles, and the landmark model's
face-presence score (numpy only, a few microseconds a face).

* :func:`features` -- the cues :data:`FEATURES`: the fused angles; the
  disagreement of the network with the rigid fit; the presence score as
  ``log10(1 - score)``, which climbs steadily from 60 to 90 deg of yaw (and
  with blur, noise, occlusion and small faces) while the angles stand still;
  the far eye's and far cheek's foreshortening; the depth extent of the mesh;
  the face's size in pixels.
* :func:`range_terms` -- the beyond-range classifier's terms: the standardised
  :data:`RANGE_FEATURES` and their pairwise products (a quadratic logistic
  regression: the presence score means a turn on a sharp, large face and
  less on a blurred or small one).
* :func:`sigma_terms` -- the terms :data:`SIGMA_TERMS` of one angle's
  ``log sigma``.
"""

import numpy as np

from .features import as_landmark_batch

#: Order of the angles (that of :attr:`FacePose.angles <nlml_hpe.estimator.FacePose>`).
ANGLES = ('pitch', 'yaw', 'roll')
#: The per-face cues of :func:`features`, in column order.
FEATURES = ('abs_pitch', 'abs_yaw', 'abs_roll', 'split_pitch', 'split_yaw', 'split_roll',
            'presence', 'eye_ratio', 'cheek_ratio', 'depth_extent', 'log_eye_px')
#: Cues of the beyond-range classifier (see :func:`range_terms`).
RANGE_FEATURES = ('abs_yaw', 'split_yaw', 'presence', 'eye_ratio', 'cheek_ratio',
                  'depth_extent', 'log_eye_px')
#: Number of :func:`range_terms`: the cues and their products (each pair once, squares too).
N_RANGE_TERMS = len(RANGE_FEATURES) * (len(RANGE_FEATURES) + 3) // 2
_COL = {k: i for i, k in enumerate(FEATURES)}  # FEATURES' column of each cue
_PAIRS = np.triu_indices(len(RANGE_FEATURES))  # range_terms' products, each pair once
#: Terms of each angle's ``log sigma`` (``split`` is that angle's own split).
SIGMA_TERMS = ('one', 'p_beyond', 'abs_yaw', 'abs_yaw_sq', 'abs_pitch', 'abs_roll', 'split',
               'presence', 'presence_hinge', 'log_eye_px')
#: ``presence_hinge = max(presence - PRESENCE_KNEE, 0)``: the presence cue's steep part.
PRESENCE_KNEE = -4.0
#: ``log10(1 - score)`` is clipped here (a float32 score of 1.0 reads as this).
PRESENCE_FLOOR = -7.0
# Landmarks: outer and inner eye corners (subject's right eye 33-133, left 263-362),
# the cheeks' outermost contour points (234 right, 454 left) and the nose tip.
_R_OUT, _R_IN, _L_OUT, _L_IN, _R_CHEEK, _L_CHEEK, _NOSE = 33, 133, 263, 362, 234, 454, 1


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


def range_terms(z):
    """Return the classifier's terms ``(N, N_RANGE_TERMS)`` of standardised cues ``z``.

    ``z`` ``(N, len(RANGE_FEATURES))``; the terms are ``z`` itself, then
    ``z[:, i] * z[:, j]`` for ``i <= j`` in row-major order.
    """
    z = np.asarray(z, dtype=np.float64)
    i, j = _PAIRS if z.shape[1] == len(RANGE_FEATURES) else np.triu_indices(z.shape[1])
    return np.concatenate([z, z[:, i] * z[:, j]], axis=1)


def sigma_terms(feats, p_beyond, angle):
    """Return the :data:`SIGMA_TERMS` matrix ``(N, len(SIGMA_TERMS))`` of angle 0, 1 or 2."""
    return sigma_terms_all(feats, p_beyond)[angle]


def sigma_terms_all(feats, p_beyond):
    """Return :func:`sigma_terms` of the three angles at once: ``(3, N, len(SIGMA_TERMS))``.

    The terms are shared but ``split``, each angle's own.
    """
    feats = np.asarray(feats, dtype=np.float64)
    n = len(feats)
    yaw, presence = feats[:, _COL['abs_yaw']], feats[:, _COL['presence']]
    shared = {'one': np.ones(n), 'p_beyond': p_beyond, 'abs_yaw': yaw, 'abs_yaw_sq': yaw ** 2,
              'abs_pitch': feats[:, _COL['abs_pitch']], 'abs_roll': feats[:, _COL['abs_roll']],
              'presence': presence,
              'presence_hinge': np.maximum(presence - PRESENCE_KNEE, 0.0),
              'log_eye_px': feats[:, _COL['log_eye_px']]}
    out = np.empty((3, n, len(SIGMA_TERMS)))
    for j, term in enumerate(SIGMA_TERMS):
        if term == 'split':
            out[:, :, j] = feats[:, [_COL[f'split_{a}'] for a in ANGLES]].T
        else:
            out[:, :, j] = shared[term]
    return out
