"""Face-free scenery for synthetic frames: an indoor room, and a camera moving over it.

* :func:`room_background`: a face-free, indoor-like scene (walls, floor,
  furniture, shelves of books, a window, posters, plants, skin-coloured
  blobs, fine texture), seeded.  Not a flat grey: the face detector has edges,
  colours and skin-like patches to be wrong about.
* :class:`CameraView`: a hand-held or robot-mounted camera over such a scene:
  slow pan, small shake and zoom, per-frame sensor noise and flicker.

Numpy and OpenCV only, and nothing of the package above it: the benchmarks
(:mod:`nlml_hpe.bench.sequences`, :mod:`nlml_hpe.bench.photos`) and the
training renders of the uncertainty stage (:mod:`training.camera_conditions`)
both draw their rooms here.  The shipped uncertainty model was fitted on
renders over these rooms: a seed must keep giving the same picture.
"""

import math

import cv2
import numpy as np


def _texture(rng, height, width, scale, amplitude):
    """Smooth random texture ``(h, w, 1)`` float of about ``amplitude`` grey levels."""
    small = rng.normal(0.0, 1.0, (max(height // scale, 2), max(width // scale, 2), 1))
    tex = cv2.resize(small.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    return tex[..., None] * amplitude


def _colour(rng, lo=30, hi=225):
    return tuple(int(v) for v in rng.integers(lo, hi, 3))


def _furniture(img, rng, floor_y):
    h, w = img.shape[:2]
    for _ in range(int(rng.integers(3, 7))):
        x0 = int(rng.uniform(-0.1, 0.9) * w)
        bw, bh = int(rng.uniform(0.08, 0.35) * w), int(rng.uniform(0.15, 0.6) * h)
        y1 = int(floor_y + rng.uniform(-0.05, 0.15) * h)
        col = _colour(rng)
        cv2.rectangle(img, (x0, y1 - bh), (x0 + bw, y1), col, -1)
        cv2.rectangle(img, (x0, y1 - bh), (x0 + bw, y1), tuple(c // 2 for c in col), 2)
        if rng.random() < 0.5:  # a shelf of books
            y = y1 - bh + 6
            while y < y1 - 20:
                x = x0 + 4
                while x < x0 + bw - 8:
                    bw_book = int(rng.integers(4, 12))
                    cv2.rectangle(img, (x, y + int(rng.integers(0, 8))), (x + bw_book, y + 22),
                                  _colour(rng, 20, 240), -1)
                    x += bw_book + 1
                y += 30
                cv2.line(img, (x0, y - 2), (x0 + bw, y - 2), tuple(c // 2 for c in col), 3)


def _decor(img, rng, floor_y):
    h, w = img.shape[:2]
    if rng.random() < 0.7:  # a window: bright, with a cross frame
        x0, y0 = int(rng.uniform(0, 0.7) * w), int(rng.uniform(0.05, 0.2) * h)
        ww, wh = int(rng.uniform(0.15, 0.3) * w), int(rng.uniform(0.2, 0.35) * h)
        cv2.rectangle(img, (x0, y0), (x0 + ww, y0 + wh), _colour(rng, 200, 255), -1)
        cv2.rectangle(img, (x0, y0), (x0 + ww, y0 + wh), (235, 235, 230), 5)
        cv2.line(img, (x0 + ww // 2, y0), (x0 + ww // 2, y0 + wh), (235, 235, 230), 4)
        cv2.line(img, (x0, y0 + wh // 2), (x0 + ww, y0 + wh // 2), (235, 235, 230), 4)
    for _ in range(int(rng.integers(1, 4))):  # posters with stripes and blobs
        x0, y0 = int(rng.uniform(0, 0.85) * w), int(rng.uniform(0.05, 0.4) * h)
        pw, ph = int(rng.uniform(0.06, 0.14) * w), int(rng.uniform(0.1, 0.2) * h)
        cv2.rectangle(img, (x0, y0), (x0 + pw, y0 + ph), _colour(rng), -1)
        for _ in range(4):
            c = (x0 + int(rng.uniform(0, pw)), y0 + int(rng.uniform(0, ph)))
            cv2.circle(img, c, int(rng.uniform(3, max(pw // 4, 4))), _colour(rng), -1)
    for _ in range(int(rng.integers(1, 3))):  # plants and lamps
        c = (int(rng.uniform(0, 1) * w), int(floor_y - rng.uniform(0.05, 0.3) * h))
        axes = (int(rng.uniform(0.03, 0.08) * w), int(rng.uniform(0.05, 0.12) * h))
        col = (int(rng.integers(20, 80)), int(rng.integers(90, 170)), int(rng.integers(20, 80)))
        cv2.ellipse(img, c, axes, 0, 0, 360, col, -1)
    for _ in range(int(rng.integers(1, 3))):  # skin-coloured blobs (hands, a ball, a lamp)
        c = (int(rng.uniform(0, 1) * w), int(rng.uniform(0.2, 0.9) * h))
        r = int(rng.uniform(0.015, 0.04) * w)
        skin = tuple(int(rng.integers(lo, hi)) for lo, hi in ((170, 230), (120, 170), (90, 140)))
        cv2.ellipse(img, c, (r, int(r * 1.3)), float(rng.uniform(0, 180)), 0, 360, skin, -1)


def room_background(width, height, rng):
    """Return a face-free indoor-like scene, RGB ``uint8 (height, width, 3)``."""
    wall_a, wall_b = np.array(_colour(rng, 90, 230), float), np.array(_colour(rng, 60, 200), float)
    ramp = np.linspace(0.0, 1.0, height)[:, None, None]
    img = (wall_a * (1 - ramp) + wall_b * ramp) * np.ones((1, width, 1))
    img += _texture(rng, height, width, 40, 10.0)
    floor_y = int(rng.uniform(0.65, 0.8) * height)
    img[floor_y:] = np.array(_colour(rng, 50, 160), float)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for x in range(-width, 2 * width, int(rng.integers(40, 90))):  # floorboards in perspective
        cv2.line(img, (width // 2 + (x - width // 2) // 4, floor_y), (x, height),
                 (60, 50, 40), 1)
    _furniture(img, rng, floor_y)
    _decor(img, rng, floor_y)
    out = img.astype(np.float32) + _texture(rng, height, width, 3, 5.0)
    return cv2.GaussianBlur(np.clip(out, 0, 255).astype(np.uint8), (3, 3), 0.8)


class CameraView:
    """A moving camera over a still scene: pan, shake, zoom, flicker and sensor noise.

    ``scene`` is larger than the frame ``size`` (the view moves inside it);
    ``pan_px`` the amplitude of the slow pan, ``shake_px`` of the shake,
    ``noise`` the sensor noise's standard deviation (grey levels).
    """

    def __init__(self, scene, size, rng, pan_px=40.0, shake_px=1.5, noise=3.0):
        self.scene = scene
        self.size = tuple(int(v) for v in size)
        sh, sw = scene.shape[:2]
        w, h = self.size
        if sw < w or sh < h:
            raise ValueError(f'scene {sw}x{sh} is smaller than the frame {w}x{h}')
        self.room = ((sw - w) / 2.0, (sh - h) / 2.0)
        self.pan = (min(pan_px, self.room[0]), min(pan_px / 2, self.room[1]))
        self.shake_px = float(shake_px)
        self.phase = rng.uniform(0, 2 * math.pi, 4)
        self.period = rng.uniform(8.0, 20.0, 2)
        self.noise = [rng.normal(0.0, noise, (h, w, 3)).astype(np.int16) for _ in range(6)]
        self.rng = rng

    def frame(self, t):
        """Return the scene as the camera sees it at time ``t`` (s), without noise."""
        w, h = self.size
        s = self.shake_px
        dx = self.pan[0] * math.sin(2 * math.pi * t / self.period[0] + self.phase[0])
        dy = self.pan[1] * math.sin(2 * math.pi * t / self.period[1] + self.phase[1])
        dx += s * math.sin(11.0 * t + self.phase[2]) + s * 0.5 * math.sin(23.0 * t)
        dy += s * math.sin(13.0 * t + self.phase[3])
        zoom = 1.0 + 0.01 * math.sin(0.7 * t)
        m = np.array([[zoom, 0.0, -(self.room[0] + dx) * zoom],
                      [0.0, zoom, -(self.room[1] + dy) * zoom]])
        return cv2.warpAffine(self.scene, m, (w, h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT)

    def finish(self, rgb, t):
        """Add flicker and sensor noise to a composed frame; return ``uint8``."""
        gain = 1.0 + 0.02 * math.sin(2 * math.pi * 0.5 * t)
        noise = self.noise[int(self.rng.integers(len(self.noise)))]
        shift = int(self.rng.integers(noise.shape[0]))
        out = np.asarray(rgb, np.float32) * gain + np.roll(noise, shift, axis=0)
        return np.clip(out, 0, 255).astype(np.uint8)
