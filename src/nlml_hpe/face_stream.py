"""A stream of faces over time, free of ROS: stable ids, smoothing, position, looking-at.

:class:`FaceStream` turns the estimator's per-frame faces (:class:`~nlml_hpe.estimator.
FacePose`) into :class:`StreamFace` records: a track that keeps its id from
frame to frame, listed after a few frames and kept through short misses
(:class:`~nlml_hpe.tracking.FaceTracker`), One-Euro smoothed orientation and
position (:class:`~nlml_hpe.smoothing.PoseSmoother`), a position
in metres (metric with camera intrinsics; otherwise on the optical ray through
the box centre at ``default_distance_m``) and the looking-at signals.  The ROS
node and ``nlml-hpe predict`` on a video both use it.  Its methods are
thread-safe: :meth:`FaceStream.configure` (a parameter change) waits for an
:meth:`FaceStream.update` in progress.

A face *looks at* a target when the angle between its forward axis (the first
column of its REP-155 rotation in the camera's optical frame) and the ray from
the head to the target is at most ``threshold_deg``, widened by the angle the
target's ``tolerance_m`` (its radius: half a screen, say) subtends at the
head.  The camera is the target ``(0, 0, 0)``: :func:`looking_at` then gives
the node's ``looking_at_camera`` with a zero tolerance.
"""

from dataclasses import dataclass, replace
import math
import threading

import numpy as np

from .geometry import angle_between_deg, quaternion_to_matrix
from .options import StreamConfig
from .position import UNKNOWN_CAMERA_HFOV_DEG, default_camera_matrix
from .smoothing import PoseSmoother
from .tracking import COASTING, CONFIRMED, LISTED, FaceTracker

#: The camera's own position in its optical frame.
CAMERA = (0.0, 0.0, 0.0)


def check_target(target):
    """Return ``target`` as a finite ``(3,)`` float array (metres), or raise ValueError."""
    arr = np.asarray(target, float) if not isinstance(target, str) else np.array([])
    if arr.shape != (3,) or not np.all(np.isfinite(arr)):
        raise ValueError(f'a target must be 3 finite numbers (x, y, z in metres), got {target!r}')
    return arr


def target_offset_deg(rot_optical_face, position_optical, target=CAMERA):
    """Angle (deg) between the face's forward axis and the ray from the head to ``target``.

    All in the camera's optical frame; 0 means looking straight at the target.
    """
    forward = np.asarray(rot_optical_face, float)[..., :, 0]
    to_target = np.asarray(target, float) - np.asarray(position_optical, float)
    return float(angle_between_deg(forward, to_target))


def looking_at(offset_deg, position_optical, target=CAMERA, threshold_deg=15.0,
               tolerance_m=0.0):
    """Tell whether a face at ``position_optical`` with ``offset_deg`` looks at ``target``.

    ``tolerance_m`` widens ``threshold_deg`` by the angle a sphere of that radius
    around the target subtends at the head (a head inside the sphere always looks).
    """
    distance = float(np.linalg.norm(np.asarray(target, float)
                                    - np.asarray(position_optical, float)))
    if tolerance_m > 0 and distance <= tolerance_m:
        return True
    widen = math.degrees(math.asin(tolerance_m / distance)) if tolerance_m > 0 else 0.0
    return bool(offset_deg <= threshold_deg + widen)


def ray_position(camera_matrix, pixel, distance_m):
    """Point at ``distance_m`` from the camera centre on the optical ray through ``pixel``."""
    K = np.asarray(camera_matrix, float)
    ray = np.linalg.solve(K, np.array([pixel[0], pixel[1], 1.0]))
    return ray / np.linalg.norm(ray) * float(distance_m)


@dataclass
class StreamFace:
    """One face of a frame of a :class:`FaceStream`, in the camera's optical frame.

    ``id`` is the track's number in this stream, ``uid`` its random id, unique
    across streams and restarts (REP-155's face id; ``None`` without tracking).
    ``state`` is the track's (:mod:`nlml_hpe.tracking`): ``confirmed``, or
    ``coasting`` when it was not seen in this frame (``seen`` is false: ``box``
    is its predicted region, orientation and position the last ones), or
    ``tentative`` (see :attr:`FaceStream.tentative`).
    ``quaternion`` (x, y, z, w) and ``rotation`` (columns: REP-155 face axes, x out
    of the face, y to the subject's left, z up) are smoothed when the stream
    smooths, as is ``position`` (m); ``metric`` tells whether the position comes
    from the camera intrinsics (else: the box-centre ray at the default
    distance).  ``gaze_offset_deg``/``looking_at_camera`` refer to the camera,
    ``target_offset_deg``/``looking_at_target`` to the stream's target (None
    when the target is unknown); a face beyond the readable range
    (``pose.beyond_range``) looks at nothing.  ``pose`` is the estimator's face
    (of the frame it was last seen in).
    """

    id: int
    quaternion: np.ndarray
    rotation: np.ndarray
    position: np.ndarray
    metric: bool
    box: tuple
    score: float
    gaze_offset_deg: float
    looking_at_camera: bool
    target_offset_deg: float = None
    looking_at_target: bool = None
    pose: object = None
    uid: str = None
    state: str = CONFIRMED
    seen: bool = True

    @property
    def area(self):
        """Box area in pixels."""
        return float((self.box[2] - self.box[0]) * (self.box[3] - self.box[1]))

    @property
    def listed(self):
        """Whether the face is reported (confirmed, or coasting after a short miss)."""
        return self.state in LISTED

    @property
    def beyond_range(self):
        """Whether the pose is beyond the range the landmarks can be read in (see FacePose)."""
        return bool(getattr(self.pose, 'beyond_range', False))

    def to_dict(self):
        """JSON-friendly summary (ids, state, position, quaternion, looking-at signals)."""
        out = {'id': self.id, 'uid': self.uid, 'state': self.state, 'seen': self.seen,
               'position_m': [round(float(v), 4) for v in self.position],
               'metric': self.metric,
               'quaternion_xyzw': [round(float(v), 6) for v in self.quaternion],
               'gaze_offset_deg': round(self.gaze_offset_deg, 3),
               'looking_at_camera': self.looking_at_camera}
        if self.target_offset_deg is not None:
            out['target_offset_deg'] = round(self.target_offset_deg, 3)
            out['looking_at_target'] = self.looking_at_target
        return out


#: StreamConfig options that set the tracker's lifecycle.
_TRACKER_OPTIONS = ('confirm_frames', 'coast_s', 'memory_s')


class FaceStream:
    """Stable ids, smoothing, positions and looking-at signals over a stream of frames.

    Options (:class:`~nlml_hpe.options.StreamConfig`; keyword arguments here or to
    :meth:`configure`): ``tracking`` (track lifecycle and stable ids; off: every
    face is reported at once, ids 0..n-1 per frame) with ``confirm_frames``,
    ``coast_s`` and ``memory_s`` (:class:`~nlml_hpe.tracking.FaceTracker`);
    ``smoothing`` (One-Euro, needs tracking) with ``smoothing_min_cutoff``,
    ``smoothing_beta`` and ``smoothing_d_cutoff``; ``default_distance_m`` (the
    distance of a face when the intrinsics are unknown); ``looking_threshold_deg``;
    ``target`` (3-vector, camera frame, m) and ``target_tolerance_m``.
    Its methods are thread-safe.
    """

    def __init__(self, **options):
        self._lock = threading.Lock()
        self._config = StreamConfig(**self.check(**options))
        self._tracker = self._make_tracker()
        self._smoother = self._make_smoother()
        self._last = {}  # track id -> its latest StreamFace (what a coasting face shows)
        #: Faces seen in the latest frame whose tracks are still tentative (not listed).
        self.tentative = []

    @staticmethod
    def check(**options):
        """Return the options validated (ValueError with the reason otherwise)."""
        try:
            config = StreamConfig().updated(**options)
        except TypeError:
            unknown = sorted(set(options) - set(StreamConfig.__dataclass_fields__))
            raise ValueError(f'unknown FaceStream option(s) {unknown}') from None
        return {name: getattr(config, name) for name in options}

    @property
    def config(self):
        """The current options (a :class:`~nlml_hpe.options.StreamConfig`)."""
        with self._lock:
            return self._config

    @property
    def options(self):
        """The current options as a dict (a copy)."""
        return self.config.as_dict()

    @property
    def track_ids(self):
        """Ids of the tracks that have not ended (listed, tentative or lost)."""
        with self._lock:
            return self._tracker.track_ids

    def _make_tracker(self):
        return FaceTracker(**{name: getattr(self._config, name) for name in _TRACKER_OPTIONS})

    def _make_smoother(self):
        o = self._config
        return PoseSmoother(o.smoothing_min_cutoff, o.smoothing_beta, o.smoothing_d_cutoff)

    def configure(self, **options):
        """Change options (validated first; nothing changes when one is invalid)."""
        options = self.check(**options)
        with self._lock:
            self._config = self._config.updated(**options)
            if {'smoothing', 'smoothing_min_cutoff', 'smoothing_beta',
                    'smoothing_d_cutoff'} & set(options):
                self._smoother = self._make_smoother()
            for name in set(_TRACKER_OPTIONS) & set(options):
                setattr(self._tracker, name, options[name])
            if 'tracking' in options and not options['tracking']:
                self._tracker.reset()
                self._last.clear()

    def reset(self):
        """Forget all tracks and filter state (ids keep increasing)."""
        with self._lock:
            self._tracker.reset()
            self._smoother.reset()
            self._last.clear()
            self.tentative = []

    def update(self, faces, t, image_size, camera_matrix=None, target=None):
        """Return ``(listed faces, number of faces skipped as non-finite)``.

        ``faces``: the estimator's faces of one frame seen at time ``t`` (s);
        ``image_size``: ``(width, height)``; ``camera_matrix``: the intrinsics the
        estimator used (None: unknown).  ``target`` overrides the option for this
        frame; pass ``False`` when the target is unknown (no target signals).

        The listed faces are the confirmed ones seen in this frame, largest
        first, then the coasting ones (not seen; ``seen`` false).  Faces of
        tentative tracks are in :attr:`tentative`.
        """
        width, height = image_size
        with self._lock:
            o = self._config
            target = o.target if target is None else target
            ray_k = camera_matrix if camera_matrix is not None else default_camera_matrix(
                width, height, hfov_deg=UNKNOWN_CAMERA_HFOV_DEG)
            ok, skipped = [], 0
            for face in faces:
                quat = np.asarray(face.quaternion, float)
                if np.all(np.isfinite(quat)) and np.linalg.norm(quat) > 1e-9 and \
                        np.all(np.isfinite(np.asarray(face.box, float))) and \
                        (face.position is None or np.all(np.isfinite(face.position))):
                    ok.append(face)
                else:
                    skipped += 1
            boxes = np.array([f.box for f in ok], float).reshape(-1, 4)
            tracks = (self._tracker.update(boxes, t, image_size) if o.tracking else
                      [None] * len(ok))
            seen, tentative = [], []
            for i, (face, box, track) in enumerate(zip(ok, boxes, tracks)):
                out = self._stream_face(face, box, track, i, t, camera_matrix, ray_k, target)
                if track is not None:
                    self._last[track.id] = out
                (seen if out.listed else tentative).append(out)
            seen.sort(key=lambda f: -f.area)  # primary = largest face first
            coasting = self._coasting(t, image_size) if o.tracking else []
            self.tentative = tentative
        return seen + coasting, skipped

    def _stream_face(self, face, box, track, index, t, camera_matrix, ray_k, target):
        """Return the :class:`StreamFace` of an estimator's face seen now (lock held)."""
        o = self._config
        quat = np.asarray(face.quaternion, float)
        metric = face.position is not None and camera_matrix is not None
        if metric:
            pos = np.asarray(face.position, float)
        else:
            pos = ray_position(ray_k, ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2),
                               o.default_distance_m)
        fid = index if track is None else track.id
        if o.smoothing and track is not None:
            quat, pos = self._smoother(fid, quat, pos, t)
        quat = quat / np.linalg.norm(quat)
        rot = quaternion_to_matrix(quat)
        out = StreamFace(id=int(fid), quaternion=quat, rotation=rot, position=pos,
                         metric=metric, box=tuple(float(v) for v in box),
                         score=float(getattr(face, 'score', 1.0)), gaze_offset_deg=0.0,
                         looking_at_camera=False, pose=face,
                         uid=None if track is None else track.uid,
                         state=CONFIRMED if track is None else track.state)
        self._look(out, target)
        return out

    def _look(self, face, target):
        """Set ``face``'s looking-at signals (lock held); nothing is looked at beyond range."""
        o = self._config
        readable = not face.beyond_range
        face.gaze_offset_deg = target_offset_deg(face.rotation, face.position)
        face.looking_at_camera = readable and face.gaze_offset_deg <= o.looking_threshold_deg
        if target is not False:
            face.target_offset_deg = target_offset_deg(face.rotation, face.position, target)
            face.looking_at_target = readable and looking_at(
                face.target_offset_deg, face.position, target, o.looking_threshold_deg,
                o.target_tolerance_m)

    def _coasting(self, t, image_size):
        """Return the coasting tracks' faces: the last seen, at the predicted region."""
        tracks = self._tracker.tracks
        for tid in [k for k in self._last if k not in tracks]:
            del self._last[tid]
        out = []
        for tid, track in tracks.items():
            last = self._last.get(tid)
            if track.state != COASTING or last is None:
                continue
            w, h = image_size
            x0, y0, x1, y1 = track.predict(t)
            box = (min(max(x0, 0.0), w), min(max(y0, 0.0), h), min(max(x1, 0.0), w),
                   min(max(y1, 0.0), h))
            out.append(replace(last, box=box, state=COASTING, seen=False))
        return out
