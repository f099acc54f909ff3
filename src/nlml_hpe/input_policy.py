"""One input policy for the node and the CLI: encoded images, camera intrinsics, frame names.

Encoded images (``sensor_msgs/CompressedImage`` data, image files) are checked
from their headers before decoding and decoded within a budget of pixels,
bytes, work and memory: :mod:`nlml_hpe.image_decode` (the rules) and
:mod:`nlml_hpe.image_headers` (the header parsers).  Their public names are
importable from here too.

Camera intrinsics (:func:`check_intrinsics`) must describe a plausible
pinhole camera for the image size: focal lengths between
:data:`FOCAL_MIN_REL` and :data:`FOCAL_MAX_REL` times the larger image side
(a horizontal field of view of about 1 to 157 degrees), ``fx / fy`` within
:data:`MAX_ASPECT` of 1, skew at most :data:`MAX_SKEW_REL` times ``fx``, the
principal point inside the image.

Frame names (:func:`frame_name_problem`): what tf2 accepts and what can be
read in a log, ASCII letters, digits and ``_ - . /``, no leading or trailing
slash, no empty, ``.`` or ``..`` segments, at most :data:`MAX_FRAME_NAME`
characters.

File names in text output (:func:`printable`): control characters (a newline
in a file name) are escaped, so one input is one line.
"""

import math

import numpy as np

from .image_decode import (  # noqa: F401 - the policy's public names, importable from here
    FILE_BUDGET,
    MAX_FILE_BYTES,
    MAX_JPEG_SCANS,
    MAX_SIDE,
    STREAM_BUDGET,
    DecodeBudget,
    Decoded,
    DecodePlan,
    check_encoded,
    decode,
    decode_image,
    file_kind,
    plan_decode,
    read_image,
    read_image_file,
    scaled_camera_matrix,
)
from .image_headers import ImageConversionError, ImageHeader, read_header  # noqa: F401

#: Focal lengths must lie in [FOCAL_MIN_REL, FOCAL_MAX_REL] x max(width, height) ...
FOCAL_MIN_REL = 0.1
FOCAL_MAX_REL = 100.0
#: ... fx / fy in [1 / MAX_ASPECT, MAX_ASPECT], |skew| <= MAX_SKEW_REL * fx.
MAX_ASPECT = 4.0
MAX_SKEW_REL = 0.1
#: Longest accepted frame name (characters).
MAX_FRAME_NAME = 256

#: Formats whose size is checked before decoding.
FORMATS = ('jpeg', 'png', 'bmp', 'pnm', 'webp', 'tiff')


# ------------------------------------------------------------------------------ cameras

def check_intrinsics(k, width, height, max_side=MAX_SIDE):
    """Return ``k`` (exactly 9 numbers, row-major) as a 3x3 float64 matrix of a plausible camera.

    Raises :class:`ImageConversionError` with the reason: not 9 finite numbers,
    an image size of zero or above ``max_side``, focal lengths outside
    [:data:`FOCAL_MIN_REL`, :data:`FOCAL_MAX_REL`] x ``max(width, height)``,
    ``fx / fy`` beyond :data:`MAX_ASPECT`, ``|skew| >`` :data:`MAX_SKEW_REL` ``* fx``,
    the principal point outside the image, or a last row other than ``0 0 1``.
    """
    try:
        arr = np.asarray(k, dtype=float).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ImageConversionError(f'K is not a list of numbers: {exc}') from None
    if arr.size != 9:
        raise ImageConversionError(f'K must have exactly 9 elements, got {arr.size}')
    K = arr.reshape(3, 3)
    if not np.all(np.isfinite(K)):
        raise ImageConversionError('K contains NaN or inf')
    width, height = int(width), int(height)
    if width <= 0 or height <= 0:
        raise ImageConversionError(f'image size is {width}x{height}')
    if max(width, height) > max_side:
        raise ImageConversionError(f'image size {width}x{height} exceeds the maximum side '
                                   f'of {max_side} px')
    fx, fy, skew, cx, cy = K[0, 0], K[1, 1], K[0, 1], K[0, 2], K[1, 2]
    if fx <= 0 or fy <= 0:
        raise ImageConversionError(f'focal lengths must be positive, got fx={fx:g}, fy={fy:g} '
                                   '(uncalibrated camera?)')
    side = max(width, height)
    lo, hi = FOCAL_MIN_REL * side, FOCAL_MAX_REL * side
    for name, f in (('fx', fx), ('fy', fy)):
        if not lo <= f <= hi:
            fov = math.degrees(2 * math.atan(side / (2 * f)))
            raise ImageConversionError(
                f'{name}={f:g} px is implausible for a {width}x{height} image (field of view '
                f'{fov:.3g} deg); accepted: {lo:g} to {hi:g} px ({FOCAL_MIN_REL:g} to '
                f'{FOCAL_MAX_REL:g} x the larger side)')
    if not 1 / MAX_ASPECT <= fx / fy <= MAX_ASPECT:
        raise ImageConversionError(f'fx / fy = {fx / fy:.3g} (fx={fx:g}, fy={fy:g}): pixels '
                                   f'that far from square are implausible (accepted: '
                                   f'1/{MAX_ASPECT:g} to {MAX_ASPECT:g})')
    if abs(skew) > MAX_SKEW_REL * fx:
        raise ImageConversionError(f'skew {skew:g} exceeds {MAX_SKEW_REL:g} x fx = '
                                   f'{MAX_SKEW_REL * fx:g}')
    if not (0 <= cx <= width and 0 <= cy <= height):
        raise ImageConversionError(f'principal point ({cx:g}, {cy:g}) lies outside the '
                                   f'{width}x{height} image')
    if abs(K[2, 2] - 1.0) > 1e-6 or abs(K[1, 0]) > 1e-9 or abs(K[2, 0]) > 1e-9 \
            or abs(K[2, 1]) > 1e-9:
        raise ImageConversionError(f'K is not an intrinsic matrix: {K.tolist()}')
    return K


# ------------------------------------------------------------------------------ frame names

def _short(name, n=60):
    text = repr(name)
    return text if len(text) <= n else f'{text[:n]}... ({len(name)} characters)'


def frame_name_problem(name):
    """Return why ``name`` is not a usable tf2 frame name, or ``''`` when it is."""
    if not isinstance(name, str) or not name:
        return 'a frame name must be a non-empty string'
    if len(name) > MAX_FRAME_NAME:
        return f'frame name {_short(name)} is longer than {MAX_FRAME_NAME} characters'
    bad = sorted({c for c in name if not (c.isascii() and (c.isalnum() or c in '_-./'))})
    if bad:
        return (f'frame name {_short(name)} contains {"".join(bad)!r}; use ASCII letters, '
                'digits, _ - . /')
    if name.startswith('/'):
        return f'frame name {_short(name)} starts with "/" (tf2 refuses it)'
    if name.endswith('/'):
        return f'frame name {_short(name)} ends with "/"'
    if any(seg in ('', '.', '..') for seg in name.split('/')[:-1]) or \
            name.split('/')[-1] in ('.', '..'):
        return f'frame name {_short(name)} has an empty, "." or ".." segment'
    return ''


def frame_prefix_problem(prefix):
    """Return why ``prefix`` + a face id is not a usable frame name, or ``''``."""
    if not isinstance(prefix, str) or not prefix:
        return 'a frame prefix must be a non-empty string'
    problem = frame_name_problem(prefix + '0')
    return problem.replace(_short(prefix + '0'), f'{_short(prefix)} + id') if problem else ''


# ------------------------------------------------------------------------------ file names

def printable(text):
    r"""Return ``text`` with control and unprintable characters escaped (``\n``, ``\x1b``, ...).

    A file name may hold a newline, an escape sequence or bytes that are not
    UTF-8 (surrogates): the CLI's text lines show them escaped, one input a
    line.  Backslashes are doubled, so the escaped form is unambiguous.
    """
    text = str(text)
    if text.isprintable() and '\\' not in text:
        return text
    return ''.join(_escape(c) for c in text)


def _escape(c):
    if c == '\\':
        return '\\\\'
    return c if c.isprintable() else c.encode('unicode_escape').decode('ascii')
