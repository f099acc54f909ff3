"""Accuracy and speed benchmarks (AFLW2000-3D, per-frame latency, position).

* :func:`run_aflw2000` -- MAE of the NLML-HPE model and of the solvePnP
  baseline on AFLW2000-3D images, side by side, with the *same* MediaPipe
  landmarks for both (MediaPipe runs once per image).  Faces MediaPipe misses
  are excluded from the MAE and counted in the detection rate.
* :mod:`nlml_hpe.speed_benchmark` -- per-frame time in streaming mode.
* :mod:`nlml_hpe.range_benchmark` -- detection and accuracy by face size.
* :func:`run_off_axis` -- how well a face's pose survives moving it off the
  optical axis: the same photo seen by a camera turned away from it.
* :func:`nlml_hpe.position.synthetic_accuracy` -- position accuracy.
"""

from pathlib import Path
import time

import numpy as np

#: Protocols: name -> (max |yaw|, max |pitch|, max |roll|) in degrees.
PROTOCOLS = {'full': (99.0, 99.0, 99.0), 'paper': (50.0, 40.0, 30.0)}


def rss_mb():
    """Return ``(current RSS, peak RSS)`` of this process in MB (Linux ``/proc``)."""
    cur = peak = float('nan')
    try:
        for line in Path('/proc/self/status').read_text().splitlines():
            if line.startswith('VmRSS:'):
                cur = int(line.split()[1]) / 1024.0
            elif line.startswith('VmHWM:'):
                peak = int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return cur, peak


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
    from .geometry import box_iou

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


def _in_protocol(gt, bounds):
    pitch, yaw, roll = np.abs(gt)
    return yaw <= bounds[0] and pitch <= bounds[1] and roll <= bounds[2]


def _stats(values):
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return {'p50': None, 'p95': None, 'mean': None}
    return {'p50': float(np.percentile(v, 50)), 'p95': float(np.percentile(v, 95)),
            'mean': float(v.mean())}


def _mae(pred, gt):
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
    from .baseline import baseline_angles
    from .estimator import MIRROR_SIGNS, landmark_box

    pairs = list_aflw2000(directory, limit)
    own_extractor = None
    if estimator is None and extractor is None:
        from .landmarks import LandmarkExtractor
        extractor = own_extractor = LandmarkExtractor(max_faces=5)
    iterator = pairs
    if progress:
        from tqdm import tqdm
        iterator = tqdm(pairs, desc='aflw2000', unit='img')
    rows = []
    times = {'decode': [], 'landmarks': [], 'model': [], 'baseline': []}
    try:
        for jpg, mat in iterator:
            gt = read_aflw_pose(mat)
            label_box = read_aflw_box(mat)
            t0 = time.perf_counter()
            rgb = read_rgb(jpg)
            t1 = time.perf_counter()
            times['decode'].append((t1 - t0) * 1e3)
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
            if pick is not None:
                lm = faces[pick]
                twin = None
                if poses is not None:
                    row['model'] = poses[pick].angles
                    if estimator.config.rigid_fusion:  # the network alone, for comparison
                        row['network_only'] = poses[pick].network_angles
                    twin = poses[pick].mirrored_landmarks
                t3 = time.perf_counter()
                row['baseline'] = baseline_angles([lm], *size)[0]
                times['baseline'].append((time.perf_counter() - t3) * 1e3)
                if estimator is not None and estimator.flip_average:
                    # The baseline with the same flip averaging, for a like-for-like comparison.
                    row['baseline_flip'] = row['baseline'] if twin is None else 0.5 * (
                        row['baseline'] + MIRROR_SIGNS * baseline_angles([twin], *size)[0])
            rows.append(row)
    finally:
        if own_extractor is not None:
            own_extractor.close()
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
        sel = [r for r in rows if _in_protocol(r['gt'], bounds)]
        det = [r for r in sel if r['detected']]
        entry = {'bounds_deg': {'yaw': bounds[0], 'pitch': bounds[1], 'roll': bounds[2]},
                 'images': len(sel), 'detected': len(det),
                 'detection_rate': len(det) / len(sel) if sel else None}
        for m in methods:
            entry[m] = dict(_mae([r[m] for r in det], [r['gt'] for r in det]), n=len(det))
        result['protocols'][name] = entry
    result['detection_rate'] = sum(r['detected'] for r in rows) / len(rows)
    result['latency_ms'] = {
        'decode': _stats(times['decode']), 'landmarks': _stats(times['landmarks']),
        'encoder_heads': _stats(times['model']), 'baseline_pnp': _stats(times['baseline'])}
    cur, peak = rss_mb()
    result['rss_mb'] = {'current': cur, 'peak': peak}
    if estimator is not None:
        result['model_metadata'] = dict(getattr(estimator.model, 'metadata', {}))
    result['per_image'] = [
        {'image': r['image'], 'gt_pitch_yaw_roll': [float(v) for v in r['gt']],
         'detected': r['detected'],
         **{m: [float(v) for v in r[m]] for m in methods if m in r}} for r in rows]
    return result


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


def face_sequence(rgb_face, n_frames, size=(640, 480), amplitude=6.0):
    """Yield ``n_frames`` frames of ``size`` with ``rgb_face`` drifting a few pixels.

    A real face image pasted on a grey canvas, moved along a smooth path
    (``amplitude`` pixels), imitates a video of a person sitting still.
    """
    w, h = size
    fh, fw = rgb_face.shape[:2]
    scale = min(1.0, 0.8 * h / fh, 0.8 * w / fw)
    if scale < 1.0:
        import cv2
        rgb_face = cv2.resize(rgb_face, (int(fw * scale), int(fh * scale)),
                              interpolation=cv2.INTER_AREA)
        fh, fw = rgb_face.shape[:2]
    x_c, y_c = (w - fw) / 2.0, (h - fh) / 2.0
    for i in range(n_frames):
        frame = np.full((h, w, 3), 110, dtype=np.uint8)
        x = int(round(x_c + amplitude * np.sin(i / 7.0)))
        y = int(round(y_c + 0.5 * amplitude * np.cos(i / 11.0)))
        frame[y:y + fh, x:x + fw] = rgb_face
        yield frame


def turned_camera_view(rgb, k, rot, size):
    """Return ``(centred, turned)`` views of ``rgb`` pasted at a ``size`` canvas's centre.

    ``turned`` is what a camera of intrinsics ``k`` sees of the canvas after
    turning by ``rot``, a rotation of the optical frame.  A pure camera rotation
    is the homography ``K R K^-1``: what the scene looks like along each line of
    sight does not change, only where it lands in the image, so the head's pose
    in the camera frame turns by exactly ``rot``.
    """
    import cv2

    w, h = size
    canvas = np.zeros((h, w, 3), np.uint8)
    y0, x0 = (h - rgb.shape[0]) // 2, (w - rgb.shape[1]) // 2
    canvas[y0:y0 + rgb.shape[0], x0:x0 + rgb.shape[1]] = rgb
    hom = k @ rot @ np.linalg.inv(k)
    return canvas, cv2.warpPerspective(canvas, hom, (w, h), flags=cv2.INTER_LINEAR)


#: Camera turns (yaw, pitch of the optical frame, degrees) of :func:`run_off_axis`.
OFF_AXIS_TURNS = ((15.0, 0.0), (0.0, 15.0), (-15.0, -8.0), (28.0, -12.0))


def run_off_axis(directory, estimators, *, turns=OFF_AXIS_TURNS, limit=20,
                 size=(960, 720), focal=600.0, progress=False):
    """Pose consistency of faces moved off the optical axis by a turned camera.

    Each of the first ``limit`` images of ``directory`` (``*.jpg``, e.g.
    AFLW2000) is pasted at the centre of a ``size`` canvas and seen by a camera
    of focal length ``focal`` turned by each of ``turns`` (see
    :func:`turned_camera_view`).  For a perfect method, the camera-frame
    rotation of the turned view equals the turn times that of the centred view.
    ``estimators`` maps names to :class:`~nlml_hpe.estimator.HeadPoseEstimator`;
    the solvePnP baseline (with the true intrinsics) is scored on the landmarks
    of the first one without ``perspective_warp`` (MediaPipe's own).  Returns
    per method the rotation error (deg: mean, median, p90), the mean change of
    the line-of-sight angles, and the off-axis angle of the faces.
    """
    from scipy.spatial.transform import Rotation

    from .baseline import solve_pnp
    from .features import off_axis_deg
    from .geometry import rotation_angle_deg

    paths = sorted(Path(directory).glob('*.jpg'))[:limit]
    if not paths:
        raise ValueError(f'no .jpg images in {directory}')
    from .camera import Camera

    k = np.array(Camera.pinhole(focal, *size).k)
    rot_err = {name: [] for name in list(estimators) + ['baseline_pnp']}
    ang_err = {name: [] for name in estimators}
    lm_ms, off_deg, pairs = {name: [] for name in estimators}, [], 0
    items = [(p, t) for p in paths for t in turns]
    if progress:
        from tqdm import tqdm
        items = tqdm(items, desc='off-axis', unit='view')
    # The baseline reads MediaPipe's own landmarks: those of an estimator that does not
    # re-read them, if there is one.
    first = next((n for n, e in estimators.items() if not e.config.perspective_warp),
                 next(iter(estimators)))
    for path, (yaw, pitch) in items:
        turn = Rotation.from_euler('yx', [yaw, pitch], degrees=True).as_matrix()
        centred, turned = turned_camera_view(read_rgb(path), k, turn, size)
        results = {}
        for name, est in estimators.items():
            a, b = est.estimate(centred, camera_matrix=k), est.estimate(turned, camera_matrix=k)
            lm_ms[name].append(est.last_timings['landmarks_ms'])  # the turned view's
            results[name] = (a[0], b[0]) if a and b else None
        if any(r is None for r in results.values()):
            continue
        pairs += 1
        for name, (a, b) in results.items():
            rot_err[name].append(float(rotation_angle_deg(b.rotation, turn @ a.rotation)))
            ang_err[name].append(float(np.abs(b.angles - a.angles).mean()))
        a, b = results[first]
        off_deg.append(off_axis_deg(b.landmarks, k))
        rot_err['baseline_pnp'].append(float(rotation_angle_deg(
            solve_pnp(b.landmarks, k)[0], turn @ solve_pnp(a.landmarks, k)[0])))
    out = {'dataset': str(directory), 'images': len(paths), 'turns_deg': [list(t) for t in turns],
           'pairs': pairs, 'canvas': list(size), 'focal_px': focal,
           'off_axis_deg_mean': float(np.mean(off_deg)) if off_deg else None,
           'flip_average': {name: est.flip_average for name, est in estimators.items()},
           'methods': {}}
    for name, errs in rot_err.items():
        e = np.asarray(errs)
        entry = {'rotation_error_deg': {'mean': float(e.mean()), 'median': float(np.median(e)),
                                        'p90': float(np.percentile(e, 90))} if len(e) else None}
        if name in ang_err and ang_err[name]:
            entry['angle_change_deg_mean'] = float(np.mean(ang_err[name]))
        if lm_ms.get(name):
            entry['landmarks_ms_turned_view'] = _stats(lm_ms[name])
        out['methods'][name] = entry
    return out


def format_off_axis(result):
    """Human-readable summary of :func:`run_off_axis` output."""
    lines = [f"off-axis consistency: {result['pairs']} centred/turned pairs from "
             f"{result['images']} images of {result['dataset']}; faces "
             f"{result['off_axis_deg_mean']:.1f} deg off the optical axis on average",
             f"{'method':<22} {'rotation error mean':>20} {'median':>7} {'p90':>7} "
             f"{'angle change':>13}"]
    for name, m in result['methods'].items():
        r = m['rotation_error_deg']
        if r is None:
            continue
        change = m.get('angle_change_deg_mean')
        lines.append(f"{name:<22} {r['mean']:>20.2f} {r['median']:>7.2f} {r['p90']:>7.2f} "
                     f"{'' if change is None else f'{change:.2f}':>13}")
    for name, m in result['methods'].items():
        if m.get('landmarks_ms_turned_view'):
            lines.append(f'{name}: landmark stage on a turned view (static image, detection '
                         f"included) p50 {m['landmarks_ms_turned_view']['p50']:.1f} ms")
    return '\n'.join(lines)
