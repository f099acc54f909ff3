"""Per-angle sigma and the readable-range state (nlml_hpe.uncertainty).

The shipped artifact loads and is refused when broken; on renders of fresh
faces sigma grows with |yaw| and the beyond-range state is set at 80 deg, not
at 10 deg; on the AFLW2000 dev split (skipped without ../shared) the check of
the shipped artifact, fitted on renders only, is what docs/uncertainty.md reports.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from nlml_hpe import uncertainty as U
from nlml_hpe.model import WEIGHTS_NAME, default_model_dir

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / 'models' / U.FILE_NAME


@pytest.fixture(scope='module')
def shipped():
    return U.load_uncertainty(SHIPPED, REPO / 'models' / WEIGHTS_NAME)


def test_shipped_artifact_loads_and_says_where_it_comes_from(shipped):
    assert U.default_path() == default_model_dir() / U.FILE_NAME
    prov = shipped.provenance
    assert prov['model_sha256'] and prov['seed'] == 0
    assert prov['single_images'] >= 1000 and prov['sequence_frames'] >= 200
    assert 'default' in prov['config']
    for mode in U.MODES:
        m = shipped.data['modes'][mode]
        assert m['fitted_on'] > 500
        assert 0.0 < m['range']['threshold'] < 1.0


def _broken(tmp_path, edit, name='u.json'):
    data = json.loads(SHIPPED.read_text())
    edit(data)
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize('edit, message', [
    (lambda d: d.update(format_version=99), 'format version'),
    (lambda d: d['modes'].pop('flip'), 'modes must be'),
    (lambda d: d['modes']['flip']['features'].reverse(), 'features'),
    (lambda d: d['modes']['one_pass']['sigma_terms'].pop(), 'sigma terms'),
    (lambda d: d['modes']['one_pass']['sigma']['yaw'].pop(), 'sigma.yaw'),
    (lambda d: d['modes']['one_pass']['sigma']['roll'].__setitem__(0, float('nan')),
     'finite'),
    (lambda d: d['modes']['flip']['range'].update(threshold=1.5), 'threshold'),
    (lambda d: d['modes']['flip']['range']['std'].__setitem__(0, 0.0), 'std'),
    (lambda d: d['modes']['flip']['range'].pop('coef'), 'malformed'),
])
def test_broken_artifacts_are_refused_with_the_reason(tmp_path, edit, message):
    with pytest.raises(U.UncertaintyFileError, match=message):
        U.load_uncertainty(_broken(tmp_path, edit))


def test_unreadable_or_foreign_files_are_refused(tmp_path):
    with pytest.raises(U.UncertaintyFileError, match='not found'):
        U.load_uncertainty(tmp_path / 'missing.json')
    (tmp_path / 'junk.json').write_text('{"modes": ')
    with pytest.raises(U.UncertaintyFileError, match='cannot read'):
        U.load_uncertainty(tmp_path / 'junk.json')
    (tmp_path / 'list.json').write_text('[1, 2]')
    with pytest.raises(U.UncertaintyFileError, match='format version'):
        U.load_uncertainty(tmp_path / 'list.json')
    (tmp_path / 'huge.json').write_text(' ' * (U.MAX_FILE_BYTES + 1))
    with pytest.raises(U.UncertaintyFileError, match='larger than'):
        U.load_uncertainty(tmp_path / 'huge.json')
    other = tmp_path / 'other.safetensors'
    other.write_bytes(b'not the shipped weights')
    with pytest.raises(U.UncertaintyFileError, match='fitted to model weights'):
        U.load_uncertainty(SHIPPED, other)


def _face(yaw=0.0):
    """Projected landmarks of the canonical face at ``yaw`` (enough for input checks)."""
    from nlml_hpe.geometry import euler_to_matrix
    from nlml_hpe.position import canonical_face_m

    pts = canonical_face_m() * 1000.0 @ euler_to_matrix(0.0, yaw, 0.0).T
    return np.c_[320 + pts[:, 0], 240 - pts[:, 1], -pts[:, 2]]


def test_bad_inputs_are_refused(shipped):
    lm, ang = _face(), np.zeros((1, 3))
    with pytest.raises(ValueError, match='landmarks'):
        shipped.assess(lm[:400], ang, ang, [1.0])
    bad = lm.copy()
    bad[5, 0] = np.nan
    with pytest.raises(ValueError, match='NaN'):
        shipped.assess(bad, ang, ang, [1.0])
    with pytest.raises(ValueError, match='network_angles'):
        shipped.assess(lm, ang, np.zeros((2, 3)), [1.0])
    with pytest.raises(ValueError, match='angles'):
        shipped.assess(lm, np.full((1, 3), np.inf), ang, [1.0])
    with pytest.raises(ValueError, match='scores'):
        shipped.assess(lm, ang, ang, [1.5])


def test_a_batch_is_assessed_as_its_faces_one_by_one(shipped):
    lms = np.stack([_face(y) for y in (0.0, 30.0, 60.0)])
    ang = np.array([[2.0, 0.0, 1.0], [-5.0, 31.0, 3.0], [10.0, 58.0, -4.0]])
    net = ang + np.array([[0.5, -0.3, 0.1], [1.0, 2.0, -1.0], [-2.0, 6.0, 1.0]])
    scores = [1.0, 0.9999, 0.97]
    for flip in (False, True):
        batch = shipped.assess(lms, ang, net, scores, flip_average=flip)
        assert batch.sigma_deg.shape == (3, 3) and batch.beyond_range.shape == (3,)
        assert np.all(np.isfinite(batch.sigma_deg)) and np.all(batch.sigma_deg > 0)
        for i in range(3):
            one = shipped.assess(lms[i], ang[i], net[i], [scores[i]], flip_average=flip)
            np.testing.assert_allclose(one.sigma_deg[0], batch.sigma_deg[i])
            assert one.p_beyond[0] == pytest.approx(batch.p_beyond[i])
    assert shipped.assess(lms[:0], ang[:0], net[:0], []).sigma_deg.shape == (0, 3)


@pytest.fixture(scope='module')
def rendered(ict_npz_module):
    """One-pass readings and assessments of rendered fresh faces at yaw 10, 35, 60, 80."""
    from nlml_hpe.bench.scenes import HeadKit
    from nlml_hpe.camera import Camera
    from nlml_hpe.estimator import HeadPoseEstimator
    from nlml_hpe.geometry import euler_to_matrix

    try:
        kit = HeadKit(ict_npz_module)
    except RuntimeError as exc:  # no headless OpenGL, no training package
        pytest.skip(str(exc))
    rng = np.random.default_rng(7)
    unc = U.load_uncertainty()
    out = {}
    neutral = np.zeros(len(kit.expression_names))
    try:
        with HeadPoseEstimator.from_pretrained(flip_average=False) as est:
            for _ in range(3):
                verts, points = kit.shape(kit.base(rng.normal(0.0, 1.0, kit.n_identity_modes)),
                                          neutral)
                for yaw in (10.0, 35.0, 60.0, 80.0):
                    for sign in (1.0, -1.0):
                        rgb, _, _ = kit.render((640, 480), verts, points,
                                               euler_to_matrix(0.0, sign * yaw, 0.0), 60.0,
                                               700.0, (0.0, 0.0))
                        poses = est.estimate(rgb, camera=Camera.pinhole(700.0, 640, 480))
                        if poses:
                            a = unc.assess_poses(poses[:1])
                            out.setdefault(yaw, []).append((a.sigma_deg[0], a.beyond_range[0]))
    finally:
        kit.release()
    return out


@pytest.fixture(scope='module')
def ict_npz_module():
    from conftest import shared_path

    return shared_path('ict_facekit', 'ict_facekit.npz')


def test_sigma_grows_with_yaw_on_renders(rendered):
    assert all(len(rendered.get(y, [])) >= 4 for y in (10.0, 35.0, 60.0, 80.0))
    median = {y: np.median([s for s, _ in v], axis=0) for y, v in rendered.items()}
    yaw_sigma = [median[y][1] for y in (10.0, 35.0, 60.0, 80.0)]
    assert np.all(np.diff(yaw_sigma) > 0), yaw_sigma
    assert yaw_sigma[-1] > 3.0 * yaw_sigma[0]


def test_beyond_range_set_at_80_not_at_10_on_renders(rendered):
    assert all(b for _, b in rendered[80.0])
    assert not any(b for _, b in rendered[10.0])


def test_dev_split_calibration_per_bin(aflw_dir):
    """The shipped artifact on AFLW2000 dev (fitted on renders only; nothing fitted here).

    The readable-range targets hold; sigma covers fewer real errors than the 60-75 %
    aimed at (real faces err more than renders: docs/uncertainty.md), but within
    bounds that still make it useful, and it grows with |yaw|.
    """
    result = U.dev_check(aflw_dir)
    for mode in U.MODES:
        table = result[mode]
        far, far_n = table['targets']['beyond_set_above_65']
        near, near_n = table['targets']['beyond_set_below_45']
        assert far_n >= 10 and far >= 0.95, (mode, far, far_n)
        assert near_n >= 150 and near <= 0.03, (mode, near, near_n)
        rows = {tuple(r['bin']): r for r in table['bins']}
        for row in rows.values():
            if row['found'] >= 10:
                assert 0.4 <= row['within_sigma_pooled'] <= 0.8, (mode, row)
        assert rows[(60.0, 70.0)]['sigma_median'][1] > 3 * rows[(0.0, 30.0)]['sigma_median'][1]
        text = U.format_table(table)
        # A header and one row per bin, then the targets.
        assert sum(line.startswith('| ') for line in text.splitlines()) == len(U.YAW_BINS)
        assert 'target >= 95 %' in text


def test_fitting_helpers_recover_what_they_fit():
    from training.uncertainty import bin_weights, choose_threshold, fit_logistic, fit_quantile

    rng = np.random.default_rng(3)
    x = rng.normal(size=(4000, 2))
    y = (x @ [2.0, -1.0] + 0.5 + rng.logistic(size=4000) > 0).astype(float)
    coef, icpt = fit_logistic(x, y, np.ones(4000), l2=1e-6)
    np.testing.assert_allclose(np.r_[coef, icpt], [2.0, -1.0, 0.5], atol=0.2)
    # log |error| with a spread that grows with a feature: the 68 % quantile line is found.
    f = rng.uniform(0, 1, 3000)
    err = np.abs(rng.normal(size=3000)) * np.exp(1.0 + 2.0 * f)
    w = fit_quantile(np.c_[np.ones(3000), f], np.log(err), 0.68, np.ones(3000))
    sigma = np.exp(np.c_[np.ones(3000), f] @ w)
    assert abs(np.mean(err <= sigma) - 0.68) < 0.02
    assert w[1] == pytest.approx(2.0, abs=0.3)
    ay = np.array([10.0, 40.0, 40.0, 70.0])
    wts = bin_weights(ay, np.ones(4, bool), U.YAW_BINS)
    assert wts[0] == pytest.approx(2 * wts[1]) and wts.mean() == pytest.approx(1.0)
    p, ay = np.array([0.1, 0.2, 0.9, 0.8, 0.95]), np.array([10.0, 20.0, 30.0, 70.0, 80.0])
    # No false state allowed: above the near faces' highest score (one far face is lost).
    assert list(p >= choose_threshold(p, ay, 0.0, 65.0, 45.0)) == [0, 0, 0, 0, 1]
    # One in three near faces may be set: both far faces are.
    assert list(p >= choose_threshold(p, ay, 0.34, 65.0, 45.0)) == [0, 0, 1, 1, 1]
    assert choose_threshold(p, np.full(5, 10.0), 0.0, 65.0, 45.0) == 0.5


@pytest.mark.slow
def test_stage_fits_a_loadable_artifact_from_a_few_renders(tmp_path, ict_npz_module):
    """The training stage on the tiny config, with the shipped model as the export."""
    import shutil

    from training import pipeline
    from training.render import renderer_available

    if not renderer_available()[0]:
        pytest.skip(renderer_available()[1])
    model = tmp_path / 'model'
    model.mkdir()
    for name in (WEIGHTS_NAME, 'nlml_hpe.json'):
        shutil.copy(REPO / 'models' / name, model / name)
    tiny = REPO / 'training' / 'configs' / 'tiny.yaml'
    assert pipeline.main(['--config', str(tiny), '--workdir', str(tmp_path),
                          '--until', 'correspondence']) == 0
    assert pipeline.main(['--config', str(tiny), '--workdir', str(tmp_path),
                          '--only', 'uncertainty']) == 0
    unc = U.load_uncertainty(model / U.FILE_NAME, model / WEIGHTS_NAME)
    assert unc.provenance['single_images'] == 48 and unc.provenance['sequence_frames'] == 20
    report = (tmp_path / 'uncertainty' / 'report.md').read_text()
    assert report.count('beyond-range set:') == 6
    # A re-fit reuses the renders.
    assert pipeline.main(['--config', str(tiny), '--workdir', str(tmp_path),
                          '--only', 'uncertainty', '--force', 'uncertainty']) == 0
    assert '(samples.npz reused)' in (tmp_path / 'uncertainty' / 'report.md').read_text()
