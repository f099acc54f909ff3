"""Real faces moving across frames, and face-free video, for the tracking benchmark.

* :func:`photo_sequence`: AFLW2000-3D dev photos (validation only: nothing is
  fitted to them) chosen across |yaw| bins; each face in turn is pasted (the
  photo's region around its labelled face, feathered) over a room background
  and moved along a path for 1.5 s while it grows or shrinks and is blurred
  (defocus and motion blur), then 1.5 s of no face.  Every photo is another
  identity.  Ground truth: the labelled 68-point box carried along (its IoU
  with the 468-landmark box of the same face is ~0.8-0.9 on renders), visible
  throughout, and the label's (pitch, yaw, roll), taken as relative to the line
  of sight through the pasted face (so the orientation error of the published
  face frame is defined too).  Paths stay within about 20 % of the image
  centre, where a flat pasted picture still looks as its weak-perspective
  label says.  Photos labelled beyond :data:`MAX_TILT` in pitch or roll are
  left out (ambiguous Euler labels near |yaw| 90).
* :func:`face_free_sequence`: rooms seen by a moving, noisy camera, no one in
  them, a new room every 20 s: what the false tracks per minute are counted on.
"""

import math

import cv2
import numpy as np

from ..geometry import euler_to_matrix, face_frame_in_optical, rotation_between
from ..scenery import CameraView, room_background
from .aflw2000 import list_aflw2000, read_aflw_box, read_aflw_pose, read_rgb
from .sequences import FPS, FRAME_SIZE, Frame, Sequence, Truth, camera_matrix, yaw_bin

#: Frames a photo is shown, then frames of no face.
SHOWN, GAP = 45, 45
#: Context pasted around the labelled box, in box widths (feathered ellipse).
CONTEXT = 2.2
#: Photos whose label has |pitch| or |roll| beyond this (deg) are left out: near
#: |yaw| 90 such Euler labels are ambiguous (e.g. (-100.6, -74.2, 100.1)).
MAX_TILT = 60.0
#: Seconds of face-free video per room.
ROOM_S = 20.0


def pick_photos(directory, n, seed=0):
    """``[(rgb, label box, (pitch, yaw, roll)), ...]``: ``n`` photos spread over |yaw| bins.

    Round-robin over the bins (seeded order within each), so every bin gets its
    share as far as the split has faces in it.
    """
    rng = np.random.default_rng([int(seed), 0x70686F])
    bins = {}
    for jpg, mat in list_aflw2000(directory):
        pose = read_aflw_pose(mat)
        box = read_aflw_box(mat)
        if box is None or abs(pose[1]) > 90.0 or max(abs(pose[0]), abs(pose[2])) > MAX_TILT:
            continue
        bins.setdefault(yaw_bin(pose[1]), []).append((jpg, box, pose))
    order = {b: [items[i] for i in rng.permutation(len(items))] for b, items in bins.items()}
    chosen, k = [], 0
    while len(chosen) < n and any(k < len(v) for v in order.values()):
        for b in sorted(order):
            if k < len(order[b]) and len(chosen) < n:
                chosen.append(order[b][k])
        k += 1
    return [(read_rgb(jpg), box, tuple(float(a) for a in pose)) for jpg, box, pose in chosen]


def paste_photo(frame, rgb, label_box, centre, face_px, blur_sigma=0.0, motion=(0.0, 0.0)):
    """Paste ``rgb``'s labelled face, ``face_px`` wide, into ``frame`` (float32) at ``centre``.

    ``blur_sigma``: defocus (px); ``motion``: the face's displacement this frame
    (px), smeared over half of it.  Returns the label box in the frame's pixels.
    """
    x0, y0, x1, y1 = (float(v) for v in label_box)
    scale = face_px / max(x1 - x0, 1.0)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    fh, fw = frame.shape[:2]
    half = CONTEXT * face_px / 2.0
    rx0, ry0 = max(int(centre[0] - half), 0), max(int(centre[1] - half * 1.15), 0)
    rx1, ry1 = min(int(centre[0] + half) + 1, fw), min(int(centre[1] + half * 1.15) + 1, fh)
    if rx1 <= rx0 or ry1 <= ry0:
        return None
    src = rgb
    if scale < 1.0:  # area-average first, as a camera would integrate a far face
        src = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        m = np.array([[1.0, 0.0, centre[0] - scale * cx - rx0],
                      [0.0, 1.0, centre[1] - scale * cy - ry0]])
    else:
        m = np.array([[scale, 0.0, centre[0] - scale * cx - rx0],
                      [0.0, scale, centre[1] - scale * cy - ry0]])
    patch = cv2.warpAffine(src, m, (rx1 - rx0, ry1 - ry0), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT).astype(np.float32)
    if blur_sigma > 0.3:
        patch = cv2.GaussianBlur(patch, (0, 0), blur_sigma)
    length = 0.5 * math.hypot(*motion)
    if length >= 1.5:
        k = int(math.ceil(length)) | 1
        kernel = np.zeros((k, k), np.float32)
        c = k // 2
        d = np.asarray(motion, float) / max(math.hypot(*motion), 1e-9) * (k / 2.0)
        cv2.line(kernel, (int(round(c - d[0])), int(round(c - d[1]))),
                 (int(round(c + d[0])), int(round(c + d[1]))), 1.0, 1)
        patch = cv2.filter2D(patch, -1, kernel / kernel.sum())
    yy, xx = np.mgrid[ry0:ry1, rx0:rx1]
    r = np.hypot((xx - centre[0]) / half, (yy - centre[1]) / (half * 1.15))
    alpha = np.clip((1.0 - r) / 0.25, 0.0, 1.0)[..., None]
    region = frame[ry0:ry1, rx0:rx1]
    region[:] = alpha * patch + (1.0 - alpha) * region
    return (centre[0] - scale * (cx - x0), centre[1] - scale * (cy - y0),
            centre[0] + scale * (x1 - cx), centre[1] + scale * (y1 - cy))


def _segments(rng, n, size):
    """Per photo: start and end centre, start and end width, peak defocus."""
    w, h = size
    out = []
    for _ in range(n):
        c0 = (w / 2 + rng.uniform(-0.2, 0.2) * w, h / 2 + rng.uniform(-0.12, 0.12) * h)
        c1 = (w / 2 + rng.uniform(-0.2, 0.2) * w, h / 2 + rng.uniform(-0.12, 0.12) * h)
        out.append((np.array(c0), np.array(c1), rng.uniform(60, 150), rng.uniform(60, 150),
                    rng.uniform(0.0, 2.0)))
    return out


def _face_frame(pose, box, size):
    """REP-155 face frame in the optical frame: the label's pose on the face's line of sight."""
    w, h = size
    f = camera_matrix(size)[0, 0]
    ray = np.array([((box[0] + box[2]) / 2 - w / 2) / f, -((box[1] + box[3]) / 2 - h / 2) / f,
                    -1.0])
    return face_frame_in_optical(rotation_between(np.array([0.0, 0.0, -1.0]), ray)
                                 @ euler_to_matrix(*pose))


def photo_sequence(directory, n_faces=18, seed=0):
    """Return the :class:`Sequence` of ``n_faces`` real dev faces, one after another."""
    photos = pick_photos(directory, n_faces, seed)
    if not photos:
        raise ValueError(f'no usable labelled faces in {directory}')
    size = FRAME_SIZE
    n_frames = len(photos) * (SHOWN + GAP)

    def make():
        rng = np.random.default_rng([int(seed), 0x7265616C])
        segments = _segments(rng, len(photos), size)
        view = CameraView(room_background(int(size[0] * 1.25), int(size[1] * 1.25), rng),
                          size, rng, pan_px=20.0, shake_px=1.0)
        for i in range(n_frames):
            t = i / FPS
            k, j = divmod(i, SHOWN + GAP)
            frame = view.frame(t).astype(np.float32)
            truths = []
            if j < SHOWN:
                rgb, box, pose = photos[k]
                c0, c1, w0, w1, blur = segments[k]
                s, s_prev = j / (SHOWN - 1), max(j - 1, 0) / (SHOWN - 1)
                ease = 0.5 - 0.5 * math.cos(math.pi * s)
                ease_prev = 0.5 - 0.5 * math.cos(math.pi * s_prev)
                centre = c0 + (c1 - c0) * ease
                motion = (c1 - c0) * (ease - ease_prev)
                width = w0 + (w1 - w0) * ease
                label = paste_photo(frame, rgb, box, centre, width,
                                    blur * math.sin(math.pi * s), motion)
                clipped = (max(label[0], 0.0), max(label[1], 0.0), min(label[2], size[0]),
                           min(label[3], size[1]))
                truths.append(Truth(100 + k, clipped, 1.0, True, pose,
                                    _face_frame(pose, label, size)))
            yield Frame(i, t, view.finish(frame, t), truths)
    return Sequence('real_faces', 'real',
                    f'{len(photos)} AFLW2000 dev faces moved, scaled and blurred, one at a time',
                    n_frames, make, size)


def face_free_sequence(duration_s=180.0, seed=0):
    """Return the face-free :class:`Sequence`: rooms seen by a moving noisy camera."""
    if not duration_s > 0:
        raise ValueError(f'the face-free duration must be positive, got {duration_s}')
    size = FRAME_SIZE
    n_frames = int(round(duration_s * FPS))

    def make():
        rng = np.random.default_rng([int(seed), 0x66726565])
        view = None
        for i in range(n_frames):
            t = i / FPS
            if i % int(ROOM_S * FPS) == 0:
                scene = room_background(int(size[0] * 1.4), int(size[1] * 1.4), rng)
                view = CameraView(scene, size, rng, pan_px=60.0, shake_px=2.0, noise=4.0)
            yield Frame(i, t, view.finish(view.frame(t), t), [])
    return Sequence('face_free', 'face_free',
                    f'{duration_s / 60:.1f} min of rooms, moving noisy camera, no faces',
                    n_frames, make, size)
