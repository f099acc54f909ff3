"""Scenes for the range and robustness benchmarks: backgrounds, pasted faces, camera faults.

A benchmark frame is built in three steps, each reproducible from a seed:

1. **Background** (:func:`make_background`), one of :data:`BACKGROUND_KINDS`:
   ``smooth`` (large soft colour blobs), ``clutter`` (high-contrast colour
   blobs every 40 px and hard-edged shapes: shelves, posters, cables),
   ``photo`` (a mosaic of real photos' non-face regions, :func:`photo_textures`),
   ``noisy`` (clutter under heavy per-pixel noise) and ``jpeg`` (clutter
   compressed to blocks at quality 15).
2. **Face** (:func:`paste_face`), one of :data:`PASTE_MODES`: ``ellipse``
   (the face and 2.2 box widths of its photo inside a feathered ellipse) or
   ``photo`` (the whole photo around the face, scaled with it, hard edges,
   as a person standing in a room is not cut out of one).  The face's
   labelled box goes within :data:`JITTER_PX` of the frame centre.
3. **Camera** (:func:`apply_fault`), one of :data:`FAULTS`, then the frame
   is stored as a camera stores it: JPEG at quality :data:`FRAME_JPEG_QUALITY`
   (quality 25 for the ``jpeg25`` fault).

Every frame draws its own background, so a result is an average over many
rooms, not one; :func:`frame_rng` gives each frame its own random stream, so
a frame is the same whichever subset of a benchmark runs.
"""

import cv2
import numpy as np

BACKGROUND_KINDS = ('smooth', 'clutter', 'photo', 'noisy', 'jpeg')
PASTE_MODES = ('ellipse', 'photo')
#: Camera faults: name -> description (what :func:`apply_fault` does).
FAULTS = {
    'none': 'clean',
    'blur': 'Gaussian blur sigma 1.5 px',
    'motion': 'horizontal motion blur over 9 px',
    'noise': 'sensor noise sigma 8',
    'dim': 'dim room: 255 * 0.35 * (v / 255) ** 2',
    'jpeg25': 'JPEG quality 25',
}
#: JPEG quality every frame is stored at (a camera's stream).
FRAME_JPEG_QUALITY = 92
#: The pasted face's box centre lies within this many pixels of the frame centre.
JITTER_PX = 24
#: ``ellipse`` paste: photo kept around the face, in label-box widths.
CONTEXT = 2.2
#: ``photo`` backgrounds: patches are cut this far (in label-box widths) from the face.
TEXTURE_MARGIN = 0.6
#: ... and a piece whose pixels spread less than this (std) is flat: a blank wall, a border.
FLAT_STD = 12.0
#: :func:`render_faces`: max |pitch|, |yaw|, |roll| (deg), the paper's range.
PAPER_RANGE = (40.0, 50.0, 30.0)


def frame_rng(seed, *keys):
    """Return the random generator of one frame: the run's seed and the frame's keys."""
    words = [int(seed)]
    for k in keys:
        words.extend(k.encode() if isinstance(k, str) else [int(k)])
    return np.random.default_rng(words)


def _blobs(width, height, rng, cell, lo, hi):
    """Colour blobs every ``cell`` px, values in ``[lo, hi]``, cubic-interpolated."""
    small = rng.integers(lo, hi + 1, (max(height // cell, 2), max(width // cell, 2), 3))
    big = cv2.resize(small.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    return big


def _noise(img, rng, sigma):
    return np.clip(img + rng.normal(0.0, sigma, img.shape), 0, 255).astype(np.uint8)


def _shapes(img, rng, count):
    """Draw ``count`` hard-edged rectangles, discs and thick lines of random colour."""
    h, w = img.shape[:2]
    for _ in range(count):
        colour = tuple(int(v) for v in rng.integers(30, 226, 3))
        kind = rng.integers(3)
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        s = int(rng.integers(8, max(w, h) // 6))
        if kind == 0:
            cv2.rectangle(img, (x, y), (x + s, y + int(rng.integers(4, s + 5))), colour, -1)
        elif kind == 1:
            cv2.circle(img, (x, y), s // 2, colour, -1, lineType=cv2.LINE_AA)
        else:
            x2, y2 = x + int(rng.integers(-2 * s, 2 * s)), y + int(rng.integers(-2 * s, 2 * s))
            cv2.line(img, (x, y), (x2, y2), colour, int(rng.integers(1, 6)), cv2.LINE_AA)
    return img


def smooth_background(width, height, rng):
    """Soft colour blobs every 60 px (values 40-215) and fine noise (sigma 6)."""
    return _noise(_blobs(width, height, rng, 60, 40, 215), rng, 6.0)


def clutter_background(width, height, rng):
    """High-contrast colour blobs every 40 px (30-225), hard-edged shapes, noise sigma 4."""
    img = np.clip(_blobs(width, height, rng, 40, 30, 225), 0, 255).astype(np.uint8)
    img = _shapes(np.ascontiguousarray(img), rng, width * height // 6000)
    return _noise(img.astype(np.float32), rng, 4.0)


def noisy_background(width, height, rng):
    """Clutter under heavy per-pixel colour noise (sigma 20)."""
    return _noise(clutter_background(width, height, rng).astype(np.float32), rng, 20.0)


def jpeg_background(width, height, rng):
    """Clutter compressed to 8x8 blocks (JPEG quality 15)."""
    return jpeg(clutter_background(width, height, rng), 15)


def photo_background(width, height, rng, textures):
    """Return a mosaic of real-photo patches (``textures``), in rows 30-120 px high."""
    if not textures:
        raise ValueError("the 'photo' background needs textures (photo_textures)")
    img = np.zeros((height, width, 3), np.uint8)
    y = 0
    while y < height:
        row_h = int(rng.integers(30, 121))
        x = 0
        while x < width:
            tex = textures[int(rng.integers(len(textures)))]
            tw = max(int(round(tex.shape[1] * row_h / tex.shape[0] * rng.uniform(0.7, 1.4))), 8)
            patch = cv2.resize(tex, (tw, row_h), interpolation=cv2.INTER_AREA)
            if rng.random() < 0.5:
                patch = patch[:, ::-1]
            ph, pw = min(row_h, height - y), min(tw, width - x)
            img[y:y + ph, x:x + pw] = patch[:ph, :pw]
            x += pw
        y += row_h
    return img


def make_background(kind, width, height, rng, textures=None):
    """Return a face-free RGB background of ``kind`` (:data:`BACKGROUND_KINDS`)."""
    makers = {'smooth': smooth_background, 'clutter': clutter_background,
              'noisy': noisy_background, 'jpeg': jpeg_background}
    if kind == 'photo':
        return photo_background(width, height, rng, textures)
    if kind not in makers:
        raise ValueError(f'background kind must be one of {BACKGROUND_KINDS}, got {kind!r}')
    return makers[kind](width, height, rng)


def photo_textures(images, boxes, min_side=48):
    """Return patches of ``images`` away from their labelled faces (``boxes``, x0 y0 x1 y1).

    Each image gives the strips left of, right of, above and below its face
    box grown by :data:`TEXTURE_MARGIN` box widths (hair, shoulders, walls,
    other scenery), cut in pieces of ``min_side`` to ``2 * min_side`` px that are not flat.
    """
    out = []
    for img, box in zip(images, boxes):
        h, w = img.shape[:2]
        x0, y0, x1, y1 = (float(v) for v in box)
        m = TEXTURE_MARGIN * (x1 - x0)
        gx0, gy0 = int(max(x0 - m, 0)), int(max(y0 - m, 0))
        gx1, gy1 = int(min(x1 + m, w)), int(min(y1 + m, h))
        for strip in (img[:, :gx0], img[:, gx1:], img[:gy0, :], img[gy1:, :]):
            sh, sw = strip.shape[:2]
            if min(sh, sw) < min_side:
                continue
            # Pieces of at most 2 * min_side a side, so a mosaic mixes many photos.
            step = 2 * min_side
            for py in range(0, max(sh - min_side, 0) + 1, step):
                for px in range(0, max(sw - min_side, 0) + 1, step):
                    patch = strip[py:py + step, px:px + step]
                    # Not flat (a padded photo's black border, a blank wall).
                    if min(patch.shape[:2]) >= min_side and float(patch.std()) >= FLAT_STD:
                        out.append(np.ascontiguousarray(patch))
    return out


def paste_face(frame, rgb, label_box, face_px, mode, rng):
    """Paste the labelled face of ``rgb`` scaled to ``face_px`` wide into ``frame`` (in place).

    ``mode`` ``'ellipse'``: :data:`CONTEXT` box widths of photo in a feathered
    ellipse; ``'photo'``: the whole photo, hard edges.  The box centre lands
    within :data:`JITTER_PX` of the frame centre.  A face shrunk by the paste
    is area-averaged first, as a camera integrates a far face.  Returns the
    label box in the frame's pixels.
    """
    if mode not in PASTE_MODES:
        raise ValueError(f'paste mode must be one of {PASTE_MODES}, got {mode!r}')
    x0, y0, x1, y1 = (float(v) for v in label_box)
    scale = face_px / max(x1 - x0, 1.0)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    fh, fw = frame.shape[:2]
    tx = fw / 2.0 + rng.uniform(-JITTER_PX, JITTER_PX)
    ty = fh / 2.0 + rng.uniform(-JITTER_PX, JITTER_PX)
    src, k = rgb, scale
    if scale < 1.0:
        src = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        k = 1.0
    m = np.array([[k, 0.0, tx - scale * cx], [0.0, k, ty - scale * cy]])
    # Edge pixels replicate the photo (a constant border would darken its outline).
    warped = cv2.warpAffine(src, m, (fw, fh), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    if mode == 'photo':
        inside = cv2.warpAffine(np.ones(src.shape[:2], np.uint8), m, (fw, fh),
                                flags=cv2.INTER_NEAREST).astype(bool)
        frame[inside] = warped[inside]
    else:
        half = CONTEXT * face_px / 2.0
        yy, xx = np.mgrid[0:fh, 0:fw]
        r = np.hypot((xx - tx) / half, (yy - ty) / (half * 1.15))
        alpha = np.clip((1.0 - r) / 0.25, 0.0, 1.0)[..., None]
        frame[:] = (alpha * warped + (1.0 - alpha) * frame).astype(np.uint8)
    return np.array([tx - scale * (cx - x0), ty - scale * (cy - y0),
                     tx + scale * (x1 - cx), ty + scale * (y1 - cy)])


def jpeg(rgb, quality):
    """Return ``rgb`` after a JPEG round trip at ``quality``."""
    ok, buf = cv2.imencode('.jpg', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError('JPEG encoding failed')
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def apply_fault(rgb, fault, rng):
    """Return the frame ``rgb`` as a camera with ``fault`` (:data:`FAULTS`) stores it (JPEG)."""
    if fault not in FAULTS:
        raise ValueError(f'fault must be one of {sorted(FAULTS)}, got {fault!r}')
    img = rgb
    if fault == 'blur':
        img = cv2.GaussianBlur(rgb, (0, 0), 1.5)
    elif fault == 'motion':
        img = cv2.filter2D(rgb, -1, np.full((1, 9), 1.0 / 9.0, np.float32),
                           borderType=cv2.BORDER_REFLECT)
    elif fault == 'noise':
        img = _noise(rgb.astype(np.float32), rng, 8.0)
    elif fault == 'dim':
        v = rgb.astype(np.float32) / 255.0
        img = np.clip(255.0 * 0.35 * v * v + 0.5, 0, 255).astype(np.uint8)
    return jpeg(img, 25 if fault == 'jpeg25' else FRAME_JPEG_QUALITY)


def scene(face, width, height, face_px, background, mode, rng, textures=None, fault='none'):
    """Build one benchmark frame: ``(rgb, label box)``; ``face`` is ``(rgb, label_box)`` or None.

    Without a face the frame is the background alone (false-face counts).
    """
    frame = make_background(background, width, height, rng, textures)
    label = None
    if face is not None:
        label = paste_face(frame, face[0], face[1], face_px, mode, rng)
    return apply_fault(frame, fault, rng), label


def render_faces(ict_npz, n, seed):
    """Return ``n`` cut-out heads: ``(rgb, mask, box, pose)``, box of their 468 landmarks.

    Identities come from :func:`~.scenes.held_out_identities` (a stream of
    their own, none a training identity; ``seed`` picks them); neutral
    expression; poses of the paper's range.
    """
    from ..geometry import euler_to_matrix
    from .scenes import HeadKit, held_out_identities

    rng = np.random.default_rng(seed)
    kit = HeadKit(ict_npz)
    out = []
    try:
        for ident in held_out_identities(kit.n_identity_modes, n, seed):
            verts, points = kit.shape(kit.base(ident), np.zeros(len(kit.source.expression_modes)))
            pose = rng.uniform(-1, 1, 3) * PAPER_RANGE
            rgb, mask, lm = kit.render((480, 480), verts, points, euler_to_matrix(*pose), 60.0,
                                       480.0, (0.0, 0.0))
            box = np.array([lm[:, 0].min(), lm[:, 1].min(), lm[:, 0].max(), lm[:, 1].max()])
            # Skin tone and light vary between people and rooms.
            tone = np.clip(rng.normal(1.0, 0.15) * rng.uniform(0.9, 1.1, 3), 0.5, 1.3)
            out.append((np.clip(rgb * tone, 0, 255).astype(np.uint8), mask, box, pose))
    finally:
        kit.release()
    return out


def paste_cutout(frame, face, width, rng, jitter=24):
    """Paste a cut-out head with hard edges, its box ``width`` px wide near the centre."""
    rgb, mask, box, _ = face
    x0, y0, x1, y1 = box
    s = width / (x1 - x0)
    fh, fw = frame.shape[:2]
    tx = fw / 2 + rng.uniform(-jitter, jitter)
    ty = fh / 2 + rng.uniform(-jitter, jitter)
    small = cv2.resize(rgb, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    alpha = cv2.resize(mask.astype(np.float32), None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    cx, cy = (x0 + x1) / 2 * s, (y0 + y1) / 2 * s
    m = np.array([[1.0, 0.0, tx - cx], [0.0, 1.0, ty - cy]])
    w = cv2.warpAffine(small, m, (fw, fh))
    a = cv2.warpAffine(alpha, m, (fw, fh))[..., None]
    frame[:] = (a * w + (1 - a) * frame).astype(np.uint8)
    return np.array([tx - cx + x0 * s, ty - cy + y0 * s, tx - cx + x1 * s, ty - cy + y1 * s])
