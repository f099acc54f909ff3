"""HeadPoseEstimator, FacePose conventions, position and the solvePnP baseline."""

import numpy as np
import pytest

from nlml_hpe.baseline import baseline_angles
from nlml_hpe.benchmark import read_aflw_pose, read_rgb
from nlml_hpe.estimator import FacePose, HeadPoseEstimator
from nlml_hpe.geometry import (
    euler_to_matrix,
    face_frame_in_optical,
    optical_face_quaternion_to_euler,
    viewer_to_optical,
)
from nlml_hpe.model import (
    WEIGHTS_NAME,
    ModelFileError,
    PoseModel,
    default_model_dir,
    expected_shapes,
    load_model,
)
from nlml_hpe.position import (
    canonical_face_m,
    default_camera_matrix,
    estimate_position,
    synthetic_accuracy,
)


def _random_model(seed=0):
    rng = np.random.default_rng(seed)
    w = {k: rng.normal(0, 0.05, s).astype(np.float32) for k, s in expected_shapes().items()}
    w['feature_std'] = np.ones_like(w['feature_std'])
    return PoseModel(w)


class CountingModel:
    """Delegates to a real PoseModel and records the batch size of each call."""

    def __init__(self, model):
        self.model = model
        self.metadata = model.metadata
        self.batches = []

    def predict(self, features):
        self.batches.append(len(features))
        return self.model.predict(features)


@pytest.fixture
def face_rgb(aflw_dir):
    return read_rgb(aflw_dir / 'image00008.jpg')


def _check_pose_consistency(pose):
    rot = viewer_to_optical(euler_to_matrix(pose.pitch, pose.yaw, pose.roll))
    np.testing.assert_allclose(pose.rotation, rot, atol=1e-9)
    np.testing.assert_allclose(pose.rotation @ pose.rotation.T, np.eye(3), atol=1e-9)
    np.testing.assert_allclose(optical_face_quaternion_to_euler(pose.quaternion),
                               [pose.pitch, pose.yaw, pose.roll], atol=1e-6)
    assert abs(np.linalg.norm(pose.quaternion) - 1.0) < 1e-9


def test_estimate_one_face(face_rgb):
    with HeadPoseEstimator(_random_model()) as est:
        poses = est.estimate(face_rgb)
        assert set(est.last_timings) >= {'landmarks_ms', 'model_ms'}
        assert est.last_timings['landmarks_ms'] > 0
    assert len(poses) == 1
    pose = poses[0]
    assert isinstance(pose, FacePose)
    assert pose.landmarks.shape == (468, 3)
    x0, y0, x1, y1 = pose.box
    h, w = face_rgb.shape[:2]
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    assert pose.position is None
    _check_pose_consistency(pose)


def test_no_face_returns_empty_list():
    with HeadPoseEstimator(_random_model()) as est:
        assert est.estimate(np.full((240, 320, 3), 127, np.uint8)) == []
        noise = np.random.default_rng(3).integers(0, 256, (240, 320, 3), dtype=np.uint8)
        assert est.estimate(noise) == []
        assert est.estimate_landmarks([]) == []


def test_bad_image_rejected():
    with HeadPoseEstimator(_random_model()) as est:
        with pytest.raises(ValueError, match='NaN'):
            est.estimate(np.full((20, 20, 3), np.nan))
        with pytest.raises(ValueError, match='empty'):
            est.estimate(np.zeros((0, 0, 3), np.uint8))


def test_two_faces_one_batch_largest_first(aflw_dir):
    import cv2

    a = read_rgb(aflw_dir / 'image00008.jpg')
    b = read_rgb(aflw_dir / 'image00022.jpg')
    b = cv2.resize(b, (a.shape[1] * 2 // 3, a.shape[0] * 2 // 3))
    frame = np.zeros((a.shape[0], a.shape[1] + b.shape[1], 3), np.uint8)
    frame[:, :a.shape[1]] = a
    frame[:b.shape[0], a.shape[1]:] = b
    model = CountingModel(_random_model())
    with HeadPoseEstimator(model, max_faces=5, flip_average=False) as est:
        poses = est.estimate(frame)
    assert len(poses) == 2
    assert model.batches == [2]  # both faces through the model in one call
    model.batches.clear()
    with HeadPoseEstimator(model, max_faces=5) as est:  # flip averaging: twins in the batch
        assert len(est.estimate(frame)) == 2
        assert est.last_timings['flip_matched'] == 2
    assert model.batches == [4]
    areas = [(p.box[2] - p.box[0]) * (p.box[3] - p.box[1]) for p in poses]
    assert areas[0] > areas[1]
    assert poses[0].box[2] <= a.shape[1] + 1  # the larger face is the left one
    for p in poses:
        _check_pose_consistency(p)


def test_flip_average_is_mirror_equivariant(face_rgb):
    # Flip-averaged angles of the mirrored image are exactly the mirrored angles
    # (yaw and roll change sign), and each is the mean of the direct reading and
    # the un-mirrored reading of the mirrored image.
    model = _random_model(7)
    mirrored = np.ascontiguousarray(face_rgb[:, ::-1])
    with HeadPoseEstimator(model) as est, \
            HeadPoseEstimator(model, flip_average=False) as plain:
        assert est.flip_average and not plain.flip_average
        avg = est.estimate(face_rgb)[0].angles
        assert est.last_timings['flip_matched'] == 1 and est.last_timings['flip_ms'] > 0
        avg_m = est.estimate(mirrored)[0].angles
        direct = plain.estimate(face_rgb)[0].angles
        direct_m = plain.estimate(mirrored)[0].angles
    signs = np.array([1.0, -1.0, -1.0])
    np.testing.assert_allclose(avg_m, signs * avg, atol=1e-6)
    np.testing.assert_allclose(avg, 0.5 * (direct + signs * direct_m), atol=1e-6)
    assert not np.allclose(avg, direct, atol=1e-3)  # the mirrored pass changed something


def test_flip_average_off_by_default_when_streaming():
    est = HeadPoseEstimator(_random_model(), streaming=True)
    assert not est.flip_average
    assert HeadPoseEstimator(_random_model(), streaming=True, flip_average=True).flip_average


def test_mirrored_faces_matched_by_box():
    from nlml_hpe.estimator import match_mirrored, mirror_landmarks

    rng = np.random.default_rng(0)
    left = rng.uniform([50, 50, 0], [150, 150, 10], (468, 3))
    right = rng.uniform([400, 60, 0], [520, 180, 10], (468, 3))
    w = 640
    # The mirrored image holds both faces mirrored, in the other order.
    got = match_mirrored([left, right], [mirror_landmarks(right, w), mirror_landmarks(left, w)], w)
    assert got == [1, 0]
    assert match_mirrored([left], [mirror_landmarks(left + [200, 0, 0], w)], w) == [None]
    with HeadPoseEstimator(_random_model()) as est:
        with pytest.raises(ValueError, match='image_size'):
            est.estimate_landmarks([left], mirrored=[left])


def test_estimate_landmarks_and_position():
    # Project the canonical face at a known pose and distance; recover the position.
    k = default_camera_matrix(640, 480)
    rot = viewer_to_optical(euler_to_matrix(10.0, -20.0, 5.0))
    t = np.array([0.1, -0.05, 1.2])
    cam = canonical_face_m() @ rot.T + t
    uv = cam[:, :2] / cam[:, 2:] * k[0, 0] + k[:2, 2]
    lm = np.column_stack([uv, cam[:, 2] * k[0, 0] / t[2]])
    np.testing.assert_allclose(estimate_position(lm, rot, k), t, atol=1e-9)
    with HeadPoseEstimator(_random_model()) as est:
        poses = est.estimate_landmarks([lm], camera_matrix=k, image_size=(640, 480))
    assert len(poses) == 1 and poses[0].position.shape == (3,)
    assert poses[0].position[2] > 0
    _check_pose_consistency(poses[0])
    with HeadPoseEstimator(_random_model()) as est:
        with pytest.raises(ValueError, match='468'):
            est.estimate_landmarks([lm[:100]])
        with pytest.raises(ValueError, match='camera_matrix'):
            est.estimate_landmarks([lm], camera_matrix=np.eye(2))
        with pytest.raises(ValueError, match='focal'):
            est.estimate_landmarks([lm], camera_matrix=np.diag([0.0, 1.0, 1.0]))


def test_position_accuracy_synthetic():
    exact = synthetic_accuracy(50, scale_sd=0, shape_noise_m=0, pixel_noise=0,
                               rotation_noise_deg=0)
    assert exact['position_error_m_p95'] < 1e-9
    noisy = synthetic_accuracy(200, seed=1)
    assert noisy['relative_error_median'] < 0.1
    assert noisy['position_error_m_median'] > 1e-4  # the noise does matter


def test_camera_matrix_gives_position(face_rgb):
    k = default_camera_matrix(face_rgb.shape[1], face_rgb.shape[0])
    with HeadPoseEstimator(_random_model()) as est:
        pose = est.estimate(face_rgb, camera_matrix=k)[0]
    assert pose.position is not None and 0.1 < pose.position[2] < 5.0


def test_baseline_on_aflw_images(aflw_dir):
    from nlml_hpe.landmarks import LandmarkExtractor

    errs = []
    with LandmarkExtractor(max_faces=1) as ex:
        for name in ('image00008', 'image00022', 'image00039', 'image00046', 'image00053'):
            rgb = read_rgb(aflw_dir / f'{name}.jpg')
            gt = read_aflw_pose(aflw_dir / f'{name}.mat')
            faces = ex.extract(rgb)
            assert faces, name
            pred = baseline_angles(faces, rgb.shape[1], rgb.shape[0])[0]
            errs.append(np.abs(pred - gt))
    assert np.mean(errs) < 8.0
    assert np.max(errs) < 25.0


def test_face_frame_quaternion_matches_rotation():
    ang = (12.0, -33.0, 7.0)
    pose_rot = face_frame_in_optical(euler_to_matrix(*ang))
    from scipy.spatial.transform import Rotation
    q = Rotation.from_matrix(pose_rot).as_quat()
    np.testing.assert_allclose(optical_face_quaternion_to_euler(q), ang, atol=1e-9)


def test_from_pretrained_missing_model(tmp_path):
    with pytest.raises(ModelFileError, match=str(tmp_path / WEIGHTS_NAME)):
        HeadPoseEstimator.from_pretrained(tmp_path)


def test_shipped_model_on_aflw(aflw_dir):
    if not (default_model_dir() / WEIGHTS_NAME).is_file():
        pytest.skip(f'trained model not shipped yet: {default_model_dir() / WEIGHTS_NAME}')
    from nlml_hpe.benchmark import run_aflw2000

    load_model(default_model_dir())
    with HeadPoseEstimator.from_pretrained() as est:
        res = run_aflw2000(aflw_dir, est, limit=40)
    paper = res['protocols']['paper']
    assert paper['model']['n'] >= 25
    assert paper['model']['mean'] < 12.0, paper


def test_from_pretrained_loads_given_dir(tmp_path):
    from nlml_hpe.model import save_model

    rng = np.random.default_rng(0)
    w = {k: rng.normal(0, 0.05, s).astype(np.float32) for k, s in expected_shapes().items()}
    w['feature_std'] = np.ones_like(w['feature_std'])
    save_model(w, tmp_path, {'name': 'unit'})
    with HeadPoseEstimator.from_pretrained(tmp_path, max_faces=2, streaming=True) as est:
        assert est.model.metadata == {'name': 'unit'}
        assert est.streaming and est.extractor.max_faces == 2 and est.extractor.streaming
