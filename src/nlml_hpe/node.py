"""ROS 2 node ``head_pose_node``: camera images in, head poses, TF and a gaze signal out.

Subscriptions (relative names, sensor-data QoS)::

    image             sensor_msgs/Image (rgb8, bgr8, mono8, rgba8, bgra8)
    image/compressed  sensor_msgs/CompressedImage (instead of ``image`` when
                      the parameter use_compressed is true)
    camera_info       sensor_msgs/CameraInfo (followed live; K gives metric positions)

Publications (every message carries the image's header stamp and frame_id)::

    head_pose          geometry_msgs/PoseStamped   primary face (largest box); nothing
                                                   is published when no face is seen
    head_poses         geometry_msgs/PoseArray     all faces, largest first (may be empty)
    face_ids           std_msgs/Int32MultiArray    track id of each head_poses entry
    gaze_offsets       std_msgs/Float32MultiArray  per face, in head_poses order: angle (deg)
                                                   between the face's forward axis and the
                                                   ray from the head to the camera
    looking_at_camera  std_msgs/Bool               primary face: gaze offset <= the
                                                   parameter looking_threshold_deg
    target_offsets     std_msgs/Float32MultiArray  per face: angle (deg) between the
                                                   forward axis and the ray from the head to
                                                   the target (parameters looking_target, a
                                                   point in the camera frame, or
                                                   looking_target_frame, a TF frame)
    looking_at_target  std_msgs/UInt8MultiArray    per face: 1 when target_offsets <=
                                                   looking_threshold_deg, widened by the
                                                   target's looking_target_tolerance_m
                                                   (the camera, [0, 0, 0], is the default
                                                   target: looking_at_camera's special case)
    head_markers       visualization_msgs/MarkerArray  axes, gaze arrow and label per face
    /tf                tf2_msgs/TFMessage  <camera frame> -> face_<id> (REP-155: x out of
                                           the face, y to the subject's left, z up) and,
                                           optionally, -> gaze_<id> (REP-155: at the face's
                                           origin, z along the gaze, x right, y down)
    /diagnostics       diagnostic_msgs/DiagnosticArray (1 Hz)

ROS4HRI (REP-155; parameter ``ros4hri``, on by default; needs hri_msgs), with face
ids ``f<track id>`` (a ROS name token cannot start with a digit)::

    /humans/faces/tracked        hri_msgs/IdsList  ids of the faces in the frame (every
                                                   frame, empty when there is none)
    /humans/faces/<id>/roi       hri_msgs/NormalizedRegionOfInterest2D  face box / image
                                                   size, c = the landmark model's score
    /humans/faces/<id>/cropped   sensor_msgs/Image  128x128 rgb8 square crop of the face
                                                   (made only while someone subscribes)
    /tf                          <camera frame> -> face_<id> and gaze_<id> (as above)

The per-face topics exist while the face's track lives.

Poses are in the camera's optical frame.  With a valid camera_info the position
is metric (from the landmarks and K); otherwise the face lies on the optical ray
through its box centre at ``default_distance_m`` (a 60 degree horizontal field
of view is assumed for the ray when K is unknown).

Only the newest frame is processed: the subscription callback stores the latest
message and a worker thread processes it; frames overwritten before processing
are counted as dropped.  Bad input (wrong encoding, zero size, truncated data,
step mismatch, corrupt compressed bytes, decompression bombs and lying headers,
implausible camera_info, a header.frame_id tf2 would refuse, no face) produces
a throttled warning and no output that could be wrong; the checks that need no
decoding run in the subscription callback, so bad messages never displace a
good frame (:mod:`nlml_hpe.input_policy`, README "Hostile input").  A
parameter change that needs a new estimator builds and test-runs it in the
parameter callback and is refused, with the reason, when that fails.

Transport: raw 640x480 images over Fast DDS's default transports (UDP, with
fragmentation) are mostly lost with best-effort QoS on a default Linux socket
buffer, and slow when they arrive.  Export ``FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA``
in every process of the image pipeline (camera driver, this node) or subscribe
to ``image/compressed`` (``use_compressed``); ``nlml-hpe benchmark node
[--large-data]`` measures both.  Do not combine LARGE_DATA with
``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``: most raw frames were lost (14 of 99
arrived, issue 12); on one machine keep the default discovery range (SUBNET)
and isolate with ``ROS_DOMAIN_ID``, or subscribe to ``image/compressed``.
"""

import collections
import math
import signal
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Pose, PoseArray, PoseStamped, TransformStamped
import numpy as np
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.qos import (
    QoSDurabilityPolicy,
    QoSProfile,
    QoSReliabilityPolicy,
    qos_profile_sensor_data,
)
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import (
    Bool,
    ColorRGBA,
    Float32MultiArray,
    Int32MultiArray,
    MultiArrayDimension,
    UInt8MultiArray,
)
from visualization_msgs.msg import Marker, MarkerArray

from .camera import Camera
from .face_stream import FaceStream, check_target
from .geometry import gaze_frame_quaternion
from .images import square_crop
from .input_policy import frame_name_problem, frame_prefix_problem
from .options import EstimatorConfig, StreamConfig, parameter_specs
from .ros_image import (
    ImageConversionError,
    camera_matrix_from_info,
    check_compressed_image,
    check_raw_image,
    compressed_to_rgb,
    image_to_rgb,
)

try:  # tf2_ros is not on PyPI; with a ROS install use its broadcaster and buffer.
    from tf2_ros import Buffer, TransformBroadcaster, TransformListener
except ImportError:  # pragma: no cover - depends on the install
    Buffer = TransformBroadcaster = TransformListener = None
from tf2_msgs.msg import TFMessage

try:  # ROS4HRI messages: ros-<distro>-hri-msgs, or generated by bootstrap.sh (pip route).
    from hri_msgs.msg import IdsList, NormalizedRegionOfInterest2D
except ImportError:  # pragma: no cover - depends on the install
    IdsList = NormalizedRegionOfInterest2D = None

#: Seconds between two warnings of the same kind.
WARN_PERIOD_S = 5.0
#: Frame id used when an image arrives with an empty header.frame_id and no override.
FALLBACK_FRAME = 'camera_optical_frame'
#: ROS4HRI face id of track ``n``: ``f<n>`` (a ROS name token cannot start with a digit).
HRI_ID_PREFIX = 'f'
#: Side (px) of the ROS4HRI cropped face images (REP-155's /humans/faces/width, height).
HRI_FACE_SIZE = 128


def hri_face_id(track_id):
    """Return the ROS4HRI face id of a track id (``f3`` for 3)."""
    return f'{HRI_ID_PREFIX}{int(track_id)}'


def _range_f(lo, hi):
    return [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]


def _range_i(lo, hi):
    return [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]


def _descriptor_extra(spec):
    """Extra ParameterDescriptor fields of an option: its range, read-only."""
    extra = {'read_only': True} if spec.read_only else {}
    if spec.bounds is not None:
        extra.update({'integer_range': _range_i(*spec.bounds)} if spec.type is int else
                     {'floating_point_range': _range_f(*spec.bounds)})
    return extra


#: name -> (default, description, extra ParameterDescriptor fields), from the options
#: tables (:func:`nlml_hpe.options.parameter_specs`).
PARAMETERS = {s.name: (list(s.default) if s.type is tuple else s.default, s.help,
                       _descriptor_extra(s)) for s in parameter_specs()}
_SPECS = {s.name: s for s in parameter_specs()}
#: Parameters whose change needs a new estimator.
_RELOAD = {'model_path'} | {s.name for s in EstimatorConfig.specs()}
#: Node parameter -> FaceStream option.
_STREAM = {s.name: s.field for s in StreamConfig.specs()}


def _release_free_memory():
    """Hand memory freed by a closed estimator back to the OS (glibc; no-op elsewhere).

    Without it glibc keeps the freed arenas: RSS rose about 90 MB over 400
    reloads, then stayed; with it RSS stays within a few MB (README, Hostile input).
    """
    try:
        import ctypes

        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _stamp_seconds(stamp):
    return stamp.sec + stamp.nanosec * 1e-9


class HeadPoseNode(LifecycleNode):
    """Thin ROS adapter (a lifecycle node) over :class:`nlml_hpe.estimator.HeadPoseEstimator`.

    configure loads the model, activate subscribes and starts the worker,
    deactivate unsubscribes, cleanup releases the model and the publishers.  With
    the parameter ``autostart`` (default true) the constructor runs configure and
    activate, so ``ros2 run`` and the launch file need no lifecycle manager.
    """

    def __init__(self, node_name='head_pose_node', *, estimator=None, **kwargs):
        """Create the node; ``estimator`` (optional) replaces the one built from parameters."""
        super().__init__(node_name, **kwargs)
        for name, (default, text, extra) in PARAMETERS.items():
            self.declare_parameter(name, default,
                                   ParameterDescriptor(description=text, **extra))
        self.add_on_set_parameters_callback(self._on_set_parameters)  # validates
        self.add_post_set_parameters_callback(self._apply_parameters)  # applies
        self._p = {name: self.get_parameter(name).value for name in PARAMETERS}
        problem = self._check_values(self._p)
        if problem:
            raise ValueError(problem)

        self._lock = threading.Condition()
        self._pending = None
        self._stop = False
        self._est_lock = threading.Lock()  # held while a frame is processed, and to swap
        self._said = set()  # warnings given once
        self._camera_problem = ''
        self._camera = None
        self._last_warn = {}
        self.warnings = collections.Counter()  # kind -> count (all, not just logged ones)
        self.stats = collections.Counter()
        self._recv_times = collections.deque(maxlen=120)
        self._latency_ms = collections.deque(maxlen=120)
        self._age_ms = collections.deque(maxlen=120)
        self._last_faces = 0
        self._last_reread = (0, 0.0)  # faces re-read off the optical axis, and their ms
        self._stream = FaceStream(**self._stream_options(self._p))
        self._prepared = None  # estimator built by the on-set callback, swapped in after

        self._given_estimator = estimator
        self._estimator = None  # loaded by configure
        self._worker = None  # runs while active
        self._subscriptions_active = []
        self._timer = None
        self._hri = None
        self._tf_buffer = None  # created when looking_target_frame is first used
        self._configure_error = ''
        if self._p['autostart']:
            if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                raise ValueError(self._configure_error or 'configure failed')
            if self.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                raise ValueError('activate failed')
        else:
            self.get_logger().info('head_pose_node unconfigured (autostart is false): waiting '
                                   'for the configure and activate transitions')

    # -------------------------------------------------------------- lifecycle
    def on_configure(self, state):
        """Load the model and the face models (test-run once); create the publishers."""
        est = self._given_estimator
        try:
            if est is None:
                est = self._make_estimator(self._p)
            self._warm_up(est)
        except Exception as exc:  # noqa: BLE001 - a failed configure says why
            if est is not None and est is not self._given_estimator and hasattr(est, 'close'):
                est.close()
            self._configure_error = f'{type(exc).__name__}: {exc}'
            self.get_logger().error(f'configure failed: {self._configure_error}')
            return TransitionCallbackReturn.FAILURE
        with self._est_lock:
            self._estimator = est
        self._stream.reset()

        out_qos = QoSProfile(depth=10)
        self._pub_pose = self.create_publisher(PoseStamped, 'head_pose', out_qos)
        self._pub_poses = self.create_publisher(PoseArray, 'head_poses', out_qos)
        self._pub_ids = self.create_publisher(Int32MultiArray, 'face_ids', out_qos)
        self._pub_offsets = self.create_publisher(Float32MultiArray, 'gaze_offsets', out_qos)
        self._pub_looking = self.create_publisher(Bool, 'looking_at_camera', out_qos)
        self._pub_target_offsets = self.create_publisher(Float32MultiArray, 'target_offsets',
                                                         out_qos)
        self._pub_looking_target = self.create_publisher(UInt8MultiArray, 'looking_at_target',
                                                         out_qos)
        self._pub_markers = self.create_publisher(MarkerArray, 'head_markers', out_qos)
        self._pub_diag = self.create_publisher(DiagnosticArray, '/diagnostics', out_qos)
        if TransformBroadcaster is not None:  # pragma: no cover - needs a ROS install
            self._tf = TransformBroadcaster(self)
            self._pub_tf = None
        else:
            self._tf = None
            tf_qos = QoSProfile(depth=100, reliability=QoSReliabilityPolicy.RELIABLE,
                                durability=QoSDurabilityPolicy.VOLATILE)
            self._pub_tf = self.create_publisher(TFMessage, '/tf', tf_qos)
        self._hri = None  # ROS4HRI: face id -> (roi publisher, cropped publisher)
        if self._p['ros4hri']:
            if IdsList is None:
                self.get_logger().warning(
                    'ros4hri: hri_msgs is not installed (ROS: the hri_msgs package; pip route: '
                    'bootstrap.sh generates it); the ROS4HRI interface is off')
            else:
                self._hri = {}
                self._pub_tracked = self.create_publisher(IdsList, '/humans/faces/tracked',
                                                          out_qos)
        self._timer = self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().info('head_pose_node configured (model loaded)')
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state):
        """Subscribe to the camera and start the worker."""
        if self._p['use_compressed']:
            image = self.create_subscription(CompressedImage, 'image/compressed',
                                             lambda m: self._on_image(m, compressed=True),
                                             qos_profile_sensor_data)
        else:
            image = self.create_subscription(Image, 'image',
                                             lambda m: self._on_image(m, compressed=False),
                                             qos_profile_sensor_data)
        info = self.create_subscription(CameraInfo, 'camera_info', self._on_camera_info,
                                        qos_profile_sensor_data)
        self._subscriptions_active = [image, info]
        with self._lock:
            self._stop = False
            self._pending = None
        self._worker = threading.Thread(target=self._work, name='head_pose_worker', daemon=True)
        self._worker.start()
        topic = 'image/compressed' if self._p['use_compressed'] else 'image'
        self.get_logger().info(
            f'head_pose_node ready: listening on {self.resolve_topic_name(topic)}, '
            f'publishing {self.resolve_topic_name("head_pose")}')
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state):
        """Unsubscribe and stop the worker (the frame in flight, if any, is finished)."""
        self._release_active()
        self.get_logger().info('head_pose_node inactive (unsubscribed)')
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state):
        """Release the model and the publishers."""
        self._release_configured()
        self.get_logger().info('head_pose_node unconfigured (model released)')
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state):
        """Release whatever the current state holds."""
        self._release_active()
        self._release_configured()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state):
        """Release everything and go back to unconfigured."""
        self._release_active()
        self._release_configured()
        return TransitionCallbackReturn.SUCCESS

    def _release_active(self):
        for sub in self._subscriptions_active:
            self.destroy_subscription(sub)
        self._subscriptions_active = []
        worker = self._worker
        if worker is not None:
            with self._lock:
                self._stop = True
                self._pending = None
                self._lock.notify_all()
            worker.join(timeout=5.0)
            self._worker = None

    def _release_configured(self):
        with self._est_lock:
            est, self._estimator = self._estimator, None
        if est is not None and est is not self._given_estimator and hasattr(est, 'close'):
            est.close()
            _release_free_memory()
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        pubs = [getattr(self, name, None) for name in (
            '_pub_pose', '_pub_poses', '_pub_ids', '_pub_offsets', '_pub_looking',
            '_pub_target_offsets', '_pub_looking_target', '_pub_markers', '_pub_diag',
            '_pub_tf', '_pub_tracked')]
        if getattr(self, '_tf', None) is not None:  # pragma: no cover - needs tf2_ros
            pubs.append(self._tf.pub_tf)
            self._tf = None
        for hri_pubs in (self._hri or {}).values():
            pubs += list(hri_pubs)
        self._hri = None
        for pub in pubs:
            if pub is not None:
                self.destroy_publisher(pub)
        for name in ('_pub_pose', '_pub_poses', '_pub_ids', '_pub_offsets', '_pub_looking',
                     '_pub_target_offsets', '_pub_looking_target', '_pub_markers', '_pub_diag',
                     '_pub_tf', '_pub_tracked'):
            setattr(self, name, None)
        self._stream.reset()
        with self._lock:
            self._camera = None
            self._camera_problem = ''

    @property
    def _camera_matrix(self):
        """K of the latest valid camera_info (``None``: none yet, or the last was invalid)."""
        camera = self._camera
        return None if camera is None else camera.k

    # ------------------------------------------------------------------ setup
    @staticmethod
    def _make_estimator(p):
        from .estimator import HeadPoseEstimator

        path = p['model_path'] or None
        return HeadPoseEstimator.from_pretrained(path=path, streaming=True,
                                                 config=EstimatorConfig.from_node(p))

    @staticmethod
    def _warm_up(estimator):
        """Load the face models now, so the first camera frame is not slow."""
        estimator.estimate(np.zeros((64, 64, 3), np.uint8))

    def _prepare_reload(self, values):
        """Build and test-run the estimator for changed parameters; return it, or a reason.

        Runs in the parameter callback, so a change that cannot take effect (a
        folder without a model, a model that fails its sanity check, a face
        model that does not load) is refused with the reason and the running
        estimator is kept.
        """
        params = dict(self._p, **{k: v for k, v in values.items() if k in PARAMETERS})
        est = None
        try:
            est = self._make_estimator(params)
            self._warm_up(est)
        except Exception as exc:  # noqa: BLE001 - any failure refuses the change
            if est is not None and hasattr(est, 'close'):
                est.close()
            changed = ', '.join(sorted(_RELOAD & set(values)))
            return None, (f'cannot apply {changed}: building the estimator failed '
                          f'({type(exc).__name__}: {exc}); keeping the running one')
        return est, ''

    @staticmethod
    def _stream_options(values):
        """FaceStream options of the node parameters among ``values``."""
        return {option: values[name] for name, option in _STREAM.items() if name in values}

    @staticmethod
    def _check_values(values):
        """Return a reason string when a combination of values is invalid, else ''."""
        from pathlib import Path

        for key in ('face_frame_prefix', 'gaze_frame_prefix'):
            problem = frame_prefix_problem(values[key]) if key in values else ''
            if problem:
                return f'{key}: {problem}'
        cam = values.get('camera_frame', '')
        problem = frame_name_problem(cam) if cam else ''
        if problem:
            return f'camera_frame: {problem}'
        if 'looking_target' in values:
            try:
                check_target(values['looking_target'])
            except ValueError as exc:
                return f'looking_target: {exc}'
        target_frame = values.get('looking_target_frame', '')
        if target_frame:
            problem = frame_name_problem(target_frame)
            if problem:
                return f'looking_target_frame: {problem}'
            if Buffer is None:
                return ('looking_target_frame needs tf2_ros, which is not installed; give the '
                        'target as looking_target (a point in the camera frame) instead')
        path = values.get('model_path', '')
        if path and not Path(path).exists():
            return f'model_path {path!r} does not exist'
        return ''

    def _on_set_parameters(self, params):
        values = {p.name: p.value for p in params}
        for p in params:
            if p.name not in PARAMETERS:
                continue
            want = _SPECS[p.name].type
            if p.type_ == ParameterType.PARAMETER_NOT_SET or \
                    (want is float and not isinstance(p.value, (int, float))) or \
                    (want is tuple and isinstance(p.value, (str, bytes))) or \
                    (want not in (float, tuple) and not isinstance(p.value, want)):
                return SetParametersResult(successful=False,
                                           reason=f'{p.name} must be of type {want.__name__}')
            if want is float and not math.isfinite(float(p.value)):
                return SetParametersResult(successful=False, reason=f'{p.name} must be finite')
        problem = self._check_values(values)
        if problem:
            return SetParametersResult(successful=False, reason=problem)
        try:
            FaceStream.check(**self._stream_options(values))
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        # Unconfigured (no estimator yet): configure builds it with the new values.
        if getattr(self, '_estimator', None) is not None and \
                any(k in _RELOAD and values[k] != self._p[k] for k in values):
            new_est, reason = self._prepare_reload(values)
            if new_est is None:
                self._warn('reload', f'parameter change refused: {reason}')
                return SetParametersResult(successful=False, reason=reason)
            self._prepared = new_est  # swapped in by _apply_parameters
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params):
        """Apply accepted parameters (the on-set callback has validated them)."""
        values = {p.name: p.value for p in params if p.name in PARAMETERS}
        new_est, self._prepared = self._prepared, None
        if new_est is not None:
            with self._est_lock:  # waits for the frame in flight, if any
                old, self._estimator = self._estimator, new_est
            self._stream.reset()  # new detector, new tracks
            if old is not None and old is not self._given_estimator and hasattr(old, 'close'):
                old.close()
            _release_free_memory()
            self.get_logger().info('estimator rebuilt with the new parameters')
        with self._lock:
            self._p.update(values)
        self._stream.configure(**self._stream_options(values))

    # -------------------------------------------------------------- callbacks
    def _warn(self, kind, text, once=False):
        """Log ``text`` at most once per WARN_PERIOD_S (or once) for each ``kind``; count all."""
        now = time.monotonic()
        with self._lock:
            self.warnings[kind] += 1
            count = self.warnings[kind]
            if once:
                log = kind not in self._said
                self._said.add(kind)
            else:
                log = now - self._last_warn.get(kind, -1e9) >= WARN_PERIOD_S
            if log:
                self._last_warn[kind] = now
        if log:
            suffix = f' ({count} so far)' if count > 1 and not once else ''
            self.get_logger().warning(f'{text}{suffix}')

    def _frame_problem(self, msg):
        """Why the image's frame cannot be the TF parent, or '' (camera_frame overrides it)."""
        if self._p['camera_frame'] or not msg.header.frame_id:
            return ''
        return frame_name_problem(msg.header.frame_id)

    def _reject(self, kind, text, once=False):
        with self._lock:
            self.stats['rejected'] += 1
        self._warn(kind, text, once)

    def _on_image(self, msg, compressed):
        now = time.monotonic()
        with self._lock:
            self.stats['received'] += 1
            self._recv_times.append(now)
        # Cheap checks here, before the message can replace a good frame waiting for the
        # worker: a flood of bad messages (bombs, lying sizes) never starves good ones.
        try:
            (check_compressed_image if compressed else check_raw_image)(msg)
        except ImageConversionError as exc:
            self._reject('image', f'image rejected: {exc}')
            return
        problem = self._frame_problem(msg)
        if problem:
            self._reject('frame_id', f'images refused: header.frame_id is not usable as the TF '
                         f'parent ({problem}); set the camera_frame parameter to the '
                         "camera's optical frame", once=True)
            return
        with self._lock:
            if self._pending is not None:
                self.stats['dropped'] += 1
            self._pending = (msg, compressed, now)
            self._lock.notify()

    def _on_camera_info(self, msg):
        try:
            K = camera_matrix_from_info(msg)
            camera = Camera(K, int(msg.width), int(msg.height))
        except (ImageConversionError, ValueError) as exc:
            with self._lock:
                self._camera = None
                self._camera_problem = str(exc)[:200]
            self._warn('camera_info', f'ignoring camera_info: {exc}; positions use '
                       f'default_distance_m until a valid one arrives')
            return
        with self._lock:  # validated once here, used by every frame of that size
            self._camera = camera
            self._camera_problem = ''

    # ----------------------------------------------------------------- worker
    def _work(self):
        last_start = -1e9
        while True:
            with self._lock:
                while self._pending is None and not self._stop:
                    self._lock.wait(0.5)
                if self._stop:
                    return
                cap = float(self._p['max_rate'])
                wait = (last_start + 1.0 / cap - time.monotonic()) if cap > 0 else 0.0
                if wait > 0:
                    self._lock.wait(wait)  # newer frames may replace the pending one meanwhile
                    continue
                msg, compressed, received = self._pending
                self._pending = None
            last_start = time.monotonic()
            try:
                with self._est_lock:
                    self._process(msg, compressed, received)
            except Exception as exc:  # noqa: BLE001 - the node must keep running
                with self._lock:
                    self.stats['errors'] += 1
                self._warn('error', f'frame skipped: {type(exc).__name__}: {exc}')

    def _process(self, msg, compressed, received):
        try:
            rgb = compressed_to_rgb(msg) if compressed else image_to_rgb(msg)
        except ImageConversionError as exc:
            self._reject('image', f'image rejected: {exc}')
            return
        problem = self._frame_problem(msg)
        if problem:
            self._reject('frame_id', f'images refused: header.frame_id: {problem}', once=True)
            return
        height, width = rgb.shape[:2]
        frame = self._p['camera_frame'] or msg.header.frame_id
        if not frame:
            frame = FALLBACK_FRAME
            self._warn('frame_id', f'image has an empty header.frame_id; using {frame!r} '
                       '(set the camera_frame parameter)')
        with self._lock:
            K = self._camera
        if K is not None and K.size != (width, height):
            size = K.size
            self._warn('camera_info_size', f'camera_info is for {size[0]}x{size[1]} but the '
                       f'image is {width}x{height}; ignoring its intrinsics')
            K = None
        faces = self._estimator.estimate(rgb, camera=K)
        timings = faces.timings
        reread = (int(timings.get('warped', 0)), float(timings.get('landmarks_ms', 0.0)))
        t = _stamp_seconds(msg.header.stamp)
        if t <= 0:
            t = received
        if not faces:
            with self._lock:
                self.stats['no_face'] += 1
            self._warn('no_face', 'no face in the image')
        target = self._target(frame)
        results = self._to_results(faces, None if K is None else K.k, width, height, t, target)
        self._publish(msg.header.stamp, frame, results, rgb)
        done = time.monotonic()
        with self._lock:
            self.stats['processed'] += 1
            self._last_faces = len(results)
            self._last_reread = reread
            self._latency_ms.append((done - received) * 1e3)
            if _stamp_seconds(msg.header.stamp) > 0:
                self._age_ms.append((self.get_clock().now().nanoseconds * 1e-9
                                     - _stamp_seconds(msg.header.stamp)) * 1e3)

    def _target(self, frame):
        """Return the looking-at target in the camera frame (3,), or None if TF cannot give it."""
        name = self._p['looking_target_frame']
        if not name:
            return np.asarray(self._p['looking_target'], float)
        if self._tf_buffer is None:  # pragma: no cover - needs tf2_ros
            self._tf_buffer = Buffer()
            self._tf_listener = TransformListener(self._tf_buffer, self)
        try:  # pragma: no cover - needs tf2_ros
            tf = self._tf_buffer.lookup_transform(frame, name, Time())
        except Exception as exc:  # noqa: BLE001 - tf2 raises several kinds
            self._warn('target_frame', f'looking_target_frame {name!r} not available in '
                       f'{frame!r} ({type(exc).__name__}); target outputs skipped')
            return None
        v = tf.transform.translation  # pragma: no cover - needs tf2_ros
        return np.array([v.x, v.y, v.z])  # pragma: no cover - needs tf2_ros

    def _to_results(self, faces, K, width, height, t, target=None):
        """Per face (largest first): a dict of the FaceStream's StreamFace for publishing.

        Keys: id, quat, rot (face axes in optical), position, offset, looking,
        target_offset and looking_target (None when ``target`` is None: unknown),
        box, score.
        """
        stream_faces, skipped = self._stream.update(
            faces, t, (width, height), K, target=False if target is None else target)
        if skipped:
            self._warn('nonfinite', 'estimator returned a non-finite pose; face skipped')
        return [dict(id=f.id, quat=f.quaternion, rot=f.rotation, position=f.position,
                     offset=f.gaze_offset_deg, looking=f.looking_at_camera,
                     target_offset=f.target_offset_deg, looking_target=f.looking_at_target,
                     box=f.box, score=f.score) for f in stream_faces if f.seen]

    # ------------------------------------------------------------- publishing
    @staticmethod
    def _pose(r):
        pose = Pose()
        pose.position.x, pose.position.y, pose.position.z = (float(v) for v in r['position'])
        q = pose.orientation
        q.x, q.y, q.z, q.w = (float(v) for v in r['quat'])
        return pose

    def _publish(self, stamp, frame, results, rgb):
        p = self._p
        poses = PoseArray()
        poses.header.stamp, poses.header.frame_id = stamp, frame
        poses.poses = [self._pose(r) for r in results]
        self._pub_poses.publish(poses)
        dim = [MultiArrayDimension(label='faces', size=len(results), stride=len(results))]
        ids = Int32MultiArray(data=[r['id'] for r in results])
        ids.layout.dim = dim
        self._pub_ids.publish(ids)
        offsets = Float32MultiArray(data=[r['offset'] for r in results])
        offsets.layout.dim = dim
        self._pub_offsets.publish(offsets)
        if all(r['target_offset'] is not None for r in results):  # else the target is unknown
            t_offsets = Float32MultiArray(data=[r['target_offset'] for r in results])
            t_offsets.layout.dim = dim
            self._pub_target_offsets.publish(t_offsets)
            t_looking = UInt8MultiArray(data=[int(r['looking_target']) for r in results])
            t_looking.layout.dim = dim
            self._pub_looking_target.publish(t_looking)
        if self._pub_markers.get_subscription_count() > 0:  # RViz's: built only when read
            self._pub_markers.publish(self._markers(stamp, frame, results))
        if self._hri is not None:
            self._publish_hri(poses.header, results, rgb)
        if not results:
            return
        primary = PoseStamped()
        primary.header = poses.header
        primary.pose = poses.poses[0]
        self._pub_pose.publish(primary)
        self._pub_looking.publish(Bool(data=bool(results[0]['looking'])))
        transforms = []
        for r, pose in zip(results, poses.poses):
            frames = []  # (face frame, gaze frame or None)
            if p['publish_tf']:
                frames.append((p['face_frame_prefix'] + str(r['id']),
                               p['gaze_frame_prefix'] + str(r['id'])
                               if p['publish_gaze_frames'] else None))
            if self._hri is not None:  # REP-155 requires both frames
                hid = hri_face_id(r['id'])
                frames.append(('face_' + hid, 'gaze_' + hid))
            gaze = self._gaze_orientation(r) if any(g for _, g in frames) else None
            for face_name, gaze_name in frames:
                transforms.append(self._transform(stamp, frame, face_name, pose.position,
                                                  pose.orientation))
                if gaze_name is not None:
                    transforms.append(self._transform(stamp, frame, gaze_name, pose.position,
                                                      gaze))
        if not transforms:
            return
        if self._tf is not None:  # pragma: no cover - needs tf2_ros
            self._tf.sendTransform(transforms)
        else:
            self._pub_tf.publish(TFMessage(transforms=transforms))

    @staticmethod
    def _gaze_orientation(r):
        """REP-155 ``gaze_<id>`` orientation: z along the face's x, x right, y down."""
        q = gaze_frame_quaternion(r['rot'])
        out = Pose().orientation
        out.x, out.y, out.z, out.w = (float(v) for v in q)
        return out

    def _publish_hri(self, header, results, rgb):
        """ROS4HRI: per-face roi and cropped image, then the list of tracked face ids."""
        height, width = rgb.shape[:2]
        ids = [hri_face_id(r['id']) for r in results]
        for r, hid in zip(results, ids):
            pubs = self._hri.get(hid)
            if pubs is None:
                qos = QoSProfile(depth=10)
                pubs = self._hri[hid] = (
                    self.create_publisher(NormalizedRegionOfInterest2D,
                                          f'/humans/faces/{hid}/roi', qos),
                    self.create_publisher(Image, f'/humans/faces/{hid}/cropped', qos))
            x0, y0, x1, y1 = (float(v) for v in r['box'])
            roi = NormalizedRegionOfInterest2D(
                xmin=min(max(x0 / width, 0.0), 1.0), ymin=min(max(y0 / height, 0.0), 1.0),
                xmax=min(max(x1 / width, 0.0), 1.0), ymax=min(max(y1 / height, 0.0), 1.0),
                c=min(max(r['score'], 0.0), 1.0))
            roi.header = header
            pubs[0].publish(roi)
            if pubs[1].get_subscription_count() > 0:  # cropping costs: only when read
                pubs[1].publish(self._cropped(header, rgb, r['box']))
        self._pub_tracked.publish(IdsList(header=header, ids=ids))
        # Per-face topics live as long as their track: a face missed for a frame keeps them.
        live = set(ids) | ({hri_face_id(t) for t in self._stream.track_ids}
                           if self._p['tracking'] else set())
        for hid in [h for h in self._hri if h not in live]:
            for pub in self._hri.pop(hid):
                self.destroy_publisher(pub)

    @staticmethod
    def _cropped(header, rgb, box):
        """Square crop around the face box, scaled to HRI_FACE_SIZE, zero-padded (rgb8)."""
        crop = square_crop(rgb, box, HRI_FACE_SIZE)
        msg = Image(height=HRI_FACE_SIZE, width=HRI_FACE_SIZE, encoding='rgb8', is_bigendian=0,
                    step=HRI_FACE_SIZE * 3, data=crop.tobytes())
        msg.header = header
        return msg

    @staticmethod
    def _transform(stamp, parent, child, position, orientation):
        tf = TransformStamped()
        tf.header.stamp, tf.header.frame_id, tf.child_frame_id = stamp, parent, child
        tf.transform.translation.x = position.x
        tf.transform.translation.y = position.y
        tf.transform.translation.z = position.z
        tf.transform.rotation = orientation
        return tf

    @staticmethod
    def _markers(stamp, frame, results):
        out = MarkerArray()
        clear = Marker(action=Marker.DELETEALL)
        clear.header.stamp, clear.header.frame_id = stamp, frame
        out.markers.append(clear)
        colours = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]
        for r in results:
            origin = r['position']
            for axis in range(4):
                m = Marker(type=Marker.ARROW, action=Marker.ADD, id=r['id'] * 10 + axis)
                m.header.stamp, m.header.frame_id = stamp, frame
                m.pose.orientation.w = 1.0
                m.lifetime.sec = 1
                if axis < 3:
                    m.ns, length = 'head_axes', 0.1
                    m.scale.x, m.scale.y, m.scale.z = 0.008, 0.016, 0.02
                    m.color = ColorRGBA(r=colours[axis][0], g=colours[axis][1],
                                        b=colours[axis][2], a=1.0)
                    direction = r['rot'][:, axis]
                else:
                    m.ns, length = 'gaze', 0.4
                    m.scale.x, m.scale.y, m.scale.z = 0.015, 0.03, 0.05
                    m.color = (ColorRGBA(r=0.1, g=0.9, b=0.1, a=0.8) if r['looking']
                               else ColorRGBA(r=0.9, g=0.6, b=0.1, a=0.8))
                    direction = r['rot'][:, 0]
                end = origin + length * direction
                m.points = [Point(x=float(origin[0]), y=float(origin[1]), z=float(origin[2])),
                            Point(x=float(end[0]), y=float(end[1]), z=float(end[2]))]
                out.markers.append(m)
            label = Marker(type=Marker.TEXT_VIEW_FACING, action=Marker.ADD, ns='label',
                           id=r['id'] * 10 + 9)
            label.header.stamp, label.header.frame_id = stamp, frame
            label.pose.position.x = float(origin[0])
            label.pose.position.y = float(origin[1]) - 0.15
            label.pose.position.z = float(origin[2])
            label.pose.orientation.w = 1.0
            label.scale.z = 0.05
            label.lifetime.sec = 1
            label.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
            label.text = (f'face {r["id"]}: {r["offset"]:.0f} deg'
                          + (' (looking)' if r['looking'] else ''))
            out.markers.append(label)
        return out

    def _publish_diagnostics(self):
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._recv_times if now - t <= 2.0]
            rate = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 and \
                recent[-1] > recent[0] else 0.0
            lat = sorted(self._latency_ms)
            age = sorted(self._age_ms)
            stats = dict(self.stats)
            faces = self._last_faces
            reread, landmarks_ms = self._last_reread
            has_k = self._camera is not None
            camera_problem = self._camera_problem
        # The fully qualified name tells apart nodes of several cameras on /diagnostics.
        status = DiagnosticStatus(name=f'{self.get_fully_qualified_name()}: head pose estimation',
                                  hardware_id='camera')
        if self._worker is None:  # lifecycle state inactive: not subscribed on purpose
            status.level, status.message = DiagnosticStatus.OK, 'inactive (not subscribed)'
        elif not recent:
            status.level, status.message = DiagnosticStatus.WARN, 'no images received'
        elif stats.get('rejected', 0) and not stats.get('processed', 0):
            status.level, status.message = DiagnosticStatus.ERROR, 'all images rejected'
        else:
            status.level, status.message = DiagnosticStatus.OK, f'{faces} face(s)'

        def pct(values, q):
            return f'{values[min(len(values) - 1, int(q * len(values)))]:.1f}' if values else 'n/a'

        status.values = [KeyValue(key=k, value=str(v)) for k, v in [
            ('input_rate_hz', f'{rate:.1f}'),
            ('processing_latency_ms_p50', pct(lat, 0.5)),
            ('processing_latency_ms_p95', pct(lat, 0.95)),
            ('stamp_to_output_ms_p50', pct(age, 0.5)),
            ('faces', faces),
            ('faces_reread_off_axis', reread),
            ('landmarks_ms', f'{landmarks_ms:.1f}'),
            ('frames_received', stats.get('received', 0)),
            ('frames_processed', stats.get('processed', 0)),
            ('frames_dropped', stats.get('dropped', 0)),
            ('frames_rejected', stats.get('rejected', 0)),
            ('frames_without_face', stats.get('no_face', 0)),
            ('errors', stats.get('errors', 0)),
            ('camera_info_valid', has_k),
            ('camera_info_problem', camera_problem),
        ]]
        diag = DiagnosticArray(status=[status])
        diag.header.stamp = self.get_clock().now().to_msg()
        self._pub_diag.publish(diag)

    def destroy_node(self):
        """Stop the worker, release the model, then destroy the node."""
        if hasattr(self, '_est_lock'):  # fully constructed
            self._release_active()
            with self._est_lock:
                est, self._estimator = self._estimator, None
            if est is not None and est is not self._given_estimator and hasattr(est, 'close'):
                est.close()
        return super().destroy_node()


def parameter_problem(exc):
    """Return ``'<name>: <reason>'`` for an rclpy ParameterException.

    rclpy raises one from ``declare_parameter`` when a params file or ``-p`` gives a
    value of the wrong type (``max_faces: "five"`` or ``5.0``) or out of the
    descriptor's range; its text ends with ``': <name>'``.
    """
    reason, _, name = str(exc).rpartition(': ')
    return f'{name}: {reason}' if reason else str(exc)


def warn_unknown_overrides(node):
    """Warn of parameter overrides (params file, ``-p``) that name no parameter of ``node``.

    rclpy ignores them silently, so a misspelt key would leave the default in force
    unnoticed.  rclpy keeps the overrides in ``Node._parameter_overrides`` (no public
    accessor); ``qos_overrides.*`` are declared only when an entity is created.
    Return the unknown names.
    """
    overrides = getattr(node, '_parameter_overrides', None) or {}
    unknown = sorted(name for name in overrides
                     if not node.has_parameter(name) and not name.startswith('qos_overrides.'))
    if unknown:
        node.get_logger().warning(f'ignoring unknown parameter(s): {", ".join(unknown)} (not '
                                  f'parameters of {node.get_name()}; misspelt?)')
    return unknown


def main(args=None):
    """Entry point of ``ros2 run nlml_hpe head_pose_node``."""
    try:
        with rclpy.init(args=args):
            try:
                node = HeadPoseNode()
            except (ValueError, ParameterException) as exc:  # bad parameters or model file
                problem = parameter_problem(exc) if isinstance(exc, ParameterException) else exc
                rclpy.logging.get_logger('head_pose_node').fatal(f'cannot start: {problem}')
                return 1
            warn_unknown_overrides(node)
            try:
                rclpy.spin(node)
            finally:
                # Ctrl-C in a terminal under `ros2 launch` signals the node twice (the
                # process group, then launch): a second KeyboardInterrupt must not break
                # the cleanup (it printed a traceback from LiteRT's Interpreter.__del__).
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    return 0


if __name__ == '__main__':
    import sys

    sys.exit(main())
