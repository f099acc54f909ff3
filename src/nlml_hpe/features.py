"""Landmark feature normalisation shared by training and inference.

MediaPipe Face Mesh returns x divided by the image width, y divided by the image
height and z on roughly the scale of x.  Features are built from coordinates
proportional to pixels (``x*W, y*H, z*W``), so they do not depend on the aspect
ratio, then made translation and scale invariant as in the authors' code:
translate to the nose tip (landmark 1) and divide by the 3D distance between
the outer eye corners (landmarks 33 and 263).

Models that read angles relative to the line of sight (``angle_frame:
apparent``) first see the landmarks through :func:`centre_on_line_of_sight`:
as a camera turned to look straight at the face would see them.  A face at the
edge of a wide-angle image is stretched by perspective; centring undoes that,
so the model only ever sees faces on the optical axis.
"""

import math

import numpy as np

from .geometry import FEW_FACES, angle_between_deg, line_of_sight_rotation

N_LANDMARKS = 468
N_FEATURES = 3 * N_LANDMARKS
NOSE_TIP = 1
RIGHT_EYE_OUTER = 33
LEFT_EYE_OUTER = 263


def to_pixel_coords(landmarks, width, height):
    """Convert MediaPipe-normalised landmarks ``(..., 468, 3)`` to pixel-proportional ones."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if width <= 0 or height <= 0:
        raise ValueError(f'image size must be positive, got {width}x{height}')
    return lm * np.array([width, height, width], dtype=np.float64)


def as_landmark_batch(landmarks_px):
    """Return landmarks as a float64 ``(N, 468, 3)`` array (a ``(468, 3)`` face becomes N=1).

    Raises ``ValueError`` for a wrong shape or non-finite values.
    """
    lm = np.asarray(landmarks_px, dtype=np.float64)
    if lm.ndim == 2:
        lm = lm[None]
    if lm.ndim != 3 or lm.shape[1:] != (N_LANDMARKS, 3):
        raise ValueError(f'expected landmarks of shape (N, {N_LANDMARKS}, 3), got {lm.shape}')
    if not np.all(np.isfinite(lm)):
        raise ValueError('landmarks contain NaN or inf')
    return lm


def landmark_extent(landmarks_px):
    """Return ``(low, high)``, each ``(N, 2)``: the ``x, y`` ranges of ``(N, 468, 3)`` landmarks.

    Reduces a contiguous ``(N, 2, 468)`` copy: numpy reduces the middle axis
    of ``(N, 468, 3)`` about ten times slower (this runs for every face of
    every frame).
    """
    xy = np.ascontiguousarray(np.asarray(landmarks_px)[:, :, :2].transpose(0, 2, 1))
    return xy.min(axis=2), xy.max(axis=2)


def landmark_centroids(landmarks_px):
    """Return the ``x, y`` centroids ``(N, 2)`` of landmark sets ``(N, 468, 3)``."""
    lm = np.asarray(landmarks_px)
    return np.einsum('nij->nj', lm)[:, :2] / lm.shape[1]


def off_axis_deg(landmarks_px, camera_matrix, k_inv=None):
    """Angle (degrees) between the optical axis and the ray through a face's landmarks.

    ``landmarks_px`` is one ``(468, 3)`` face (returns a float) or ``(N, 468, 3)``
    faces (returns ``(N,)``); only the centroid of ``x, y`` is used.
    ``camera_matrix`` is the 3x3 intrinsics of the image (``k_inv``: its
    inverse, when the caller has it).
    """
    lm = np.asarray(landmarks_px, dtype=np.float64)
    faces = lm.reshape(-1, N_LANDMARKS, lm.shape[-1])
    rays = np.ones((len(faces), 3))
    rays[:, :2] = landmark_centroids(faces)
    kinv = np.linalg.inv(np.asarray(camera_matrix, dtype=np.float64)) if k_inv is None \
        else k_inv
    if len(faces) <= FEW_FACES:  # a few faces (the per-frame path): plain floats per face
        (k0, k1, k2), (k3, k4, k5), (k6, k7, k8) = np.asarray(kinv, dtype=np.float64).tolist()
        out = []
        for cx, cy in rays[:, :2].tolist():
            x, y, z = k0 * cx + k1 * cy + k2, k3 * cx + k4 * cy + k5, k6 * cx + k7 * cy + k8
            cos = z / max(math.sqrt(x * x + y * y + z * z), 1e-12)
            out.append(math.degrees(math.acos(min(max(cos, -1.0), 1.0))))
        deg = np.array(out)
    else:
        deg = angle_between_deg(rays @ kinv.T, (0.0, 0.0, 1.0))
    return float(deg[0]) if lm.ndim == 2 else deg


def line_of_sight_homography(landmarks_px, camera_matrix, k_inv=None):
    """Return ``(H (N, 3, 3), scale (N,))`` of :func:`centre_on_line_of_sight`.

    ``H = K R^T K^-1`` maps the image onto that of the camera turned by ``R``
    onto the ray through the landmarks' centroid; ``scale`` is its local
    (area) scale at the centroid.  ``k_inv``: the inverse of a ``(3, 3)``
    ``camera_matrix``, when the caller has it.
    """
    return _homography_checked(as_landmark_batch(landmarks_px), camera_matrix, k_inv)


def _homography_checked(lm, camera_matrix, k_inv=None):
    """:func:`line_of_sight_homography` of a checked ``(N, 468, 3)`` float64 batch."""
    k = np.asarray(camera_matrix, dtype=np.float64)
    if k.shape != (3, 3) and k.shape != (len(lm), 3, 3):
        raise ValueError(f'camera matrix must be (3, 3) or ({len(lm)}, 3, 3), got {k.shape}')
    if not np.all(np.isfinite(k)):
        raise ValueError('camera matrix contains NaN or inf')
    if k.ndim == 2 and len(lm) <= FEW_FACES:  # a few faces, one camera: the per-frame path
        inv_n = 1.0 / lm.shape[1]
        return _homographies_one_camera(
            [(float(f[:, 0].sum()) * inv_n, float(f[:, 1].sum()) * inv_n) for f in lm], k,
            np.linalg.inv(k) if k_inv is None else k_inv)
    centroid = np.ones((len(lm), 3))
    centroid[:, :2] = landmark_centroids(lm)
    kinv = k_inv if k_inv is not None and k.ndim == 2 else np.linalg.inv(k)
    rays = centroid @ kinv.T if k.ndim == 2 else (kinv @ centroid[:, :, None])[:, :, 0]
    hom = k @ np.swapaxes(line_of_sight_rotation(rays), -1, -2) @ kinv
    # Jacobian of the homography at the centroid: (H[:2, :2] - u h3[:2]) / w.
    image = (hom @ centroid[:, :, None])[:, :, 0]
    w = image[:, 2]
    u = image[:, :2] / w[:, None]
    jac = (hom[:, :2, :2] - u[:, :, None] * hom[:, None, 2, :2]) / w[:, None, None]
    det = jac[:, 0, 0] * jac[:, 1, 1] - jac[:, 0, 1] * jac[:, 1, 0]
    return hom, np.sqrt(np.abs(det))


def _homographies_one_camera(centroids, k, kinv):
    """:func:`line_of_sight_homography` for a few faces seen by one camera ``k``.

    The same computation in plain floats per face (small numpy calls cost more
    than the arithmetic; this runs for every face of every frame).
    """
    hom = np.empty((len(centroids), 3, 3))
    scale = np.empty(len(centroids))
    ki = kinv.tolist()
    rays = [[ki[r][0] * cx + ki[r][1] * cy + ki[r][2] for r in range(3)] for cx, cy in centroids]
    turns = line_of_sight_rotation(np.array(rays).reshape(-1, 3))  # a few: plain floats each
    for i, (cx, cy) in enumerate(centroids):
        h = k @ turns[i].T @ kinv
        hom[i] = h
        (h00, h01, h02), (h10, h11, h12), (h20, h21, h22) = h.tolist()
        w = h20 * cx + h21 * cy + h22
        ux, uy = (h00 * cx + h01 * cy + h02) / w, (h10 * cx + h11 * cy + h12) / w
        det = ((h00 - ux * h20) * (h11 - uy * h21) - (h01 - ux * h21) * (h10 - uy * h20)) / (w * w)
        scale[i] = math.sqrt(abs(det))
    return hom, scale


def centre_on_line_of_sight(landmarks_px, camera_matrix, k_inv=None):
    """Landmarks ``(N, 468, 3)`` seen by the camera turned to look at each face.

    The turn is the smallest rotation taking the optical axis onto the ray
    through the landmarks' centroid (:func:`nlml_hpe.geometry.line_of_sight_rotation`);
    a pure camera rotation maps the image by the homography ``K R^T K^-1``,
    which moves ``x, y``.  MediaPipe's ``z`` (depth along the line of sight, in
    the face's pixel scale) is kept, scaled by the homography's local scale at
    the centroid (:func:`line_of_sight_homography`).  ``camera_matrix`` is
    ``(3, 3)`` (``k_inv``: its inverse, if known) or one per face ``(N, 3, 3)``.
    Accepts ``(468, 3)`` for one face and returns ``(N, 468, 3)`` float64.
    """
    return centre_batch(as_landmark_batch(landmarks_px), camera_matrix, k_inv)


def centre_batch(lm, camera_matrix, k_inv=None):
    """:func:`centre_on_line_of_sight` of a batch :func:`as_landmark_batch` has checked.

    For callers that run several stages on one batch and check it once.
    """
    return _map_checked(lm, *_homography_checked(lm, camera_matrix, k_inv))


def map_landmarks(landmarks_px, hom, z_scale):
    """Landmarks ``(N, 468, 3)`` with ``x, y`` mapped by homographies ``hom`` ``(N, 3, 3)``.

    ``z`` is multiplied by ``z_scale`` ``(N,)``.  :func:`centre_on_line_of_sight`
    is ``map_landmarks(lm, *line_of_sight_homography(lm, K))``; the inverse
    homographies with ``1 / scale`` map centred landmarks back.
    """
    return _map_checked(as_landmark_batch(landmarks_px), hom, z_scale)


def _map_checked(lm, hom, z_scale):
    """:func:`map_landmarks` of a checked ``(N, 468, 3)`` float64 batch."""
    hom = np.asarray(hom, dtype=np.float64).reshape(-1, 3, 3)
    z_scale = np.asarray(z_scale, dtype=np.float64).reshape(-1)
    mapped = lm[:, :, :2] @ np.swapaxes(hom[:, :, :2], 1, 2) + hom[:, None, :, 2]
    out = np.empty_like(lm)
    out[:, :, :2] = mapped[:, :, :2] / mapped[:, :, 2:]
    out[:, :, 2] = lm[:, :, 2] * z_scale[:, None]
    return out


def normalise_landmarks(landmarks_px):
    """Return ``(N, 1404)`` float32 features from ``(N, 468, 3)`` or ``(468, 3)`` landmarks.

    Raises ``ValueError`` for a wrong shape, non-finite values or a degenerate
    eye distance.
    """
    return normalise_batch(as_landmark_batch(landmarks_px))


def normalise_batch(lm):
    """:func:`normalise_landmarks` of a batch :func:`as_landmark_batch` has checked."""
    centred = lm - lm[:, NOSE_TIP:NOSE_TIP + 1, :]
    eyes = lm[:, RIGHT_EYE_OUTER] - lm[:, LEFT_EYE_OUTER]
    scale = np.sqrt(np.einsum('ij,ij->i', eyes, eyes))
    if len(scale) and float(scale.min()) < 1e-9:
        raise ValueError('degenerate landmarks: outer eye corners coincide')
    return (centred / scale[:, None, None]).reshape(len(lm), N_FEATURES).astype(np.float32)
