"""What head_pose_node reads: images, camera_info, and the target's TF frame.

Subscriptions (relative names, sensor-data QoS)::

    image             sensor_msgs/Image (rgb8, bgr8, mono8, rgba8, bgra8)
    image/compressed  sensor_msgs/CompressedImage (instead of ``image`` when
                      the parameter use_compressed is true)
    camera_info       sensor_msgs/CameraInfo (followed live; K gives metric positions)

:class:`CameraInput` checks an image twice: cheaply in the subscription
callback (:meth:`CameraInput.accept`: sizes, encodings, the whole decode plan
of a compressed image within the node's decode budget, the frame name), so
that bad messages never reach the frame pump, and by decoding it
(:meth:`CameraInput.decode`: on the pump's worker, or on its decode stage for
a message that costs more than the stream's usual, see
:mod:`nlml_hpe.frame_pump`).  A rejected image gets a throttled warning and is
counted, in all and by reason (:data:`REJECT_REASONS`); nothing is published
for it (:mod:`nlml_hpe.input_policy`, docs/hostile_input.md).

A JPEG above the budget's pixels or time may be decoded at 1/2, 1/4 or 1/8
scale (``decode_reduced``): the :class:`InputFrame` keeps the message's own
size and the scale, and gives the estimator the camera of the reduced image
(:func:`~nlml_hpe.image_decode.scaled_camera_matrix`); poses are mapped back
to the message's pixels by the node.  camera_info applies to images of its own
size only: one for another size is ignored, and :attr:`CameraInput.camera_problem`
says so.

:class:`TargetLookup` gives the looking-at target in the camera frame: the
parameter looking_target, or the origin of the TF frame looking_target_frame
(needs tf2_ros; its listener is created on first use).
"""

from dataclasses import dataclass
import threading
import time

import numpy as np
from rclpy.qos import qos_profile_sensor_data
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from ..camera import Camera
from ..image_decode import REASONS, reason_of, scaled_camera_matrix
from ..input_policy import frame_name_problem
from ..ros_image import (
    ImageConversionError,
    camera_matrix_from_info,
    check_raw_image,
    decode_compressed,
    image_to_rgb,
    parse_compressed_cdr,
    plan_compressed,
)

try:  # tf2_ros is not on PyPI: the TF target needs a ROS install.
    from tf2_ros import Buffer, TransformListener
except ImportError:  # pragma: no cover - depends on the install
    Buffer = TransformListener = None

#: Frame id used when an image arrives with an empty header.frame_id and no override.
FALLBACK_FRAME = 'camera_optical_frame'
#: Whether looking_target_frame can be followed (tf2_ros is installed).
TF_AVAILABLE = Buffer is not None


#: Why an image is rejected, counted as ``rejected_<reason>``: the decode policy's
#: reasons (:data:`nlml_hpe.image_decode.REASONS`), a raw image's encoding or layout, and
#: an unusable header.frame_id.
REJECT_REASONS = REASONS + ('encoding', 'layout', 'frame_id')
#: Announced cost of a raw image (ms per megapixel): its conversion, about a copy.
RAW_MS_PER_MP = 1.0


def _stamp_s(stamp):
    return stamp.sec + stamp.nanosec * 1e-9


@dataclass
class CompressedView:
    """A CompressedImage read from its serialized bytes: ``header``, ``format``, ``data`` view."""

    header: Header
    format: str
    data: memoryview


def compressed_view(raw):
    """Return the :class:`CompressedView` of serialized CompressedImage bytes (or raise)."""
    m = parse_compressed_cdr(raw)
    if not 0 <= m.nanosec < 10 ** 9:
        raise ImageConversionError(f'header.stamp.nanosec is {m.nanosec}')
    header = Header(frame_id=m.frame_id)
    header.stamp.sec, header.stamp.nanosec = m.sec, m.nanosec
    return CompressedView(header, m.format, m.data)


@dataclass
class Planned:
    """An image message that passed the cheap checks, waiting to be decoded.

    ``plan``: a compressed image's :class:`~nlml_hpe.image_decode.DecodePlan`
    (None for a raw one) made with ``budget``; ``cost_ms``: the estimated
    decode time; ``arrival``: the pump's arrival time.
    """

    msg: object
    compressed: bool
    plan: object
    budget: object
    cost_ms: float
    arrival: float


@dataclass
class InputFrame:
    """A decoded image: ``rgb``, its TF frame, and the message's own pixel ``size``.

    ``scale``: ``rgb`` is the message's image decoded at 1/``scale`` (1, 2, 4
    or 8); ``camera``: the camera of the message's size (None: intrinsics
    unknown); ``msg``, ``arrival``: the message and its arrival time.
    """

    rgb: np.ndarray
    frame_id: str
    camera: Camera
    scale: int
    size: tuple
    msg: object
    arrival: float

    @property
    def time_s(self):
        """The message's stamp (s), or its arrival time when it has none."""
        t = _stamp_s(self.msg.header.stamp)
        return t if t > 0 else self.arrival

    @property
    def k(self):
        """The intrinsics of the message's image (None: unknown)."""
        return None if self.camera is None else self.camera.k

    @property
    def decoded_camera(self):
        """The camera of ``rgb`` (the intrinsics scaled to it), or None when unknown."""
        if self.camera is None or self.scale == 1:
            return self.camera
        h, w = self.rgb.shape[:2]
        return Camera(scaled_camera_matrix(self.camera.k, self.scale), w, h)


class CameraInput:
    """The image and camera_info subscriptions; ``warn(kind, text, once)`` and ``count(kind)``.

    ``count(kind)`` counts a refused image (``rejected`` and ``rejected_<reason>``,
    the caller's frame counts).
    """

    def __init__(self, warn, count):
        self._warn = warn
        self._count = count
        self._lock = threading.Lock()
        self._camera = None  # the latest valid camera_info's, or None
        self._problem = 'no camera_info received'  # why no camera is in effect ('' if one is)
        self._info_problem = ''  # why the latest camera_info was refused
        self._size = None  # (width, height) of the latest decoded image

    @property
    def camera(self):
        """The camera of the latest valid camera_info (None: none yet, or the last was invalid)."""
        with self._lock:
            return self._camera

    @property
    def camera_problem(self):
        """Why no camera_info is in effect ('' when one is): refused, none, or another size."""
        with self._lock:
            return self._problem

    @property
    def camera_in_effect(self):
        """Whether a valid camera_info of the images' size gives their intrinsics."""
        with self._lock:
            return self._camera is not None and not self._problem

    def camera_state(self):
        """Return ``{'camera': in effect, 'camera_problem': why not}`` (diagnostics)."""
        with self._lock:
            return {'camera': self._camera is not None and not self._problem,
                    'camera_problem': self._problem}

    def reset(self):
        """Forget the camera and the image size (cleanup)."""
        with self._lock:
            self._camera, self._size, self._info_problem = None, None, ''
            self._problem = 'no camera_info received'

    def _judge(self):
        """Set what is in effect from the camera and the latest image size (lock held)."""
        camera, size = self._camera, self._size
        if camera is None:
            self._problem = self._info_problem or 'no camera_info received'
        elif size is not None and camera.size != size:
            self._problem = (f'camera_info is for {camera.width}x{camera.height} images but the '
                             f'images are {size[0]}x{size[1]}: its intrinsics are ignored')
        else:
            self._problem = ''

    def subscribe(self, node, compressed, on_image):
        """Create the image and camera_info subscriptions on ``node``; return them.

        ``on_image(msg, compressed)`` gets every image message; a compressed one
        as its serialized bytes (``raw``: its data is never converted element by
        element; :meth:`accept` reads it with :func:`compressed_view`).
        """
        if compressed:
            image = node.create_subscription(CompressedImage, 'image/compressed',
                                             lambda m: on_image(m, True),
                                             qos_profile_sensor_data, raw=True)
        else:
            image = node.create_subscription(Image, 'image', lambda m: on_image(m, False),
                                             qos_profile_sensor_data)
        info = node.create_subscription(CameraInfo, 'camera_info', self.on_camera_info,
                                        qos_profile_sensor_data)
        return [image, info]

    def _refuse(self, kind, text, reason, once=False):
        self._count('rejected')
        self._count(f'rejected_{reason}')
        self._warn(kind, text, once)

    def _frame_problem(self, msg, camera_frame):
        return '' if camera_frame or not msg.header.frame_id else \
            frame_name_problem(msg.header.frame_id)

    def receive(self, pump, msg, compressed, camera_frame, budget):
        """Check an image message cheaply and offer it to ``pump`` (a FramePump).

        The check's CPU time goes to the pump's ``check_ms`` figures.
        """
        arrival = pump.arrived()
        c0 = time.thread_time()
        planned = self.accept(msg, compressed, camera_frame, budget, arrival)
        pump.observe('check_ms', (time.thread_time() - c0) * 1e3)
        if planned is not None:
            pump.offer(planned, arrival, _stamp_s(planned.msg.header.stamp), planned.cost_ms)

    def accept(self, msg, compressed, camera_frame, budget, arrival=0.0):
        """Cheap checks before decoding: a :class:`Planned` image, or None (warned, counted).

        ``budget``: the :class:`~nlml_hpe.image_decode.DecodeBudget` a
        compressed image is planned with (headers, scans, chunks: no decoding);
        ``msg``: a message, or a compressed one's serialized bytes.
        """
        try:
            if compressed and isinstance(msg, (bytes, bytearray, memoryview)):
                msg = compressed_view(msg)
            if compressed:
                plan = plan_compressed(msg, budget)
                cost = plan.ms
            else:
                plan = None
                check_raw_image(msg)
                cost = int(msg.width) * int(msg.height) / 1e6 * RAW_MS_PER_MP
        except ImageConversionError as exc:
            self._refuse('image', f'image rejected: {exc}', reason_of(exc))
            return None
        problem = self._frame_problem(msg, camera_frame)
        if problem:
            self._refuse('frame_id', 'images refused: header.frame_id is not usable as the TF '
                         f'parent ({problem}); set the camera_frame parameter to the '
                         "camera's optical frame", 'frame_id', once=True)
            return None
        return Planned(msg, compressed, plan, budget, cost, arrival)

    def decode(self, planned, camera_frame):
        """Return the :class:`InputFrame` of a planned image, or None (warned, counted)."""
        msg = planned.msg
        try:
            if planned.compressed:
                decoded = decode_compressed(msg, planned.budget, planned.plan)
                rgb, scale, size = decoded.rgb, decoded.scale, (decoded.width, decoded.height)
            else:
                rgb, scale = image_to_rgb(msg), 1
                size = (rgb.shape[1], rgb.shape[0])
        except ImageConversionError as exc:
            self._refuse('image', f'image rejected: {exc}', reason_of(exc))
            return None
        problem = self._frame_problem(msg, camera_frame)
        if problem:  # camera_frame was cleared since accept()
            self._refuse('frame_id', f'images refused: header.frame_id: {problem}', 'frame_id',
                         once=True)
            return None
        frame = camera_frame or msg.header.frame_id
        if not frame:
            frame = FALLBACK_FRAME
            self._warn('frame_id', f'image has an empty header.frame_id; using {frame!r} '
                       '(set the camera_frame parameter)')
        with self._lock:
            self._size = size
            self._judge()
            camera, problem = self._camera, self._problem
        if camera is not None and problem:
            self._warn('camera_info_size', problem)
            camera = None
        return InputFrame(rgb, frame, camera, scale, size, msg, planned.arrival)

    def on_camera_info(self, msg):
        """Keep the camera of a valid camera_info; refuse an invalid one with a warning."""
        try:
            camera = Camera(camera_matrix_from_info(msg), int(msg.width), int(msg.height))
        except (ImageConversionError, ValueError) as exc:
            with self._lock:
                self._camera, self._info_problem = None, str(exc)[:200]
                self._judge()
            self._warn('camera_info', f'ignoring camera_info: {exc}; positions use '
                       'default_distance_m until a valid one arrives')
            return
        with self._lock:  # validated once here, used by every frame of that size
            self._camera, self._info_problem = camera, ''
            self._judge()


class TargetLookup:
    """The looking-at target in the camera frame, from a point or a TF frame."""

    def __init__(self, node, warn):
        self._node = node
        self._warn = warn
        self._buffer = self._listener = None  # created when a target frame is first used

    def __call__(self, point, frame_name, camera_frame):
        """Return the target ``(3,)`` in ``camera_frame``, or None when TF cannot give it."""
        if not frame_name:
            return np.asarray(point, float)
        if self._buffer is None:  # pragma: no cover - needs tf2_ros
            self._buffer = Buffer()
            self._listener = TransformListener(self._buffer, self._node)
        try:  # pragma: no cover - needs tf2_ros
            tf = self._buffer.lookup_transform(camera_frame, frame_name, Time())
        except Exception as exc:  # noqa: BLE001 - tf2 raises several kinds
            self._warn('target_frame', f'looking_target_frame {frame_name!r} not available in '
                       f'{camera_frame!r} ({type(exc).__name__}); target outputs skipped')
            return None
        v = tf.transform.translation  # pragma: no cover - needs tf2_ros
        return np.array([v.x, v.y, v.z])  # pragma: no cover - needs tf2_ros
