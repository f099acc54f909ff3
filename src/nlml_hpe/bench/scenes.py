"""Picture-making for the tracking benchmark: backgrounds, camera shake, noise, rendered heads.

* :func:`room_background`: a face-free, indoor-like scene (walls, floor,
  furniture, shelves of books, a window, posters, plants, skin-coloured
  blobs, fine texture), seeded.  Not a flat grey: the face detector has edges,
  colours and skin-like patches to be wrong about.
* :class:`CameraView`: a hand-held or robot-mounted camera over such a scene:
  slow pan, small shake and zoom, per-frame sensor noise and flicker.
* :class:`HeadKit`: ICT-FaceKit identities rendered with the training renderer
  (``training/render.py``, moderngl over EGL) at a pose, position and
  expression; returns the image, the head's pixel mask and its 468 projected
  MediaPipe-like landmarks (the ground-truth box is their bounding box, the
  same definition as the estimator's face box).
* :func:`held_out_identities`: identity coefficients drawn from the training
  distribution (N(0, 1) per ICT-FaceKit mode) from a random stream of this
  benchmark's own; the training pipeline draws its training and held-out
  identities from ``default_rng(seed)`` (``training/faces.py``), a different
  stream, so none of these faces was seen in training or calibration.

``training`` is a folder beside ``src/`` in a source checkout;
:func:`import_training` finds it or says why it cannot.
"""

import importlib
import math
from pathlib import Path
import sys

import cv2
import numpy as np

#: Stream key of the benchmark's identities (SeedSequence entropy beside the seed).
IDENTITY_STREAM = 0x7472616B


def import_training():
    """Return the ``training`` package (source checkout), or raise RuntimeError with why not."""
    repo = Path(__file__).resolve().parents[3]
    if (repo / 'training' / '__init__.py').is_file() and str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    try:
        return importlib.import_module('training')
    except ImportError as exc:
        raise RuntimeError('rendered sequences need the training package (training/ beside '
                           f'src/ in a source checkout): {exc}') from exc


# ----------------------------------------------------------------------- backgrounds

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


# ----------------------------------------------------------------------- rendered heads

def held_out_identities(n_modes, n, seed):
    """Identity coefficients ``(n, n_modes)`` ~ N(0, 1) from the benchmark's own stream."""
    rng = np.random.default_rng([int(seed), IDENTITY_STREAM])
    return rng.normal(0.0, 1.0, (int(n), int(n_modes)))


class HeadKit:
    """Renders ICT-FaceKit heads (any identity and expression) for benchmark frames.

    One GL renderer per frame size; :meth:`release` frees them.  Raises
    RuntimeError (with the reason) when the training package, the model file
    or a headless OpenGL context is unavailable.
    """

    def __init__(self, ict_npz):
        import_training()
        render = importlib.import_module('training.render')
        ok, why = render.renderer_available()
        if not ok:
            raise RuntimeError(why)
        faces = importlib.import_module('training.faces')
        self._corr_mod = importlib.import_module('training.correspondence')
        self._project = render.project
        self.source = faces.ICTFaceKit(ict_npz)
        self._cfg = {'path': str(ict_npz)}
        with np.load(self._corr_mod.SHIPPED, allow_pickle=False) as data:
            self.corr = {k: data[k] for k in data.files}
        self.expression_names = self.source.expression_names
        self._renderers = {}

    @property
    def n_identity_modes(self):
        """Number of identity coefficients."""
        return len(self.source.identity_modes)

    def base(self, identity):
        """Return an identity at rest: its model-frame and landmark-triangle vertices."""
        ident = np.asarray(identity, float)
        flat = self.corr['tri_vertices'].ravel()
        return {'vertices': self.source.vertices(ident),
                'landmark_vertices': self.source.vertices(ident, index=flat)}

    def shape(self, base, expression):
        """Head-frame ``(vertices (V, 3), 468 landmark points (468, 3))`` (cm).

        The landmark points are :func:`training.correspondence.landmarks_of`'s,
        with the identity part computed once in :meth:`base`.
        """
        expr = np.asarray(expression, float)
        active = np.flatnonzero(expr)
        verts, lmv = base['vertices'], base['landmark_vertices']
        if len(active):
            modes = self.source.expression_modes[active]
            verts = verts + np.tensordot(expr[active], modes, 1)
            flat = self.corr['tri_vertices'].ravel()
            lmv = lmv + np.tensordot(expr[active], modes[:, flat], 1)
        points = np.einsum('lkd,lk->ld', lmv.reshape(468, 3, 3), self.corr['bary'])
        to_head = self._corr_mod.to_head_frame
        return to_head(verts, self.corr), to_head(points, self.corr)

    def _renderer(self, size):
        if size not in self._renderers:
            self._renderers[size] = self._corr_mod.make_renderer(self.source, self._cfg, size)
        return self._renderers[size]

    def render(self, size, vertices, points, rotation, distance, focal, offset_px):
        """Return ``(rgb uint8, mask bool, landmarks (468, 3) px)`` of one head.

        ``rotation``: head-to-viewer; ``distance`` (cm) and ``offset_px``: where
        the head origin is (see :mod:`training.render`); ``mask``: the pixels the
        head covers (its depth is written there).
        """
        r = self._renderer(tuple(size))
        rgb = r.render(vertices, rotation, float(distance), float(focal), offset_px)
        with r.ctx:
            depth = np.frombuffer(r.fbo.read(components=1, attachment=-1, dtype='f4'),
                                  np.float32)
        w, h = size
        mask = depth.reshape(h, w)[::-1] < 1.0
        lm = self._project(points, rotation, float(distance), float(focal), tuple(size),
                           offset_px)
        return rgb, mask, lm

    def head(self, size=(640, 480), identity=None, expression=None):
        """Return one identity (default: the mean face) ready to render: a :class:`Head`."""
        ident = np.zeros(self.n_identity_modes) if identity is None else identity
        expr = np.zeros(len(self.expression_names)) if expression is None else expression
        return Head(self, tuple(size), *self.shape(self.base(ident), expr))

    def release(self):
        """Free the GL contexts."""
        for r in self._renderers.values():
            r.release()
        self._renderers.clear()


class Head:
    """One head of a :class:`HeadKit`, rendered at any pose (tests and tools).

    ``render(pitch, yaw, roll)`` (degrees, :func:`nlml_hpe.geometry.euler_to_matrix`)
    gives the RGB frame of the head at ``distance`` cm, ``focal`` px (default:
    the frame's larger side), ``offset_px`` from the frame's centre.
    """

    def __init__(self, kit, size, vertices, points):
        self.kit, self.size, self.vertices, self.points = kit, size, vertices, points

    def frame(self, pitch, yaw, roll, distance=60.0, focal=None, offset_px=(0.0, 0.0)):
        """Return ``(rgb, mask, landmarks (468, 3) px)`` of the head (:meth:`HeadKit.render`)."""
        from ..geometry import euler_to_matrix

        focal = float(max(self.size)) if focal is None else float(focal)
        return self.kit.render(self.size, self.vertices, self.points,
                               euler_to_matrix(pitch, yaw, roll), distance, focal, offset_px)

    def render(self, pitch, yaw, roll, distance=60.0, focal=None, offset_px=(0.0, 0.0)):
        """Return the RGB ``uint8 (H, W, 3)`` frame of the head at (pitch, yaw, roll)."""
        return self.frame(pitch, yaw, roll, distance, focal, offset_px)[0]
