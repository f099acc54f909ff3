"""``nlml-hpe`` command line: predict, benchmark, demo, train.

Examples::

    nlml-hpe predict --json photo.jpg frames/ clip.mp4
    nlml-hpe predict --out annotated/ photo.jpg
    nlml-hpe benchmark aflw2000 /path/to/AFLW2000 [--json] [--limit N]
    nlml-hpe benchmark speed [--frames N]
    nlml-hpe benchmark position [--trials N]
    nlml-hpe benchmark node ...   (nlml_hpe.node_benchmark)
    nlml-hpe demo ...             (nlml_hpe.demo)
    nlml-hpe train ...            (training.pipeline, source checkout only)

``predict`` prints one line per input (with ``--json``, one strict JSON object:
no NaN), an error line for every input it cannot read, skipped ones included;
it exits 0 when every input gave a result, 1 when some did not, 2 when it
cannot run at all (bad arguments, unusable model).
"""

import argparse
import json
import math
from pathlib import Path
import sys
import time

from .options import MAX_FACES, EstimatorConfig

IMAGE_EXTS = {'.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm'}
VIDEO_EXTS = {'.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg'}


#: Exit codes of ``nlml-hpe predict``.
EXIT_OK, EXIT_SOME_FAILED, EXIT_CANNOT_RUN = 0, 1, 2


def _json_line(obj):
    """Return ``obj`` as strict JSON (``ValueError`` on NaN or inf, which JSON has not)."""
    return json.dumps(obj, allow_nan=False)


def _print_json(obj):
    print(_json_line(obj), flush=True)


def _entry_kind(path):
    """``image``, ``video`` or ``'skip: <reason>'`` for a directory entry (not followed)."""
    import stat

    from .input_policy import file_kind

    try:
        st = path.stat()
    except FileNotFoundError:
        return 'skip: broken symbolic link' if path.is_symlink() else 'skip: vanished'
    except OSError as exc:
        return f'skip: cannot stat ({exc.strerror})'
    if stat.S_ISDIR(st.st_mode):
        return 'skip: subfolder (not searched; name it on the command line to read it)'
    if not stat.S_ISREG(st.st_mode):
        return f'skip: not a regular file ({file_kind(st.st_mode)})'
    ext = path.suffix.lower()
    if ext in IMAGE_EXTS:
        return 'image'
    if ext in VIDEO_EXTS:
        return 'video'
    return (f'skip: unsupported file type {ext or "(no extension)"!r}; images: '
            f'{" ".join(sorted(IMAGE_EXTS))}; videos: {" ".join(sorted(VIDEO_EXTS))}')


def _expand_inputs(paths):
    """Yield ``(path, kind)`` for every input, directories expanded one level.

    ``kind`` is ``image``, ``video``, ``missing`` or ``'skip: <reason>'``: every
    directory entry is yielded, so none is passed over without a line.
    """
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            try:
                children = sorted(path.iterdir())
            except OSError as exc:
                yield path, f'skip: cannot list directory ({exc.strerror})'
                continue
            for child in children:
                yield child, _entry_kind(child)
        elif not path.exists():
            yield path, 'missing'
        elif path.suffix.lower() in VIDEO_EXTS:
            yield path, 'video'
        else:  # named explicitly: the reader decides from the content
            yield path, 'image'


def _faces_json(poses, ids=None):
    faces = [{'yaw': round(p.yaw, 3), 'pitch': round(p.pitch, 3), 'roll': round(p.roll, 3),
              'box': [round(v, 1) for v in p.box], 'score': round(p.score, 4)}
             for p in poses]
    if ids is not None:  # videos: the track id of each face (stable across frames)
        faces = [dict({'id': i}, **f) for f, i in zip(faces, ids)]
    return faces


def _report(args, name, poses, ms, ids=None):
    values = [v for p in poses for v in (p.yaw, p.pitch, p.roll, p.score, *p.box)]
    if not all(math.isfinite(float(v)) for v in values):
        raise ValueError('the model returned non-finite angles (NaN or inf); nothing reported')
    if args.json:
        _print_json({'image': name, 'faces': _faces_json(poses, ids), 'ms': round(ms, 3)})
    else:
        tags = [''] * len(poses) if ids is None else [f'face {i}: ' for i in ids]
        desc = '; '.join(f'{tag}yaw {p.yaw:+.1f} pitch {p.pitch:+.1f} roll {p.roll:+.1f}'
                         for tag, p in zip(tags, poses)) or 'no face'
        print(f'{name}: {desc} ({ms:.1f} ms)', flush=True)


def _report_error(args, name, message, ms=None):
    if args.json:
        line = {'image': name, 'error': message}
        if ms is not None:
            line['ms'] = round(ms, 3)
        _print_json(line)
    else:
        print(f'{name}: ERROR {message}', file=sys.stderr, flush=True)


def _predict_video(args, path, model, out_dir):
    """Report every frame of a video; return the number of frames without a result.

    Each face carries its track id (:class:`~nlml_hpe.face_stream.FaceStream`,
    tracking only: the angles reported are the estimator's, unsmoothed).
    """
    import cv2

    from .drawing import draw_poses
    from .estimator import HeadPoseEstimator
    from .face_stream import FaceStream
    from .input_policy import MAX_SIDE

    _check_regular_file(path)
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise ValueError(f'cannot open video {path}')
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    if max(size) > MAX_SIDE:
        cap.release()
        raise ValueError(f'video {path} declares {size[0]}x{size[1]} frames: more than the '
                         f'maximum side of {MAX_SIDE} px')
    writer = None
    n = bad = 0
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = fps if fps and math.isfinite(fps) and fps > 0 else 25.0
    stream = FaceStream(tracking=True, smoothing=False)
    try:
        with HeadPoseEstimator(model, max_faces=args.max_faces, streaming=True,
                               rigid_fusion=not args.no_fusion,
                               perspective_warp=not args.no_warp) as est:
            while True:
                ok, bgr = cap.read()
                if not ok:
                    break
                t0 = time.perf_counter()
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                poses = est.estimate(rgb)
                tracked = {id(f.pose): f.id for f in stream.update(
                    poses, n / fps, (rgb.shape[1], rgb.shape[0]))[0]}
                ids = [tracked.get(id(p)) for p in poses]  # None: a non-finite pose
                try:
                    _report(args, f'{path}#{n}', poses, (time.perf_counter() - t0) * 1e3, ids)
                except ValueError as exc:  # one unusable frame: its own error line
                    _report_error(args, f'{path}#{n}', str(exc))
                    bad += 1
                    poses = []
                if out_dir is not None:
                    if writer is None:
                        target = out_dir / f'{path.stem}_pose.mp4'
                        writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*'mp4v'),
                                                 fps, (bgr.shape[1], bgr.shape[0]))
                    writer.write(cv2.cvtColor(draw_poses(rgb, poses), cv2.COLOR_RGB2BGR))
                n += 1
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    if n == 0:
        raise ValueError(f'no frames could be decoded from {path}')
    return bad


def _check_regular_file(path):
    import stat

    from .input_policy import file_kind

    try:
        mode = Path(path).stat().st_mode
    except OSError as exc:
        raise ValueError(f'cannot read {path}: {exc.strerror}') from None
    if not stat.S_ISREG(mode):
        raise ValueError(f'{path} is not a regular file ({file_kind(mode)})')


def cmd_predict(args):
    """Run the estimator on images, directories and videos; return the exit code.

    0: every input gave a result; 1: some did not (an error line each, skipped
    files included); 2: nothing could run (see :func:`main`).
    """
    import cv2
    import numpy as np

    from .drawing import draw_poses
    from .estimator import HeadPoseEstimator
    from .input_policy import read_image_file
    from .model import default_model_dir, load_model

    if not 1 <= args.max_faces <= MAX_FACES:
        print(f'nlml-hpe predict: --max-faces must be in 1..{MAX_FACES}, got {args.max_faces}',
              file=sys.stderr)
        return EXIT_CANNOT_RUN
    model = load_model(args.model or default_model_dir())
    out_dir = None
    if args.out:
        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
    failures = 0
    with HeadPoseEstimator(model, max_faces=args.max_faces, streaming=False,
                           flip_average=not args.no_flip,
                           rigid_fusion=not args.no_fusion,
                           perspective_warp=not args.no_warp) as est:
        # Load the face models now so "ms" measures the per-image work only.
        est.estimate(np.zeros((64, 64, 3), np.uint8))
        for path, kind in _expand_inputs(args.inputs):
            t0 = time.perf_counter()
            try:
                if kind == 'missing':
                    raise ValueError(f'no such file or directory: {path}')
                if kind.startswith('skip: '):
                    raise ValueError(kind)
                if kind == 'video':
                    failures += bool(_predict_video(args, path, model, out_dir))
                    continue
                rgb = read_image_file(path)
                poses = est.estimate(rgb)
                _report(args, str(path), poses, (time.perf_counter() - t0) * 1e3)
                if out_dir is not None:
                    target = out_dir / f'{path.stem}_pose.png'
                    cv2.imwrite(str(target), cv2.cvtColor(draw_poses(rgb, poses),
                                                          cv2.COLOR_RGB2BGR))
            except Exception as exc:  # noqa: BLE001 - one bad input never stops the run
                failures += 1
                message = str(exc) if isinstance(exc, ValueError) else \
                    f'{type(exc).__name__}: {exc}'
                _report_error(args, str(path), message, (time.perf_counter() - t0) * 1e3)
    return EXIT_SOME_FAILED if failures else EXIT_OK


def _load_estimator_or_none(model_path, streaming=False, flip_average=None, rigid_fusion=True,
                            perspective_warp=True, max_faces=5, num_threads=None):
    from .estimator import HeadPoseEstimator
    from .model import ModelFileError

    options = {} if num_threads is None else {'num_threads': num_threads}
    try:
        return HeadPoseEstimator.from_pretrained(model_path, streaming=streaming,
                                                 max_faces=max_faces,
                                                 flip_average=flip_average,
                                                 rigid_fusion=rigid_fusion,
                                                 perspective_warp=perspective_warp,
                                                 **options), None
    except ModelFileError as exc:
        return None, str(exc)


def _legacy_or_exit(command):
    from .legacy_landmarks import available

    if not available():
        raise SystemExit(f'nlml-hpe benchmark {command}: the legacy MediaPipe graph '
                         '(mediapipe==0.10.21, an optional test dependency) is not installed')


def cmd_benchmark_aflw(args):
    """AFLW2000-3D accuracy benchmark (model and baseline side by side)."""
    from .benchmark import format_aflw2000, run_aflw2000

    est, error = _load_estimator_or_none(args.model, flip_average=not args.no_flip,
                                         rigid_fusion=not args.no_fusion,
                                         perspective_warp=not args.no_warp)
    if est is None:
        print(f'warning: model unavailable ({error}); running the baseline only',
              file=sys.stderr)
    elif args.legacy:
        _legacy_or_exit('aflw2000')
        from .estimator import HeadPoseEstimator
        from .legacy_landmarks import LegacyLandmarkExtractor
        est = HeadPoseEstimator(est.model, LegacyLandmarkExtractor(max_faces=5),
                                flip_average=not args.no_flip, rigid_fusion=not args.no_fusion,
                                perspective_warp=not args.no_warp)
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


def _default_face_image():
    """Return an image with one face: the shipped demo clip's frontal frame."""
    from importlib import resources

    return resources.files('nlml_hpe') / 'data' / 'demo' / '000.jpg'


def cmd_benchmark_speed(args):
    """Per-frame speed in streaming mode, beside the legacy graph."""
    from .benchmark import read_rgb
    from .estimator import HeadPoseEstimator
    from .landmarks import LandmarkExtractor
    from .landmarks.litert import check_num_threads
    from .model import default_model_dir, load_model
    from .speed_benchmark import format_speed, run_speed

    image = Path(args.image) if args.image else _default_face_image()
    try:
        threads = check_num_threads(args.threads)
        rgb = read_rgb(image)
    except ValueError as exc:
        raise SystemExit(f'nlml-hpe benchmark speed: {exc}') from None
    with LandmarkExtractor(num_threads=threads) as ex:
        found = ex.extract(rgb)
    if not found:
        raise SystemExit(f'nlml-hpe benchmark speed: no face found in {image}')
    legacy = not args.no_legacy
    if legacy:
        _legacy_or_exit('speed (or give --no-legacy)')
    model = load_model(default_model_dir() if args.model is None else args.model)

    def make(is_legacy, **options):
        options = {'max_faces': args.max_faces, **options}
        if is_legacy:
            from .legacy_landmarks import LegacyLandmarkExtractor
            return HeadPoseEstimator(model, LegacyLandmarkExtractor(
                max_faces=options['max_faces'], streaming=True), streaming=True, **options)
        return HeadPoseEstimator(model, streaming=True, num_threads=threads, **options)

    result = run_speed(make, rgb, found[0], frames=args.frames, legacy=legacy)
    result['image'] = str(image)
    result['num_threads'] = threads
    print(json.dumps(result, indent=2) if args.json else format_speed(result))
    return 0


def cmd_benchmark_range(args):
    """Measure detection rate and accuracy by face size, beside the legacy graph."""
    from .estimator import HeadPoseEstimator
    from .model import default_model_dir, load_model
    from .range_benchmark import FACE_WIDTHS, FRAMES, format_range, run_range

    model = load_model(default_model_dir() if args.model is None else args.model)
    estimators = {'nlml_hpe': HeadPoseEstimator(model, flip_average=False)}
    if not args.no_legacy:
        _legacy_or_exit('range (or give --no-legacy)')
        from .legacy_landmarks import LegacyLandmarkExtractor
        estimators['legacy'] = HeadPoseEstimator(model, LegacyLandmarkExtractor(max_faces=5),
                                                 flip_average=False)
    frames = FRAMES
    if args.frames:
        try:
            frames = [tuple(int(v) for v in f.lower().split('x')) for f in args.frames]
        except ValueError:
            raise SystemExit('nlml-hpe benchmark range: --frames takes WxH sizes') from None
    try:
        result = run_range(args.directory, estimators, widths=args.widths or FACE_WIDTHS,
                           frames=frames, limit=args.limit,
                           progress=not args.json and sys.stderr.isatty())
    except ValueError as exc:
        raise SystemExit(f'nlml-hpe benchmark range: {exc}') from None
    finally:
        for est in estimators.values():
            est.close()
    print(json.dumps(result, indent=2) if args.json else format_range(result))
    return 0


def cmd_benchmark_off_axis(args):
    """Pose consistency of faces moved off the optical axis, with and without re-reading."""
    from .benchmark import OFF_AXIS_TURNS, format_off_axis, run_off_axis
    from .estimator import HeadPoseEstimator
    from .model import ModelFileError, default_model_dir, load_model

    turns = OFF_AXIS_TURNS
    if args.turns:
        try:
            turns = [tuple(float(v) for v in t.split(',')) for t in args.turns]
        except ValueError:
            turns = None
        if not turns or any(len(t) != 2 for t in turns):
            raise SystemExit('nlml-hpe benchmark offaxis: --turns takes YAW,PITCH pairs '
                             '(degrees), e.g. --turns 15,0 -20,10')
    try:
        model = load_model(default_model_dir() if args.model is None else args.model)
    except ModelFileError as exc:
        raise SystemExit(f'nlml-hpe benchmark offaxis: {exc}') from exc
    flip = not args.no_flip
    estimators = {  # one model, read once: with and without re-reading
        'nlml_hpe': HeadPoseEstimator(model, flip_average=flip, perspective_warp=True),
        'nlml_hpe_no_warp': HeadPoseEstimator(model, flip_average=flip, perspective_warp=False)}
    try:
        result = run_off_axis(args.directory, estimators, turns=turns, limit=args.limit,
                              progress=not args.json)
    except (OSError, ValueError) as exc:
        raise SystemExit(f'nlml-hpe benchmark offaxis: {exc}') from exc
    finally:
        for est in estimators.values():
            est.close()
    print(json.dumps(result, indent=2) if args.json else format_off_axis(result))
    return 0


def cmd_benchmark_position(args):
    """Position accuracy on synthetic faces."""
    from .position import synthetic_accuracy

    result = synthetic_accuracy(n_trials=args.trials, seed=args.seed)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, val in result.items():
            print(f'{key}: {val}')
    return 0


def _dispatch_train(argv):
    src_root = Path(__file__).resolve().parents[2]
    if (src_root / 'training' / '__init__.py').is_file() and str(src_root) not in sys.path:
        sys.path.insert(0, str(src_root))
    try:
        from training import pipeline
    except ImportError as exc:
        raise SystemExit('nlml-hpe train: the training pipeline runs from a source checkout '
                         'of nlml_hpe (training/ beside src/); it is not importable here: '
                         f'{exc}') from exc
    return pipeline.main(argv)


def build_parser():
    """Return the argument parser (predict and benchmark subcommands)."""
    parser = argparse.ArgumentParser(prog='nlml-hpe', description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog='Also: benchmark node ..., demo ..., train ...')
    sub = parser.add_subparsers(dest='command', required=True)
    pred = sub.add_parser('predict', help='estimate head poses in images, dirs and videos',
                          description='One line per input, an error line for each input '
                          'that cannot be read (skipped files included). Exit code: 0 every '
                          'input gave a result, 1 some did not, 2 cannot run.')
    pred.add_argument('inputs', nargs='+', metavar='IMAGE|DIR|VIDEO')
    pred.add_argument('--json', action='store_true', help='one JSON object per image per line')
    pred.add_argument('--out', metavar='DIR', help='write annotated images/videos here')
    pred.add_argument('--model', metavar='PATH', help='model directory or .safetensors file')
    pred.add_argument('--max-faces', type=int, default=5,
                      help=f'faces per image at most, 1..{MAX_FACES} (default 5)')
    pred.add_argument('--no-flip', action='store_true',
                      help='images: skip flip averaging (no mirrored crop read); '
                           'videos never flip')
    pred.add_argument('--no-fusion', action='store_true',
                      help="the network's angles alone, without the rigid fit's")
    pred.add_argument('--no-warp', action='store_true',
                      help='do not re-read faces far off the optical axis from a view turned '
                           'onto them')
    pred.set_defaults(func=cmd_predict)

    bench = sub.add_parser('benchmark', help='accuracy and speed benchmarks')
    bsub = bench.add_subparsers(dest='benchmark', required=True)
    aflw = bsub.add_parser('aflw2000', help='MAE of model and solvePnP baseline on AFLW2000-3D')
    aflw.add_argument('directory', metavar='DIR')
    aflw.add_argument('--json', action='store_true')
    aflw.add_argument('--limit', type=int, default=None, help='use the first N images')
    aflw.add_argument('--model', metavar='PATH')
    aflw.add_argument('--no-flip', action='store_true',
                      help='score the model without flip averaging')
    aflw.add_argument('--no-fusion', action='store_true',
                      help="score the network's angles alone (no rigid fusion)")
    aflw.add_argument('--no-warp', action='store_true',
                      help='no line-of-sight re-reading of off-axis faces')
    aflw.add_argument('--legacy', action='store_true',
                      help='landmarks from the legacy MediaPipe graph (optional mediapipe '
                           "0.10.21) instead of the project's landmark stage")
    aflw.set_defaults(func=cmd_benchmark_aflw)
    speed = bsub.add_parser('speed', help='streaming per-frame time: one face at 640x480 and '
                            '1280x720, off the axis, crowds; beside the legacy graph')
    speed.add_argument('--frames', type=int, default=300, help='timed frames per row')
    speed.add_argument('--image', metavar='FACE', help='image with one face (default: the '
                       "shipped demo clip's frontal frame)")
    speed.add_argument('--model', metavar='PATH')
    speed.add_argument('--max-faces', type=int, default=5, choices=range(1, 21),
                       metavar='1..20', help='faces tracked at most (default 5, as the node)')
    speed.add_argument('--threads', type=int, default=EstimatorConfig.num_threads,
                       help=f'num_threads (default {EstimatorConfig.num_threads}, as the node)')
    speed.add_argument('--no-legacy', action='store_true',
                       help='skip the legacy MediaPipe graph (needs mediapipe 0.10.21)')
    speed.add_argument('--json', action='store_true')
    speed.set_defaults(func=cmd_benchmark_speed)
    rng = bsub.add_parser('range', help='detection rate and MAE by face size (0.5-6 m) in '
                          '640x480 and 1280x720 frames, beside the legacy graph')
    rng.add_argument('directory', metavar='DIR', help='AFLW2000-3D images with .mat labels')
    rng.add_argument('--limit', type=int, default=None, help='use the first N paper-range faces')
    rng.add_argument('--widths', type=int, nargs='+', metavar='PX',
                     help='face widths (default: 160 100 70 50 40 28)')
    rng.add_argument('--frames', nargs='+', metavar='WxH',
                     help='frame sizes (default: 640x480 1280x720)')
    rng.add_argument('--model', metavar='PATH')
    rng.add_argument('--no-legacy', action='store_true',
                     help='skip the legacy MediaPipe graph (needs mediapipe 0.10.21)')
    rng.add_argument('--json', action='store_true')
    rng.set_defaults(func=cmd_benchmark_range)
    off = bsub.add_parser('offaxis', help='pose consistency of faces moved off the optical '
                          'axis (the same photo seen by a turned camera)')
    off.add_argument('directory', metavar='DIR', help='images with one face each (*.jpg)')
    off.add_argument('--limit', type=int, default=20, help='use the first N images')
    off.add_argument('--turns', nargs='+', metavar='YAW,PITCH',
                     help='camera turns in degrees (default: 15,0 0,15 -15,-8 28,-12)')
    off.add_argument('--model', metavar='PATH')
    off.add_argument('--no-flip', action='store_true',
                     help='one MediaPipe pass per view (as the node by default)')
    off.add_argument('--json', action='store_true')
    off.set_defaults(func=cmd_benchmark_off_axis)
    pos = bsub.add_parser('position', help='position accuracy on synthetic faces')
    pos.add_argument('--trials', type=int, default=1000)
    pos.add_argument('--seed', type=int, default=0)
    pos.add_argument('--json', action='store_true')
    pos.set_defaults(func=cmd_benchmark_position)
    bsub.add_parser('node', help='ROS node benchmark (nlml_hpe.node_benchmark)')
    sub.add_parser('demo', help='ROS demo (nlml_hpe.demo)')
    sub.add_parser('train', help='offline training pipeline (source checkout)')
    return parser


def main(argv=None):
    """Entry point of ``nlml-hpe``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ['benchmark', 'node']:
        from . import node_benchmark
        return node_benchmark.main(argv[2:])
    if argv[:1] == ['demo']:
        from . import demo
        return demo.main(argv[1:])
    if argv[:1] == ['train']:
        return _dispatch_train(argv[1:])
    args = build_parser().parse_args(argv)
    from .model import ModelFileError
    try:
        return args.func(args)
    except ModelFileError as exc:
        print(f'nlml-hpe: {exc}', file=sys.stderr)
        return EXIT_CANNOT_RUN


if __name__ == '__main__':
    sys.exit(main())
