"""What head_pose_node reads: images, camera_info, and the target's TF frame.

Subscriptions (relative names, sensor-data QoS)::

    image             sensor_msgs/Image (rgb8, bgr8, mono8, rgba8, bgra8)
    image/compressed  sensor_msgs/CompressedImage (instead of ``image`` when
                      the parameter use_compressed is true)
    camera_info       sensor_msgs/CameraInfo (followed live; K gives metric positions)

:class:`CameraInput` checks an image twice: cheaply in the subscription
callback (:meth:`CameraInput.accept`: sizes, encodings, compressed headers, the
frame name), so that bad messages never displace a good frame waiting for the
worker, and by decoding it on the worker (:meth:`CameraInput.decode`).  A
rejected image gets a throttled warning and is counted; nothing is published
for it (:mod:`nlml_hpe.input_policy`, README "Hostile input").

:class:`TargetLookup` gives the looking-at target in the camera frame: the
parameter looking_target, or the origin of the TF frame looking_target_frame
(needs tf2_ros; its listener is created on first use).
"""

from dataclasses import dataclass
import threading

import numpy as np
from rclpy.qos import qos_profile_sensor_data
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from ..camera import Camera
from ..input_policy import frame_name_problem
from ..ros_image import (
    ImageConversionError,
    camera_matrix_from_info,
    check_compressed_image,
    check_raw_image,
    compressed_to_rgb,
    image_to_rgb,
)

try:  # tf2_ros is not on PyPI: the TF target needs a ROS install.
    from tf2_ros import Buffer, TransformListener
except ImportError:  # pragma: no cover - depends on the install
    Buffer = TransformListener = None

#: Frame id used when an image arrives with an empty header.frame_id and no override.
FALLBACK_FRAME = 'camera_optical_frame'
#: Whether looking_target_frame can be followed (tf2_ros is installed).
TF_AVAILABLE = Buffer is not None


@dataclass
class Decoded:
    """A decoded image: ``rgb``, its TF frame, and the camera (None: intrinsics unknown)."""

    rgb: np.ndarray
    frame_id: str
    camera: Camera


class CameraInput:
    """The image and camera_info subscriptions; ``warn(kind, text, once)`` and ``reject(kind)``.

    ``reject(kind)`` counts a refused image (the caller's frame counts).
    """

    def __init__(self, warn, reject):
        self._warn = warn
        self._reject_count = reject
        self._lock = threading.Lock()
        self._camera = None  # the latest valid camera_info's, or None
        self._problem = ''  # why the latest camera_info was refused

    @property
    def camera(self):
        """The camera of the latest valid camera_info (None: none yet, or the last was invalid)."""
        with self._lock:
            return self._camera

    @property
    def camera_problem(self):
        """Why the latest camera_info was refused ('' when it was not)."""
        with self._lock:
            return self._problem

    def reset(self):
        """Forget the camera (cleanup)."""
        with self._lock:
            self._camera, self._problem = None, ''

    def subscribe(self, node, compressed, on_image):
        """Create the image and camera_info subscriptions on ``node``; return them.

        ``on_image(msg, compressed)`` gets every image message.
        """
        if compressed:
            image = node.create_subscription(CompressedImage, 'image/compressed',
                                             lambda m: on_image(m, True),
                                             qos_profile_sensor_data)
        else:
            image = node.create_subscription(Image, 'image', lambda m: on_image(m, False),
                                             qos_profile_sensor_data)
        info = node.create_subscription(CameraInfo, 'camera_info', self.on_camera_info,
                                        qos_profile_sensor_data)
        return [image, info]

    def _refuse(self, kind, text, once=False):
        self._reject_count('rejected')
        self._warn(kind, text, once)

    def accept(self, msg, compressed, camera_frame):
        """Cheap checks before decoding; False (warned, counted) for an unusable image."""
        try:
            (check_compressed_image if compressed else check_raw_image)(msg)
        except ImageConversionError as exc:
            self._refuse('image', f'image rejected: {exc}')
            return False
        problem = '' if camera_frame or not msg.header.frame_id else \
            frame_name_problem(msg.header.frame_id)
        if problem:
            self._refuse('frame_id', 'images refused: header.frame_id is not usable as the TF '
                         f'parent ({problem}); set the camera_frame parameter to the '
                         "camera's optical frame", once=True)
            return False
        return True

    def decode(self, msg, compressed, camera_frame):
        """Return the :class:`Decoded` image, or None (warned, counted) when it is unusable."""
        try:
            rgb = compressed_to_rgb(msg) if compressed else image_to_rgb(msg)
        except ImageConversionError as exc:
            self._refuse('image', f'image rejected: {exc}')
            return None
        problem = '' if camera_frame or not msg.header.frame_id else \
            frame_name_problem(msg.header.frame_id)
        if problem:  # camera_frame was cleared since accept()
            self._refuse('frame_id', f'images refused: header.frame_id: {problem}', once=True)
            return None
        height, width = rgb.shape[:2]
        frame = camera_frame or msg.header.frame_id
        if not frame:
            frame = FALLBACK_FRAME
            self._warn('frame_id', f'image has an empty header.frame_id; using {frame!r} '
                       '(set the camera_frame parameter)')
        camera = self.camera
        if camera is not None and camera.size != (width, height):
            self._warn('camera_info_size', f'camera_info is for {camera.width}x'
                       f'{camera.height} but the image is {width}x{height}; ignoring its '
                       'intrinsics')
            camera = None
        return Decoded(rgb, frame, camera)

    def on_camera_info(self, msg):
        """Keep the camera of a valid camera_info; refuse an invalid one with a warning."""
        try:
            camera = Camera(camera_matrix_from_info(msg), int(msg.width), int(msg.height))
        except (ImageConversionError, ValueError) as exc:
            with self._lock:
                self._camera, self._problem = None, str(exc)[:200]
            self._warn('camera_info', f'ignoring camera_info: {exc}; positions use '
                       'default_distance_m until a valid one arrives')
            return
        with self._lock:  # validated once here, used by every frame of that size
            self._camera, self._problem = camera, ''


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
