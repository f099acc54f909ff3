"""Camera conditions of the uncertainty stage's renders: what a robot's camera sees.

The training renderer (:mod:`training.render`) draws a bald, evenly lit face of
one skin tone on flat grey, without noise: the easiest picture a landmark model
can get.  Sigma fitted on such renders describes a studio, not a robot in a
living room.  This module gives every render a draw of the conditions a social
robot's camera meets, per sample, from one documented mixture
(:data:`DEFAULTS`, overridable under ``uncertainty.conditions``); its weights are
chosen on principle (below), not from any real labelled faces.

**Face** (baked into the per-vertex colours before rendering,
:meth:`Appearance.colours`): skin tone from very light to very dark (six
Fitzpatrick-like albedos, equally likely: robots meet everyone); hair
(helmet-shaped, with a random hairline) of five colours on most heads; a key
light from a random direction with a random fill ratio (rooms have windows and
ceiling lamps, seldom a light at the camera).

**Scene** (:meth:`Appearance.finish`, on the image): the background (flat grey as
before, an indoor room scene of :func:`nlml_hpe.scenery.room_background`,
or fine clutter); partial occluders drawn over the face (glasses, a hand, a band
of hair or a hat brim, an object held before the mouth, or a *screen*: a
monitor, a door frame or another person's shoulder hiding a fifth to a half of
the face from one side) at rates of everyday life (about four in ten adults
wear glasses; hands touch the face often but briefly).

**Camera**: lower resolution (an upscaled low-resolution stream), defocus or
motion blur (robots and people move; cheap lenses), exposure and white-balance
errors and a gamma, signal-dependent sensor noise (indoor light, small
sensors), JPEG compression (USB cameras stream MJPEG).

Each sample's draw is kept as one row of :data:`COLUMNS` (``conditions`` in the
stage's ``samples.npz``), so that calibration can be broken down by condition.
"""

import cv2
import numpy as np

from nlml_hpe.scenery import room_background

#: The mixture (probabilities and ranges; see the module docstring for why).
DEFAULTS = {
    'enabled': True,
    'skin_tones': 6,                    # Fitzpatrick-like levels, equally likely
    'hair': 0.85,                       # share of heads with hair
    'fill': [0.15, 0.7],                # fill (ambient) share of the light
    'light_azimuth_deg': 75.0,          # key light within +-this of the camera axis
    'light_elevation_deg': [-15.0, 60.0],
    'background': {'grey': 0.2, 'room': 0.5, 'clutter': 0.3},
    'occluder': {'none': 0.5, 'glasses': 0.3, 'hand': 0.06, 'band': 0.05, 'object': 0.04,
                 'screen': 0.05},
    'low_resolution': 0.3,              # share streamed at a lower resolution ...
    'resolution_scale': [0.35, 0.8],    # ... of this scale, then upscaled
    'blur': {'none': 0.5, 'defocus': 0.3, 'motion': 0.2},
    'defocus_px': [0.6, 2.0],           # Gaussian sigma at 640x480
    'motion_px': [2.0, 10.0],           # motion streak length at 640x480
    'exposure': [0.6, 1.6],             # log-uniform gain
    'gamma': [0.8, 1.25],
    'white_balance': 0.1,               # per-channel gain within +-this
    'noise': [1.0, 8.0],                # read noise (grey levels), plus shot noise
    'jpeg': 0.7,                        # share JPEG-compressed ...
    'jpeg_quality': [35, 95],           # ... at this quality
}
#: Columns of a draw (:meth:`Appearance.draw`); kinds are indices into the tables above.
COLUMNS = ('skin_tone', 'hair', 'fill', 'light_azimuth', 'light_elevation', 'background',
           'occluder', 'resolution_scale', 'blur', 'blur_px', 'blur_angle', 'exposure', 'gamma',
           'wb_r', 'wb_g', 'wb_b', 'noise', 'jpeg_quality', 'seed')
#: Skin albedos (RGB, 0-1) from very light to very dark.
SKIN_TONES = np.array([[0.92, 0.74, 0.64], [0.86, 0.65, 0.53], [0.78, 0.57, 0.44],
                       [0.64, 0.45, 0.33], [0.47, 0.32, 0.23], [0.30, 0.20, 0.15]])
HAIR_COLOURS = np.array([[0.05, 0.04, 0.04], [0.17, 0.11, 0.07], [0.36, 0.24, 0.15],
                         [0.66, 0.53, 0.33], [0.62, 0.62, 0.60]])


def options(cfg_conditions):
    """Merge ``uncertainty.conditions`` over :data:`DEFAULTS` and validate it."""
    opts = dict(DEFAULTS, **(cfg_conditions or {}))
    for key in ('background', 'occluder', 'blur'):
        table = dict(DEFAULTS[key], **(cfg_conditions or {}).get(key, {}))
        if set(table) != set(DEFAULTS[key]) or min(table.values()) < 0 or \
                sum(table.values()) <= 0:
            raise ValueError(f'uncertainty.conditions.{key} must give non-negative weights '
                             f'to {sorted(DEFAULTS[key])}')
        opts[key] = table
    for key in ('hair', 'low_resolution', 'jpeg'):
        if not 0.0 <= float(opts[key]) <= 1.0:
            raise ValueError(f'uncertainty.conditions.{key} must be in [0, 1]')
    for key in ('fill', 'light_elevation_deg', 'resolution_scale', 'defocus_px', 'motion_px',
                'exposure', 'gamma', 'noise', 'jpeg_quality'):
        lo, hi = (float(v) for v in opts[key])
        if not lo <= hi:
            raise ValueError(f'uncertainty.conditions.{key} must be [low, high]')
    if not 1 <= int(opts['skin_tones']) <= len(SKIN_TONES):
        raise ValueError(f'uncertainty.conditions.skin_tones must be 1..{len(SKIN_TONES)}')
    return opts


def _pick(rng, table):
    """Index of a key of ``table`` drawn with the table's weights."""
    p = np.array(list(table.values()), float)
    return int(rng.choice(len(p), p=p / p.sum()))


def draw(o, rng):
    """One draw of the conditions ``o`` (:func:`options`): a row of :data:`COLUMNS`."""
    az = np.radians(rng.uniform(-1.0, 1.0) * float(o['light_azimuth_deg']))
    el = np.radians(rng.uniform(*o['light_elevation_deg']))
    blur = _pick(rng, o['blur'])
    blur_px = (0.0 if blur == 0 else
               rng.uniform(*o['defocus_px' if blur == 1 else 'motion_px']))
    low = rng.random() < float(o['low_resolution'])
    wb = 1.0 + rng.uniform(-1.0, 1.0, 3) * float(o['white_balance'])
    return np.array([
        rng.integers(int(o['skin_tones'])), float(rng.random() < float(o['hair'])),
        rng.uniform(*o['fill']), az, el, _pick(rng, o['background']),
        _pick(rng, o['occluder']), rng.uniform(*o['resolution_scale']) if low else 1.0,
        blur, blur_px, rng.uniform(0.0, np.pi),
        np.exp(rng.uniform(*np.log(np.asarray(o['exposure'], float)))),
        rng.uniform(*o['gamma']), *wb / wb.mean(), rng.uniform(*o['noise']),
        rng.uniform(*o['jpeg_quality']) if rng.random() < float(o['jpeg']) else 0.0,
        rng.integers(2 ** 31)])


class Appearance:
    """Applies drawn camera conditions (:func:`draw`) to one renderer's faces.

    ``colours`` ``(V, 3)``: the renderer's per-vertex colours
    (:func:`training.render.ict_appearance`); ``neutral`` ``(V, 3)``: the mean
    head in the head frame (cm; x left, y up, z out of the face), which places
    the hair; ``opts``: :func:`options`.
    """

    def __init__(self, colours, neutral, opts):
        from .render import SKIN

        self.opts = opts
        self.base = np.asarray(colours, np.float64)
        self.skin = np.all(np.isclose(self.base, SKIN), axis=1)
        self.neutral = np.asarray(neutral, np.float64)

    def colours(self, cond, view_normals):
        """Per-vertex colours of a face under ``cond``, its normals in the viewer frame.

        Skin tone and hair change the albedo; the key light (direction in the
        viewer frame: x right, y up, z toward the camera) and fill shade it, on
        top of the renderer's own soft frontal light.
        """
        c = dict(zip(COLUMNS, cond))
        rng = np.random.default_rng(int(c['seed']))
        out = self.base.copy()
        tone = SKIN_TONES[int(c['skin_tone'])] * rng.uniform(0.95, 1.05, 3)
        out[self.skin] = self.base[self.skin] / np.array([0.80, 0.60, 0.50]) * tone
        if c['hair']:
            v = self.neutral
            front, back = rng.uniform(6.5, 9.5), rng.uniform(-7.0, -2.0)
            # Hairline: at the forehead in front, down to the nape behind the ears.
            line = np.where(v[:, 2] > 2.0, front,
                            back + (front - back) * np.clip((v[:, 2] + 12.0) / 14.0, 0, 1))
            hair = self.skin & (v[:, 1] > line) & ~((v[:, 2] > 2.0) & (v[:, 1] < front))
            out[hair] = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] * rng.uniform(0.8, 1.2)
        light = np.array([np.sin(c['light_azimuth']) * np.cos(c['light_elevation']),
                          np.sin(c['light_elevation']),
                          np.cos(c['light_azimuth']) * np.cos(c['light_elevation'])])
        shade = c['fill'] + (1.0 - c['fill']) * np.clip(view_normals @ light, 0.0, None)
        return out * (1.4 * shade)[:, None]

    def finish(self, rgb, head, cond, points):
        """Return the render ``rgb`` as the camera delivers it under ``cond``: ``uint8 (H, W, 3)``.

        ``head``: the pixels the head covers (bool ``(H, W)``); ``points``: its
        468 landmarks in the image (``(468, 2)`` px), which place the occluders.
        """
        c = dict(zip(COLUMNS, cond))
        rng = np.random.default_rng(int(c['seed']) + 1)
        h, w = rgb.shape[:2]
        img = rgb.astype(np.float32)
        kind = list(self.opts['background'])[int(c['background'])]
        if kind != 'grey':
            img = np.where(head[..., None], img, _background(kind, w, h, rng))
        _occlude(img, list(self.opts['occluder'])[int(c['occluder'])], points, rng)
        if c['resolution_scale'] < 1.0:
            small = cv2.resize(img, (max(int(w * c['resolution_scale']), 8),
                                     max(int(h * c['resolution_scale']), 8)),
                               interpolation=cv2.INTER_AREA)
            img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        img = _blur(img, int(c['blur']), c['blur_px'], c['blur_angle'])
        wb = np.array([c['wb_r'], c['wb_g'], c['wb_b']], np.float32)
        lin = np.clip(img / 255.0 * c['exposure'] * wb, 0.0, 1.0) ** c['gamma']
        # Read noise (drawn) and shot noise (variance 0.1 x signal, grey levels).
        noisy = lin * 255.0 + rng.normal(0.0, 1.0, lin.shape).astype(np.float32) * np.sqrt(
            c['noise'] ** 2 + 0.1 * lin * 255.0)
        out = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
        if c['jpeg_quality'] > 0:
            ok, buf = cv2.imencode('.jpg', out[..., ::-1],
                                   [cv2.IMWRITE_JPEG_QUALITY, int(c['jpeg_quality'])])
            out = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy()
        return out


def _background(kind, w, h, rng):
    """Return a face-free background ``float32 (h, w, 3)``: a room scene or fine clutter."""
    if kind == 'room':
        return room_background(w, h, rng).astype(np.float32)
    img = np.full((h, w, 3), rng.uniform(40, 210, 3), np.float32)
    for _ in range(int(rng.integers(20, 60))):
        x, y = int(rng.integers(-w // 8, w)), int(rng.integers(-h // 8, h))
        colour = tuple(float(v) for v in rng.uniform(0, 255, 3))
        if rng.random() < 0.5:
            cv2.rectangle(img, (x, y), (x + int(rng.integers(5, w // 4)),
                                        y + int(rng.integers(5, h // 4))), colour, -1)
        else:
            cv2.line(img, (x, y), (x + int(rng.integers(-w // 3, w // 3)),
                                   y + int(rng.integers(-h // 3, h // 3))), colour,
                     int(rng.integers(1, 6)))
    return cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.5, 3.0)))


def _occlude(img, kind, pts, rng):
    """Draw occluder ``kind`` over the face in place (landmarks ``pts`` place it)."""
    if kind == 'none':
        return
    eye_r, eye_l = pts[[33, 133]].mean(axis=0), pts[[263, 362]].mean(axis=0)
    iod = max(float(np.linalg.norm(eye_l - eye_r)), 4.0)
    scale = max(iod, float(np.linalg.norm(pts[10] - pts[152])) * 0.5)
    dark = tuple(float(v) for v in rng.uniform(5, 60, 3))
    if kind == 'glasses':
        # One lens per eye, as wide as the eye looks (foreshortened on a turned
        # face); the far lens is hidden behind the nose on a strongly turned one.
        thick = max(int(round(scale * rng.uniform(0.03, 0.08))), 1)
        tinted = rng.random() < 0.15
        widths = [float(np.linalg.norm(pts[a] - pts[b])) for a, b in ((33, 133), (263, 362))]
        for (a, b), width, centre in zip(((33, 133), (263, 362)), widths, (eye_r, eye_l)):
            if width < 0.4 * max(widths):
                continue
            angle = float(np.degrees(np.arctan2(*(pts[b] - pts[a])[::-1])))
            c, axes = tuple(int(v) for v in centre), (max(int(width * 0.8), 2),
                                                      max(int(scale * 0.28), 2))
            if tinted:
                cv2.ellipse(img, c, axes, angle, 0, 360, dark, -1)
            cv2.ellipse(img, c, axes, angle, 0, 360, dark, thick)
            cv2.line(img, tuple(int(v) for v in pts[168]), tuple(int(v) for v in pts[b]), dark,
                     thick)
    elif kind == 'hand':
        tone = SKIN_TONES[rng.integers(len(SKIN_TONES))] * 255 * rng.uniform(0.6, 1.1)
        anchor = pts[[152, 13, 234, 454][rng.integers(4)]]
        centre = anchor + rng.normal(0.0, 0.25, 2) * scale
        cv2.ellipse(img, tuple(int(v) for v in centre),
                    (int(scale * rng.uniform(0.35, 0.6)), int(scale * rng.uniform(0.5, 0.9))),
                    float(rng.uniform(0, 180)), 0, 360, tuple(float(v) for v in tone), -1)
    elif kind == 'band':
        top = pts[10] + (pts[10] - pts[168]) * rng.uniform(-0.6, 0.2)
        d = rng.normal(0.0, 0.15, 2) + np.array([1.0, 0.0])
        a, b = top - d * scale * 1.5, top + d * scale * 1.5
        cv2.line(img, tuple(int(v) for v in a), tuple(int(v) for v in b), dark,
                 max(int(scale * rng.uniform(0.2, 0.5)), 2))
    elif kind == 'screen':  # something nearer hides part of the face from one side
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        side, frac = int(rng.integers(4)), rng.uniform(0.2, 0.5)
        x0, y0, x1, y1 = -10.0, -10.0, img.shape[1] + 10.0, img.shape[0] + 10.0
        if side == 0:  # from below
            y0 = hi[1] - frac * (hi[1] - lo[1])
        elif side == 1:  # from the left
            x1 = lo[0] + frac * (hi[0] - lo[0])
        elif side == 2:  # from the right
            x0 = hi[0] - frac * (hi[0] - lo[0])
        else:  # from above
            y1 = lo[1] + frac * (hi[1] - lo[1])
        cv2.rectangle(img, (int(x0), int(y0)), (int(x1), int(y1)),
                      tuple(float(v) for v in rng.uniform(0, 255, 3)), -1)
    else:  # an object (cup, phone, microphone) held before the mouth or chin
        colour = tuple(float(v) for v in rng.uniform(0, 255, 3))
        c = pts[[13, 152][rng.integers(2)]] + rng.normal(0.0, 0.2, 2) * scale
        half = np.array([rng.uniform(0.2, 0.45), rng.uniform(0.3, 0.7)]) * scale
        cv2.rectangle(img, tuple(int(v) for v in c - half), tuple(int(v) for v in c + half),
                      colour, -1)


def _blur(img, kind, px, angle):
    """Defocus (Gaussian, ``px`` sigma) or motion blur (a ``px`` long streak at ``angle``)."""
    if kind == 1 and px > 0.2:
        return cv2.GaussianBlur(img, (0, 0), px)
    if kind == 2 and px >= 1.5:
        n = int(np.ceil(px)) | 1
        kernel = np.zeros((n, n), np.float32)
        d = np.array([np.cos(angle), np.sin(angle)]) * (px - 1) / 2.0
        c = np.array([n // 2, n // 2], float)
        cv2.line(kernel, tuple(int(round(v)) for v in c - d),
                 tuple(int(round(v)) for v in c + d), 1.0, 1)
        return cv2.filter2D(img, -1, kernel / max(kernel.sum(), 1e-6))
    return img


def head_mask(renderer):
    """Return the pixels (bool ``(H, W)``) the renderer's last render drew on.

    Read from its depth buffer, as :class:`nlml_hpe.bench.scenes.HeadKit` does.
    """
    w, h = renderer.size
    with renderer.ctx:
        depth = np.frombuffer(renderer.fbo.read(components=1, attachment=-1, dtype='f4'),
                              np.float32)
    return depth.reshape(h, w)[::-1] < 1.0
