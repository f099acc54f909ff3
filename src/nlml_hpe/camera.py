"""The camera a frame was taken with: its intrinsics, validated once.

A :class:`Camera` is either calibrated (``Camera(K, width, height)``, e.g. from a
``sensor_msgs/CameraInfo``) or a documented guess for an uncalibrated camera
(:meth:`Camera.guess`: centred, square pixels, a 60 deg horizontal field of
view).  The estimator builds one per frame and hands it to every stage: the
landmark stage turns off-axis faces onto their line of sight with it, the pose
stage centres the landmarks with it (the mirrored crops with
:meth:`Camera.mirrored`), and only a calibrated camera gives metric positions.
"""

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

#: Horizontal field of view assumed for a camera without intrinsics (degrees):
#: webcams and robot head cameras are mostly 55-70 deg.
UNKNOWN_CAMERA_HFOV_DEG = 60.0


def check_camera_matrix(camera_matrix):
    """Validate a 3x3 pinhole intrinsic matrix and return it as float64."""
    k = np.asarray(camera_matrix, dtype=np.float64)
    if k.shape != (3, 3):
        raise ValueError(f'camera_matrix must be 3x3, got shape {k.shape}')
    if not np.all(np.isfinite(k)):
        raise ValueError('camera_matrix contains NaN or inf')
    if k[0, 0] <= 0 or k[1, 1] <= 0:
        raise ValueError(f'camera_matrix focal lengths must be positive, got '
                         f'fx={k[0, 0]:g}, fy={k[1, 1]:g}')
    last = k[2].tolist()
    if abs(last[0]) > 1e-8 or abs(last[1]) > 1e-8 or abs(last[2] - 1.0) > 1e-8:
        raise ValueError(f'camera_matrix last row must be [0, 0, 1], got {k[2].tolist()}')
    return k


def default_camera_matrix(width, height, hfov_deg=None):
    """Return intrinsics for an uncalibrated ``width x height`` camera (centred, square px).

    Without ``hfov_deg`` the usual guess ``f = max(w, h)``; otherwise the focal
    length of that horizontal field of view.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f'image size must be positive, got {width}x{height}')
    if hfov_deg is None:
        f = float(max(width, height))
    else:
        f = (width / 2.0) / np.tan(np.radians(hfov_deg) / 2.0)
    return intrinsics(f, f, width / 2.0, height / 2.0)


def intrinsics(fx, fy, cx, cy):
    """Return the 3x3 pinhole matrix ``K`` of focal lengths and principal point (pixels)."""
    return np.array([[float(fx), 0.0, float(cx)], [0.0, float(fy), float(cy)],
                     [0.0, 0.0, 1.0]])


@dataclass(frozen=True, eq=False)
class Camera:
    """Pinhole intrinsics ``k`` (3x3) of ``width x height`` images; ``guessed``: uncalibrated."""

    k: np.ndarray
    width: int
    height: int
    guessed: bool = False
    k_inv: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        k = check_camera_matrix(self.k).copy()
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise ValueError(f'image size must be positive, got {self.width}x{self.height}')
        k.flags.writeable = False
        k_inv = np.linalg.inv(k)
        k_inv.flags.writeable = False
        object.__setattr__(self, 'k', k)
        object.__setattr__(self, 'k_inv', k_inv)
        object.__setattr__(self, 'width', int(self.width))
        object.__setattr__(self, 'height', int(self.height))

    @staticmethod
    def guess(width, height, hfov_deg=UNKNOWN_CAMERA_HFOV_DEG):
        """Return the guess for an uncalibrated camera: centred, square pixels, ``hfov_deg``.

        One object per image size (it is immutable): building it every frame
        would redo the same check and inverse.
        """
        return _guess(int(width), int(height), float(hfov_deg))

    @classmethod
    def pinhole(cls, focal, width, height):
        """Return a calibrated centred camera of focal length ``focal`` (pixels)."""
        return cls(intrinsics(focal, focal, width / 2.0, height / 2.0), width, height)

    @classmethod
    def from_intrinsics(cls, fx, fy, cx, cy, width, height):
        """Return a calibrated camera of focal lengths ``fx, fy``, principal point ``cx, cy``."""
        return cls(intrinsics(fx, fy, cx, cy), width, height)

    @property
    def size(self):
        """``(width, height)``."""
        return (self.width, self.height)

    def mirrored(self):
        """Return the camera of the horizontally mirrored image."""
        k = np.array(self.k, copy=True)
        k[0, 2] = self.width - k[0, 2]
        k[0, 1] = -k[0, 1]
        return Camera(k, self.width, self.height, self.guessed)


@lru_cache(maxsize=16)
def _guess(width, height, hfov_deg):
    return Camera(default_camera_matrix(width, height, hfov_deg=hfov_deg), width, height,
                  guessed=True)
