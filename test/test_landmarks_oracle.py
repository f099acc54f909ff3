"""The project's landmark stage against the legacy MediaPipe graph it replaces (test oracle).

``mediapipe==0.10.21`` is an optional test dependency (no aarch64 or CPython
3.13 wheel): these tests skip where it cannot be imported.  Configured as the
legacy graph (short-range detector on the whole frame, no refinement), the
project's stage must give the same landmarks: median distance <= 1 px at the
landmark model's 192-px crop on the AFLW2000 dev faces, and the same poses.
"""

from face_clips import face_sequence
import numpy as np
import pytest

from nlml_hpe.bench.aflw2000 import list_aflw2000, read_rgb
from nlml_hpe.bench.legacy import LegacyLandmarkExtractor, available
from nlml_hpe.landmarks import CROP_PX, LandmarkExtractor, Roi
from tools.landmark_oracle import crop_px_distance

pytestmark = pytest.mark.skipif(not available(), reason='mediapipe 0.10.21 (the legacy Face '
                                'Mesh graph, an optional test oracle) is not installed')


def test_same_landmarks_as_the_legacy_graph_on_aflw_faces(aflw_dir):
    pairs = list_aflw2000(aflw_dir)[::6]  # 48 faces over the whole split
    dists, zs, missed = [], [], [0, 0]
    with LandmarkExtractor(max_faces=1, detector='short', min_face_px=None, refine=0) as ours, \
            LegacyLandmarkExtractor(max_faces=1) as legacy:
        for jpg, _ in pairs:
            rgb = read_rgb(jpg)
            a, b = ours.extract(rgb), legacy.extract(rgb)
            missed[0] += not a
            missed[1] += not b
            if a and b:
                dists.append(crop_px_distance(a[0], b[0]))
                side = Roi.from_landmarks(b[0]).side
                zs.append(np.median(np.abs(a[0][:, 2] - b[0][:, 2])) / side * CROP_PX)
    assert missed[0] == missed[1]  # the same faces found
    assert len(dists) >= 40
    assert np.median(dists) <= 1.0 and np.percentile(dists, 90) <= 1.0, dists
    assert np.median(zs) <= 1.0


def test_same_tracking_as_the_legacy_graph(aflw_dir):
    frames = list(face_sequence(read_rgb(aflw_dir / 'image00008.jpg'), 20))
    # The legacy graph keeps a tracked face on the same presence threshold as a new one.
    with LandmarkExtractor(max_faces=1, streaming=True, detector='short', min_face_px=None,
                           refine=0, min_tracking_presence=0.5) as ours, \
            LegacyLandmarkExtractor(max_faces=1, streaming=True) as legacy:
        for frame in frames:
            a, b = ours.extract(frame), legacy.extract(frame)
            assert len(a) == len(b) == 1
            assert crop_px_distance(a[0], b[0]) <= 1.0


def test_same_poses_as_with_the_legacy_graph(aflw_dir):
    from nlml_hpe.estimator import HeadPoseEstimator
    from nlml_hpe.model import default_model_dir, load_model

    model = load_model(default_model_dir())
    ours = HeadPoseEstimator(model, LandmarkExtractor(max_faces=1, detector='short',
                                                      min_face_px=None, refine=0),
                             flip_average=False)
    legacy = HeadPoseEstimator(model, LegacyLandmarkExtractor(max_faces=1), flip_average=False)
    diffs = []
    with ours, legacy:
        for jpg, _ in list_aflw2000(aflw_dir)[::12]:
            rgb = read_rgb(jpg)
            a, b = ours.estimate(rgb), legacy.estimate(rgb)
            assert len(a) == len(b)
            if a:
                diffs.append(np.abs(a[0].angles - b[0].angles).max())
    assert len(diffs) >= 20
    assert np.median(diffs) < 0.3 and np.max(diffs) < 2.0, diffs
