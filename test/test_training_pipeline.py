"""End-to-end test of the training pipeline on the tiny config (stages 1-9).

Runs once per session into a temporary workdir (about a minute or two on
2 cores) and checks the stage artifacts independently of the stage summaries.
"""

import json
from pathlib import Path

import numpy as np
import pytest

#: The module's tiny pipeline run takes about a minute: `pytest -m 'not slow'` skips it.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / 'training' / 'configs' / 'tiny.yaml'

#: ||T - T_hat|| / ||T|| of the tiny tensor with ranks [5, 3, 3, 3, 1404] (random
#: expressions and cameras per sample are not captured by rank-3 pose modes).
RECONSTRUCTION_TOL = 0.15
#: RMS residual of each cosine fit relative to the std of its factor column: every
#: column, and the mean over the 9 columns.
COSINE_REL_RESIDUAL_TOL = 0.15
COSINE_MEAN_REL_RESIDUAL_TOL = 0.05
#: Per-angle MAE (deg) on held-out synthetic identities (8 training identities).
TEST_MAE_TOL_DEG = 5.0


def _stage(workdir, name):
    return json.loads((workdir / name / 'stage.json').read_text())


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    """Run the whole tiny pipeline once; return its workdir."""
    from conftest import shared_path

    shared_path('ict_facekit', 'ict_facekit.npz')
    shared_path('mediapipe_canonical', 'canonical_face_model.obj')
    from training import pipeline
    from training.render import renderer_available

    workdir = tmp_path_factory.mktemp('tiny_run')
    config = TINY
    if not renderer_available()[0]:  # identity_response: auto renders; use a fixed one
        import yaml

        cfg = yaml.safe_load(TINY.read_text())
        cfg['landmarks']['identity_response'] = [0.3, 0.6, 0.07]
        config = workdir / 'tiny_no_renderer.yaml'
        config.write_text(yaml.safe_dump(cfg))
    models = REPO / 'models'
    before = {p.name: p.stat().st_mtime_ns for p in models.glob('*')} if models.is_dir() else {}
    assert pipeline.main(['--config', str(config), '--workdir', str(workdir)]) == 0
    after = {p.name: p.stat().st_mtime_ns for p in models.glob('*')} if models.is_dir() else {}
    assert before == after, 'the tiny config must not write into models/'
    return workdir


def test_all_stages_ran_and_recorded(tiny_run):
    from training.pipeline import STAGES

    record = json.loads((tiny_run / 'pipeline.json').read_text())
    for stage in STAGES:
        entry = record['stages'][stage]
        assert entry['skipped'] is False
        assert entry['elapsed_s'] >= 0
        assert (tiny_run / stage / 'stage.json').is_file()
    assert (tiny_run / 'model' / 'nlml_hpe.safetensors').is_file()


def test_identity_response_is_measured(tiny_run):
    """``identity_response: auto``: MediaPipe on renders follows part of each face's shape."""
    summary = _stage(tiny_run, 'landmarks')['summary']
    if not summary.get('identity_response_measured'):
        pytest.skip('identity_response not measured (no renderer)')
    resp = summary['identity_response']
    assert len(resp) == 3 and all(0.0 <= v <= 1.0 for v in resp), resp
    assert resp[2] < min(resp[:2])  # MediaPipe's depth follows a face's shape least
    assert summary['identity_response_measured']['faces'] >= 50


def test_tensor_matches_landmarks_contract(tiny_run):
    from nlml_hpe.features import normalise_landmarks

    with np.load(tiny_run / 'landmarks' / 'landmarks.npz') as lm:
        grid = lm['grid']
        n_grid = (len(lm['yaw_grid']), len(lm['pitch_grid']), len(lm['roll_grid']))
    tensor = np.load(tiny_run / 'tensor' / 'tensor.npy', mmap_mode='r')
    assert tensor.shape == grid.shape[:1] + n_grid + (1404,)
    assert tensor.dtype == np.float32
    assert np.all(np.isfinite(tensor))
    # One sample re-normalised by hand equals the tensor entry.
    np.testing.assert_allclose(tensor[1, 2, 1, 0], normalise_landmarks(grid[1, 2, 1, 0])[0],
                               atol=1e-6)


def test_decomposition_reconstructs_tensor(tiny_run):
    from training.decompose import reconstruct

    tensor = np.load(tiny_run / 'tensor' / 'tensor.npy').astype(np.float64)
    with np.load(tiny_run / 'decompose' / 'decompose.npz') as dec:
        core = dec['core']
        factors = [dec['U_identity'], dec['U_yaw'], dec['U_pitch'], dec['U_roll'], None]
    assert core.shape == (5, 3, 3, 3, 1404)
    for u in factors[:4]:  # orthonormal columns
        np.testing.assert_allclose(u.T @ u, np.eye(u.shape[1]), atol=1e-8)
    err = np.linalg.norm(reconstruct(core, factors) - tensor) / np.linalg.norm(tensor)
    assert err < RECONSTRUCTION_TOL
    assert err == pytest.approx(_stage(tiny_run, 'decompose')['summary']['relative_error'],
                                rel=1e-6)
    # Fewer pose components must reconstruct worse (the ranks matter).
    trunc = [factors[0], factors[1][:, :1], factors[2][:, :1], factors[3][:, :1], None]
    err1 = np.linalg.norm(reconstruct(core[:, :1, :1, :1], trunc) - tensor) \
        / np.linalg.norm(tensor)
    assert err1 > err


def test_full_rank_tucker_is_exact(tiny_run):
    from training.decompose import reconstruct, tucker_decompose

    tensor = np.load(tiny_run / 'tensor' / 'tensor.npy')
    core, factors = tucker_decompose(tensor, list(tensor.shape), n_iter_max=1)
    rec = reconstruct(core, factors)
    assert np.linalg.norm(rec - tensor) / np.linalg.norm(tensor) < 1e-6


def test_cosine_fits_have_low_residual(tiny_run):
    from training.manifolds import cosine

    rel = []
    with np.load(tiny_run / 'decompose' / 'decompose.npz') as dec, \
            np.load(tiny_run / 'manifolds' / 'manifolds.npz') as man:
        params = man['params']
        assert params.shape == (3, 3, 4)
        for i, name in enumerate(('yaw', 'pitch', 'roll')):
            u = dec[f'U_{name}']
            w = np.radians(dec[f'{name}_grid'])
            for j in range(u.shape[1]):
                rms = np.sqrt(np.mean((cosine(w, *params[i, j]) - u[:, j]) ** 2))
                rel.append(rms / u[:, j].std())
                assert rel[-1] < COSINE_REL_RESIDUAL_TOL, (name, j, rms)
    assert np.mean(rel) < COSINE_MEAN_REL_RESIDUAL_TOL, rel
    for png in ('factor_columns.png', 'spiral.png'):
        assert (tiny_run / 'manifolds' / png).stat().st_size > 1000


def test_model_recovers_held_out_identity_angles(tiny_run):
    from nlml_hpe.features import normalise_landmarks
    from nlml_hpe.model import load_model

    with np.load(tiny_run / 'landmarks' / 'landmarks.npz') as lm:
        feats = normalise_landmarks(lm['test_landmarks'])
        truth = lm['test_angles'].astype(np.float64)
        test_ids = set(lm['test_identity'].tolist())
    assert len(feats) >= 50 and len(test_ids) >= 2
    model = load_model(tiny_run / 'model')
    # The network itself (the calibration is fit to MediaPipe on renders, not to projections).
    pred = model.predict(feats, calibrated=False)
    mae = np.abs(pred - truth).mean(axis=0)
    assert np.all(mae < TEST_MAE_TOL_DEG), mae
    # A model that ignores its input would be much worse than this.
    assert mae.mean() < 0.25 * np.abs(truth - truth.mean(axis=0)).mean()
    meta = model.metadata
    assert meta['synthetic_test_mae_deg']['mean'] == pytest.approx(mae.mean(), abs=0.05)
    assert len(meta['training_config_sha256']) == 64
    assert meta['angle_frame'] == 'apparent' and model.angle_frame == 'apparent'
    assert meta['aflw2000_dev_mae_deg'] is None  # training never reads the dev split
    assert 'never reads the AFLW2000 dev split' in meta['aflw2000_note']
    assert 'aflw2000' not in meta['training_config']['export']
    assert (tiny_run / 'networks' / 'loss_curves.png').stat().st_size > 1000
    sens = _stage(tiny_run, 'networks')['summary']['expression_sensitivity_deg']
    assert len(sens) == 8 and all(len(v) == 3 and np.all(np.isfinite(v)) for v in sens.values())
    assert 'Expression sensitivity' in (tiny_run / 'networks' / 'report.md').read_text()


def test_calibration_stage_and_export(tiny_run):
    from nlml_hpe.model import check_calibration, load_model, odd_polynomial

    entry = _stage(tiny_run, 'calibrate')['summary']
    if 'skipped' in entry:
        pytest.skip(f"calibrate stage skipped: {entry['skipped']}")
    with np.load(tiny_run / 'calibrate' / 'samples.npz') as s:
        assert s['landmarks'].shape == (40, 468, 3) and s['angles'].shape == (40, 3)
        detected = s['detected']
    # MediaPipe must find most rendered faces, or the renders are broken.
    assert detected.mean() > 0.4, detected.mean()
    with np.load(tiny_run / 'calibrate' / 'calibration.npz') as c:
        coeffs = {k: c[k] for k in c.files}
    assert set(coeffs) <= {'yaw', 'roll'} and coeffs, coeffs
    for k, v in coeffs.items():
        check_calibration(v, k)
    model = load_model(tiny_run / 'model')
    assert sorted(model.calibration) == sorted(coeffs)
    assert model.metadata['format_version'] == 2
    x = np.random.default_rng(0).normal(0, 1, (4, 1404))
    raw = model.predict(x, calibrated=False)
    cal = model.predict(x)
    if 'yaw' in coeffs:
        np.testing.assert_allclose(
            cal[:, 1], np.degrees(odd_polynomial(coeffs['yaw'], np.radians(raw[:, 1]))),
            atol=1e-3)
    np.testing.assert_allclose(cal[:, 0], raw[:, 0])  # pitch is not calibrated
    assert (tiny_run / 'calibrate' / 'calibration.png').stat().st_size > 1000


def test_rerun_skips_and_force_reruns(tiny_run):
    from training import pipeline

    ids = {s: _stage(tiny_run, s)['run_id'] for s in pipeline.STAGES}
    assert pipeline.main(['--config', str(TINY), '--workdir', str(tiny_run)]) == 0
    record = json.loads((tiny_run / 'pipeline.json').read_text())
    assert all(record['stages'][s]['skipped'] for s in pipeline.STAGES)
    assert {s: _stage(tiny_run, s)['run_id'] for s in pipeline.STAGES} == ids

    # Forcing a stage re-runs it, not the upstream ones.
    assert pipeline.main(['--config', str(TINY), '--workdir', str(tiny_run),
                          '--force', 'decompose', '--until', 'decompose']) == 0
    new = {s: _stage(tiny_run, s)['run_id'] for s in pipeline.STAGES}
    assert new['tensor'] == ids['tensor']
    assert new['decompose'] != ids['decompose']
    assert new['manifolds'] == ids['manifolds']
    # manifolds is now stale (its upstream re-ran): a plain re-run redoes it unforced.
    record = pipeline.run_pipeline(pipeline.resolve_paths(pipeline.load_config(TINY)),
                                   workdir=tiny_run, until='manifolds', log=lambda *_: None)
    assert record['stages']['tensor']['skipped'] is True
    assert record['stages']['manifolds']['skipped'] is False
    assert _stage(tiny_run, 'manifolds')['run_id'] != ids['manifolds']


def test_cli_errors_are_clear(tmp_path, capsys):
    from training import pipeline

    assert pipeline.main(['--config', str(tmp_path / 'missing.yaml')]) == 2
    assert 'config file not found' in capsys.readouterr().err
    assert pipeline.main(['--config', str(TINY), '--workdir', str(tmp_path),
                          '--only', 'nope']) == 2
    assert 'unknown stage' in capsys.readouterr().err


def test_config_asking_for_the_dev_split_is_refused(tmp_path, capsys):
    import yaml

    from training import pipeline

    cfg = yaml.safe_load(TINY.read_text())
    cfg['export']['aflw2000'] = True
    config = tmp_path / 'dev.yaml'
    config.write_text(yaml.safe_dump(cfg))
    assert pipeline.main(['--config', str(config), '--workdir', str(tmp_path / 'run')]) == 2
    assert 'export.aflw2000 is no longer read' in capsys.readouterr().err
    assert not (tmp_path / 'run').exists()  # refused before any stage ran


def test_bad_landmarks_artifact_is_rejected(tmp_path):
    from training.tensor import load_landmarks

    np.savez(tmp_path / 'landmarks.npz', yaw_grid=np.arange(5.0))
    with pytest.raises(ValueError, match='missing arrays'):
        load_landmarks(tmp_path / 'landmarks.npz')
    with pytest.raises(ValueError, match='not found'):
        load_landmarks(tmp_path / 'nope.npz')


def test_external_landmarks_artifact_runs_stages_4_to_9(tiny_run, tmp_path):
    from training import pipeline

    artifact = tiny_run / 'landmarks' / 'landmarks.npz'
    assert pipeline.main(['--config', str(TINY), '--workdir', str(tmp_path),
                          '--landmarks', str(artifact)]) == 0
    cal = _stage(tmp_path, 'calibrate')['summary']
    assert 'external landmarks' in cal['skipped']  # nothing to render without the face model
    assert _stage(tmp_path, 'networks')['summary']['expression_sensitivity_deg'] == {}
    from nlml_hpe.model import load_model

    model = load_model(tmp_path / 'model')
    assert model.calibration == {}
    assert model.metadata['landmarks_artifact']['path'] == str(artifact.resolve())
