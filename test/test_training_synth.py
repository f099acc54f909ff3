"""Training stages 1-3: faces, correspondence / renderer, synthetic landmarks.

Render tests need moderngl with a headless EGL context and skip with the reason
otherwise; everything that reads the ICT-FaceKit model or MediaPipe's canonical
face skips when the shared data is absent.
"""

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / 'training' / 'data' / 'ict_mediapipe_correspondence.npz'

#: Projected correspondence vs. MediaPipe on the same render (focal 800 px, 55 cm,
#: face ~220 px wide; poses within |yaw| <= 30, |pitch| <= 20): median over landmarks, px.
PROJECTION_MEDIAN_PX_TOL = 5.0
#: solvePnP (MediaPipe on the render, canonical face, true intrinsics) vs. the
#: rendered pose, per angle, degrees.
PNP_TOL_DEG = 7.5
#: ... and vs. solvePnP on the exact projection of the same face.
PNP_VS_PROJECTION_TOL_DEG = 4.0
#: Re-measured correspondence (2 identities x 3 views) vs. the shipped one, cm.
CORRESPONDENCE_MEDIAN_TOL_CM = 0.35

POSES = [(0.0, 0.0, 0.0), (-20.0, 25.0, -15.0), (0.0, -30.0, 0.0), (0.0, 0.0, 20.0)]


@pytest.fixture(scope='module')
def ict(ict_npz):
    from training.faces import ICTFaceKit

    return ICTFaceKit(ict_npz)


@pytest.fixture(scope='module')
def ict_npz():
    from conftest import shared_path

    return shared_path('ict_facekit', 'ict_facekit.npz')


@pytest.fixture(scope='module')
def corr():
    from training.correspondence import SHIPPED as shipped

    assert shipped == SHIPPED
    with np.load(SHIPPED, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope='module')
def renderer(ict, ict_npz):
    from training.render import make_renderer, renderer_available

    ok, why = renderer_available()
    if not ok:
        pytest.skip(why)
    r = make_renderer(ict, {'path': str(ict_npz)}, (640, 480))
    yield r
    r.release()


@pytest.fixture(scope='module')
def extractor():
    from nlml_hpe.landmarks import LandmarkExtractor

    with LandmarkExtractor(max_faces=1) as ext:
        yield ext


@pytest.fixture(scope='module')
def rendered(ict, corr, renderer, extractor):
    """Render one random identity at POSES with MediaPipe and projected landmarks."""
    from nlml_hpe.geometry import euler_to_matrix
    from training.correspondence import landmarks_of, to_head_frame
    from training.render import project

    coeffs = np.random.default_rng(7).normal(0, 1, len(ict.identity_modes))
    verts = to_head_frame(ict.vertices(coeffs), corr)
    pts = landmarks_of(ict, corr, coeffs[None])[0]
    out = []
    for pose in POSES:
        rot = euler_to_matrix(*pose)
        rgb, surf = renderer.render(verts, rot, 55.0, 800.0, return_head=True)
        found = extractor.extract(rgb)
        proj = project(pts, rot, 55.0, 800.0, (640, 480), z_scale=float(corr['z_scale']))
        out.append({'pose': pose, 'rgb': rgb, 'surf': surf, 'pts': pts, 'proj': proj,
                    'mp': found[0] if found else None})
    return out


def test_shipped_correspondence_is_well_formed(ict, corr):
    assert corr['tri_vertices'].shape == (468, 3)
    assert corr['bary'].shape == (468, 3)
    assert np.all(corr['bary'] >= -1e-9) and np.allclose(corr['bary'].sum(1), 1.0)
    # Snapped to the facial skin region, never eyeballs, teeth or the back of the head.
    assert corr['tri_vertices'].max() < 9409
    rot = corr['rotation']
    assert np.allclose(rot @ rot.T, np.eye(3), atol=1e-9) and np.linalg.det(rot) > 0
    assert 0.9 < float(corr['z_scale']) < 1.3
    # Per-landmark spread over views and identities: small for almost all landmarks.
    assert np.median(corr['distance_cm']) < 0.5


def test_correspondence_agrees_with_canonical_face(ict, corr, canonical_obj):
    """MediaPipe-measured points and the canonical face are the same face layout."""
    from training.correspondence import landmarks_of, load_canonical_obj

    canonical = load_canonical_obj(canonical_obj)
    neutral = landmarks_of(ict, corr, np.zeros((1, len(ict.identity_modes))))[0]
    # Head frame = canonical frame: no rotation or translation left between them.
    d = np.linalg.norm(neutral - canonical * float(corr['scale']), axis=1)
    assert np.median(d) < 0.6
    # Left-right layout: landmark 33 (right eye outer corner) at -x, 263 at +x.
    assert neutral[33, 0] < -2.0 < 2.0 < neutral[263, 0]
    assert neutral[1, 2] > neutral[33, 2] + 1.0            # nose tip in front of the eyes


def test_render_and_projection_share_one_camera(rendered):
    """The surface point seen at a projected landmark's pixel is that landmark."""
    r = rendered[0]
    from training.correspondence import sample_surface

    seen = sample_surface(r['surf'], r['proj'][:, :2])
    visible = np.all(np.isfinite(seen), 1)
    assert visible.mean() > 0.95
    err = np.linalg.norm(seen[visible] - r['pts'][visible], axis=1)
    assert np.median(err) < 0.1                             # cm (1 px ~ 0.07 cm here)


def test_renders_look_like_faces_to_mediapipe(rendered):
    for r in rendered:
        assert r['mp'] is not None, f'MediaPipe found no face at {r["pose"]}'
        rgb = r['rgb']
        assert rgb.dtype == np.uint8 and rgb.shape == (480, 640, 3)


def test_projection_matches_mediapipe_on_render(rendered):
    for r in rendered:
        err = np.linalg.norm(r['mp'][:, :2] - r['proj'][:, :2], axis=1)
        assert np.median(err) < PROJECTION_MEDIAN_PX_TOL, (r['pose'], np.median(err))
        # z: same orientation and scale as MediaPipe's after removing the offset.
        zm = r['mp'][:, 2] - r['mp'][:, 2].mean()
        zp = r['proj'][:, 2] - r['proj'][:, 2].mean()
        assert np.corrcoef(zm, zp)[0, 1] > 0.9
        assert 0.7 < (zm @ zp) / (zp @ zp) < 1.4


def test_solvepnp_round_trip_recovers_rendered_pose(rendered):
    """MediaPipe + solvePnP on a render gives back the rendered (pitch, yaw, roll).

    solvePnP against the canonical face reads pitch about 4-5 deg low even on the
    exact projections of the synthetic faces (their depth profile differs from the
    canonical face's), hence the tolerance; MediaPipe's landmarks must agree with
    the projection's reading more tightly.
    """
    from nlml_hpe.baseline import baseline_angles

    k = np.array([[800.0, 0, 320], [0, 800.0, 240], [0, 0, 1]])
    for r in rendered:
        got = baseline_angles(r['mp'][None], 640, 480, k)[0]
        assert np.all(np.abs(got - np.array(r['pose'])) < PNP_TOL_DEG), (r['pose'], got)
        exact = baseline_angles(r['proj'][None], 640, 480, k)[0]
        assert np.all(np.abs(got - exact) < PNP_VS_PROJECTION_TOL_DEG), (r['pose'], got, exact)


def test_remeasured_correspondence_is_consistent(ict, ict_npz, corr, canonical_obj, renderer):
    """A small fresh MediaPipe measurement lands where the shipped correspondence is."""
    from training.correspondence import (
        ICT_FACE_VERTICES,
        load_canonical_obj,
        mediapipe_correspondence,
    )

    tris = ict.triangles[np.all(ict.triangles < ICT_FACE_VERTICES, axis=1)]
    ccfg = {'n_identities': 2, 'views': [[0, 0, 0], [0, 15, 0], [10, 0, 0]]}
    fit, z_scale, diag = mediapipe_correspondence(
        ict, load_canonical_obj(canonical_obj), tris, {'path': str(ict_npz)}, ccfg,
        np.random.default_rng(1))
    assert diag['detected'] == 6
    shipped_pts = np.einsum('lkd,lk->ld', ict.neutral[corr['tri_vertices']], corr['bary'])
    d = np.linalg.norm(diag['neutral_points_cm'] - shipped_pts, axis=1)
    assert np.median(d) < CORRESPONDENCE_MEDIAN_TOL_CM
    assert abs(z_scale - float(corr['z_scale'])) < 0.15


def test_landmarks_stage_artifact_contract(tmp_path, ict_npz, canonical_obj):
    from training import correspondence, faces, synth_landmarks

    cfg = {'seed': 3,
           'faces': {'source': 'ict', 'path': str(ict_npz), 'n_identities': 3,
                     'n_test_identities': 2, 'expressions': {'max_weight': 0.3,
                                                             'n_active': 2}},
           'correspondence': {'method': 'shipped'},
           'grid': {'yaw': [-50, 50, 25], 'pitch': [-40, 40, 40], 'roll': [-30, 30, 30]},
           'landmarks': {'mode': 'projection', 'extra_per_identity': 7, 'test_per_identity': 5,
                         'noise_px': 0.5, 'check_identities': 0}}
    dirs = {}
    for name, mod in (('faces', faces), ('correspondence', correspondence),
                      ('landmarks', synth_landmarks)):
        dirs[name] = tmp_path / name
        dirs[name].mkdir()
        summary = mod.run(cfg, dirs[name], dict(dirs))
        assert (dirs[name] / 'report.md').is_file()
        assert summary['seconds'] >= 0
    with np.load(dirs['landmarks'] / 'landmarks.npz', allow_pickle=False) as d:
        assert list(d['yaw_grid']) == [-50, -25, 0, 25, 50]
        assert list(d['pitch_grid']) == [-40, 0, 40] and list(d['roll_grid']) == [-30, 0, 30]
        grid = d['grid']
        assert grid.dtype == np.float32 and grid.shape == (3, 5, 3, 3, 468, 3)
        assert np.all(np.isfinite(grid))
        assert d['extra_landmarks'].shape == (21, 468, 3)
        assert d['extra_angles'].shape == (21, 3) and d['extra_identity'].shape == (21,)
        assert d['test_landmarks'].shape == (10, 468, 3) and d['test_angles'].shape == (10, 3)
        assert set(d['test_identity']) == {0, 1}
        ang = d['extra_angles']
        assert np.all(np.abs(ang[:, 0]) <= 40) and np.all(np.abs(ang[:, 1]) <= 50)
        assert not d['grid_rendered'].any()
        # Yaw moves the nose tip (landmark 1) sideways relative to the eyes' midpoint
        mid = grid[..., [33, 263], 0].mean(-1)
        shift = grid[..., 1, 0] - mid
        assert np.all(shift[:, 0] > shift[:, -1])    # +yaw turns the nose to image left
        # Different identities differ; a pose's pixel scale depends on the camera.
        assert not np.allclose(grid[0], grid[1])


def test_bad_input_gives_clear_errors(renderer):
    from training.render import project
    from training.synth_landmarks import grid_values

    with pytest.raises(ValueError, match='bad grid spec'):
        grid_values([10, -10, 5])
    with pytest.raises(ValueError, match='expected vertices'):
        renderer.render(np.zeros((10, 3)), np.eye(3), 55.0, 800.0)
    with pytest.raises(ValueError, match='rotation'):
        renderer.render(np.zeros((len(renderer.colours), 3)), np.eye(2), 55.0, 800.0)
    with pytest.raises(ValueError, match='behind the camera'):
        project(np.array([[0.0, 0.0, 60.0]]), np.eye(3), 55.0, 800.0, (640, 480))


def test_mediapipe_z_is_depth_along_the_line_of_sight(ict, corr, renderer, extractor):
    """Off-centre faces: MediaPipe's z follows the depth along the ray to the head.

    This is why ``landmarks.angle_frame: apparent`` computes z that way (and why
    its angles are relative to the line of sight): the same render's depth
    along the optical axis fits MediaPipe's z much worse.
    """
    from training.correspondence import landmarks_of, to_head_frame
    from training.synth_landmarks import Projector

    coeffs = np.random.default_rng(7).normal(0, 1, len(ict.identity_modes))
    verts = to_head_frame(ict.vertices(coeffs), corr)
    pts = landmarks_of(ict, corr, coeffs[None])
    zs = float(corr['z_scale'])
    apparent = Projector({'angle_frame': 'apparent', 'z_scale': zs}, None)
    camera = Projector({'angle_frame': 'camera', 'z_scale': zs}, None)
    for offset, ang in (([200.0, 0.0], [0.0, 0.0, 0.0]), ([0.0, 150.0], [10.0, 30.0, 0.0]),
                        ([-200.0, -120.0], [-10.0, -20.0, 10.0])):
        cams = {'focal': np.array([600.0]), 'distance': np.array([60.0]),
                'offset': np.array([offset])}
        ang = np.array([ang])
        rot = apparent.rotations(ang, cams)[0]
        found = extractor.extract(renderer.render(verts, rot, 60.0, 600.0, offset))
        assert found, (offset, ang)
        proj_los = apparent.project(pts, ang, cams)[0]
        proj_axis = camera.project(pts, apparent.render_angles(ang, cams), cams)[0]
        np.testing.assert_allclose(proj_los[:, :2], proj_axis[:, :2], atol=1e-6)  # same image
        zm = found[0][:, 2] - found[0][:, 2].mean()
        rms_los, rms_axis = (float(np.sqrt(np.mean((zm - (z - z.mean())) ** 2)))
                             for z in (proj_los[:, 2], proj_axis[:, 2]))
        assert rms_los < 0.7 * rms_axis, (offset, ang, rms_los, rms_axis)


def test_apparent_samples_do_not_depend_on_where_the_face_is():
    """``angle_frame: apparent``: after centring, an off-centre sample is the centred one.

    Same identity, angles (relative to the line of sight), distance and focal
    length, head anywhere in the image: the model sees the same landmarks.
    In the ``camera`` frame the same offsets change them a lot.
    """
    from nlml_hpe.features import normalise_landmarks
    from nlml_hpe.position import canonical_face_m
    from training.synth_landmarks import Projector

    pts = np.repeat(canonical_face_m()[None] * 100.0, 4, axis=0)
    ang = np.array([[10.0, 30.0, -5.0]] * 4)
    cams = {'focal': np.full(4, 500.0), 'distance': np.full(4, 60.0),
            'offset': np.array([[0.0, 0.0], [250.0, 0.0], [0.0, -200.0], [-250.0, 180.0]])}
    spread = {}
    for frame in ('apparent', 'camera'):
        proj = Projector({'angle_frame': frame}, None)
        feats = normalise_landmarks(proj.centre(proj.project(pts, ang, cams), cams))
        spread[frame] = np.abs(feats[1:] - feats[0]).max()
    # What is left: the centring ray (landmarks' centroid) and the angles' ray
    # (head origin) are not quite the same line.
    assert spread['apparent'] < 0.02
    assert spread['camera'] > 20 * spread['apparent']


def test_renderer_survives_other_gl_contexts(ict, corr, renderer):
    """Creating and releasing another context does not corrupt a renderer's frames."""
    from training.correspondence import to_head_frame
    from training.render import renderer_available

    verts = to_head_frame(ict.vertices(np.zeros(len(ict.identity_modes))), corr)
    before = renderer.render(verts, np.eye(3), 55.0, 800.0)
    assert renderer_available()[0]  # creates and releases a context of its own
    np.testing.assert_array_equal(renderer.render(verts, np.eye(3), 55.0, 800.0), before)


def test_identity_response_scales_how_faces_differ(tmp_path, ict_npz):
    """``landmarks.identity_response``: [0, 0, 0] leaves only the mean face (and expressions)."""
    from training import correspondence, faces, synth_landmarks

    def run(resp, name):
        cfg = {'seed': 3,
               'faces': {'source': 'ict', 'path': str(ict_npz), 'n_identities': 3,
                         'n_test_identities': 1, 'expressions': {'max_weight': 0.0}},
               'correspondence': {'method': 'shipped'},
               'grid': {'yaw': [-50, 50, 25], 'pitch': [-40, 40, 40], 'roll': [-30, 30, 30]},
               'landmarks': {'mode': 'projection', 'extra_per_identity': 0,
                             'test_per_identity': 0, 'check_identities': 0,
                             'angle_frame': 'apparent', 'offset_frac': 0.0,
                             'focal_px': [700, 700], 'distance_cm': [60, 60]}}
        if resp is not None:
            cfg['landmarks']['identity_response'] = resp
        dirs = {}
        for stage, mod in (('faces', faces), ('correspondence', correspondence),
                           ('landmarks', synth_landmarks)):
            dirs[stage] = tmp_path / name / stage
            dirs[stage].mkdir(parents=True)
            mod.run(cfg, dirs[stage], dict(dirs))
        with np.load(dirs['landmarks'] / 'landmarks.npz') as d:
            return d['grid']

    full, none = run(None, 'full'), run([0.0, 0.0, 0.0], 'none')
    half = run([0.5, 0.5, 0.5], 'half')
    spread = [np.abs(g - g.mean(axis=0)).mean() for g in (full, none, half)]
    assert spread[1] < 1e-3 * spread[0]          # all identities are the mean face
    assert spread[2] == pytest.approx(0.5 * spread[0], rel=0.05)
    with pytest.raises(ValueError, match='identity_response'):
        run([0.5, 0.5], 'bad')
