"""The landmark stage: find and read the faces of a frame, and track them over frames."""

from contextlib import contextmanager
from dataclasses import dataclass, replace
import threading

import numpy as np

from ..camera import Camera
from ..images import as_rgb_uint8
from ..options import EstimatorConfig
from .detection_plan import DetectionPlan, FaceSearch, SearchSchedule, overlaps
from .face_checks import (
    NEW,
    TRACKED,
    haar_waiver,
    keep_faces,
    landmark_boxes,
    needs_own_view,
    presence_floor,
    reads_mirrored,
    refuted_by_mirror,
    same_face,
    small_face,
)
from .face_verifier import SecondOpinions
from .landmark_model import LandmarkModel
from .look import Look
from .motion_blur import BlurChecks
from .roi import MIRROR, ReadPlan, from_crop, read_plans

#: A small new face read below its floor is read once more through ROIs this much larger
#: and, with SECOND_LOOK_UPRIGHT, upright (unturned) at 1x and this scale: the detector's
#: eye keypoints of a face under about 30 px turn its ROI by 40-90 deg too much at times,
#: and the landmark model sees no face in a crop turned that far.
SECOND_LOOK_SCALE = 1.25
SECOND_LOOK_UPRIGHT = True


@dataclass
class FaceRead:
    """One face of a frame as the extractor reads it.

    ``plan``: the crop its landmarks were (last) read through; ``source``:
    :data:`~.face_checks.TRACKED` or :data:`~.face_checks.NEW`; ``landmarks``
    ``(468, 3)`` in image pixels (``None``: under its presence threshold, or not
    read directly);
    ``score``: face presence; ``mirrored``: its landmarks read from the
    mirrored crop, in the mirrored image's pixels (``None``: not read), and
    ``mirrored_score`` its presence; ``floor``: the presence it needs (``None``:
    its source's threshold); ``detection``: a new face's
    :class:`~.detection_plan.Found`.
    """

    plan: ReadPlan
    source: str
    landmarks: np.ndarray = None
    score: float = 0.0
    mirrored: np.ndarray = None
    floor: float = None
    mirrored_score: float = None
    detection: object = None

    @property
    def reread(self):
        """Whether the landmarks were read through a crop turned onto the line of sight."""
        return self.plan.reread


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


def second_looks(roi):
    """Return the ROIs of a small face's second look (:data:`SECOND_LOOK_SCALE`, ...UPRIGHT)."""
    larger = replace(roi, side=roi.side * SECOND_LOOK_SCALE)
    if not SECOND_LOOK_UPRIGHT:
        return [larger]
    return [larger, replace(roi, angle=0.0), replace(larger, angle=0.0)]


def check_extractor_args(max_faces, min_detection_confidence, min_tracking_confidence,
                         detection_interval):
    """Raise the options table's ``ValueError`` for values out of range (legacy extractor)."""
    EstimatorConfig(max_faces=max_faces, min_detection_confidence=min_detection_confidence,
                    min_tracking_confidence=min_tracking_confidence,
                    detection_interval=detection_interval)


class LandmarkExtractor:
    """Detect faces and read their 468 landmarks; optionally track them over frames.

    Options: an :class:`~nlml_hpe.options.EstimatorConfig` (``config``) and/or
    its fields as keywords (``max_faces``, ``detector``, ``min_face_px``,
    ``refine``, ``num_threads``, the thresholds ...).  ``streaming=False``
    searches every image with the whole detection plan; ``streaming=True``
    tracks each face from its previous landmarks and spreads the search for
    new ones over frames (:class:`~.detection_plan.SearchSchedule`), the runs
    of a frame that tracks faces in a :class:`~.look.Look` between frames.

    A new face must reach ``min_tracking_confidence`` of face presence (a
    small one the detector is sure of, :data:`~.face_checks.WEAK_PRESENCE`: see
    :func:`~.face_checks.presence_floor`); a tracked one stays while it keeps
    ``min_tracking_presence`` (video).  Faces up to ``small_face_flip_px`` wide
    are always read with their mirrored crop too (the estimator averages both).

    Threads (``num_threads``, N): a frame's crops are shared among N
    single-threaded copies of the landmark model (a lone crop goes through one
    copy on all N); a frame's own search runs its detectors on N threads; a
    look between frames runs on a worker of its own and holds one thread of
    the N while it runs (:class:`~.look.Look`).

    One caller at a time: :meth:`read_frame`, :meth:`read`, :meth:`look_ahead`,
    :meth:`reset` and :meth:`close` must not overlap (a camera loop or a node's
    frame lock does that); a call that finds another in progress raises
    ``RuntimeError`` instead of corrupting the models or the tracks.
    """

    def __init__(self, config=None, *, streaming=False, **options):
        self.config = c = EstimatorConfig.with_options(config, **options)
        self.streaming = bool(streaming)
        self.plan = DetectionPlan(c.detector, c.min_face_px)
        # The detectors load now: a broken model file fails here, not mid-stream.
        self.search = FaceSearch(self.plan, c.min_detection_confidence, c.num_threads)
        self.model = LandmarkModel(c.num_threads)
        self.schedule = SearchSchedule(self.plan, c.detection_interval, c.max_faces)
        self.look = Look(self.search, c.num_threads)
        self._tracked = []  # streaming: landmarks of the faces of the previous frame
        self._size = None  # ... and its (width, height)
        self._busy = threading.Lock()
        self._closed = False
        self._blur_checks = BlurChecks(self.streaming) if c.undo_motion_blur else None
        self.opinions = SecondOpinions(haar_waiver(c, self.streaming))
        self.problems = self.opinions.problems  # options asked for but not in effect, why
        self._restorer = None  # read_frame: the frame's Restorer (None: not checked)
        #: Counts of the latest :meth:`read_frame`: detector runs, tracked faces, re-read.
        self.last_stats = {}

    @property
    def max_candidates(self):
        """Detections read per frame at most.

        Background can look like a face to the detector (the landmark model's
        presence score then drops it), so more are read than ``max_faces``
        before the largest present faces are kept.
        """
        return 2 * self.config.max_faces + 2

    @contextmanager
    def _one_caller(self, closing=False):
        if not self._busy.acquire(blocking=False):
            raise RuntimeError('LandmarkExtractor is in use by another thread: read_frame, '
                               'read, look_ahead, reset and close take one caller at a time')
        try:
            if self._closed and not closing:
                raise RuntimeError('LandmarkExtractor is closed')
            yield
        finally:
            self._busy.release()

    # -- reading ----------------------------------------------------------
    def read(self, rgb, transforms):
        """Read faces through image-to-crop ``transforms`` ``(3, 3)`` each.

        Returns landmarks ``(N, 468, 3)`` in ``rgb``'s pixels (for a mirroring
        transform: positions in ``rgb``, landmark order of the mirrored face)
        and the face-presence scores ``(N,)``, without any threshold.
        """
        with self._one_caller():
            rgb = as_rgb_uint8(rgb)
            crop_lm, scores = self.model.read(rgb, transforms, self.look.frame_threads)
            return from_crop(crop_lm, transforms), scores

    def extract(self, rgb):
        """Return a list of ``(468, 3)`` float64 landmark arrays (``x*W, y*H, z*W``)."""
        return self.read_frame(rgb).faces

    def read_frame(self, rgb, *, mirror=False, camera=None, line_of_sight_deg=None):
        """Find and read the faces of one frame: a :class:`FrameReading`.

        ``mirror``: also read each face's mirrored crop (flip averaging); the
        mirrored landmarks are in the mirrored image's pixels.
        ``line_of_sight_deg``: faces at least this far off the optical axis of
        ``camera`` (a :class:`~nlml_hpe.camera.Camera`; default: the guess for
        an uncalibrated camera) are read from a crop of the view of a camera
        turned onto them (see :func:`~nlml_hpe.features.line_of_sight_homography`);
        their landmarks are mapped back into the image.  Streaming, a tracked
        face goes straight to that crop (its previous landmarks place it), so
        re-reading costs nothing extra; a new face is read once more.
        """
        with self._one_caller():
            rgb = as_rgb_uint8(rgb)
            h, w = rgb.shape[:2]
            self._restorer = None if self._blur_checks is None else self._blur_checks.restorer(rgb)
            if line_of_sight_deg is not None and camera is None:
                camera = Camera.guess(w, h)
            if self.streaming:
                faces, runs, tracked = self._track(rgb, mirror, camera, line_of_sight_deg)
            else:
                faces = self._read_new(rgb, self.search(rgb)[:self.max_candidates])
                runs, tracked = len(set(self.plan.runs(w, h))), 0
            self._refine(rgb, faces, mirror, camera, line_of_sight_deg)
            self.opinions.drop_unverified(rgb, faces, self.config)
            for face in faces:
                if needs_own_view(face, self.config) and not self.search.finds_again(
                        rgb, face.detection.box) and not self.opinions.waives(rgb, face):
                    face.landmarks = None
            kept = keep_faces(faces, self.config.max_faces)
            twins = [f.mirrored for f in kept]
            out = FrameReading([f.landmarks for f in kept], [float(f.score) for f in kept],
                               twins if mirror or any(t is not None for t in twins) else None,
                               [bool(f.reread) for f in kept], runs, tracked)
            if self.streaming:
                self._tracked = list(out.faces)
            unblurred = self._blur_checks.done(self._restorer) if self._blur_checks else 0
            self.last_stats = {'detector_runs': runs, 'tracked': tracked,
                               'reread': sum(out.reread), 'unblurred': unblurred}
            self._restorer = None
            return out

    def _track(self, rgb, mirror, camera, min_deg):
        """Streaming: read the tracked faces, then the new ones; ``(faces, runs, tracked)``.

        The tracked faces are read through their previous landmarks' crops
        while the previous frame's look may still run, then the faces it found
        and (with none tracked) the ones this frame's own search finds.  A frame
        of a new size (the camera changed its resolution) starts over: its
        faces are searched for in it at once, as in a first frame.
        """
        h, w = rgb.shape[:2]
        if (w, h) != self._size:
            self._size = (w, h)
            self.look.cancel()
            self.schedule.reset()
            self._tracked = []
        self.look.start()  # the previous frame's look, if look_ahead was not called
        plans = read_plans(self._tracked, camera, min_deg)
        due = self.schedule.due(w, h, len(self._tracked))
        found = []
        if due and not plans:  # nothing tracked: search this frame now
            found = self._new_faces(self.search(rgb, due))
        mirrors = [mirror or reads_mirrored(p, self.config) for p in plans]
        faces = self._read(rgb, plans, TRACKED, mirrors, threads=self.look.frame_threads)
        new = (self._new_faces(self.look.collect((w, h))) + found)
        faces += self._read_new(rgb, new[:self.max_candidates - len(plans)])
        if due and plans:  # faces tracked: the search waits for the time between frames
            self.look.schedule(rgb, due)
        return faces, len(due), len(plans)

    def _new_faces(self, found):
        """Return the faces of ``found`` (:class:`~.detection_plan.Found`) not tracked."""
        known = [tuple(b) for b in landmark_boxes(np.array(self._tracked))] \
            if self._tracked else []
        return [f for f in found if not overlaps(f.box, known)]

    def _refine(self, rgb, faces, mirror, camera, min_deg):
        """Re-read new faces from their own landmarks' ROI (as a tracker would), ``refine`` times.

        The last pass also turns them onto their line of sight and reads their
        mirrored crops; a re-reading replaces a face's landmarks if it is the
        same face.  With ``confirm_far_faces``, a small face whose mirrored crop
        reads below its presence floor is dropped.
        """
        redo = [f for f in faces if f.source == NEW and f.landmarks is not None]
        refine = self.config.refine
        passes = max(refine, 1)
        for it in range(passes):
            last = it == passes - 1
            if not redo or not (refine or last):
                break
            plans = read_plans([f.landmarks for f in redo], camera if last else None, min_deg)
            direct = [bool(refine) or p.reread for p in plans]
            mirrored = [last and (mirror or reads_mirrored(p, self.config)) for p in plans]
            sel = [k for k, d in enumerate(direct) if d or mirrored[k]]
            again = self._read(rgb, [plans[k] for k in sel], NEW, [mirrored[k] for k in sel],
                               [direct[k] for k in sel], floors=[redo[k].floor for k in sel])
            for k, r in zip(sel, again):
                face = redo[k]
                if direct[k] and r.landmarks is not None and same_face(r.landmarks,
                                                                        face.landmarks):
                    face.landmarks, face.score, face.plan = r.landmarks, r.score, r.plan
                if mirrored[k]:
                    face.mirrored, face.mirrored_score = r.mirrored, r.mirrored_score
                if last and refuted_by_mirror(face, plans[k], self.config) \
                        and not self.opinions.waives(rgb, face):
                    face.landmarks = None

    def _read_new(self, rgb, found):
        """Read new faces (:class:`~.detection_plan.Found`) from their detector ROIs.

        Each needs its :func:`~.face_checks.presence_floor`.  A small face read below it gets
        a second look (:func:`second_looks`; the surest reading that passes is
        kept): a far face's detector box is tight, and a crop that cuts its
        outline reads as no face; its eye keypoints may turn the crop far off.
        """
        floors = [presence_floor(f, self.config) for f in found]
        out = self._read(rgb, [ReadPlan.of_roi(f.roi) for f in found], NEW, floors=floors)
        again = [i for i, (r, f) in enumerate(zip(out, found))
                 if r.landmarks is None and small_face(f.roi)]
        looks = [(i, roi) for i in again for roi in second_looks(found[i].roi)]
        if looks:
            reads = self._read(rgb, [ReadPlan.of_roi(roi) for _, roi in looks], NEW,
                               floors=[floors[i] for i, _ in looks])
            for (i, _), r in zip(looks, reads):
                if r.landmarks is not None and (out[i].landmarks is None
                                                or r.score > out[i].score):
                    out[i] = r
        for r, f in zip(out, found):
            r.detection = f
        return out

    def _read(self, rgb, plans, source, mirror=False, direct=None, threads=None, floors=None):
        """Read faces through ``plans`` in one batch of the model: a :class:`FaceRead` each.

        ``mirror``: read the mirrored crops too (a bool, or one per plan);
        ``direct[i]`` false: only plan ``i``'s mirrored crop is read.  A face
        under its presence threshold (``floors[i]``, else its source's) has no
        landmarks.
        """
        c = self.config
        threshold = c.min_tracking_presence if source == TRACKED else c.min_tracking_confidence
        floors = [threshold] * len(plans) if floors is None else \
            [threshold if f is None else f for f in floors]
        out = [FaceRead(p, source, floor=f) for p, f in zip(plans, floors)]
        mirror = [mirror] * len(plans) if isinstance(mirror, bool) else list(mirror)
        mats, zs, owner = [], [], []
        for i, p in enumerate(plans):
            if direct is None or direct[i]:
                mats.append(p.transform)
                zs.append(p.z_scale)
                owner.append((i, False))
            if mirror[i]:
                mats.append(MIRROR @ p.transform)
                zs.append(p.z_scale)
                owner.append((i, True))
        if not mats:
            return out
        crop_lm, presence = (self.model.read(rgb, mats, threads) if self._restorer is None
                             else self._restorer.read(self.model, mats, threads))
        width = rgb.shape[1]
        lms = from_crop(crop_lm, mats, zs)
        finite = np.all(np.isfinite(lms), axis=(1, 2))
        for (i, is_mirror), lm, s, ok in zip(owner, lms, presence, finite):
            if not ok:
                continue
            if is_mirror:
                lm = lm.copy()
                lm[:, 0] = width - lm[:, 0]
                out[i].mirrored = lm
                out[i].mirrored_score = float(s)
            elif s >= floors[i]:
                out[i].landmarks, out[i].score = lm, float(s)
        return out

    # -- between frames ---------------------------------------------------
    def look_ahead(self):
        """Start the look for new faces that the latest frame scheduled, if any.

        Call it once a frame's work is done (the estimator does): with
        ``num_threads`` >= 2 the look runs on its worker before the next frame,
        with one it runs here.  The next :meth:`read_frame` reads what it found.
        """
        with self._one_caller():
            self.look.start()

    def reset(self):
        """Forget tracked faces and drop any look (a new sequence starts)."""
        with self._one_caller():
            self.look.cancel()
            self._tracked = []
            self.schedule.reset()
            if self._blur_checks is not None:
                self._blur_checks.reset()

    def close(self):
        """Release the models (idempotent); the extractor cannot be used afterwards."""
        with self._one_caller(closing=True):
            self._closed = True
            self.look.close()  # waits for a look still running
            if self.model is not None:
                self.model.close()
            self.model = self.search = None
            self._tracked = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
