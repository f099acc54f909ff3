"""ROS-free head pose estimation: RGB image -> one :class:`FacePose` per face.

Pipeline: :class:`~nlml_hpe.landmarks.LandmarkExtractor` (MediaPipe Face Mesh,
468 landmarks) -> :func:`~nlml_hpe.features.normalise_landmarks` -> the NLML-HPE
encoder + heads (:class:`~nlml_hpe.model.PoseModel`, numpy) for all faces of the
frame in one batch -> angles, rotation, quaternion and (given intrinsics) the
metric position (:mod:`nlml_hpe.position`).

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
``warp_min_deg`` off the optical axis are therefore read again from a crop
warped into a camera turned onto them
(:meth:`HeadPoseEstimator.warp_to_line_of_sight`): one more MediaPipe pass per
such face (tracked when streaming).

Rigid fusion (``rigid_fusion``, on by default): each face's angles are the mean
of the network's reading and of a rigid fit of MediaPipe's 3D landmarks to its
canonical face (:func:`~nlml_hpe.baseline.rigid_fit_rotations`).  The two err
in different ways on real faces (the fit assumes MediaPipe's mean face and reads
pitch about 1 deg low on AFLW2000; the network learned synthetic faces), and
their mean is a little more accurate than the network alone (README); the fit
costs about 20 microseconds per face on its own, 0.1 ms in a frame (cold caches).

Flip averaging (``flip_average``, on by default for single images): MediaPipe
also runs on the mirrored image, the model reads each mirrored face, and its
un-mirrored angles (yaw and roll change sign) are averaged with the direct
ones.  MediaPipe's landmark errors are not mirror-symmetric, so the average
cancels part of them (AFLW2000 dev: see the README); it costs one more
MediaPipe pass per image.
"""

from dataclasses import dataclass, field
import time

import numpy as np

from .baseline import rigid_fit_rotations
from .features import (
    N_LANDMARKS,
    centre_on_line_of_sight,
    line_of_sight_homography,
    map_landmarks,
    normalise_landmarks,
    off_axis_deg,
)
from .geometry import (
    FACE_TO_HEAD,
    euler_to_matrix,
    matrix_to_euler,
    matrix_to_quaternion,
    optical_to_viewer,
    viewer_to_optical,
)
from .images import as_rgb_uint8
from .landmarks import DEFAULT_DETECTION_INTERVAL
from .model import default_model_dir, load_model
from .position import (
    UNKNOWN_CAMERA_HFOV_DEG,
    _camera_frame_pose,
    check_camera_matrix,
    default_camera_matrix,
    estimate_position,
)


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
    face, z up) in the optical frame.  ``box`` is ``(x0, y0, x1, y1)`` in pixels (the landmarks'
    bounding box, clipped to the image when its size is known); ``landmarks``
    ``(468, 3)`` pixel-proportional coordinates; ``score`` the fraction of
    landmarks inside the image (see :class:`~nlml_hpe.landmarks.LandmarkExtractor`);
    ``position`` ``(3,)`` metres in the optical frame, or ``None`` without
    camera intrinsics.
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

    @property
    def angles(self):
        """``(pitch, yaw, roll)`` in degrees, relative to the line of sight."""
        return np.array([self.pitch, self.yaw, self.roll])

    @property
    def camera_angles(self):
        """``(pitch, yaw, roll)`` in degrees of ``rotation`` (relative to the optical axis)."""
        return matrix_to_euler(optical_to_viewer(self.rotation))

    def to_dict(self):
        """JSON-friendly summary (angles, box, score, position)."""
        out = {'yaw': float(self.yaw), 'pitch': float(self.pitch), 'roll': float(self.roll),
               'box': [float(v) for v in self.box], 'score': float(self.score)}
        if self.position is not None:
            out['position'] = [float(v) for v in self.position]
        return out


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


def box_iou(a, b):
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def mirror_landmarks(landmarks_px, width):
    """Landmarks of a horizontally mirrored image, in the original image's pixels."""
    out = np.array(landmarks_px, dtype=np.float64, copy=True)
    out[:, 0] = width - out[:, 0]
    return out


def match_mirrored(faces, mirrored_faces, width, min_iou=0.5):
    """For each face, the index of its mirrored-image twin (or None), matched by box IoU."""
    boxes = [landmark_box(f) for f in faces]
    twins = [landmark_box(mirror_landmarks(f, width)) for f in mirrored_faces]
    pairs = sorted(((box_iou(a, b), i, j) for i, a in enumerate(boxes)
                    for j, b in enumerate(twins)), reverse=True)
    match, used = [None] * len(faces), set()
    for iou, i, j in pairs:
        if iou < min_iou:
            break
        if match[i] is None and j not in used:
            match[i] = j
            used.add(j)
    return match


def mirror_camera_matrix(camera_matrix, width):
    """Intrinsics of the horizontally mirrored image of a ``width``-pixel-wide camera."""
    k = np.array(camera_matrix, dtype=np.float64, copy=True)
    k[0, 2] = width - k[0, 2]
    k[0, 1] = -k[0, 1]
    return k


#: Faces whose line of sight is at least this far off the optical axis (degrees) are
#: re-read from a view turned onto them when ``perspective_warp`` is on.
DEFAULT_WARP_MIN_DEG = 10.0
#: Side of the line-of-sight crop, in face sizes (the landmarks' bounding box) ...
WARP_CROP_FACES = 3.0
#: ... and in pixels: the face fills about 192 px, MediaPipe's landmark-model input.
WARP_CROP_PX = 576

#: Sign of (pitch, yaw, roll) under a horizontal mirror.
MIRROR_SIGNS = np.array([1.0, -1.0, -1.0])


class HeadPoseEstimator:
    """Estimate the head pose of every face in an RGB image.

    Use :meth:`from_pretrained` to load the shipped model.  ``flip_average``
    (default: on for single images, off when ``streaming``) averages each face's
    angles with those read from the mirrored image; ``rigid_fusion`` (default
    on) averages the network's angles with a rigid fit's; ``perspective_warp``
    (default on) re-reads faces at least ``warp_min_deg`` off the optical axis
    from a view turned onto them (see the module docstring).
    ``last_timings`` holds the per-stage times of the latest call
    (``landmarks_ms``, ``flip_ms``, ``warp_ms``, ``model_ms``, ``post_ms``) and
    counts (``faces``, ``flip_matched``, ``warped``).
    """

    def __init__(self, model, extractor=None, *, max_faces=5, min_detection_confidence=0.5,
                 min_tracking_confidence=0.5, streaming=False, flip_average=None,
                 rigid_fusion=True, perspective_warp=True, warp_min_deg=DEFAULT_WARP_MIN_DEG,
                 detection_interval=DEFAULT_DETECTION_INTERVAL):
        self.model = model
        self.rigid_fusion = bool(rigid_fusion)
        self._extractor = extractor
        self._flip_extractor = None
        self._warp_extractor = None
        self._extractor_args = dict(max_faces=max_faces,
                                    min_detection_confidence=min_detection_confidence,
                                    min_tracking_confidence=min_tracking_confidence,
                                    streaming=streaming,
                                    detection_interval=int(detection_interval))
        if self._extractor_args['detection_interval'] < 1:
            raise ValueError(f'detection_interval must be >= 1, got {detection_interval}')
        self.streaming = bool(streaming)
        self.flip_average = (not self.streaming) if flip_average is None else bool(flip_average)
        self.perspective_warp = bool(perspective_warp)
        self.warp_min_deg = float(warp_min_deg)
        if not 0.0 <= self.warp_min_deg <= 90.0:
            raise ValueError(f'warp_min_deg must be in [0, 90], got {warp_min_deg}')
        self.max_faces = int(max_faces)
        self.last_timings = {}

    @classmethod
    def from_pretrained(cls, path=None, *, max_faces=5, min_detection_confidence=0.5,
                        min_tracking_confidence=0.5, streaming=False, flip_average=None,
                        rigid_fusion=True, perspective_warp=True,
                        warp_min_deg=DEFAULT_WARP_MIN_DEG,
                        detection_interval=DEFAULT_DETECTION_INTERVAL):
        """Load the model at ``path`` (default :func:`~nlml_hpe.model.default_model_dir`)."""
        model = load_model(default_model_dir() if path is None else path)
        return cls(model, max_faces=max_faces,
                   min_detection_confidence=min_detection_confidence,
                   min_tracking_confidence=min_tracking_confidence, streaming=streaming,
                   flip_average=flip_average, rigid_fusion=rigid_fusion,
                   perspective_warp=perspective_warp, warp_min_deg=warp_min_deg,
                   detection_interval=detection_interval)

    @property
    def extractor(self):
        """The MediaPipe landmark extractor (created on first use)."""
        if self._extractor is None:
            from .landmarks import LandmarkExtractor
            self._extractor = LandmarkExtractor(**self._extractor_args)
        return self._extractor

    @property
    def flip_extractor(self):
        """Extractor for the mirrored images (its own tracker when streaming)."""
        if not self.streaming:
            return self.extractor
        if self._flip_extractor is None:
            from .landmarks import LandmarkExtractor
            self._flip_extractor = LandmarkExtractor(**self._extractor_args)
        return self._flip_extractor

    def extract_mirrored(self, rgb):
        """Landmarks of the faces in the horizontally mirrored ``rgb`` (its own pixels)."""
        return self.flip_extractor.extract(np.ascontiguousarray(rgb[:, ::-1]))

    @property
    def warp_extractor(self):
        """Extractor for the line-of-sight crops (created on first use).

        Streaming, it tracks: every crop has its face at the same place and size,
        so the landmarks of one crop locate the face in the next, whichever face
        it is, and MediaPipe's detector rarely runs.
        """
        if self._warp_extractor is None:
            from .landmarks import LandmarkExtractor
            self._warp_extractor = LandmarkExtractor(
                max_faces=1 if self.streaming else 2, streaming=self.streaming,
                min_detection_confidence=self._extractor_args['min_detection_confidence'])
        return self._warp_extractor

    def warp_to_line_of_sight(self, rgb, faces, camera_matrix):
        """Re-read faces far off the optical axis from a view turned onto each of them.

        MediaPipe reads a face at the edge of the image, stretched by perspective,
        a few degrees differently from the same face at the centre.  For each
        face whose line of sight is at least ``warp_min_deg`` off the optical
        axis, the image is warped (:func:`cv2.warpPerspective`, the homography
        of :func:`~nlml_hpe.features.line_of_sight_homography`) into a crop of
        what a camera turned to look straight at the face would see; MediaPipe
        runs on that crop, and its landmarks are mapped back into ``rgb``'s
        pixels (``z`` by the homography's local scale).  A face MediaPipe does
        not find again keeps its landmarks.  ``camera_matrix`` is the camera of
        ``rgb``.  Returns ``(faces, number re-read)``.
        """
        import cv2

        k = check_camera_matrix(camera_matrix)
        out, n_warped = [], 0
        for lm in faces:
            lm = np.asarray(lm, dtype=np.float64)
            if off_axis_deg(lm, k) < self.warp_min_deg:
                out.append(lm)
                continue
            hom, scale = line_of_sight_homography(lm, k)
            x0, y0, x1, y1 = landmark_box(map_landmarks(lm, hom, scale)[0])
            # Every face lands at the centre of the same square crop, WARP_CROP_FACES face
            # sizes wide (about how large faces are in the photos MediaPipe reads well,
            # and the same place for its tracker whichever face comes next).
            zoom = WARP_CROP_PX / (WARP_CROP_FACES * max(x1 - x0, y1 - y0, 1.0))
            half = WARP_CROP_PX / 2.0
            to_crop = np.array([[zoom, 0.0, half - zoom * (x0 + x1) / 2],
                                [0.0, zoom, half - zoom * (y0 + y1) / 2], [0.0, 0.0, 1.0]])
            crop_hom = to_crop @ hom[0]
            view = cv2.warpPerspective(rgb, crop_hom, (WARP_CROP_PX, WARP_CROP_PX),
                                       flags=cv2.INTER_LINEAR)
            found = self.warp_extractor.extract(view)
            target = (zoom * x0 + to_crop[0, 2], zoom * y0 + to_crop[1, 2],
                      zoom * x1 + to_crop[0, 2], zoom * y1 + to_crop[1, 2])
            ious = [box_iou(landmark_box(f), target) for f in found]
            if not ious or max(ious) < 0.5:  # not found again (or another face): keep
                out.append(lm)
                continue
            out.append(map_landmarks(found[int(np.argmax(ious))], np.linalg.inv(crop_hom),
                                     1.0 / (scale * zoom))[0])
            n_warped += 1
        return out, n_warped

    def reread_off_axis(self, rgb, faces, mirrored=None, camera_matrix=None):
        """Apply :meth:`warp_to_line_of_sight` to ``faces`` and ``mirrored``.

        ``mirrored`` are the faces of the mirrored ``rgb``, in its pixels.
        ``camera_matrix`` defaults to the guess for an uncalibrated camera.
        Returns ``(faces, mirrored, number re-read)``.
        """
        width = rgb.shape[1]
        k = camera_matrix if camera_matrix is not None else default_camera_matrix(
            width, rgb.shape[0], hfov_deg=UNKNOWN_CAMERA_HFOV_DEG)
        faces, n_warped = self.warp_to_line_of_sight(rgb, faces, k)
        if mirrored:
            mirrored, n = self.warp_to_line_of_sight(np.ascontiguousarray(rgb[:, ::-1]),
                                                     mirrored, mirror_camera_matrix(k, width))
            n_warped += n
        return faces, mirrored, n_warped

    def estimate(self, rgb_uint8, camera_matrix=None):
        """Return a list of :class:`FacePose`, largest face first (``[]`` if no face)."""
        rgb = as_rgb_uint8(rgb_uint8)
        if camera_matrix is not None:
            camera_matrix = check_camera_matrix(camera_matrix)
        size = (rgb.shape[1], rgb.shape[0])
        t0 = time.perf_counter()
        faces, scores = self.extractor.extract_with_scores(rgb)
        t1 = time.perf_counter()
        mirrored = None
        if self.flip_average and (faces or self.streaming):
            # Streaming: the mirrored tracker sees every frame, so it keeps tracking.
            mirrored = self.extract_mirrored(rgb)
        t2 = time.perf_counter()
        n_warped = 0
        if self.perspective_warp and (faces or mirrored):
            faces, mirrored, n_warped = self.reread_off_axis(rgb, faces, mirrored, camera_matrix)
        t3 = time.perf_counter()
        poses = self.estimate_landmarks(faces, camera_matrix, scores=scores,
                                        image_size=size, mirrored=mirrored)
        self.last_timings.update(landmarks_ms=(t1 - t0) * 1e3, flip_ms=(t2 - t1) * 1e3,
                                 warp_ms=(t3 - t2) * 1e3, warped=n_warped)
        return poses

    def estimate_landmarks(self, landmarks_px_list, camera_matrix=None, *, scores=None,
                           image_size=None, mirrored=None):
        """Estimate poses from given ``(468, 3)`` pixel landmarks (skips MediaPipe).

        All faces go through the model in one batch.  ``scores`` defaults to 1.0
        per face; ``image_size`` ``(width, height)`` clips the boxes and, without
        ``camera_matrix``, gives the guessed camera of the line-of-sight turn
        (without either, ``rotation`` is the line-of-sight rotation itself).
        ``mirrored``: faces found in the horizontally mirrored image (in its own
        pixels; needs ``image_size``); each face with a twin among them gets the
        average of its angles and its twin's un-mirrored angles.
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
        if camera_matrix is not None:
            camera_matrix = check_camera_matrix(camera_matrix)
        twins = []
        if mirrored and lms:
            if image_size is None:
                raise ValueError('mirrored faces need image_size')
            twin_of = match_mirrored(lms, mirrored, image_size[0])
            twins = [(i, np.asarray(mirrored[j], dtype=np.float64))
                     for i, j in enumerate(twin_of) if j is not None]
        self.last_timings = {'landmarks_ms': 0.0, 'flip_ms': 0.0, 'warp_ms': 0.0, 'warped': 0,
                             'model_ms': 0.0, 'post_ms': 0.0, 'faces': len(lms),
                             'flip_matched': len(twins)}
        if not lms:
            return []
        t0 = time.perf_counter()
        ray_k = camera_matrix
        if ray_k is None and image_size is not None:
            ray_k = default_camera_matrix(*image_size, hfov_deg=UNKNOWN_CAMERA_HFOV_DEG)
        los = self.model.angle_frame == 'apparent' and ray_k is not None
        batch = np.stack(lms + [lm for _, lm in twins])
        if los:  # the model reads faces as a camera looking straight at them sees them
            ks = ray_k if not twins else np.stack(
                [ray_k] * len(lms) + [mirror_camera_matrix(ray_k, image_size[0])] * len(twins))
            batch = centre_on_line_of_sight(batch, ks)
        angles = self.model.predict(normalise_landmarks(batch))  # (N + twins, 3) p, y, r
        if self.rigid_fusion:
            angles = 0.5 * (angles + matrix_to_euler(rigid_fit_rotations(batch)))
        for k, (i, _) in enumerate(twins):
            angles[i] = 0.5 * (angles[i] + MIRROR_SIGNS * angles[len(lms) + k])
        angles = angles[:len(lms)]
        t1 = time.perf_counter()
        rots = viewer_to_optical(euler_to_matrix(angles[:, 0], angles[:, 1], angles[:, 2]))
        positions = [None] * len(lms)
        if los:
            kinv = np.linalg.inv(ray_k)
            for i, lm in enumerate(lms):
                rots[i], t = _camera_frame_pose(lm, rots[i], kinv)
                positions[i] = t if camera_matrix is not None else None
        elif camera_matrix is not None:
            positions = [estimate_position(lm, r, camera_matrix) for lm, r in zip(lms, rots)]
        quats = matrix_to_quaternion(rots @ FACE_TO_HEAD)
        poses = []
        for i, lm in enumerate(lms):
            rot, pos = rots[i], positions[i]
            pitch, yaw, roll = (float(v) for v in angles[i])
            poses.append(FacePose(yaw=yaw, pitch=pitch, roll=roll, rotation=rot,
                                  quaternion=quats[i], box=landmark_box(lm, image_size),
                                  landmarks=lm, score=float(scores[i]), position=pos))
        poses.sort(key=lambda p: -(p.box[2] - p.box[0]) * (p.box[3] - p.box[1]))
        self.last_timings.update(model_ms=(t1 - t0) * 1e3,
                                 post_ms=(time.perf_counter() - t1) * 1e3)
        return poses

    def close(self):
        """Release MediaPipe resources."""
        for name in ('_extractor', '_flip_extractor', '_warp_extractor'):
            if getattr(self, name) is not None:
                getattr(self, name).close()
                setattr(self, name, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
