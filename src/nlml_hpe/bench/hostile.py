"""Hostile image payloads, built in memory: shared by the tests and the node benchmark.

Each generator returns the bytes of one encoded image built to pass simple
header checks while costing a naive decoder seconds and hundreds of MB
(issue 22).  Nothing is read from disk and nothing large is allocated: the
JPEG and WebP bitstreams are written here by hand.

* :func:`jpeg_scan_bomb` -- progressive JPEG, one bit per 8x8 block in its DC
  scan, then thousands of near-empty AC scans (8192x8192, 5000 scans: 0.55 MB).
* :func:`jpeg_flat` -- a grey baseline (or DC-only progressive) JPEG of any
  size within the side limit, 2 (or 1) bits per block: 8192x8192 in 262 kB.
* :func:`webp_flat` -- a lossless WebP of any size in 32 bytes (every pixel
  coded with zero bits).
* :func:`png_many_chunks` -- a 64x64 PNG padded with empty ancillary chunks.
* :func:`png_bomb` -- a genuine PNG of zeros (81 MB of pixels in 80 kB at 9000).
* :func:`jpeg_with_size` -- a small real JPEG whose SOF declares another size.
* :func:`jpeg_undecodable` -- a real JPEG that passes every header rule and fails
  in the decoder.
* :func:`abuse_payloads` -- the payload list of one ``--abuse`` kind of the
  node benchmark (:data:`ABUSE_KINDS`).
"""

import struct
import zlib

#: Payload kinds of :func:`abuse_payloads` (the node benchmark's ``--abuse``).
ABUSE_KINDS = ('bomb', 'scan', 'webp', 'big', 'chunks', 'mixed')


class _Bits:
    """MSB-first bit writer for JPEG entropy-coded data (0xFF bytes are stuffed)."""

    def __init__(self):
        self.out, self.acc, self.n = bytearray(), 0, 0

    def put(self, value, length):
        self.acc = (self.acc << length) | (value & ((1 << length) - 1))
        self.n += length
        while self.n >= 8:
            self.n -= 8
            byte = (self.acc >> self.n) & 0xFF
            self.out.append(byte)
            if byte == 0xFF:
                self.out.append(0)
        self.acc &= (1 << self.n) - 1

    def flush(self):
        if self.n:
            self.put((1 << (8 - self.n)) - 1, 8 - self.n)  # pad with 1-bits
        return bytes(self.out)


def _segment(marker, body):
    return struct.pack('>BBH', 0xFF, marker, len(body) + 2) + body


def _dht(table_class, lengths_symbols):
    """One Huffman table: ``lengths_symbols`` is ``[(code length, symbol), ...]`` in order."""
    counts = [0] * 16
    for length, _ in lengths_symbols:
        counts[length - 1] += 1
    return _segment(0xC4, bytes([table_class << 4]) + bytes(counts)
                    + bytes(s for _, s in lengths_symbols))


def _sos(ss, se, ah_al=0):
    return _segment(0xDA, bytes([1, 1, 0x00, ss, se, ah_al]))


#: The AC table: the 15 end-of-band-run symbols EOB0..EOB14, 4-bit codes 0..14.
_EOB_CODES = [(4, r << 4) for r in range(15)]


def _eob_runs(blocks):
    """Entropy-coded data of one AC scan that skips ``blocks`` blocks with EOB runs."""
    bits = _Bits()
    while blocks > 0:
        run = min(blocks, 32767)
        r = run.bit_length() - 1
        bits.put(r, 4)  # code r: symbol EOBr (run 2**r + r extra bits)
        if r:
            bits.put(run - (1 << r), r)
        blocks -= run
    return bits.flush()


def _grey_jpeg_head(width, height, sof):
    dqt = _segment(0xDB, b'\x00' + bytes([1] * 64))
    frame = _segment(sof, struct.pack('>BHHB', 8, height, width, 1) + b'\x01\x11\x00')
    return b'\xff\xd8' + dqt + frame + _dht(0, [(1, 0)]) + _dht(1, _EOB_CODES)


def jpeg_scan_bomb(side=8192, scans=5000):
    """Progressive grey JPEG: a 1-bit-per-block DC scan, then ``scans - 1`` empty AC scans.

    Passes the one-bit-per-block rule; a decoder that does not count scans
    walks every block once per scan (8192, 5000: 0.55 MB; 20000 scans: 2.1 MB).
    """
    blocks = (-(-side // 8)) ** 2
    ac = _sos(1, 63) + _eob_runs(blocks)
    return (_grey_jpeg_head(side, side, 0xC2) + _sos(0, 0) + _zero_bits(blocks)
            + ac * (scans - 1) + b'\xff\xd9')


def _zero_bits(n):
    """``n`` zero bits (codes '0'), the last byte padded with 1-bits."""
    return bytes(n // 8) + (bytes([(1 << (8 - n % 8)) - 1]) if n % 8 else b'')


def jpeg_flat(width=8192, height=8192, progressive=False, colour=False):
    """Return a grey JPEG of ``width`` x ``height``: 2 bits per 8x8 block (1 if ``progressive``).

    Baseline: every block codes DC difference 0 and an end-of-block (8192^2 in
    262 kB; ``colour``: YCbCr 4:2:0, 1.5 times the blocks, 393 kB).
    ``progressive``: the DC scan alone (131 kB), the AC bands stay zero.
    """
    blocks = -(-width // 8) * -(-height // 8)
    if progressive:
        return (_grey_jpeg_head(width, height, 0xC2) + _sos(0, 0) + _zero_bits(blocks)
                + b'\xff\xd9')
    comps = b'\x01\x22\x00\x02\x11\x00\x03\x11\x00' if colour else b'\x01\x11\x00'
    if colour:
        blocks = 6 * -(-width // 16) * -(-height // 16)
    # Baseline: DC code '0' (difference 0), then AC code '0' (end of block).
    head = (b'\xff\xd8' + _segment(0xDB, b'\x00' + bytes([1] * 64))
            + _segment(0xC0, struct.pack('>BHHB', 8, height, width, len(comps) // 3) + comps)
            + _dht(0, [(1, 0)]) + _dht(1, [(1, 0x00)]))
    sos = _segment(0xDA, bytes([len(comps) // 3]) + b''.join(
        bytes([c, 0]) for c in comps[::3]) + bytes([0, 63, 0]))
    return head + sos + _zero_bits(2 * blocks) + b'\xff\xd9'


class _LsbBits:
    """LSB-first bit writer (WebP lossless)."""

    def __init__(self):
        self.value, self.n = 0, 0

    def put(self, value, length):
        self.value |= (value & ((1 << length) - 1)) << self.n
        self.n += length

    def bytes(self):
        return self.value.to_bytes(-(-self.n // 8), 'little')


def webp_flat(width=8192, height=8192):
    """Return a lossless WebP of ``width`` x ``height`` opaque black pixels in 32 bytes.

    Each of the five prefix codes has a single symbol, so every pixel is coded
    with zero bits: nothing in the data bounds the size.
    """
    bits = _LsbBits()
    bits.put(width - 1, 14)
    bits.put(height - 1, 14)
    bits.put(0, 1)   # alpha is not used
    bits.put(0, 3)   # version 0
    bits.put(0, 1)   # no transform
    bits.put(0, 1)   # no colour cache
    bits.put(0, 1)   # no meta prefix codes
    for symbol in (0, 0, 0, 255, 0):  # green, red, blue, alpha, distance
        bits.put(1, 1)   # simple code
        bits.put(0, 1)   # one symbol
        if symbol < 2:
            bits.put(0, 1)  # symbol in 1 bit
            bits.put(symbol, 1)
        else:
            bits.put(1, 1)  # symbol in 8 bits
            bits.put(symbol, 8)
    body = (b'\x2f' + bits.bytes()).ljust(12, b'\x00')  # OpenCV reads 32 bytes at least
    chunk = b'VP8L' + struct.pack('<I', len(body)) + body
    return b'RIFF' + struct.pack('<I', 4 + len(chunk)) + b'WEBP' + chunk


def _png_chunk(kind, body):
    return struct.pack('>I', len(body)) + kind + body + struct.pack(
        '>I', zlib.crc32(kind + body) & 0xFFFFFFFF)


def _png(width, height, idat, extra=b'', colour=0):
    ihdr = struct.pack('>IIBBBBB', width, height, 8, colour, 0, 0, 0)
    return (b'\x89PNG\r\n\x1a\n' + _png_chunk(b'IHDR', ihdr) + extra
            + _png_chunk(b'IDAT', idat) + _png_chunk(b'IEND', b''))


def png_many_chunks(chunks=400_000, side=64):
    """Return a grey ``side``-square PNG with ``chunks`` empty chunks before its data.

    400,000 chunks: 4.8 MB (each chunk is 12 bytes: length, type, CRC).
    """
    rows = zlib.compress(b''.join(b'\x00' + bytes([128]) * side for _ in range(side)))
    return _png(side, side, rows, _png_chunk(b'zzZz', b'') * chunks)


def png_bomb(side=9000):
    """Return a genuine PNG of ``side``^2 zeros: tens of kB that decode to ``side``^2 bytes."""
    comp = zlib.compressobj(9)
    row = b'\x00' * (side + 1)
    return _png(side, side, b''.join([comp.compress(row) for _ in range(side)] + [comp.flush()]))


def jpeg_with_size(width, height):
    """Return a small real JPEG (grey 8x8) whose frame header declares ``width`` x ``height``."""
    b = bytearray(jpeg_flat(8, 8))
    i = b.find(b'\xff\xc0')
    b[i + 5:i + 9] = struct.pack('>HH', height, width)
    return bytes(b)


def jpeg_undecodable(jpeg):
    """Return ``jpeg`` with its first scan pointing at Huffman tables it does not define.

    Every header rule passes (size, data, scans); the decoder fails: a message
    that costs its decode attempt and gives no frame.
    """
    b = bytearray(jpeg)
    i = b.find(b'\xff\xda')
    for c in range(b[i + 4]):
        b[i + 6 + 2 * c] = 0x33
    return bytes(b)


def abuse_payloads(kind='mixed'):
    """Return the payloads of one abuse ``kind`` (:data:`ABUSE_KINDS`), each a bytes object.

    ``bomb``: headers declaring 32768^2 and 8000^2 (JPEG) and 20000^2 (PNG) on
    8x8 images; ``scan``: the 5000-scan progressive JPEG; ``webp``: the 32-byte
    8192^2 lossless WebP; ``big``: an 8192^2 flat JPEG (within the side limit:
    decoded reduced, or refused); ``chunks``: the 400,000-chunk PNG; ``mixed``:
    one of each.
    """
    makers = {
        'bomb': lambda: [jpeg_with_size(32768, 32768), jpeg_with_size(8000, 8000),
                         _png(20000, 20000, zlib.compress(b'\x00' * 9))],
        'scan': lambda: [jpeg_scan_bomb(8192, 5000)],
        'webp': lambda: [webp_flat(8192, 8192)],
        'big': lambda: [jpeg_flat(8192, 8192)],
        'chunks': lambda: [png_many_chunks(400_000)],
    }
    if kind == 'mixed':
        return [p for k in ('bomb', 'scan', 'webp', 'big', 'chunks') for p in makers[k]()]
    if kind not in makers:
        raise ValueError(f'unknown abuse kind {kind!r}; one of {", ".join(ABUSE_KINDS)}')
    return makers[kind]()


# ------------------------------------------------------------------------------ measuring

#: Cases measured by :func:`main`: name -> payload maker.
CASES = {
    'scan_bomb_5000': lambda: jpeg_scan_bomb(8192, 5000),
    'scan_bomb_20000': lambda: jpeg_scan_bomb(8192, 20000),
    'webp_8192_32B': lambda: webp_flat(8192, 8192),
    'jpeg_flat_8192': lambda: jpeg_flat(8192, 8192),
    'jpeg_flat_8192_progressive': lambda: jpeg_flat(8192, 8192, progressive=True),
    'png_zeros_8192': lambda: png_bomb(8192),
    'png_zeros_2048': lambda: png_bomb(2048),
    'png_400k_chunks': lambda: png_many_chunks(400_000),
    # Legitimate images at the edge of the stream budget: what a frame may cost.
    'edge_jpeg_flat_8192_420': lambda: jpeg_flat(8192, 8192, colour=True),
    'edge_jpeg_noise_4MP': lambda: _noise('.jpg', 2600, 1600, 90),
    'edge_jpeg_noise_4MP_progressive': lambda: _noise('.jpg', 2600, 1600, 90, progressive=True),
    'edge_png_noise_4MB': lambda: _noise('.png', 1200, 1100),
    'edge_webp_noise_2048': lambda: _noise('.webp', 2048, 2048, 90),
}


def _noise(ext, width, height, quality=None, progressive=False):
    """Return an image of uniform colour noise: the most bytes a pixel (the slowest to decode)."""
    import cv2
    import numpy as np

    img = np.random.default_rng(0).integers(0, 256, (height, width, 3), np.uint8)
    params = {'.jpg': [cv2.IMWRITE_JPEG_QUALITY, quality or 95,
                       cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)],
              '.webp': [cv2.IMWRITE_WEBP_QUALITY, quality or 90]}.get(ext, [])
    return cv2.imencode(ext, img, params)[1].tobytes()


def photo_jpeg(width=8000, height=6000, quality=95):
    """Return a photo-like JPEG (the demo face scaled up, with sensor noise): 8000x6000 ~19 MB."""
    from importlib import resources

    import cv2
    import numpy as np

    face = cv2.imread(str(resources.files('nlml_hpe') / 'data' / 'demo' / '000.jpg'))
    img = cv2.resize(face, (width, height), interpolation=cv2.INTER_CUBIC)
    noise = np.random.default_rng(0).normal(0, 6, (height, width, 1)).astype(np.float32)
    img = np.clip(img + noise, 0, 255).astype(np.uint8)
    return cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


_CHILD = """
import sys, time
import cv2, numpy as np
from nlml_hpe.image_decode import {budget} as BUDGET, ImageConversionError, decode, plan_decode


def kib(key):
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key))


cv2.imdecode(cv2.imencode('.jpg', np.zeros((16, 16, 3), np.uint8))[1], cv2.IMREAD_COLOR)
data = open(sys.argv[1], 'rb').read()
with open('/proc/self/clear_refs', 'w') as f:
    f.write('5')  # peak RSS (VmHWM) := current RSS
rss0 = kib('VmRSS:')
t0 = time.perf_counter()
try:
    estimate = f'{{plan_decode(data, budget=BUDGET).ms:.1f}}'
except ImageConversionError:
    estimate = '-'
check = (time.perf_counter() - t0) * 1e3
t0, c0 = time.perf_counter(), time.process_time()
try:
    if {before}:  # what OpenCV alone does (the checks of issue 13 pass these payloads)
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        what = 'OpenCV alone: ' + (f'{{img.shape[1]}}x{{img.shape[0]}}' if img is not None
                                   else 'nothing')
    else:
        out = decode(data, budget=BUDGET)
        what = f'{{out.rgb.shape[1]}}x{{out.rgb.shape[0]}} at 1/{{out.scale}}'
except ImageConversionError as exc:
    what = f'refused: {{str(exc)[:70]}}'
wall, cpu = (time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3
rss = (kib('VmHWM:') - rss0) / 1024
print(f'{{check:.2f}}\\t{{estimate}}\\t{{wall:.1f}}\\t{{cpu:.1f}}\\t{{rss:.1f}}\\t{{what}}')
"""


def main(argv=None):
    """Measure each payload's check and decode in a fresh process; print one row each."""
    import argparse
    import os
    import subprocess
    import sys
    import tempfile

    parser = argparse.ArgumentParser(prog='python -m nlml_hpe.bench.hostile',
                                     description=main.__doc__)
    parser.add_argument('--budget', choices=('stream', 'file'), default='stream')
    parser.add_argument('--photo', action='store_true',
                        help='also an 8000x6000 photo-like JPEG (about 19 MB; builds in seconds)')
    parser.add_argument('--before', action='store_true',
                        help='decode with cv2.imdecode alone (no checks), for comparison')
    parser.add_argument('--cases', nargs='+', choices=sorted(CASES) + ['photo_8000x6000_q95'],
                        help='only these cases')
    args = parser.parse_args(argv)
    cases = dict(CASES, **({'photo_8000x6000_q95': photo_jpeg} if args.photo else {}))
    cases = {k: v for k, v in cases.items() if not args.cases or k in args.cases}
    code = _CHILD.format(budget=f'{args.budget.upper()}_BUDGET', before=args.before)
    print(f"budget: {args.budget}; check = plan_decode (ms); estimate: the plan's decode ms; "
          'decode = plan + cv2.imdecode (wall ms, CPU ms); peak RSS growth (MiB)')
    print('case\tbytes\tcheck_ms\testimate_ms\tdecode_ms\tcpu_ms\trss_mib\tresult')
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in cases.items():
            path = os.path.join(tmp, name)
            with open(path, 'wb') as f:
                f.write(make())
            out = subprocess.run([sys.executable, '-c', code, path], capture_output=True,
                                 text=True, timeout=600)
            row = out.stdout.strip() or f'failed: {out.stderr.strip()[-200:]}'
            print(f'{name}\t{os.path.getsize(path)}\t{row}', flush=True)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
