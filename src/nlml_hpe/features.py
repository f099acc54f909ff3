"""Landmark feature normalisation shared by training and inference.

MediaPipe Face Mesh returns x divided by the image width, y divided by the image
height and z on roughly the scale of x.  Features are built from coordinates
proportional to pixels (``x*W, y*H, z*W``), so they do not depend on the aspect
ratio, then made translation and scale invariant as in the authors' code:
translate to the nose tip (landmark 1) and divide by the 3D distance between
the outer eye corners (landmarks 33 and 263).
"""

import numpy as np

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


def normalise_landmarks(landmarks_px):
    """Return ``(N, 1404)`` float32 features from ``(N, 468, 3)`` or ``(468, 3)`` landmarks.

    Raises ``ValueError`` for a wrong shape, non-finite values or a degenerate
    eye distance.
    """
    lm = np.asarray(landmarks_px, dtype=np.float64)
    if lm.ndim == 2:
        lm = lm[None]
    if lm.ndim != 3 or lm.shape[1:] != (N_LANDMARKS, 3):
        raise ValueError(f'expected landmarks of shape (N, {N_LANDMARKS}, 3), got {lm.shape}')
    if not np.all(np.isfinite(lm)):
        raise ValueError('landmarks contain NaN or inf')
    centred = lm - lm[:, NOSE_TIP:NOSE_TIP + 1, :]
    scale = np.linalg.norm(lm[:, RIGHT_EYE_OUTER] - lm[:, LEFT_EYE_OUTER], axis=-1)
    if np.any(scale < 1e-9):
        raise ValueError('degenerate landmarks: outer eye corners coincide')
    return (centred / scale[:, None, None]).reshape(len(lm), N_FEATURES).astype(np.float32)
