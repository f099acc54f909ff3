"""Faces at social distance: detection rate and accuracy by face size and frame size.

``nlml-hpe benchmark range DIR``: each AFLW2000-3D face of the paper's angle
range (|yaw| <= 50, |pitch| <= 40, |roll| <= 30) is scaled so that its
labelled 68-point box is ``W`` pixels wide, and pasted (feathered edge) near
the centre of a frame over a face-free synthetic background.  The estimator
reads the frame once (no flip averaging, as the node does), and the face that
matches the pasted label box is scored.  Distances in the table assume a
15 cm face and a 60 deg horizontal field of view.

Every estimator in ``estimators`` reads the same frames, so the project's
landmark stage and the legacy MediaPipe graph are compared in one run.
"""

import math
import time

import cv2
import numpy as np

from .benchmark import (
    PROTOCOLS,
    _in_protocol,
    _mae,
    list_aflw2000,
    pick_labelled_face,
    read_aflw_box,
    read_aflw_pose,
    read_rgb,
)

FACE_WIDTHS = (160, 100, 70, 50, 40, 28)
FRAMES = ((640, 480), (1280, 720))
#: Face width and camera of the distance column.
FACE_WIDTH_M = 0.15
HFOV_DEG = 60.0
#: Context pasted around the labelled box, in box widths (the rest is background).
CONTEXT = 2.2


def distance_m(face_px, frame_width):
    """Distance (m) at which a 15 cm face is ``face_px`` wide in a 60 deg camera."""
    focal = frame_width / 2.0 / math.tan(math.radians(HFOV_DEG) / 2.0)
    return FACE_WIDTH_M * focal / face_px


def background(width, height, seed=0):
    """Return a face-free background: smooth random colour blobs plus fine texture."""
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 215, (max(height // 60, 2), max(width // 60, 2), 3),
                         dtype=np.uint8)
    bg = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    noise = rng.normal(0.0, 6.0, (height, width, 3))
    return np.clip(bg + noise, 0, 255).astype(np.uint8)


def paste_face(rgb, label_box, face_px, frame, rng):
    """Paste the labelled face of ``rgb`` scaled to ``face_px`` into ``frame`` (in place).

    Returns the label box in the frame's pixels.
    """
    x0, y0, x1, y1 = (float(v) for v in label_box)
    scale = face_px / max(x1 - x0, 1.0)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    fh, fw = frame.shape[:2]
    # Near the centre: up to 15 % of the frame away from it.
    tx = fw / 2.0 + rng.uniform(-0.15, 0.15) * fw
    ty = fh / 2.0 + rng.uniform(-0.15, 0.15) * fh
    m = np.array([[scale, 0.0, tx - scale * cx], [0.0, scale, ty - scale * cy]])
    if scale < 1.0:  # area-average first, as a camera would integrate a far face
        small = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        m = np.array([[1.0, 0.0, tx - scale * cx], [0.0, 1.0, ty - scale * cy]])
        warped = cv2.warpAffine(small, m, (fw, fh), flags=cv2.INTER_LINEAR)
    else:
        warped = cv2.warpAffine(rgb, m, (fw, fh), flags=cv2.INTER_LINEAR)
    # Feathered ellipse of CONTEXT box widths around the face.
    half = CONTEXT * face_px / 2.0
    yy, xx = np.mgrid[0:fh, 0:fw]
    r = np.hypot((xx - tx) / half, (yy - ty) / (half * 1.15))
    alpha = np.clip((1.0 - r) / 0.25, 0.0, 1.0)[..., None]
    frame[:] = (alpha * warped + (1.0 - alpha) * frame).astype(np.uint8)
    return np.array([tx - scale * (cx - x0), ty - scale * (cy - y0),
                     tx + scale * (x1 - cx), ty + scale * (y1 - cy)])


def run_range(directory, estimators, *, widths=FACE_WIDTHS, frames=FRAMES, limit=None,
              seed=0, progress=False):
    """Measure detection rate, MAE and time per frame by estimator, frame and face size.

    ``estimators``: ``{name: HeadPoseEstimator}`` (static, one pass).  Returns
    a dict with a row per (frame, width) holding each estimator's figures.
    """
    pairs = [(j, m) for j, m in list_aflw2000(directory)
             if _in_protocol(read_aflw_pose(m), PROTOCOLS['paper'])]
    pairs = pairs[:limit] if limit else pairs
    faces = [(read_rgb(j), read_aflw_box(m), read_aflw_pose(m)) for j, m in pairs]
    faces = [f for f in faces if f[1] is not None]
    rows = []
    total = len(frames) * len(widths)
    step = 0
    for fw, fh in frames:
        bg = background(fw, fh, seed)
        for width in widths:
            step += 1
            rng = np.random.default_rng(seed + width)
            row = {'frame': [fw, fh], 'face_px': width,
                   'distance_m': round(distance_m(width, fw), 2), 'faces': len(faces),
                   'methods': {}}
            per = {name: {'pred': [], 'gt': [], 'ms': []} for name in estimators}
            for rgb, box, gt in faces:
                frame = bg.copy()
                label = paste_face(rgb, box, width, frame, rng)
                for name, est in estimators.items():
                    t0 = time.perf_counter()
                    poses = est.estimate(frame)
                    per[name]['ms'].append((time.perf_counter() - t0) * 1e3)
                    pick = pick_labelled_face([p.box for p in poses], label)
                    if pick is not None:
                        per[name]['pred'].append(poses[pick].angles)
                        per[name]['gt'].append(gt)
            for name, r in per.items():
                row['methods'][name] = {
                    'detected': len(r['gt']),
                    'detection_rate': len(r['gt']) / len(faces) if faces else None,
                    'mae': _mae(r['pred'], r['gt']),
                    'ms_p50': float(np.median(r['ms'])) if r['ms'] else None}
            rows.append(row)
            if progress:
                print(f'[range] {step}/{total}: {fw}x{fh} {width}px', flush=True)
    return {'dataset': str(directory), 'protocol': 'paper', 'faces': len(faces),
            'methods': list(estimators), 'rows': rows,
            'note': 'one pass (no flip averaging); faces pasted near the centre of a '
                    'synthetic background; distance for a 15 cm face, 60 deg HFOV'}


def format_range(result):
    """Human-readable table of :func:`run_range` output."""
    lines = [f"Range: {result['dataset']}, {result['faces']} paper-range faces; "
             f"{result['note']}."]
    lines.append(f"{'frame':<10} {'face':>5} {'dist':>6}  {'method':<8} {'found':>7} "
                 f"{'yaw':>6} {'pitch':>6} {'roll':>6} {'MAE':>6} {'ms':>7}")
    for row in result['rows']:
        for name, m in row['methods'].items():
            mae = m['mae']

            def f(v):
                return f'{v:6.2f}' if v is not None else '     -'
            rate = m['detection_rate']
            lines.append(f"{row['frame'][0]}x{row['frame'][1]:<5} {row['face_px']:>4}px "
                         f"{row['distance_m']:>5.1f}m  {name:<8} "
                         f"{100 * rate:6.1f}% {f(mae['yaw'])} {f(mae['pitch'])} "
                         f"{f(mae['roll'])} {f(mae['mean'])} {m['ms_p50']:7.2f}")
    return '\n'.join(lines)
