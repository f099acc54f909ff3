"""``nlml-hpe`` command line: predict; benchmark, demo and train are dispatched lazily.

Examples::

    nlml-hpe predict --json photo.jpg frames/ clip.mp4
    nlml-hpe predict --out annotated/ photo.jpg
    nlml-hpe benchmark aflw2000 /path/to/AFLW2000 [--json] [--limit N]
    nlml-hpe benchmark speed | range | offaxis | position | node ...   (nlml_hpe.bench)
    nlml-hpe demo ...             (nlml_hpe.bench.demo)
    nlml-hpe train ...            (training.pipeline, source checkout only)

``predict`` prints one line per input (with ``--json``, one strict JSON object:
no NaN), an error line for every input it cannot read, skipped ones included;
it exits 0 when every input gave a result, 1 when some did not, 2 when it
cannot run at all (bad arguments, unusable model).  Its estimator flags are
made from the options table (:mod:`nlml_hpe.flags`).  ``predict`` imports
nothing of the bench wing (:mod:`nlml_hpe.bench`), which holds the rest.
"""

import argparse
import json
import math
from pathlib import Path
import sys
import time

from .flags import add_option_flags, config_from_flags
from .input_policy import printable

# The CLI's bound of --max-faces (re-exported: the options table defines it).
from .options import MAX_FACES as MAX_FACES
from .options import DecodeConfig

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
              'box': [round(v, 1) for v in p.box], 'score': round(p.score, 4), **p.trust()}
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
        print(f'{printable(name)}: {desc} ({ms:.1f} ms)', flush=True)


def _report_error(args, name, message, ms=None):
    if args.json:
        line = {'image': name, 'error': message}
        if ms is not None:
            line['ms'] = round(ms, 3)
        _print_json(line)
    else:
        print(f'{printable(name)}: ERROR {printable(message)}', file=sys.stderr, flush=True)


def _predict_video(args, path, model, config, out_dir, budget):
    """Report every frame of a video; return the number of frames without a result.

    ``config`` is the estimator's :class:`~nlml_hpe.options.EstimatorConfig`
    (flip averaging, unless set, is off in video).  Each face carries its track
    id (:class:`~nlml_hpe.face_stream.FaceStream`, tracking only: the angles
    reported are the estimator's, unsmoothed).  A video that ends before the
    frames its container declares raises ``ValueError`` after its frames' lines
    (:class:`~nlml_hpe.video.VideoReader`).
    """
    import cv2

    from .drawing import draw_poses
    from .estimator import HeadPoseEstimator
    from .face_stream import FaceStream
    from .video import VideoReader

    # A regular file, frames within the side limit; above the budget's pixels, reduced.
    video = VideoReader(path, max_pixels=budget.max_pixels)
    writer = None
    bad = 0
    fps = video.fps
    stream = FaceStream(tracking=True, smoothing=False)
    try:
        with HeadPoseEstimator(model, config=config, streaming=True) as est:
            for frame in video:  # frames above the pixel budget come reduced
                n, rgb = frame.index, frame.rgb
                t0 = time.perf_counter()
                poses = est.estimate(rgb)
                listed, _ = stream.update(poses, n / fps, (rgb.shape[1], rgb.shape[0]))
                tracked = {id(f.pose): f.id for f in listed + stream.tentative if f.seen}
                ids = [tracked.get(id(p)) for p in poses]  # None: a non-finite pose
                try:
                    _report(args, f'{path}#{n}', frame.to_source(poses),
                            (time.perf_counter() - t0) * 1e3, ids)
                except ValueError as exc:  # one unusable frame: its own error line
                    _report_error(args, f'{path}#{n}', str(exc))
                    bad += 1
                    poses = []
                if out_dir is not None:
                    if writer is None:
                        target = out_dir / f'{path.stem}_pose.mp4'
                        writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*'mp4v'),
                                                 fps, (rgb.shape[1], rgb.shape[0]))
                    writer.write(cv2.cvtColor(draw_poses(rgb, poses), cv2.COLOR_RGB2BGR))
    finally:
        video.close()
        if writer is not None:
            writer.release()
    video.check_complete()  # read fewer frames than declared: an error line, exit code 1
    return bad


def cmd_predict(args):
    """Run the estimator on images, directories and videos; return the exit code.

    0: every input gave a result; 1: some did not (an error line each, skipped
    files included); 2: nothing could run (see :func:`main`).
    """
    import cv2
    import numpy as np

    from .drawing import draw_poses
    from .estimator import HeadPoseEstimator
    from .image_decode import budget_of
    from .input_policy import read_image
    from .model import default_model_dir, load_model

    try:
        config = config_from_flags(args, args.option_specs)
        budget = budget_of(config_from_flags(args, args.decode_specs, DecodeConfig()))
    except ValueError as exc:
        print(f'nlml-hpe predict: {exc}', file=sys.stderr)
        return EXIT_CANNOT_RUN
    model = load_model(args.model or default_model_dir())
    out_dir = None
    if args.out:
        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
    failures = 0
    with HeadPoseEstimator(model, config=config, streaming=False) as est:
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
                    failures += bool(_predict_video(args, path, model, config, out_dir,
                                                    budget))
                    continue
                decoded = read_image(path, budget=budget)  # a large JPEG: maybe reduced
                rgb = decoded.rgb
                poses = est.estimate(rgb)
                _report(args, str(path), decoded.to_source(poses),
                        (time.perf_counter() - t0) * 1e3)
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


def _dispatch_benchmark(argv):
    from .bench.commands import main as benchmark_main

    return benchmark_main(argv)


def _dispatch_demo(argv):
    from .bench.demo import main as demo_main

    return demo_main(argv)


#: Subcommands run by other modules, imported only when asked for: name -> (runner, help).
DISPATCHED = {
    'benchmark': (_dispatch_benchmark, 'accuracy and speed benchmarks (nlml_hpe.bench)'),
    'demo': (_dispatch_demo, 'ROS demo: the node on a bundled clip (nlml_hpe.bench.demo)'),
    'train': (_dispatch_train, 'offline training pipeline (source checkout)'),
}


def build_parser():
    """Return the argument parser of ``predict`` (the other subcommands are listed only)."""
    parser = argparse.ArgumentParser(prog='nlml-hpe', description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)
    pred = sub.add_parser('predict', help='estimate head poses in images, dirs and videos',
                          description='One line per input, an error line for each input '
                          'that cannot be read (skipped files included). Exit code: 0 every '
                          'input gave a result, 1 some did not, 2 cannot run.')
    pred.add_argument('inputs', nargs='+', metavar='IMAGE|DIR|VIDEO')
    pred.add_argument('--json', action='store_true', help='one JSON object per image per line')
    pred.add_argument('--out', metavar='DIR', help='write annotated images/videos here')
    pred.add_argument('--model', metavar='PATH', help='model directory or .safetensors file')
    pred.set_defaults(func=cmd_predict, option_specs=add_option_flags(pred),
                      decode_specs=add_option_flags(
                          pred, DecodeConfig(), title='decode budget of each image or frame '
                          '(default: the file budget, image_decode.FILE_BUDGET)'))
    for name, (_, text) in DISPATCHED.items():
        sub.add_parser(name, help=text, add_help=False)
    return parser


def main(argv=None):
    """Entry point of ``nlml-hpe``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DISPATCHED:
        return DISPATCHED[argv[0]][0](argv[1:])
    args = build_parser().parse_args(argv)
    from .model import ModelFileError
    try:
        return args.func(args)
    except ModelFileError as exc:
        print(f'nlml-hpe: {exc}', file=sys.stderr)
        return EXIT_CANNOT_RUN


if __name__ == '__main__':
    sys.exit(main())
