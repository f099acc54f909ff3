"""Hostile input, round 2 (issue 22): decoding within a budget, videos, names.

Every payload is generated here or by :mod:`nlml_hpe.bench.hostile` (no binary
fixtures): progressive JPEG scan bombs, a 32-byte WebP declaring 8192x8192,
flat 8192x8192 JPEGs, PNGs padded with 400,000 chunks, truncated and corrupt
videos, file names with newlines.  Tests assert refusals and results; the
costs are measured by ``python -m nlml_hpe.bench.hostile`` (docs/hostile_input.md).
"""

from dataclasses import replace
import json
import os
import struct
import subprocess
import sys

import cv2
import numpy as np
import pytest

from nlml_hpe.bench import hostile
from nlml_hpe.image_decode import (
    FILE_BUDGET,
    MAX_JPEG_SCANS,
    STREAM_BUDGET,
    DecodeBudget,
    decode,
    decode_image,
    plan_decode,
    read_image,
    scaled_camera_matrix,
)
from nlml_hpe.input_policy import (
    ImageConversionError,
    check_encoded,
    frame_name_problem,
    frame_prefix_problem,
    printable,
)
from nlml_hpe.video import VideoReader

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bgr(rgb):
    return np.ascontiguousarray(rgb[:, :, ::-1])


def _encode(ext, img, params=()):
    ok, buf = cv2.imencode(ext, img, list(params))
    assert ok
    return buf.tobytes()


@pytest.fixture(scope='module')
def face():
    from nlml_hpe.bench.feed import face_frame

    return face_frame(640, 480)  # the demo clip's first frame: ships with the package


# ----------------------------------------------------------------------------- payloads

@pytest.mark.parametrize('make, value', [
    (lambda: hostile.jpeg_scan_bomb(64, 40), 128),
    (lambda: hostile.jpeg_flat(72, 40), 128),
    (lambda: hostile.jpeg_flat(72, 40, progressive=True), 128),
    (lambda: hostile.webp_flat(64, 48), 0),
    (lambda: hostile.png_many_chunks(1000), 128),
])
def test_payloads_are_real_images(make, value):
    """The generators write valid bitstreams: OpenCV decodes small ones to the flat grey."""
    img = cv2.imdecode(np.frombuffer(make(), np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.ndim == 3
    assert np.all(np.abs(img.astype(int) - value) <= 1)


def test_payload_sizes_match_the_issue():
    assert len(hostile.jpeg_scan_bomb(8192, 5000)) < 800_000    # issue: 636 kB
    assert len(hostile.jpeg_scan_bomb(8192, 20000)) < 2_700_000  # issue: 2.15 MB
    assert len(hostile.webp_flat(8192, 8192)) == 32              # issue: 2.6 kB
    assert len(hostile.jpeg_flat(8192, 8192)) < 300_000          # issue: 131 kB
    assert len(hostile.png_many_chunks()) > 4_800_000            # issue: 4.8 MB
    for kind in hostile.ABUSE_KINDS:
        assert hostile.abuse_payloads(kind)
    with pytest.raises(ValueError, match='unknown abuse kind'):
        hostile.abuse_payloads('nope')


# ----------------------------------------------------------------------------- JPEG

@pytest.mark.parametrize('scans', [MAX_JPEG_SCANS + 1, 5000, 20000])
@pytest.mark.parametrize('budget', [STREAM_BUDGET, FILE_BUDGET])
def test_scan_bombs_refused_before_decoding(scans, budget):
    bomb = hostile.jpeg_scan_bomb(8192 if scans > 100 else 1024, scans)
    # 2.6 MB of 20,000 scans is also more than a stream's time budget by its bytes alone.
    why = 'at least 66 ms' if len(bomb) > 2e6 and budget is STREAM_BUDGET else 'scans'
    with pytest.raises(ImageConversionError, match=why):
        decode(bomb, budget=budget)
    if why == 'scans':
        with pytest.raises(ImageConversionError, match=f'more than {MAX_JPEG_SCANS} scans'):
            decode(bomb, budget=budget)


def test_many_scans_within_the_count_are_bounded_by_the_time_budget():
    bomb = hostile.jpeg_scan_bomb(4096, MAX_JPEG_SCANS)  # 16.8M blocks to walk
    with pytest.raises(ImageConversionError, match='would take about 171 ms to decode even at '
                       '1/8 scale: more than the budget of 50 ms'):
        decode(bomb, budget=STREAM_BUDGET)
    # The same scans over fewer blocks fit, and decode.
    small = hostile.jpeg_scan_bomb(1024, 30)
    assert plan_decode(small).scans == 30
    assert decode(small).rgb.shape == (1024, 1024, 3)


@pytest.mark.parametrize('gray', [False, True])
def test_real_progressive_jpegs_decode(gray):
    img = np.random.default_rng(0).integers(0, 256, (300, 400, 3), np.uint8)
    img = img[:, :, 0] if gray else img
    data = _encode('.jpg', img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    plan = plan_decode(data)
    assert plan.scans == (6 if gray else 10)  # libjpeg's progressive scripts
    assert plan.memory > 128 * (300 * 400 // 64)  # every coefficient is kept
    assert decode(data).rgb.shape == (300, 400, 3)


def test_big_jpeg_decoded_reduced_or_refused():
    flat = hostile.jpeg_flat(8192, 8192)  # 262 kB, 2 bits a block: passes the data rule
    out = decode(flat)
    assert (out.scale, out.rgb.shape, out.width, out.height) == (4, (2048, 2048, 3), 8192, 8192)
    assert np.all(out.rgb == 128)
    with pytest.raises(ImageConversionError, match='above the budget of 4194304 pixels'):
        decode_image(flat)  # full size only
    with pytest.raises(ImageConversionError, match='above the budget'):
        check_encoded(flat)  # the node's check today: full size
    assert decode(flat, budget=replace(STREAM_BUDGET, max_pixels=2 ** 20)).scale == 8
    # Progressive: every coefficient is kept at full size (128 MiB), whatever the scale.
    with pytest.raises(ImageConversionError, match='needs about 140 MiB'):
        decode(hostile.jpeg_flat(8192, 8192, progressive=True), budget=FILE_BUDGET)


def test_scale_choice_and_odd_sizes():
    data = hostile.jpeg_flat(1001, 333)
    for max_pixels, scale, shape in ((1001 * 333, 1, (333, 1001)), (1000 * 333, 2, (167, 501)),
                                     (150 * 50, 8, (42, 126))):
        out = decode(data, budget=DecodeBudget(max_pixels=max_pixels))
        assert (out.scale, out.rgb.shape[:2]) == (scale, shape)
    with pytest.raises(ImageConversionError, match='even at 1/8 scale'):
        decode(data, budget=DecodeBudget(max_pixels=100))


def test_time_budget_chooses_the_scale():
    flat = hostile.jpeg_flat(8192, 8192, colour=True)  # 1.6M blocks: 16 ms, 8 ms a MP
    assert plan_decode(flat, budget=FILE_BUDGET).scale == 4
    assert plan_decode(flat, budget=STREAM_BUDGET).scale == 8  # 1/4: about 52 ms, over 50
    with pytest.raises(ImageConversionError, match='at least 540 ms to decode'):
        plan_decode(flat, budget=DecodeBudget(max_pixels=2 ** 26, reduce=False))
    noise = np.random.default_rng(1).integers(0, 256, (1000, 1000, 3), np.uint8)
    webp = _encode('.webp', noise, [cv2.IMWRITE_WEBP_QUALITY, 95])  # 52 ms a MB of data
    with pytest.raises(ImageConversionError, match='only JPEGs can be decoded reduced'):
        plan_decode(webp, budget=DecodeBudget(max_decode_ms=10))
    assert plan_decode(webp).ms == pytest.approx(3.0 + 52.0 * len(webp) / 1e6)
    big = _encode('.jpg', np.random.default_rng(2).integers(0, 256, (2000, 2000, 3), np.uint8),
                  [cv2.IMWRITE_JPEG_QUALITY, 100])  # about 8 MB: 7 ms a MB
    assert len(big) > 7.2e6
    with pytest.raises(ImageConversionError, match=r'would take at least \d\d ms'):
        plan_decode(big, budget=STREAM_BUDGET)  # refused before its scans are walked


@pytest.mark.parametrize('data, match', [
    (b'\xff\xd8' + b'\xff' * 4_000_000 + b'\xc0', 'a run of fill bytes'),
    (b'\xff\xd8' + b'\xff\x01' * 2_000_000, 'more than 256 segments'),
    (b'\xff\xd8' + b'\xff\xfe\x00\x02' * 1_000_000, 'more than 256 segments'),
    (b'II*\x00\x08\x00\x00\x00\xff\xff' + bytes(12 * 65535), '65535 directory entries'),
])
def test_header_walks_are_bounded(data, match):
    with pytest.raises(ImageConversionError, match=match):
        plan_decode(data)


def test_byte_budget_refuses_before_parsing():
    data = _encode('.jpg', np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ImageConversionError, match='more than the budget of 100 bytes'):
        decode(data, budget=DecodeBudget(max_bytes=100))


def _exif_jpeg(img, orientation):
    """Return a JPEG with an EXIF orientation tag (APP1, little-endian TIFF, one IFD entry)."""
    tiff = b'II*\x00' + struct.pack('<I', 8) + struct.pack('<H', 1) + struct.pack(
        '<HHIHH', 0x0112, 3, 1, orientation, 0) + struct.pack('<I', 0)
    app1 = b'Exif\x00\x00' + tiff
    data = _encode('.jpg', img)
    return data[:2] + b'\xff\xe1' + struct.pack('>H', len(app1) + 2) + app1 + data[2:]


def test_reduced_decode_keeps_the_exif_orientation():
    img = np.zeros((64, 128, 3), np.uint8)
    img[:, :32] = 255  # white on the left
    data = _exif_jpeg(img, 6)  # rotate 90 deg clockwise: white on top
    full = decode(data)
    assert (full.width, full.height, full.rgb.shape[:2]) == (64, 128, (128, 64))
    half = decode(data, budget=DecodeBudget(max_pixels=64 * 32))
    assert (half.scale, half.width, half.height, half.rgb.shape[:2]) == (2, 64, 128, (64, 32))
    assert half.rgb[:8].mean() > 200 and half.rgb[-8:].mean() < 50


def test_reduced_decode_reads_the_face_at_source_coordinates(face):
    from nlml_hpe.estimator import HeadPoseEstimator
    from nlml_hpe.model import default_model_dir, load_model

    big = cv2.resize(face, (1280, 960), interpolation=cv2.INTER_CUBIC)
    data = _encode('.jpg', _bgr(big), [cv2.IMWRITE_JPEG_QUALITY, 95])
    full = decode(data)
    half = decode(data, budget=DecodeBudget(max_pixels=640 * 480))
    assert (full.scale, half.scale, half.rgb.shape) == (1, 2, (480, 640, 3))
    with HeadPoseEstimator(load_model(default_model_dir()), flip_average=False) as est:
        a = full.to_source(est.estimate(full.rgb))
        b = half.to_source(est.estimate(half.rgb))
    assert len(a) == len(b) == 1
    width = a[0].box[2] - a[0].box[0]
    assert np.max(np.abs(np.subtract(a[0].box, b[0].box))) < 0.03 * width
    assert np.max(np.abs(a[0].angles - b[0].angles)) < 3.0
    assert np.abs(a[0].landmarks[:, :2] - b[0].landmarks[:, :2]).mean() < 0.02 * width


def test_scaled_camera_matrix_maps_pixel_centres():
    k = np.array([[800.0, 0.5, 639.5], [0, 810.0, 359.5], [0, 0, 1]])
    point = np.array([0.3, -0.2, 2.0])
    uv = (k @ point)[:2] / point[2]
    for s in (2, 4, 8):
        ks = scaled_camera_matrix(k, s)
        np.testing.assert_allclose((ks @ point)[:2] / point[2], (uv + 0.5) / s - 0.5)
    np.testing.assert_array_equal(scaled_camera_matrix(k, 1), k)


# ----------------------------------------------------------------------------- WebP, PNG, TIFF

@pytest.mark.parametrize('side', [2048, 8192])
def test_tiny_webp_refused_by_its_size_against_bytes(side):
    with pytest.raises(ImageConversionError, match='pixels a byte'):
        decode(hostile.webp_flat(side, side), budget=FILE_BUDGET)


def test_real_webps_decode_and_the_pixel_budget_holds():
    flat = _encode('.webp', np.zeros((1024, 1024, 3), np.uint8), [cv2.IMWRITE_WEBP_QUALITY, 101])
    assert len(flat) < 200  # libwebp: thousands of pixels a byte, still accepted
    assert decode(flat).rgb.shape == (1024, 1024, 3)
    lossy = _encode('.webp', np.zeros((256, 256, 3), np.uint8), [cv2.IMWRITE_WEBP_QUALITY, 80])
    assert decode(lossy).rgb.shape == (256, 256, 3)
    with pytest.raises(ImageConversionError, match='only JPEGs can be decoded reduced'):
        decode(flat, budget=DecodeBudget(max_pixels=1000 * 1000))


def test_png_pixel_budget_and_chunk_count():
    with pytest.raises(ImageConversionError, match='above the budget'):
        decode(hostile.png_bomb(8192), budget=FILE_BUDGET)  # 67 MP in about 200 kB
    assert decode(hostile.png_bomb(2048)).rgb.shape == (2048, 2048, 3)
    padded = hostile.png_many_chunks()
    for budget in (STREAM_BUDGET, FILE_BUDGET):
        with pytest.raises(ImageConversionError, match='more than 2633 chunks'):
            decode(padded, budget=budget)
    with pytest.raises(ImageConversionError, match='about 69 ms to decode'):
        decode(hostile.png_bomb(2048), budget=STREAM_BUDGET)  # 16.5 ms a MP
    assert decode(hostile.png_many_chunks(2000)).rgb.shape == (64, 64, 3)


def _tiff_with_size(width, height):
    data = bytearray(_encode('.tiff', np.zeros((48, 64, 3), np.uint8)))
    assert data[:2] == b'II'
    ifd = struct.unpack_from('<I', data, 4)[0]
    for i in range(struct.unpack_from('<H', data, ifd)[0]):
        e = ifd + 2 + 12 * i
        tag, typ = struct.unpack_from('<HH', data, e)
        if tag in (256, 257):
            fmt = '<H' if typ == 3 else '<I'
            struct.pack_into(fmt, data, e + 8, width if tag == 256 else height)
    return bytes(data)


def test_tiff_lying_header_refused():
    with pytest.raises(ImageConversionError, match='more than any TIFF compression expands'):
        decode(_tiff_with_size(8192, 8192), budget=FILE_BUDGET)
    assert decode(_tiff_with_size(64, 48)).rgb.shape == (48, 64, 3)


def test_every_abuse_payload_but_the_big_jpeg_refused_by_the_node_check():
    """The node's callback plans with the stream budget: only the 8192^2 JPEG passes, at 1/4."""
    for kind in ('bomb', 'scan', 'webp', 'chunks'):
        for payload in hostile.abuse_payloads(kind):
            with pytest.raises(ImageConversionError):
                plan_decode(payload, budget=STREAM_BUDGET)
    (big,) = hostile.abuse_payloads('big')
    assert plan_decode(big, budget=STREAM_BUDGET).scale == 4
    for payload in hostile.abuse_payloads('mixed'):  # at full size only: every one refused
        with pytest.raises(ImageConversionError):
            check_encoded(payload)


def test_fuzzed_payloads_only_ever_raise_the_conversion_error():
    """Byte flips anywhere in scans, chunks and bitstreams: an image, or ImageConversionError."""
    rng = np.random.default_rng(22)
    noise = rng.integers(0, 256, (40, 56, 3), np.uint8)
    seeds = [hostile.jpeg_scan_bomb(64, 12), hostile.jpeg_flat(64, 40, colour=True),
             _encode('.jpg', noise, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
             hostile.webp_flat(64, 48), _encode('.webp', noise),
             hostile.png_many_chunks(50), _encode('.tiff', noise)]
    for trial in range(700):
        b = bytearray(seeds[trial % len(seeds)])
        for _ in range(rng.integers(1, 5)):
            b[rng.integers(0, len(b))] = rng.integers(0, 256)
        if trial % 7 == 0:
            b = b[:rng.integers(1, len(b))]
        try:
            out = decode(bytes(b), budget=STREAM_BUDGET)
        except ImageConversionError:
            continue
        assert out.rgb.ndim == 3 and out.rgb.shape[2] == 3 and out.scale == 1


# ----------------------------------------------------------------------------- videos

def _video(path, frames=30, size=(160, 120)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), 10, size)
    assert writer.isOpened()
    for i in range(frames):
        img = np.full((size[1], size[0], 3), 8 * i, np.uint8)
        cv2.putText(img, str(i), (10, 60), cv2.FONT_HERSHEY_SIMPLEX, 1, (255, 255, 255), 2)
        writer.write(img)
    writer.release()
    return path.read_bytes()


@pytest.fixture
def videos(tmp_path):
    """Write a 30-frame AVI, the same cut at half its bytes, and one corrupted in the middle."""
    data = _video(tmp_path / 'whole.avi')
    (tmp_path / 'cut.avi').write_bytes(data[:len(data) // 2])
    bad = bytearray(data)
    mid = len(bad) // 2
    bad[mid:mid + 2000] = np.random.default_rng(22).integers(0, 256, 2000, np.uint8).tobytes()
    (tmp_path / 'corrupt.avi').write_bytes(bytes(bad))
    return tmp_path


def test_video_reader_counts_against_the_container(videos):
    with VideoReader(videos / 'whole.avi') as video:
        assert [f.index for f in video] == list(range(30)) and video.declared == 30
        video.check_complete()
    for name in ('cut.avi', 'corrupt.avi'):
        with VideoReader(videos / name) as video:
            frames = list(video)
            assert 0 < len(frames) < 30 and video.declared == 30
            with pytest.raises(ValueError, match=f'read {len(frames)} of the 30 frames'):
                video.check_complete()


def test_video_frames_above_the_pixel_budget_come_reduced(tmp_path):
    _video(tmp_path / 'v.avi', frames=3, size=(320, 240))
    with VideoReader(tmp_path / 'v.avi', max_pixels=100 * 100) as video:
        frames = list(video)
    assert [f.scale for f in frames] == [3] * 3 and frames[0].rgb.shape == (80, 107, 3)
    with pytest.raises(ValueError, match='not a regular file'):
        VideoReader(tmp_path)


def _cli_json(args, timeout=300):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.join(REPO, 'src'), REPO, os.environ.get('PYTHONPATH', '')]))
    proc = subprocess.run([sys.executable, '-m', 'nlml_hpe.cli', 'predict', '--json', *args],
                          capture_output=True, text=True, timeout=timeout, env=env)
    return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines() if line]


def test_cli_truncated_and_corrupt_videos_exit_1(videos):
    code, lines = _cli_json([str(videos / n) for n in ('whole.avi', 'cut.avi', 'corrupt.avi')])
    assert code == 1
    errors = {os.path.basename(d['image']): d['error'] for d in lines if 'error' in d}
    assert set(errors) == {'cut.avi', 'corrupt.avi'}
    for name, why in errors.items():
        assert 'of the 30 frames its container declares' in why, (name, why)
    frames = [d for d in lines if 'faces' in d]
    assert sum(d['image'].startswith(str(videos / 'whole.avi#')) for d in frames) == 30


def test_cli_hostile_images_beside_a_good_face(tmp_path, face):
    """The issue's CLI case: each hostile file gives its line at once; the face is read."""
    files = {'a_scan_bomb.jpg': hostile.jpeg_scan_bomb(8192, 5000),
             'b_tiny.webp': hostile.webp_flat(8192, 8192),
             'c_flat_8192.jpg': hostile.jpeg_flat(8192, 8192),
             'd_face.jpg': _encode('.jpg', _bgr(face))}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    code, lines = _cli_json([str(tmp_path)], timeout=120)  # returns: nothing hangs
    by = {os.path.basename(d['image']): d for d in lines}
    assert code == 1 and sorted(by) == sorted(files)
    assert 'scans' in by['a_scan_bomb.jpg']['error']
    assert 'pixels a byte' in by['b_tiny.webp']['error']
    assert by['c_flat_8192.jpg']['faces'] == []  # decoded at 1/4: a result, no face
    assert len(by['d_face.jpg']['faces']) == 1


def test_cli_decode_budget_flags(tmp_path, face):
    """--max-decode-pixels: a JPEG reduced, boxes in its pixels; --no-decode-reduced: refused."""
    big = cv2.resize(face, (1280, 960), interpolation=cv2.INTER_CUBIC)
    path = tmp_path / 'face_1280.jpg'
    path.write_bytes(_encode('.jpg', _bgr(big)))
    runs = {}
    for name, flags in (('full', []), ('half', ['--max-decode-pixels', '400000']),
                        ('refused', ['--max-decode-pixels', '400000', '--no-decode-reduced'])):
        runs[name] = _cli_json([*flags, str(path)], timeout=120)
    (code, (full,)), (code2, (half,)), (code3, (refused,)) = runs.values()
    assert (code, code2, code3) == (0, 0, 1)
    assert 'DecodeBudget.max_pixels' in refused['error']
    box_full, box_half = (np.array(d['faces'][0]['box']) for d in (full, half))
    assert np.all(np.abs(box_full - box_half) < 0.03 * 1280), (box_full, box_half)
    assert box_half[2] > 700  # in the file's 1280x960 pixels, not the 640x480 decoded
    code, lines = _cli_json(['--max-encoded-mb', '0', str(path)])
    assert code == 2 and lines == []


def test_cli_text_mode_escapes_file_names(tmp_path, face, capsys):
    from nlml_hpe import cli

    weird = tmp_path / 'two\nlines.jpg'
    weird.write_bytes(_encode('.jpg', _bgr(face)))
    bomb = tmp_path / 'bell\a.jpg'
    bomb.write_bytes(hostile.webp_flat(8192, 8192))
    assert cli.main(['predict', '--no-flip', str(weird), str(bomb)]) == cli.EXIT_SOME_FAILED
    out, err = capsys.readouterr()
    assert out.count('\n') == 1 and out.startswith(str(tmp_path / 'two\\nlines.jpg: yaw'))
    assert err.count('\n') == 1 and err.startswith(str(tmp_path / 'bell\\x07.jpg: ERROR'))


def test_printable():
    assert printable('caméra/a b.jpg') == 'caméra/a b.jpg'
    assert printable('a\nb\\n\x1b[1m\udcff') == 'a\\nb\\\\n\\x1b[1m\\udcff'


def test_read_image_refuses_large_files_before_reading(tmp_path):
    path = tmp_path / 'big.jpg'
    path.write_bytes(hostile.jpeg_flat(64, 64) + bytes(2000))
    with pytest.raises(ImageConversionError, match='more than the 1000'):
        read_image(path, budget=DecodeBudget(max_bytes=1000))


# ----------------------------------------------------------------------------- frame names

@pytest.mark.parametrize('name', ['a/', 'robot1/cam/', '/'])
def test_frame_names_with_a_trailing_slash_refused(name):
    assert frame_name_problem(name)


def test_frame_prefixes_may_end_with_a_slash():
    assert frame_prefix_problem('faces/') == ''  # + an id: 'faces/0'


def test_decode_options_are_the_budgets():
    """DecodeConfig (parameters, CLI flags): node defaults = STREAM_BUDGET, else FILE_BUDGET."""
    from nlml_hpe.image_decode import budget_of, config_of
    from nlml_hpe.options import DecodeConfig

    assert budget_of(DecodeConfig.node_defaults()) == STREAM_BUDGET
    assert budget_of(DecodeConfig()) == FILE_BUDGET
    assert config_of(STREAM_BUDGET) == DecodeConfig.node_defaults()
    small = budget_of(DecodeConfig(max_decode_pixels=10_000, decode_reduced=False))
    assert small.max_pixels == 10_000 and not small.reduce
    for bad in ({'max_decode_pixels': 0}, {'max_decode_ms': 0.0}, {'max_encoded_mb': -1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            DecodeConfig(**bad)


@pytest.mark.parametrize('make, reason', [
    (lambda: hostile.jpeg_with_size(32768, 32768), 'size'),
    (lambda: hostile.jpeg_with_size(8000, 8000), 'data'),
    (lambda: hostile.jpeg_scan_bomb(8192, 5000), 'structure'),
    (lambda: hostile.webp_flat(8192, 8192), 'data'),
    (lambda: hostile.png_many_chunks(400_000), 'structure'),
    (lambda: hostile.png_bomb(2048), 'budget'),
    (lambda: b'GIF89a' + bytes(100), 'header'),
    (lambda: hostile.jpeg_undecodable(_encode('.jpg', np.zeros((48, 64, 3), np.uint8))),
     'decode'),
])
def test_refusals_name_their_rule(make, reason):
    from nlml_hpe.image_decode import REASONS, reason_of

    with pytest.raises(ImageConversionError) as info:
        decode(make(), budget=STREAM_BUDGET)
    assert reason_of(info.value) == reason and reason in REASONS
