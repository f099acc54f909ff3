"""``nlml-hpe benchmark tracks``: how the face stream tracks faces over time.

    python -m nlml_hpe.bench.tracks [--quick] [--json] [--sequences NAME ...]
        [--face-free-min MIN] [--photos N] [--seed N] [--model PATH]

Runs what the node runs (and ``nlml-hpe predict`` on a video): the estimator in
streaming mode, one pass (``flip_average`` off), then
:meth:`FaceStream.update <nlml_hpe.face_stream.FaceStream.update>` with the
node's defaults (tracking and One-Euro smoothing on), frame after frame, on
sequences with known people (:mod:`nlml_hpe.bench.sequences`,
:mod:`nlml_hpe.bench.photos`): rendered heads turning, nodding, covered,
leaving and coming back, crossing, walking away; real dev faces moved across
the frame; and face-free video.  Each sequence starts with fresh tracks.

It reports, per sequence and overall (:mod:`nlml_hpe.bench.track_metrics`):
IDF1, MOTA, identity switches and fragmentations (box IoU >= 0.5); the recall
of visible faces and the pose error by |yaw| bin; how long a person who leaves
stays listed; whether covered or absent people get their id back; false tracks
per minute of face-free video; the beyond-range flag's precision and recall and
the sigma calibration (n/a until the stream has them:
:mod:`nlml_hpe.bench.adapter`); and the stream's time per frame (the estimator
and the stream's update; not the picture-making).

Rendered sequences need the training renderer (moderngl over EGL) and
ICT-FaceKit; the real faces the AFLW2000 dev split (validation only).  Any that
is missing is skipped with the reason; the rest runs.
"""

import argparse
import json
import os
from pathlib import Path
import sys
import time

import numpy as np

from .adapter import read_face
from .mot import IOU_THRESHOLD
from .sequences import FPS, FRAME_SIZE, HFOV_DEG, RENDERED, VISIBLE_MIN, rendered_sequence
from .track_metrics import DROP_TARGET_S, SequenceScore, summarise

#: Default face-free minutes, real faces, and the --quick selection.
FACE_FREE_MIN, PHOTOS = 3.0, 18
QUICK = {'sequences': ('frontal', 'occlusion', 'real_faces', 'face_free'), 'photos': 4,
         'face_free_min': 0.25}
ALL = RENDERED + ('real_faces', 'face_free')
#: Targets (issue 20): recall at |yaw| 60-90, drop time, false tracks per 10 minutes.
TARGET_WIDE_RECALL, TARGET_FALSE_PER_10MIN = 0.98, 1.0


def shared_data_dir():
    """``$NLML_HPE_SHARED/data``, else ``shared/data`` beside the source checkout."""
    env = os.environ.get('NLML_HPE_SHARED')
    if env:
        return Path(env) / 'data'
    return Path(__file__).resolve().parents[4] / 'shared' / 'data'


def build_sequences(names, seed=0, photos=PHOTOS, face_free_min=FACE_FREE_MIN, ict=None,
                    aflw=None):
    """Return ``(sequences, skipped {name: why}, kit or None)`` (release the kit when done)."""
    from .photos import face_free_sequence, photo_sequence

    data = shared_data_dir()
    ict = Path(ict) if ict else data / 'ict_facekit' / 'ict_facekit.npz'
    aflw = Path(aflw) if aflw else data / 'aflw2000_dev'
    out, skipped, kit = [], {}, None
    wanted = [n for n in ALL if n in names]
    if any(n in RENDERED for n in wanted):
        why = None if ict.is_file() else f'ICT-FaceKit model not found: {ict}'
        if why is None:
            try:
                from .scenes import HeadKit
                kit = HeadKit(ict)
            except (RuntimeError, OSError, ValueError) as exc:
                why = str(exc)
        for n in wanted:
            if n in RENDERED:
                if kit is None:
                    skipped[n] = why
                else:
                    out.append(rendered_sequence(kit, n, seed))
    if 'real_faces' in wanted:
        try:
            out.append(photo_sequence(aflw, photos, seed))
        except ValueError as exc:
            skipped['real_faces'] = str(exc)
    if 'face_free' in wanted:
        out.append(face_free_sequence(face_free_min * 60.0, seed))
    return out, skipped, kit


def run_sequence(seq, estimator, stream_options=None, iou_threshold=IOU_THRESHOLD):
    """Run the estimator and a fresh :class:`FaceStream` over ``seq``; return its score."""
    from ..face_stream import FaceStream

    estimator.extractor.reset()
    stream = FaceStream(**(stream_options or {}))
    k = seq.camera_matrix
    score = SequenceScore(seq.name, seq.kind, seq.fps, iou_threshold)
    for frame in seq.frames():
        t0 = time.perf_counter()
        poses = estimator.estimate(frame.rgb, k)
        faces, _ = stream.update(poses, frame.t, seq.size, camera_matrix=k)
        ms = (time.perf_counter() - t0) * 1e3
        score.add(frame.truths, [read_face(f) for f in faces], ms)
    return score


def _targets(overall, face_free):
    wide = [overall['recall_by_yaw'][b] for b in ('60-70', '70-80', '80-90')]
    vis = sum(r['visible'] for r in wide)
    recall = sum(r['listed'] for r in wide) / vis if vis else None
    drops = overall['drop_listed_after_s']
    per10 = None if face_free is None else face_free['false_tracks_per_min'] * 10
    return {
        'listed_at_yaw_60_90': {'value': None if recall is None else round(recall, 4),
                                'target': f'>= {TARGET_WIDE_RECALL}',
                                'met': None if recall is None else recall >= TARGET_WIDE_RECALL},
        'dropped_after_leaving_s': {'value': drops['max'], 'target': f'<= {DROP_TARGET_S}',
                                    'met': None if drops['max'] is None
                                    else drops['max'] <= DROP_TARGET_S},
        'false_tracks_per_10_min': {'value': None if per10 is None else round(per10, 3),
                                    'target': f'<= {TARGET_FALSE_PER_10MIN}',
                                    'met': None if per10 is None
                                    else per10 <= TARGET_FALSE_PER_10MIN},
    }


def run_tracks(sequences, estimator, *, iou_threshold=IOU_THRESHOLD, stream_options=None,
               log=None):
    """Score every sequence; return the result dict (per sequence, overall, targets)."""
    scores, per = [], {}
    for seq in sequences:
        t0 = time.perf_counter()
        if log:
            log(f'[tracks] {seq.name}: {seq.n_frames} frames ({seq.description}) ...')
        score = run_sequence(seq, estimator, stream_options, iou_threshold)
        scores.append(score)
        per[seq.name] = {'kind': seq.kind, 'description': seq.description,
                         'duration_s': round(seq.duration_s, 2), **summarise([score])}
        if log:
            log(f'[tracks] {seq.name}: done in {time.perf_counter() - t0:.0f} s')
    faces = [s for s in scores if s.kind != 'face_free']
    overall = {kind: summarise([s for s in faces if s.kind == kind])
               for kind in ('rendered', 'real') if any(s.kind == kind for s in faces)}
    if faces:
        overall['faces'] = summarise(faces)
    free = [s for s in scores if s.kind == 'face_free']
    face_free = summarise(free) if free else None
    return {'sequences': per, 'overall': overall,
            'targets': _targets(overall['faces'], face_free) if faces else {}}


# --------------------------------------------------------------------------- table

def _f(v, fmt='{:.2f}', na='n/a'):
    return na if v is None else fmt.format(v)


def _sequence_rows(result):
    lines = [f"{'sequence':<14} {'frames':>6} {'IDF1':>6} {'MOTA':>6} {'IDSW':>4} "
             f"{'Frag':>4} {'recall':>6} {'FP':>4} {'ids/ppl':>7} {'false':>5} "
             f"{'MAE y/p/r (deg)':>17} {'orient':>6} {'ms p50':>6}"]
    rows = list(result['sequences'].items())
    rows += [(f'ALL {k}', v) for k, v in result['overall'].items()]
    for name, r in rows:
        m = r['mot']
        if r.get('kind') == 'face_free':
            lines.append(f"{name:<14} {r['frames']:>6}  false tracks {r['false_tracks']} "
                         f"({_f(r['false_tracks_per_min'], '{:.2f}')}/min), listed "
                         f"face-frames {m['fp']}, ms p50 {_f(r['ms_per_frame']['p50'])}")
            continue
        pose = [row for row in r['pose_mae_by_yaw'].values() if row['n']]
        n = sum(row['n'] for row in pose)

        def avg(key, rows=pose, n=n):
            vals = [row[key] * row['n'] for row in rows if row[key] is not None]
            return sum(vals) / n if n and vals else None
        mae = '/'.join(_f(avg(k), '{:.1f}') for k in ('yaw', 'pitch', 'roll'))
        lines.append(f"{name:<14} {r['frames']:>6} {_f(m['idf1'], '{:.3f}'):>6} "
                     f"{_f(m['mota'], '{:.3f}'):>6} {m['id_switches']:>4} "
                     f"{m['fragmentations']:>4} {_f(m['recall'], '{:.3f}'):>6} {m['fp']:>4} "
                     f"{str(m['track_ids']) + '/' + str(m['gt_identities']):>7} "
                     f"{r['false_tracks']:>5} {mae:>17} {_f(avg('orientation_deg'), '{:.1f}'):>6} "
                     f"{_f(r['ms_per_frame']['p50']):>6}")
    return lines


def _bin_rows(summary):
    lines = [f"{'|yaw|':<6} {'visible':>7} {'listed':>6} {'recall':>7}  {'MAE yaw':>7} "
             f"{'pitch':>6} {'roll':>6} {'orient':>6}"]
    for b, rec in summary['recall_by_yaw'].items():
        p = summary['pose_mae_by_yaw'][b]
        lines.append(f"{b:<6} {rec['visible']:>7} {rec['listed']:>6} "
                     f"{_f(rec['recall'], '{:.3f}'):>7}  {_f(p['yaw'], '{:.1f}'):>7} "
                     f"{_f(p['pitch'], '{:.1f}'):>6} {_f(p['roll'], '{:.1f}'):>6} "
                     f"{_f(p['orientation_deg'], '{:.1f}'):>6}")
    return lines


def _event_rows(result):
    lines = ['Gaps (not visible between two visible stretches): '
             'sequence, person, at, length, why, id before -> after, listed again after']
    for name, r in result['sequences'].items():
        for g in r['gaps']:
            lines.append(f"  {name:<14} {g['identity']:>4} {g['start_s']:6.2f}s "
                         f"{g['duration_s']:5.2f}s {g['kind']:<8} {g['id_before']} -> "
                         f"{g['id_after']} ({'same id' if g['kept_id'] else 'NEW ID'}), "
                         f"{_f(g['relisted_after_s'], '{:.2f}s', 'never')}")
    lines.append('Leaving the image: sequence, person, at, track, still listed for, away for')
    for name, r in result['sequences'].items():
        for d in r['drops']:
            kept = ' (kept until back)' if d['kept_until_back'] else ''
            lines.append(f"  {name:<14} {d['identity']:>4} {d['exit_s']:6.2f}s "
                         f"track {d['track']:>3} {d['listed_after_s']:5.2f}s "
                         f"{d['absent_s']:6.2f}s{kept}")
    return lines


def format_tracks(result):
    """Human-readable report of :func:`run_tracks` output."""
    c = result.get('config', {})
    lines = [f"Tracks benchmark (seed {c.get('seed')}, match: box IoU >= "
             f"{c.get('iou_threshold')}, {c.get('fps')} fps {c.get('frame')}): estimator "
             'streaming, one pass, then FaceStream (node defaults).', '']
    lines += _sequence_rows(result)
    faces = result['overall'].get('faces')
    if faces:
        for kind, what in (('rendered', 'rendered heads'), ('real', 'real dev faces')):
            if kind in result['overall']:
                lines += ['', f'By |yaw|, {what} (recall: visible faces listed with IoU >= '
                          f"{c.get('iou_threshold')}; MAE: the estimator's angles; orient: "
                          'the published face frame, deg):']
                lines += _bin_rows(result['overall'][kind])
                lines.append('recall by |pitch|: ' + ', '.join(
                    f"{b} {_f(r['recall'], '{:.3f}')} ({r['visible']})"
                    for b, r in result['overall'][kind]['recall_by_pitch'].items()))
        lines += ['', f"beyond-range flag (|yaw| > 65 set, < 45 clear): "
                  f"{json.dumps(faces['beyond_range'])}",
                  f"sigma calibration (errors within 1 sigma, per bin): "
                  f"{json.dumps(faces['sigma_calibration'])}",
                  f"lifecycle states listed: {json.dumps(faces['states'])}",
                  f"listed after leaving (s): {json.dumps(faces['drop_listed_after_s'])}", '']
        lines += _event_rows(result)
    if result.get('targets'):
        lines += ['', 'Targets:']
        for name, t in result['targets'].items():
            met = {True: 'met', False: 'NOT MET', None: 'n/a'}[t['met']]
            lines.append(f"  {name}: {t['value']} (target {t['target']}): {met}")
    for name, why in result.get('skipped', {}).items():
        lines.append(f'skipped {name}: {why}')
    return '\n'.join(lines)


# --------------------------------------------------------------------------- command line

def add_arguments(parser):
    """Add the benchmark's options to ``parser`` (for ``nlml-hpe benchmark tracks``)."""
    parser.add_argument('--quick', action='store_true',
                        help='a short run: frontal and occlusion renders, 4 real faces, '
                             '15 s face-free (for smoke tests)')
    parser.add_argument('--sequences', nargs='+', choices=ALL, metavar='NAME',
                        help=f'run only these (default: all): {", ".join(ALL)}')
    parser.add_argument('--face-free-min', type=float, default=None, metavar='MIN',
                        help=f'minutes of face-free video (default {FACE_FREE_MIN:g}; '
                             'the target is <= 1 false track per 10 minutes)')
    parser.add_argument('--photos', type=int, default=None, metavar='N',
                        help=f'real dev faces in the real_faces sequence (default {PHOTOS})')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--iou', type=float, default=IOU_THRESHOLD,
                        help=f'box IoU that matches a track to a person (default '
                             f'{IOU_THRESHOLD})')
    parser.add_argument('--ict', metavar='NPZ', help='ICT-FaceKit model (default: '
                        '../shared/data/ict_facekit/ict_facekit.npz)')
    parser.add_argument('--aflw', metavar='DIR', help='AFLW2000-3D dev split (default: '
                        '../shared/data/aflw2000_dev)')
    parser.add_argument('--model', metavar='PATH', help='model directory or .safetensors')
    parser.add_argument('--json', action='store_true', help='print the results as JSON')
    parser.add_argument('--quiet', action='store_true', help='no progress on stderr')
    parser.set_defaults(func=cmd_tracks)
    return parser


def cmd_tracks(args):
    """Run the benchmark from parsed arguments; print the table or JSON; return the exit code."""
    from ..estimator import HeadPoseEstimator

    names = args.sequences or (QUICK['sequences'] if args.quick else ALL)
    photos = args.photos or (QUICK['photos'] if args.quick else PHOTOS)
    free = args.face_free_min or (QUICK['face_free_min'] if args.quick else FACE_FREE_MIN)
    if photos < 1 or free <= 0 or not 0 < args.iou <= 1:
        print('benchmark tracks: --photos must be >= 1, --face-free-min > 0, --iou in (0, 1]',
              file=sys.stderr)
        return 2
    log = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    seqs, skipped, kit = build_sequences(names, args.seed, photos, free, args.ict, args.aflw)
    for name, why in skipped.items():
        print(f'benchmark tracks: skipping {name}: {why}', file=sys.stderr)
    if not seqs:
        print('benchmark tracks: nothing to run', file=sys.stderr)
        return 2
    try:
        with HeadPoseEstimator.from_pretrained(args.model, streaming=True,
                                               flip_average=False) as est:
            result = run_tracks(seqs, est, iou_threshold=args.iou, log=log)
    finally:
        if kit is not None:
            kit.release()
    result['skipped'] = skipped
    result['config'] = {'seed': args.seed, 'iou_threshold': args.iou, 'fps': FPS,
                        'frame': f'{FRAME_SIZE[0]}x{FRAME_SIZE[1]}', 'hfov_deg': HFOV_DEG,
                        'visible_min': VISIBLE_MIN, 'photos': photos,
                        'face_free_min': free, 'estimator': 'streaming, flip_average off',
                        'stream': 'FaceStream defaults (tracking, smoothing)',
                        'wall_s': round(time.perf_counter() - t0, 1)}
    print(json.dumps(result, indent=1, default=_json_default) if args.json
          else format_tracks(result))
    return 0


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f'not JSON serialisable: {type(value).__name__}')


def main(argv=None):
    """Entry point of ``python -m nlml_hpe.bench.tracks``; returns the exit code."""
    parser = argparse.ArgumentParser(prog='nlml-hpe benchmark tracks',
                                     description=__doc__.split('\n')[0])
    return cmd_tracks(add_arguments(parser).parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
