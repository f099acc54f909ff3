"""Face landmarks: RGB image -> 468 Face Mesh landmarks per face, in pixel-like units.

The project runs MediaPipe's face models itself (:mod:`nlml_hpe.tflite`,
LiteRT) and does the graph's work in numpy/OpenCV:

1. **Find faces** with a BlazeFace detector (:mod:`nlml_hpe.detection`): by
   default the full-range model over the whole frame and over tiles, so faces
   down to ``min_face_px`` are found in frames up to 1920x1080.
2. **Region of interest** (:class:`Roi`): a square around the face, 1.5 times
   its box, turned so the eyes are level -- from the detector's box and eye
   keypoints, or (tracking) from the previous frame's landmarks (33 -> 263),
   exactly as MediaPipe's ``FaceDetectionFrontDetectionToRoi`` and
   ``FaceLandmarkLandmarksToRoi`` do.
3. **Read** every face of the frame in one batch through the landmark model: an
   affine crop of the ROI to 192x192 (upscaled for small faces), 468 x, y, z
   and a face-presence score; faces under ``min_tracking_confidence`` are
   dropped.
4. **Project back** into the image in the convention the model was trained on:
   ``x, y`` in pixels, ``z`` in the same pixel scale as ``x`` (MediaPipe's
   normalised ``x*W, y*H, z*W``).

Streaming, each face's ROI comes from its landmarks of the previous frame, so
the detector runs only to look for new faces: every ``detection_interval``
frames one run of the detection plan (whole frame and tiles, in turn) while
faces are tracked; while none is, every frame the near-face detector on the
whole frame plus the next run of the plan.  A face, once found, is tracked at
any size the landmark model still reads.  A look while faces are tracked runs
between frames (:meth:`LandmarkExtractor.look_ahead`, on a worker thread when
there is one), and the next frame reads the faces it found, after its tracked
ones: a frame waits for a detector only if the look is still running then.

Threads (``num_threads``): the landmark model runs as that many single-threaded
copies that share a frame's crops, plus one copy on all the threads for a lone
face; a frame's own detector runs use that many threads, a look between frames
one (:data:`~nlml_hpe.tflite.DEFAULT_NUM_THREADS`).

:meth:`LandmarkExtractor.read_frame` also reads each face's mirrored crop (flip
averaging) and reads faces far off the optical axis through a crop turned onto
their line of sight: each one more crop in the same batch of the landmark
model, not another graph.  :meth:`LandmarkExtractor.read` reads faces through
any image-to-crop transforms.

``detector='short', min_face_px=None`` reproduces the legacy
``mediapipe.solutions.face_mesh`` graph (short-range detector on the whole
frame); ``test/test_landmarks_oracle.py`` checks that both give the same
landmarks.
"""

from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
import math

import cv2
import numpy as np

from .camera import Camera
from .detection import FaceDetector, detection_regions
from .features import (
    LEFT_EYE_OUTER,
    N_LANDMARKS,
    RIGHT_EYE_OUTER,
    landmark_extent,
    line_of_sight_homography,
    map_landmarks,
    off_axis_deg,
)
from .geometry import FEW_FACES, box_iou
from .images import as_rgb_uint8
from .options import DETECTOR_KINDS, EstimatorConfig
from .tflite import (
    DEFAULT_NUM_THREADS,
    LANDMARK_MODEL,
    TFLiteModel,
    check_num_threads,
    model_path,
)

#: Defaults of the landmark stage: the options table's (:mod:`nlml_hpe.options`).
DEFAULT_DETECTION_INTERVAL = EstimatorConfig.detection_interval
DEFAULT_MIN_FACE_PX = EstimatorConfig.min_face_px
DEFAULT_DETECTOR = EstimatorConfig.detector
DEFAULT_REFINE = EstimatorConfig.refine
#: A short-range detection of a face at least this wide in its 128-px input is a near
#: face, kept over the full-range model's; smaller ones it places poorly.
NEAR_FACE_INPUT_PX = 30.0
#: ... and scored at least this (its false detections of background score 0.5-0.65).
NEAR_FACE_MIN_SCORE = 0.7
#: Side of the landmark model's square input.
CROP_PX = 192
#: ROI side in face-box sizes (MediaPipe's ``RectTransformationCalculator``).
ROI_SCALE = 1.5
#: Presence scores this close count as equal when two readings of one face compete.
SCORE_TIE = 0.05
#: Two faces whose landmark boxes overlap more than this are one face.
SAME_FACE_IOU = 0.5
#: A small face (detector box at most SMALL_FACE_PX wide: its crop is upscaled 2x or
#: more) that the detector scores at least STRONG_DETECTION needs only WEAK_PRESENCE from
#: the landmark model.  Blur, noise and JPEG blocks take the presence score of such an
#: upscaled crop near zero while the detector still sees the face clearly; background
#: seldom fools both models (tools/clutter_synthetic.py, docs/robustness.md).
SMALL_FACE_PX = 64.0
STRONG_DETECTION = 0.75
WEAK_PRESENCE = 0.1
#: A small new face read below its floor is read once more through an ROI this much larger.
SECOND_LOOK_SCALE = 1.25
#: Faces at most this wide (px, landmark box) are always read with their mirrored crop
#: too, and the estimator averages both readings (flip averaging): a far face's landmarks
#: are noisy, and one more 192-px read costs little beside the tiles that found it.
#: ``LandmarkExtractor.mirror_small_px = None`` turns it off.
MIRROR_SMALL_PX = 64.0


def _normalize_radians(a):
    return a - 2.0 * math.pi * math.floor((a + math.pi) / (2.0 * math.pi))


@dataclass(frozen=True)
class Roi:
    """A square region of interest in image pixels, turned by ``angle`` (radians).

    ``score``: the detector's score of the face it frames (None: placed by landmarks).
    """

    cx: float
    cy: float
    side: float
    angle: float
    score: float = None

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
        if mirror:
            m = np.array([[-1.0, 0.0, CROP_PX], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) @ m
        return m


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


_INV_255 = np.float32(1.0 / 255.0)


def _crop(rgb, transform):
    """Return the 192-px uint8 crop of ``rgb`` through image-to-crop ``transform`` (3x3)."""
    m = np.asarray(transform, dtype=np.float64)
    if m[2, 0] == 0.0 and m[2, 1] == 0.0 and m[2, 2] == 1.0:
        return cv2.warpAffine(rgb, m[:2], (CROP_PX, CROP_PX), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
    return cv2.warpPerspective(rgb, m, (CROP_PX, CROP_PX), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)


class LandmarkModel:
    """MediaPipe's face landmark model: 192x192 crops -> 468 x, y, z + presence.

    ``num_threads``: the crops of one :meth:`read` are shared among up to this
    many copies of the model, each single-threaded and run on its own thread
    (the caller's and a pool's), crop and all: whole faces split evenly
    (crowds, and a face with its mirrored crop).  A read of one crop (one
    tracked face, the common frame) instead goes through one more copy that
    splits that face's convolutions among all ``num_threads`` threads: here
    that reads it in about 0.75 ms instead of 1.1 ms, for about 35 % more CPU
    time (``docs/results.md``).  Each copy holds about 8 MB.
    """

    def __init__(self, num_threads=DEFAULT_NUM_THREADS):
        n = check_num_threads(num_threads)
        path = model_path(LANDMARK_MODEL)
        outputs = [(1, 1, 3 * N_LANDMARKS), (1, 1, 1)]
        self._models = [TFLiteModel(path, (CROP_PX, CROP_PX, 3), outputs, num_threads=1)
                        for _ in range(n)]
        #: The copy that reads a single crop with all the threads (``None`` with one thread).
        self._solo = (TFLiteModel(path, (CROP_PX, CROP_PX, 3), outputs, num_threads=n)
                      if n > 1 else None)
        self._pool = None

    @property
    def num_threads(self):
        """Copies of the model, one thread each."""
        return len(self._models)

    @staticmethod
    def _read_part(model, rgb, transforms):
        """Read crops one at a time with ``model``: ``(raw landmarks, raw flags)``."""
        raw = np.empty((len(transforms), 3 * N_LANDMARKS), np.float32)
        flag = np.empty(len(transforms), np.float32)
        for i, m in enumerate(transforms):
            r, f = model.run_scaled(_crop(rgb, m), _INV_255)
            raw[i], flag[i] = r.reshape(-1), f.reshape(-1)[0]
        return raw, flag

    def read(self, rgb, transforms, solo=True):
        """Landmarks ``(N, 468, 3)`` in crop pixels and presence scores ``(N,)``.

        The crops are read one by one, shared among the model's copies: one
        crop at a time beats a batch through LiteRT's CPU kernels here (a
        batch of 15 cost 2.2 ms a face, single crops 1.6-1.8 ms; a batch's
        activations outgrow the caches; ``docs/results.md``).  A single crop
        takes all threads unless ``solo`` is false (the workers are busy: it
        is read on this thread alone).
        """
        n = len(transforms)
        if not n:
            return np.zeros((0, N_LANDMARKS, 3)), np.zeros(0)
        if n == 1 and solo and self._solo is not None:
            return self._finish([self._read_part(self._solo, rgb, transforms)], n)
        parts = min(n, len(self._models))
        cuts = [n - round(n * (parts - j) / parts) for j in range(parts + 1)]
        futures = [self._executor().submit(self._read_part, self._models[j], rgb,
                                     transforms[cuts[j]:cuts[j + 1]])
                   for j in range(1, parts)]
        try:
            first = self._read_part(self._models[0], rgb, transforms[:cuts[1]])
        finally:  # the workers read rgb: never return (or raise) before they are done
            wait(futures)
        return self._finish([first] + [f.result() for f in futures], n)

    @staticmethod
    def _finish(results, n):
        """Join the shares' ``(raw landmarks, raw flags)``: ``(landmarks, presence scores)``."""
        raw = results[0][0] if len(results) == 1 else np.concatenate([r[0] for r in results])
        flags = [f for r in results for f in r[1].tolist()]
        lm = raw.reshape(n, N_LANDMARKS, 3).astype(np.float64)
        # The logistic of each flag, in plain floats (a few per frame).
        score = np.array([1.0 / (1.0 + math.exp(-min(max(f, -100.0), 100.0))) for f in flags])
        return lm, score

    def submit(self, fn, *args, **kwargs):
        """Run ``fn`` on a worker thread, or here with one thread: a ``Future`` either way.

        Work beside a read: the workers also take a read's shares, after it.
        """
        if len(self._models) > 1:
            return self._executor().submit(fn, *args, **kwargs)
        done = Future()
        try:
            done.set_result(fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - raised by result(), as a worker's would be
            done.set_exception(exc)
        return done

    def _executor(self):
        if self._pool is None:
            self._pool = ThreadPoolExecutor(len(self._models) - 1,
                                            thread_name_prefix='nlml_hpe_landmarks')
        return self._pool

    def close(self):
        """Stop the worker threads (idempotent)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


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


_FLIP = np.array([[-1.0, 0.0, CROP_PX], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class _Plan:
    """How one face is read: image-to-crop transform, its z scale, line-of-sight or not."""

    transform: np.ndarray
    z_scale: float
    reread: bool


@dataclass
class FrameReading:
    """The faces of one frame (:meth:`LandmarkExtractor.read_frame`), largest first.

    ``faces``: ``(468, 3)`` landmarks in image pixels; ``scores``: face
    presence; ``mirrored``: per face, its landmarks read from the mirrored crop
    in the mirrored image's pixels (``None`` without ``mirror``); ``reread``:
    per face, whether it was read through a line-of-sight crop.
    """

    faces: list
    scores: list
    mirrored: list
    reread: list
    detector_runs: int = 0
    tracked: int = 0


def _overlapping(box, boxes, iou=0.3):
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


def _overlaps(box, boxes, iou=0.3):
    """Whether ``box`` is one of ``boxes`` (:func:`_overlapping`)."""
    return _overlapping(box, boxes, iou) is not None


def _same_face(a, b):
    return box_iou(landmark_boxes(a), landmark_boxes(b))[0, 0] > SAME_FACE_IOU


def landmark_boxes(landmarks):
    """Boxes ``(N, 4)`` of landmark sets ``(N, 468, 3)``."""
    lm = np.asarray(landmarks).reshape(-1, N_LANDMARKS, 3)
    return np.concatenate(landmark_extent(lm), axis=1)


def check_extractor_args(max_faces, min_detection_confidence, min_tracking_confidence,
                         detection_interval):
    """Raise ``ValueError`` for extractor arguments out of range (shared with the legacy one)."""
    if int(max_faces) < 1:
        raise ValueError(f'max_faces must be >= 1, got {max_faces}')
    for name, val in (('min_detection_confidence', min_detection_confidence),
                      ('min_tracking_confidence', min_tracking_confidence)):
        if not 0.0 <= float(val) <= 1.0:
            raise ValueError(f'{name} must be in [0, 1], got {val}')
    if int(detection_interval) < 1:
        raise ValueError(f'detection_interval must be >= 1, got {detection_interval}')


class LandmarkExtractor:
    """Detect faces and read their 468 landmarks; optionally track them over frames.

    ``streaming=False`` searches every image with the whole detection plan
    (:meth:`regions`); ``streaming=True`` tracks each face from its previous
    landmarks and spreads the search for new ones over frames (see
    :meth:`_regions_due`: at most two detector runs a frame, none on most
    frames while faces are tracked).  ``detector``: ``'auto'`` (default;
    short-range model for near faces, full-range model and tiles for far
    ones), ``'short'`` (the legacy graph's) or ``'full'``.  ``min_face_px``:
    the plan tiles the frame so faces this small are found (``None``: whole
    frame only).  ``refine``: a new face is read this many more times from its
    own landmarks' ROI.  ``min_detection_confidence`` is the detector's score
    threshold, ``min_tracking_confidence`` the landmark model's face-presence
    threshold.  ``num_threads``: CPU threads of each model.

    :meth:`extract_with_scores` returns the face-presence score of each face.
    """

    def __init__(self, max_faces=5, min_detection_confidence=0.5,
                 min_tracking_confidence=0.5, streaming=False,
                 detection_interval=DEFAULT_DETECTION_INTERVAL, detector=DEFAULT_DETECTOR,
                 min_face_px=DEFAULT_MIN_FACE_PX, num_threads=DEFAULT_NUM_THREADS,
                 refine=DEFAULT_REFINE):
        check_extractor_args(max_faces, min_detection_confidence, min_tracking_confidence,
                             detection_interval)
        if min_face_px is not None and not float(min_face_px) >= 8.0:
            raise ValueError(f'min_face_px must be >= 8 or None, got {min_face_px}')
        self.max_faces = int(max_faces)
        #: Detections read per frame at most: background can look like a face to the
        #: detector (the landmark model's presence score then drops it), so more are
        #: read than ``max_faces`` before the largest present faces are kept.
        self.max_candidates = 2 * self.max_faces + 2
        if not 0 <= int(refine) <= 5:
            raise ValueError(f'refine must be in [0, 5], got {refine}')
        self.refine = int(refine)
        #: Faces up to this wide are read mirrored too (:data:`MIRROR_SMALL_PX`; None: off).
        self.mirror_small_px = MIRROR_SMALL_PX
        self.streaming = bool(streaming)
        self.detection_interval = int(detection_interval)
        self.min_tracking_confidence = float(min_tracking_confidence)
        self.min_face_px = None if min_face_px is None else float(min_face_px)
        if detector not in DETECTOR_KINDS:
            raise ValueError(f'detector must be one of {DETECTOR_KINDS}, got {detector!r}')
        self.detector_kind = detector
        self._min_detection_confidence = float(min_detection_confidence)
        self._num_threads = check_num_threads(num_threads)
        self._detectors = {}  # {(kind, look): FaceDetector}
        for kind in (('short', 'full') if detector == 'auto' else (detector,)):
            self._detector(kind)  # load now: a broken model file fails here, not mid-stream
        self.model = LandmarkModel(num_threads)
        self._regions = {}
        self._tracked = []  # streaming: landmarks of the faces found in the previous frame
        self._tracked_floors = []  # ... and the presence score each needs (presence_floor)
        self._look_due = None  # streaming: a look scheduled (rgb, detector runs, frame size)
        self._look = None  # ... and started: (future, frame size)
        self._frame = 0
        self._next_region = 0
        self._closed = False
        #: Counts of the latest :meth:`read_frame`: detector runs, tracked faces, re-read.
        self.last_stats = {}

    # -- detection plan ---------------------------------------------------
    def _detector(self, kind, look=False):
        """Return the detector of ``kind`` (``look``: the single-threaded one of looks).

        A look runs on a worker beside the next frame's reading, so it takes
        one thread (its own copy of the model); a frame's own search takes
        all ``num_threads``.
        """
        look = look and self._num_threads > 1
        if (kind, look) not in self._detectors:
            self._detectors[kind, look] = FaceDetector(
                kind, self._min_detection_confidence, 1 if look else self._num_threads)
        return self._detectors[kind, look]

    def regions(self, width, height):
        """Return the detection plan of a frame: ``(detector, region)`` pairs in search order.

        ``auto``: the short-range model on the whole frame (near faces), the
        full-range model on the whole frame and, for faces down to
        ``min_face_px``, on tiles (:func:`~nlml_hpe.detection.detection_regions`);
        the whole-frame runs come back between tiles, so near faces are found
        soonest when the plan is spread over frames.
        """
        key = (int(width), int(height))
        if key not in self._regions:
            whole = (0.0, 0.0, float(width), float(height))
            kinds = ('short', 'full') if self.detector_kind == 'auto' else (self.detector_kind,)
            tiles = []
            if self.min_face_px is not None:
                kind = 'full' if self.detector_kind == 'auto' else self.detector_kind
                tiles = [(kind, r) for r in
                         detection_regions(width, height, kind, self.min_face_px)[1:]]
            plan = [(k, whole) for k in kinds]
            for i, tile in enumerate(tiles):
                plan.append(tile)
                if i + 1 < len(tiles):
                    plan.append((kinds[i % len(kinds)], whole))
            self._regions[key] = plan
        return self._regions[key]

    def detect(self, rgb, plan=None, boxes=False, look=False):
        """Detector ROIs in the ``(detector, region)`` pairs of ``plan`` (default: all).

        ``boxes``: return ``(box, roi)`` pairs, ``box`` the detector's face box.
        ``look``: run the single-threaded detectors of looks between frames.

        Each run's faces are merged by weighted NMS.  Across runs, one face
        found several times keeps the short-range model's detection if it saw
        the face large (:data:`NEAR_FACE_INPUT_PX`: a near face, its box and eye
        keypoints are best there), else the one seen largest in its model's
        input (the finest tile that holds it entire).
        """
        h, w = rgb.shape[:2]
        if plan is None:
            plan = list(dict.fromkeys(self.regions(w, h)))
        cands = []
        for kind, region in plan:
            whole = tuple(region) == (0.0, 0.0, float(w), float(h))
            detector = self._detector(kind, look)
            dets = detector.detect(rgb, region, inner=not whole)
            zoom = detector.spec.size / max(region[2] - region[0], region[3] - region[1])
            for i in range(len(dets)):
                box = dets.boxes[i]
                size = (box[2] - box[0]) * zoom  # the face's width in the model's input
                near = (kind == 'short' and size >= NEAR_FACE_INPUT_PX
                        and dets.scores[i] >= NEAR_FACE_MIN_SCORE)
                cands.append((not near, -size, tuple(box),
                              Roi.from_detection(box, dets.keypoints[i]), float(dets.scores[i])))
        kept = []
        for *_, box, roi, score in sorted(cands, key=lambda c: c[:2]):
            same = _overlapping(box, [k[0] for k in kept])
            if same is None:
                kept.append([box, roi, score])
            else:  # a face keeps the best score any run gave it
                kept[same][2] = max(kept[same][2], score)
        kept = [(box, replace(roi, score=score), score) for box, roi, score in kept]
        # Highest detector score first: the ones read when there are more than can be.
        kept.sort(key=lambda k: -k[2])
        return [k[:2] for k in kept] if boxes else [k[1] for k in kept]

    # -- reading ----------------------------------------------------------
    def read(self, rgb, transforms):
        """Read faces through image-to-crop ``transforms`` ``(3, 3)`` each.

        Returns landmarks ``(N, 468, 3)`` in ``rgb``'s pixels (for a mirroring
        transform: positions in ``rgb``, landmark order of the mirrored face)
        and the face-presence scores ``(N,)``, without any threshold.
        """
        rgb = as_rgb_uint8(rgb)
        crop_lm, scores = self.model.read(rgb, transforms)
        return from_crop(crop_lm, transforms), scores

    def extract(self, rgb):
        """Return a list of ``(468, 3)`` float64 landmark arrays (``x*W, y*H, z*W``)."""
        return self.read_frame(rgb).faces

    def extract_with_scores(self, rgb):
        """Return ``(landmarks list, face-presence scores list)``, largest face first."""
        reading = self.read_frame(rgb)
        return reading.faces, reading.scores

    def read_frame(self, rgb, *, mirror=False, camera_matrix=None, line_of_sight_deg=None,
                   camera=None):
        """Find and read the faces of one frame: a :class:`FrameReading`.

        ``mirror``: also read each face's mirrored crop (flip averaging); the
        mirrored landmarks are in the mirrored image's pixels.
        ``line_of_sight_deg``: faces at least this far off the optical axis of
        ``camera`` (a :class:`~nlml_hpe.camera.Camera`) or ``camera_matrix``
        (default: the guess for an uncalibrated camera) are
        read from a crop of the view of a camera turned onto them (see
        :func:`~nlml_hpe.features.line_of_sight_homography`); their landmarks
        are mapped back into the image.  Streaming, a tracked face goes
        straight to that crop (its previous landmarks place it), so re-reading
        costs nothing extra; a new face is read once more.
        """
        if self._closed:
            raise RuntimeError('LandmarkExtractor is closed')
        rgb = as_rgb_uint8(rgb)
        h, w = rgb.shape[:2]
        if line_of_sight_deg is not None and camera is None:  # else validated by the caller
            camera = (Camera(camera_matrix, w, h) if camera_matrix is not None else
                      Camera.guess(w, h))
        detector_runs = 0
        tracked, fresh, found, due = [], [], [], None
        if not self.streaming:
            fresh = self.detect(rgb)[:self.max_candidates]
            detector_runs = len(set(self.regions(w, h)))
        else:
            self.look_ahead()  # the previous frame's look, if look_ahead was not called
            tracked = self._plans(self._tracked, camera, line_of_sight_deg)
            due = self._regions_due(w, h)
            if due:
                detector_runs = len(due)
                # While faces are tracked, a look for new ones waits for look_ahead (after
                # this frame's work) and the next frame reads the faces it finds.
                if not tracked:
                    found = self._new_faces(self.detect(rgb, due, boxes=True))
                    due = None
        # Pass 1: tracked faces through their planned crops (and mirrored), while the
        # previous frame's look may still run on the worker (then one thread reads here:
        # the look has the other), then the new faces directly.
        floors = list(self._tracked_floors) if tracked else []
        faces, scores, mirrored, reread = self._read_plans(
            rgb, tracked, [mirror or self._mirrors(p) for p in tracked],
            solo=self._look is None, floors=floors)
        if self.streaming:  # the look's new faces, then the ones this frame found
            fresh = (self._collect_look(w, h) + found)[:self.max_candidates - len(tracked)]
        if fresh:
            floors += [self.presence_floor(r) for r in fresh]
            for mine, more in zip((faces, scores, mirrored, reread),
                                  self._read_new(rgb, fresh, floors[len(tracked):])):
                mine += more
        # New faces: re-read from their own landmarks' ROI (as a tracker would) ``refine``
        # times; the last pass also turns them onto their line of sight and mirrors them.
        redo = [i for i in range(len(tracked), len(faces)) if faces[i] is not None]
        for it in range(max(self.refine, 1)):
            last = it == max(self.refine, 1) - 1
            if not redo or not (self.refine or last):
                break
            plans2 = self._plans([faces[i] for i in redo], camera if last else None,
                                 line_of_sight_deg)
            direct = [bool(self.refine) or p.reread for p in plans2]
            mirs = [last and (mirror or self._mirrors(p)) for p in plans2]
            use = [d or m for d, m in zip(direct, mirs)]
            sel = [i for i, u in zip(redo, use) if u]
            plans2, direct, mirs = ([x for x, u in zip(xs, use) if u]
                                    for xs in (plans2, direct, mirs))
            if not sel:
                break
            f2, s2, m2, _ = self._read_plans(rgb, plans2, mirs, direct=direct,
                                             floors=[floors[i] for i in sel])
            for j, i in enumerate(sel):
                if direct[j] and f2[j] is not None and _same_face(f2[j], faces[i]):
                    faces[i], scores[i], reread[i] = f2[j], s2[j], plans2[j].reread
                if mirs[j]:
                    mirrored[i] = m2[j]
        if self.streaming and due:
            self._look_due = (rgb, due, (w, h))
        keep = self._keep(faces, scores)
        twins = [mirrored[i] for i in keep]
        out = FrameReading([faces[i] for i in keep], [float(scores[i]) for i in keep],
                           twins if mirror or any(t is not None for t in twins) else None,
                           [bool(reread[i]) for i in keep], detector_runs, len(tracked))
        if self.streaming:
            self._tracked = list(out.faces)
            self._tracked_floors = [floors[i] for i in keep]
            self._frame += 1
        self.last_stats = {'detector_runs': detector_runs, 'tracked': len(tracked),
                           'reread': sum(out.reread)}
        return out

    def _new_faces(self, found):
        """Return the ROIs of ``found`` ``(box, roi)`` pairs that are not tracked faces."""
        known = [tuple(b) for b in landmark_boxes(np.array(self._tracked))] \
            if self._tracked else []
        return [roi for box, roi in found if not _overlaps(box, known)]

    def look_ahead(self):
        """Start the look for new faces that the latest frame scheduled, if any.

        Streaming, while faces are tracked, a look (one detector run every
        ``detection_interval`` frames) is not run inside the frame that
        schedules it: call this once that frame's work is done, and it runs on
        a worker thread (``num_threads`` >= 2; single-threaded detectors) in
        the time before the next frame, or here.  The next :meth:`read_frame`
        reads the faces it found (it starts the look itself if this was not
        called), so a new face appears one frame after its look, whatever the
        thread count.  That frame reads its tracked faces first (on one
        thread while the look runs): frames that come back to back, with no
        idle time for the look, wait only for what is left of it.
        """
        if self._look_due is None:
            return
        rgb, due, size = self._look_due
        self._look_due = None
        if self.model.num_threads > 1:  # a worker's look reads its own copy: the caller
            rgb = rgb.copy()  # may reuse its frame buffer as soon as this frame returns
        self._look = (self.model.submit(self.detect, rgb, due, boxes=True, look=True), size)

    def _collect_look(self, w, h):
        """Return the new faces of the look the previous frame scheduled, or ``[]``.

        Faces barely move in a frame, and the ROI is 1.5 face boxes wide; the
        refine pass then centres each one on its own landmarks.
        """
        if self._look is None:
            return []
        look, size = self._look
        self._look = None
        found = look.result()
        return self._new_faces(found) if size == (w, h) else []

    @staticmethod
    def _plans(faces, camera, min_deg):
        """Return the crop each face is read through, from landmarks that place it.

        Faces at least ``min_deg`` off the optical axis of ``camera`` (none
        without it) are read in the view of a camera turned onto them.
        """
        if not len(faces):
            return []
        lm = np.asarray(faces, dtype=np.float64).reshape(-1, N_LANDMARKS, 3)
        mats = roi_transforms(lm)
        turned = np.zeros(len(lm), dtype=bool)
        if camera is not None and min_deg is not None:
            turned = off_axis_deg(lm, camera.k, camera.k_inv) >= min_deg
        plans = [_Plan(m, None, False) for m in mats]
        if turned.any():
            idx = np.flatnonzero(turned)
            hom, scale = line_of_sight_homography(lm[idx], camera.k, camera.k_inv)
            roi_m = roi_transforms(map_landmarks(lm[idx], hom, scale))
            for j, i in enumerate(idx):
                plans[i] = _Plan(roi_m[j] @ hom[j], crop_scale(roi_m[j]) * float(scale[j]), True)
        return plans

    def _read_new(self, rgb, rois, floors):
        """Read new faces from their detector ROIs (:meth:`_read_plans`'s lists).

        A small face read below its presence floor gets a second look through
        an ROI :data:`SECOND_LOOK_SCALE` times larger: a far face's detector
        box is tight, and a crop that cuts its outline reads as no face.
        """
        out = self._read_plans(rgb, [_Plan(r.transform(), None, False) for r in rois],
                               [False] * len(rois), floors=floors)
        again = [i for i, r in enumerate(rois)
                 if out[0][i] is None and r.side <= SMALL_FACE_PX * ROI_SCALE]
        if again:
            plans = [_Plan(replace(rois[i], side=rois[i].side * SECOND_LOOK_SCALE).transform(),
                           None, False) for i in again]
            more = self._read_plans(rgb, plans, [False] * len(again),
                                    floors=[floors[i] for i in again])
            for j, i in enumerate(again):
                for mine, theirs in zip(out, more):
                    mine[i] = theirs[j]
        return out

    def _mirrors(self, plan):
        """Whether a face read through ``plan`` is small enough to read mirrored too."""
        return (self.mirror_small_px is not None and
                CROP_PX / crop_scale(plan.transform) <= self.mirror_small_px * ROI_SCALE)

    def presence_floor(self, roi):
        """Return the face-presence score a new face in ``roi`` needs to be reported.

        ``min_tracking_confidence``, or at most :data:`WEAK_PRESENCE` for a small
        face the detector is sure of (:data:`STRONG_DETECTION`); a face keeps its
        floor while it is tracked.
        """
        if (roi.score is not None and roi.score >= STRONG_DETECTION
                and roi.side <= SMALL_FACE_PX * ROI_SCALE):
            return min(WEAK_PRESENCE, self.min_tracking_confidence)
        return self.min_tracking_confidence

    def _read_plans(self, rgb, plans, mirror, direct=None, solo=True, floors=None):
        """Read ``plans`` (``direct[i]`` False: only its mirrored crop) in one batch.

        ``solo``: a single crop may take all threads (:meth:`LandmarkModel.read`).
        ``floors``: the presence score each plan's face needs (default
        ``min_tracking_confidence``, :meth:`presence_floor`).

        Returns per plan: landmarks (or None under the presence threshold),
        score, mirrored landmarks (mirrored image's pixels, or None) and whether
        it was read through a line-of-sight crop.
        """
        n = len(plans)
        direct = [True] * n if direct is None else direct
        mats, zs, owner = [], [], []
        for i, p in enumerate(plans):
            if direct[i]:
                mats.append(p.transform)
                zs.append(p.z_scale)
                owner.append((i, False))
            if mirror[i]:
                mats.append(_FLIP @ p.transform)
                zs.append(p.z_scale)
                owner.append((i, True))
        faces, scores, mirrored = [None] * n, [0.0] * n, [None] * n
        if not mats:
            return faces, scores, mirrored, [p.reread for p in plans]
        crop_lm, pres = self.model.read(rgb, mats, solo=solo)
        width = rgb.shape[1]
        lms = from_crop(crop_lm, mats, zs)
        finite = np.all(np.isfinite(lms), axis=(1, 2))
        for (i, is_mirror), lm, s, ok in zip(owner, lms, pres, finite):
            if not ok:
                continue
            if is_mirror:
                lm = lm.copy()
                lm[:, 0] = width - lm[:, 0]
                mirrored[i] = lm
            elif s >= (self.min_tracking_confidence if floors is None else floors[i]):
                faces[i], scores[i] = lm, float(s)
        return faces, scores, mirrored, [p.reread for p in plans]

    def _keep(self, faces, scores):
        """Return the indices of the faces to report: present, one per face, largest first."""
        idx = [i for i, f in enumerate(faces) if f is not None]
        if len(idx) < 2:
            return idx
        boxes = landmark_boxes(np.stack([faces[i] for i in idx]))
        iou = box_iou(boxes, boxes)
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        # Of two readings of one face that are about as sure, the larger: a region that
        # slid onto a nearer face (one face passing in front of another) reads it cut off.
        rank = sorted(range(len(idx)), key=lambda a: (-round(scores[idx[a]] / SCORE_TIE),
                                                      -area[a]))
        chosen = []
        for a in rank:
            if all(iou[a, b] <= SAME_FACE_IOU for b in chosen):
                chosen.append(a)
        chosen.sort(key=lambda a: -area[a])
        return [idx[a] for a in chosen[:self.max_faces]]

    def _regions_due(self, w, h):
        """Streaming: the ``(detector, region)`` runs of this frame (none, one or two).

        While faces are tracked: one run of the plan every ``detection_interval``
        frames, in turn.  While none is: every frame, the plan's first run (the
        short-range model on the whole frame: a near face is found at once) and
        the next of the others in turn.
        """
        if len(self._tracked) >= self.max_faces:
            return []
        plan = self.regions(w, h)
        if self._tracked:
            if self._frame % self.detection_interval:
                return []
            run = plan[self._next_region % len(plan)]
            self._next_region = (self._next_region + 1) % len(plan)
            return [run]
        rest = [r for r in plan if r != plan[0]]
        if not rest:
            return [plan[0]]
        run = rest[self._next_region % len(rest)]
        self._next_region = (self._next_region + 1) % len(rest)
        return [plan[0], run]

    def reset(self):
        """Forget tracked faces (a new sequence starts)."""
        if self._look is not None:
            self._look[0].result()  # its detectors are free again; its faces are dropped
        self._look = self._look_due = None
        self._tracked = []
        self._tracked_floors = []
        self._frame = 0
        self._next_region = 0

    def close(self):
        """Release the models (idempotent); the extractor cannot be used afterwards."""
        self._closed = True
        if self.model is not None:
            self.model.close()  # waits for a look still running
        self._look = self._look_due = None
        self._detectors = {}
        self.model = None
        self._tracked = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
