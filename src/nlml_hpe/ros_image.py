"""sensor_msgs images to numpy, and CameraInfo validation.

Works on any object with the message fields, so it needs no ROS install to be
imported.  Every malformed input raises :class:`ImageConversionError` (a
``ValueError``) with a message saying what is wrong; nothing is guessed.

Accepted ``sensor_msgs/Image`` encodings: ``rgb8``, ``bgr8``, ``mono8``,
``rgba8``, ``bgra8``.  All are 8 bits per channel, so ``is_bigendian`` does not
change the byte layout; it is still checked to be a boolean-like 0/1.  Rows are
read with their ``step`` (row padding is dropped).  ``cv_bridge`` is used when it
is importable (after the same validation), otherwise the numpy path.

``sensor_msgs/CompressedImage`` data is checked and decoded within a
:class:`~nlml_hpe.image_decode.DecodeBudget` (:mod:`nlml_hpe.image_decode`).
:func:`compressed_to_rgb` decodes at full size only (a JPEG above the
budget's pixels is refused); :func:`decode_compressed` may decode a large
JPEG at 1/2, 1/4 or 1/8 scale and says so (:class:`~nlml_hpe.image_decode.Decoded`):
the frame's camera matrix is then
:func:`~nlml_hpe.image_decode.scaled_camera_matrix` ``(K, decoded.scale)``
and its boxes map back with :meth:`~nlml_hpe.image_decode.Decoded.to_source`.
:func:`plan_compressed` checks a message against a budget without decoding it.
:func:`parse_compressed_cdr` reads a *serialized* CompressedImage (what a raw
subscription receives) with its data as a view of the bytes: rclpy's own
deserialization converts a 4.8 MB message element by element in about 3 ms.
Every refusal names its rule (``exc.reason``, :func:`nlml_hpe.image_decode.reason_of`).
"""

from dataclasses import replace

import numpy as np

from .face_stream import ray_position  # noqa: F401 - part of this API
from .image_decode import MAX_SIDE, STREAM_BUDGET, check_encoded, decode, plan_decode, refusal
from .image_headers import ImageConversionError
from .input_policy import check_intrinsics

__all__ = ['IMAGE_ENCODINGS', 'MAX_SIDE', 'STREAM_BUDGET', 'ImageConversionError',
           'camera_matrix_from_info', 'check_compressed_image', 'check_raw_image',
           'compressed_to_rgb', 'decode_compressed', 'has_cv_bridge', 'image_to_rgb',
           'parse_compressed_cdr', 'plan_compressed', 'ray_position']

#: Channels per accepted ``sensor_msgs/Image`` encoding.
IMAGE_ENCODINGS = {'rgb8': 3, 'bgr8': 3, 'mono8': 1, 'rgba8': 4, 'bgra8': 4}

try:  # pragma: no cover - depends on the install
    from cv_bridge import CvBridge as _CvBridge
    _BRIDGE = _CvBridge()
except Exception:  # noqa: BLE001 - cv_bridge absent or broken: use numpy
    _BRIDGE = None


def has_cv_bridge():
    """Return True when cv_bridge is used for ``sensor_msgs/Image`` conversion."""
    return _BRIDGE is not None


def _buffer(data):
    if isinstance(data, np.ndarray):
        return data.astype(np.uint8, copy=False).ravel()
    return np.frombuffer(memoryview(data), dtype=np.uint8) if len(data) else np.zeros(0, np.uint8)


def check_raw_image(msg):
    """Validate a ``sensor_msgs/Image`` without converting it; return its data buffer.

    Cheap (no pixel is touched): the node runs it in the subscription callback,
    so a bad message never takes the place of a good frame waiting for the
    worker.  Raises :class:`ImageConversionError` naming the problem (``reason``
    ``'encoding'``, ``'size'`` or ``'layout'``).
    """
    encoding = str(msg.encoding).strip().lower()
    if encoding not in IMAGE_ENCODINGS:
        raise refusal(
            f'unsupported image encoding {str(msg.encoding)[:40]!r}; accepted: '
            f'{", ".join(IMAGE_ENCODINGS)} (8-bit only; convert 16-bit or Bayer images first)',
            'encoding')
    channels = IMAGE_ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise refusal(f'zero-size image: {width}x{height}', 'size')
    if height > MAX_SIDE or width > MAX_SIDE:
        raise refusal(f'image too large: {width}x{height} (max side {MAX_SIDE})', 'size')
    if int(msg.is_bigendian) not in (0, 1):
        raise refusal(f'is_bigendian must be 0 or 1, got {msg.is_bigendian}', 'layout')
    row = width * channels
    if step < row:
        raise refusal(f'step {step} is smaller than width*channels = {width}*{channels} = '
                      f'{row} for {encoding}', 'layout')
    buf = _buffer(msg.data)
    if buf.size != step * height:
        raise refusal(f'data size {buf.size} does not match step*height = {step}*{height} = '
                      f'{step * height} (truncated or inconsistent image)', 'layout')
    return buf


def image_to_rgb(msg):
    """Convert a ``sensor_msgs/Image`` to a contiguous ``(H, W, 3)`` uint8 RGB array."""
    buf = check_raw_image(msg)
    encoding = str(msg.encoding).strip().lower()
    channels = IMAGE_ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row = width * channels
    if _BRIDGE is not None:  # pragma: no cover - depends on the install
        rgb = _BRIDGE.imgmsg_to_cv2(msg, desired_encoding='rgb8')
        return np.ascontiguousarray(rgb)
    img = buf.reshape(height, step)[:, :row].reshape(height, width, channels)
    if encoding == 'rgb8':
        return np.ascontiguousarray(img)
    if encoding == 'bgr8':
        return np.ascontiguousarray(img[:, :, ::-1])
    if encoding == 'rgba8':
        return np.ascontiguousarray(img[:, :, :3])
    if encoding == 'bgra8':
        return np.ascontiguousarray(img[:, :, 2::-1])
    return np.ascontiguousarray(np.repeat(img, 3, axis=2))  # mono8


def _compressed_buffer(msg):
    buf = _buffer(msg.data)
    if buf.size == 0:
        raise refusal('empty compressed image', 'header')
    return buf


def _full_size(budget):
    return replace(STREAM_BUDGET if budget is None else budget, reduce=False)


def check_compressed_image(msg, budget=None):
    """Check a ``sensor_msgs/CompressedImage`` without decoding it; return its ImageHeader.

    The whole policy and ``budget`` apply (:func:`~nlml_hpe.image_decode.plan_decode`;
    default: :data:`~nlml_hpe.image_decode.STREAM_BUDGET` at full size only,
    as :func:`compressed_to_rgb` decodes): headers, a JPEG's scans, a PNG's
    chunks.  Cheap enough for a subscription callback (about half a
    millisecond per MB of JPEG, microseconds otherwise), so a message that
    would be refused never takes the place of a good frame.
    """
    buf = _compressed_buffer(msg)
    return check_encoded(memoryview(buf), budget=_full_size(budget) if budget is None
                         else budget)


def compressed_to_rgb(msg, budget=None):
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG, PNG, ...) to ``(H, W, 3)`` uint8 RGB.

    At full size: the input policy of :mod:`nlml_hpe.image_decode` applies,
    with ``budget`` (default :data:`~nlml_hpe.image_decode.STREAM_BUDGET`)
    without reduction; ``msg.format`` is not trusted, the data's own header
    says what it is.
    """
    return decode(_compressed_buffer(msg), budget=_full_size(budget)).rgb


def plan_compressed(msg, budget=STREAM_BUDGET):
    """Check a ``sensor_msgs/CompressedImage`` against ``budget``; return its ``DecodePlan``.

    As :func:`check_compressed_image` (cheap, nothing decoded), with the plan's
    JPEG scale, estimated decode time and memory.
    """
    return plan_decode(memoryview(_compressed_buffer(msg)), budget=budget)


def decode_compressed(msg, budget=STREAM_BUDGET, plan=None):
    """Decode a ``sensor_msgs/CompressedImage`` within ``budget``; return a ``Decoded``.

    A JPEG above ``budget.max_pixels`` is decoded at 1/``decoded.scale``
    (when ``budget.reduce``); see the module docstring for the camera matrix
    and boxes of such a frame.  ``plan``: :func:`plan_compressed`'s for this
    message (it is not made again).
    """
    return decode(_compressed_buffer(msg), budget=budget, plan=plan)


class SerializedCompressed:
    """A ``sensor_msgs/CompressedImage`` read from its serialized form, its data not copied.

    ``header`` (``sec``, ``nanosec``, ``frame_id``), ``format`` and ``data``
    (a memoryview into the serialized bytes): the fields this module reads.
    """

    __slots__ = ('sec', 'nanosec', 'frame_id', 'format', 'data')

    def __init__(self, sec, nanosec, frame_id, fmt, data):
        self.sec, self.nanosec, self.frame_id = sec, nanosec, frame_id
        self.format, self.data = fmt, data


#: Longest string read from a serialized CompressedImage (frame_id, format), bytes.
MAX_CDR_STRING = 4096


def parse_compressed_cdr(raw):
    """Read a serialized ``sensor_msgs/CompressedImage`` (CDR, either byte order).

    Returns a :class:`SerializedCompressed` whose ``data`` is a view of
    ``raw`` (a 4.8 MB message is not converted element by element, as
    rclpy's deserialization does in about 3 ms).  Raises
    :class:`ImageConversionError` when the bytes are not such a message.
    """
    import struct

    b = memoryview(raw).cast('B')
    if len(b) < 4 or b[0] != 0 or b[1] not in (0, 1):
        raise refusal('not a CDR-serialized CompressedImage', 'header')
    e = '<' if b[1] == 1 else '>'
    pos = 4

    def u32(at):
        at = 4 + (at - 4 + 3) // 4 * 4  # aligned on 4 from the start of the body
        if at + 4 > len(b):
            raise refusal('truncated serialized CompressedImage', 'header')
        return struct.unpack_from(e + 'I', b, at)[0], at + 4

    def string(at, what):
        n, at = u32(at)
        if n > MAX_CDR_STRING or at + n > len(b):
            raise refusal(f'serialized CompressedImage: {what} of {n} bytes', 'header')
        return bytes(b[at:at + max(n - 1, 0)]).decode('utf-8', 'replace'), at + n

    sec, pos = u32(pos)
    nanosec, pos = u32(pos)
    frame_id, pos = string(pos, 'frame_id')
    fmt, pos = string(pos, 'format')
    n, pos = u32(pos)
    if pos + n > len(b):
        raise refusal('truncated serialized CompressedImage', 'header')
    sec = sec - 2 ** 32 if sec >= 2 ** 31 else sec  # int32
    return SerializedCompressed(sec, nanosec, frame_id, fmt, b[pos:pos + n])


def camera_matrix_from_info(msg):
    """Return the ``(3, 3)`` intrinsic matrix of a ``sensor_msgs/CameraInfo``.

    Raises :class:`ImageConversionError` unless ``K`` describes a plausible
    camera for the message's image size
    (:func:`nlml_hpe.input_policy.check_intrinsics`: exactly 9 finite numbers,
    focal lengths 0.1 to 100 times the larger side, near-square pixels, small
    skew, the principal point inside the image).  When the rectified
    projection ``P`` is set it is not used: the node works on the raw image,
    whose intrinsics are ``K``.
    """
    try:
        return check_intrinsics(msg.k, msg.width, msg.height)
    except ImageConversionError as exc:
        raise ImageConversionError(f'CameraInfo {exc}') from None


