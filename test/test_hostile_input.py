"""Hostile and broken input (issue 13): every payload is generated here.

Decompression bombs and lying headers, truncated and 16-bit images, absurd
camera intrinsics, broken model files and hostile frame names, against the
shared input policy, the model loader, the ROS node (real rclpy, in-process)
and the ``nlml-hpe`` CLI.
"""

import json
import os
import resource
import struct
import time
import zlib

import cv2
import numpy as np
import pytest

from nlml_hpe import input_policy as policy
from nlml_hpe.input_policy import (
    ImageConversionError,
    check_encoded,
    check_intrinsics,
    decode_image,
    frame_name_problem,
    frame_prefix_problem,
    read_image_file,
)
from nlml_hpe.model import (
    METADATA_NAME,
    WEIGHTS_NAME,
    ModelFileError,
    expected_shapes,
    load_model,
    save_model,
)

# ----------------------------------------------------------------------------- payloads


def _rgb(h=48, w=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def encode(ext, img=None, params=()):
    """Encode an image (default: random RGB) with OpenCV; return the bytes."""
    img = _rgb() if img is None else img
    ok, buf = cv2.imencode(ext, img, list(params))
    assert ok
    return buf.tobytes()


def jpeg_with_size(width, height, data=None):
    """Return a real small JPEG whose SOF declares ``width`` x ``height`` (the bomb: 32768^2)."""
    b = bytearray(data or encode('.jpg'))
    i = b.find(b'\xff\xc0')
    b[i + 5:i + 7] = struct.pack('>H', height)
    b[i + 7:i + 9] = struct.pack('>H', width)
    return bytes(b)


def _chunk(kind, body):
    return struct.pack('>I', len(body)) + kind + body + struct.pack(
        '>I', zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_with_size(width, height, bits=8, colour=2):
    """Return a real small PNG whose IHDR (CRC fixed) declares another size or depth."""
    b = bytearray(encode('.png'))
    ihdr = struct.pack('>IIBBBBB', width, height, bits, colour, 0, 0, 0)
    return bytes(b[:8]) + _chunk(b'IHDR', ihdr) + bytes(b[33:])


def png_bomb(side):
    """Return a genuine grey PNG of ``side``^2 zeros: kilobytes that decode to side^2 bytes."""
    comp = zlib.compressobj(9)
    row = b'\x00' * (side + 1)
    parts = [comp.compress(row) for _ in range(side)] + [comp.flush()]
    ihdr = struct.pack('>IIBBBBB', side, side, 8, 0, 0, 0, 0)
    return (b'\x89PNG\r\n\x1a\n' + _chunk(b'IHDR', ihdr) + _chunk(b'IDAT', b''.join(parts))
            + _chunk(b'IEND', b''))


JPEG_BOMB = jpeg_with_size(32768, 32768)


def _peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ----------------------------------------------------------------------------- bombs


def test_the_631_byte_bomb_costs_microseconds_and_no_memory():
    assert len(JPEG_BOMB) < 5000  # OpenCV's small JPEG; the was 631 bytes
    peak0 = _peak_rss_mib()
    t0 = time.perf_counter()
    for _ in range(100):
        with pytest.raises(ImageConversionError, match='32768x32768.*maximum side of 8192'):
            decode_image(JPEG_BOMB)
    per_bomb_ms = (time.perf_counter() - t0) * 10
    assert per_bomb_ms < 5.0
    assert _peak_rss_mib() - peak0 < 10.0


@pytest.mark.parametrize('side', [8193, 20000, 30000, 65535])
def test_lying_headers_past_the_limit_are_refused(side):
    for payload in (jpeg_with_size(side, 64), jpeg_with_size(64, side),
                    png_with_size(side, side)):
        t0 = time.perf_counter()
        with pytest.raises(ImageConversionError, match='maximum side'):
            decode_image(payload)
        assert time.perf_counter() - t0 < 0.005


@pytest.mark.parametrize('side', [2000, 8000, 8192])
def test_lying_headers_within_the_limit_are_refused_by_the_data_size(side):
    # A few kB cannot hold side^2 pixels: one bit per 8x8 block (JPEG), deflate <= 1032:1.
    with pytest.raises(ImageConversionError, match='lying header'):
        decode_image(jpeg_with_size(side, side))
    with pytest.raises(ImageConversionError, match='lying header'):
        decode_image(png_with_size(side, side))


def test_genuine_png_bomb_refused_before_decoding():
    bomb = png_bomb(9000)  # 81 MB of pixels in about 80 kB
    assert len(bomb) < 200_000
    t0 = time.perf_counter()
    with pytest.raises(ImageConversionError, match='9000x9000'):
        decode_image(bomb)
    assert time.perf_counter() - t0 < 0.005


def test_flat_images_within_the_limit_are_not_lost():
    """The size-versus-data bounds never refuse a real image, even a flat one."""
    flat = np.zeros((2000, 2000), np.uint8)
    for data in (png_bomb(2000), encode('.png', flat, [cv2.IMWRITE_PNG_COMPRESSION, 9]),
                 encode('.jpg', flat), encode('.jpg', flat, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])):
        assert decode_image(data).shape == (2000, 2000, 3)


@pytest.mark.parametrize('ext', ['.jpg', '.png', '.bmp', '.ppm', '.pgm', '.webp', '.tiff'])
def test_every_format_round_trips_and_refuses_truncation(ext):
    rgb = _rgb()
    img = rgb[:, :, 0] if ext == '.pgm' else rgb[:, :, ::-1]  # OpenCV writes BGR
    data = encode(ext, img)
    out = decode_image(data)
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    if ext in ('.png', '.bmp', '.ppm', '.tiff'):
        np.testing.assert_array_equal(out, rgb)
    elif ext == '.pgm':
        np.testing.assert_array_equal(out, np.repeat(img[:, :, None], 3, axis=2))
    for cut in (4, 10, 40, len(data) // 4, len(data) // 2, len(data) - 3):
        with pytest.raises(ImageConversionError):
            decode_image(data[:cut])


def test_truncated_jpeg_is_refused_not_half_grey():
    data = encode('.jpg', _rgb(256, 256))
    with pytest.raises(ImageConversionError, match='truncated JPEG.*end-of-image'):
        decode_image(data[:len(data) // 2])
    # A motion photo (a video appended after the end-of-image marker) stays readable.
    assert decode_image(data + b'\x00\x00\x00\x18ftypmp42' + bytes(500)).shape == (256, 256, 3)


@pytest.mark.parametrize('data, match', [
    (encode('.png', np.full((8, 8), 40000, np.uint16)), '16-bit PNG'),
    (encode('.tiff', np.full((8, 8), 40000, np.uint16)), '16-bit TIFF'),
    (encode('.pgm', np.full((8, 8), 40000, np.uint16)), '16-bit PNM'),
    (b'GIF89a\x10\x00\x10\x00' + bytes(40), 'unknown or unsupported'),
    (b'\x00\x00\x00\x0cjP  \r\n\x87\n' + bytes(40), 'unknown or unsupported'),  # JPEG 2000
    (b'\x00\x00\x00\x18ftypheic' + bytes(40), 'unknown or unsupported'),        # HEIC
    (b'', 'empty'),
    (b'\xff\xd8\xff', 'no image'),
    (b'\xff\xd8\xff\xe0\x00\x01' + bytes(20), 'segment length'),
    (b'\x89PNG\r\n\x1a\n' + bytes(40), 'not IHDR'),
    (b'II*\x00\xff\xff\xff\x7f', 'truncated'),
    (b'BM' + bytes(40), 'info header'),
    (b'P6\n99999999999 1\n255\n', 'corrupt PNM'),
])
def test_unusable_data_refused_with_a_reason(data, match):
    with pytest.raises(ImageConversionError, match=match):
        decode_image(data)


def test_jpeg_variants_refused():
    data = encode('.jpg')
    i = data.find(b'\xff\xc0')
    for marker, match in ((0xC9, 'arithmetic'), (0xC3, 'lossless'), (0xC5, 'hierarchical')):
        with pytest.raises(ImageConversionError, match=match):
            decode_image(data[:i + 1] + bytes([marker]) + data[i + 2:])
    twelve = bytearray(data)
    twelve[i + 4] = 12
    with pytest.raises(ImageConversionError, match='12-bit'):
        decode_image(bytes(twelve))
    with pytest.raises(ImageConversionError, match='64x0'):  # height 0 (DNL marker)
        decode_image(jpeg_with_size(64, 0))
    sof = data[i:i + 2 + struct.unpack('>H', data[i + 2:i + 4])[0]]
    with pytest.raises(ImageConversionError, match='more than one frame header'):
        decode_image(data[:i] + sof + data[i:])


def test_fuzzed_headers_only_ever_raise_the_conversion_error():
    """Random byte flips in headers: an image of the declared size, or ImageConversionError."""
    rng = np.random.default_rng(13)
    seeds = [encode(e) for e in ('.jpg', '.png', '.bmp', '.ppm', '.webp', '.tiff')]
    t0 = time.perf_counter()
    for trial in range(600):
        b = bytearray(seeds[trial % len(seeds)])
        for _ in range(rng.integers(1, 4)):
            b[rng.integers(0, min(len(b), 200))] = rng.integers(0, 256)
        if trial % 5 == 0:
            b = b[:rng.integers(1, len(b))]
        try:
            out = decode_image(bytes(b))
        except ImageConversionError:
            continue
        assert out.ndim == 3 and out.shape[2] == 3 and max(out.shape[:2]) <= policy.MAX_SIDE
    assert time.perf_counter() - t0 < 30.0


def test_header_parser_reports_declared_size():
    assert (check_encoded(JPEG_BOMB[:0] + encode('.jpg')).width,) == (64,)
    h = policy.read_header(encode('.webp', _rgb(30, 50)))
    assert (h.format, h.width, h.height) == ('webp', 50, 30)
    with pytest.raises(ImageConversionError, match='maximum side of 100'):
        check_encoded(encode('.png', _rgb(30, 101)), max_side=100)


def test_image_files_fifo_link_directory_and_size(tmp_path):
    good = tmp_path / 'good.png'
    good.write_bytes(encode('.png'))
    assert read_image_file(good).shape == (48, 64, 3)
    fifo = tmp_path / 'pipe.jpg'
    os.mkfifo(fifo)
    t0 = time.perf_counter()
    with pytest.raises(ImageConversionError, match='not a regular file.*FIFO'):
        read_image_file(fifo)
    assert time.perf_counter() - t0 < 1.0  # never blocks on the writer
    link = tmp_path / 'broken.jpg'
    link.symlink_to(tmp_path / 'nowhere.jpg')
    with pytest.raises(ImageConversionError, match='broken symbolic link'):
        read_image_file(link)
    with pytest.raises(ImageConversionError, match='directory'):
        read_image_file(tmp_path)
    with pytest.raises(ImageConversionError, match='more than the 100'):
        read_image_file(good, max_bytes=100)


def test_raw_image_limit_is_the_estimators():
    sensor_msgs = pytest.importorskip('sensor_msgs.msg')
    from nlml_hpe.ros_image import image_to_rgb

    msg = sensor_msgs.Image(height=64, width=10000, encoding='mono8', step=10000,
                            data=bytes(640000))
    with pytest.raises(ImageConversionError, match='too large.*8192'):
        image_to_rgb(msg)


# ----------------------------------------------------------------------------- cameras

GOOD_K = [600.0, 0, 320, 0, 600.0, 240, 0, 0, 1]


@pytest.mark.parametrize('k, size, match', [
    ([1e300, 0, 320, 0, 1e300, 240, 0, 0, 1], (640, 480), 'fx=1e\\+300.*implausible'),
    ([1e-300, 0, 320, 0, 1e-300, 240, 0, 0, 1], (640, 480), 'fx=1e-300.*implausible'),
    ([1e-3, 0, 320, 0, 600, 240, 0, 0, 1], (640, 480), 'fx=0.001'),
    ([1e6, 0, 320, 0, 1, 240, 0, 0, 1], (640, 480), 'fx=1e\\+06'),
    ([600, 1e6, 320, 0, 600, 240, 0, 0, 1], (640, 480), 'skew'),
    ([600, 0, 320, 0, 100, 240, 0, 0, 1], (640, 480), 'fx / fy'),
    ([600, 0, 320, 0, 600, 240, 0, 0, 1] * 11 + [0], (640, 480), 'exactly 9 elements, got 100'),
    ([600, 0, 320, 0, 600, 240, 0, 0], (640, 480), 'exactly 9'),
    (GOOD_K, (100000, 480), 'maximum side'),
    (GOOD_K, (0, 480), 'size'),
    ([600, 0, -5, 0, 600, 240, 0, 0, 1], (640, 480), 'principal point'),
    ([float('inf')] + GOOD_K[1:], (640, 480), 'NaN or inf'),
    (['a'] * 9, (640, 480), 'not a list of numbers'),
])
def test_absurd_intrinsics_refused(k, size, match):
    with pytest.raises(ImageConversionError, match=match):
        check_intrinsics(k, *size)


@pytest.mark.parametrize('k, size', [
    (GOOD_K, (640, 480)),
    ([1400, 0, 960, 0, 1400, 540, 0, 0, 1], (1920, 1080)),    # 69 deg webcam
    ([330, 0, 640, 0, 330, 480, 0, 0, 1], (1280, 960)),       # fisheye K (~180 deg)
    ([30000, 0, 320, 0, 30000, 240, 0, 0, 1], (640, 480)),    # 1.2 deg telephoto
    ([600, 0.3, 320, 0, 610, 240, 0, 0, 1], (640, 480)),      # small skew, near-square
])
def test_real_cameras_accepted(k, size):
    np.testing.assert_allclose(check_intrinsics(k, *size), np.reshape(k, (3, 3)))


# ----------------------------------------------------------------------------- frame names

@pytest.mark.parametrize('name', ['camera optical', '/camera', 'cam\nera', 'x' * 100_000,
                                  'a//b', '../x', 'a/../b', 'a/.', 'caméra', '', 'a\x00b',
                                  'tab\there'])
def test_hostile_frame_names_refused(name):
    assert frame_name_problem(name)
    assert len(frame_name_problem(name)) < 300  # the name is shortened in the message


@pytest.mark.parametrize('name', ['camera_optical_frame', 'robot1/head_cam', 'cam-2.optical'])
def test_frame_names_accepted(name):
    assert frame_name_problem(name) == ''


def test_prefixes():
    assert frame_prefix_problem('face_') == '' and frame_prefix_problem('robot1/face_') == ''
    for bad in ('/../x', '/face_', 'a b', '', '../', 'faces//'):
        assert frame_prefix_problem(bad), bad


# ----------------------------------------------------------------------------- models

def _weights(seed=0):
    rng = np.random.default_rng(seed)
    w = {k: rng.normal(0, 0.05, s).astype(np.float32) for k, s in expected_shapes().items()}
    w['feature_std'] = np.ones_like(w['feature_std'])
    return w


def _tampered(name):
    """Return the weights and metadata an attacker (or a careless export) could produce."""
    w = _weights()
    meta = {'note': 'tampered'}
    if name == 'huge_weights':
        for k in w:
            if k.endswith('weight'):
                w[k] = np.full_like(w[k], 3e38)
    elif name == 'tiny_std':
        w['feature_std'] = np.full_like(w['feature_std'], 1e-45)
    elif name == 'big_bias':
        w['heads.0.8.bias'] = np.array([3.0], np.float32)  # every face 172 deg of yaw
    elif name == 'nested_metadata':
        meta = None
    elif name == 'int_tensor':
        w['encoder.0.bias'] = np.zeros(1024, np.int32)
    elif name == 'angle_frame':
        meta = {'angle_frame': ['not', 'a', 'frame']}
    return w, meta


@pytest.mark.parametrize('name, match', [
    ('huge_weights', 'non-finite angles'),
    ('tiny_std', 'too small to divide by'),
    ('big_bias', r'yaw 1\d\d\.\d, roll .*more than 15 deg'),
    ('nested_metadata', 'RecursionError'),
    ('int_tensor', 'dtype int32'),
    ('angle_frame', 'angle_frame'),
])
def test_broken_models_named(tmp_path, name, match):
    w, meta = _tampered(name)
    path = save_model(w, tmp_path, meta or {})
    if name == 'int_tensor':  # save_model writes float32: write the tensors as they are
        from safetensors.numpy import save_file
        save_file(w, str(path))
    if meta is None:
        (tmp_path / METADATA_NAME).write_text('[' * 100_000 + ']' * 100_000)
    with pytest.raises(ModelFileError, match=match) as info:
        load_model(tmp_path)
    assert str(tmp_path) in str(info.value)
    assert path.name == WEIGHTS_NAME


def test_model_file_bytes_tampered(tmp_path):
    """Header and body byte flips, wrong sizes and non-files: always a named ModelFileError."""
    path = save_model(_weights(), tmp_path / 'm', {})
    good = path.read_bytes()
    hlen = struct.unpack('<Q', good[:8])[0]
    rng = np.random.default_rng(1)
    variants = [good[:8] + b'{' * hlen + good[8 + hlen:],              # garbage header
                struct.pack('<Q', 2 ** 62) + good[8:],                    # absurd header size
                good[:8 + hlen] + good[8 + hlen:][:1000],                 # short body
                good[:8] + good[8:8 + hlen].replace(b'F32', b'I64') + good[8 + hlen:]]
    for _ in range(20):  # random flips in the JSON header
        b = bytearray(good)
        b[8 + rng.integers(0, hlen)] = rng.integers(0, 256)
        variants.append(bytes(b))
    for data in variants:
        path.write_bytes(data)
        try:
            load_model(path)
        except ModelFileError as exc:
            assert str(path) in str(exc)
    fifo = tmp_path / 'fifo.safetensors'
    os.mkfifo(fifo)
    with pytest.raises(ModelFileError, match='not found'):
        load_model(fifo)
    big = tmp_path / 'big.safetensors'
    with open(big, 'wb') as f:
        f.truncate(65 * 2 ** 20)  # sparse
    with pytest.raises(ModelFileError, match='more than'):
        load_model(big)


def test_sanity_check_is_cheap_and_passes_the_shipped_model():
    from nlml_hpe.model import canonical_features, default_model_dir, sanity_check

    model = load_model(default_model_dir())
    sanity_check(model)
    t0 = time.perf_counter()
    for _ in range(20):
        sanity_check(model)
    assert (time.perf_counter() - t0) / 20 < 0.005
    frontal = model.predict(canonical_features())[0]
    assert np.all(np.abs(frontal) < 1.0)  # the tolerance (15 deg) has a wide margin


def test_strict_json_helper():
    from nlml_hpe.cli import _json_line

    assert json.loads(_json_line({'a': 1.5}))['a'] == 1.5
    with pytest.raises(ValueError):
        _json_line({'a': float('nan')})
