"""Decode encoded images within a budget: what a decode may cost is known before it starts.

Encoded images (``sensor_msgs/CompressedImage`` data, image files) are
checked from their headers (:mod:`nlml_hpe.image_headers`) before anything is
decoded, and a decode runs only when its cost is bounded by a
:class:`DecodeBudget`:

* **Size**: a declared side above :data:`MAX_SIDE` (the estimator's limit),
  zero, or more than 8 bits per sample is refused.
* **Data against size**: the data must be able to hold the declared image
  (a lying header or a truncated file cannot make the decoder allocate a
  large image from a few bytes): a Huffman JPEG needs one bit per 8x8 block;
  deflate (PNG) expands at most 1032-fold; TIFF (LZW, deflate, PackBits)
  at most :data:`TIFF_MAX_EXPANSION`-fold; BMP and PNM store every pixel; a
  lossless WebP holds at most :data:`WEBP_LOSSLESS_PX_PER_BYTE` pixels a byte
  and a lossy one :data:`WEBP_LOSSY_PX_PER_BYTE` (libwebp writes a flat
  2048x2048 image as 218 bytes lossless, 19,240 pixels a byte, and 560 a
  byte lossy; the format itself could code any size in 30 bytes).
* **Truncation**: a JPEG without an end-of-image marker after its scans, a
  PNG whose chunks stop before IEND, a WebP shorter than its RIFF size, a
  BMP or PNM shorter than its pixels (OpenCV would return a partly grey image
  without a word).
* **Structure**: a progressive JPEG with more than :data:`MAX_JPEG_SCANS`
  scans (libjpeg writes 10, mozjpeg a dozen or two; a "scan bomb" writes
  thousands of empty ones, each a pass over every block); a PNG with more
  chunks than :func:`max_png_chunks` allows; an animated WebP.
* **Budget** (:class:`DecodeBudget`): decoded pixels, estimated decode
  time (:data:`DECODE_MS`: per decoded megapixel, per MB of data and per
  million 8x8 blocks summed over a JPEG's scans, by format), the decoder's
  working memory (decoded pixels; a progressive or multi-scan JPEG also keeps
  128 bytes a block at full resolution, whatever the output scale) and
  encoded bytes.  A JPEG above ``max_pixels`` or ``max_decode_ms`` is decoded
  at 1/2, 1/4 or 1/8 scale when ``reduce`` is set (the DCT does the scaling:
  cheaper than a full decode); any other format above them is refused.
  Nothing is decoded that the plan did not bound: no thread is ever waited
  for or killed.

Every decoder failure (``cv2.error`` included) becomes
:class:`ImageConversionError`, a ``ValueError``; each refusal carries the rule
it broke as ``exc.reason`` (:func:`reason_of`, :data:`REASONS`).  :func:`decode` returns a
:class:`Decoded` image with its ``scale``: pixel ``(u, v)`` of a decoded
image covers source pixels ``[u*s, (u+1)*s)``; :meth:`Decoded.to_source`
maps poses back and :func:`scaled_camera_matrix` gives the intrinsics of the
reduced image.
"""

from contextlib import contextmanager
from dataclasses import dataclass, replace
import os
from pathlib import Path
import stat

import numpy as np

from .image_headers import (
    ImageConversionError,
    ImageHeader,
    jpeg_blocks,
    jpeg_scans,
    parse_header,
    png_chunk_count,
)
from .images import DEFAULT_MAX_SIDE
from .options import DecodeConfig
from .reduced import Decoded, scaled_camera_matrix, source_poses  # noqa: F401 - public here too

#: Largest accepted image side (pixels): the estimator's own limit.
MAX_SIDE = DEFAULT_MAX_SIDE
#: Most scans accepted in a JPEG (libjpeg's progressive script has 10, mozjpeg's a few more).
MAX_JPEG_SCANS = 64
#: Largest expansion of TIFF data (LZW: a 9- to 12-bit code for up to 4096 bytes).
TIFF_MAX_EXPANSION = 4096
#: Most pixels a byte of lossless / lossy WebP may declare (libwebp, flat image: 19,240 / 560).
WEBP_LOSSLESS_PX_PER_BYTE = 32768
WEBP_LOSSY_PX_PER_BYTE = 4096
#: JPEG DCT scale factors OpenCV can decode with (``IMREAD_REDUCED_COLOR_<n>``).
JPEG_SCALES = (1, 2, 4, 8)
_MIB = 2 ** 20

#: Why an encoded image is refused (``exc.reason``): its headers cannot be read or its
#: format is not accepted; its declared size (side, zero, bits); its data cannot hold
#: what it declares (a lying header, truncation); its structure (scans, chunks,
#: segments); the budget (pixels, time, memory, bytes); the decoder failed.
REASONS = ('header', 'size', 'data', 'structure', 'budget', 'decode')


def refusal(text, reason):
    """Return an :class:`ImageConversionError` of ``text`` carrying ``reason``."""
    exc = ImageConversionError(text)
    exc.reason = reason
    return exc


def reason_of(exc):
    """Return the rule an :class:`ImageConversionError` names (``'header'`` when untagged)."""
    return getattr(exc, 'reason', 'header')


@contextmanager
def _tagged(reason):
    """Tag an untagged :class:`ImageConversionError` raised inside with ``reason``."""
    try:
        yield
    except ImageConversionError as exc:
        if not hasattr(exc, 'reason'):
            exc.reason = reason
        raise


#: Estimated decode time by kind of image: CPU milliseconds per decoded megapixel, per MB
#: of data and per million 8x8 blocks decoded (summed over a JPEG's scans).  Measured with
#: noise, smooth and flat images of 3-4 MP on the 2-core development machine under load
#: (docs/hostile_input.md; later runs were within about 30 % of it); an idle or faster CPU
#: takes less.
DECODE_MS = {
    'jpeg': (8.0, 7.0, 10.0),
    'jpeg-progressive': (8.0, 22.0, 10.0),
    'webp-lossy': (3.0, 52.0, 0.0),
    'webp-lossless': (16.0, 0.0, 0.0),
    'png': (16.5, 0.0, 0.0),
    'tiff': (16.5, 0.0, 0.0),
    'bmp': (1.0, 0.0, 0.0),
    'pnm': (2.0, 0.0, 0.0),
}


def decode_ms(kind, pixels, n_bytes, blocks=0):
    """Return the estimated decode time (ms) of ``pixels`` decoded from ``n_bytes`` (DECODE_MS)."""
    per_mp, per_mb, per_mblock = DECODE_MS[kind]
    return (per_mp * pixels + per_mb * n_bytes + per_mblock * blocks) / 1e6


@dataclass(frozen=True)
class DecodeBudget:
    """What one decode may cost; a plan beyond any limit is refused before decoding.

    ``max_pixels``: decoded pixels (after JPEG reduction); ``max_decode_ms``:
    estimated decode time (:func:`decode_ms`); ``max_memory``: the decoder's
    estimated working memory (bytes); ``max_bytes``: encoded bytes, checked
    before anything is parsed; ``reduce``: decode a JPEG above ``max_pixels``
    or ``max_decode_ms`` at 1/2, 1/4 or 1/8 scale (the first that fits)
    instead of refusing it.
    """

    max_pixels: int = 2 ** 22
    max_decode_ms: float = 50.0
    max_memory: int = 48 * _MIB
    max_bytes: int = 16 * _MIB
    reduce: bool = True

    def __post_init__(self):
        for name in ('max_pixels', 'max_decode_ms', 'max_memory', 'max_bytes'):
            if not getattr(self, name) > 0:
                raise ValueError(f'DecodeBudget.{name} must be positive')


#: Camera streams (the node): 4 MP decoded (a 4K JPEG at half size), 50 ms, 48 MiB.
STREAM_BUDGET = DecodeBudget()
#: Image files (the CLI): 4 MP decoded, 1 s, 128 MiB (a 48 MP photo of 19 MB decodes at
#: 1/4 scale in about 0.2 s; a 12 MP progressive JPEG keeps 36 MB of coefficients).
FILE_BUDGET = DecodeBudget(max_decode_ms=1000.0, max_memory=128 * _MIB, max_bytes=64 * _MIB)
#: Largest image file read (bytes): the file budget's.
MAX_FILE_BYTES = FILE_BUDGET.max_bytes


def budget_of(config):
    """Return the :class:`DecodeBudget` of a :class:`~nlml_hpe.options.DecodeConfig`.

    ``DecodeConfig.node_defaults()`` gives :data:`STREAM_BUDGET`,
    ``DecodeConfig()`` :data:`FILE_BUDGET`.
    """
    return DecodeBudget(max_pixels=int(config.max_decode_pixels),
                        max_decode_ms=float(config.max_decode_ms),
                        max_memory=int(round(config.max_decode_memory_mb * _MIB)),
                        max_bytes=int(round(config.max_encoded_mb * _MIB)),
                        reduce=bool(config.decode_reduced))


def config_of(budget):
    """Return the :class:`~nlml_hpe.options.DecodeConfig` of a :class:`DecodeBudget`."""
    return DecodeConfig(max_decode_pixels=budget.max_pixels,
                        max_decode_ms=budget.max_decode_ms,
                        max_decode_memory_mb=budget.max_memory / _MIB,
                        max_encoded_mb=budget.max_bytes / _MIB, decode_reduced=budget.reduce)


@dataclass(frozen=True)
class DecodePlan:
    """A decode that fits the budget.

    ``header``; the JPEG ``scale`` (1, 2, 4 or 8); the estimated ``ms`` and
    working ``memory`` (bytes); a JPEG's ``scans`` and ``blocks`` (8x8
    blocks summed over the scans).
    """

    header: ImageHeader
    scale: int = 1
    ms: float = 0.0
    memory: int = 0
    scans: int = 0
    blocks: int = 0


def max_png_chunks(n_bytes):
    """Most chunks a PNG of ``n_bytes`` may have: 2048 + one per 8 kB (libpng's data chunk)."""
    return 2048 + n_bytes // 8192


def _refuse(fmt, text, reason):
    raise refusal(f'{fmt.upper()} {text}', reason)


def _jpeg_plan(b, header, budget):
    w, h, n = header.width, header.height, len(b)
    if n * 8 < -(-w // 8) * -(-h // 8):
        _refuse('jpeg', f'declares {w}x{h} pixels but has only {n} bytes, fewer than one bit '
                'per 8x8 block: a lying header or truncated data', 'data')
    kind = 'jpeg-progressive' if header.details['progressive'] else 'jpeg'
    fits = [(s, -(-w // s) * -(-h // s)) for s in (JPEG_SCALES if budget.reduce else (1,))]
    at = ' even at 1/8 scale' if budget.reduce else (
        ' at full size (decode it reduced with image_decode.decode)')
    if fits[-1][1] > budget.max_pixels:
        _refuse('jpeg', f'of {w}x{h} pixels is above the budget of {budget.max_pixels} '
                f'pixels{at} (DecodeBudget.max_pixels)', 'budget')
    least = decode_ms(kind, fits[-1][1], n)  # before walking the data: its bytes alone
    if least > budget.max_decode_ms:
        _refuse('jpeg', f'of {n} bytes would take at least {least:.0f} ms to decode: more '
                f'than the budget of {budget.max_decode_ms:g} ms (DecodeBudget.max_decode_ms)',
                'budget')
    with _tagged('structure'):
        scans, work = jpeg_scans(b, header, MAX_JPEG_SCANS)
    if scans > MAX_JPEG_SCANS:
        _refuse('jpeg', f'has more than {MAX_JPEG_SCANS} scans (real encoders write about '
                '10): refused before decoding (a scan bomb)', 'structure')
    fits = [(s, px, decode_ms(kind, px, n, work)) for s, px in fits]
    scale, pixels, ms = next(((s, px, ms) for s, px, ms in fits
                              if px <= budget.max_pixels and ms <= budget.max_decode_ms),
                             (0, fits[-1][1], fits[-1][2]))
    if scale == 0:
        _refuse('jpeg', f'of {w}x{h} pixels in {n} bytes and {scans} scans would take about '
                f'{ms:.0f} ms to decode{at}: more than the budget of '
                f'{budget.max_decode_ms:g} ms (DecodeBudget.max_decode_ms)', 'budget')
    memory = pixels * 3
    if header.details['progressive'] or scans > 1:  # every coefficient is kept
        memory += 128 * sum(jpeg_blocks(header)[0].values())
    return DecodePlan(header, scale, ms, memory, scans, work)


def _data_rules(b, header):
    """Apply the data-size and truncation rules of the formats other than JPEG."""
    fmt, w, h, n, d = header.format, header.width, header.height, len(b), header.details
    if fmt == 'png':
        raw = h * (1 + -(-w * d['channels'] * header.bits // 8))
        if raw > 1032 * n + 4096:
            _refuse(fmt, f'declares {w}x{h} pixels ({raw} bytes) but has only {n} bytes; '
                    'deflate expands at most 1032-fold: a lying header or truncated data', 'data')
        with _tagged('structure'):
            chunks = png_chunk_count(b, max_png_chunks(n))
        if chunks < 0:
            _refuse(fmt, f'truncated ({n} bytes): its chunks stop before IEND', 'data')
        if chunks > max_png_chunks(n):
            _refuse(fmt, f'of {n} bytes has more than {max_png_chunks(n)} chunks: refused',
                    'structure')
    elif fmt == 'bmp':
        if d['compression'] in (0, 3):  # uncompressed, bit fields
            need = d['offset'] + ((w * d['bpp'] + 31) // 32) * 4 * h
        else:  # RLE: at most 255 pixels per 2 bytes
            need = w * h // 128
        if n < need:
            _refuse(fmt, f'truncated: {w}x{h} needs {need} bytes, got {n}', 'data')
    elif fmt == 'pnm':
        kind, samples = d['kind'], w * h * (3 if d['kind'] in (3, 6) else 1)
        if kind == 4:
            need = d['start'] + -(-w // 8) * h
        elif kind in (5, 6):
            need = d['start'] + samples * (1 if d['maxval'] < 256 else 2)
        else:  # ASCII: at least one character per sample
            need = d['start'] + samples
        if n < need:
            _refuse(fmt, f'truncated: {w}x{h} needs {need} bytes, got {n}', 'data')
    elif fmt == 'webp':
        if n < d['riff_size']:
            _refuse(fmt, f'truncated: RIFF size {d["riff_size"]} bytes, got {n}', 'data')
        ratio = WEBP_LOSSLESS_PX_PER_BYTE if d['kind'] == 'VP8L' else WEBP_LOSSY_PX_PER_BYTE
        if w * h > ratio * n:
            _refuse(fmt, f'declares {w}x{h} pixels in {n} bytes, more than {ratio} pixels a '
                    'byte (no encoder writes an image that flat): refused before decoding', 'data')
    elif fmt == 'tiff':
        raw = w * h * d['samples'] * max(header.bits, 1) // 8
        if raw > TIFF_MAX_EXPANSION * n + 4096:
            _refuse(fmt, f'declares {w}x{h} pixels ({raw} bytes) in {n} bytes: more than any '
                    'TIFF compression expands: a lying header or truncated data', 'data')


def _kind(header):
    if header.format == 'webp':
        return 'webp-lossless' if header.details['kind'] == 'VP8L' else 'webp-lossy'
    return header.format


def _memory(header):
    """Estimated decoder memory of a format other than JPEG (bytes)."""
    px, d = header.width * header.height, header.details
    if header.format == 'webp':  # lossless: libwebp keeps a 4-byte ARGB plane; alpha: BGRA
        return px * (3 + 4 * (d['kind'] == 'VP8L') + 4 * d['alpha'])
    if header.format == 'tiff':  # a strip or tile buffer up to the raw image
        return px * (3 + d['samples'])
    return px * 3


def plan_decode(data, max_side=MAX_SIDE, budget=FILE_BUDGET):
    """Check encoded image bytes against the policy and ``budget``; return a :class:`DecodePlan`.

    Raises :class:`ImageConversionError` naming the rule (see the module
    docstring).  Nothing is decoded: the work is reading headers, one pass of
    a regular expression over a JPEG's data (about half a millisecond a MB)
    and at most :func:`max_png_chunks` steps over a PNG's chunks.
    """
    b = memoryview(data).cast('B') if not isinstance(data, memoryview) else data.cast('B')
    n = len(b)
    if n > budget.max_bytes:
        raise refusal(f'image of {n} bytes: more than the budget of {budget.max_bytes} bytes '
                      '(DecodeBudget.max_bytes)', 'budget')
    with _tagged('header'):
        header = parse_header(b)
    fmt, w, h = header.format.upper(), header.width, header.height
    if w <= 0 or h <= 0:
        raise refusal(f'{fmt} declares a {w}x{h} image', 'size')
    if max(w, h) > max_side:
        raise refusal(f'{fmt} declares {w}x{h} pixels: more than the maximum side of '
                      f'{max_side} px (refused before decoding)', 'size')
    if header.bits > 8:
        raise refusal(f'{header.bits}-bit {fmt}: only 8-bit images are accepted (convert it '
                      'to 8 bits first)', 'size')
    if header.format == 'jpeg':
        plan = _jpeg_plan(b, header, budget)
    else:
        _data_rules(b, header)
        if w * h > budget.max_pixels:
            raise refusal(
                f'{fmt} of {w}x{h} pixels is above the budget of {budget.max_pixels} pixels '
                '(DecodeBudget.max_pixels; only JPEGs can be decoded reduced)', 'budget')
        ms = decode_ms(_kind(header), w * h, n)
        if ms > budget.max_decode_ms:
            raise refusal(
                f'{fmt} of {w}x{h} pixels in {n} bytes would take about {ms:.0f} ms to decode: '
                f'more than the budget of {budget.max_decode_ms:g} ms '
                '(DecodeBudget.max_decode_ms; only JPEGs can be decoded reduced)', 'budget')
        plan = DecodePlan(header, 1, ms, _memory(header))
    if plan.memory > budget.max_memory:
        raise refusal(
            f'{fmt} of {w}x{h} pixels needs about {plan.memory / _MIB:.0f} MiB to decode: more '
            f'than the budget of {budget.max_memory / _MIB:.0f} MiB (DecodeBudget.max_memory)',
            'budget')
    return plan


def check_encoded(data, max_side=MAX_SIDE, budget=None):
    """Check encoded image bytes against the policy; return their :class:`ImageHeader`.

    :func:`plan_decode` with ``budget`` (default: :data:`FILE_BUDGET` at full
    size only, as :func:`decode_image` decodes).
    """
    budget = replace(FILE_BUDGET, reduce=False) if budget is None else budget
    return plan_decode(data, max_side, budget).header


def decode(data, max_side=MAX_SIDE, budget=FILE_BUDGET, plan=None):
    """Decode encoded image bytes within ``budget``; return a :class:`Decoded` image.

    :func:`plan_decode` first (``plan``: the plan of these very bytes, made
    before); then ``cv2.imdecode`` (EXIF orientation applied), at the plan's
    JPEG scale.  Any decoder error, and a decoded size other than the planned
    one, raise :class:`ImageConversionError` (``reason`` ``'decode'``).
    """
    import cv2

    if isinstance(data, np.ndarray):
        buf = np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)
    else:
        buf = np.frombuffer(data, dtype=np.uint8) if len(data) else np.zeros(0, np.uint8)
    if buf.size == 0:
        raise refusal('empty image data', 'header')
    if plan is None:
        plan = plan_decode(memoryview(buf), max_side, budget)
    header, s = plan.header, plan.scale
    flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2,
             4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}[s]
    fmt = header.format.upper()
    try:
        img = cv2.imdecode(buf, flags)
    except cv2.error as exc:
        raise refusal(f'cannot decode {fmt} ({buf.size} bytes): {str(exc).strip()[-200:]}',
                      'decode') from None
    if img is None or img.size == 0:
        raise refusal(f'cannot decode {fmt} ({buf.size} bytes): corrupt data', 'decode')
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise refusal(f'decoder returned {img.dtype} {img.shape}', 'decode')
    h, w = img.shape[:2]
    planned = (-(-header.width // s), -(-header.height // s))
    if (w, h) not in (planned, planned[::-1]):
        raise refusal(f'{fmt} declares {header.width}x{header.height} but decodes to {w}x{h}'
                      + (f' at 1/{s} scale' if s > 1 else ''), 'decode')
    source = ((header.width, header.height) if (w, h) == planned else
              (header.height, header.width))
    return Decoded(cv2.cvtColor(img, cv2.COLOR_BGR2RGB, dst=img), s, *source, header.format)


def decode_image(data, max_side=MAX_SIDE, budget=FILE_BUDGET):
    """Decode encoded image bytes to a contiguous ``(H, W, 3)`` uint8 RGB array at full size.

    :func:`decode` without reduction: what is above ``budget.max_pixels`` is
    refused.
    """
    return decode(data, max_side, replace(budget, reduce=False)).rgb


def _read_file(path, max_bytes):
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
            return f.read(max_bytes + 1)
    except OSError as exc:
        raise ImageConversionError(f'cannot read {path}: {exc.strerror or exc}') from None
    finally:
        os.close(fd)


def read_image(path, max_side=MAX_SIDE, budget=FILE_BUDGET):
    """Read and decode an image file within ``budget``; return a :class:`Decoded` image.

    Refuses what is not a regular file (FIFOs, devices, sockets, directories)
    without blocking on it, and files larger than ``budget.max_bytes`` before
    reading them.  Raises :class:`ImageConversionError` naming the problem.
    """
    return decode(_read_file(path, budget.max_bytes), max_side, budget)


def read_image_file(path, max_side=MAX_SIDE, max_bytes=MAX_FILE_BYTES, budget=FILE_BUDGET):
    """Read an image file as a full-size ``(H, W, 3)`` uint8 RGB array (:func:`read_image`).

    Without reduction: an image above ``budget.max_pixels`` is refused.
    """
    data = _read_file(path, min(max_bytes, budget.max_bytes))
    return decode(data, max_side, replace(budget, reduce=False)).rgb


def file_kind(mode):
    """Return a word for the type of a file mode (``'directory'``, ``'FIFO'``, ...)."""
    for test, word in ((stat.S_ISDIR, 'directory'), (stat.S_ISFIFO, 'FIFO'),
                       (stat.S_ISCHR, 'character device'), (stat.S_ISBLK, 'block device'),
                       (stat.S_ISSOCK, 'socket'), (stat.S_ISREG, 'regular file')):
        if test(mode):
            return word
    return 'special file'
