"""Images decoded at a reduced scale: the decoded image, its poses in source pixels, its camera.

A JPEG above the decode budget is decoded at 1/2, 1/4 or 1/8 scale
(:mod:`nlml_hpe.image_decode`).  :class:`Decoded` carries that ``scale``;
:func:`source_poses` maps poses read in the reduced image back to the
source's pixels, and :func:`scaled_camera_matrix` gives the reduced image's
intrinsics, so angles and metric positions do not depend on the scale.
Importable from :mod:`nlml_hpe.image_decode` too.
"""

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class Decoded:
    """A decoded image: ``rgb`` ``(h, w, 3)`` uint8, decoded at 1/``scale`` of its source.

    ``width`` x ``height`` is the source image's size (after its EXIF
    orientation); ``rgb`` is ``ceil(width / scale)`` x ``ceil(height / scale)``.
    Decoded pixel ``(u, v)`` covers source pixels ``[u*scale, (u+1)*scale)``:
    a point ``x`` (pixel centres at integers) is ``(x + 0.5) * scale - 0.5``
    in the source.
    """

    rgb: np.ndarray
    scale: int
    width: int
    height: int
    format: str

    def to_source(self, poses):
        """Return ``poses`` with boxes and landmarks in source pixels (:func:`source_poses`)."""
        return source_poses(poses, self.scale)


def source_poses(poses, scale):
    """Return poses (``FacePose``) read in an image at 1/``scale`` in source pixels.

    Boxes and landmarks (x, y, and the pixel-proportional z) are mapped as
    pixel centres are, ``(x + 0.5) * scale - 0.5`` (``mirrored_landmarks``
    stay in the decoded image's mirror).  Angles, rotations and positions do
    not depend on the scale when the poses were estimated with
    :func:`scaled_camera_matrix`'s intrinsics, or the guessed camera of the
    decoded size.
    """
    if scale == 1:
        return list(poses)
    s = float(scale)
    out = []
    for p in poses:
        box = tuple((v + 0.5) * s - 0.5 for v in p.box)
        marks = None if p.landmarks is None else np.asarray(p.landmarks, float) * s
        if marks is not None:
            marks[:, :2] += 0.5 * s - 0.5
        out.append(replace(p, box=box, landmarks=marks))
    return out


def scaled_camera_matrix(k, scale):
    """Return intrinsics ``k`` (3x3) of source images for images decoded at 1/``scale``.

    ``fx, fy`` and the skew divide by ``scale``; the principal point maps as
    pixel centres do, ``(c + 0.5) / scale - 0.5``.
    """
    k = np.array(k, dtype=float).reshape(3, 3)
    if scale == 1:
        return k
    out = k / scale
    out[0, 2] = (k[0, 2] + 0.5) / scale - 0.5
    out[1, 2] = (k[1, 2] + 0.5) / scale - 0.5
    out[2] = k[2]
    return out
