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
96 px and histogram-equalised (:class:`nlml_hpe.landmarks.face_verifier.HaarVerifier`).

Usage::

    PYTHONPATH=src:. python -m training.face_verifier OUT --registry DIR --pieces DIR
    PYTHONPATH=src python tools/haar_check.py OUT/crops.npz
"""

import argparse
import json
import sys

import numpy as np


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('crops', help='crops.npz of python -m training.face_verifier')
    args = p.parse_args(argv)
    d = np.load(args.crops)
    metas = json.loads(str(d['metas']))
    from nlml_hpe.landmarks.face_verifier import HaarVerifier

    haar = HaarVerifier()
    seen = np.array([haar.face_at_centre(c) for c in d['crops']])
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
