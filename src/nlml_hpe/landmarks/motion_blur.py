"""Linear motion blur around a small face: find it, measure it, undo it (Wiener).

A camera that turns during its exposure (a robot's head or base) smears the
frame along one line.  A far face loses the sideways detail the landmark model
reads yaw from, and the model's mesh comes out frontal: on real faces 40 px
wide a 9 px smear shrinks the read yaw to about 0.7 of the sharp reading.  Its
information is still in the frame, and undoing the smear with the right kernel
brings it back; the kernel is what has to be found.

:func:`measure` finds it from a window of the frame around the face, from the
autocorrelation of the window's gradients (whitened, so texture and noise of
any colour count alike):

* a sharp frame's gradients decorrelate within a pixel or two in every
  direction, a Gaussian (defocus) blur spreads them alike in every direction;
* a smear of length L along a line spreads them along that line only, over L
  pixels: that direction is the blur's (:data:`MIN_ALONG`, :data:`MIN_EXCESS`);
* the length is the one whose Wiener restoration leaves the least correlation
  along that line (too short leaves some, too long rings): measured on the
  window's power spectrum, without restoring it (:data:`LENGTHS`);
* past that length a smear's correlation is gone, a straight edge's (a door,
  a shelf, a photo's border) is not: such a window is no smear (:data:`MAX_TAIL`).

:func:`restore` undoes a :class:`Blur` in a region of the frame.  The landmark
stage reads a small smeared face's crop from the restored frame and from the
frame as it is, and keeps the reading of higher presence (:meth:`Restorer.read`;
which frames are checked: :class:`BlurChecks`); detection always sees the frame
as it is.  Nothing here is learnt: the thresholds were set on real photos from
the package registries (``tools/registry_faces.py``), not on the dev split,
though two dev checks steered the design (docs/robustness.md, round 6).
"""

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import fft as sfft
from scipy.fft import next_fast_len

from .roi import crop_box

#: Crops up to this wide (px; a crop is 1.5 face widths: faces up to 80 px) are checked.
MAX_CROP_PX = 120.0
#: The window measured: this many crop widths around the crop's centre, clamped.
WINDOW_CROPS = 2.0
WINDOW_PX = (96, 256)
#: Directions tried, and the lags of the profile along each.
ANGLES_DEG = np.arange(0.0, 180.0, 7.5)
LAGS = np.arange(0, 21, dtype=np.float32)
#: A smear: gradient autocorrelation at lag 3 along its line at least MIN_ALONG,
#: and at least MIN_EXCESS above the perpendicular's (a defocus blur has none).
MIN_ALONG = 0.5
MIN_EXCESS = 0.3
#: Smear lengths tried (px): coarse, then refined around the best.  A smear that
#: fits best at the longest or beyond is not undone (a camera turning 1 rad/s at
#: f = 600 px smears 6 px in a 10 ms exposure); such a line is mostly a straight edge.
LENGTHS = np.arange(3.0, 15.01, 1.0)
LENGTH_STEP = 0.25
#: A smear measured shorter is left as it is: its length is measured about a pixel
#: long, and undoing it cost more than it gave (registry faces at 40 px, drift under a
#: 5 px smear: 1.93 deg as it is, 2.16 undone, 1.99 with this floor).
MIN_LENGTH = 7.0
#: A smear's correlation along its line is gone TAIL_LAG past its length, within
#: MAX_TAIL of the perpendicular's; a straight edge's is not.
TAIL_LAG = 4
MAX_TAIL = 0.25
#: Wiener noise-to-signal ratio.
NSR = 0.01
#: Video: after a frame without a smear, the next check is this many frames later
#: (a smear is checked for again in every frame while it lasts).
CHECK_EVERY = 3


@dataclass(frozen=True)
class Blur:
    """A linear smear: its line's angle (deg, counter-clockwise from +x, image up), its length."""

    angle_deg: float
    length_px: float

    def kernel(self):
        """Return the smear's point-spread function, ``(n, n)`` float32 summing to 1."""
        return line_kernel(self.angle_deg, self.length_px)


def line_kernel(angle_deg, length_px):
    """Return a line of ``length_px`` at ``angle_deg``, splatted: ``(n, n)`` float32, sum 1."""
    half = int(np.ceil(length_px / 2)) + 1
    k = np.zeros((2 * half + 2, 2 * half + 2), np.float32)
    t = np.deg2rad(angle_deg)
    s = np.linspace(-length_px / 2, length_px / 2, max(int(length_px * 16), 2))
    x, y = half + s * np.cos(t), half - s * np.sin(t)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            np.add.at(k, (y0 + dy, x0 + dx), wy * wx)
    k = k[:2 * half + 1, :2 * half + 1]
    return k / k.sum()


def _otf(kernel, shape):
    """Return the kernel's transfer function on a ``shape`` grid (centred at 0), rfft2."""
    pad = np.zeros(shape, np.float32)
    kh, kw = kernel.shape
    pad[:kh, :kw] = kernel
    return np.fft.rfft2(np.roll(pad, (-(kh // 2), -(kw // 2)), axis=(0, 1)))


def _gradient_power(gray):
    """Return the power spectrum (rfft2) of the window's gradients: ``(power, shape)``.

    The x and y gradients' powers are summed (their filters applied to the
    tapered window's spectrum); padded by :data:`LAGS`' reach and more, so
    the autocorrelation does not wrap around up to the longest lag.
    """
    g = gray.astype(np.float32)
    h, w = g.shape
    taper = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    reach = int(LAGS[-1]) + 4
    shape = (next_fast_len(h + reach), next_fast_len(w + reach))
    f = np.fft.rfft2((g - g.mean()) * taper, s=shape)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    slope = 4.0 * (np.sin(np.pi * fx) ** 2 + np.sin(np.pi * fy) ** 2)
    return (f.real ** 2 + f.imag ** 2) * slope, shape


def _profiles(power, shape, angles_deg):
    """Return the autocorrelation of ``power`` along each angle at :data:`LAGS`, 1 at lag 0."""
    a = np.fft.irfft2(power, s=shape)
    a = np.fft.fftshift(a).astype(np.float32)
    cy, cx = shape[0] // 2, shape[1] // 2
    if a[cy, cx] <= 0:
        return np.zeros((len(angles_deg), len(LAGS)), np.float32)
    t = np.deg2rad(np.asarray(angles_deg, float))
    xs = (cx + np.cos(t)[:, None] * LAGS[None]).astype(np.float32)
    ys = (cy - np.sin(t)[:, None] * LAGS[None]).astype(np.float32)
    return cv2.remap(a / a[cy, cx], xs, ys, cv2.INTER_LINEAR)


def _along(power, shape, angle_deg):
    """``power`` summed over lines across ``angle_deg``: ``(f, q)``, the frequencies along it."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    t = np.deg2rad(angle_deg)
    f = (fx * np.cos(t) - fy * np.sin(t)).ravel()
    edges = np.linspace(-0.75, 0.75, 601)
    q = np.histogram(f, edges, weights=power.ravel())[0]
    return (edges[:-1] + edges[1:]) / 2, q


def _left_over(f, q, waves, length):
    """Correlation left along the line (lags 2-20) after a Wiener restoration of ``length``.

    The smear's transfer function depends on the frequency along its line only,
    so the gradients' power summed across the line (``f``, ``q``: :func:`_along`)
    gives the restored profile; ``waves``: ``cos(2 pi f lag)`` for those lags.
    """
    k2 = (np.sinc(f * length) * np.sinc(f)) ** 2  # the smear, over a pixel's width
    w = q * k2 / (k2 + NSR) ** 2
    total = w.sum()
    return float((((waves @ w) / total) ** 2).sum()) if total > 0 else np.inf


def measure(gray):
    """Return the linear smear of a grey window ``(h, w)``: a :class:`Blur`, or None.

    None: no smear (a sharp or defocused window, or one too small or flat to tell).
    """
    gray = np.asarray(gray)
    if gray.ndim != 2 or min(gray.shape) < 32:
        return None
    power, shape = _gradient_power(gray)
    p = _profiles(power, shape, ANGLES_DEG)
    k = int(np.argmax(p[:, 3]))
    perp = (k + len(ANGLES_DEG) // 2) % len(ANGLES_DEG)
    if p[k, 3] < MIN_ALONG or p[k, 3] - p[perp, 3] < MIN_EXCESS:
        return None
    angle = float(ANGLES_DEG[k])
    f, q = _along(power, shape, angle)
    waves = np.cos(2 * np.pi * f[None] * LAGS[2:, None])
    best = min(LENGTHS, key=lambda n: _left_over(f, q, waves, n))
    if best >= LENGTHS[-1]:  # the least left at the longest length or beyond
        return None
    fine = np.arange(best - 0.75, best + 0.76, LENGTH_STEP)
    best = min((n for n in fine if LENGTHS[0] <= n <= LENGTHS[-1]),
               key=lambda n: _left_over(f, q, waves, n))
    lag = int(round(best)) + TAIL_LAG  # at most 19: within LAGS, sampled in p already
    if best < MIN_LENGTH or p[k, lag] - p[perp, lag] > MAX_TAIL:
        return None
    return Blur(angle, float(best))


def window(box, width, height):
    """Return the window ``(x0, y0, x1, y1)`` :func:`measure` reads around a crop ``box``."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = max(box[2] - box[0], box[3] - box[1]) * WINDOW_CROPS
    half = float(np.clip(side, *WINDOW_PX)) / 2
    return (int(max(cx - half, 0)), int(max(cy - half, 0)),
            int(min(cx + half, width)), int(min(cy + half, height)))


def restore(rgb, region, blur, nsr=NSR):
    """Return ``region`` ``(x0, y0, x1, y1)`` of ``rgb`` with ``blur`` undone (Wiener), uint8."""
    x0, y0, x1, y1 = region
    pad = int(np.ceil(blur.length_px)) + 2
    h, w = y1 - y0 + 2 * pad, x1 - x0 + 2 * pad
    shape = (next_fast_len(h, real=True), next_fast_len(w, real=True))
    part = cv2.copyMakeBorder(np.ascontiguousarray(rgb[y0:y1, x0:x1]), pad,
                              shape[0] - h + pad, pad, shape[1] - w + pad, cv2.BORDER_REFLECT)
    k = _otf(blur.kernel(), shape)
    gain = (np.conj(k) / (k.real ** 2 + k.imag ** 2 + nsr)).astype(np.complex64)
    spectrum = sfft.rfft2(part.astype(np.float32), axes=(0, 1)) * gain[..., None]
    out = sfft.irfft2(spectrum, s=shape, axes=(0, 1))
    return np.clip(out[pad:pad + y1 - y0, pad:pad + x1 - x0] + 0.5, 0, 255).astype(np.uint8)


class Restorer:
    """One frame's small faces, each read from the frame with its own motion blur undone.

    :meth:`image_for` is given the image box of a crop about to be read.  A
    small crop's window is measured once per frame (a box centred in one
    measured before shares its result); where it is smeared, the crop is read
    from a copy of the frame whose surroundings of the crop (the window, at
    least twice the crop) are restored.  Only that crop is read from it: a
    background texture that looks smeared changes no other face's reading.
    Frames without a smeared small crop are never copied.
    """

    def __init__(self, rgb):
        self.rgb = rgb
        self._measured = []  # (box, image): the image its crops are read from
        self.blurs = []  # the Blur of each restored copy, for inspection

    def read(self, model, transforms, threads=None):
        """Read the crops of ``transforms`` with ``model`` (a LandmarkModel), restored if smeared.

        Returns ``model.read``'s ``(landmarks in crop pixels, presence)``.  A
        smeared crop is read twice, from its restored copy and from the frame as
        it is, and the reading of higher presence is kept: a straight edge or
        JPEG's blocks taken for a smear make the restored crop less of a face.
        """
        images = [self.image_for(crop_box(m)) for m in transforms]
        again = [j for j, image in enumerate(images) if image is not self.rgb]
        if not again:
            return model.read(self.rgb, transforms, threads)
        n = len(transforms)
        lm, presence = model.read(self.rgb, list(transforms) + [transforms[j] for j in again],
                                  threads, images + [self.rgb] * len(again))
        for k, j in enumerate(again):
            if presence[n + k] > presence[j]:
                lm[j], presence[j] = lm[n + k], presence[n + k]
        return lm[:n], presence[:n]

    def image_for(self, box):
        """Return the image to cut the crop of ``box`` ``(x0, y0, x1, y1)`` from."""
        size = max(box[2] - box[0], box[3] - box[1])
        if not 0 < size <= MAX_CROP_PX:
            return self.rgb
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        for b, image in self._measured:
            if b[0] <= cx <= b[2] and b[1] <= cy <= b[3]:
                return image
        image = self._restored(box, size, cx, cy)
        self._measured.append((tuple(box), image))
        return image

    def _restored(self, box, size, cx, cy):
        h, w = self.rgb.shape[:2]
        x0, y0, x1, y1 = window(box, w, h)
        blur = measure(cv2.cvtColor(self.rgb[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY))
        if blur is None:
            return self.rgb
        half = max(size, (x1 - x0) / 2, (y1 - y0) / 2)
        region = (int(max(cx - half, 0)), int(max(cy - half, 0)),
                  int(min(cx + half, w)), int(min(cy + half, h)))
        if region[2] - region[0] < 8 or region[3] - region[1] < 8:
            return self.rgb
        image = self.rgb.copy()
        image[region[1]:region[3], region[0]:region[2]] = restore(self.rgb, region, blur)
        self.blurs.append(blur)
        return image


class BlurChecks:
    """Which frames' small faces are checked for motion blur: each frame's :class:`Restorer`.

    Every single image; in video every :data:`CHECK_EVERY`-th frame, and every
    frame while one is smeared.
    """

    def __init__(self, streaming):
        self.streaming = bool(streaming)
        self._wait = 0  # video: frames until the next check (0: this one)

    def restorer(self, rgb):
        """Return the :class:`Restorer` of frame ``rgb``, or None when it is not checked."""
        if not self.streaming or self._wait <= 0:
            return Restorer(rgb)
        self._wait -= 1
        return None

    def done(self, restorer):
        """End a frame (its :meth:`restorer`): return how many crops were read restored."""
        if restorer is None:
            return 0
        if not restorer.blurs:
            self._wait = CHECK_EVERY - 1  # sharp: look again a few frames on
        return len(restorer.blurs)

    def reset(self):
        """Check the next frame (a new sequence)."""
        self._wait = 0
