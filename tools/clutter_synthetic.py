"""Far faces in clutter, on synthetic renders: the frames detector choices are made on.

The AFLW2000 dev split is for checking, never for choosing; so the detector's
settings for far faces in clutter are chosen here, on frames built without it:
ICT-FaceKit heads of random identities (drawn with their own seed, none of
them a training identity), at random poses of the paper's range, rendered by
the training renderer, cut out of their grey background and pasted with hard
edges into the benchmark's backgrounds (:mod:`nlml_hpe.bench.clutter`), under
the camera faults; plus face-free frames of every kind for false faces.

Usage::

    PYTHONPATH=src:. python tools/clutter_synthetic.py --faces 80 [--setting NAME=VALUE ...]
    PYTHONPATH=src:. python tools/clutter_synthetic.py --kinds photo --free-textures DIR \
        --frame 1280x720 --ghosts 30      # listed false tracks in video over photo clutter

Face-free photos that are not the dev split (scikit-image's sample photographs)::

    pip download --no-deps scikit-image==0.24.0 -d /tmp/whl
    unzip -j /tmp/whl/scikit_image-*.whl 'skimage/data/*.png' 'skimage/data/*.jpg' -d /tmp/sk
    rm /tmp/sk/{astronaut,camera,horse,phantom,microaneurysms}.png /tmp/sk/chessboard_*.png

and the surroundings of the people in the registry photos (clothes, hands, furniture,
badges: the dev textures' kind of clutter), their faces masked::

    PYTHONPATH=src python tools/registry_faces.py /tmp/registry_faces --free-pieces DIR

``--setting`` patches module constants of :mod:`nlml_hpe` where they are
defined (e.g. ``landmarks.face_checks.CLEAR_VIEWS=4``,
``landmarks.detection_plan.CONFIRM_VIEW=3``) for an A/B run.  Prints found
rate, MAE and false faces per width, background and fault.  ``photo``
backgrounds use no real photo here (``--textures DIR`` adds the non-face
patches of a directory of labelled photos; ``--free-textures DIR`` pieces of
every image of a directory of face-free photos, for example the photographs
that scikit-image ships in ``skimage/data`` less those the commands above
remove: real-photo clutter that is not the dev split).
"""

import argparse
import json
import sys

import numpy as np

from nlml_hpe.bench.aflw2000 import mae, pick_labelled_face
from nlml_hpe.bench.clutter import (
    BACKGROUND_KINDS,
    FAULTS,
    apply_fault,
    frame_rng,
    make_background,
    paste_cutout,
    render_faces,
)

#: Seed of the identities and poses (the identities' stream is the bench wing's own).
IDENTITY_SEED = 2026


def run(estimator, faces, widths, kinds, faults, size, empty, seed, textures=None):
    """Found rate, MAE, false faces per (width, kind, fault), and on face-free frames."""
    rows = []
    for kind in kinds:
        for fault in faults:
            for width in widths:
                pred, gt, false = [], [], 0
                for i, face in enumerate(faces):
                    rng = frame_rng(seed, 'syn', kind, width, size[0], i)
                    frame = make_background(kind, size[0], size[1], rng, textures)
                    label = paste_cutout(frame, face, width, rng)
                    frame = apply_fault(frame, fault, frame_rng(seed, 'f', fault, i))
                    poses = estimator.estimate(frame)
                    k = pick_labelled_face([p.box for p in poses], label)
                    if k is not None:
                        pred.append(poses[k].angles)
                        gt.append(face[3])
                    false += len(poses) - (k is not None)
                rows.append({'kind': kind, 'fault': fault, 'width': width,
                             'found': len(gt) / len(faces), 'mae': mae(pred, gt)['mean'],
                             'false': false})
                print(f"{kind:<8} {fault:<7} {width:>3}px found {100 * rows[-1]['found']:5.1f}% "
                      f"MAE {rows[-1]['mae'] or float('nan'):5.2f} false {false}", flush=True)
        if empty:
            false = 0
            for i in range(empty):
                frame = make_background(kind, size[0], size[1],
                                        frame_rng(seed, 'syn-empty', kind, size[0], i), textures)
                false += len(estimator.estimate(apply_fault(frame, 'none', frame_rng(seed, i))))
            rows.append({'kind': kind, 'empty': empty, 'false': false})
            print(f'{kind:<8} face-free: {false} false faces in {empty} frames', flush=True)
    return rows


def free_textures(directory):
    """Pieces of every image of ``directory``: photos with no face in them."""
    from pathlib import Path

    from nlml_hpe.bench.aflw2000 import read_rgb
    from nlml_hpe.bench.clutter import photo_textures

    out = []
    for path in sorted(Path(directory).iterdir()):
        if path.suffix.lower() in ('.png', '.jpg', '.jpeg'):
            rgb = read_rgb(path)
            # A zero-width box along the left edge: the whole image is one strip of pieces.
            out += photo_textures([rgb], [(0.0, 0.0, 0.0, float(rgb.shape[0]))])
    if not out:
        raise SystemExit(f'no face-free photo in {directory}')
    return out


def ghost_tracks(estimator, count, size, seed, textures, frames=90, noise=3.0):
    """Count static face-free photo backgrounds that get a listed (confirmed) false track.

    Each of ``count`` backgrounds is seen for ``frames`` frames at 30 Hz under
    sensor noise, by the streaming estimator and a :class:`FaceStream`.
    """
    from nlml_hpe.face_stream import FaceStream

    with_ghost, ghost_frames, ids = 0, 0, 0
    for b in range(count):
        bg = make_background('photo', size[0], size[1],
                             frame_rng(seed, 'syn-empty', 'photo', size[0], b), textures)
        estimator.extractor.reset()
        stream, rng, seen = FaceStream(), np.random.default_rng(b), set()
        for i in range(frames):
            frame = np.clip(bg + rng.normal(0.0, noise, bg.shape), 0, 255).astype(np.uint8)
            listed, _ = stream.update(estimator.estimate(frame), i / 30.0, size)
            ghost_frames += bool(listed)
            seen.update(f.id for f in listed)
        with_ghost += bool(seen)
        ids += len(seen)
    print(f'ghosts: {with_ghost} of {count} backgrounds with a listed false track '
          f'({ids} ids), {ghost_frames} of {count * frames} frames', flush=True)
    return {'backgrounds': count, 'with_ghost': with_ghost, 'ids': ids,
            'frames': count * frames, 'ghost_frames': ghost_frames}


def patch_settings(settings):
    """Apply ``module.NAME=VALUE`` settings to nlml_hpe modules (A/B runs)."""
    import importlib

    for s in settings:
        name, value = s.split('=', 1)
        mod, attr = name.rsplit('.', 1)
        module = importlib.import_module(f'nlml_hpe.{mod}')
        if not hasattr(module, attr):
            raise SystemExit(f'no {attr} in nlml_hpe.{mod}')
        setattr(module, attr, json.loads(value))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--ict', default='../shared/data/ict_facekit/ict_facekit.npz')
    p.add_argument('--faces', type=int, default=80)
    p.add_argument('--widths', type=int, nargs='+', default=[40, 28])
    p.add_argument('--kinds', default='clutter,noisy,jpeg,smooth')
    p.add_argument('--faults', default='none')
    p.add_argument('--frame', default='640x480')
    p.add_argument('--empty', type=int, default=0)
    p.add_argument('--seed', type=int, default=1)
    p.add_argument('--textures', metavar='DIR')
    p.add_argument('--free-textures', metavar='DIR')
    p.add_argument('--ghosts', type=int, metavar='N',
                   help='instead: video over N face-free photo backgrounds (needs textures)')
    p.add_argument('--setting', action='append', default=[])
    p.add_argument('--option', action='append', default=[], metavar='NAME=VALUE',
                   help='an estimator option (JSON value), e.g. confirm_far_faces=false')
    p.add_argument('--json', metavar='OUT')
    args = p.parse_args(argv)
    patch_settings(args.setting)
    options = {k: json.loads(v) for k, v in (o.split('=', 1) for o in args.option)}
    from nlml_hpe.estimator import HeadPoseEstimator

    textures = None
    if args.textures:
        from nlml_hpe.bench.range import load_textures

        textures = load_textures(args.textures)[0]
    if args.free_textures:
        textures = (textures or []) + free_textures(args.free_textures)
    kinds = [k for k in args.kinds.split(',') if k in BACKGROUND_KINDS]
    faults = [f for f in args.faults.split(',') if f in FAULTS]
    size = tuple(int(v) for v in args.frame.split('x'))
    if args.ghosts:
        if not textures:
            raise SystemExit('--ghosts needs --free-textures or --textures')
        with HeadPoseEstimator.from_pretrained(streaming=True, flip_average=False,
                                               **options) as est:
            rows = ghost_tracks(est, args.ghosts, size, args.seed, textures)
    else:
        faces = render_faces(args.ict, args.faces, IDENTITY_SEED)
        with HeadPoseEstimator.from_pretrained(flip_average=False, **options) as est:
            rows = run(est, faces, args.widths, kinds, faults, size, args.empty, args.seed,
                       textures)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'settings': args.setting, 'rows': rows}, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
