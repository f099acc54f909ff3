"""Tests for nlml_hpe.images.as_rgb_uint8."""

import numpy as np
import pytest

from nlml_hpe.images import as_rgb_uint8


def test_uint8_rgb_passes_unchanged():
    img = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    out = as_rgb_uint8(img)
    assert out.dtype == np.uint8 and out.shape == (4, 5, 3)
    np.testing.assert_array_equal(out, img)


@pytest.mark.parametrize('shape', [(6, 7), (6, 7, 1)])
def test_grayscale_becomes_rgb(shape):
    img = np.arange(42, dtype=np.uint8).reshape(shape)
    out = as_rgb_uint8(img)
    assert out.shape == (6, 7, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], img.reshape(6, 7))


def test_rgba_drops_alpha():
    img = np.zeros((3, 3, 4), dtype=np.uint8)
    img[..., 0], img[..., 3] = 200, 17
    out = as_rgb_uint8(img)
    assert out.shape == (3, 3, 3)
    assert (out[..., 0] == 200).all() and (out[..., 1:] == 0).all()


def test_float_in_unit_range_is_scaled():
    img = np.full((2, 2, 3), 0.5, dtype=np.float32)
    img[0, 0] = 1.0
    out = as_rgb_uint8(img)
    assert out.dtype == np.uint8
    assert out[0, 0, 0] == 255 and out[1, 1, 0] == 128


def test_float_out_of_range_rejected():
    with pytest.raises(ValueError, match=r'\[0, 1\]'):
        as_rgb_uint8(np.full((2, 2, 3), 200.0))


def test_nan_rejected():
    img = np.zeros((2, 2, 3), dtype=np.float64)
    img[1, 1, 1] = np.nan
    with pytest.raises(ValueError, match='NaN'):
        as_rgb_uint8(img)


def test_uint16_scaled_and_wide_ints_checked():
    out = as_rgb_uint8(np.full((2, 2, 3), 65535, dtype=np.uint16))
    assert (out == 255).all()
    np.testing.assert_array_equal(as_rgb_uint8(np.full((2, 2), 9, dtype=np.int64)), 9)
    with pytest.raises(ValueError, match='outside'):
        as_rgb_uint8(np.full((2, 2, 3), 300, dtype=np.int32))
    with pytest.raises(ValueError, match='outside'):
        as_rgb_uint8(np.full((2, 2, 3), -1, dtype=np.int16))


@pytest.mark.parametrize('shape', [(0, 5, 3), (5, 0), (0, 0)])
def test_zero_size_rejected(shape):
    with pytest.raises(ValueError, match='empty'):
        as_rgb_uint8(np.zeros(shape, dtype=np.uint8))


@pytest.mark.parametrize('shape', [(5,), (2, 3, 4, 3)])
def test_wrong_ndim_rejected(shape):
    with pytest.raises(ValueError, match='shape'):
        as_rgb_uint8(np.zeros(shape, dtype=np.uint8))


def test_wrong_channel_count_rejected():
    with pytest.raises(ValueError, match='channels'):
        as_rgb_uint8(np.zeros((4, 4, 2), dtype=np.uint8))


def test_huge_rejected_without_allocating():
    # A broadcast view: shape of a 100k-pixel-wide image without the memory.
    huge = np.broadcast_to(np.uint8(0), (10, 100_000, 3))
    with pytest.raises(ValueError, match='maximum side'):
        as_rgb_uint8(huge)
    with pytest.raises(ValueError, match='maximum side of 64'):
        as_rgb_uint8(np.zeros((65, 10, 3), dtype=np.uint8), max_side=64)


@pytest.mark.parametrize('bad', [None, 'image.jpg', np.array([['a']], dtype=object)])
def test_non_arrays_rejected(bad):
    with pytest.raises(ValueError):
        as_rgb_uint8(bad)


def test_complex_rejected():
    with pytest.raises(ValueError, match='complex'):
        as_rgb_uint8(np.zeros((2, 2, 3), dtype=np.complex64))
