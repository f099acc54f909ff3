"""Faces off the optical axis: how well a face's pose survives a turn of the camera.

``nlml-hpe benchmark offaxis DIR``: each photo is pasted at the centre of a
canvas and seen again by a camera turned away from it (:func:`turned_camera_view`,
a pure rotation, so the head's true camera-frame rotation turns by exactly the
camera's turn).  :func:`run_off_axis` measures how far each method's reading
of the turned view is from that, with and without reading off-axis faces on
their line of sight (``perspective_warp``).
"""

from pathlib import Path

import numpy as np

from .aflw2000 import read_rgb
from .stats import latency_stats


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

    from ..baseline import solve_pnp
    from ..camera import Camera
    from ..features import off_axis_deg
    from ..geometry import rotation_angle_deg

    paths = sorted(Path(directory).glob('*.jpg'))[:limit]
    if not paths:
        raise ValueError(f'no .jpg images in {directory}')
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
            entry['landmarks_ms_turned_view'] = latency_stats(lm_ms[name])
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
