"""Geometric estimators: MediaPipe landmarks fitted to MediaPipe's canonical face.

* :func:`baseline_angles` -- the baseline every model is measured against:
  ``cv2.solvePnP`` of the 2D landmarks against the canonical face.
* :func:`rigid_fit_rotations` -- the rotation of MediaPipe's *3D* landmarks
  onto the canonical face (orthographic Kabsch fit); the estimator can average
  it with the model (``rigid_fusion``).

The 468 image landmarks are matched to MediaPipe's canonical face (object
points, head frame, cm).  The camera is the usual guess for unknown
intrinsics: focal length ``max(w, h)`` pixels, principal point at the image
centre, no distortion.  ``solvePnP`` gives the object-to-camera rotation
``R_cv`` (OpenCV camera = optical frame), and
``(pitch, yaw, roll) = matrix_to_euler(diag(1, -1, -1) @ R_cv)``
(see :mod:`nlml_hpe.geometry`).
"""

from functools import lru_cache

import cv2
import numpy as np

from .features import N_LANDMARKS, as_landmark_batch
from .geometry import matrix_to_euler, optical_to_viewer
from .position import canonical_face_m, check_camera_matrix, default_camera_matrix


@lru_cache(maxsize=1)
def _centred_canonical():
    obj = canonical_face_m()
    return obj - obj.mean(axis=0)


def rigid_fit_rotations(landmarks_px):
    """Head-to-viewer rotations ``(N, 3, 3)`` of the best rigid fit of 3D landmarks.

    ``landmarks_px`` ``(N, 468, 3)`` (or one ``(468, 3)``) are MediaPipe-like
    ``x, y`` pixels and ``z`` depth in the same scale (larger = farther), read as
    an orthographic view: the viewer-frame points ``(x, -y, -z)`` are fitted by
    rotation, translation and scale to the canonical face (Kabsch / Umeyama,
    all landmarks weighted equally).  The angles of the result are relative to
    the viewing direction: use landmarks centred on the line of sight
    (:func:`nlml_hpe.features.centre_on_line_of_sight`) for faces far from the
    image centre.
    """
    return rigid_fit_batch(as_landmark_batch(landmarks_px))


def rigid_fit_batch(lm):
    """:func:`rigid_fit_rotations` of a batch already checked by ``as_landmark_batch``."""
    # Cross-covariance of the viewer-frame points D lm (D = diag(1, -1, -1)) with the
    # centred canonical face: D lm^T obj (the points need no centring, obj sums to 0).
    cov = np.swapaxes(lm, 1, 2) @ _centred_canonical()
    cov[:, 1:] *= -1.0
    u, _, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u @ vt))
    u[:, :, 2] *= d[:, None]  # a proper rotation, never a reflection
    return u @ vt


def solve_pnp(landmarks_px, camera_matrix):
    """Return ``(R_optical (3, 3), t (3,) metres)`` of the canonical face for one face."""
    lm = np.asarray(landmarks_px, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[0] != N_LANDMARKS or lm.shape[1] < 2:
        raise ValueError(f'expected landmarks of shape ({N_LANDMARKS}, 2 or 3), got {lm.shape}')
    if not np.all(np.isfinite(lm[:, :2])):
        raise ValueError('landmarks contain NaN or inf')
    k = check_camera_matrix(camera_matrix)
    obj = np.ascontiguousarray(canonical_face_m())
    img = np.ascontiguousarray(lm[:, :2])
    ok, rvec, tvec = cv2.solvePnP(obj, img, k, None, flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        raise ValueError('solvePnP failed on these landmarks')
    rot, _ = cv2.Rodrigues(rvec)
    return rot, tvec.ravel()


def baseline_angles(landmarks_px, width, height, camera_matrix=None):
    """AFLW2000 ``(pitch, yaw, roll)`` in degrees for each face (``(N, 3)``).

    ``landmarks_px`` is a list/array of ``(468, 3)`` pixel landmarks of an image
    of ``width`` x ``height``; ``camera_matrix`` defaults to
    :func:`nlml_hpe.position.default_camera_matrix`.
    """
    k = default_camera_matrix(width, height) if camera_matrix is None else camera_matrix
    out = [matrix_to_euler(optical_to_viewer(solve_pnp(lm, k)[0])) for lm in landmarks_px]
    return np.array(out, dtype=np.float64).reshape(-1, 3)
