"""The detection plan: where the face detectors look, and how their runs are merged.

* :class:`DetectionPlan`: the runs ``(detector, region)`` of a frame of a given
  size -- by default the short-range model on the whole frame (near faces),
  the full-range model on the whole frame and on overlapping tiles
  (:func:`detection_regions`) so that faces down to ``min_face_px`` are found
  in frames up to 1920x1080.
* :class:`FaceSearch`: the plan's detectors, and one search: some or all of
  the runs on one image, their faces merged into one region of interest each.
* :class:`SearchSchedule`: in video, which runs each frame makes (the plan
  spread over frames; none on most frames while faces are tracked).
"""

from dataclasses import dataclass, replace
import math

import numpy as np

from ..geometry import box_iou
from .face_detector import DETECTORS, FaceDetector
from .roi import Roi

#: A short-range detection of a face at least this wide in its 128-px input is a near
#: face, kept over the full-range model's; smaller ones it places poorly.
NEAR_FACE_INPUT_PX = 30.0
#: ... and scored at least this (its false detections of background score 0.5-0.65).
NEAR_FACE_MIN_SCORE = 0.7
#: Neighbouring tiles share this fraction of their side, so every face lies a quarter side
#: inside one tile: the full-range model scores a small face near a tile's edge far lower
#: (0.2-0.4 against 0.5-0.7 in the middle).  It was twice the largest face a level still
#: has to find (at most half the side): renders of held-out identities at 1280x720
#: (tools/clutter_synthetic.py): 28 px faces found 90.0-97.5 -> 91.2-98.8 %, 1 + 6 + 28
#: regions instead of 1 + 6 + 18; 640x480 already had it (1 + 6).
TILE_OVERLAP = 0.5
#: A new far face that one run alone found must be found again in a view centred on it,
#: this many of its box widths wide (``confirm_far_faces``, :meth:`FaceSearch.finds_again`):
#: background that one tile's view takes for a face seldom is one in a view of its own,
#: while a face is.  Renders of held-out identities in real-photo clutter at 1280x720
#: (tools/clutter_synthetic.py, docs/robustness.md): false faces 9 -> 1 in 200 face-free
#: frames, 2 of 80 28 px faces lost; at 640x480 1 -> 0, none lost.
CONFIRM_VIEW = 4.0
#: Small faces (full-range detector box at most WEAK_FACE_PX wide) are taken from WEAK_MARGIN
#: under the search's score threshold where no face at the threshold lies (a weak
#: detection, :attr:`Found.weak`); each must then be found again, at the threshold, in a
#: view of its own (:meth:`FaceSearch.finds_again`) besides the landmark stage's checks.
WEAK_MARGIN = 0.1
WEAK_FACE_PX = 64.0


def detection_regions(width, height, spec_name='full', min_face_px=24.0, overlap=None):
    """Regions ``(x0, y0, x1, y1)`` to search: the whole frame, then tiles.

    Each level halves the tile side until a ``min_face_px`` face covers at
    least the detector's :attr:`~.face_detector.DetectorSpec.min_face_input_px`
    of its input; neighbouring tiles overlap by ``overlap`` pixels (default:
    :data:`TILE_OVERLAP` of the side).  A 640x480 frame with the defaults gets
    1 + 6 regions, 1280x720 1 + 6 + 28.
    """
    spec = DETECTORS[spec_name]
    w, h = float(width), float(height)
    regions = [(0.0, 0.0, w, h)]
    # Largest tile side at which a min_face_px face still reaches the model's minimum.
    finest = spec.size * min_face_px / spec.min_face_input_px
    side = max(w, h)
    while side > finest:
        side = max(side / 2.0, finest)
        ov = overlap if overlap is not None else TILE_OVERLAP * side
        regions.extend(_tiles(w, h, side, ov))
        if side <= finest:
            break
    return regions


def _tiles(w, h, side, overlap):
    """Square tiles of ``side`` px covering ``w x h`` with at least ``overlap`` px shared."""
    def starts(extent):
        if extent <= side:
            return [0.0]
        n = int(math.ceil((extent - overlap) / (side - overlap)))
        step = (extent - side) / (n - 1)
        return [i * step for i in range(n)]
    out = []
    for y in starts(h):
        for x in starts(w):
            out.append((x, y, min(x + side, w), min(y + side, h)))
    return out


class DetectionPlan:
    """The detector runs ``(kind, region)`` that search a frame, in search order.

    ``kind``: ``'auto'`` (the short-range model on the whole frame for near
    faces, the full-range model on the whole frame and tiles), ``'short'`` or
    ``'full'`` (that model alone).  ``min_face_px``: tiles so faces this small
    are found (``None``: the whole frame only).
    """

    def __init__(self, kind, min_face_px):
        self.kind = kind
        self.min_face_px = min_face_px
        #: The detector models the plan runs.
        self.kinds = ('short', 'full') if kind == 'auto' else (kind,)
        self._runs = {}

    def runs(self, width, height):
        """Return the runs of a ``width x height`` frame (computed once per size).

        The whole-frame runs come back between tiles, so near faces are found
        soonest when the plan is spread over frames.
        """
        key = (int(width), int(height))
        if key not in self._runs:
            whole = (0.0, 0.0, float(width), float(height))
            kinds = self.kinds
            tiles = []
            if self.min_face_px is not None:
                kind = 'full' if self.kind == 'auto' else self.kind
                tiles = [(kind, r) for r in
                         detection_regions(width, height, kind, self.min_face_px)[1:]]
            plan = [(k, whole) for k in kinds]
            for i, tile in enumerate(tiles):
                plan.append(tile)
                if i + 1 < len(tiles):
                    plan.append((kinds[i % len(kinds)], whole))
            self._runs[key] = plan
        return self._runs[key]


@dataclass(frozen=True)
class Found:
    """A face a search found: the detector's ``box``, its region of interest, its score.

    ``views``: how many of the search's runs found it; ``weak``: found only under
    the search's threshold (:data:`WEAK_MARGIN`).
    """

    box: tuple
    roi: Roi
    score: float
    views: int = 1
    weak: bool = False


def overlapping(box, boxes, iou=0.3):
    """Return the index of the first of ``boxes`` that ``box`` is, or None.

    IoU above ``iou``, or its centre inside one of about its size (within 2x: a
    small face beside a large box is another face).
    """
    if not len(boxes):
        return None
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
    inside = (b[:, 0] <= cx) & (cx <= b[:, 2]) & (b[:, 1] <= cy) & (cy <= b[:, 3])
    ratio = (b[:, 2] - b[:, 0]) / max(box[2] - box[0], 1e-9)
    alike = (ratio <= 2.0) & (ratio >= 0.5)
    hit = np.flatnonzero((inside & alike) | (box_iou([box], b)[0] > iou))
    return int(hit[0]) if len(hit) else None


def overlaps(box, boxes, iou=0.3):
    """Whether ``box`` is one of ``boxes`` (:func:`overlapping`)."""
    return overlapping(box, boxes, iou) is not None


class FaceSearch:
    """A plan's detectors (one per kind, ``threads`` threads each) and searches with them.

    The detectors load here, so a broken model file fails at construction.
    One search at a time: a detector is not thread-safe.
    """

    def __init__(self, plan, min_score, threads):
        self.plan = plan
        self.min_score = float(min_score)
        #: The full-range model's score from which a small face is a weak detection.
        self.weak_score = (self.min_score - WEAK_MARGIN if self.min_score > WEAK_MARGIN
                           else None)
        self.threads = int(threads)
        self._detectors = {kind: FaceDetector(kind, self.min_score, self.threads)
                           for kind in plan.kinds}

    def single_threaded(self):
        """Return a search of the same plan on single-threaded detectors (this one if it is)."""
        return self if self.threads == 1 else FaceSearch(self.plan, self.min_score, 1)

    def __call__(self, rgb, runs=None):
        """Faces found by ``runs`` (default: the whole plan), highest score first: :class:`Found`.

        Each run's faces are merged by weighted NMS.  Across runs, one face
        found several times keeps the short-range model's detection if it saw
        the face large (:data:`NEAR_FACE_INPUT_PX`: a near face, its box and eye
        keypoints are best there), else the one seen largest in its model's
        input (the finest tile that holds it entire).
        """
        h, w = rgb.shape[:2]
        if runs is None:
            runs = list(dict.fromkeys(self.plan.runs(w, h)))
        cands = []
        for run, (kind, region) in enumerate(runs):
            whole = tuple(region) == (0.0, 0.0, float(w), float(h))
            detector = self._detectors[kind]
            dets, weak = detector.detect_with_weak(
                rgb, region, not whole, self.weak_score if kind == 'full' else None,
                WEAK_FACE_PX)
            zoom = detector.spec.size / max(region[2] - region[0], region[3] - region[1])
            for is_weak, faces in ((False, dets), (True, weak)):
                for i in range(len(faces)):
                    box = faces.boxes[i]
                    size = (box[2] - box[0]) * zoom  # the face's width in the model's input
                    near = (kind == 'short' and size >= NEAR_FACE_INPUT_PX
                            and faces.scores[i] >= NEAR_FACE_MIN_SCORE)
                    cands.append((is_weak, not near, -size, tuple(box),
                                  Roi.from_detection(box, faces.keypoints[i]),
                                  float(faces.scores[i]), run))
        kept, views = [], []
        for weak, *_, box, roi, score, run in sorted(cands, key=lambda c: c[:3]):
            same = overlapping(box, [k.box for k in kept])
            if same is None:
                kept.append(Found(box, roi, score, weak=weak))
                views.append({run})
                continue
            if weak:  # a weaker detection of a face found at the threshold is no view of it
                continue
            views[same].add(run)
            if score > kept[same].score:  # a face keeps the best score any run gave it
                kept[same] = replace(kept[same], score=score)
        kept = [replace(k, views=len(v)) for k, v in zip(kept, views)]
        # Highest detector score first: the ones read when there are more than can be.
        kept.sort(key=lambda k: -k.score)
        return kept

    def finds_again(self, rgb, box):
        """Whether a detector finds the face ``box`` again in a view centred on it.

        The view is :data:`CONFIRM_VIEW` box widths wide; the full-range model
        (the plan's own if it has no other) must find a face there that
        overlaps ``box`` (IoU above 0.3), at the search's score threshold.
        """
        x0, y0, x1, y1 = (float(v) for v in box)
        cx, cy, half = (x0 + x1) / 2.0, (y0 + y1) / 2.0, CONFIRM_VIEW * (x1 - x0) / 2.0
        detector = self._detectors.get('full') or next(iter(self._detectors.values()))
        dets = detector.detect(rgb, (cx - half, cy - half, cx + half, cy + half))
        return bool(len(dets)) and bool(np.any(box_iou([box], dets.boxes)[0] > 0.3))


class SearchSchedule:
    """Video: which runs of the plan each frame makes (none, one or two).

    While faces are tracked: one run of the plan every ``interval`` frames, in
    turn (none once ``max_faces`` are tracked).  While none is: every frame,
    the plan's first run (the short-range model on the whole frame: a near
    face is found at once) and the next of the others in turn.
    """

    def __init__(self, plan, interval, max_faces):
        self.plan = plan
        self.interval = int(interval)
        self.max_faces = int(max_faces)
        self.reset()

    def reset(self):
        """Start over (a new sequence)."""
        self._frame = 0
        self._next = 0

    def due(self, width, height, tracked):
        """Return the runs of the next frame, which tracks ``tracked`` faces (one call a frame)."""
        frame = self._frame
        self._frame += 1
        if tracked >= self.max_faces:
            return []
        plan = self.plan.runs(width, height)
        if tracked:
            if frame % self.interval:
                return []
            run = plan[self._next % len(plan)]
            self._next = (self._next + 1) % len(plan)
            return [run]
        rest = [r for r in plan if r != plan[0]]
        if not rest:
            return [plan[0]]
        run = rest[self._next % len(rest)]
        self._next = (self._next + 1) % len(rest)
        return [plan[0], run]
