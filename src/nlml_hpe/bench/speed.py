"""Per-frame speed in streaming (video) mode: ``nlml-hpe benchmark speed``.

Each scenario plays a short clip of faces drifting a few pixels (a person
sitting still) through a streaming estimator and times every
:meth:`~nlml_hpe.estimator.HeadPoseEstimator.estimate` call; the first
``warmup`` frames are not counted.  Scenarios:

* ``640x480`` and ``1280x720``: one face near the centre;
* ``640x480 off-axis``: one face 20 deg off the optical axis, read on its line
  of sight (``perspective_warp``) and not;
* ``crowd N``: N faces in a 640x640 frame (``max_faces`` 20).

With ``legacy`` the same clips also go through the legacy MediaPipe graph
(:class:`~nlml_hpe.bench.legacy.LegacyLandmarkExtractor`), so each row has
its ratio against it, measured in the same run: the two take turns, ten
rounds of 30 frames each (:func:`time_streams`), so a slow spell of a shared
machine falls on both.  Frames come back to back (no idle time between them,
unlike a 30 Hz camera: a look for new faces that would run between frames
runs beside the next one here).
"""

import math
import time

import cv2
import numpy as np

from .stats import latency_stats, rss_mb

#: Face width (pixels) in the single-face scenarios.
FACE_PX = 200


def face_crop(rgb, landmarks):
    """Square crop of ``rgb`` around a face's landmarks, and the face's share of its side."""
    x0, y0 = landmarks[:, :2].min(0)
    x1, y1 = landmarks[:, :2].max(0)
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.8 * max(x1 - x0, y1 - y0)
    pad = 600
    big = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    y, x = int(cy - half) + pad, int(cx - half) + pad
    return big[y:y + int(2 * half), x:x + int(2 * half)].copy(), (x1 - x0) / (2 * half)


def clip(crop, share, size, centres, face_px, n_frames, amplitude=6.0):
    """Yield ``n_frames`` frames of ``size`` with the face at each of ``centres``, drifting."""
    w, h = size
    side = max(int(round(face_px / share)), 4)
    small = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
    for i in range(n_frames):
        frame = np.full((h, w, 3), 110, np.uint8)
        dx = amplitude * math.sin(i / 7.0)
        dy = 0.5 * amplitude * math.cos(i / 11.0)
        for cx, cy in centres:
            x, y = int(round(cx + dx - side / 2)), int(round(cy + dy - side / 2))
            x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + side, w), min(y + side, h)
            frame[y0:y1, x0:x1] = small[y0 - y:y1 - y, x0 - x:x1 - x]
        yield frame


def _timed(estimator, frame, out):
    """Time one ``estimate`` call; append its timings to ``out`` (lists by key)."""
    t0 = time.perf_counter()
    poses = estimator.estimate(frame)
    out['total'].append((time.perf_counter() - t0) * 1e3)
    timings = estimator.last_timings
    out['lm'].append(timings['landmarks_ms'])
    out['model'].append(timings['model_ms'] + timings['post_ms'])
    out['faces'].append(len(poses))


def _summary(out):
    return {'frame_ms': latency_stats(out['total']), 'landmarks_ms': latency_stats(out['lm']),
            'pose_ms': latency_stats(out['model']),
            'faces_mean': float(np.mean(out['faces'])) if out['faces'] else 0.0,
            'frames': len(out['total'])}


def time_streams(estimators, make_frames, frames, warmup, rounds=10):
    """:func:`time_stream` of several estimators, interleaved in ``rounds``.

    Each estimator plays its own copy of the clip; the timed frames are split
    into ``rounds`` turns, each method in turn, so a slow spell of a shared
    machine falls on all of them alike.
    """
    clips = [make_frames() for _ in estimators]
    for est, clip_ in zip(estimators, clips):
        for _ in range(warmup):
            est.estimate(next(clip_))
    outs = [{'total': [], 'lm': [], 'model': [], 'faces': []} for _ in estimators]
    cpu = [0.0] * len(estimators)
    cuts = [round(frames * r / rounds) for r in range(rounds + 1)]
    for r in range(rounds):
        for k, (est, clip_, out) in enumerate(zip(estimators, clips, outs)):
            c0 = time.process_time()
            for _ in range(cuts[r + 1] - cuts[r]):
                _timed(est, next(clip_), out)
            cpu[k] += time.process_time() - c0
    return [dict(_summary(out), cpu_ms_per_frame=1e3 * c / max(frames, 1))
            for out, c in zip(outs, cpu)]


def scenarios(crop, share, frames, warmup, crowd=(1, 5, 15)):
    """``(name, size, estimator options, frames)`` of each scenario."""
    n = frames + warmup
    f60 = 640 / 2 / math.tan(math.radians(30))  # the guessed camera: 60 deg HFOV
    off = (320 + f60 * math.tan(math.radians(20)), 240)
    out = [('640x480', (640, 480), {}, lambda: clip(crop, share, (640, 480), [(320, 240)],
                                                     FACE_PX, n)),
           ('1280x720', (1280, 720), {}, lambda: clip(crop, share, (1280, 720), [(640, 360)],
                                                       FACE_PX, n)),
           ('640x480 off-axis 20deg, re-read', (640, 480), {'perspective_warp': True},
            lambda: clip(crop, share, (640, 480), [off], 160, n)),
           ('640x480 off-axis 20deg, no re-read', (640, 480), {'perspective_warp': False},
            lambda: clip(crop, share, (640, 480), [off], 160, n))]
    for count in crowd:
        cols = math.ceil(math.sqrt(count))
        rows = math.ceil(count / cols)
        cell = 640 / max(cols, rows)
        centres = [((c + 0.5) * cell, (r + 0.5) * cell)
                   for r in range(rows) for c in range(cols)][:count]
        out.append((f'crowd {count} (640x640)', (640, 640), {'max_faces': 20},
                    lambda centres=centres, cell=cell: clip(crop, share, (640, 640), centres,
                                                            0.45 * cell, n, amplitude=2.0)))
    return out


def run_speed(make_estimator, face_rgb, face_landmarks, *, frames=300, warmup=30,
              legacy=False, crowd=(1, 5, 15)):
    """Run every scenario; ``make_estimator(legacy, **options)`` builds a streaming estimator.

    Returns ``{'rows': [...], 'encoder_heads_ms': ..., 'rss_mb': ...}``: each row
    has the scenario, method (``nlml_hpe`` or ``legacy``) and its timings, and
    the ratio to the legacy graph when both ran.
    """
    crop, share = face_crop(face_rgb, face_landmarks)
    rows = []
    for name, size, options, make_frames in scenarios(crop, share, frames, warmup, crowd):
        methods = [False]
        if legacy and not name.startswith('crowd') and options.get('perspective_warp', True):
            methods.append(True)  # (the legacy graph never re-read: no row without it)
        ests = []
        try:
            for is_legacy in methods:
                ests.append(make_estimator(is_legacy, **options))
            stats = time_streams(ests, make_frames, frames, warmup)
            for is_legacy, est, st in zip(methods, ests, stats):
                row = {'scenario': name, 'method': 'legacy' if is_legacy else 'nlml_hpe',
                       'size': list(size), **st}
                if not is_legacy and options.get('perspective_warp'):
                    row['reread_faces'] = int(est.last_timings.get('warped', 0))
                rows.append(row)
            model = ests[0].model
        finally:
            for est in ests:
                est.close()
        if len(methods) == 2:
            ours, base = rows[-2], rows[-1]
            if ours['frame_ms']['p50'] and base['frame_ms']['p50']:
                ours['ratio_to_legacy_p50'] = ours['frame_ms']['p50'] / base['frame_ms']['p50']
    from ..features import normalise_landmarks

    feats = normalise_landmarks(face_landmarks)
    mt = []
    for i in range(1100):
        t0 = time.perf_counter()
        model.predict(feats)
        if i >= 100:
            mt.append((time.perf_counter() - t0) * 1e3)
    cur, peak = rss_mb()
    return {'rows': rows, 'encoder_heads_ms': latency_stats(mt), 'frames': frames,
            'warmup': warmup,
            'rss_mb': {'current': cur, 'peak': peak}}


def format_speed(result):
    """Human-readable table of :func:`run_speed` output."""
    lines = [f"streaming: {result['frames']} timed frames per row after "
             f"{result['warmup']} warm-up frames; ms per estimate() call"
             + (f"; {result['num_threads']} LiteRT thread(s)" if 'num_threads' in result
                else '')]
    lines.append(f"{'scenario':<36} {'method':<9} {'faces':>5} {'p50':>7} {'p95':>7} "
                 f"{'landmk':>7} {'pose':>6} {'CPU':>6} {'vs legacy':>9}")
    for r in result['rows']:
        ratio = r.get('ratio_to_legacy_p50')
        lines.append(f"{r['scenario']:<36} {r['method']:<9} {r['faces_mean']:5.1f} "
                     f"{r['frame_ms']['p50']:7.2f} {r['frame_ms']['p95']:7.2f} "
                     f"{r['landmarks_ms']['p50']:7.2f} {r['pose_ms']['p50']:6.2f} "
                     f"{r.get('cpu_ms_per_frame', float('nan')):6.2f} "
                     + (f'{100 * ratio:8.0f}%' if ratio else ''))
    lines.append('CPU: mean CPU time per frame, all threads of the process (ms)')
    s = result['encoder_heads_ms']
    lines.append(f"encoder+heads, 1 face: p50 {s['p50']:.3f} ms, p95 {s['p95']:.3f} ms")
    rss = result['rss_mb']
    lines.append(f"RSS: {rss['current']:.0f} MB (peak {rss['peak']:.0f} MB)")
    return '\n'.join(lines)
