"""One input policy for the node and the CLI: encoded images, camera intrinsics, frame names.

Encoded images (``sensor_msgs/CompressedImage`` data, image files) are checked
*before* decoding, from their headers (a small parser of JPEG SOF markers, PNG
IHDR, BMP, PNM, WebP and TIFF headers, robust to garbage):

* The declared size must be at most :data:`MAX_SIDE` pixels on a side (the
  estimator's own limit); a 631-byte JPEG declaring 32768x32768 is refused in
  microseconds instead of allocating 3-6 GB.
* The data must be able to hold the declared image: a Huffman-coded JPEG needs
  at least one bit per 8x8 block (every block's DC coefficient has a code of at
  least one bit), deflate expands at most 1032-fold, uncompressed BMP and PNM
  need every pixel.  So a lying header (or a truncated file) cannot make the
  decoder allocate a large image from a few bytes.
* Truncated data is refused: a JPEG without an end-of-image marker after its
  scan data, a PNG whose chunks stop before IEND, a WebP shorter than its RIFF
  size, a BMP or PNM shorter than its pixels (OpenCV would otherwise return a
  partly grey image without a word).
* More than 8 bits per sample is refused (a linear rescale of 16-bit data is a
  guess: a 12-bit camera in a 16-bit container would come out 16 times too
  dark), as the node refuses 16-bit raw encodings.
* Formats other than these six are refused (their size cannot be checked
  before decoding); so are arithmetic-coded, lossless and hierarchical JPEGs.

Every decoder failure (``cv2.error`` included) becomes
:class:`ImageConversionError`, a ``ValueError``.

Camera intrinsics (:func:`check_intrinsics`) must describe a plausible
pinhole camera for the image size: focal lengths between
:data:`FOCAL_MIN_REL` and :data:`FOCAL_MAX_REL` times the larger image side
(a horizontal field of view of about 1 to 157 degrees), ``fx / fy`` within
:data:`MAX_ASPECT` of 1, skew at most :data:`MAX_SKEW_REL` times ``fx``, the
principal point inside the image.

Frame names (:func:`frame_name_problem`): what tf2 accepts and what can be
read in a log, ASCII letters, digits and ``_ - . /``, no leading slash, no
empty, ``.`` or ``..`` segments, at most :data:`MAX_FRAME_NAME` characters.
"""

import math
import os
from pathlib import Path
import stat

import numpy as np

from .images import DEFAULT_MAX_SIDE

#: Largest accepted image side (pixels): the estimator's own limit.
MAX_SIDE = DEFAULT_MAX_SIDE
#: Largest image file the CLI reads (bytes): more than any 8192x8192 image needs.
MAX_FILE_BYTES = 512 * 2 ** 20
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


class ImageConversionError(ValueError):
    """An image or CameraInfo message cannot be used."""


def _u16be(b, i):
    return (b[i] << 8) | b[i + 1]


def _u16le(b, i):
    return b[i] | (b[i + 1] << 8)


def _u32be(b, i):
    return (b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]


def _u32le(b, i):
    return b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)


class ImageHeader:
    """What an encoded image declares: ``format``, ``width``, ``height``, ``bits``."""

    __slots__ = ('format', 'width', 'height', 'bits')

    def __init__(self, fmt, width, height, bits=8):
        self.format, self.width, self.height, self.bits = fmt, int(width), int(height), bits

    def __repr__(self):
        return f'ImageHeader({self.format}, {self.width}x{self.height}, {self.bits} bit)'


def _need(b, n, what):
    if len(b) < n:
        raise ImageConversionError(f'truncated {what} header ({len(b)} bytes)')


#: JPEG start-of-frame markers accepted: baseline, extended and progressive (Huffman).
_SOF_OK = {0xC0: 'baseline', 0xC1: 'extended sequential', 0xC2: 'progressive'}
_SOF_REFUSED = {0xC3: 'lossless', 0xC5: 'hierarchical', 0xC6: 'hierarchical',
                0xC7: 'hierarchical', 0xC9: 'arithmetic-coded', 0xCA: 'arithmetic-coded',
                0xCB: 'arithmetic-coded', 0xCD: 'arithmetic-coded', 0xCE: 'arithmetic-coded',
                0xCF: 'arithmetic-coded'}


def _jpeg(b):
    n = len(b)
    pos, sof, sos = 2, None, None
    while pos < n:
        if b[pos] != 0xFF:
            raise ImageConversionError(f'corrupt JPEG: no marker at byte {pos}')
        while pos < n and b[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            break
        marker = b[pos]
        pos += 1
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # standalone markers
            continue
        if marker == 0xD9:
            raise ImageConversionError('corrupt JPEG: end of image before any scan')
        if pos + 2 > n:
            break
        length = _u16be(b, pos)
        if length < 2:
            raise ImageConversionError(f'corrupt JPEG: segment length {length} at byte {pos}')
        if marker in _SOF_REFUSED:
            raise ImageConversionError(f'{_SOF_REFUSED[marker]} JPEGs are not accepted '
                                       '(only baseline and progressive Huffman JPEGs)')
        if marker in _SOF_OK:
            if sof is not None:
                raise ImageConversionError('corrupt JPEG: more than one frame header (SOF)')
            if length < 8 or pos + 7 > n:
                raise ImageConversionError('corrupt JPEG: short frame header (SOF)')
            sof = (b[pos + 2], _u16be(b, pos + 3), _u16be(b, pos + 5))
        if marker == 0xDA:
            sos = pos + length
            break
        pos += length
    if sof is None:
        raise ImageConversionError('truncated or corrupt JPEG: no frame header (SOF) found')
    precision, height, width = sof
    if precision != 8:
        raise ImageConversionError(f'{precision}-bit JPEG: only 8-bit images are accepted')
    if sos is None:
        raise ImageConversionError('truncated JPEG: no scan data')
    return ImageHeader('jpeg', width, height), sos


def _png(b):
    _need(b, 33, 'PNG')
    if _u32be(b, 8) != 13 or bytes(b[12:16]) != b'IHDR':
        raise ImageConversionError('corrupt PNG: the first chunk is not IHDR')
    width, height, bits, colour = _u32be(b, 16), _u32be(b, 20), b[24], b[25]
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour)
    if channels is None or bits not in (1, 2, 4, 8, 16):
        raise ImageConversionError(f'corrupt PNG: colour type {colour}, bit depth {bits}')
    return ImageHeader('png', width, height, bits), channels


def _png_complete(b):
    """Return True when the chunks run from IHDR to IEND within the data."""
    pos, n = 8, len(b)
    while pos + 8 <= n:
        length = _u32be(b, pos)
        kind = bytes(b[pos + 4:pos + 8])
        pos += 12 + length
        if kind == b'IEND':
            return pos <= n
    return False


def _bmp(b):
    _need(b, 30, 'BMP')
    info = _u32le(b, 14)
    if info == 12:  # BITMAPCOREHEADER
        width, height, bpp, comp = _u16le(b, 18), _u16le(b, 20), _u16le(b, 24), 0
    elif info >= 40:
        _need(b, 34, 'BMP')
        width, height = _u32le(b, 18), _u32le(b, 22)
        if width >= 2 ** 31:
            width -= 2 ** 32
        if height >= 2 ** 31:
            height = 2 ** 32 - height  # negative: rows stored top-down
        bpp, comp = _u16le(b, 28), _u32le(b, 30)
    else:
        raise ImageConversionError(f'corrupt BMP: info header of {info} bytes')
    if bpp not in (1, 4, 8, 16, 24, 32):
        raise ImageConversionError(f'BMP with {bpp} bits per pixel is not accepted')
    return ImageHeader('bmp', width, height), (bpp, comp, _u32le(b, 10))


def _pnm(b):
    kind = b[1] - 0x30
    tokens, pos, n = [], 2, min(len(b), 4096)
    want = 2 if kind in (1, 4) else 3
    while len(tokens) < want:
        while pos < n and (b[pos] in b' \t\r\n' or b[pos] == 0x23):
            if b[pos] == 0x23:  # comment to the end of the line
                while pos < n and b[pos] not in b'\r\n':
                    pos += 1
            else:
                pos += 1
        start = pos
        while pos < n and 0x30 <= b[pos] <= 0x39:
            pos += 1
        if pos == start or pos - start > 9:
            raise ImageConversionError('corrupt PNM header')
        tokens.append(int(bytes(b[start:pos])))
    width, height = tokens[:2]
    maxval = tokens[2] if want == 3 else 1
    if not 1 <= maxval <= 65535:
        raise ImageConversionError(f'corrupt PNM: maxval {maxval}')
    bits = 8 if maxval <= 255 else 16
    return ImageHeader('pnm', width, height, bits), (kind, pos + 1, maxval)


def _webp(b):
    _need(b, 30, 'WebP')
    kind = bytes(b[12:16])
    if kind == b'VP8X':
        width = 1 + (b[24] | (b[25] << 8) | (b[26] << 16))
        height = 1 + (b[27] | (b[28] << 8) | (b[29] << 16))
    elif kind == b'VP8L':
        if b[20] != 0x2F:
            raise ImageConversionError('corrupt WebP (lossless signature)')
        bits = _u32le(b, 21)
        width, height = 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    elif kind == b'VP8 ':
        if bytes(b[23:26]) != b'\x9d\x01\x2a':
            raise ImageConversionError('corrupt WebP (lossy start code)')
        width, height = _u16le(b, 26) & 0x3FFF, _u16le(b, 28) & 0x3FFF
    else:
        raise ImageConversionError(f'corrupt WebP: unknown chunk {kind!r}')
    return ImageHeader('webp', width, height), _u32le(b, 4) + 8


def _tiff(b):
    _need(b, 8, 'TIFF')
    le = bytes(b[:2]) == b'II'
    u16 = _u16le if le else _u16be
    u32 = _u32le if le else _u32be
    if u16(b, 2) != 42:
        raise ImageConversionError('BigTIFF and unknown TIFF variants are not accepted')
    ifd = u32(b, 4)
    _need(b, ifd + 2, 'TIFF')
    count = u16(b, ifd)
    _need(b, ifd + 2 + 12 * count, 'TIFF')
    tags = {}
    for i in range(count):
        e = ifd + 2 + 12 * i
        tag, typ, cnt = u16(b, e), u16(b, e + 2), u32(b, e + 4)
        if tag in (256, 257, 258, 277):
            if typ == 3:
                if cnt <= 2:
                    val = u16(b, e + 8)
                else:  # several SHORTs stored elsewhere: read the first
                    off = u32(b, e + 8)
                    _need(b, off + 2, 'TIFF')
                    val = u16(b, off)
            elif typ == 4 and cnt == 1:
                val = u32(b, e + 8)
            else:
                raise ImageConversionError(f'corrupt TIFF: tag {tag} of type {typ}')
            tags[tag] = val
    if 256 not in tags or 257 not in tags:
        raise ImageConversionError('corrupt TIFF: no image width or length')
    return ImageHeader('tiff', tags[256], tags[257], tags.get(258, 1)), None


def read_header(data):
    """Return the :class:`ImageHeader` of encoded image bytes, or raise ImageConversionError.

    Only parses; see :func:`check_encoded` for the policy.
    """
    return _parse(memoryview(bytes(data)))[1]


def _parse(b):
    b = b.cast('B') if isinstance(b, memoryview) else b
    if len(b) < 4:
        raise ImageConversionError(f'no image: {len(b)} bytes')
    head = bytes(b[:4])
    try:
        if head[:3] == b'\xff\xd8\xff':
            return ('jpeg',) + _jpeg(b)
        if bytes(b[:8]) == b'\x89PNG\r\n\x1a\n':
            return ('png',) + _png(b)
        if head[:2] == b'BM':
            return ('bmp',) + _bmp(b)
        if head[0] == 0x50 and 0x31 <= head[1] <= 0x36:
            return ('pnm',) + _pnm(b)
        if head == b'RIFF' and bytes(b[8:12]) == b'WEBP':
            return ('webp',) + _webp(b)
        if head in (b'II*\x00', b'MM\x00*', b'II+\x00', b'MM\x00+'):
            return ('tiff',) + _tiff(b)
    except IndexError:
        raise ImageConversionError('truncated image header') from None
    raise ImageConversionError(
        f'unknown or unsupported image format (first bytes {head.hex()}); accepted: '
        'JPEG, PNG, BMP, PNM, WebP, TIFF')


def check_encoded(data, max_side=MAX_SIDE):
    """Check encoded image bytes against the policy; return their :class:`ImageHeader`.

    Raises :class:`ImageConversionError` for unknown formats, a declared size of
    zero or above ``max_side``, more than 8 bits per sample, data too short for
    the declared size, and truncated files (see the module docstring).  Costs
    microseconds: nothing is decoded.
    """
    b = memoryview(data).cast('B') if not isinstance(data, memoryview) else data.cast('B')
    fmt, header, extra = _parse(b)
    w, h, n = header.width, header.height, len(b)
    if w <= 0 or h <= 0:
        raise ImageConversionError(f'{fmt.upper()} declares a {w}x{h} image')
    if max(w, h) > max_side:
        raise ImageConversionError(f'{fmt.upper()} declares {w}x{h} pixels: more than the '
                                   f'maximum side of {max_side} px (refused before decoding)')
    if header.bits > 8:
        raise ImageConversionError(f'{header.bits}-bit {fmt.upper()}: only 8-bit images are '
                                   'accepted (convert it to 8 bits first)')
    if fmt == 'jpeg':
        blocks = -(-w // 8) * -(-h // 8)
        if n * 8 < blocks:
            raise ImageConversionError(
                f'JPEG declares {w}x{h} pixels but has only {n} bytes, fewer than one bit '
                'per 8x8 block: a lying header or truncated data')
        if bytes(b[extra:]).find(b'\xff\xd9') < 0:
            raise ImageConversionError(f'truncated JPEG ({n} bytes): no end-of-image marker')
    elif fmt == 'png':
        raw = h * (1 + -(-w * extra * header.bits // 8))
        if raw > 1032 * n + 4096:
            raise ImageConversionError(
                f'PNG declares {w}x{h} pixels ({raw} bytes) but has only {n} bytes; deflate '
                'expands at most 1032-fold: a lying header or truncated data')
        if not _png_complete(b):
            raise ImageConversionError(f'truncated PNG ({n} bytes): its chunks stop before IEND')
    elif fmt == 'bmp':
        bpp, comp, offset = extra
        if comp in (0, 3):  # uncompressed, bit fields
            need = offset + ((w * bpp + 31) // 32) * 4 * h
        else:  # RLE: at most 255 pixels per 2 bytes
            need = w * h // 128
        if n < need:
            raise ImageConversionError(f'truncated BMP: {w}x{h} needs {need} bytes, got {n}')
    elif fmt == 'pnm':
        kind, start, maxval = extra
        samples = w * h * (3 if kind in (3, 6) else 1)
        if kind == 4:
            need = start + -(-w // 8) * h
        elif kind in (5, 6):
            need = start + samples * (1 if maxval < 256 else 2)
        else:  # ASCII: at least one character per sample
            need = start + samples
        if n < need:
            raise ImageConversionError(f'truncated PNM: {w}x{h} needs {need} bytes, got {n}')
    elif fmt == 'webp' and n < extra:
        raise ImageConversionError(f'truncated WebP: RIFF size {extra} bytes, got {n}')
    return header


def decode_image(data, max_side=MAX_SIDE):
    """Decode encoded image bytes to a contiguous ``(H, W, 3)`` uint8 RGB array.

    :func:`check_encoded` first; then ``cv2.imdecode`` (EXIF orientation
    applied); any decoder error, and a decoded size that differs from the
    declared one, raise :class:`ImageConversionError`.
    """
    import cv2

    if isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)
        buf = data
    else:
        buf = np.frombuffer(data, dtype=np.uint8) if len(data) else np.zeros(0, np.uint8)
    if buf.size == 0:
        raise ImageConversionError('empty image data')
    header = check_encoded(memoryview(buf), max_side)
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageConversionError(f'cannot decode {header.format.upper()} '
                                   f'({buf.size} bytes): {str(exc).strip()[-200:]}') from None
    if img is None or img.size == 0:
        raise ImageConversionError(f'cannot decode {header.format.upper()} ({buf.size} bytes): '
                                   'corrupt data')
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ImageConversionError(f'decoder returned {img.dtype} {img.shape}')
    h, w = img.shape[:2]
    if (w, h) not in ((header.width, header.height), (header.height, header.width)):
        raise ImageConversionError(f'{header.format.upper()} declares {header.width}x'
                                   f'{header.height} but decodes to {w}x{h}')
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB, dst=img)


def read_image_file(path, max_side=MAX_SIDE, max_bytes=MAX_FILE_BYTES):
    """Read and decode an image file with :func:`decode_image`.

    Refuses what is not a regular file (FIFOs, devices, sockets, directories)
    without blocking on it, and files larger than ``max_bytes``.  Raises
    :class:`ImageConversionError` (``ValueError``) naming the problem.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, 'O_NONBLOCK', 0))
    except FileNotFoundError:
        kind = 'broken symbolic link' if path.is_symlink() else 'no such file'
        raise ImageConversionError(f'{kind}: {path}') from None
    except OSError as exc:
        raise ImageConversionError(f'cannot open {path}: {exc.strerror}') from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ImageConversionError(f'{path} is not a regular file ({file_kind(st.st_mode)})')
        if st.st_size > max_bytes:
            raise ImageConversionError(f'{path} is {st.st_size} bytes, more than the '
                                       f'{max_bytes} an image may have')
        with os.fdopen(fd, 'rb', closefd=False) as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise ImageConversionError(f'cannot read {path}: {exc.strerror or exc}') from None
    finally:
        os.close(fd)
    return decode_image(data, max_side)


def file_kind(mode):
    """Return a word for the type of a file mode (``'directory'``, ``'FIFO'``, ...)."""
    for test, word in ((stat.S_ISDIR, 'directory'), (stat.S_ISFIFO, 'FIFO'),
                       (stat.S_ISCHR, 'character device'), (stat.S_ISBLK, 'block device'),
                       (stat.S_ISSOCK, 'socket'), (stat.S_ISREG, 'regular file')):
        if test(mode):
            return word
    return 'special file'


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
