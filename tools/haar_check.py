"""Would OpenCV's Haar cascades tell far faces from false ones?  An offline check.

The face verifier of round 8 (``training.face_verifier``) learned its faces from
about 40 people and drops 3-5 % of the AFLW2000 dev faces.  OpenCV's Haar
cascades (Viola-Jones; the XML files ship with opencv-python in ``cv2.data`` and
with Debian's ``opencv-data``) were trained on other faces, so their errors are
their own.  This tool runs them on the crops that stage collected
(``OUT/crops.npz``: the square a new face's landmarks frame, 32 px, as the
landmark stage read it in synthetic frames; label 1 a real face or render, 0 a
false face) and counts how many each class has a Haar face at its centre:
the frontal cascade, and the profile cascade both ways, on the crop upscaled to
96 px and histogram-equalised.

Usage::

    PYTHONPATH=src:. python -m training.face_verifier OUT --registry DIR --pieces DIR
    python tools/haar_check.py OUT/crops.npz
"""

import argparse
import json
import sys

import cv2
import numpy as np

SIDE = 96
CASCADES = ('haarcascade_frontalface_alt2.xml', 'haarcascade_profileface.xml')


def cascades():
    """Return the frontal and the profile cascade (:data:`CASCADES`)."""
    return [cv2.CascadeClassifier(cv2.data.haarcascades + name) for name in CASCADES]


def haar_face(crop, models):
    """Whether a cascade finds a face at the centre of ``crop`` (RGB, any size)."""
    grey = cv2.cvtColor(cv2.resize(crop, (SIDE, SIDE), interpolation=cv2.INTER_CUBIC),
                        cv2.COLOR_RGB2GRAY)
    grey = cv2.equalizeHist(grey)
    mirrored = np.ascontiguousarray(grey[:, ::-1])
    views = [(models[0], grey), (models[1], grey), (models[1], mirrored)]
    for model, img in views:
        for x, y, w, h in model.detectMultiScale(img, 1.1, 2, minSize=(SIDE // 3, SIDE // 3)):
            if abs(x + w / 2 - SIDE / 2) < SIDE / 6 and abs(y + h / 2 - SIDE / 2) < SIDE / 6 \
                    and w > SIDE * 3 / 8:
                return True
    return False


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('crops', help='crops.npz of python -m training.face_verifier')
    args = p.parse_args(argv)
    d = np.load(args.crops)
    metas = json.loads(str(d['metas']))
    models = cascades()
    seen = np.array([haar_face(c, models) for c in d['crops']])
    labels, presence = d['labels'], d['presence']
    render = np.array([m['source'] == 'render' for m in metas])
    groups = {
        'real faces (registry photos)': (labels == 1) & ~render,
        'real faces, presence >= 0.5': (labels == 1) & ~render & (presence >= 0.5),
        'renders': (labels == 1) & render,
        'false faces, presence >= 0.5 (pass the floor)': (labels == 0) & (presence >= 0.5),
        'false faces, presence < 0.5': (labels == 0) & (presence < 0.5),
    }
    for name, sel in groups.items():
        n = int(sel.sum())
        k = int((seen & sel).sum())
        print(f'{name:<48} {k:>6} of {n:<6} have a Haar face ({100.0 * k / max(n, 1):5.1f} %)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
