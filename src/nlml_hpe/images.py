"""Validate and convert images to the ``uint8`` ``H x W x 3`` RGB arrays MediaPipe wants."""

import numpy as np

#: Default upper bound on either image side (pixels).
DEFAULT_MAX_SIDE = 8192


def as_rgb_uint8(image, *, max_side=DEFAULT_MAX_SIDE):
    """Return ``image`` as a C-contiguous ``uint8`` ``(H, W, 3)`` RGB array.

    Accepted inputs:

    * ``uint8`` ``(H, W, 3)`` (returned as is when already contiguous);
    * grayscale ``(H, W)`` or ``(H, W, 1)`` -> replicated to RGB;
    * RGBA ``(H, W, 4)`` -> alpha dropped;
    * float images with values in ``[0, 1]`` -> scaled by 255 and rounded;
    * ``uint16`` images -> scaled by ``255 / 65535``;
    * ``bool`` images -> 0 / 255.
    * other integer dtypes whose values already lie in ``[0, 255]``.

    Raises ``ValueError`` with an explanation for anything else: not an array,
    wrong number of dimensions or channels, zero size, a side larger than
    ``max_side``, NaN/inf or out-of-range values, unsupported dtypes.
    """
    if image is None:
        raise ValueError('image is None (was the file readable?)')
    arr = np.asarray(image)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f'image must be a numeric array, got dtype {arr.dtype}')
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ValueError(f'image must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), '
                         f'got {arr.shape}')
    h, w, c = arr.shape
    if h == 0 or w == 0:
        raise ValueError(f'image is empty (shape {arr.shape})')
    if c not in (1, 3, 4):
        raise ValueError(f'image must have 1, 3 or 4 channels, got {c} (shape {arr.shape})')
    if max(h, w) > max_side:
        raise ValueError(f'image of {w}x{h} pixels exceeds the maximum side of {max_side} px')
    arr = _to_uint8(arr)
    if c == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif c == 4:
        arr = arr[:, :, :3]
    return np.ascontiguousarray(arr)


def _to_uint8(arr):
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ValueError('image contains NaN or inf values')
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f'float images must have values in [0, 1], got [{lo:g}, {hi:g}]; '
                             'convert 0-255 data to uint8 first')
        return np.rint(arr * 255.0).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f'complex images are not supported (dtype {arr.dtype})')
    if arr.dtype == np.uint16:
        return np.rint(arr.astype(np.float32) * (255.0 / 65535.0)).astype(np.uint8)
    # Other integer types: accept only values that already fit uint8.
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi > 255:
        raise ValueError(f'integer image of dtype {arr.dtype} has values in [{lo}, {hi}], '
                         'outside [0, 255]; scale it to uint8 first')
    return arr.astype(np.uint8)


def square_crop(rgb, box, size):
    """Square ``size``-px crop around ``box`` ``(x0, y0, x1, y1)``, zero-padded outside the image.

    The box's longer side fills the crop (area-averaged when shrinking).
    """
    import cv2

    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0, 1.0)
    k = size / side
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    m = np.array([[k, 0.0, size / 2 - k * cx], [0.0, k, size / 2 - k * cy]])
    return cv2.warpAffine(np.ascontiguousarray(rgb), m, (size, size),
                          flags=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
