"""Face detection with MediaPipe's BlazeFace models, decoded in numpy.

What MediaPipe's ``FaceDetectionShortRange`` / ``FaceDetectionFullRange``
graphs do, written out: the image (or a region of it) is letterboxed into the
model's square input (``keep_aspect_ratio``, zero border, values in
``[-1, 1]``), the SSD anchors decode the raw boxes and six keypoints, scores
pass a sigmoid and a threshold, and weighted non-maximum suppression merges
overlapping boxes.  Detections come back in image pixels.

Two models (see :data:`DETECTORS`):

* ``short``: 128 px input, faces that fill a good part of the image (the
  legacy Face Mesh graph's detector; about 1 ms here);
* ``full``: 192 px input, down to about 12 px faces in its input (about 3 ms).

Where the detectors run (the whole frame, tiles for small faces) and how
their runs are merged is the detection plan (:mod:`.detection_plan`).
"""

from dataclasses import dataclass
import math

import cv2
import numpy as np

from ..geometry import box_iou
from .litert import (
    DEFAULT_NUM_THREADS,
    FULL_RANGE_MODEL,
    SHORT_RANGE_MODEL,
    TFLiteModel,
    model_path,
)


@dataclass(frozen=True)
class DetectorSpec:
    """One BlazeFace model and its decoding options (MediaPipe's graph options)."""

    model: str
    size: int
    strides: tuple
    interpolated_scale_aspect_ratio: float
    #: Smallest face (pixels in the model's input) it finds reliably; sets the tiling.
    min_face_input_px: float


DETECTORS = {
    'short': DetectorSpec(SHORT_RANGE_MODEL, 128, (8, 16, 16, 16), 1.0, 20.0),
    'full': DetectorSpec(FULL_RANGE_MODEL, 192, (4,), 0.0, 14.0),
}
#: Weighted NMS overlap (IoU) above which two boxes are one face.
NMS_IOU = 0.3
#: Keypoints: right eye, left eye (the subject's), nose tip, mouth, right and left ear tragion.
N_KEYPOINTS = 6


def ssd_anchors(spec):
    """Anchor centres ``(N, 2)`` in ``[0, 1]`` (MediaPipe's ``SsdAnchorsCalculator``).

    With ``fixed_anchor_size`` every anchor is 1 x 1, so only centres matter;
    consecutive layers of one stride share a grid, with two anchors per layer
    where the interpolated scale is on.
    """
    centres = []
    layer = 0
    strides = spec.strides
    while layer < len(strides):
        per_cell = 0
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            per_cell += 1 + (spec.interpolated_scale_aspect_ratio > 0)
            last += 1
        n = int(math.ceil(spec.size / strides[layer]))
        ys, xs = np.meshgrid((np.arange(n) + 0.5) / n, (np.arange(n) + 0.5) / n, indexing='ij')
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(grid, per_cell, axis=0))
        layer = last
    return np.concatenate(centres)


@dataclass
class Detections:
    """Faces found by a detector, in image pixels.

    ``boxes`` ``(N, 4)`` ``x0, y0, x1, y1``; ``keypoints`` ``(N, 6, 2)``;
    ``scores`` ``(N,)`` in ``[0, 1]``, highest first.
    """

    boxes: np.ndarray
    keypoints: np.ndarray
    scores: np.ndarray

    @classmethod
    def empty(cls):
        return cls(np.zeros((0, 4)), np.zeros((0, N_KEYPOINTS, 2)), np.zeros(0))

    def __len__(self):
        return len(self.scores)

    def take(self, idx):
        return Detections(self.boxes[idx], self.keypoints[idx], self.scores[idx])


def weighted_nms(dets, iou_threshold=NMS_IOU):
    """MediaPipe's weighted non-maximum suppression.

    Highest score first: every remaining box overlapping it by more than
    ``iou_threshold`` joins it, and the merged face gets the score-weighted
    mean of their boxes and keypoints and the top score.
    """
    if len(dets) == 0:
        return dets
    order = np.argsort(-dets.scores, kind='stable')
    remaining = list(order)
    iou = box_iou(dets.boxes, dets.boxes)
    boxes, kps, scores = [], [], []
    while remaining:
        top = remaining[0]
        near = [i for i in remaining if iou[top, i] > iou_threshold]
        remaining = [i for i in remaining if iou[top, i] <= iou_threshold]
        if top not in near:  # a degenerate (zero-area) box overlaps nothing, itself included
            near = [top]
        w = dets.scores[near][:, None]
        boxes.append((dets.boxes[near] * w).sum(0) / w.sum())
        kps.append((dets.keypoints[near] * w[:, :, None]).sum(0) / w.sum())
        scores.append(dets.scores[top])
    return Detections(np.array(boxes), np.array(kps), np.array(scores))


def _inside_region(boxes, region, width, height, tolerance=0.02):
    """Whether each box lies inside ``region`` except where that edge is the image's."""
    x0, y0, x1, y1 = region
    slack = tolerance * max(x1 - x0, y1 - y0)
    ok = np.ones(len(boxes), bool)
    if x0 > 0:
        ok &= boxes[:, 0] >= x0 - slack
    if y0 > 0:
        ok &= boxes[:, 1] >= y0 - slack
    if x1 < width:
        ok &= boxes[:, 2] <= x1 + slack
    if y1 < height:
        ok &= boxes[:, 3] <= y1 + slack
    return ok


def letterbox_transform(region, size):
    """Affine ``2x3`` from image pixels into a ``size``-px square input showing ``region``.

    ``region`` ``(x0, y0, x1, y1)`` is scaled to fit and centred (MediaPipe's
    ``keep_aspect_ratio``); the rest of the input is border.
    """
    x0, y0, x1, y1 = (float(v) for v in region)
    scale = size / max(x1 - x0, y1 - y0)
    ox = (size - scale * (x1 - x0)) / 2.0
    oy = (size - scale * (y1 - y0)) / 2.0
    return np.array([[scale, 0.0, ox - scale * x0], [0.0, scale, oy - scale * y0]])


class FaceDetector:
    """A BlazeFace detector: ``detect(rgb)`` -> :class:`Detections` in image pixels."""

    def __init__(self, kind='full', min_score=0.5, num_threads=DEFAULT_NUM_THREADS):
        if kind not in DETECTORS:
            raise ValueError(f'detector must be one of {sorted(DETECTORS)}, got {kind!r}')
        if not 0.0 <= float(min_score) <= 1.0:
            raise ValueError(f'min_score must be in [0, 1], got {min_score}')
        self.kind = kind
        self.spec = DETECTORS[kind]
        self.min_score = float(min_score)
        size = self.spec.size
        self._model = TFLiteModel(model_path(self.spec.model), (size, size, 3),
                                  [(ssd_anchors(self.spec).shape[0], 16),
                                   (ssd_anchors(self.spec).shape[0], 1)],
                                  num_threads=num_threads)
        self._anchors = ssd_anchors(self.spec)

    def input_tensor(self, rgb, region=None):
        """Return the model's input for ``region`` of ``rgb`` and the image-to-input affine."""
        h, w = rgb.shape[:2]
        region = (0, 0, w, h) if region is None else region
        m = letterbox_transform(region, self.spec.size)
        size = self.spec.size
        img = cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return img.astype(np.float32) * (2.0 / 255.0) - 1.0, m

    def detect(self, rgb, region=None, inner=False):
        """Faces in ``region`` ``(x0, y0, x1, y1)`` of ``rgb`` (default: all of it).

        ``inner``: drop faces cut by an edge of the region that is not the
        image's (a tile's; another tile holds them entire).
        """
        return self.detect_with_weak(rgb, region, inner)[0]

    def detect_with_weak(self, rgb, region=None, inner=False, weak_score=None, weak_px=0.0):
        """:meth:`detect`, and the small faces scored under the threshold: ``(faces, weak)``.

        ``weak``: faces at most ``weak_px`` wide scored from ``weak_score`` up
        to ``min_score``, merged among themselves, that touch no face at the
        threshold (empty without ``weak_score``).  ``faces`` are the same as
        without them: the weaker scores join no face's merge.
        """
        h, w = rgb.shape[:2]
        region = (0, 0, w, h) if region is None else region
        x, m = self.input_tensor(rgb, region)
        raw, cls = self._model.run(x[None])
        weak = Detections.empty()
        floor = self.min_score if weak_score is None else min(float(weak_score), self.min_score)
        every = self._decode(raw[0], cls[0, :, 0], m, floor)
        strong = every.scores >= self.min_score
        found = dets = weighted_nms(every.take(np.flatnonzero(strong)))
        if inner and len(dets):
            dets = dets.take(np.flatnonzero(_inside_region(dets.boxes, region, w, h)))
        if not strong.all():
            weak = weighted_nms(every.take(np.flatnonzero(~strong)))
            keep = weak.boxes[:, 2] - weak.boxes[:, 0] <= weak_px
            if len(found):  # beside every face at the threshold, cut by the edge or not
                keep &= box_iou(weak.boxes, found.boxes).max(axis=1) <= 0.0
            if inner:
                keep &= _inside_region(weak.boxes, region, w, h)
            weak = weak.take(np.flatnonzero(keep))
        return dets, weak

    def _decode(self, raw, logits, m, floor):
        """Boxes and keypoints of the anchors scored at least ``floor``, in image pixels."""
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -100.0, 100.0)))
        keep = np.flatnonzero(scores >= floor)
        if not len(keep):
            return Detections.empty()
        size = float(self.spec.size)
        a = self._anchors[keep]
        r = raw[keep].astype(np.float64)
        cx = r[:, 0] / size + a[:, 0]
        cy = r[:, 1] / size + a[:, 1]
        bw, bh = r[:, 2] / size, r[:, 3] / size
        kx = r[:, 4::2] / size + a[:, :1]
        ky = r[:, 5::2] / size + a[:, 1:]
        # Input-normalised -> input pixels -> image pixels (inverse letterbox).
        s, ox, oy = m[0, 0], m[0, 2], m[1, 2]

        def back_x(v):
            return (v * size - ox) / s

        def back_y(v):
            return (v * size - oy) / s
        boxes = np.stack([back_x(cx - bw / 2), back_y(cy - bh / 2),
                          back_x(cx + bw / 2), back_y(cy + bh / 2)], axis=1)
        kps = np.stack([back_x(kx), back_y(ky)], axis=2)
        return Detections(boxes, kps, scores[keep].astype(np.float64))
