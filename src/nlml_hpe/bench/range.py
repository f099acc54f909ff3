"""Faces at social distance, in many rooms: detection and accuracy by face size and scene.

``python -m nlml_hpe.bench.range DIR``: each AFLW2000-3D face of the paper's
angle range (|yaw| <= 50, |pitch| <= 40, |roll| <= 30) is scaled so that its
labelled 68-point box is ``W`` pixels wide and pasted near the centre of a
frame (:mod:`nlml_hpe.bench.clutter`): every frame has a background of its own,
of each kind in turn (smooth, clutter, real-photo texture, noisy, JPEG), and
the face comes either with a feathered ellipse of its photo or with its whole
photo, hard edges.  The estimator reads the frame once (no flip averaging, as
the node does); the face matching the pasted label box is scored, every other
face it reports is a false one.  Face-free frames of each kind count false
faces alone.  Distances assume a 15 cm face and a 60 deg horizontal field of
view.  A seed makes a run repeatable, and a frame is the same whichever
subset (``--backgrounds``, ``--modes``, ``--widths``) runs.
"""

import argparse
import json
import math
from pathlib import Path
import sys
import time

import numpy as np

from ..flags import add_option_flags, config_from_flags
from ..geometry import box_iou
from .aflw2000 import (
    MIN_LABEL_IOU,
    PROTOCOLS,
    in_protocol,
    list_aflw2000,
    mae,
    pick_labelled_face,
    read_aflw_box,
    read_aflw_pose,
    read_rgb,
)
from .clutter import BACKGROUND_KINDS, PASTE_MODES, frame_rng, photo_textures, scene

FACE_WIDTHS = (100, 40, 28)
FRAMES = ((640, 480), (1280, 720))
#: Face-free frames per background kind and frame size (false faces).
EMPTY_FRAMES = 100
#: Face width and camera of the distance column.
FACE_WIDTH_M = 0.15
HFOV_DEG = 60.0
#: Faces the texture check (:func:`load_textures`) looks for in one photo.
SCREEN_FACES = 8


def distance_m(face_px, frame_width):
    """Distance (m) at which a 15 cm face is ``face_px`` wide in a 60 deg camera."""
    focal = frame_width / 2.0 / math.tan(math.radians(HFOV_DEG) / 2.0)
    return FACE_WIDTH_M * focal / face_px


def load_faces(directory, limit=None, protocol='paper'):
    """Return the protocol's faces of an AFLW2000-3D directory (the first ``limit``).

    Each is ``(rgb, label box, pose)``.
    """
    faces = []
    for jpg, mat in list_aflw2000(directory):
        box = read_aflw_box(mat)
        if box is None:
            continue
        pose = read_aflw_pose(mat)
        if in_protocol(pose, PROTOCOLS[protocol]):
            faces.append((read_rgb(jpg), box, pose))
    return faces[:limit] if limit else faces


def other_faces(rgb, box, extractor):
    """Landmark boxes of the faces of ``rgb`` that are not its labelled face (``box``)."""
    from ..landmarks.face_checks import landmark_boxes

    found = extractor.read_frame(rgb).faces
    if not found:
        return []
    boxes = landmark_boxes(np.stack(found))
    iou = box_iou(boxes, np.asarray(box, dtype=np.float64).reshape(1, 4))[:, 0]
    return [tuple(b) for b, v in zip(boxes, iou) if v < MIN_LABEL_IOU]


def load_textures(directory, screen=True):
    """``(textures, dropped)``: the non-face patches of an AFLW2000-3D directory's photos.

    ``textures`` (``photo`` backgrounds, :func:`~.clutter.photo_textures`) come
    from the photos that show no face but their labelled one: a photo of two
    people would put the other's eye or mouth into a face-free frame.
    ``screen``: that check, by the landmark stage (default options) on the
    whole photo; ``dropped``: the names of the photos it left out.
    """
    from ..landmarks import LandmarkExtractor

    textures, dropped = [], []
    extractor = LandmarkExtractor(max_faces=SCREEN_FACES) if screen else None
    try:
        for jpg, mat in list_aflw2000(directory):
            box = read_aflw_box(mat)
            if box is None:
                continue
            rgb = read_rgb(jpg)
            if extractor is not None and other_faces(rgb, box, extractor):
                dropped.append(Path(jpg).name)
                continue
            textures += photo_textures([rgb], [box])
    finally:
        if extractor is not None:
            extractor.close()
    return textures, dropped


def _score(per, name, poses, label, elapsed):
    """Record one estimator's reading of one frame."""
    r = per[name]
    r['ms'].append(elapsed * 1e3)
    pick = None if label is None else pick_labelled_face([p.box for p in poses], label)
    if pick is not None:
        r['pred'].append(poses[pick].angles)
        r['gt'].append(r['truth'])
    r['false'] += len(poses) - (pick is not None)


def _summary(r, n):
    return {'detected': len(r['gt']), 'detection_rate': len(r['gt']) / n if n else None,
            'mae': mae(r['pred'], r['gt']), 'false_faces': r['false'],
            'ms_p50': float(np.median(r['ms'])) if r['ms'] else None}


def _read(estimators, frame, label, per):
    for name, est in estimators.items():
        t0 = time.perf_counter()
        poses = est.estimate(frame)
        _score(per, name, poses, label, time.perf_counter() - t0)


def _cell(estimators, faces, textures, size, width, kind, mode, seed):
    """One table cell: every face pasted at ``width`` px into a ``kind`` frame, ``mode``."""
    per = {n: {'pred': [], 'gt': [], 'ms': [], 'false': 0} for n in estimators}
    for i, (rgb, box, gt) in enumerate(faces):
        rng = frame_rng(seed, 'face', size[0], size[1], width, kind, mode, i)
        frame, label = scene((rgb, box), size[0], size[1], width, kind, mode, rng, textures)
        for r in per.values():
            r['truth'] = gt
        _read(estimators, frame, label, per)
    return {n: _summary(r, len(faces)) for n, r in per.items()}


def _empty(estimators, textures, size, kind, count, seed):
    per = {n: {'pred': [], 'gt': [], 'ms': [], 'false': 0} for n in estimators}
    for i in range(count):
        rng = frame_rng(seed, 'empty', size[0], size[1], kind, i)
        frame, _ = scene(None, size[0], size[1], 0, kind, 'photo', rng, textures)
        _read(estimators, frame, None, per)
    return {n: {'frames': count, 'false_faces': r['false'],
                'per_100': 100.0 * r['false'] / count if count else None}
            for n, r in per.items()}


def run_range(directory, estimators, *, widths=FACE_WIDTHS, frames=FRAMES,
              backgrounds=BACKGROUND_KINDS, modes=PASTE_MODES, empty_frames=EMPTY_FRAMES,
              limit=None, seed=0, progress=False):
    """Measure detection rate, MAE, false faces and time per frame, mode, background, width.

    ``estimators``: ``{name: HeadPoseEstimator}`` (static, one pass).  Returns
    a dict with ``rows`` (one per frame, mode, background, width), ``empty``
    (false faces per face-free frame, per frame and background) and
    ``spread`` (worst and best background per frame, mode, width).
    """
    for kind in backgrounds:
        if kind not in BACKGROUND_KINDS:
            raise ValueError(f'background kind must be one of {BACKGROUND_KINDS}, got {kind!r}')
    faces = load_faces(directory, limit)
    textures, dropped = load_textures(directory) if 'photo' in backgrounds else ([], [])
    rows, empty = [], []
    for size in frames:
        for kind in backgrounds:
            if empty_frames:
                empty.append({'frame': list(size), 'background': kind,
                              'methods': _empty(estimators, textures, size, kind,
                                                empty_frames, seed)})
            for mode in modes:
                for width in widths:
                    rows.append({'frame': list(size), 'background': kind, 'mode': mode,
                                 'face_px': width, 'faces': len(faces),
                                 'distance_m': round(distance_m(width, size[0]), 2),
                                 'methods': _cell(estimators, faces, textures, size, width,
                                                  kind, mode, seed)})
                    if progress:
                        print(f'[range] {size[0]}x{size[1]} {kind} {mode} {width}px',
                              file=sys.stderr, flush=True)
    return {'dataset': str(directory), 'protocol': 'paper', 'faces': len(faces), 'seed': seed,
            'methods': list(estimators), 'rows': rows, 'empty': empty,
            'textures': {'patches': len(textures), 'photos_left_out': dropped},
            'spread': spread(rows),
            'note': 'one pass (no flip averaging); a background of its own per frame; '
                    'faces within 24 px of the frame centre; frames stored as JPEG q92; '
                    'distance for a 15 cm face, 60 deg HFOV'}


def spread(rows):
    """Worst and best background of each (frame, mode, width, method): rate and MAE."""
    groups = {}
    for row in rows:
        for name, m in row['methods'].items():
            key = (tuple(row['frame']), row['mode'], row['face_px'], name)
            groups.setdefault(key, []).append((row['background'], m))
    out = []
    for (frame, mode, width, name), cells in groups.items():
        rates = [(m['detection_rate'], k) for k, m in cells]
        maes = [(m['mae']['mean'], k) for k, m in cells if m['mae']['mean'] is not None]
        out.append({'frame': list(frame), 'mode': mode, 'face_px': width, 'method': name,
                    'rate_min': min(rates), 'rate_max': max(rates),
                    'mae_min': min(maes) if maes else None,
                    'mae_max': max(maes) if maes else None})
    return out


def _f(v, fmt='6.2f'):
    return format(v, fmt) if v is not None else '     -'


def format_range(result):
    """Human-readable tables of :func:`run_range` output."""
    lines = [f"Range: {result['dataset']}, {result['faces']} paper-range faces, seed "
             f"{result['seed']}; {result['note']}."]
    lines.append(f"{'frame':<9} {'mode':<7} {'background':<10} {'face':>5} {'dist':>5}  "
                 f"{'method':<8} {'found':>6} {'MAE':>6} {'yaw':>6} {'pitch':>6} "
                 f"{'roll':>6} {'false':>5} {'ms':>7}")
    for row in result['rows']:
        for name, m in row['methods'].items():
            mae = m['mae']
            lines.append(f"{row['frame'][0]}x{row['frame'][1]:<5} {row['mode']:<7} "
                         f"{row['background']:<10} {row['face_px']:>3}px "
                         f"{row['distance_m']:>4.1f}m  {name:<8} "
                         f"{100 * m['detection_rate']:5.1f}% {_f(mae['mean'])} "
                         f"{_f(mae['yaw'])} {_f(mae['pitch'])} {_f(mae['roll'])} "
                         f"{m['false_faces']:>5} {_f(m['ms_p50'], '7.2f')}")
    if result['empty']:
        lines.append('False faces on face-free frames (per 100 frames):')
        for row in result['empty']:
            cells = ', '.join(f"{n} {m['per_100']:.1f}" for n, m in row['methods'].items())
            lines.append(f"  {row['frame'][0]}x{row['frame'][1]:<5} {row['background']:<8} "
                         f"{cells}")
    lines.append('Spread across backgrounds (worst .. best):')
    for s in result['spread']:
        mae = (f"{s['mae_min'][0]:.2f} ({s['mae_min'][1]}) .. {s['mae_max'][0]:.2f} "
               f"({s['mae_max'][1]})" if s['mae_min'] else '-')
        lines.append(f"  {s['frame'][0]}x{s['frame'][1]:<5} {s['mode']:<7} "
                     f"{s['face_px']:>3}px {s['method']:<8} found "
                     f"{100 * s['rate_min'][0]:.1f}% ({s['rate_min'][1]}) .. "
                     f"{100 * s['rate_max'][0]:.1f}% ({s['rate_max'][1]}); MAE {mae}")
    return '\n'.join(lines)


def make_estimators(model_path=None, legacy=True, config=None, **options):
    """``{'nlml_hpe': ..., 'legacy': ...}`` one-pass estimators (legacy if installed and asked).

    ``config`` / ``options``: the project's estimator options (one pass whatever they say).
    """
    from ..estimator import HeadPoseEstimator
    from ..model import default_model_dir, load_model

    model = load_model(default_model_dir() if model_path is None else model_path)
    out = {'nlml_hpe': HeadPoseEstimator(model, config=config, **dict(options,
                                                                      flip_average=False))}
    if legacy:
        from .legacy import LegacyLandmarkExtractor, available

        if not available():
            raise SystemExit('the legacy MediaPipe graph (mediapipe==0.10.21) is not '
                             'installed: give --no-legacy')
        out['legacy'] = HeadPoseEstimator(model, LegacyLandmarkExtractor(max_faces=5),
                                          flip_average=False)
    return out


def run_and_print(name, estimators, run, format_result, as_json):
    """Return 0 after ``run(estimators)``, its result printed (JSON or ``format_result``).

    The estimators are closed whatever happens; a ``ValueError`` ends the
    command with ``benchmark <name>: <reason>``.
    """
    try:
        result = run(estimators)
    except ValueError as exc:
        raise SystemExit(f'benchmark {name}: {exc}') from None
    finally:
        for est in estimators.values():
            est.close()
    print(json.dumps(result, indent=2) if as_json else format_result(result))
    return 0


def add_arguments(parser):
    """Add the command line of the range benchmark (``nlml-hpe benchmark range`` too)."""
    parser.add_argument('directory', metavar='DIR', help='AFLW2000-3D images with .mat labels')
    parser.add_argument('--limit', type=int, default=None,
                        help='use the first N paper-range faces')
    parser.add_argument('--widths', type=int, nargs='+', metavar='PX',
                        help=f'face widths (default: {" ".join(map(str, FACE_WIDTHS))})')
    parser.add_argument('--frames', nargs='+', metavar='WxH',
                        help='frame sizes (default: 640x480 1280x720)')
    parser.add_argument('--backgrounds', metavar='KIND,...', default=','.join(BACKGROUND_KINDS),
                        help=f'background kinds (default: {",".join(BACKGROUND_KINDS)})')
    parser.add_argument('--modes', metavar='MODE,...', default=','.join(PASTE_MODES),
                        help=f'paste modes (default: {",".join(PASTE_MODES)})')
    parser.add_argument('--empty', type=int, default=EMPTY_FRAMES,
                        help=f'face-free frames per kind and size (default {EMPTY_FRAMES})')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--model', metavar='PATH')
    parser.add_argument('--no-legacy', action='store_true',
                        help='skip the legacy MediaPipe graph (needs mediapipe 0.10.21)')
    parser.add_argument('--json', action='store_true')
    add_estimator_flags(parser)


def add_estimator_flags(parser):
    """Add the project estimator's option flags (one pass: not flip_average)."""
    parser.set_defaults(option_specs=add_option_flags(
        parser, exclude=('flip_average',),
        title="the project's estimator options (one pass; the legacy graph keeps its own)"))


def estimator_config(args, name):
    """Return the options the flags give; a bad one ends the command, named."""
    try:
        return config_from_flags(args, args.option_specs)
    except ValueError as exc:
        raise SystemExit(f'benchmark {name}: {exc}') from None


def parse_frames(values):
    """``['640x480', ...]`` -> ``[(640, 480), ...]``; ``ValueError`` on anything else."""
    out = []
    for v in values:
        parts = v.lower().split('x')
        if len(parts) != 2 or not all(p.isdigit() and int(p) >= 64 for p in parts):
            raise ValueError(f'frame sizes are WxH of at least 64 px, got {v!r}')
        out.append((int(parts[0]), int(parts[1])))
    return out


def main(args):
    """Run the benchmark for parsed ``args`` (:func:`add_arguments`); print its tables."""
    try:
        frames = parse_frames(args.frames) if args.frames else FRAMES
        kinds = [k for k in args.backgrounds.split(',') if k]
        modes = [m for m in args.modes.split(',') if m]
        for m in modes:
            if m not in PASTE_MODES:
                raise ValueError(f'paste mode must be one of {PASTE_MODES}, got {m!r}')
        if any(not 8 <= w <= 4000 for w in args.widths or ()):
            raise ValueError('face widths must be 8-4000 px')
        if args.empty < 0:
            raise ValueError('--empty must be >= 0')
    except ValueError as exc:
        raise SystemExit(f'benchmark range: {exc}') from None
    config = estimator_config(args, 'range')
    return run_and_print(
        'range', make_estimators(args.model, legacy=not args.no_legacy, config=config),
        lambda estimators: run_range(
            args.directory, estimators, widths=args.widths or FACE_WIDTHS, frames=frames,
            backgrounds=kinds, modes=modes, empty_frames=args.empty, limit=args.limit,
            seed=args.seed, progress=not args.json and sys.stderr.isatty()),
        format_range, args.json)


if __name__ == '__main__':
    _parser = argparse.ArgumentParser(prog='python -m nlml_hpe.bench.range',
                                      description=__doc__.split('\n\n')[0])
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
