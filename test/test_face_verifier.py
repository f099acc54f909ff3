"""The face verifier (nlml_hpe.landmarks.face_verifier), a research switch that is off.

Its weights are not shipped (``training.face_verifier`` trains them); these tests
use random weights of its shapes.  Checked: its numpy forward pass is the torch
network's, its crops follow the landmarks, a bad weights file is a clear error,
off it is never loaded, and on (``face_checks.VERIFIED``) a new far face it
refutes is not reported while near and tracked faces are not looked at.
"""

from conftest import demo_frame
import numpy as np
import pytest
from safetensors.numpy import save_file

from nlml_hpe.bench.aflw2000 import pick_labelled_face
from nlml_hpe.bench.clutter import frame_rng, scene
from nlml_hpe.estimator import HeadPoseEstimator
from nlml_hpe.landmarks import face_checks, face_verifier
from nlml_hpe.landmarks.face_verifier import INPUT_PX, FaceVerifier, verifier_crops

SHAPES = {'c1.weight': (16, 3, 3, 3), 'c1.bias': (16,), 'c2.weight': (32, 16, 3, 3),
          'c2.bias': (32,), 'c3.weight': (48, 32, 3, 3), 'c3.bias': (48,),
          'f1.weight': (64, 48 * (INPUT_PX // 8) ** 2), 'f1.bias': (64,),
          'f2.weight': (1, 64), 'f2.bias': (1,)}


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    """Random weights of the verifier's shapes, in a safetensors file."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp('verifier') / 'face_verifier.safetensors'
    save_file({k: (rng.normal(0, 0.1, v)).astype(np.float32) for k, v in SHAPES.items()},
              str(path))
    return path


def test_numpy_forward_pass_is_the_trained_networks(tmp_path):
    torch = pytest.importorskip('torch')
    from nlml_hpe.landmarks.face_verifier import normalise
    from training.face_verifier import _network

    torch.manual_seed(0)
    net = _network().eval()
    path = tmp_path / 'v.safetensors'
    save_file({k: v.detach().numpy() for k, v in net.state_dict().items()}, str(path))
    crops = np.random.default_rng(0).integers(0, 256, (5, INPUT_PX, INPUT_PX, 3), np.uint8)
    with torch.no_grad():
        want = torch.sigmoid(net(torch.from_numpy(normalise(crops)))).numpy()
    got = FaceVerifier(path).score_crops(crops)
    assert got.shape == (5,) and np.allclose(got, want, atol=1e-5)
    assert np.ptp(got) > 1e-4  # the crops do not all score alike


def test_a_broken_or_missing_weights_file_is_a_clear_error(tmp_path):
    path = tmp_path / 'broken.safetensors'
    path.write_bytes(b'not a safetensors file')
    with pytest.raises(RuntimeError, match='face verifier'):
        FaceVerifier(path)
    with pytest.raises(RuntimeError, match='training.face_verifier'):
        FaceVerifier(tmp_path / 'absent.safetensors')


def test_crops_follow_the_landmarks(weights, estimator):
    rgb = demo_frame('000.jpg')
    lm = np.asarray(estimator.estimate(rgb)[0].landmarks)[None]
    crops = verifier_crops(rgb, lm)
    assert crops.shape == (1, INPUT_PX, INPUT_PX, 3) and crops.dtype == np.uint8
    # Shifting the image and the landmarks together leaves the crop as it was.
    shifted = np.roll(rgb, (7, 11), axis=(0, 1))
    moved = lm + np.array([11.0, 7.0, 0.0])
    assert np.abs(verifier_crops(shifted, moved).astype(int) - crops).mean() < 2.0
    assert len(FaceVerifier(weights).scores(rgb, np.zeros((0, 468, 3)))) == 0


def far_frame(estimator):
    """Return a demo face (an ICT-FaceKit render) 40 px wide in a 640x480 clutter frame."""
    rgb = demo_frame('003.jpg')
    box = estimator.estimate(rgb)[0].box
    return scene((rgb, box), 640, 480, 40, 'clutter', 'photo', frame_rng(0, 'verifier'))


def test_off_by_default_and_never_loaded(estimator):
    frame, label = far_frame(estimator)
    assert face_checks.VERIFIED == 0.0
    with HeadPoseEstimator.from_pretrained(flip_average=False) as est:
        assert pick_labelled_face([p.box for p in est.estimate(frame)], label) is not None
        assert est.extractor.opinions.verifier is None


def test_on_a_far_face_it_refutes_is_not_reported(estimator, weights, monkeypatch):
    frame, label = far_frame(estimator)
    monkeypatch.setattr(face_verifier, 'WEIGHTS', weights)
    with HeadPoseEstimator.from_pretrained(flip_average=False) as est:
        monkeypatch.setattr(face_checks, 'VERIFIED', 1e-9)  # on, and everything passes
        assert pick_labelled_face([p.box for p in est.estimate(frame)], label) is not None
        assert est.extractor.opinions.verifier is not None
        monkeypatch.setattr(face_checks, 'VERIFIED', 1.01)  # nothing passes
        assert est.estimate(frame) == []
        monkeypatch.setattr(face_checks, 'VERIFY_PRESENCE', 0.0)  # ... sure faces pass
        assert pick_labelled_face([p.box for p in est.estimate(frame)], label) is not None
    with HeadPoseEstimator.from_pretrained(flip_average=False, confirm_far_faces=False) as off:
        monkeypatch.setattr(face_checks, 'VERIFY_PRESENCE', 1.01)
        assert pick_labelled_face([p.box for p in off.estimate(frame)], label) is not None


def test_on_near_faces_and_tracked_faces_are_not_looked_at(weights, monkeypatch):
    monkeypatch.setattr(face_verifier, 'WEIGHTS', weights)
    monkeypatch.setattr(face_checks, 'VERIFIED', 1.01)
    rgb = demo_frame('000.jpg')  # a near face (over VERIFY_FACE_PX)
    with HeadPoseEstimator.from_pretrained(flip_average=False) as est:
        assert len(est.estimate(rgb)) == 1
    with HeadPoseEstimator.from_pretrained(flip_average=False, streaming=True) as video:
        small = rgb[::4, ::4].copy()
        frame = np.zeros((480, 640, 3), np.uint8)
        frame[100:100 + small.shape[0], 200:200 + small.shape[1]] = small
        monkeypatch.setattr(face_checks, 'VERIFIED', 1e-9)
        assert len(video.estimate(frame)) == 1  # found while the verifier passes everything
        monkeypatch.setattr(face_checks, 'VERIFIED', 1.01)
        assert len(video.estimate(frame)) == 1  # ... and then tracked: not looked at again


def test_the_training_stage_fits_weights_the_verifier_runs(tmp_path):
    pytest.importorskip('torch')
    from training.face_verifier import fit, sample_weights

    rng = np.random.default_rng(1)
    crops = rng.integers(0, 256, (64, INPUT_PX, INPUT_PX, 3), np.uint8)
    labels = np.repeat([0, 1], 32)
    crops[labels == 1, 8:24, 8:24] = 250  # a bright square: something to learn
    presence = np.tile([0.2, 0.8], 32).astype(np.float32)
    w = sample_weights(labels, np.zeros(64, np.float32))
    assert np.isclose(w[labels == 1].sum(), 0.5) and np.isclose(w[labels == 0].sum(), 0.5)
    w = sample_weights(labels, presence)  # false faces read at presence >= 0.5 weigh more
    assert np.isclose(w.sum(), 1.0)
    assert np.isclose(w[(labels == 0) & (presence > 0.5)][0] / w[(labels == 0)
                                                                 & (presence < 0.5)][0], 5.0)
    weights = fit({'crops': crops, 'labels': labels, 'presence': presence}, epochs=2,
                  log=lambda *_: None)
    assert {k: v.shape for k, v in weights.items()} == SHAPES
    path = tmp_path / 'w.safetensors'
    save_file(weights, str(path))
    scores = FaceVerifier(path).score_crops(crops)
    assert scores.shape == (64,) and np.all((scores >= 0) & (scores <= 1))
