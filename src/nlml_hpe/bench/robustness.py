"""Camera faults: detection and accuracy of near and far faces under blur, noise, dim light, JPEG.

``python -m nlml_hpe.bench.robustness DIR``: every AFLW2000-3D face of the
paper's angle range is read under each camera fault of
:data:`~nlml_hpe.bench.clutter.FAULTS` (clean, Gaussian blur, motion blur,
sensor noise, dim room, JPEG quality 25), in three conditions:

* ``full``: the photo itself, its face as large as the dataset has it;
* ``100px`` / ``40px``: the whole photo scaled so its face is that wide,
  pasted within 24 px of the centre of a 640x480 frame with a cluttered
  background of its own (:func:`~nlml_hpe.bench.clutter.clutter_background`).

A face's frame is the same under every fault (the same background, the same
place), so the change from clean is the fault's alone.  The fault acts on
the whole frame, as a camera's would, and the frame is then stored as JPEG
(quality 92, or 25 for that fault).  Every estimator reads the same frames,
so the project's landmark stage and the legacy MediaPipe graph are compared
in one run.
"""

import argparse
import sys
import time

import numpy as np

from .aflw2000 import mae, pick_labelled_face
from .clutter import FAULTS, apply_fault, frame_rng, make_background, paste_face
from .range import (
    add_estimator_flags,
    estimator_config,
    load_faces,
    make_estimators,
    run_and_print,
)

#: Conditions: name -> face width in a cluttered frame (None: the photo itself).
CONDITIONS = {'full': None, '100px': 100, '40px': 40}
FRAME = (640, 480)


def frames_of(face, condition, index, seed, frame=FRAME):
    """Return the clean frame of ``face`` in ``condition`` and its label box (no camera yet)."""
    rgb, box, _ = face
    width = CONDITIONS[condition]
    if width is None:
        return rgb, box
    rng = frame_rng(seed, 'robust', condition, frame[0], frame[1], index)
    canvas = make_background('clutter', frame[0], frame[1], rng)
    label = paste_face(canvas, rgb, box, width, 'photo', rng)
    return canvas, label


def run_robustness(directory, estimators, *, faults=tuple(FAULTS), conditions=tuple(CONDITIONS),
                   limit=None, seed=0, progress=False):
    """Measure detection rate and MAE per fault, condition and estimator; change from clean.

    ``estimators``: ``{name: HeadPoseEstimator}`` (static, one pass).
    """
    for f in faults:
        if f not in FAULTS:
            raise ValueError(f'fault must be one of {sorted(FAULTS)}, got {f!r}')
    for c in conditions:
        if c not in CONDITIONS:
            raise ValueError(f'condition must be one of {sorted(CONDITIONS)}, got {c!r}')
    faces = load_faces(directory, limit)
    rows = []
    for cond in conditions:
        clean = [frames_of(face, cond, i, seed) for i, face in enumerate(faces)]
        for fault in faults:
            per = {n: {'pred': [], 'gt': [], 'sigma': [], 'ms': []} for n in estimators}
            for i, ((frame, label), face) in enumerate(zip(clean, faces)):
                img = apply_fault(frame, fault, frame_rng(seed, 'fault', fault, cond, i))
                for name, est in estimators.items():
                    t0 = time.perf_counter()
                    poses = est.estimate(img)
                    per[name]['ms'].append((time.perf_counter() - t0) * 1e3)
                    pick = pick_labelled_face([p.box for p in poses], label)
                    if pick is not None:
                        per[name]['pred'].append(poses[pick].angles)
                        per[name]['gt'].append(face[2])
                        per[name]['sigma'].append(poses[pick].sigma_deg)
            rows.append({'condition': cond, 'fault': fault, 'faces': len(faces),
                         'methods': {n: {'detected': len(r['gt']),
                                         'detection_rate': len(r['gt']) / len(faces)
                                         if faces else None,
                                         'mae': mae(r['pred'], r['gt']),
                                         **trust(r['pred'], r['gt'], r['sigma'])}
                                     for n, r in per.items()}})
            if progress:
                print(f'[robustness] {cond} {fault}', file=sys.stderr, flush=True)
    _changes(rows)
    return {'dataset': str(directory), 'protocol': 'paper', 'faces': len(faces), 'seed': seed,
            'frame': list(FRAME), 'methods': list(estimators), 'faults': dict(FAULTS),
            'rows': rows,
            'note': 'one pass (no flip averaging); far faces: the whole photo pasted in '
                    'a cluttered 640x480 frame; frames stored as JPEG q92 (q25 for jpeg25)'}


def trust(pred, gt, sigma):
    """How well the readings' own sigma describes their errors.

    ``within_sigma``: the share of angle errors (pitch, yaw, roll of every found
    face, pooled) no larger than the reading's sigma (about 0.68 when sigma is
    right); ``sigma_median``: the median sigma (deg) per angle.  Both ``None``
    for readings without a sigma (the legacy graph, a model without an
    uncertainty artifact).
    """
    if not sigma or any(s is None for s in sigma):
        return {'within_sigma': None, 'sigma_median': None}
    s = np.asarray(sigma, dtype=np.float64)
    err = np.abs(np.asarray(pred, dtype=np.float64) - np.asarray(gt, dtype=np.float64))
    med = np.median(s, axis=0)
    return {'within_sigma': float(np.mean(err <= s)),
            'sigma_median': dict(zip(('pitch', 'yaw', 'roll'), map(float, med)))}


def _changes(rows):
    """Add each row's change from the clean row of its condition (rate points, MAE deg)."""
    clean = {r['condition']: r for r in rows if r['fault'] == 'none'}
    for row in rows:
        base = clean.get(row['condition'])
        for name, m in row['methods'].items():
            b = base['methods'][name] if base else None
            m['rate_change'] = (m['detection_rate'] - b['detection_rate']
                                if b and b['detection_rate'] is not None else None)
            m['mae_change'] = (m['mae']['mean'] - b['mae']['mean'] if b and m['mae']['mean']
                               is not None and b['mae']['mean'] is not None else None)


def format_robustness(result):
    """Human-readable table of :func:`run_robustness` output."""
    lines = [f"Robustness: {result['dataset']}, {result['faces']} paper-range faces, seed "
             f"{result['seed']}; {result['note']}."]
    lines.append(f"{'condition':<9} {'fault':<7} {'method':<8} {'found':>6} {'MAE':>6} "
                 f"{'d found':>8} {'d MAE':>6} {'yaw':>5} {'sigma':>5} {'in 1s':>5}")
    for row in result['rows']:
        for name, m in row['methods'].items():
            def f(v, fmt='6.2f'):
                return format(v, fmt) if v is not None else '     -'
            rc, sm, ws = m['rate_change'], m.get('sigma_median'), m.get('within_sigma')
            lines.append(f"{row['condition']:<9} {row['fault']:<7} {name:<8} "
                         f"{100 * m['detection_rate']:5.1f}% {f(m['mae']['mean'])} "
                         f"{f(None if rc is None else 100 * rc, '+7.1f')}% "
                         f"{f(m['mae_change'], '+6.2f')} {f(m['mae']['yaw'], '5.2f')} "
                         f"{f(sm and sm['yaw'], '5.2f')} "
                         f"{f(None if ws is None else 100 * ws, '4.0f')}%")
    lines.append('yaw: the yaw MAE; sigma: the median sigma of yaw the readings give; in 1s: '
                 "the share of angle errors within the reading's sigma (about 68 % when sigma "
                 'is right; - where a method gives none).')
    lines.append('Faults: ' + '; '.join(f'{k}: {v}' for k, v in result['faults'].items()))
    return '\n'.join(lines)


def add_arguments(parser):
    """Add the command line of the robustness benchmark."""
    parser.add_argument('directory', metavar='DIR', help='AFLW2000-3D images with .mat labels')
    parser.add_argument('--limit', type=int, default=None,
                        help='use the first N paper-range faces')
    parser.add_argument('--faults', metavar='FAULT,...', default=','.join(FAULTS),
                        help=f'camera faults (default: {",".join(FAULTS)})')
    parser.add_argument('--conditions', metavar='COND,...', default=','.join(CONDITIONS),
                        help=f'conditions (default: {",".join(CONDITIONS)})')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--model', metavar='PATH')
    parser.add_argument('--no-legacy', action='store_true',
                        help='skip the legacy MediaPipe graph (needs mediapipe 0.10.21)')
    parser.add_argument('--json', action='store_true')
    add_estimator_flags(parser)


def main(args):
    """Run the benchmark for parsed ``args`` (:func:`add_arguments`); print its table."""
    config = estimator_config(args, 'robustness')
    return run_and_print(
        'robustness', make_estimators(args.model, legacy=not args.no_legacy, config=config),
        lambda estimators: run_robustness(
            args.directory, estimators, faults=[f for f in args.faults.split(',') if f],
            conditions=[c for c in args.conditions.split(',') if c], limit=args.limit,
            seed=args.seed, progress=not args.json and sys.stderr.isatty()),
        format_robustness, args.json)


if __name__ == '__main__':
    _parser = argparse.ArgumentParser(prog='python -m nlml_hpe.bench.robustness',
                                      description=__doc__.split('\n\n')[0])
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
