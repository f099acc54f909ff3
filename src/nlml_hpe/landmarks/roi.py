"""Regions of interest: where a face is cropped for the landmark model, and back.

A face is read from a square region around it, turned so its eyes are level
(:class:`Roi`), warped into the landmark model's ``192 x 192`` input by an
image-to-crop transform (``3 x 3``; affine, or a homography for a crop turned
onto the face's line of sight).  :func:`read_plans` gives the transform each
tracked face is read through; :func:`from_crop` maps the model's landmarks
back into the image.

The ROI is MediaPipe's: 1.5 times the face's box, from the detector's box and
eye keypoints (``FaceDetectionFrontDetectionToRoi``) or from the previous
frame's landmarks, outer eye corners 33 -> 263 (``FaceLandmarkLandmarksToRoi``).
"""

from dataclasses import dataclass
import math

import cv2
import numpy as np

from ..features import (
    LEFT_EYE_OUTER,
    N_LANDMARKS,
    RIGHT_EYE_OUTER,
    landmark_extent,
    line_of_sight_homography,
    map_landmarks,
    off_axis_deg,
)
from ..geometry import FEW_FACES

#: Side of the landmark model's square input.
CROP_PX = 192
#: ROI side in face-box sizes (MediaPipe's ``RectTransformationCalculator``).
ROI_SCALE = 1.5
#: Crop-to-crop transform of the mirrored crop (x flipped).
MIRROR = np.array([[-1.0, 0.0, CROP_PX], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def _normalize_radians(a):
    return a - 2.0 * math.pi * math.floor((a + math.pi) / (2.0 * math.pi))


@dataclass(frozen=True)
class Roi:
    """A square region of interest in image pixels, turned by ``angle`` (radians)."""

    cx: float
    cy: float
    side: float
    angle: float

    @classmethod
    def from_box(cls, box, p0, p1):
        """ROI of box ``(x0, y0, x1, y1)``, turned so ``p0 -> p1`` is horizontal."""
        x0, y0, x1, y1 = (float(v) for v in box)
        angle = _normalize_radians(-math.atan2(-(float(p1[1]) - float(p0[1])),
                                               float(p1[0]) - float(p0[0])))
        side = max(x1 - x0, y1 - y0) * ROI_SCALE
        return cls((x0 + x1) / 2.0, (y0 + y1) / 2.0, side, angle)

    @classmethod
    def from_detection(cls, box, keypoints):
        """ROI of a detection: its box, turned by its eye keypoints (0 -> 1)."""
        return cls.from_box(box, keypoints[0], keypoints[1])

    @classmethod
    def from_landmarks(cls, landmarks_px):
        """ROI of 468 landmarks: their box, turned by the outer eye corners (33 -> 263)."""
        lm = np.asarray(landmarks_px)
        box = (lm[:, 0].min(), lm[:, 1].min(), lm[:, 0].max(), lm[:, 1].max())
        return cls.from_box(box, lm[RIGHT_EYE_OUTER], lm[LEFT_EYE_OUTER])

    def box(self):
        """Axis-aligned ``(x0, y0, x1, y1)`` of the unturned square."""
        h = self.side / 2.0
        return (self.cx - h, self.cy - h, self.cx + h, self.cy + h)

    def transform(self, mirror=False):
        """``3x3`` affine from image pixels to the 192-px crop (mirrored: x flipped)."""
        k = CROP_PX / max(self.side, 1e-9)
        c, s = math.cos(self.angle), math.sin(self.angle)
        half = CROP_PX / 2.0
        m = np.array([[k * c, k * s, half - k * (c * self.cx + s * self.cy)],
                      [-k * s, k * c, half - k * (-s * self.cx + c * self.cy)],
                      [0.0, 0.0, 1.0]])
        return MIRROR @ m if mirror else m


def roi_transforms(landmarks):
    """Image-to-crop transforms ``(N, 3, 3)`` of landmark sets ``(N, 468, 3)``.

    ``roi_transforms(lm)[i]`` is ``Roi.from_landmarks(lm[i]).transform()``, for
    all faces of a frame at once.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    lo, hi = landmark_extent(lm)
    if len(lm) <= FEW_FACES:  # a few faces (the per-frame path): plain floats per face
        return np.array([Roi.from_box((*a, *b), p0, p1).transform() for a, b, p0, p1 in zip(
            lo.tolist(), hi.tolist(), lm[:, RIGHT_EYE_OUTER, :2].tolist(),
            lm[:, LEFT_EYE_OUTER, :2].tolist())]).reshape(-1, 3, 3)
    d = lm[:, LEFT_EYE_OUTER, :2] - lm[:, RIGHT_EYE_OUTER, :2]
    angle = -np.arctan2(-d[:, 1], d[:, 0])
    angle -= 2.0 * np.pi * np.floor((angle + np.pi) / (2.0 * np.pi))
    side = (hi - lo).max(axis=1) * ROI_SCALE
    cx, cy = (lo[:, 0] + hi[:, 0]) / 2.0, (lo[:, 1] + hi[:, 1]) / 2.0
    k = CROP_PX / np.maximum(side, 1e-9)
    kc, ks = k * np.cos(angle), k * np.sin(angle)
    half = CROP_PX / 2.0
    m = np.zeros((len(lm), 3, 3))
    m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = kc, ks, half - (kc * cx + ks * cy)
    m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = -ks, kc, half - (-ks * cx + kc * cy)
    m[:, 2, 2] = 1.0
    return m


def crop_scale(transform):
    """Local scale (crop pixels per image pixel) of an image-to-crop transform."""
    m = np.asarray(transform, dtype=np.float64)
    return math.sqrt(abs(m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]))


def crop_box(transform):
    """Return the image box ``(x0, y0, x1, y1)`` around the crop of ``transform``."""
    corners = np.array([[0.0, 0.0, 1.0], [CROP_PX, 0.0, 1.0], [0.0, CROP_PX, 1.0],
                        [CROP_PX, CROP_PX, 1.0]]) @ np.linalg.inv(transform).T
    xy = corners[:, :2] / corners[:, 2:3]
    return (*xy.min(axis=0), *xy.max(axis=0))


def crop(rgb, transform):
    """Return the 192-px uint8 crop of ``rgb`` through image-to-crop ``transform`` (3x3)."""
    m = np.asarray(transform, dtype=np.float64)
    if m[2, 0] == 0.0 and m[2, 1] == 0.0 and m[2, 2] == 1.0:
        return cv2.warpAffine(rgb, m[:2], (CROP_PX, CROP_PX), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
    return cv2.warpPerspective(rgb, m, (CROP_PX, CROP_PX), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)


def from_crop(landmarks_crop, transforms, z_scales=None):
    """Map crop-pixel landmarks ``(N, 468, 3)`` back into the image.

    ``z`` is divided by each crop's scale: ``z_scales[i]`` where given (a
    perspective crop's scale at the face), else the local scale of the affine
    ``transforms[i]``.
    """
    if not len(transforms):
        return np.zeros((0, N_LANDMARKS, 3))
    z_scales = [None] * len(transforms) if z_scales is None else z_scales
    m = np.asarray(transforms, dtype=np.float64)
    if np.all(m[:, 2] == (0.0, 0.0, 1.0)):  # affine crops (the usual): invert in closed form
        inv = _invert_affine(m)
    else:
        inv = np.linalg.inv(m)
    scale = np.array([1.0 / (z if z is not None else crop_scale(t))
                      for t, z in zip(m, z_scales)])
    return map_landmarks(landmarks_crop, inv, scale)


def _invert_affine(m):
    """Inverses ``(N, 3, 3)`` of affine transforms ``m`` ``(N, 3, 3)`` (last row 0, 0, 1).

    In plain floats per transform: a few per frame, and small numpy calls
    cost more than the arithmetic.
    """
    out = []
    for (a, b, tx), (c, d, ty), _ in m.tolist():
        det = a * d - b * c
        ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
        out.append(((ia, ib, -(ia * tx + ib * ty)), (ic, id_, -(ic * tx + id_ * ty)),
                    (0.0, 0.0, 1.0)))
    return np.array(out).reshape(-1, 3, 3)


@dataclass(frozen=True)
class ReadPlan:
    """How one face is read: image-to-crop ``transform``, its z scale, line-of-sight or not.

    ``z_scale``: the crop's scale at the face for a perspective crop (``None``:
    the affine transform's own); ``reread``: the crop is turned onto the
    face's line of sight.
    """

    transform: np.ndarray
    z_scale: float = None
    reread: bool = False

    @classmethod
    def of_roi(cls, roi):
        """Return the plan of a detector's region of interest."""
        return cls(roi.transform())


def read_plans(faces, camera=None, min_deg=None):
    """Return the :class:`ReadPlan` of each face, from landmarks that place it.

    Faces at least ``min_deg`` off the optical axis of ``camera`` (a
    :class:`~nlml_hpe.camera.Camera`; none without it) are read in the view of
    a camera turned onto them (:func:`~nlml_hpe.features.line_of_sight_homography`).
    """
    if not len(faces):
        return []
    lm = np.asarray(faces, dtype=np.float64).reshape(-1, N_LANDMARKS, 3)
    mats = roi_transforms(lm)
    turned = np.zeros(len(lm), dtype=bool)
    if camera is not None and min_deg is not None:
        turned = off_axis_deg(lm, camera.k, camera.k_inv) >= min_deg
    plans = [ReadPlan(m) for m in mats]
    if turned.any():
        idx = np.flatnonzero(turned)
        hom, scale = line_of_sight_homography(lm[idx], camera.k, camera.k_inv)
        roi_m = roi_transforms(map_landmarks(lm[idx], hom, scale))
        for j, i in enumerate(idx):
            plans[i] = ReadPlan(roi_m[j] @ hom[j], crop_scale(roi_m[j]) * float(scale[j]), True)
    return plans
