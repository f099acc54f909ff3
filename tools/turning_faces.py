"""Keep a turning face: how long a tracked face survives, by ``min_tracking_presence``.

Renders held-out ICT-FaceKit identities (the default training run's: seed 0,
identities 100-119; never AFLW2000) turning their heads, and streams them
through :class:`~nlml_hpe.landmarks.LandmarkExtractor` at several thresholds
of the tracked faces' presence score.  Scenes: 640x480, focal 640 px, the head
at 60 cm (a face about 150 px wide) and 150 cm (about 60 px), on the
renderer's grey and on a cluttered, face-free background.  Sequences:

* ``turn``: yaw 0 -> 90 -> 0 deg in 3-deg steps;
* ``hold75`` ... ``hold90``: turn to that yaw and hold it 30 frames, nodding 2 deg;
* ``back``: yaw 0 -> 180 (the back of the head), then held 20 frames;
* ``gone``: the head vanishes (background only) for 20 frames;
* ``occl``: an occluder slides over the face and stays 20 frames;
* ``exit``: the head walks out of view.

Prints, per background and threshold: the share of frames at 60-90 deg (and
of held profiles) where the head is reported, where the back of the head is
(yaw >= 100 and >= 120), how many frames a vanished or covered face stays, and
the share of frames a face is reported while less than 30 % of it is in view.

Usage: ``python tools/turning_faces.py --identities 10 --thresholds 0.5,0.1``
(needs ``../shared/data/ict_facekit`` and a headless OpenGL context; about
a minute per identity and threshold on a busy 2-core machine).
"""

import argparse
from collections import defaultdict
import json
from pathlib import Path
import sys

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / 'src'), str(REPO)]

W, H = 640, 480


def clutter(seed):
    """Return a cluttered, face-free background: coloured noise and random shapes."""
    rng = np.random.default_rng(seed)
    img = np.zeros((H, W, 3), np.float32)
    for scale in (4, 16, 64):
        n = rng.normal(0, 1, (H // scale + 2, W // scale + 2, 3)).astype(np.float32)
        img += cv2.resize(n, (W, H), interpolation=cv2.INTER_CUBIC) * scale ** 0.5
    img = ((img - img.min()) / (img.max() - img.min()) * 255).astype(np.uint8)
    for _ in range(25):
        c = tuple(int(v) for v in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, W)), int(rng.integers(0, H))
        if rng.random() < 0.5:
            cv2.rectangle(img, (x, y), (x + int(rng.integers(10, 150)),
                                        y + int(rng.integers(10, 150))), c, -1)
        else:
            cv2.ellipse(img, (x, y), (int(rng.integers(5, 80)), int(rng.integers(5, 80))),
                        float(rng.uniform(0, 180)), 0, 360, c, -1)
    return img


def sequences(sign):
    """``{name: [(kind, yaw, head shown, occluder x-range, x offset px, pitch)]}``."""
    up = list(range(0, 91, 3))
    seqs = {'turn': [('turn', sign * y, True, None, 0.0, 5.0) for y in up + up[::-1][1:]]}
    for hold in (75, 80, 85, 90):
        seqs[f'hold{hold}'] = [('ramp', sign * y, True, None, 0.0, 5.0)
                               for y in range(0, hold, 5)] + [
            (f'hold{hold}', sign * hold, True, None, 0.0, 5.0 + 2.0 * np.sin(k / 3.0))
            for k in range(30)]
    seqs['back'] = [('back', sign * y, True, None, 0.0, 5.0) for y in range(0, 181, 3)] + \
        [('back', sign * 180, True, None, 0.0, 5.0)] * 20
    seqs['gone'] = [('pre', 0, True, None, 0.0, 5.0)] * 10 + \
        [('gone', 0, False, None, 0.0, 5.0)] * 20
    seqs['occl'] = [('pre', 0, True, None, 0.0, 5.0)] * 10 + [
        ('in', 0, True, (0, int(W * (0.45 + 0.2 * k / 8))), 0.0, 5.0) for k in range(1, 9)] + \
        [('occl', 0, True, (0, int(W * 0.65)), 0.0, 5.0)] * 20
    seqs['exit'] = [('pre', 0, True, None, 0.0, 5.0)] * 5 + [
        ('exit', 0, True, None, sign * 12.0 * k, 5.0) for k in range(1, 41)]
    return seqs


def render(head, distance, background, seq):
    """Frames and true landmark boxes of a sequence."""
    from nlml_hpe.landmarks import landmark_boxes

    frames, boxes = [], []
    for _, yaw, shown, occl, dx, pitch in seq:
        rgb, mask, lm = head.frame(pitch, yaw, 0.0, distance, float(W), (dx, 0.0))
        if not shown:
            rgb = np.full((H, W, 3), 128, np.uint8) if background is None else background.copy()
        elif background is not None:
            rgb = np.where(mask[..., None], rgb, background)
        if occl is not None:
            rgb[:, occl[0]:occl[1]] = 128 if background is None else \
                background[:, occl[0]:occl[1]]
        frames.append(rgb)
        boxes.append(landmark_boxes(lm[None])[0])
    return frames, boxes


def stream(seq, frames, boxes, threshold):
    """Per frame: ``(kind, yaw, head reported, faces reported, share of the head in view)``."""
    from nlml_hpe.geometry import box_iou
    from nlml_hpe.landmarks import LandmarkExtractor, landmark_boxes

    out = []
    with LandmarkExtractor(streaming=True, num_threads=1,
                           min_tracking_presence=threshold) as ex:
        for (kind, yaw, *_), rgb, box in zip(seq, frames, boxes):
            faces = ex.read_frame(rgb).faces
            hit = bool(faces) and box_iou(landmark_boxes(np.stack(faces)), box[None]).max() > 0.3
            seen = max(0.0, min(box[2], W) - max(box[0], 0.0)) / max(box[2] - box[0], 1e-9)
            out.append((kind, abs(yaw), hit, len(faces), seen))
    return out


def summary(runs):
    """Return the figures of one background and threshold."""
    def share(rows, test, value):
        rows = [r for r in rows if test(r)]
        return float(np.mean([value(r) for r in rows])) if rows else float('nan')

    frames = defaultdict(list)
    for name, res in runs:
        frames[name] += res
    out = {'turn 60-90': share(frames['turn'], lambda r: 60 <= r[1] <= 90, lambda r: r[2])}
    for hold in (75, 80, 85, 90):
        out[f'held {hold}'] = share(frames[f'hold{hold}'], lambda r: r[0].startswith('hold'),
                                    lambda r: r[2])
    out['back 100-119'] = share(frames['back'], lambda r: 100 <= r[1] < 120, lambda r: r[3] > 0)
    out['back >=120'] = share(frames['back'], lambda r: r[1] >= 120, lambda r: r[3] > 0)
    for name in ('gone', 'occl'):
        stays = []
        for seq_name, res in runs:
            if seq_name == name:
                after = [r for r in res if r[0] == name]
                stays.append(next((k for k, r in enumerate(after) if r[3] == 0), len(after)))
        out[f'{name} frames (max)'] = max(stays) if stays else float('nan')
    out['<30% in view'] = share(frames['exit'], lambda r: r[0] == 'exit' and r[4] < 0.3,
                                lambda r: r[3] > 0)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--identities', type=int, default=10)
    parser.add_argument('--thresholds', default='0.5,0.2,0.1,0.05')
    parser.add_argument('--ict', default=str(REPO.parent / 'shared' / 'data' / 'ict_facekit'
                                             / 'ict_facekit.npz'))
    parser.add_argument('--json', help='also write the figures here')
    args = parser.parse_args(argv)

    from nlml_hpe.bench.scenes import HeadKit
    from training.faces import ICTFaceKit, sample_identities

    thresholds = [float(t) for t in args.thresholds.split(',')]
    ids = sample_identities(ICTFaceKit(args.ict), 120, np.random.default_rng(0), 1.0)[100:]
    runs = defaultdict(list)  # (background, threshold) -> [(sequence, per-frame results)]
    kit = HeadKit(args.ict)
    for i, ident in enumerate(ids[:args.identities]):
        head = kit.head((W, H), identity=ident)
        try:
            for distance in (60.0, 150.0):
                for bg_name, bg in (('grey', None), ('clutter', clutter(1000 + i))):
                    for name, seq in sequences(1 if i % 2 == 0 else -1).items():
                        frames, boxes = render(head, distance, bg, seq)
                        for t in thresholds:
                            runs[bg_name, t].append((name, stream(seq, frames, boxes, t)))
        finally:
            kit.release()
        print(f'identity {i + 1}/{args.identities}', file=sys.stderr, flush=True)
    table = {f'{bg} {t:g}': summary(r) for (bg, t), r in sorted(runs.items())}
    keys = list(next(iter(table.values())))
    print(f"{'background threshold':<22}" + ''.join(f'{k:>18}' for k in keys))
    for name, row in table.items():
        print(f'{name:<22}' + ''.join(f'{row[k]:18.3g}' for k in keys))
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
