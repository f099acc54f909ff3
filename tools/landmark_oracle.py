"""How closely the project's landmark stage reproduces the legacy MediaPipe graph.

    .venv/bin/python tools/landmark_oracle.py ../shared/data/aflw2000_dev [--limit N]

Reads every image with both: the legacy ``mediapipe.solutions.face_mesh`` graph
(``mediapipe==0.10.21``, static mode) and :class:`nlml_hpe.landmarks.LandmarkExtractor`
configured as that graph (short-range detector on the whole frame, no
refinement) and as shipped (the default detection plan, one refinement pass).
Prints the median landmark distance in pixels of the landmark model's 192-px
crop (per image, then its median and 90th percentile over the images), the
faces each found, and the shipped model's pose difference between the two.
"""

import argparse
import sys

import numpy as np


def crop_px_distance(a, b):
    """Median distance between two readings of a face, in pixels of the 192-px crop."""
    from nlml_hpe.landmarks import CROP_PX, Roi

    side = Roi.from_landmarks(b).side
    return float(np.median(np.linalg.norm(a[:, :2] - b[:, :2], axis=1)) / side * CROP_PX)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('directory')
    parser.add_argument('--limit', type=int, default=None)
    args = parser.parse_args(argv)

    from nlml_hpe.bench.aflw2000 import list_aflw2000, read_rgb
    from nlml_hpe.bench.legacy import LegacyLandmarkExtractor, available
    from nlml_hpe.estimator import HeadPoseEstimator
    from nlml_hpe.landmarks import LandmarkExtractor
    from nlml_hpe.model import default_model_dir, load_model

    if not available():
        print('mediapipe 0.10.21 (the legacy graph) is not installed', file=sys.stderr)
        return 2
    model = load_model(default_model_dir())
    legacy = HeadPoseEstimator(model, LegacyLandmarkExtractor(max_faces=1), flip_average=False)
    configs = {
        'as the legacy graph': LandmarkExtractor(max_faces=1, detector='short',
                                                 min_face_px=None, refine=0),
        'as shipped': LandmarkExtractor(max_faces=1)}
    ours = {name: HeadPoseEstimator(model, ex, flip_average=False)
            for name, ex in configs.items()}
    dist = {name: [] for name in ours}
    pose = {name: [] for name in ours}
    found = dict.fromkeys(list(ours) + ['legacy'], 0)
    pairs = list_aflw2000(args.directory, args.limit)
    for jpg, _ in pairs:
        rgb = read_rgb(jpg)
        b = legacy.estimate(rgb)
        found['legacy'] += bool(b)
        for name, est in ours.items():
            a = est.estimate(rgb)
            found[name] += bool(a)
            if a and b:
                dist[name].append(crop_px_distance(a[0].landmarks, b[0].landmarks))
                pose[name].append(float(np.abs(a[0].angles - b[0].angles).mean()))
    print(f'{len(pairs)} images; faces found: ' +
          ', '.join(f'{k} {v}' for k, v in found.items()))
    for name in ours:
        d, p = np.array(dist[name]), np.array(pose[name])
        print(f'{name}: landmark distance at the 192-px crop, median {np.median(d):.3f} px, '
              f'p90 {np.percentile(d, 90):.3f} px, max {d.max():.2f} px; pose difference '
              f'(mean |d| of yaw, pitch, roll) median {np.median(p):.3f} deg, '
              f'p90 {np.percentile(p, 90):.3f} deg ({len(d)} faces)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
