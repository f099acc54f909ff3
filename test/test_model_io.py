"""Model I/O and the numpy inference path of nlml_hpe.model."""

import json
import subprocess
import sys

import numpy as np
import pytest

from nlml_hpe.model import (
    METADATA_NAME,
    WEIGHTS_NAME,
    ModelFileError,
    PoseModel,
    expected_shapes,
    load_model,
    save_model,
)


def _random_weights(seed=0):
    rng = np.random.default_rng(seed)
    w = {k: rng.normal(0, 0.05, s).astype(np.float32) for k, s in expected_shapes().items()}
    w['feature_std'] = rng.uniform(0.5, 2.0, w['feature_std'].shape).astype(np.float32)
    return w


def test_numpy_forward_matches_torch(tmp_path):
    torch = pytest.importorskip('torch')
    from training.nlmlnet import NLMLNet, state_dict_to_numpy

    torch.manual_seed(0)
    net = NLMLNet()
    with torch.no_grad():
        net.feature_mean.normal_()
        net.feature_std.uniform_(0.5, 2.0)
    save_model(state_dict_to_numpy(net), tmp_path, {'source': 'test'})
    pm = load_model(tmp_path)
    x = np.random.default_rng(1).normal(size=(6, 1404)).astype(np.float32)
    with torch.no_grad():
        lat_t, ang_t = net(torch.from_numpy(x))
    lat_n, ang_n = pm.forward(x)
    np.testing.assert_allclose(lat_n, lat_t.numpy(), atol=1e-4)
    np.testing.assert_allclose(ang_n, ang_t.numpy(), atol=1e-4)
    # predict: degrees, reordered from (yaw, pitch, roll) to (pitch, yaw, roll).
    deg = np.degrees(ang_t.numpy())
    np.testing.assert_allclose(pm.predict(x), deg[:, [1, 0, 2]], atol=1e-3)
    np.testing.assert_allclose(pm.latents(x), lat_t.numpy(), atol=1e-4)
    np.testing.assert_allclose(pm.decode(lat_t.numpy()), ang_t.numpy(), atol=1e-4)
    with pytest.raises(ValueError, match='latents'):
        pm.decode(np.zeros((2, 3)))
    assert pm.metadata == {'source': 'test'}


def test_round_trip_numpy_state(tmp_path):
    w = _random_weights()
    path = save_model(w, tmp_path, {'k': 1})
    assert path.name == WEIGHTS_NAME and (tmp_path / METADATA_NAME).is_file()
    a = load_model(tmp_path)
    b = load_model(path)  # the .safetensors file itself
    x = np.random.default_rng(2).normal(size=(3, 1404)).astype(np.float32)
    np.testing.assert_array_equal(a.predict(x), b.predict(x))
    np.testing.assert_allclose(a.predict(x), PoseModel(w).predict(x), atol=1e-6)
    # A batch gives the same rows as one-at-a-time calls.
    rows = np.concatenate([a.predict(x[i:i + 1]) for i in range(3)])
    np.testing.assert_allclose(a.predict(x), rows, atol=1e-4)
    assert a.predict(np.zeros((0, 1404))).shape == (0, 3)


def test_inference_does_not_import_torch(tmp_path):
    save_model(_random_weights(), tmp_path, {})
    code = ('import sys, numpy as np\n'
            'from nlml_hpe.model import load_model\n'
            'import nlml_hpe.estimator, nlml_hpe.cli\n'
            f'm = load_model({str(tmp_path)!r})\n'
            'print(m.predict(np.zeros((1, 1404))).shape)\n'
            'assert "torch" not in sys.modules, "torch was imported"\n')
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert '(1, 3)' in res.stdout


def test_missing_file_named(tmp_path):
    with pytest.raises(ModelFileError, match='not found') as info:
        load_model(tmp_path / 'nope')
    assert 'nope' in str(info.value)
    assert isinstance(info.value, ValueError)


def test_corrupt_file_named(tmp_path):
    bad = tmp_path / WEIGHTS_NAME
    bad.write_bytes(b'this is not a safetensors file at all')
    with pytest.raises(ModelFileError, match='cannot read') as info:
        load_model(tmp_path)
    assert str(bad) in str(info.value)


def test_truncated_file_named(tmp_path):
    path = save_model(_random_weights(), tmp_path, {})
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    assert str(path) in str(info.value)


def test_wrong_shape_named(tmp_path):
    w = _random_weights()
    w['encoder.0.weight'] = np.zeros((1024, 1000), np.float32)
    from safetensors.numpy import save_file
    save_file(w, str(tmp_path / WEIGHTS_NAME))
    with pytest.raises(ModelFileError, match='encoder.0.weight') as info:
        load_model(tmp_path)
    assert str(tmp_path / WEIGHTS_NAME) in str(info.value)


def test_missing_key_named(tmp_path):
    w = _random_weights()
    del w['heads.2.8.bias']
    w['extra'] = np.zeros(3, np.float32)
    from safetensors.numpy import save_file
    save_file(w, str(tmp_path / WEIGHTS_NAME))
    with pytest.raises(ModelFileError, match=r'heads\.2\.8\.bias.*extra'):
        load_model(tmp_path)


def test_nan_weights_rejected(tmp_path):
    w = _random_weights()
    w['heads.0.2.weight'][0, 0] = np.nan
    save_model(w, tmp_path, {})
    with pytest.raises(ModelFileError, match='NaN'):
        load_model(tmp_path)


def test_corrupt_metadata_named(tmp_path):
    save_model(_random_weights(), tmp_path, {})
    (tmp_path / METADATA_NAME).write_text('{not json')
    with pytest.raises(ModelFileError, match=METADATA_NAME):
        load_model(tmp_path)


def test_bad_features_rejected():
    pm = PoseModel(_random_weights())
    with pytest.raises(ValueError, match='1404'):
        pm.predict(np.zeros((2, 100)))
    x = np.zeros((1, 1404))
    x[0, 5] = np.inf
    with pytest.raises(ValueError, match='NaN or inf'):
        pm.predict(x)


def test_metadata_is_json(tmp_path):
    save_model(_random_weights(), tmp_path, {'b': [1, 2], 'a': 'x'})
    assert json.loads((tmp_path / METADATA_NAME).read_text()) == {'a': 'x', 'b': [1, 2]}


def test_calibration_round_trip_and_applied(tmp_path):
    from nlml_hpe.model import odd_polynomial

    w = _random_weights(3)
    w['calibration.yaw'] = np.array([1.1, 0.2, 0.05], np.float32)
    w['calibration.roll'] = np.array([0.95], np.float32)
    save_model(w, tmp_path, {'note': 'calibrated'})
    pm = load_model(tmp_path)
    assert sorted(pm.calibration) == ['roll', 'yaw']
    x = np.random.default_rng(1).normal(0, 1, (6, 1404))
    _, raw = pm.forward(x)  # radians: yaw, pitch, roll
    got = pm.predict(x)     # degrees: pitch, yaw, roll
    np.testing.assert_allclose(got[:, 1], np.degrees(odd_polynomial([1.1, 0.2, 0.05], raw[:, 0])),
                               atol=1e-4)
    np.testing.assert_allclose(got[:, 0], np.degrees(raw[:, 1]), atol=1e-4)  # pitch untouched
    np.testing.assert_allclose(got[:, 2], np.degrees(0.95 * raw[:, 2]), atol=1e-4)
    np.testing.assert_allclose(pm.predict(x, calibrated=False),
                               np.degrees(raw[:, [1, 0, 2]]), atol=1e-4)


@pytest.mark.parametrize('coeffs, why', [
    ([1.0, -0.5], 'not strictly increasing'),         # turns back within +-120 deg
    ([-1.0], 'not strictly increasing'),
    ([1.0, 0.0, 0.0, 0.0, 0.1], 'coefficients'),     # too many terms
    ([1.0, float('nan')], 'finite'),
])
def test_bad_calibration_named(tmp_path, coeffs, why):
    w = _random_weights(4)
    w['calibration.pitch'] = np.array(coeffs, np.float32)
    save_model(w, tmp_path, {})
    with pytest.raises(ModelFileError, match=why) as err:
        load_model(tmp_path)
    assert WEIGHTS_NAME in str(err.value) and 'calibration.pitch' in str(err.value)


def test_unknown_calibration_angle_rejected(tmp_path):
    w = _random_weights(5)
    w['calibration.gaze'] = np.array([1.0], np.float32)
    save_model(w, tmp_path, {})
    with pytest.raises(ModelFileError, match='unexpected'):
        load_model(tmp_path)
