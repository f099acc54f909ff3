"""Sequences of the tracking benchmark, deterministic from a seed, with per-frame ground truth.

Each :class:`Sequence` yields :class:`Frame` objects (RGB image, time, and one
:class:`Truth` per person in the scene: identity, box, visibility, pose).  Frames
are made lazily, at 30 fps, 640x480 with a 60 deg horizontal field of view
(:func:`camera_matrix`, given to the estimator as a robot's camera_info would).

Rendered heads (:data:`RENDERED`; ICT-FaceKit identities the training never saw,
with expressions it never drew: talking, full blinks, smiles) over moving room
backgrounds (:mod:`nlml_hpe.scenery`; the heads: :mod:`nlml_hpe.bench.scenes`):

* ``frontal``: a near-frontal face drifting slowly (3 s): the easy case.
* ``turn_yaw``: turning to +90 deg yaw and back, then to -90 and back.
* ``nod_pitch``: nodding to +60 and -60 deg pitch.
* ``occlusion``: a board rises in front of the face for 0.1, 0.25, 0.5 and 1 s.
* ``leave_reenter``: walking out of the frame and back, after a short (~0.6 s)
  and a long (~3.8 s) absence; the person is one identity throughout.
* ``crossing``: two people walking across, the nearer passing in front of
  the farther, and back.
* ``walk_away``: walking from 1 to 4 m (the face shrinks from ~85 to ~21 px).

Ground truth per person and frame: the box of its 468 projected landmarks (the
estimator's box definition; clipped to the image), ``visibility`` = fraction
of the box inside the image times the fraction of the head's pixels inside it
that nothing nearer covers, and the pose (pitch, yaw, roll relative to the line
of sight, the estimator's convention) with the REP-155 face frame in the
optical frame.  Status (:attr:`Truth.status`): *visible* (visibility at least
:data:`VISIBLE_MIN`: scored), *ignore* (in the image but less visible: a
don't-care region) or *absent* (out of the image).

Real dev faces and face-free video: :mod:`nlml_hpe.bench.photos`.
"""

from dataclasses import dataclass, field
import math

import cv2
import numpy as np

from ..geometry import euler_to_matrix, face_frame_in_optical, rotation_between
from ..scenery import CameraView, room_background
from .scenes import held_out_identities

FPS = 30.0
FRAME_SIZE = (640, 480)
HFOV_DEG = 60.0
#: A person is *visible* (scored) when at least this fraction of its face can be seen.
VISIBLE_MIN = 0.5
#: Edges (degrees) of the |yaw| bins the benchmark reports by, and of the |pitch| bins.
YAW_BINS = (0, 30, 50, 60, 70, 80, 90)
PITCH_BINS = (0, 30, 45, 60, 90)


def angle_bin(angle, edges=YAW_BINS):
    """Label of the bin of ``|angle|`` (degrees), e.g. ``'60-70'`` (beyond the edges: the last)."""
    a = abs(float(angle))
    for lo, hi in zip(edges[:-1], edges[1:]):
        if a < hi:
            return f'{lo}-{hi}'
    return f'{edges[-2]}-{edges[-1]}'


def bin_labels(edges=YAW_BINS):
    """All bin labels of ``edges``, in order."""
    return [f'{lo}-{hi}' for lo, hi in zip(edges[:-1], edges[1:])]


def yaw_bin(yaw):
    """Label of the |yaw| bin of ``yaw`` degrees (:data:`YAW_BINS`)."""
    return angle_bin(yaw, YAW_BINS)


def yaw_bin_labels():
    """All |yaw| bin labels, in order."""
    return bin_labels(YAW_BINS)


def camera_matrix(size, hfov_deg=HFOV_DEG):
    """Pinhole K ``(3, 3)`` of a centred camera with ``hfov_deg`` horizontal field of view."""
    w, h = size
    f = w / 2.0 / math.tan(math.radians(hfov_deg) / 2.0)
    return np.array([[f, 0.0, w / 2.0], [0.0, f, h / 2.0], [0.0, 0.0, 1.0]])


@dataclass
class Truth:
    """One person in one frame: ``identity``, ``box`` (x0, y0, x1, y1; clipped to the image).

    ``visibility`` in [0, 1]; ``in_frame``: any of the box inside the image;
    ``angles``: (pitch, yaw, roll) degrees relative to the line of sight (None
    when unknown); ``face_rotation``: the REP-155 face frame in the optical frame.
    """

    identity: int
    box: tuple
    visibility: float
    in_frame: bool
    angles: tuple = None
    face_rotation: np.ndarray = field(default=None, repr=False)

    @property
    def status(self):
        """``'visible'``, ``'ignore'`` (in the image, too little seen) or ``'absent'``."""
        if not self.in_frame:
            return 'absent'
        return 'visible' if self.visibility >= VISIBLE_MIN else 'ignore'


@dataclass
class Frame:
    """One frame: ``index``, time ``t`` (s), ``rgb`` uint8 and its ``truths``."""

    index: int
    t: float
    rgb: np.ndarray = field(repr=False)
    truths: list


@dataclass
class Sequence:
    """A named sequence: :meth:`frames` yields its :class:`Frame` objects, made on demand."""

    name: str
    kind: str  # 'rendered', 'real' or 'face_free'
    description: str
    n_frames: int
    make: object = field(repr=False)  # () -> iterator of Frame
    size: tuple = FRAME_SIZE
    fps: float = FPS

    @property
    def camera_matrix(self):
        """The sequence camera's K."""
        return camera_matrix(self.size)

    @property
    def duration_s(self):
        """Length in seconds."""
        return self.n_frames / self.fps

    def frames(self):
        """Iterate over the frames (the same ones every time)."""
        return self.make()


def keyframes(*keys):
    """Return ``f(t)``: cosine-eased interpolation through ``(t, value)`` keys, held outside."""
    times = np.array([k[0] for k in keys], float)
    values = np.array([np.atleast_1d(k[1]) for k in keys], float)
    if np.any(np.diff(times) <= 0):
        raise ValueError('keyframe times must increase')

    def f(t):
        if t <= times[0]:
            return values[0].copy()
        if t >= times[-1]:
            return values[-1].copy()
        i = int(np.searchsorted(times, t, side='right')) - 1
        s = (t - times[i]) / (times[i + 1] - times[i])
        s = 0.5 - 0.5 * math.cos(math.pi * s)
        return values[i] * (1 - s) + values[i + 1] * s
    return f


def facing_walk(place, amplitude_deg=35.0, pitch=0.0):
    """Pose ``f(t)`` of a person who turns toward where they walk (``place(t)``: x, y, depth)."""
    def pose(t):
        vx = (place(t + 0.05)[0] - place(t - 0.05)[0]) / 0.1  # cm/s
        return np.array([pitch, amplitude_deg * math.tanh(vx / 30.0), 0.0])
    return pose


class Expressions:
    """Talking (jaw), full blinks and a smile over time.

    Weights the training never drew: it draws three random blendshapes at up
    to 0.3 per sample.
    """

    def __init__(self, names, rng):
        idx = {n: i for i, n in enumerate(names)}
        self.n = len(names)
        self.jaw = idx.get('jawOpen')
        self.blink = [idx[n] for n in ('eyeBlink_L', 'eyeBlink_R') if n in idx]
        self.smile = [idx[n] for n in ('mouthSmile_L', 'mouthSmile_R') if n in idx]
        self.smile_weight = float(rng.uniform(0.0, 0.5))
        self.talk_hz = float(rng.uniform(2.5, 4.0))
        self.phase = float(rng.uniform(0, 2 * math.pi))
        self.blinks = np.cumsum(rng.uniform(1.5, 4.5, 40))

    def __call__(self, t):
        w = np.zeros(self.n)
        if self.jaw is not None and math.sin(2 * math.pi * t / 7.0 + self.phase) > -0.2:
            w[self.jaw] = 0.45 * max(0.0, math.sin(2 * math.pi * self.talk_hz * t + self.phase))
        if np.any((t >= self.blinks) & (t < self.blinks + 0.12)):
            w[self.blink] = 1.0
        w[self.smile] = self.smile_weight
        return w


@dataclass
class Actor:
    """A rendered person: ground-truth ``identity``, ICT ``coeffs`` and motion over time.

    ``pose(t)``: (pitch, yaw, roll) degrees, relative to the line of sight;
    ``place(t)``: head origin (x right, y down, depth) in cm in the camera frame.
    """

    identity: int
    coeffs: np.ndarray
    pose: object
    place: object
    expression: object = None


@dataclass
class Occluder:
    """Something in front of everyone: ``rect(t)`` -> (x0, y0, x1, y1) px or None; a texture."""

    rect: object
    texture: np.ndarray = field(repr=False)


def _layer_truth(actor, lm, mask, covered, rot, angles, size):
    """Ground truth of one rendered head, given what covers it (updates ``covered``)."""
    w, h = size
    x0, y0 = lm[:, 0].min(), lm[:, 1].min()
    x1, y1 = lm[:, 0].max(), lm[:, 1].max()
    cx0, cy0, cx1, cy1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(w)), min(y1, float(h))
    area = max((x1 - x0) * (y1 - y0), 1e-9)
    inside = max(cx1 - cx0, 0.0) * max(cy1 - cy0, 0.0)
    visibility = 0.0
    if inside > 0:
        r0, r1 = int(math.floor(cy0)), int(math.ceil(cy1))
        c0, c1 = int(math.floor(cx0)), int(math.ceil(cx1))
        region = mask[r0:r1, c0:c1]
        n = int(region.sum())
        if n:
            seen = int((region & ~covered[r0:r1, c0:c1]).sum())
            visibility = inside / area * seen / n
    covered |= mask
    box = (float(cx0), float(cy0), float(max(cx1, cx0)), float(max(cy1, cy0)))
    return Truth(actor.identity, box, float(visibility), bool(inside > 0),
                 tuple(float(a) for a in angles), face_frame_in_optical(rot))


def compose(kit, view, actors, occluders, t, size, focal, bases):
    """Render the actors (far to near) and occluders over the view at ``t``; ``(rgb, truths)``."""
    frame = view.frame(t).astype(np.float32)
    layers = []
    for actor in sorted(actors, key=lambda a: -a.place(t)[2]):
        x, y, depth = (float(v) for v in actor.place(t))
        angles = actor.pose(t)
        offset = (focal * x / depth, focal * y / depth)
        rot = rotation_between(np.array([0.0, 0.0, -1.0]), np.array([x, -y, -depth])) @ \
            euler_to_matrix(*(float(a) for a in angles))
        expr = actor.expression(t) if actor.expression else np.zeros(len(kit.expression_names))
        verts, points = kit.shape(bases[actor.identity], expr)
        rgb, mask, lm = kit.render(size, verts, points, rot, depth, focal, offset)
        alpha = cv2.GaussianBlur(mask.astype(np.float32), (3, 3), 0.6)[..., None]
        frame = frame * (1.0 - alpha) + rgb.astype(np.float32) * alpha
        layers.append((actor, lm, mask, rot, angles))
    covered = np.zeros((size[1], size[0]), bool)
    for occ in occluders:
        rect = occ.rect(t)
        if rect is None:
            continue
        x0, y0, x1, y1 = (int(round(v)) for v in rect)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, size[0]), min(y1, size[1])
        if x1 > x0 and y1 > y0:
            frame[y0:y1, x0:x1] = cv2.resize(occ.texture, (x1 - x0, y1 - y0))
            covered[y0:y1, x0:x1] = True
    truths = [_layer_truth(a, lm, m, covered, r, ang, size)
              for a, lm, m, r, ang in reversed(layers)]
    truths.sort(key=lambda tr: tr.identity)
    return view.finish(frame, t), truths


def _board(place, focal, size, start, duration, ramp=0.1):
    """Rect ``f(t)`` of a board rising from below to cover the head at ``place``.

    Fully up from ``start`` for ``duration`` s; ``ramp`` s to rise and to fall.
    """
    w, h = size

    def rect(t):
        if t < start - ramp or t > start + duration + ramp:
            return None
        x, y, depth = place(t)
        cx, cy = w / 2 + focal * x / depth, h / 2 + focal * y / depth
        half_w, half_h = focal * 13.0 / depth, focal * 15.0 / depth
        s = min(max((t - (start - ramp)) / ramp, 0.0), 1.0) if t < start else \
            min(max((start + duration + ramp - t) / ramp, 0.0), 1.0)
        top = h - s * (h - (cy - half_h))
        return (cx - half_w, top, cx + half_w, h)
    return rect


def _steady(x=0.0, y=0.0, depth=85.0, sway=8.0, period=7.0):
    return _place(lambda t: x + sway * math.sin(2 * math.pi * t / period), y, depth)


def _place(x, y, depth):
    """``place(t)`` from x, y, depth (cm): each a number or a function of t (or keyframes)."""
    parts = [v if callable(v) else (lambda t, v=v: v) for v in (x, y, depth)]

    def place(t):
        return np.array([float(np.ravel(p(t))[0]) for p in parts])
    return place


def _scenario(name, rng, ids, names):
    """``(duration s, actors, occluders)`` of rendered sequence ``name``.

    ``ids``: identity coefficients (8 rows); ``names``: the blendshape names.
    """
    size, f = FRAME_SIZE, camera_matrix(FRAME_SIZE)[0, 0]
    one, occluders = None, []
    if name == 'frontal':
        duration, place = 3.0, _steady(sway=10.0, period=6.0)
        one = Actor(0, ids[0], lambda t: np.array([4 * math.sin(t), 8 * math.sin(t / 1.3), 0]),
                    place)
    elif name == 'turn_yaw':
        duration = 11.0
        yaw = keyframes((0, 0), (0.5, 0), (2.5, 90), (3.2, 90), (5.2, 0), (5.7, 0), (7.7, -90),
                        (8.4, -90), (10.4, 0))
        one = Actor(1, ids[1], lambda t: np.array([3 * math.sin(t), yaw(t)[0], 0.0]),
                    _steady(depth=90.0, sway=5.0))
    elif name == 'nod_pitch':
        duration = 10.0
        pitch = keyframes((0, 0), (0.5, 0), (2.3, 60), (2.8, 60), (4.6, 0), (5.1, 0), (6.9, -60),
                          (7.4, -60), (9.2, 0))
        one = Actor(2, ids[2], lambda t: np.array([pitch(t)[0], 6 * math.sin(t / 1.7), 0.0]),
                    _steady(depth=85.0, sway=5.0))
    elif name == 'occlusion':
        duration, place = 10.5, _steady(sway=8.0, period=9.0)
        one = Actor(3, ids[3], lambda t: np.array([0.0, 15 * math.sin(t / 2.0), 0.0]), place)
        occluders = [Occluder(_board(place, f, size, s, d), room_background(200, 260, rng))
                     for s, d in ((1.5, 0.1), (3.5, 0.25), (5.5, 0.5), (8.0, 1.0))]
    elif name == 'leave_reenter':
        duration = 12.0
        x = keyframes((0, 0), (1, 0), (2.2, 75), (3.4, 0), (4.9, 0), (6.1, -85), (9.1, -85),
                      (10.3, 0))
        place = _place(x, 0.0, 100.0)
        one = Actor(4, ids[4], facing_walk(place), place)
    elif name == 'crossing':
        duration = 8.5
        xa = keyframes((0, -45), (0.5, -45), (3.5, 45), (4.5, 45), (7.5, -45))
        xb = keyframes((0, 60), (0.5, 60), (3.5, -60), (4.5, -60), (7.5, 60))
        near, far = _place(xa, 3.0, 90.0), _place(xb, -6.0, 150.0)
        actors = [Actor(5, ids[5], facing_walk(near, 25.0), near, Expressions(names, rng)),
                  Actor(6, ids[6], facing_walk(far, 25.0), far, Expressions(names, rng))]
        return duration, actors, occluders
    elif name == 'walk_away':
        duration = 7.5
        depth = keyframes((0, 100), (0.5, 100), (6.5, 400))
        place = _place(lambda t: 15 * math.sin(t / 2),
                       lambda t: 2 * math.sin(2 * math.pi * 1.8 * t), depth)
        one = Actor(7, ids[7], lambda t: np.array([0.0, 15 * math.sin(t / 1.5), 0.0]), place)
    else:
        raise ValueError(f'unknown rendered sequence {name!r}; known: {RENDERED}')
    one.expression = Expressions(names, rng)
    return duration, [one], occluders


#: The rendered sequences, in benchmark order.
RENDERED = ('frontal', 'turn_yaw', 'nod_pitch', 'occlusion', 'leave_reenter', 'crossing',
            'walk_away')
DESCRIPTIONS = {
    'frontal': 'near-frontal face drifting slowly, 0.8 m',
    'turn_yaw': 'turning to +90 and -90 deg yaw and back, 0.9 m',
    'nod_pitch': 'nodding to +60 and -60 deg pitch, 0.85 m',
    'occlusion': 'a board covers the face for 0.1, 0.25, 0.5 and 1 s',
    'leave_reenter': 'walks out of the frame and back (~0.6 s and ~3.8 s away), 1 m',
    'crossing': 'two people cross (0.9 m in front of 1.5 m), twice',
    'walk_away': 'walks from 1 m to 4 m (face ~85 to ~21 px)',
}


def rendered_sequence(kit, name, seed=0, time_scale=1.0):
    """Return the rendered :class:`Sequence` ``name`` (``time_scale`` < 1 shortens it)."""
    index = RENDERED.index(name) if name in RENDERED else -1
    duration, _, _ = _scenario(name, np.random.default_rng([seed, index + 1]),
                               held_out_identities(kit.n_identity_modes, 8, seed),
                               kit.expression_names)
    n_frames = int(round(duration * time_scale * FPS))
    size = FRAME_SIZE
    focal = camera_matrix(size)[0, 0]

    def make():
        rng = np.random.default_rng([seed, index + 1])
        ids = held_out_identities(kit.n_identity_modes, 8, seed)
        _, actors, occluders = _scenario(name, rng, ids, kit.expression_names)
        bases = {a.identity: kit.base(a.coeffs) for a in actors}
        scene = room_background(int(size[0] * 1.25), int(size[1] * 1.25), rng)
        view = CameraView(scene, size, rng, pan_px=20.0, shake_px=1.0)
        for i in range(n_frames):
            t = i / FPS
            rgb, truths = compose(kit, view, actors, occluders, t, size, focal, bases)
            yield Frame(i, t, rgb, truths)
    return Sequence(name, 'rendered', DESCRIPTIONS[name], n_frames, make, size)
