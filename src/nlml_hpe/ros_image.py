"""sensor_msgs images to numpy, and CameraInfo validation.

Works on any object with the message fields, so it needs no ROS install to be
imported.  Every malformed input raises :class:`ImageConversionError` (a
``ValueError``) with a message saying what is wrong; nothing is guessed.

Accepted ``sensor_msgs/Image`` encodings: ``rgb8``, ``bgr8``, ``mono8``,
``rgba8``, ``bgra8``.  All are 8 bits per channel, so ``is_bigendian`` does not
change the byte layout; it is still checked to be a boolean-like 0/1.  Rows are
read with their ``step`` (row padding is dropped).  ``cv_bridge`` is used when it
is importable (after the same validation), otherwise the numpy path.
"""


import numpy as np

#: Channels per accepted ``sensor_msgs/Image`` encoding.
IMAGE_ENCODINGS = {'rgb8': 3, 'bgr8': 3, 'mono8': 1, 'rgba8': 4, 'bgra8': 4}
#: Largest accepted image side, to refuse absurd headers before allocating.
MAX_SIDE = 16384

try:  # pragma: no cover - depends on the install
    from cv_bridge import CvBridge as _CvBridge
    _BRIDGE = _CvBridge()
except Exception:  # noqa: BLE001 - cv_bridge absent or broken: use numpy
    _BRIDGE = None


class ImageConversionError(ValueError):
    """An image or CameraInfo message cannot be used."""


def has_cv_bridge():
    """Return True when cv_bridge is used for ``sensor_msgs/Image`` conversion."""
    return _BRIDGE is not None


def _buffer(data):
    if isinstance(data, np.ndarray):
        return data.astype(np.uint8, copy=False).ravel()
    return np.frombuffer(memoryview(data), dtype=np.uint8) if len(data) else np.zeros(0, np.uint8)


def image_to_rgb(msg):
    """Convert a ``sensor_msgs/Image`` to a contiguous ``(H, W, 3)`` uint8 RGB array."""
    encoding = str(msg.encoding).strip().lower()
    if encoding not in IMAGE_ENCODINGS:
        raise ImageConversionError(
            f'unsupported image encoding {msg.encoding!r}; accepted: '
            f'{", ".join(IMAGE_ENCODINGS)} (8-bit only; convert 16-bit or Bayer images first)')
    channels = IMAGE_ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageConversionError(f'zero-size image: {width}x{height}')
    if height > MAX_SIDE or width > MAX_SIDE:
        raise ImageConversionError(f'image too large: {width}x{height} (max side {MAX_SIDE})')
    if int(msg.is_bigendian) not in (0, 1):
        raise ImageConversionError(f'is_bigendian must be 0 or 1, got {msg.is_bigendian}')
    row = width * channels
    if step < row:
        raise ImageConversionError(
            f'step {step} is smaller than width*channels = {width}*{channels} = {row} '
            f'for {encoding}')
    buf = _buffer(msg.data)
    if buf.size != step * height:
        raise ImageConversionError(
            f'data size {buf.size} does not match step*height = {step}*{height} = '
            f'{step * height} (truncated or inconsistent image)')
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


def compressed_to_rgb(msg):
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG, PNG, ...) to ``(H, W, 3)`` uint8 RGB.

    16-bit PNGs are refused rather than silently rescaled.
    """
    import cv2

    buf = _buffer(msg.data)
    if buf.size == 0:
        raise ImageConversionError('empty compressed image')
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise ImageConversionError(
            f'cannot decode compressed image (format {msg.format!r}, {buf.size} bytes): '
            'corrupt or unsupported data')
    if img.dtype != np.uint8:
        raise ImageConversionError(f'compressed image has {img.dtype} pixels; only 8-bit '
                                   'images are accepted')
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    if img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    raise ImageConversionError(f'compressed image has {img.shape[2]} channels')


def camera_matrix_from_info(msg):
    """Return the ``(3, 3)`` intrinsic matrix of a ``sensor_msgs/CameraInfo``.

    Raises :class:`ImageConversionError` for NaN/inf, zero or negative focal
    lengths, a principal point outside the image or a zero image size.  When the
    rectified projection ``P`` is set it is not used: the node works on the raw
    image, whose intrinsics are ``K``.
    """
    k = np.asarray(msg.k, dtype=float).reshape(-1)
    if k.size != 9:
        raise ImageConversionError(f'CameraInfo K must have 9 elements, got {k.size}')
    K = k.reshape(3, 3)
    width, height = int(msg.width), int(msg.height)
    if not np.all(np.isfinite(K)):
        raise ImageConversionError('CameraInfo K contains NaN or inf')
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    if fx <= 0 or fy <= 0:
        raise ImageConversionError(f'CameraInfo focal lengths must be positive, got fx={fx}, '
                                   f'fy={fy} (uncalibrated camera?)')
    if width <= 0 or height <= 0:
        raise ImageConversionError(f'CameraInfo image size is {width}x{height}')
    if not (0 <= cx <= width and 0 <= cy <= height):
        raise ImageConversionError(f'CameraInfo principal point ({cx}, {cy}) lies outside the '
                                   f'{width}x{height} image')
    if abs(K[2, 2] - 1.0) > 1e-6 or abs(K[1, 0]) > 1e-9 or abs(K[2, 0]) > 1e-9 \
            or abs(K[2, 1]) > 1e-9:
        raise ImageConversionError(f'CameraInfo K is not an intrinsic matrix: {K.tolist()}')
    return K


def ray_position(camera_matrix, pixel, distance_m):
    """Point at ``distance_m`` from the camera centre on the optical ray through ``pixel``."""
    K = np.asarray(camera_matrix, float)
    ray = np.linalg.solve(K, np.array([pixel[0], pixel[1], 1.0]))
    return ray / np.linalg.norm(ray) * float(distance_m)
