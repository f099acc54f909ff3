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

from .position import UNKNOWN_CAMERA_HFOV_DEG, check_camera_matrix, default_camera_matrix


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
        f = float(focal)
        return cls(np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]]),
                   width, height)

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
