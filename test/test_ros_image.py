"""sensor_msgs Image / CompressedImage / CameraInfo conversion (real message classes)."""

import cv2
import numpy as np
import pytest

sensor_msgs = pytest.importorskip('sensor_msgs.msg', reason='sensor_msgs is not installed')
from nlml_hpe.position import default_camera_matrix  # noqa: E402
from nlml_hpe.ros_image import (  # noqa: E402
    STREAM_BUDGET,
    ImageConversionError,
    camera_matrix_from_info,
    check_compressed_image,
    compressed_to_rgb,
    decode_compressed,
    image_to_rgb,
    ray_position,
)


def _rgb(h=4, w=5):
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _image(arr, encoding, pad=0):
    h, w = arr.shape[:2]
    c = 1 if arr.ndim == 2 else arr.shape[2]
    rows = arr.reshape(h, w * c)
    padded = np.concatenate([rows, np.full((h, pad), 77, np.uint8)], axis=1)
    return sensor_msgs.Image(height=h, width=w, encoding=encoding, is_bigendian=0,
                             step=w * c + pad, data=padded.tobytes())


@pytest.mark.parametrize('pad', [0, 3])
def test_all_encodings_with_row_padding(pad):
    rgb = _rgb()
    cases = {
        'rgb8': rgb,
        'bgr8': rgb[:, :, ::-1],
        'rgba8': np.dstack([rgb, np.full(rgb.shape[:2], 9, np.uint8)]),
        'bgra8': np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 9, np.uint8)]),
    }
    for enc, arr in cases.items():
        out = image_to_rgb(_image(np.ascontiguousarray(arr), enc, pad))
        assert out.dtype == np.uint8 and out.flags.c_contiguous
        np.testing.assert_array_equal(out, rgb, err_msg=enc)
    gray = rgb[:, :, 0].copy()
    out = image_to_rgb(_image(gray, 'mono8', pad))
    np.testing.assert_array_equal(out, np.dstack([gray] * 3))


def test_big_endian_flag_does_not_change_8bit_data():
    rgb = _rgb()
    msg = _image(rgb, 'rgb8')
    msg.is_bigendian = 1
    np.testing.assert_array_equal(image_to_rgb(msg), rgb)


@pytest.mark.parametrize('mutate, match', [
    (lambda m: setattr(m, 'encoding', 'mono16'), 'unsupported image encoding'),
    (lambda m: setattr(m, 'encoding', '16UC1'), 'unsupported image encoding'),
    (lambda m: setattr(m, 'encoding', 'bayer_rggb8'), 'unsupported image encoding'),
    (lambda m: (setattr(m, 'width', 0), setattr(m, 'data', b'')), 'zero-size'),
    (lambda m: setattr(m, 'data', bytes(m.data)[:-7]), 'truncated'),
    (lambda m: setattr(m, 'step', m.step - 1), 'step'),
    (lambda m: setattr(m, 'step', m.step + 2), 'does not match step'),
    (lambda m: setattr(m, 'height', 100000), 'too large'),
])
def test_bad_images_are_rejected_with_a_reason(mutate, match):
    msg = _image(_rgb(), 'rgb8')
    mutate(msg)
    with pytest.raises(ImageConversionError, match=match):
        image_to_rgb(msg)


def test_compressed_jpeg_png_and_corrupt():
    rgb = _rgb(32, 40)
    ok, png = cv2.imencode('.png', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    msg = sensor_msgs.CompressedImage(format='png', data=png.tobytes())
    np.testing.assert_array_equal(compressed_to_rgb(msg), rgb)
    ok, jpg = cv2.imencode('.jpg', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out = compressed_to_rgb(sensor_msgs.CompressedImage(format='jpeg', data=jpg.tobytes()))
    assert out.shape == (32, 40, 3)
    with pytest.raises(ImageConversionError, match='truncated'):
        compressed_to_rgb(sensor_msgs.CompressedImage(format='jpeg', data=jpg.tobytes()[:40]))
    with pytest.raises(ImageConversionError, match='unknown or unsupported image format'):
        compressed_to_rgb(sensor_msgs.CompressedImage(format='jpeg', data=b'\x00garbage' * 10))
    with pytest.raises(ImageConversionError, match='empty'):
        compressed_to_rgb(sensor_msgs.CompressedImage(format='jpeg', data=b''))
    ok, png16 = cv2.imencode('.png', np.full((8, 8), 40000, np.uint16))
    with pytest.raises(ImageConversionError, match='8-bit'):
        compressed_to_rgb(sensor_msgs.CompressedImage(format='png', data=png16.tobytes()))


def test_compressed_within_a_budget():
    """A JPEG above the pixel budget: refused at full size, decoded reduced on request."""
    from nlml_hpe.bench.hostile import abuse_payloads, jpeg_flat

    msg = sensor_msgs.CompressedImage(format='jpeg', data=jpeg_flat(8192, 8192))
    for full_size in (check_compressed_image, compressed_to_rgb):
        with pytest.raises(ImageConversionError, match='above the budget of 4194304 pixels'):
            full_size(msg)
    assert check_compressed_image(msg, STREAM_BUDGET).width == 8192
    out = decode_compressed(msg)
    assert (out.scale, out.rgb.shape, out.width, out.height) == (4, (2048, 2048, 3), 8192, 8192)
    for payload in abuse_payloads('mixed'):  # what the node's callback refuses today
        with pytest.raises(ImageConversionError):
            check_compressed_image(sensor_msgs.CompressedImage(format='jpeg', data=payload))


def _info(k, w=640, h=480):
    return sensor_msgs.CameraInfo(width=w, height=h, k=[float(v) for v in k])


def test_camera_info_validation():
    K = camera_matrix_from_info(_info([500, 0, 320, 0, 500, 240, 0, 0, 1]))
    np.testing.assert_allclose(K, [[500, 0, 320], [0, 500, 240], [0, 0, 1]])
    bad = [
        (_info([0] * 9), 'focal'),
        (_info([np.nan, 0, 320, 0, 500, 240, 0, 0, 1]), 'NaN'),
        (_info([500, 0, 320, 0, 500, 240, 0, 0, 1], w=0, h=0), 'size'),
        (_info([500, 0, 900, 0, 500, 240, 0, 0, 1]), 'principal point'),
        (_info([500, 0, 320, 0, 500, 240, 0, 0, 0]), 'not an intrinsic'),
    ]
    for msg, match in bad:
        with pytest.raises(ImageConversionError, match=match):
            camera_matrix_from_info(msg)


def test_default_ray_position_is_on_the_pixel_ray():
    K = default_camera_matrix(640, 480)
    p = ray_position(K, (320, 240), 2.0)
    np.testing.assert_allclose(p, [0, 0, 2.0])
    p = ray_position(K, (600, 100), 1.5)
    assert abs(np.linalg.norm(p) - 1.5) < 1e-9
    uvw = K @ p
    np.testing.assert_allclose(uvw[:2] / uvw[2], [600, 100])
