"""What an encoded image declares, read from its headers without decoding it.

Small parsers of JPEG, PNG, BMP, PNM, WebP and TIFF headers, robust to
garbage: every input either gives an :class:`ImageHeader` or raises
:class:`ImageConversionError` naming the problem, after a bounded amount of
work.  Two walks go beyond the first bytes, both bounded:

* :func:`jpeg_scans` finds a JPEG's scans (``SOS`` markers, which cannot
  occur inside entropy-coded data: a 0xFF byte there is followed by 0x00 or a
  restart marker) with one regular-expression pass in C, and stops after
  ``max_scans`` of them;
* :func:`png_chunk_count` walks a PNG's chunks (12 bytes of framing each)
  and stops after ``max_chunks``.

The policy built on these figures (sizes, data-size bounds, the decode
budget) is :mod:`nlml_hpe.image_decode`.
"""

import re
import struct


class ImageConversionError(ValueError):
    """An image or CameraInfo message cannot be used."""


class ImageHeader:
    """What an encoded image declares: ``format``, ``width``, ``height``, ``bits`` per sample.

    ``details`` holds the format's own fields the policy needs (JPEG: its
    frame ``components`` ``[(id, h, v), ...]``, ``progressive`` and the offset
    ``sos`` of its first scan header; PNG: ``channels``; WebP: the bitstream
    ``kind`` and ``alpha``; TIFF: ``compression`` and ``samples``; ...).
    """

    __slots__ = ('format', 'width', 'height', 'bits', 'details')

    def __init__(self, fmt, width, height, bits=8, **details):
        self.format, self.width, self.height, self.bits = fmt, int(width), int(height), bits
        self.details = details

    def __repr__(self):
        return f'ImageHeader({self.format}, {self.width}x{self.height}, {self.bits} bit)'


def _u16be(b, i):
    return (b[i] << 8) | b[i + 1]


def _u16le(b, i):
    return b[i] | (b[i + 1] << 8)


def _u32be(b, i):
    return (b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]


def _u32le(b, i):
    return b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)


def _need(b, n, what):
    if len(b) < n:
        raise ImageConversionError(f'truncated {what} header ({len(b)} bytes)')


# ------------------------------------------------------------------------------ JPEG

#: JPEG start-of-frame markers accepted: baseline, extended and progressive (Huffman).
_SOF_OK = {0xC0: 'baseline', 0xC1: 'extended sequential', 0xC2: 'progressive'}
_SOF_REFUSED = {0xC3: 'lossless', 0xC5: 'hierarchical', 0xC6: 'hierarchical',
                0xC7: 'hierarchical', 0xC9: 'arithmetic-coded', 0xCA: 'arithmetic-coded',
                0xCB: 'arithmetic-coded', 0xCD: 'arithmetic-coded', 0xCE: 'arithmetic-coded',
                0xCF: 'arithmetic-coded'}
#: Segments before the first scan, at most (real files: a few to a few dozen).
MAX_JPEG_SEGMENTS = 256
#: A scan header or the end of the image, wherever they are after the first scan.
_SOS_OR_EOI = re.compile(rb'\xff[\xda\xd9]')


def _jpeg_frame(b, pos, length):
    """Parse a frame header (SOF) at ``pos``: ``(precision, height, width, components)``."""
    if length < 8 or pos + 8 > len(b):
        raise ImageConversionError('corrupt JPEG: short frame header (SOF)')
    count = b[pos + 7]
    if count == 0 or length < 8 + 3 * count or pos + 8 + 3 * count > len(b):
        raise ImageConversionError(f'corrupt JPEG: frame header with {count} components')
    comps = []
    for i in range(count):
        cid, hv = b[pos + 8 + 3 * i], b[pos + 9 + 3 * i]
        h, v = hv >> 4, hv & 15
        if not (1 <= h <= 4 and 1 <= v <= 4):
            raise ImageConversionError(f'corrupt JPEG: sampling factors {h}x{v}')
        comps.append((cid, h, v))
    return b[pos + 2], _u16be(b, pos + 3), _u16be(b, pos + 5), comps


def _jpeg(b):
    """Walk the segments up to the first scan header; return the :class:`ImageHeader`."""
    n = len(b)
    pos, sof, sos, marker_kind, segments = 2, None, None, None, 0
    while pos < n:
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise ImageConversionError(f'JPEG with more than {MAX_JPEG_SEGMENTS} segments '
                                       'before its first scan: refused (real files have a few)')
        if b[pos] != 0xFF:
            raise ImageConversionError(f'corrupt JPEG: no marker at byte {pos}')
        fill = pos
        while pos < n and b[pos] == 0xFF:  # fill bytes (real files: none or a few)
            pos += 1
            if pos - fill > 64:
                raise ImageConversionError(f'corrupt JPEG: a run of fill bytes at byte {fill}')
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
            sof, marker_kind = _jpeg_frame(b, pos, length), marker
        if marker == 0xDA:
            sos = pos - 2  # the 0xFF of the marker
            break
        pos += length
    if sof is None:
        raise ImageConversionError('truncated or corrupt JPEG: no frame header (SOF) found')
    precision, height, width, comps = sof
    if precision != 8:
        raise ImageConversionError(f'{precision}-bit JPEG: only 8-bit images are accepted')
    if sos is None:
        raise ImageConversionError('truncated JPEG: no scan data')
    return ImageHeader('jpeg', width, height, components=comps, sos=sos,
                       progressive=marker_kind == 0xC2)


def jpeg_blocks(header):
    """Return ``{component id: 8x8 blocks}`` of a JPEG (padded to whole MCUs) and the MCU count.

    The blocks of every component are what a progressive (or multi-scan)
    decoder keeps in memory, 128 bytes each, whatever the output scale.
    """
    comps = header.details['components']
    hmax = max(h for _, h, _ in comps)
    vmax = max(v for _, _, v in comps)
    mcus = -(-header.width // (8 * hmax)) * -(-header.height // (8 * vmax))
    return {cid: mcus * h * v for cid, h, v in comps}, mcus


def jpeg_scans(b, header, max_scans):
    """Count a JPEG's scans and the 8x8 blocks they decode; check its end-of-image marker.

    Returns ``(scans, block_scans)``: ``block_scans`` sums, over the scans, the
    blocks of the components each one codes (a decoder's entropy work).
    Stops counting after ``max_scans`` + 1 scans.  Raises
    :class:`ImageConversionError` when no end-of-image marker follows the
    first scan (a truncated file).
    """
    blocks, _ = jpeg_blocks(header)
    every = sum(blocks.values())
    scans = work = 0
    end = False
    for m in _SOS_OR_EOI.finditer(b, header.details['sos']):
        if b[m.start() + 1] == 0xD9:
            end = True
            break
        scans += 1
        pos = m.start() + 4
        count = b[pos] if pos < len(b) else 0
        ids = [b[pos + 1 + 2 * i] for i in range(count) if pos + 1 + 2 * i < len(b)]
        work += sum(blocks.get(cid, every) for cid in ids) if ids else every
        if scans > max_scans:
            return scans, work
    if not end:
        raise ImageConversionError(f'truncated JPEG ({len(b)} bytes): no end-of-image marker')
    return scans, work


# ------------------------------------------------------------------------------ PNG

_CHUNK = struct.Struct('>I4s')
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def _png(b):
    _need(b, 33, 'PNG')
    if _u32be(b, 8) != 13 or bytes(b[12:16]) != b'IHDR':
        raise ImageConversionError('corrupt PNG: the first chunk is not IHDR')
    width, height, bits, colour = _u32be(b, 16), _u32be(b, 20), b[24], b[25]
    channels = _PNG_CHANNELS.get(colour)
    if channels is None or bits not in (1, 2, 4, 8, 16):
        raise ImageConversionError(f'corrupt PNG: colour type {colour}, bit depth {bits}')
    return ImageHeader('png', width, height, bits, channels=channels)


def png_chunk_count(b, max_chunks):
    """Return the number of a PNG's chunks from IHDR to IEND, or ``-1`` if they stop before IEND.

    Stops after ``max_chunks`` + 1 chunks (and returns that count): about half
    a microsecond a chunk.
    """
    pos, n, count = 8, len(b), 0
    unpack = _CHUNK.unpack_from
    while pos + 8 <= n and count <= max_chunks:
        length, kind = unpack(b, pos)
        pos += 12 + length
        count += 1
        if kind == b'IEND':
            return count if pos <= n else -1
    return count if count > max_chunks else -1


# ------------------------------------------------------------------------------ BMP, PNM

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
    return ImageHeader('bmp', width, height, bpp=bpp, compression=comp, offset=_u32le(b, 10))


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
    return ImageHeader('pnm', width, height, bits, kind=kind, start=pos + 1, maxval=maxval)


# ------------------------------------------------------------------------------ WebP, TIFF

def _webp_bitstream(b, end):
    """Find the image chunk after a VP8X header: ``(kind, offset)``; refuse animations."""
    pos, seen = 30, 0  # the chunks after VP8X's 10-byte payload
    while pos + 8 <= end and seen < 64:
        kind = bytes(b[pos:pos + 4])
        if kind in (b'ANIM', b'ANMF'):
            raise ImageConversionError('animated WebP is not accepted')
        if kind in (b'VP8 ', b'VP8L'):
            return kind, pos
        pos += 8 + _u32le(b, pos + 4) + (_u32le(b, pos + 4) & 1)
        seen += 1
    raise ImageConversionError('corrupt WebP: no image data chunk (VP8 or VP8L)')


def _webp(b):
    _need(b, 30, 'WebP')
    riff = _u32le(b, 4) + 8
    kind, at, alpha = bytes(b[12:16]), 12, False
    if kind == b'VP8X':
        width = 1 + (b[24] | (b[25] << 8) | (b[26] << 16))
        height = 1 + (b[27] | (b[28] << 8) | (b[29] << 16))
        alpha = bool(b[20] & 0x10)
        kind, at = _webp_bitstream(b, min(riff, len(b)))
    elif kind == b'VP8L':
        if b[20] != 0x2F:
            raise ImageConversionError('corrupt WebP (lossless signature)')
        bits = _u32le(b, 21)
        width, height = 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
        alpha = bool((bits >> 28) & 1)
    elif kind == b'VP8 ':
        if bytes(b[23:26]) != b'\x9d\x01\x2a':
            raise ImageConversionError('corrupt WebP (lossy start code)')
        width, height = _u16le(b, 26) & 0x3FFF, _u16le(b, 28) & 0x3FFF
    else:
        raise ImageConversionError(f'corrupt WebP: unknown chunk {kind!r}')
    return ImageHeader('webp', width, height, kind=kind.decode().strip(), alpha=alpha,
                       riff_size=riff, data_at=at)


def _tiff_value(b, e, typ, cnt, u16, u32, tag):
    if typ == 3:
        if cnt <= 2:
            return u16(b, e + 8)
        off = u32(b, e + 8)  # several SHORTs stored elsewhere: read the first
        _need(b, off + 2, 'TIFF')
        return u16(b, off)
    if typ == 4 and cnt == 1:
        return u32(b, e + 8)
    raise ImageConversionError(f'corrupt TIFF: tag {tag} of type {typ}')


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
    if count > 512:  # real files: a few dozen tags
        raise ImageConversionError(f'corrupt TIFF: {count} directory entries')
    _need(b, ifd + 2 + 12 * count, 'TIFF')
    tags = {}
    for i in range(count):
        e = ifd + 2 + 12 * i
        tag, typ, cnt = u16(b, e), u16(b, e + 2), u32(b, e + 4)
        if tag in (256, 257, 258, 259, 277):
            tags[tag] = _tiff_value(b, e, typ, cnt, u16, u32, tag)
    if 256 not in tags or 257 not in tags:
        raise ImageConversionError('corrupt TIFF: no image width or length')
    return ImageHeader('tiff', tags[256], tags[257], tags.get(258, 1),
                       compression=tags.get(259, 1), samples=tags.get(277, 1))


_PARSERS = (
    (lambda h, b: h[:3] == b'\xff\xd8\xff', _jpeg),
    (lambda h, b: bytes(b[:8]) == b'\x89PNG\r\n\x1a\n', _png),
    (lambda h, b: h[:2] == b'BM', _bmp),
    (lambda h, b: h[0] == 0x50 and 0x31 <= h[1] <= 0x36, _pnm),
    (lambda h, b: h == b'RIFF' and bytes(b[8:12]) == b'WEBP', _webp),
    (lambda h, b: h in (b'II*\x00', b'MM\x00*', b'II+\x00', b'MM\x00+'), _tiff),
)


def parse_header(b):
    """Return the :class:`ImageHeader` of encoded bytes ``b`` (a ``memoryview`` of bytes).

    Raises :class:`ImageConversionError` for unknown formats and corrupt or
    truncated headers.
    """
    if len(b) < 4:
        raise ImageConversionError(f'no image: {len(b)} bytes')
    head = bytes(b[:4])
    try:
        for test, parse in _PARSERS:
            if test(head, b):
                return parse(b)
    except IndexError:
        raise ImageConversionError('truncated image header') from None
    raise ImageConversionError(
        f'unknown or unsupported image format (first bytes {head.hex()}); accepted: '
        'JPEG, PNG, BMP, PNM, WebP, TIFF')


def read_header(data):
    """Return the :class:`ImageHeader` of encoded image bytes, or raise ImageConversionError.

    Only parses; :func:`nlml_hpe.image_decode.check_encoded` applies the policy.
    """
    return parse_header(memoryview(bytes(data)))
