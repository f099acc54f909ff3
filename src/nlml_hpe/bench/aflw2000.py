"""AFLW2000-3D: its images and labels, and the accuracy benchmark on them.

:func:`run_aflw2000` (``nlml-hpe benchmark aflw2000 DIR``) scores the NLML-HPE
model and the solvePnP baseline side by side, with the *same* landmarks for
both (the landmark stage runs once per image).  Faces it misses are excluded
from the MAE and counted in the detection rate.  The readers
(:func:`list_aflw2000`, :func:`read_aflw_pose`, :func:`read_aflw_box`,
:func:`pick_labelled_face`) and :func:`in_protocol` / :func:`mae` serve the
other AFLW2000-based benchmarks too.
"""

from pathlib import Path
import time

import numpy as np

from .stats import latency_stats, rss_mb

#: Protocols: name -> (max |yaw|, max |pitch|, max |roll|) in degrees.
PROTOCOLS = {'full': (99.0, 99.0, 99.0), 'paper': (50.0, 40.0, 30.0)}


def read_rgb(path):
    """Read an image file as RGB ``uint8``; ``ValueError`` if unreadable."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f'cannot read image {path} (missing, corrupt or unsupported format)')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_aflw_pose(mat_path):
    """AFLW2000-3D ``(pitch, yaw, roll)`` in degrees from a ``.mat`` (``Pose_Para[0][:3]``)."""
    from scipy.io import loadmat

    try:
        para = loadmat(str(mat_path))['Pose_Para']
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f'cannot read Pose_Para from {mat_path}: {exc}') from exc
    return np.degrees(np.asarray(para, dtype=np.float64).ravel()[:3])


def read_aflw_box(mat_path):
    """Box ``(x0, y0, x1, y1)`` of the labelled face's 68 landmarks (``pt3d_68``), or None."""
    from scipy.io import loadmat

    try:
        pts = np.asarray(loadmat(str(mat_path))['pt3d_68'], dtype=np.float64)
    except (OSError, KeyError, ValueError):
        return None
    if pts.ndim != 2 or pts.shape[0] < 2 or not np.all(np.isfinite(pts[:2])):
        return None
    x, y = pts[0], pts[1]
    return np.array([x.min(), y.min(), x.max(), y.max()])


#: A detected face must overlap the labelled face's landmark box this much to be scored.
MIN_LABEL_IOU = 0.3


def pick_labelled_face(boxes, label_box):
    """Index of the detected face that is the labelled one, or None.

    With the label's landmark box, the face of highest IoU with it (at least
    :data:`MIN_LABEL_IOU`; otherwise MediaPipe found only other people).  Without
    it, the largest face.
    """
    if not boxes:
        return None
    from ..geometry import box_iou

    if label_box is None:
        return int(np.argmax([(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]))
    ious = list(box_iou(boxes, label_box)[:, 0])
    best = int(np.argmax(ious))
    return best if ious[best] >= MIN_LABEL_IOU else None


def list_aflw2000(directory, limit=None):
    """Return sorted ``[(jpg, mat), ...]`` of an AFLW2000-3D directory."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f'AFLW2000 directory not found: {directory}')
    pairs = [(p, p.with_suffix('.mat')) for p in sorted(directory.glob('image*.jpg'))
             if p.with_suffix('.mat').is_file()]
    if not pairs:
        raise ValueError(f'no imageNNNNN.jpg + .mat pairs in {directory}')
    return pairs[:limit] if limit else pairs


def in_protocol(gt, bounds):
    """Tell whether a label ``(pitch, yaw, roll)`` (deg) lies within a protocol's ``bounds``.

    ``bounds`` are the protocol's (max |yaw|, max |pitch|, max |roll|), as in
    :data:`PROTOCOLS`.
    """
    pitch, yaw, roll = np.abs(gt)
    return yaw <= bounds[0] and pitch <= bounds[1] and roll <= bounds[2]


def mae(pred, gt):
    """Mean absolute error per angle of ``(N, 3)`` (pitch, yaw, roll) readings, and their mean."""
    if len(gt) == 0:
        return {'yaw': None, 'pitch': None, 'roll': None, 'mean': None}
    err = np.abs(np.asarray(pred) - np.asarray(gt))  # columns pitch, yaw, roll
    pitch, yaw, roll = err.mean(axis=0)
    return {'yaw': float(yaw), 'pitch': float(pitch), 'roll': float(roll),
            'mean': float((yaw + pitch + roll) / 3.0)}


def run_aflw2000(directory, estimator=None, *, limit=None, extractor=None, progress=False):
    """Benchmark the model (if ``estimator`` is given) and the baseline on AFLW2000-3D.

    ``estimator`` is a :class:`~nlml_hpe.estimator.HeadPoseEstimator`: each
    image goes through :meth:`~nlml_hpe.estimator.HeadPoseEstimator.estimate`
    as it would in use.  Without it only the baseline runs, on the landmarks of
    ``extractor`` or of a new static-mode
    :class:`~nlml_hpe.landmarks.LandmarkExtractor`.
    The scored face is the one matching the label's 68 landmarks (``pt3d_68``;
    :func:`pick_labelled_face`): AFLW2000 images can show other people, and
    scoring their pose against the label would be wrong.  A face that does not
    match counts as not detected.  Returns a dict
    with MAE per protocol (``full``: all angles within 99 deg; ``paper``:
    |yaw|<=50, |pitch|<=40, |roll|<=30) and method, N, detection rates,
    per-stage latency (ms) and RSS (MB).
    """
    pairs = list_aflw2000(directory, limit)
    own_extractor = None
    if estimator is None and extractor is None:
        from ..landmarks import LandmarkExtractor
        extractor = own_extractor = LandmarkExtractor(max_faces=5)
    if progress:
        from tqdm import tqdm
        pairs = tqdm(pairs, desc='aflw2000', unit='img')
    times = {'decode': [], 'landmarks': [], 'model': [], 'baseline': []}
    try:
        rows = [_score_image(jpg, mat, estimator, extractor, times) for jpg, mat in pairs]
    finally:
        if own_extractor is not None:
            own_extractor.close()
    return _summarise(directory, rows, times, estimator)


def _score_image(jpg, mat, estimator, extractor, times):
    """Read one image's faces; return its row (label, detection, each method's angles).

    Appends the stages' times (ms) to ``times``.
    """
    from ..baseline import baseline_angles
    from ..estimator import MIRROR_SIGNS, landmark_box

    gt = read_aflw_pose(mat)
    label_box = read_aflw_box(mat)
    t0 = time.perf_counter()
    rgb = read_rgb(jpg)
    times['decode'].append((time.perf_counter() - t0) * 1e3)
    size = (rgb.shape[1], rgb.shape[0])
    if estimator is not None:
        poses = estimator.estimate(rgb)
        times['landmarks'].append(estimator.last_timings['landmarks_ms'])
        times['model'].append(estimator.last_timings['model_ms'])
        faces = [p.landmarks for p in poses]
    else:
        t_l = time.perf_counter()
        faces = extractor.extract(rgb)
        times['landmarks'].append((time.perf_counter() - t_l) * 1e3)
        poses = None
    pick = pick_labelled_face([landmark_box(f, size) for f in faces], label_box)
    row = {'image': jpg.name, 'gt': gt, 'detected': pick is not None,
           'other_faces_only': bool(faces) and pick is None}
    if pick is None:
        return row
    twin = None
    if poses is not None:
        row['model'] = poses[pick].angles
        row['sigma'] = getattr(poses[pick], 'sigma_deg', None)
        row['beyond_range'] = getattr(poses[pick], 'beyond_range', None)
        if estimator.config.rigid_fusion:  # the network alone, for comparison
            row['network_only'] = poses[pick].network_angles
        twin = poses[pick].mirrored_landmarks
    t3 = time.perf_counter()
    row['baseline'] = baseline_angles([faces[pick]], *size)[0]
    times['baseline'].append((time.perf_counter() - t3) * 1e3)
    if estimator is not None and estimator.flip_average:
        # The baseline with the same flip averaging, for a like-for-like comparison.
        row['baseline_flip'] = row['baseline'] if twin is None else 0.5 * (
            row['baseline'] + MIRROR_SIGNS * baseline_angles([twin], *size)[0])
    return row


def _summarise(directory, rows, times, estimator):
    """Return :func:`run_aflw2000`'s result from the rows of every image."""
    flip = estimator is not None and estimator.flip_average
    fusion = estimator is not None and estimator.config.rigid_fusion
    methods = (['model'] if estimator is not None else []) + (
        ['network_only'] if fusion else []) + ['baseline'] + (['baseline_flip'] if flip else [])
    result = {'dataset': str(directory), 'images': len(rows), 'methods': methods,
              'note': 'faces MediaPipe misses are excluded from the MAE and counted in '
                      'the detection rate; both methods use the same landmarks',
              'other_faces_only': sum(r['other_faces_only'] for r in rows),
              'flip_average': flip, 'rigid_fusion': fusion,
              'perspective_warp': estimator is not None and estimator.config.perspective_warp,
              'protocols': {}}
    for name, bounds in PROTOCOLS.items():
        sel = [r for r in rows if in_protocol(r['gt'], bounds)]
        det = [r for r in sel if r['detected']]
        entry = {'bounds_deg': {'yaw': bounds[0], 'pitch': bounds[1], 'roll': bounds[2]},
                 'images': len(sel), 'detected': len(det),
                 'detection_rate': len(det) / len(sel) if sel else None}
        for m in methods:
            entry[m] = dict(mae([r[m] for r in det], [r['gt'] for r in det]), n=len(det))
        result['protocols'][name] = entry
    result['detection_rate'] = sum(r['detected'] for r in rows) / len(rows)
    result['by_yaw'] = by_yaw(rows, 'model' if estimator is not None else 'baseline')
    result['latency_ms'] = {
        'decode': latency_stats(times['decode']),
        'landmarks': latency_stats(times['landmarks']),
        'encoder_heads': latency_stats(times['model']),
        'baseline_pnp': latency_stats(times['baseline'])}
    cur, peak = rss_mb()
    result['rss_mb'] = {'current': cur, 'peak': peak}
    if estimator is not None:
        result['model_metadata'] = dict(getattr(estimator.model, 'metadata', {}))
    result['per_image'] = [
        {'image': r['image'], 'gt_pitch_yaw_roll': [float(v) for v in r['gt']],
         'detected': r['detected'],
         **{m: [float(v) for v in r[m]] for m in methods if m in r}} for r in rows]
    return result


#: |yaw| bins (deg) of the detection table: the readable range ends near 60.
YAW_BINS = (0, 30, 50, 60, 70, 80, 90)


def by_yaw(rows, method):
    """Per true-|yaw| bin: images, faces found, ``method``'s MAE, range state and σ cover.

    ``beyond_range``: the fraction of found faces flagged beyond the readable
    range; ``within_sigma``: the fraction of angle errors (pitch, yaw and roll
    pooled) within the face's 1 σ.  Both None without the uncertainty model.
    """
    out = {}
    for lo, hi in zip(YAW_BINS[:-1], YAW_BINS[1:]):
        sel = [r for r in rows if lo <= abs(r['gt'][1]) < hi or hi == YAW_BINS[-1] <= abs(
            r['gt'][1])]
        det = [r for r in sel if r['detected'] and r.get(method) is not None]
        entry = {'images': len(sel), 'found': len(det),
                 'found_rate': len(det) / len(sel) if sel else None,
                 'mae': mae([r[method] for r in det], [r['gt'] for r in det])['mean']
                 if det else None, 'beyond_range': None, 'within_sigma': None}
        flagged = [r['beyond_range'] for r in det if r.get('beyond_range') is not None]
        if flagged and len(flagged) == len(det):
            entry['beyond_range'] = sum(bool(b) for b in flagged) / len(det)
        sig = [r for r in det if r.get('sigma') is not None]
        if sig and len(sig) == len(det):
            err = np.abs(np.array([r[method] for r in sig]) - np.array([r['gt'] for r in sig]))
            entry['within_sigma'] = float(np.mean(err <= np.array([r['sigma'] for r in sig])))
        out[f'{lo}-{hi}'] = entry
    return out


def format_aflw2000(result):
    """Human-readable table of :func:`run_aflw2000` output."""
    lines = [f"AFLW2000-3D: {result['dataset']} ({result['images']} images); "
             f"{result['note']}."]
    head = f"{'protocol':<8} {'method':<13} {'N':>5} {'yaw':>7} {'pitch':>7} {'roll':>7} " \
           f"{'MAE':>7}  detection"
    lines.append(head)
    for name, entry in result['protocols'].items():
        rate = entry['detection_rate']
        det = (f"{entry['detected']}/{entry['images']} ({100 * rate:.1f}%)"
               if rate is not None else 'n/a')
        for m in result['methods']:
            e = entry[m]
            vals = ' '.join(f'{e[k]:7.2f}' if e[k] is not None else f"{'n/a':>7}"
                            for k in ('yaw', 'pitch', 'roll', 'mean'))
            lines.append(f"{name:<8} {m:<13} {e['n']:>5} {vals}  {det}")
    lines.append(f"overall detection rate: {100 * result['detection_rate']:.1f}%")
    lines.append('by true |yaw| (deg):   images  found       MAE  beyond range  within 1 sigma')

    def pct(v):
        return f"{'n/a':>6}" if v is None else f'{100 * v:5.1f}%'
    for name, e in result.get('by_yaw', {}).items():
        mae_txt = f"{e['mae']:7.2f}" if e['mae'] is not None else f"{'n/a':>7}"
        lines.append(f"  {name:<18} {e['images']:>7} {pct(e['found_rate'])} {mae_txt}  "
                     f"{pct(e['beyond_range']):>12}  {pct(e['within_sigma']):>14}")
    if result.get('flip_average'):
        lines.append('model: flip averaging on (MediaPipe also on the mirrored image); '
                     'baseline_flip: solvePnP with the same averaging')
    if result.get('rigid_fusion'):
        lines.append("model: network + rigid fit (rigid fusion); network_only: the network's "
                     'angles alone')
    if result.get('other_faces_only'):
        lines.append(f"images where MediaPipe found only people other than the labelled face "
                     f"(counted as missed): {result['other_faces_only']}")
    lines.append('latency per image (ms):   p50     p95')
    for stage, s in result['latency_ms'].items():
        if s['p50'] is None:
            lines.append(f'  {stage:<14} n/a')
        else:
            lines.append(f"  {stage:<14} {s['p50']:8.3f} {s['p95']:8.3f}")
    rss = result['rss_mb']
    lines.append(f"RSS: {rss['current']:.0f} MB (peak {rss['peak']:.0f} MB)")
    return '\n'.join(lines)
