"""A stream of faces over time, free of ROS: stable ids, smoothing, position, looking-at.

:class:`FaceStream` turns the estimator's per-frame faces (:class:`~nlml_hpe.estimator.
FacePose`) into :class:`StreamFace` records: a track id that stays the same from
frame to frame (:class:`~nlml_hpe.tracking.FaceTracker`), One-Euro smoothed
orientation and position (:class:`~nlml_hpe.tracking.PoseSmoother`), a position
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

from dataclasses import dataclass
import math
import threading

import numpy as np

from .geometry import angle_between_deg, quaternion_to_matrix
from .options import StreamConfig
from .position import UNKNOWN_CAMERA_HFOV_DEG, default_camera_matrix
from .tracking import FaceTracker, PoseSmoother

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

    ``quaternion`` (x, y, z, w) and ``rotation`` (columns: REP-155 face axes, x out
    of the face, y to the subject's left, z up) are smoothed when the stream
    smooths, as is ``position`` (m); ``metric`` tells whether the position comes
    from the camera intrinsics (else: the box-centre ray at the default
    distance).  ``gaze_offset_deg``/``looking_at_camera`` refer to the camera,
    ``target_offset_deg``/``looking_at_target`` to the stream's target (None
    when the target is unknown).  ``pose`` is the estimator's face.
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

    @property
    def area(self):
        """Box area in pixels."""
        return float((self.box[2] - self.box[0]) * (self.box[3] - self.box[1]))

    def to_dict(self):
        """JSON-friendly summary (id, position, quaternion, looking-at signals)."""
        out = {'id': self.id, 'position_m': [round(float(v), 4) for v in self.position],
               'metric': self.metric,
               'quaternion_xyzw': [round(float(v), 6) for v in self.quaternion],
               'gaze_offset_deg': round(self.gaze_offset_deg, 3),
               'looking_at_camera': self.looking_at_camera}
        if self.target_offset_deg is not None:
            out['target_offset_deg'] = round(self.target_offset_deg, 3)
            out['looking_at_target'] = self.looking_at_target
        return out


class FaceStream:
    """Stable ids, smoothing, positions and looking-at signals over a stream of frames.

    Options (:class:`~nlml_hpe.options.StreamConfig`; keyword arguments here or to
    :meth:`configure`): ``tracking`` (stable ids; off: ids are 0..n-1 per frame),
    ``smoothing`` (One-Euro, needs tracking) with ``smoothing_min_cutoff``,
    ``smoothing_beta`` and ``smoothing_d_cutoff``; ``default_distance_m`` (the
    distance of a face when the intrinsics are unknown); ``looking_threshold_deg``;
    ``target`` (3-vector, camera frame, m) and ``target_tolerance_m``.
    """

    def __init__(self, **options):
        self._lock = threading.Lock()
        self._config = StreamConfig(**self.check(**options))
        self._tracker = FaceTracker()
        self._smoother = self._make_smoother()

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
        """Ids of the live tracks."""
        with self._lock:
            return self._tracker.track_ids

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
            if 'tracking' in options and not options['tracking']:
                self._tracker.reset()

    def reset(self):
        """Forget all tracks and filter state (ids keep increasing)."""
        with self._lock:
            self._tracker.reset()
            self._smoother.reset()

    def update(self, faces, t, image_size, camera_matrix=None, target=None):
        """Return ``(stream faces largest first, number of faces skipped as non-finite)``.

        ``faces``: the estimator's faces of one frame seen at time ``t`` (s);
        ``image_size``: ``(width, height)``; ``camera_matrix``: the intrinsics the
        estimator used (None: unknown).  ``target`` overrides the option for this
        frame; pass ``False`` when the target is unknown (no target signals).
        """
        width, height = image_size
        with self._lock:
            o = self._config
            boxes = np.array([f.box for f in faces], float).reshape(-1, 4)
            ids = self._tracker.update(boxes, t) if o.tracking else list(range(len(faces)))
            ray_k = camera_matrix if camera_matrix is not None else default_camera_matrix(
                width, height, hfov_deg=UNKNOWN_CAMERA_HFOV_DEG)
            target = o.target if target is None else target
            out, skipped = [], 0
            for face, box, fid in zip(faces, boxes, ids):
                quat = np.asarray(face.quaternion, float)
                metric = face.position is not None and camera_matrix is not None
                if metric:
                    pos = np.asarray(face.position, float)
                else:
                    centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
                    pos = ray_position(ray_k, centre, o.default_distance_m)
                if not (np.all(np.isfinite(quat)) and np.all(np.isfinite(pos))
                        and np.linalg.norm(quat) > 1e-9):
                    skipped += 1
                    continue
                if o.smoothing and o.tracking:
                    quat, pos = self._smoother(fid, quat, pos, t)
                quat = quat / np.linalg.norm(quat)
                rot = quaternion_to_matrix(quat)
                offset = target_offset_deg(rot, pos)
                face_out = StreamFace(
                    id=int(fid), quaternion=quat, rotation=rot, position=pos, metric=metric,
                    box=tuple(float(v) for v in box), score=float(getattr(face, 'score', 1.0)),
                    gaze_offset_deg=offset,
                    looking_at_camera=bool(offset <= o.looking_threshold_deg), pose=face)
                if target is not False:
                    face_out.target_offset_deg = target_offset_deg(rot, pos, target)
                    face_out.looking_at_target = looking_at(
                        face_out.target_offset_deg, pos, target, o.looking_threshold_deg,
                        o.target_tolerance_m)
                out.append(face_out)
        out.sort(key=lambda f: -f.area)  # primary = largest face first
        return out, skipped
