"""ROS-free head pose estimation: RGB image -> one :class:`FacePose` per face.

Pipeline: :class:`~nlml_hpe.landmarks.LandmarkExtractor` (MediaPipe's face
detector and Face Mesh landmark model, run by the project: 468 landmarks) ->
:func:`~nlml_hpe.features.normalise_landmarks` -> the NLML-HPE encoder + heads
(:class:`~nlml_hpe.model.PoseModel`, numpy) for all faces of the frame in one
batch -> angles, rotation, quaternion and (given intrinsics) the metric position
(:mod:`nlml_hpe.position`).

Angles and frames: the model reads the head's rotation *relative to the line
of sight* (``yaw = pitch = roll = 0``: facing the camera, wherever the face is
in the image), the convention of weak-perspective labels such as AFLW2000's.
The model sees each face centred on its line of sight
(:func:`~nlml_hpe.features.centre_on_line_of_sight`), which undoes the
perspective stretch of faces far from the image centre.
:class:`FacePose` reports these angles, and its ``rotation`` and
``quaternion`` in the camera's optical frame, which adds the turn of the ray
from the camera to the head (:func:`nlml_hpe.position.camera_frame_pose`):
with the given intrinsics, else with a guess (a centred camera of
:data:`~nlml_hpe.position.UNKNOWN_CAMERA_HFOV_DEG` horizontal field of view).
Models exported before ``angle_frame`` existed read angles relative to the
optical axis; their rotation is the angles' own.

Line-of-sight re-reading (``perspective_warp``, on by default): centring the
landmarks cannot undo how MediaPipe itself reads a perspective-stretched face at
the image edge (a few degrees at 20-30 deg off-axis).  Faces at least
``warp_min_deg`` off the optical axis are therefore read from a crop warped
into the view of a camera turned onto them
(:meth:`~nlml_hpe.landmarks.LandmarkExtractor.read_frame`): one more pass of
the landmark model for a new face, none for a tracked one (its previous
landmarks place the turned crop).

Rigid fusion (``rigid_fusion``, on by default): each face's angles are the mean
of the network's reading and of a rigid fit of MediaPipe's 3D landmarks to its
canonical face (:func:`~nlml_hpe.baseline.rigid_fit_rotations`).  The two err
in different ways on real faces (the fit assumes MediaPipe's mean face and reads
pitch about 1 deg low on AFLW2000; the network learned synthetic faces), and
their mean is a little more accurate than the network alone (README); the fit
costs about 20 microseconds per face on its own, 0.1 ms in a frame (cold caches).

Flip averaging (``flip_average``): the landmark model also reads each face's
mirrored crop (in the same batch), the network reads those landmarks, and
their un-mirrored angles (yaw and roll change sign) are averaged with the
direct ones.  The landmark model's errors are not mirror-symmetric, so the
average cancels part of them (AFLW2000 dev: see the README); it costs one more
landmark-model pass per face.
"""

from dataclasses import dataclass, field
import time

import numpy as np

from .baseline import rigid_fit_batch
from .camera import Camera
from .features import (
    N_LANDMARKS,
    as_landmark_batch,
    centre_batch,
    landmark_extent,
    normalise_batch,
)
from .geometry import (
    FACE_TO_HEAD,
    box_iou,
    euler_to_matrix,
    matrix_to_euler,
    matrix_to_quaternion,
    optical_to_viewer,
    viewer_to_optical,
)
from .images import as_rgb_uint8
from .model import default_model_dir, load_model
from .options import EstimatorConfig
from .position import camera_frame_poses, estimate_position


@dataclass
class FacePose:
    """Head pose of one face.

    Angles are degrees in the AFLW2000-3D convention (``pitch, yaw, roll =
    Pose_Para[:3]``), relative to the line of sight from the camera to the head
    (all zero: the face looks at the camera; see the module docstring).
    ``rotation`` is the head-to-optical-frame rotation, which adds the turn of
    that line of sight (``viewer_to_optical(euler_to_matrix(pitch, yaw, roll))``
    for a face on the optical axis); ``camera_angles`` are its angles.
    ``quaternion`` ``(x, y, z, w)`` is the REP-155 face frame (x out of the
    face, z up) in the optical frame.  ``box`` is ``(x0, y0, x1, y1)`` in pixels (the
    landmarks' bounding box, clipped to the image when its size is known);
    ``landmarks`` ``(468, 3)`` pixel-proportional coordinates; ``score`` the
    landmark model's face-presence score (1.0 for landmarks given without one);
    ``position`` ``(3,)`` metres in the optical frame, or ``None`` without
    camera intrinsics.

    How far to trust it (``None`` where the model has no uncertainty artifact,
    :mod:`nlml_hpe.uncertainty`): ``sigma_deg`` ``(3,)`` the standard deviation
    of ``(pitch, yaw, roll)`` in degrees, calibrated on renders; ``beyond_range``:
    the face is turned beyond the range its landmarks can be read in (about
    60 deg of yaw: the angles saturate there, so read them as "turned away",
    not as a measurement); ``p_beyond`` the probability behind that state.
    """

    yaw: float
    pitch: float
    roll: float
    rotation: np.ndarray
    quaternion: np.ndarray
    box: tuple
    landmarks: np.ndarray = field(repr=False)
    score: float = 1.0
    position: np.ndarray = None
    #: ``(pitch, yaw, roll)`` of the network alone (with flip averaging, without
    #: rigid fusion), for comparison; ``None`` when not computed.
    network_angles: np.ndarray = field(default=None, repr=False)
    #: The landmarks read from the mirrored crop (mirrored image's pixels), if any.
    mirrored_landmarks: np.ndarray = field(default=None, repr=False)
    #: Whether the face was read from a crop turned onto its line of sight.
    reread: bool = False
    sigma_deg: np.ndarray = None
    beyond_range: bool = None
    p_beyond: float = None

    @property
    def angles(self):
        """``(pitch, yaw, roll)`` in degrees, relative to the line of sight."""
        return np.array([self.pitch, self.yaw, self.roll])

    @property
    def camera_angles(self):
        """``(pitch, yaw, roll)`` in degrees of ``rotation`` (relative to the optical axis)."""
        return matrix_to_euler(optical_to_viewer(self.rotation))

    def to_dict(self):
        """JSON-friendly summary (angles, box, score, position, uncertainty)."""
        out = {'yaw': float(self.yaw), 'pitch': float(self.pitch), 'roll': float(self.roll),
               'box': [float(v) for v in self.box], 'score': float(self.score)}
        if self.position is not None:
            out['position'] = [float(v) for v in self.position]
        out.update(self.trust())
        return out

    def trust(self):
        """``{'sigma_deg': {'yaw', 'pitch', 'roll'}, 'beyond_range'}`` (empty without them)."""
        if self.sigma_deg is None:
            return {}
        p, y, r = (round(float(v), 2) for v in self.sigma_deg)
        return {'sigma_deg': {'yaw': y, 'pitch': p, 'roll': r},
                'beyond_range': bool(self.beyond_range)}


def landmark_box(landmarks_px, image_size=None):
    """Bounding box ``(x0, y0, x1, y1)`` of landmarks; clipped to ``(width, height)``."""
    lm = np.asarray(landmarks_px, dtype=np.float64)
    x, y = lm[:, 0], lm[:, 1]
    x0, y0, x1, y1 = float(x.min()), float(y.min()), float(x.max()), float(y.max())
    if image_size is not None:
        w, h = (float(v) for v in image_size)
        x0, x1 = min(max(x0, 0.0), w), min(max(x1, 0.0), w)
        y0, y1 = min(max(y0, 0.0), h), min(max(y1, 0.0), h)
    return (x0, y0, x1, y1)


def mirror_landmarks(landmarks_px, width):
    """Landmarks of a horizontally mirrored image, in the original image's pixels."""
    out = np.array(landmarks_px, dtype=np.float64, copy=True)
    out[:, 0] = width - out[:, 0]
    return out


def match_mirrored(faces, mirrored_faces, width, min_iou=0.5):
    """For each face, the index of its mirrored-image twin (or None), matched by box IoU."""
    boxes = [landmark_box(f) for f in faces]
    twins = [landmark_box(mirror_landmarks(f, width)) for f in mirrored_faces]
    iou = box_iou(boxes, twins) if boxes and twins else np.zeros((len(boxes), len(twins)))
    pairs = sorted(((iou[i, j], i, j) for i in range(len(boxes))
                    for j in range(len(twins))), reverse=True)
    match, used = [None] * len(faces), set()
    for iou, i, j in pairs:
        if iou < min_iou:
            break
        if match[i] is None and j not in used:
            match[i] = j
            used.add(j)
    return match


#: Sign of (pitch, yaw, roll) under a horizontal mirror.
MIRROR_SIGNS = np.array([1.0, -1.0, -1.0])


class Estimate(list):
    """The faces of one frame (a list of :class:`FacePose`, largest first), with how.

    ``timings``: the stages' times (``landmarks_ms``, ``model_ms``, ``post_ms``,
    ``look_ms``; see :class:`HeadPoseEstimator`) and counts (``faces``,
    ``flip_matched``, ``warped``, ``detector_runs``);
    ``camera``: the :class:`~nlml_hpe.camera.Camera` the frame was read with.
    Each face's network-only reading is :attr:`FacePose.network_angles`.
    """

    def __init__(self, faces=(), *, timings=None, camera=None):
        super().__init__(faces)
        self.timings = dict(timings or {})
        self.camera = camera


def _average_twins(angles, twins, n):
    """Return the first ``n`` rows of ``angles``, each averaged with its un-mirrored twin's."""
    out = np.array(angles[:n], dtype=np.float64, copy=True)
    for k, (i, _) in enumerate(twins):
        out[i] = 0.5 * (angles[i] + MIRROR_SIGNS * angles[n + k])
    return out


class HeadPoseEstimator:
    """Estimate the head pose of every face in an RGB image.

    Use :meth:`from_pretrained` to load the shipped model.  The options are an
    :class:`~nlml_hpe.options.EstimatorConfig` (``config``) and/or its fields as
    keywords, e.g. ``flip_average`` (default: on for single images, off when
    ``streaming``) averages each face's angles with its mirrored crop's;
    ``rigid_fusion`` (default on) averages the network's angles with a rigid
    fit's; ``perspective_warp`` (default on) reads faces at least
    ``warp_min_deg`` off the optical axis from a crop turned onto them (see the
    module docstring).  The options stay in :attr:`config`.

    ``extractor``: a landmark stage of your own (default:
    :class:`~nlml_hpe.landmarks.LandmarkExtractor` built from the config), with
    its methods ``read_frame(rgb, mirror=, camera=, line_of_sight_deg=)``
    (returning a :class:`~nlml_hpe.landmarks.FrameReading`), ``look_ahead()``
    and ``close()``.

    ``last_timings`` holds the times of the latest call: ``landmarks_ms`` (the
    landmark stage's frame), ``model_ms`` and ``post_ms`` (the pose stages),
    ``look_ms`` (after the poses: the look for new faces between frames, in
    video -- with ``num_threads`` 1 it runs here, its whole detector time;
    with more it only starts here, on its own worker, and a frame that comes
    before it ends waits for the rest within ``landmarks_ms``), and counts
    (``faces``, ``flip_matched``, ``warped``, ``detector_runs``, ``unblurred``: small
    faces' crops read with the frame's motion blur undone).

    One caller at a time (the landmark stage refuses overlapping calls).
    """

    def __init__(self, model, extractor=None, *, config=None, streaming=False, **options):
        self.config = EstimatorConfig.with_options(config, **options)
        self.model = model
        #: The :class:`~nlml_hpe.uncertainty.UncertaintyModel` behind each face's
        #: ``sigma_deg`` and ``beyond_range`` (the model's; ``None``: not assessed).
        self.uncertainty = getattr(model, 'uncertainty', None)
        self._extractor = extractor
        self.streaming = bool(streaming)
        self.last_timings = {}

    @property
    def flip_average(self):
        """Whether each face's mirrored crop is read: the config's, else on for still images."""
        f = self.config.flip_average
        return (not self.streaming) if f is None else f

    @classmethod
    def from_pretrained(cls, path=None, **options):
        """Load the model at ``path`` (default :func:`~nlml_hpe.model.default_model_dir`).

        ``options``: ``config``, ``streaming`` and any field of
        :class:`~nlml_hpe.options.EstimatorConfig`, as for the constructor.
        """
        return cls(load_model(default_model_dir() if path is None else path), **options)

    @property
    def extractor(self):
        """The landmark extractor (created on first use)."""
        if self._extractor is None:
            from .landmarks import LandmarkExtractor
            self._extractor = LandmarkExtractor(self.config, streaming=self.streaming)
        return self._extractor

    @property
    def problems(self):
        """Options asked for that are not in effect, each with the reason (empty: none).

        Known once the landmark stage is built (by the first estimate, or
        :attr:`extractor`), and warned of (``RuntimeWarning``) then; empty before
        and after :meth:`close`.  Reading it builds nothing.
        """
        return list(getattr(self._extractor, 'problems', ()))

    def estimate(self, rgb_uint8, camera_matrix=None, *, camera=None):
        """Return an :class:`Estimate`: a list of :class:`FacePose`, largest face first.

        The stages: the landmark stage finds and reads the faces (each one's
        mirrored crop with ``flip_average``; faces at least ``warp_min_deg`` off
        the optical axis from a crop turned onto their line of sight with
        ``perspective_warp``), then :meth:`estimate_landmarks` reads, fuses and
        places them; last, in video, a look for new faces that the frame
        scheduled starts, to run until the next call
        (:meth:`~nlml_hpe.landmarks.LandmarkExtractor.look_ahead`; ``look_ms``).  ``camera``
        (a :class:`~nlml_hpe.camera.Camera`) or
        ``camera_matrix`` (3x3 K) is the frame's camera, validated once here;
        without either, :meth:`Camera.guess <nlml_hpe.camera.Camera.guess>`
        (no metric positions).
        """
        rgb = as_rgb_uint8(rgb_uint8)
        h, w = rgb.shape[:2]
        if camera is None:
            camera = (Camera(camera_matrix, w, h) if camera_matrix is not None else
                      Camera.guess(w, h))
        elif camera.size != (w, h):
            raise ValueError(f'camera is for {camera.width}x{camera.height} images, '
                             f'the image is {w}x{h}')
        c = self.config
        t0 = time.perf_counter()
        reading = self.extractor.read_frame(
            rgb, mirror=self.flip_average, camera=camera,
            line_of_sight_deg=c.warp_min_deg if c.perspective_warp else None)
        t1 = time.perf_counter()
        poses = self.estimate_landmarks(reading.faces, camera=camera, scores=reading.scores,
                                        twins=reading.mirrored, reread=reading.reread)
        t2 = time.perf_counter()
        self.extractor.look_ahead()  # a look for new faces, between this frame and the next
        self.last_timings.update(landmarks_ms=(t1 - t0) * 1e3,
                                 look_ms=(time.perf_counter() - t2) * 1e3,
                                 warped=int(sum(reading.reread)),
                                 detector_runs=reading.detector_runs,
                                 unblurred=int(getattr(self.extractor, 'last_stats', {})
                                               .get('unblurred', 0)))
        return Estimate(poses, timings=dict(self.last_timings), camera=camera)

    def estimate_landmarks(self, landmarks_px_list, *, camera=None, scores=None, twins=None,
                           reread=None):
        """Estimate poses from given ``(468, 3)`` pixel landmarks (the stages after landmarks).

        All faces go through the model in one batch.  ``camera``: the
        :class:`~nlml_hpe.camera.Camera` of the image the landmarks are in: it
        clips the boxes to the image, turns the rotation by each face's line of
        sight and, calibrated (not :meth:`~nlml_hpe.camera.Camera.guess`),
        gives metric positions; without it, ``rotation`` is the line-of-sight
        rotation itself and there is no position.  ``scores`` defaults to 1.0
        per face.  ``twins``: per face, its landmarks read from the mirrored
        crop (mirrored image's pixels; ``None``: no twin), as
        :meth:`~nlml_hpe.landmarks.LandmarkExtractor.read_frame` gives them
        (:func:`match_mirrored` pairs faces found in a mirrored image); each
        face with a twin gets the average of its angles and its twin's
        un-mirrored angles.  ``reread``: per face, whether it was read on its
        line of sight (kept on the :class:`FacePose`).
        """
        lms = [np.asarray(lm, dtype=np.float64) for lm in landmarks_px_list]
        for lm in lms:
            if lm.shape != (N_LANDMARKS, 3):
                raise ValueError(f'expected landmarks of shape ({N_LANDMARKS}, 3), '
                                 f'got {lm.shape}')
        if scores is None:
            scores = [1.0] * len(lms)
        if len(scores) != len(lms):
            raise ValueError(f'got {len(scores)} scores for {len(lms)} faces')
        if camera is not None and not isinstance(camera, Camera):
            raise TypeError(f'camera must be a nlml_hpe.camera.Camera, got '
                            f'{type(camera).__name__}')
        pairs = []
        if twins is not None and lms:
            if len(twins) != len(lms):
                raise ValueError(f'got {len(twins)} twins for {len(lms)} faces')
            pairs = [(i, np.asarray(t, dtype=np.float64)) for i, t in enumerate(twins)
                     if t is not None]
            for _, t in pairs:
                if t.shape != (N_LANDMARKS, 3):
                    raise ValueError(f'expected mirrored landmarks of shape ({N_LANDMARKS}, 3), '
                                     f'got {t.shape}')
        reread = [False] * len(lms) if reread is None else [bool(v) for v in reread]
        self.last_timings = {'landmarks_ms': 0.0, 'look_ms': 0.0, 'warped': 0, 'unblurred': 0,
                             'detector_runs': 0, 'model_ms': 0.0, 'post_ms': 0.0,
                             'faces': len(lms), 'flip_matched': len(pairs)}
        if not lms:
            return []
        t0 = time.perf_counter()
        net, fused, rigid = self._read(lms, pairs, camera)
        trust = None
        if self.uncertainty is not None:
            twinned = np.zeros(len(lms), dtype=bool)
            twinned[[i for i, _ in pairs]] = True
            trust = self.uncertainty.assess(np.stack(lms), fused, net, scores,
                                            flip_average=twinned, rigid_angles=rigid)
        t1 = time.perf_counter()
        poses = self._place(lms, pairs, net, fused, camera, scores, reread, trust)
        self.last_timings.update(model_ms=(t1 - t0) * 1e3,
                                 post_ms=(time.perf_counter() - t1) * 1e3)
        return poses

    def _line_of_sight(self, camera):
        """Return the camera of the model's line-of-sight frame, or ``None`` (old models)."""
        return camera if camera is not None and self.model.angle_frame == 'apparent' else None

    def _read(self, lms, twins, camera):
        """Stages *read* and *fuse*: ``(network, fused, rigid fit)`` angles per face ``(N, 3)``.

        Read: every face and mirrored twin, centred on its line of sight, through
        the network in one batch.  Fuse: average with the rigid fit
        (``rigid_fusion``), then each face with its un-mirrored twin.  The rigid
        fit's own angles are ``None`` unless fused or needed by the uncertainty.
        """
        batch = as_landmark_batch(np.stack(lms + [lm for _, lm in twins]))  # for all stages
        los = self._line_of_sight(camera)
        if los is not None:  # the model reads faces as a camera looking straight at them sees them
            if twins:
                ks = np.stack([los.k] * len(lms) + [los.mirrored().k] * len(twins))
                batch = centre_batch(batch, ks)
            else:
                batch = centre_batch(batch, los.k, los.k_inv)
        net = self.model.predict(normalise_batch(batch))  # (N + twins, 3) p, y, r
        fused = rigid = net
        if self.config.rigid_fusion or self.uncertainty is not None:
            rigid = matrix_to_euler(rigid_fit_batch(batch))
        if self.config.rigid_fusion:
            fused = 0.5 * (net + rigid)
        n = len(lms)
        return (_average_twins(net, twins, n), _average_twins(fused, twins, n),
                _average_twins(rigid, twins, n))

    def _place(self, lms, twins, net, angles, camera, scores, reread, trust=None):
        """Stage *place*: rotation in the camera frame, position, quaternion, box per face.

        ``trust``: the faces' :class:`~nlml_hpe.uncertainty.Assessment`, or None.
        """
        twin_lm = [None] * len(lms)
        for i, t in twins:
            twin_lm[i] = t
        stacked = np.stack(lms)
        rots = viewer_to_optical(euler_to_matrix(angles[:, 0], angles[:, 1], angles[:, 2]))
        positions = [None] * len(lms)
        calibrated = camera is not None and not camera.guessed
        if self._line_of_sight(camera) is not None:
            rots, ts = camera_frame_poses(stacked, rots, camera.k_inv)
            if calibrated:
                positions = list(ts)
        elif calibrated:
            positions = [estimate_position(lm, r, camera.k) for lm, r in zip(lms, rots)]
        quats = matrix_to_quaternion(rots @ FACE_TO_HEAD)
        boxes = np.concatenate(landmark_extent(stacked), axis=1)
        if camera is not None:
            np.clip(boxes, 0.0, np.array(camera.size * 2, dtype=np.float64), out=boxes)
        poses = []
        for i, lm in enumerate(lms):
            pitch, yaw, roll = (float(v) for v in angles[i])
            poses.append(FacePose(yaw=yaw, pitch=pitch, roll=roll, rotation=rots[i],
                                  quaternion=quats[i], box=tuple(boxes[i].tolist()),
                                  landmarks=lm, score=float(scores[i]), position=positions[i],
                                  network_angles=net[i], mirrored_landmarks=twin_lm[i],
                                  reread=reread[i]))
            if trust is not None:
                poses[-1].sigma_deg = trust.sigma_deg[i]
                poses[-1].beyond_range = bool(trust.beyond_range[i])
                poses[-1].p_beyond = float(trust.p_beyond[i])
        poses.sort(key=lambda p: -(p.box[2] - p.box[0]) * (p.box[3] - p.box[1]))
        return poses

    def close(self):
        """Release the landmark models."""
        if self._extractor is not None:
            self._extractor.close()
            self._extractor = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
