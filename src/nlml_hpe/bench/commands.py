"""``nlml-hpe benchmark ...``: the benchmarks' command lines.

    nlml-hpe benchmark aflw2000 DIR [--json] [--limit N] [--no-flip] [--legacy]
    nlml-hpe benchmark speed [--frames N] [--no-legacy]
    nlml-hpe benchmark range DIR [--widths PX ...] [--no-legacy]
    nlml-hpe benchmark offaxis DIR [--turns YAW,PITCH ...]
    nlml-hpe benchmark position [--trials N]
    nlml-hpe benchmark node ...   (nlml_hpe.bench.node)

Where a benchmark builds an estimator, its options are flags made from the
options table (:mod:`nlml_hpe.flags`, as ``nlml-hpe predict``'s), less those
the benchmark sets itself.  A value out of range is a usage error (exit 2).
"""

import argparse
import json
import sys

from ..flags import add_option_flags, config_from_flags


def _config(parser, args, specs, base=None):
    """Return the estimator options of the flags; exit with a usage error naming a bad one."""
    try:
        return config_from_flags(args, specs, base)
    except ValueError as exc:
        parser.error(str(exc))


def _load_estimator_or_none(model_path, config):
    from ..estimator import HeadPoseEstimator
    from ..model import ModelFileError

    try:
        return HeadPoseEstimator.from_pretrained(model_path, config=config), None
    except ModelFileError as exc:
        return None, str(exc)


def _legacy_or_exit(command):
    from .legacy import available

    if not available():
        raise SystemExit(f'nlml-hpe benchmark {command}: the legacy MediaPipe graph '
                         '(mediapipe==0.10.21, an optional test dependency) is not installed')


def _legacy_estimator(model, config, streaming=False):
    """Return an estimator of ``model`` on the legacy MediaPipe graph's landmarks.

    The graph takes the detection options of ``config`` it has (the others are
    the project's landmark stage's own).
    """
    from ..estimator import HeadPoseEstimator
    from .legacy import LegacyLandmarkExtractor

    extractor = LegacyLandmarkExtractor(
        max_faces=config.max_faces, min_detection_confidence=config.min_detection_confidence,
        streaming=streaming, detection_interval=config.detection_interval)
    return HeadPoseEstimator(model, extractor, config=config, streaming=streaming)


def _run_closing(command, estimators, run):
    """Return ``run()``; close ``estimators`` after; exit naming ``command`` on bad input."""
    try:
        return run()
    except (OSError, ValueError) as exc:
        raise SystemExit(f'nlml-hpe benchmark {command}: {exc}') from None
    finally:
        for est in estimators.values():
            est.close()


def _load_model(model_path, command):
    from ..model import ModelFileError, default_model_dir, load_model

    try:
        return load_model(default_model_dir() if model_path is None else model_path)
    except ModelFileError as exc:
        raise SystemExit(f'nlml-hpe benchmark {command}: {exc}') from exc


def cmd_aflw(args):
    """AFLW2000-3D accuracy benchmark (model and baseline side by side)."""
    from .aflw2000 import format_aflw2000, run_aflw2000

    est, error = _load_estimator_or_none(args.model, args.config)
    if est is None:
        print(f'warning: model unavailable ({error}); running the baseline only',
              file=sys.stderr)
    elif args.legacy:
        _legacy_or_exit('aflw2000')
        est = _legacy_estimator(est.model, args.config)
    try:
        result = run_aflw2000(args.directory, est, limit=args.limit,
                              progress=not args.json and sys.stderr.isatty())
    finally:
        if est is not None:
            est.close()
    if error:
        result['model_error'] = error
    result['landmarks'] = 'legacy MediaPipe graph' if args.legacy else 'nlml_hpe'
    print(json.dumps(result, indent=2) if args.json else
          f"landmarks: {result['landmarks']}\n" + format_aflw2000(result))
    return 0


def cmd_speed(args):
    """Per-frame speed in streaming mode, beside the legacy graph."""
    from pathlib import Path

    from ..estimator import HeadPoseEstimator
    from ..landmarks import LandmarkExtractor
    from .aflw2000 import read_rgb
    from .demo import DEMO_DIR
    from .speed import format_speed, run_speed

    image = Path(args.image) if args.image else DEMO_DIR / '000.jpg'
    try:
        rgb = read_rgb(image)
    except ValueError as exc:
        raise SystemExit(f'nlml-hpe benchmark speed: {exc}') from None
    config = args.config
    with LandmarkExtractor(num_threads=config.num_threads) as ex:
        found = ex.extract(rgb)
    if not found:
        raise SystemExit(f'nlml-hpe benchmark speed: no face found in {image}')
    legacy = not args.no_legacy
    if legacy:
        _legacy_or_exit('speed (or give --no-legacy)')
    model = _load_model(args.model, 'speed')

    def make(is_legacy, **options):
        cfg = config.updated(**options)
        if is_legacy:
            return _legacy_estimator(model, cfg, streaming=True)
        return HeadPoseEstimator(model, config=cfg, streaming=True)

    result = run_speed(make, rgb, found[0], frames=args.frames, legacy=legacy)
    result['image'] = str(image)
    result['num_threads'] = config.num_threads
    print(json.dumps(result, indent=2) if args.json else format_speed(result))
    return 0


def _turns(args):
    from .offaxis import OFF_AXIS_TURNS

    if not args.turns:
        return OFF_AXIS_TURNS
    try:
        turns = [tuple(float(v) for v in t.split(',')) for t in args.turns]
    except ValueError:
        turns = None
    if not turns or any(len(t) != 2 for t in turns):
        raise SystemExit('nlml-hpe benchmark offaxis: --turns takes YAW,PITCH pairs '
                         '(degrees), e.g. --turns 15,0 -20,10')
    return turns


def cmd_off_axis(args):
    """Pose consistency of faces moved off the optical axis, with and without re-reading."""
    from ..estimator import HeadPoseEstimator
    from .offaxis import format_off_axis, run_off_axis

    turns = _turns(args)
    model = _load_model(args.model, 'offaxis')
    estimators = {  # one model, read once: with and without re-reading
        'nlml_hpe': HeadPoseEstimator(model, config=args.config.updated(perspective_warp=True)),
        'nlml_hpe_no_warp': HeadPoseEstimator(
            model, config=args.config.updated(perspective_warp=False))}
    result = _run_closing('offaxis', estimators, lambda: run_off_axis(
        args.directory, estimators, turns=turns, limit=args.limit, progress=not args.json))
    print(json.dumps(result, indent=2) if args.json else format_off_axis(result))
    return 0


def cmd_position(args):
    """Position accuracy on synthetic faces."""
    from .position import synthetic_accuracy

    result = synthetic_accuracy(n_trials=args.trials, seed=args.seed)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, val in result.items():
            print(f'{key}: {val}')
    return 0


def _add_aflw(bsub):
    aflw = bsub.add_parser('aflw2000', help='MAE of model and solvePnP baseline on AFLW2000-3D')
    aflw.add_argument('directory', metavar='DIR')
    aflw.add_argument('--json', action='store_true')
    aflw.add_argument('--limit', type=int, default=None, help='use the first N images')
    aflw.add_argument('--model', metavar='PATH')
    aflw.add_argument('--legacy', action='store_true',
                      help='landmarks from the legacy MediaPipe graph (optional mediapipe '
                           "0.10.21) instead of the project's landmark stage")
    aflw.set_defaults(func=cmd_aflw, option_specs=add_option_flags(aflw))


def _add_speed(bsub):
    speed = bsub.add_parser('speed', help='streaming per-frame time: one face at 640x480 and '
                            '1280x720, off the axis, crowds; beside the legacy graph')
    speed.add_argument('--frames', type=int, default=300, help='timed frames per row')
    speed.add_argument('--image', metavar='FACE', help='image with one face (default: the '
                       "shipped demo clip's frontal frame)")
    speed.add_argument('--model', metavar='PATH')
    speed.add_argument('--no-legacy', action='store_true',
                       help='skip the legacy MediaPipe graph (needs mediapipe 0.10.21)')
    speed.add_argument('--json', action='store_true')
    specs = add_option_flags(speed, exclude=('perspective_warp',),
                             title='estimator options (the scenarios set perspective_warp, and '
                                   'max_faces 20 for crowds)')
    speed.set_defaults(func=cmd_speed, option_specs=specs)


def _add_off_axis(bsub):
    off = bsub.add_parser('offaxis', help='pose consistency of faces moved off the optical '
                          'axis (the same photo seen by a turned camera)')
    off.add_argument('directory', metavar='DIR', help='images with one face each (*.jpg)')
    off.add_argument('--limit', type=int, default=20, help='use the first N images')
    off.add_argument('--turns', nargs='+', metavar='YAW,PITCH',
                     help='camera turns in degrees (default: 15,0 0,15 -15,-8 28,-12)')
    off.add_argument('--model', metavar='PATH')
    off.add_argument('--json', action='store_true')
    specs = add_option_flags(off, exclude=('perspective_warp',),
                             title='estimator options (perspective_warp: both, side by side)')
    off.set_defaults(func=cmd_off_axis, option_specs=specs)


def build_parser():
    """Return the parser of ``nlml-hpe benchmark``."""
    parser = argparse.ArgumentParser(prog='nlml-hpe benchmark',
                                     description='accuracy and speed benchmarks')
    bsub = parser.add_subparsers(dest='benchmark', required=True)
    _add_aflw(bsub)
    _add_speed(bsub)
    bsub.add_parser('range', help='detection rate and MAE by face size (0.5-6 m) in many kinds '
                    'of room (nlml_hpe.bench.range)', add_help=False)
    _add_off_axis(bsub)
    pos = bsub.add_parser('position', help='position accuracy on synthetic faces')
    pos.add_argument('--trials', type=int, default=1000)
    pos.add_argument('--seed', type=int, default=0)
    pos.add_argument('--json', action='store_true')
    pos.set_defaults(func=cmd_position, option_specs=[])
    bsub.add_parser('node', help='the ROS node end to end over DDS (nlml_hpe.bench.node)',
                    add_help=False)
    bsub.add_parser('tracks', help='faces over time: ids, recall by angle, beyond-range state '
                    'and uncertainty on rendered and real sequences (nlml_hpe.bench.tracks)',
                    add_help=False)
    bsub.add_parser('robustness', help='camera faults (blur, noise, dim room, JPEG) on near and '
                    'far faces in clutter (nlml_hpe.bench.robustness)', add_help=False)
    bsub.add_parser('uncertainty', help='sigma and beyond-range state checked per |yaw| bin '
                    'on labelled images (nlml_hpe.bench.uncertainty)', add_help=False)
    return parser


def main(argv=None):
    """Entry point of ``nlml-hpe benchmark``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ['node']:
        from .node import main as node_main
        return node_main(argv[1:])
    if argv[:1] == ['tracks']:
        from .tracks import main as tracks_main
        return tracks_main(argv[1:])
    if argv[:1] == ['uncertainty']:
        from .uncertainty import main as uncertainty_main
        return uncertainty_main(argv[1:])
    if argv[:1] in (['range'], ['robustness']):
        import importlib

        module = importlib.import_module(f'{__package__}.{argv[0]}')
        sub = argparse.ArgumentParser(prog=f'nlml-hpe benchmark {argv[0]}',
                                      description=module.__doc__.split('\n\n')[0])
        module.add_arguments(sub)
        return module.main(sub.parse_args(argv[1:]))
    parser = build_parser()
    args = parser.parse_args(argv)
    args.config = _config(parser, args, args.option_specs)
    from ..model import ModelFileError
    try:
        return args.func(args)
    except ModelFileError as exc:
        print(f'nlml-hpe benchmark: {exc}', file=sys.stderr)
        return 2
