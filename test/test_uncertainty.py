"""Per-angle sigma and the readable-range state (nlml_hpe.uncertainty).

The shipped artifact loads and is refused when broken; on renders of fresh
faces sigma grows with |yaw| and the beyond-range state is set at 80 deg, not
at 10 deg; on the AFLW2000 dev split (skipped without ../shared) the check of
the shipped artifact, fitted on renders only, is what docs/uncertainty.md reports.
The training side: the fitting helpers recover what they fit, the camera
conditions of the calibration renders are drawn and applied as documented, and
the stage fits a loadable artifact from a few renders.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from nlml_hpe import uncertainty as U
from nlml_hpe import uncertainty_tables as T
from nlml_hpe.bench import uncertainty as B
from nlml_hpe.model import WEIGHTS_NAME, default_model_dir, load_model

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / 'models' / U.FILE_NAME


@pytest.fixture(scope='module')
def shipped():
    return U.load_uncertainty(SHIPPED, REPO / 'models' / WEIGHTS_NAME)


def test_shipped_artifact_loads_and_says_where_it_comes_from(shipped):
    assert load_model(default_model_dir()).uncertainty is not None  # shipped beside it
    prov = shipped.provenance
    assert prov['model_sha256'] and prov['seed'] == 0
    assert prov['single_images'] >= 1000 and prov['sequence_frames'] >= 200
    assert 'default' in prov['config']
    # Fitted on renders under a robot camera's conditions, not on plain studio renders.
    assert prov['options']['conditions']['enabled']
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
    (lambda d: d.update(format_version=1), 'format version'),
    (lambda d: d['modes'].pop('flip'), 'modes must be'),
    (lambda d: d['modes']['flip']['features'].reverse(), 'features'),
    (lambda d: d['modes']['one_pass']['sigma_terms'].pop(), 'sigma terms'),
    (lambda d: d['modes']['one_pass']['sigma']['yaw'].pop(), 'sigma.yaw'),
    (lambda d: d['modes']['one_pass']['sigma']['roll'].__setitem__(0, float('nan')),
     'finite'),
    (lambda d: d['modes']['flip']['range'].update(threshold=1.5), 'threshold'),
    (lambda d: d['modes']['flip']['range']['std'].__setitem__(0, 0.0), 'std'),
    (lambda d: d['modes']['flip']['range'].pop('coef'), 'malformed'),
    (lambda d: d['modes']['flip']['range']['coef'].pop(), 'range.coef'),
    (lambda d: d['modes']['flip']['range'].update(terms='linear'), 'range terms'),
    (lambda d: d['modes']['one_pass']['range']['features'].pop(), 'range features'),
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
    unc = U.load_uncertainty(default_model_dir())
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
    """The three angles' sigma grows with the turn; yaw's most beyond the readable range.

    (Yaw's own sigma need not grow from 35 to 60 deg: there the reading still
    follows the turn and its errors are as small as at 35 deg.)
    """
    assert all(len(rendered.get(y, [])) >= 4 for y in (10.0, 35.0, 60.0, 80.0))
    median = {y: np.median([s for s, _ in v], axis=0) for y, v in rendered.items()}
    mean_sigma = [median[y].mean() for y in (10.0, 35.0, 60.0, 80.0)]
    assert np.all(np.diff(mean_sigma) > 0), median
    yaw_sigma = [median[y][1] for y in (10.0, 35.0, 60.0, 80.0)]
    assert yaw_sigma[1] > 1.5 * yaw_sigma[0] and yaw_sigma[-1] > 3.0 * yaw_sigma[2], median


def test_beyond_range_set_at_80_not_at_10_on_renders(rendered):
    assert all(b for _, b in rendered[80.0])
    assert not any(b for _, b in rendered[10.0])


def test_dev_split_calibration_per_bin(aflw_dir):
    """The shipped artifact on AFLW2000 dev (fitted on renders only; nothing fitted here).

    What docs/uncertainty.md reports: one pass (as the node runs), the readable-range
    targets hold (flip averaging misses 2 of 17 faces beyond 65 deg); sigma holds
    fewer real errors than the 60-75 % aimed at in some bins (real faces at 30-50 deg
    err more than renders with the same cues), but stays within bounds that make
    it useful, grows with |yaw|, and one pass holds more than the old artifact's
    48 % at 30-50 deg.
    """
    result = B.dev_check(aflw_dir, label_noise=(2.0,))
    for mode, far_min in (('one_pass', 0.95), ('flip', 0.85)):
        table = result[mode]
        far, far_n = table['targets']['beyond_set_above_65']
        near, near_n = table['targets']['beyond_set_below_45']
        assert far_n >= 10 and far >= far_min, (mode, far, far_n)
        assert near_n >= 150 and near <= 0.03, (mode, near, near_n)
        rows = {tuple(r['bin']): r for r in table['bins']}
        for row in rows.values():
            if row['found'] >= 10:
                assert 0.4 <= row['within_sigma_pooled'] <= 0.8, (mode, row)
        mean_sigma = {k: np.mean(r['sigma_median']) for k, r in rows.items() if 'mae' in r}
        assert mean_sigma[(60.0, 70.0)] > 3 * mean_sigma[(0.0, 30.0)], mean_sigma
        # A label error added in quadrature can only widen the band.
        noisy = result['label_noise']['2.0'][mode]['bins']
        for row, wide in zip(table['bins'], noisy):
            if 'within_sigma_pooled' in row:
                assert wide['within_sigma_pooled'] >= row['within_sigma_pooled']
        text = T.format_table(table)
        # A header and one row per bin, then the targets.
        assert sum(line.startswith('| ') for line in text.splitlines()) == len(U.YAW_BINS)
        assert 'target >= 95 %' in text
    one_pass = {tuple(r['bin']): r for r in result['one_pass']['bins']}
    assert one_pass[(30.0, 50.0)]['within_sigma_pooled'] > 0.5


def test_calibration_table_counts_what_it_says():
    """Per |yaw| bin: shown, found, MAE, within-sigma shares and the range targets."""
    true = np.array([[0, 10, 0], [0, -20, 0], [0, 40, 0], [0, 75, 0], [0, -80, 0],
                     [0, 85, 0]], float)
    err = np.array([[1, 1, 1], [3, 3, 3], [2, -2, 2], [5, 5, 5], [1, 1, 1], [0, 0, 0]], float)
    angles = true + err
    angles[5] = np.nan  # the last face was not found
    sigma = np.full((6, 3), 2.0)
    beyond = np.array([False, False, True, True, False, False])
    table = T.calibration_table(true, angles, sigma, beyond)
    rows = {tuple(r['bin']): r for r in table['bins']}
    low = rows[(0.0, 30.0)]
    assert (low['shown'], low['found']) == (2, 2)
    assert low['mae'] == pytest.approx([2.0, 2.0, 2.0])
    assert low['within_sigma_pooled'] == pytest.approx(0.5)  # 1 deg in, 3 deg out
    assert rows[(30.0, 50.0)]['within_sigma_pooled'] == 1.0  # |2| <= 2
    assert (rows[(80.0, 90.0)]['shown'], rows[(80.0, 90.0)]['found']) == (2, 1)
    assert rows[(50.0, 60.0)] == {'bin': [50.0, 60.0], 'shown': 0, 'found': 0}
    assert table['targets']['beyond_set_above_65'] == [0.5, 2]  # 75 set, -80 not; 85 missed
    assert table['targets']['beyond_set_below_45'] == [pytest.approx(1 / 3), 3]
    # A label error added in quadrature widens the band: sqrt(2^2 + 3^2) > 3.
    wide = T.calibration_table(true, angles, sigma, beyond, label_noise_deg=3.0)
    assert wide['bins'][0]['within_sigma_pooled'] == 1.0
    text = T.format_table(table, 'title')
    assert text.splitlines()[0] == 'title'
    assert '| 0-30 | 2 | 2 (100 %) | 2.0 / 2.0 / 2.0 | 50 / 50 / 50 % | 50 % |' in text
    assert T.pooled_line(table) == '50 / 100 /  /  / 0 / 100'


def test_dev_check_command_refuses_bad_input(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        B.main([str(tmp_path), '--label-noise', '45'])
    assert exc.value.code == 2 and '--label-noise' in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        B.main([str(tmp_path / 'nope')])
    assert exc.value.code == 2
    assert 'AFLW2000 directory not found' in capsys.readouterr().err


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


def test_calibrated_quantile_fit_covers_every_group():
    """Where the terms cannot follow a jump in the error's spread, per-group levels still can."""
    from training.uncertainty import fit_calibrated, fit_quantile

    rng = np.random.default_rng(5)
    x = rng.uniform(0.0, 1.0, 3000)
    group = (x > 0.7).astype(int)  # errors three times as wide beyond a step in x
    err = np.abs(rng.normal(size=3000)) * np.where(group == 1, 3.0, 1.0)
    terms, target, w = np.c_[np.ones(3000), x], np.log(err), np.ones(3000)

    def shares(coef):
        below = target <= terms @ coef
        return np.array([below[group == g].mean() for g in (0, 1)])

    plain = shares(fit_quantile(terms, target, 0.68, w))
    calibrated = shares(fit_calibrated(terms, target, group, w, 0.68))
    assert np.abs(plain - 0.68).max() > 0.05, plain  # one level misses a group
    assert np.abs(calibrated - 0.68).max() < 0.03, calibrated
    # A level per row is the plain fit when all levels are equal.
    np.testing.assert_allclose(fit_quantile(terms, target, np.full(3000, 0.68), w),
                               fit_quantile(terms, target, 0.68, w), atol=1e-6)


def test_camera_conditions_are_drawn_and_applied_as_documented():
    from training import camera_conditions as cc

    opts = cc.options({})
    with pytest.raises(ValueError, match='occluder'):
        cc.options({'occluder': {'none': 1.0, 'scarf': 0.5}})
    with pytest.raises(ValueError, match='jpeg'):
        cc.options({'jpeg': 1.5})
    draws = np.stack([cc.draw(opts, np.random.default_rng(i)) for i in range(400)])
    assert draws.shape == (400, len(cc.COLUMNS))
    col = {k: draws[:, i] for i, k in enumerate(cc.COLUMNS)}
    # Every skin tone, background and occluder kind occurs; shares near the mixture's.
    assert set(col['skin_tone']) == set(range(len(cc.SKIN_TONES)))
    assert abs((col['occluder'] == list(opts['occluder']).index('glasses')).mean() - 0.3) < 0.08
    assert abs((col['jpeg_quality'] > 0).mean() - opts['jpeg']) < 0.08
    np.testing.assert_array_equal(cc.draw(opts, np.random.default_rng(3)),
                                  cc.draw(opts, np.random.default_rng(3)))

    # A flat "face" disc on grey: a room background replaces the grey, not the face;
    # the plain studio draw (grey, no occluder, blur, noise or JPEG) changes nothing.
    h, w = 120, 160
    yy, xx = np.mgrid[:h, :w]
    head = (yy - 60) ** 2 + (xx - 80) ** 2 < 30 ** 2
    rgb = np.where(head[..., None], np.uint8(180), np.uint8(127)) * np.ones((1, 1, 3), np.uint8)
    pts = np.zeros((468, 2)) + (80.0, 60.0)
    pts[[33, 133]] = (65.0, 55.0), (75.0, 55.0)
    pts[[263, 362]] = (95.0, 55.0), (85.0, 55.0)
    plain = dict(zip(cc.COLUMNS, np.zeros(len(cc.COLUMNS))))
    plain.update(resolution_scale=1.0, exposure=1.0, gamma=1.0, wb_r=1.0, wb_g=1.0, wb_b=1.0)
    look = cc.Appearance(np.tile([0.8, 0.6, 0.5], (4, 1)), np.zeros((4, 3)), opts)
    row = lambda d: np.array([d[k] for k in cc.COLUMNS])  # noqa: E731
    same = look.finish(rgb, head, row(plain), pts)
    assert same.dtype == np.uint8 and same.shape == rgb.shape
    diff = same.astype(float) - rgb
    assert abs(diff.mean()) < 0.5 and diff.std() < 6  # shot noise only
    room = dict(plain, background=list(opts['background']).index('room'), seed=4)
    out = look.finish(rgb, head, row(room), pts).astype(float)
    assert abs(out[head].mean() - 180) < 1 and out[head].std() < 6
    assert np.abs(out[~head] - 127).mean() > 10
    glasses = dict(plain, occluder=list(opts['occluder']).index('glasses'))
    framed = look.finish(rgb, head, row(glasses), pts)
    assert (framed[head].astype(int) < 100).any()  # dark rims over the face
    noisy = (look.finish(rgb, head, row(dict(plain, noise=8.0)), pts).astype(float) - rgb).std()
    assert noisy > 1.5 * diff.std()
    jpeg = look.finish(rgb, head, row(dict(plain, noise=8.0, jpeg_quality=40.0)), pts)
    assert (jpeg.astype(float) - rgb).std() < noisy  # compression smooths the noise away
    blurred = look.finish(rgb, head, row(dict(plain, blur=1.0, blur_px=2.0)), pts)
    edge = (slice(58, 62), slice(48, 52))  # across the disc's left rim
    assert np.ptp(blurred[edge].astype(float).mean(axis=-1)) < np.ptp(same[edge].mean(axis=-1))
    # Skin tone darkens skin-coloured vertices; the key light shades by the normals.
    dark = dict(plain, skin_tone=len(cc.SKIN_TONES) - 1, fill=0.3)
    normals = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    lit = look.colours(row(dark), normals)
    assert lit[0].sum() < 0.6 * look.colours(row(dict(dark, skin_tone=0)), normals)[0].sum()
    side = look.colours(row(dict(dark, light_azimuth=np.pi / 3)), normals)
    assert side[1].sum() > side[2].sum()


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
    with np.load(tmp_path / 'uncertainty' / 'samples.npz') as data:
        from training.camera_conditions import COLUMNS

        assert data['conditions'].shape == (68, len(COLUMNS))
        assert np.all(np.isfinite(data['conditions']))
    report = (tmp_path / 'uncertainty' / 'report.md').read_text()
    assert report.count('beyond-range set:') == 6
    # A re-fit reuses the renders.
    assert pipeline.main(['--config', str(tiny), '--workdir', str(tmp_path),
                          '--only', 'uncertainty', '--force', 'uncertainty']) == 0
    assert '(samples.npz reused)' in (tmp_path / 'uncertainty' / 'report.md').read_text()


def test_assessment_matches_the_sigma_terms_it_was_fitted_on(shipped):
    """The run-time path (all three angles at once) is the fitted model: sigma_terms per angle."""
    rng = np.random.default_rng(3)
    for mode in U.MODES:
        m = shipped.modes[mode]
        f = rng.uniform(m['feature_low'] - 0.5, m['feature_high'] + 0.5, (300, len(U.FEATURES)))
        fc = np.clip(f, m['feature_low'], m['feature_high'])
        got = shipped.assess_features(f, flip_average=(mode == 'flip'))
        for a in range(3):
            want = np.clip(np.exp(np.clip(U.sigma_terms(fc, got.p_beyond, a) @ m['sigma'][a],
                                          -5.0, 5.0)), *U.SIGMA_BOUNDS_DEG)
            np.testing.assert_allclose(got.sigma_deg[:, a], want, rtol=1e-12)
    # Mixed reading modes: each face gets its own mode's coefficients.
    flip = rng.random(300) < 0.5
    mixed = shipped.assess_features(f, flip_average=flip)
    alone = shipped.assess_features(f[flip], flip_average=True)
    np.testing.assert_array_equal(mixed.sigma_deg[flip], alone.sigma_deg)
    with pytest.raises(ValueError, match='flip_average'):
        shipped.assess_features(f, flip_average=[True, False])
