"""Stage 3 -- landmarks: MediaPipe-like landmarks of every identity at every pose.

Modes (``landmarks.mode``):

* ``projection`` -- the 468 corresponded points of each synthetic face (stage 2)
  are rotated with :func:`nlml_hpe.geometry.euler_to_matrix` and projected with
  the pinhole camera of :func:`training.render.project`; focal length, distance
  and image position are drawn per sample from the config ranges, plus optional
  Gaussian landmark noise.  ``z`` is the camera depth relative to the head origin
  in pixels at the head's distance, times MediaPipe's calibrated ``z_scale``
  (``auto`` = the correspondence's).
* ``landmarks.angle_frame`` -- ``camera`` (default): the sample angles are the
  head's rotation relative to the optical axis.  ``apparent``: relative to the
  line of sight to the head origin (the ray's turn is added before projecting),
  z is the depth along the ray through the landmarks' centroid (as MediaPipe's,
  which it reads from a crop centred on the face), and the stored landmarks are
  centred on the line of sight (:func:`nlml_hpe.features.centre_on_line_of_sight`,
  what the estimator does at inference), so the model sees every face as if it
  were on the optical axis.
* ``landmarks.identity_response`` -- ``[x, y, z]`` or ``auto``: MediaPipe's mesh
  regresses to its own prior, so its landmarks follow only part of how a face
  differs from the mean face (on renders of ICT-FaceKit identities about 0.3 of
  it across, 0.6 vertically and 0.07 in depth).  Projected samples scale that
  part per head axis; ``auto`` measures it (:func:`measure_identity_response`,
  a few seconds of renders).  Unset: the projected face's own shape.
* ``render`` / ``mixed`` -- every sample is rendered (:mod:`training.render`,
  same camera) and MediaPipe Face Mesh runs on the render; where MediaPipe finds
  no face the projection is used instead, so the tensor stays complete (the two
  names are synonyms; ``rendered`` in the artifact marks which samples are
  MediaPipe output).  Slow: ~30 ms per sample per core.

In every mode a *check* renders the grid poses of ``check_identities`` training
identities with the samples' own cameras and expressions, and the report gives
MediaPipe's detection rate per pose and the distance between the projected
landmarks and MediaPipe's on the same render (px, and after
:func:`nlml_hpe.features.normalise_landmarks`), plus the solvePnP baseline's
angle error on those renders as a convention check.

Artifact ``landmarks/landmarks.npz`` (the contract with stages 4-8; landmarks as
the model sees them before :func:`nlml_hpe.features.normalise_landmarks`):

* ``yaw_grid``, ``pitch_grid``, ``roll_grid`` -- degrees
* ``grid`` float32 ``(I, Y, P, R, 468, 3)`` -- complete: one sample per identity and pose
* ``extra_landmarks`` ``(M, 468, 3)``, ``extra_angles`` ``(M, 3)`` (pitch, yaw, roll),
  ``extra_identity`` ``(M,)`` -- training identities at continuous poses
* ``test_landmarks``, ``test_angles``, ``test_identity`` -- held-out identities
* ``grid_rendered`` bool ``(I, Y, P, R)``, ``extra_rendered``, ``test_rendered`` --
  which samples are MediaPipe output (all False in projection mode)
"""

import os
import time

import numpy as np
from tqdm import tqdm

from nlml_hpe.features import centre_on_line_of_sight, line_of_sight_homography
from nlml_hpe.geometry import euler_to_matrix, matrix_to_euler, rotation_between

from .correspondence import landmarks_of, load_correspondence, to_head_frame
from .faces import load_faces, load_source, sample_expressions
from .render import camera_centre, make_renderer, project, renderer_available
from .synth_check import check_renders, plot_examples, write_report
from .synth_render import render_mediapipe

#: Frames the sample angles can be given in (``landmarks.angle_frame``).
ANGLE_FRAMES = ('apparent', 'camera')


def grid_values(spec):
    """Inclusive ``[start, stop, step]`` degrees -> array."""
    start, stop, step = (float(v) for v in spec)
    if step <= 0 or stop < start:
        raise ValueError(f'bad grid spec {spec}: need start <= stop and step > 0')
    return np.arange(start, stop + step / 2, step)


class Projector:
    """Draws camera parameters and projects faces for one config."""

    def __init__(self, lcfg, rng, z_scale=1.0):
        self.cfg = lcfg
        self.rng = rng
        self.size = tuple(int(v) for v in lcfg.get('image_size', (640, 480)))
        zs = lcfg.get('z_scale', 'auto')
        #: ``(low, high)`` of the per-sample z scale (equal for a fixed scale).
        if isinstance(zs, (list, tuple)):
            self.z_range = tuple(float(v) for v in zs)
            if len(self.z_range) != 2 or not 0 < self.z_range[0] <= self.z_range[1]:
                raise ValueError('landmarks.z_scale must be a number, auto or [low, high] '
                                 'with 0 < low <= high')
        else:
            self.z_range = (float(z_scale if zs in (None, 'auto') else zs),) * 2
        self.z_scale = 0.5 * (self.z_range[0] + self.z_range[1])
        self.angle_frame = lcfg.get('angle_frame', 'camera')
        if self.angle_frame not in ANGLE_FRAMES:
            raise ValueError(f'landmarks.angle_frame must be one of {ANGLE_FRAMES}, '
                             f'got {self.angle_frame!r}')
        for key in ('focal_px', 'distance_cm'):
            lo, hi = (float(v) for v in lcfg.get(key, (1, 1)))
            if not 0 < lo <= hi:
                raise ValueError(f'landmarks.{key} must be [low, high] with 0 < low <= high')

    def cameras(self, n):
        """Draw ``n`` cameras: dict of ``focal`` (n,), ``distance`` (n,), ``offset`` (n, 2)."""
        rng, c = self.rng, self.cfg
        focal = rng.uniform(*c.get('focal_px', (500, 900)), n)
        distance = rng.uniform(*c.get('distance_cm', (45, 120)), n)
        frac = float(c.get('offset_frac', 0.2))
        offset = np.stack([rng.uniform(-frac, frac, n) * self.size[0],
                           rng.uniform(-frac, frac, n) * self.size[1]], 1)
        cams = {'focal': focal, 'distance': distance, 'offset': offset}
        if self.z_range[0] < self.z_range[1]:  # (no draw for a fixed scale: same stream)
            cams['z_scale'] = rng.uniform(*self.z_range, n)
        return cams

    def rotations(self, angles, cams):
        """Head->viewer rotations ``(n, 3, 3)`` of samples at ``angles`` (pitch, yaw, roll).

        ``angle_frame: camera``: the angles are the rotation itself.  ``apparent``:
        they are the rotation relative to the line of sight from the camera to
        the head origin (what a camera looking straight at the face would read,
        and what weak-perspective labels such as AFLW2000's measure); the
        rotation adds the ray's turn.
        """
        rot = euler_to_matrix(angles[:, 0], angles[:, 1], angles[:, 2])
        if self.angle_frame == 'apparent':
            # The viewer frame's view axis is -z (geometry.line_of_sight_rotation in
            # the optical frame is the same rotation).
            centre = camera_centre(cams['distance'], cams['focal'], cams['offset'])
            rot = rotation_between(np.array([0.0, 0.0, -1.0]), centre) @ rot
        return rot

    def render_angles(self, angles, cams):
        """Camera-frame (pitch, yaw, roll) of samples at ``angles``, for the renderer."""
        if self.angle_frame == 'camera':
            return np.asarray(angles, float)
        return matrix_to_euler(self.rotations(angles, cams))

    def camera_matrices(self, cams):
        """Pinhole intrinsics ``(n, 3, 3)`` of the drawn cameras (principal point centred)."""
        f = np.asarray(cams['focal'], float)
        k = np.zeros((len(f), 3, 3))
        k[:, 0, 0] = k[:, 1, 1] = f
        k[:, 0, 2], k[:, 1, 2], k[:, 2, 2] = self.size[0] / 2.0, self.size[1] / 2.0, 1.0
        return k

    def project(self, points, angles, cams):
        """Noise-free MediaPipe-like landmarks of head-frame points ``(n, 468, 3)`` at ``angles``.

        x, y: the pinhole image.  z: depth relative to the head origin, in pixels
        at the head's distance, times ``z_scale``: along the optical axis
        (``camera``), or along the ray through the landmarks' centroid, as
        MediaPipe's z is (``apparent``; it reads z from a crop centred on the
        face, in the scale of the face's image, which perspective stretches off
        the optical axis: :func:`nlml_hpe.features.line_of_sight_homography`).
        """
        rot = self.rotations(angles, cams)
        out = project(points, rot, cams['distance'], cams['focal'], self.size, cams['offset'])
        if self.angle_frame == 'apparent':
            f = np.asarray(cams['focal'], float)
            mean = out[:, :, :2].mean(axis=1)
            ray = np.stack([(mean[:, 0] - self.size[0] / 2.0) / f,
                            -(mean[:, 1] - self.size[1] / 2.0) / f, -np.ones(len(f))], 1)
            sight = rotation_between(np.array([0.0, 0.0, -1.0]), ray)
            # Depth along the ray = -z of the head's points in the turned camera.
            local = np.einsum('nji,njk,nlk->nli', sight, rot, points)
            dist = np.linalg.norm(camera_centre(cams['distance'], f, cams['offset']), axis=-1)
            stretch = 1.0 / line_of_sight_homography(out, self.camera_matrices(cams))[1]
            out[..., 2] = -local[..., 2] * (f / dist * stretch)[:, None]
        out[..., 2] *= np.asarray(cams.get('z_scale', self.z_scale))[..., None]
        return out

    def centre(self, landmarks, cams):
        """Landmarks as the model sees them before normalisation.

        ``apparent``: centred on the line of sight with the cameras' intrinsics
        (:func:`nlml_hpe.features.centre_on_line_of_sight`, as at inference);
        ``camera``: unchanged.  Rows with NaN (MediaPipe found nothing) stay NaN.
        """
        lm = np.array(landmarks, dtype=np.float64)
        if self.angle_frame == 'apparent':
            ok = np.all(np.isfinite(lm), axis=(1, 2))
            if ok.any():
                lm[ok] = centre_on_line_of_sight(lm[ok], self.camera_matrices(cams)[ok])
        return lm.astype(np.float32)

    def noise(self, landmarks):
        """Add the configured Gaussian landmark noise (px)."""
        sigma = float(self.cfg.get('noise_px', 0.0))
        if sigma > 0:
            landmarks = landmarks + self.rng.normal(0.0, sigma, landmarks.shape)
        return landmarks.astype(np.float32)


# ---------------------------------------------------------------- MediaPipe's identity response

#: Near-frontal poses (pitch, yaw, roll) at which the identity response is measured:
#: there the image axes are the head's.
RESPONSE_POSES = ((0.0, 0.0, 0.0), (0.0, 15.0, 0.0), (0.0, -15.0, 0.0), (10.0, 0.0, 0.0),
                  (-10.0, 0.0, 0.0))


def measure_identity_response(cfg, source, corr, n_identities=24, seed=0):
    """How much of a face's difference from the mean face MediaPipe reproduces, per axis.

    Renders ``n_identities`` random identities (``faces.identity_scale``, no
    expression) at :data:`RESPONSE_POSES` (focal 700 px, 60 cm, centred), runs
    MediaPipe on each render and projects the same faces.  Per image axis (x, y,
    z = the head's x, y, z at these poses), the response is the least-squares
    slope of MediaPipe's deviation from the identities' mean (normalised
    features) on the projection's.  1 = MediaPipe follows the face's shape
    exactly; MediaPipe's mesh regresses to its own prior, so it is well below
    (z far below).  Returns a dict with ``response`` ``[x, y, z]`` and details.
    """
    from nlml_hpe.features import normalise_landmarks
    from nlml_hpe.landmarks import LandmarkExtractor

    rng = np.random.default_rng(seed)
    scale = float(cfg['faces'].get('identity_scale', 1.0))
    size = tuple(int(v) for v in cfg['landmarks'].get('image_size', (640, 480)))
    projector = Projector({'image_size': size, 'angle_frame': 'apparent', 'z_scale': 1.0},
                          rng)
    cams = {'focal': np.array([700.0]), 'distance': np.array([60.0]),
            'offset': np.zeros((1, 2))}
    renderer = make_renderer(source, cfg['faces'], size)
    mp, proj = [], []
    try:
        with LandmarkExtractor(max_faces=1) as extractor:
            for pose in RESPONSE_POSES:
                ang = np.array([pose])
                rot = projector.rotations(ang, cams)[0]
                rows_mp, rows_proj = [], []
                for _ in range(int(n_identities)):
                    coeffs = rng.normal(0.0, scale, len(source.identity_modes))
                    verts = to_head_frame(source.vertices(coeffs), corr)
                    found = extractor.extract(renderer.render(verts, rot, 60.0, 700.0))
                    if not found:
                        continue
                    pts = landmarks_of(source, corr, coeffs[None])
                    rows_mp.append(projector.centre(found[0][None], cams)[0])
                    rows_proj.append(projector.centre(projector.project(pts, ang, cams),
                                                      cams)[0])
                if len(rows_mp) >= 3:
                    for rows, out in ((rows_mp, mp), (rows_proj, proj)):
                        f = normalise_landmarks(np.array(rows)).reshape(len(rows), 468, 3)
                        out.append(f - f.mean(axis=0))
    finally:
        renderer.release()
    if not mp:
        raise RuntimeError('identity response: MediaPipe found too few rendered faces')
    dm, dp = np.concatenate(mp), np.concatenate(proj)
    slope = (dm * dp).sum(axis=(0, 1)) / (dp * dp).sum(axis=(0, 1))
    corr_xyz = [float(np.corrcoef(dm[..., k].ravel(), dp[..., k].ravel())[0, 1])
                for k in range(3)]
    return {'response': [round(float(v), 3) for v in np.clip(slope, 0.0, 1.0)],
            'correlation': [round(v, 3) for v in corr_xyz], 'faces': int(len(dm)),
            'poses': [list(p) for p in RESPONSE_POSES]}


# ---------------------------------------------------------------- stage

def _uniform_angles(rng, n, grids, margin):
    lo = [g.min() - margin for g in grids]
    hi = [g.max() + margin for g in grids]
    yaw = rng.uniform(lo[0], hi[0], n)
    pitch = rng.uniform(lo[1], hi[1], n)
    roll = rng.uniform(lo[2], hi[2], n)
    return np.stack([pitch, yaw, roll], 1)


class _Sampler:
    """Draws expressions and cameras, projects, and optionally renders."""

    def __init__(self, cfg, source, corr, projector, rng, render, identity_response=None):
        ecfg = cfg['faces'].get('expressions', {}) or {}
        self.max_w, self.n_act = float(ecfg.get('max_weight', 0.0)), int(ecfg.get('n_active', 0))
        self.cfg, self.source, self.corr = cfg, source, corr
        self.projector, self.rng, self.render = projector, rng, render
        self.workers = int(cfg['landmarks'].get('workers', min(2, os.cpu_count() or 1)))
        resp = identity_response
        self.identity_response = None if resp is None else np.asarray(resp, float)
        if resp is not None and (self.identity_response.shape != (3,)
                                 or not np.all(self.identity_response >= 0)):
            raise ValueError(f'landmarks.identity_response must be [x, y, z] >= 0 or auto, '
                             f'got {resp}')

    def draw(self, coeffs, angles):
        """Draw samples of identities ``coeffs`` (n, K) at ``angles`` (n, 3): dict of arrays."""
        n = len(coeffs)
        expr = sample_expressions(self.source, n, self.rng, self.max_w, self.n_act)
        cams = self.projector.cameras(n)
        pts = landmarks_of(self.source, self.corr, coeffs, expr)
        if self.identity_response is not None:
            # MediaPipe reproduces only part of how a face differs from the mean
            # face (its mesh regresses to its own prior): scale that part per
            # head axis (x, y, z) in projected samples.
            base = landmarks_of(self.source, self.corr, np.zeros_like(coeffs), expr)
            pts = base + (pts - base) * self.identity_response
        proj = self.projector.project(pts, angles, cams)
        return {'coeffs': coeffs, 'expr': expr, 'angles': angles, 'cams': cams, 'proj': proj}

    @staticmethod
    def merge(samples):
        """Concatenate the dicts of :meth:`draw` into one."""
        merged = {k: np.concatenate([s[k] for s in samples]) for k in
                  ('coeffs', 'expr', 'angles', 'proj')}
        merged['cams'] = {k: np.concatenate([s['cams'][k] for s in samples])
                          for k in samples[0]['cams']}
        return merged

    def mediapipe(self, s, desc):
        return render_mediapipe(self.cfg['faces'], self.corr, self.projector.size, s['coeffs'],
                                s['expr'], self.projector.render_angles(s['angles'], s['cams']),
                                s['cams'], self.workers, desc=desc)

    def finish(self, s, desc):
        """Return the final landmarks (n, 468, 3) float32 and the ``rendered`` mask.

        The landmarks are what the model sees (:meth:`Projector.centre`).
        """
        lm = self.projector.noise(s['proj'])
        rendered = np.zeros(len(lm), bool)
        if self.render:
            mp = self.mediapipe(s, desc)
            rendered = np.all(np.isfinite(mp), axis=(1, 2))
            lm[rendered] = mp[rendered]
        return self.projector.centre(lm, s['cams']), rendered


def _identity_response(cfg, source, corr, timings):
    """``landmarks.identity_response`` (measured when ``auto``) and the measurement."""
    response = cfg['landmarks'].get('identity_response')
    if response != 'auto':
        return response, None
    ok, why = renderer_available()
    if not ok:
        raise ValueError(f'landmarks.identity_response: auto measures it on renders, and '
                         f'there is no renderer here ({why}); give [x, y, z] instead')
    t = time.time()
    measured = measure_identity_response(cfg, source, corr, seed=int(cfg.get('seed', 0)))
    timings['identity_response_s'] = round(time.time() - t, 2)
    return measured['response'], measured


def _grid(sampler, train, grid_angles, shape):
    """Sample every training identity at every grid pose.

    Returns ``(grid (I, Y, P, R, 468, 3), grid_rendered (I, Y, P, R), samples)``.
    """
    samples = [sampler.draw(np.repeat(c[None], len(grid_angles), 0), grid_angles)
               for c in tqdm(train, desc='landmarks: grid', unit='identity')]
    grid = np.zeros((len(train), *shape, 468, 3), np.float32)
    grid_rendered = np.zeros((len(train), *shape), bool)
    if sampler.render:
        lm, rendered = sampler.finish(sampler.merge(samples), 'landmarks: grid renders')
        grid[:] = lm.reshape(grid.shape)
        grid_rendered[:] = rendered.reshape(grid_rendered.shape)
    else:
        for i, s in enumerate(samples):
            grid[i] = sampler.finish(s, '')[0].reshape(grid.shape[1:])
    return grid, grid_rendered, samples


def _continuous(sampler, rng, coeff_set, per_identity, grids, margin, desc):
    """Sample ``per_identity`` uniform poses of each identity of ``coeff_set``.

    Returns ``(landmarks, angles, identity index, rendered)``.
    """
    if per_identity <= 0 or len(coeff_set) == 0:
        return (np.zeros((0, 468, 3), np.float32), np.zeros((0, 3), np.float32),
                np.zeros(0, np.int64), np.zeros(0, bool))
    ids = np.repeat(np.arange(len(coeff_set)), per_identity)
    ang = _uniform_angles(rng, len(ids), grids, margin)
    lm, rendered = sampler.finish(sampler.draw(coeff_set[ids], ang), desc)
    return lm, ang.astype(np.float32), ids, rendered


def _check_or_skip(sampler, lcfg, samples, grid_rendered, grid_angles, out_dir):
    """Run the check on ``check_identities`` identities if there is a renderer."""
    n_check = min(int(lcfg.get('check_identities', 0)), len(samples))
    if n_check <= 0:
        return None
    ok, why = renderer_available()
    if not ok:
        return {'skipped': why}
    return check_renders(sampler, samples[:n_check], grid_rendered[:n_check], grid_angles,
                         out_dir)


def run(cfg, out_dir, inputs):
    """Stage entry point: write ``landmarks.npz`` and the report."""
    t0 = time.time()
    lcfg = cfg.setdefault('landmarks', {})
    mode = lcfg.get('mode', 'projection')
    if mode not in ('projection', 'render', 'mixed'):
        raise ValueError(f'landmarks.mode {mode!r} unknown (known: projection, render, mixed)')
    rng = np.random.default_rng(int(cfg.get('seed', 0)) + 3)
    source = load_source(cfg['faces'])
    faces = load_faces(inputs['faces'])
    corr = load_correspondence(inputs['correspondence'])
    grids = yaw_g, pitch_g, roll_g = tuple(grid_values(cfg['grid'][k])
                                           for k in ('yaw', 'pitch', 'roll'))
    yy, pp, rr = np.meshgrid(yaw_g, pitch_g, roll_g, indexing='ij')
    grid_angles = np.stack([pp.ravel(), yy.ravel(), rr.ravel()], 1)    # (pitch, yaw, roll)
    projector = Projector(lcfg, rng, float(corr.get('z_scale', 1.0)))
    timings = {}
    response, measured = _identity_response(cfg, source, corr, timings)
    sampler = _Sampler(cfg, source, corr, projector, rng, mode != 'projection', response)
    train, test = faces['train_coeffs'], faces['test_coeffs']
    t = time.time()
    grid, grid_rendered, samples = _grid(sampler, train, grid_angles, yy.shape)
    timings['grid_s'] = round(time.time() - t, 2)
    t = time.time()
    margin = float(lcfg.get('margin_deg', 0.0))
    extra = _continuous(sampler, rng, train, int(lcfg.get('extra_per_identity', 0)), grids,
                        margin, 'landmarks: extra')
    test_set = _continuous(sampler, rng, test, int(lcfg.get('test_per_identity', 0)), grids,
                           margin, 'landmarks: test')
    timings['continuous_s'] = round(time.time() - t, 2)
    if not np.all(np.isfinite(grid)):
        raise RuntimeError('landmark grid has non-finite values')
    np.savez(out_dir / 'landmarks.npz', yaw_grid=yaw_g, pitch_grid=pitch_g, roll_grid=roll_g,
             grid=grid, extra_landmarks=extra[0], extra_angles=extra[1],
             extra_identity=extra[2], test_landmarks=test_set[0], test_angles=test_set[1],
             test_identity=test_set[2], grid_rendered=grid_rendered,
             extra_rendered=extra[3], test_rendered=test_set[3], mode=np.array(mode),
             z_scale=np.array(projector.z_scale), angle_frame=np.array(projector.angle_frame))
    t = time.time()
    check = _check_or_skip(sampler, lcfg, samples, grid_rendered, grid_angles, out_dir)
    timings['check_s'] = round(time.time() - t, 2)
    plot_examples(grid, yaw_g, pitch_g, roll_g, out_dir / 'examples.png')
    summary = {'mode': mode, 'grid_shape': list(grid.shape[:4]),
               'grid_complete': bool(np.all(np.isfinite(grid))),
               'grid_rendered_fraction': round(float(grid_rendered.mean()), 4),
               'n_extra': int(len(extra[0])), 'n_test': int(len(test_set[0])),
               'z_scale': round(projector.z_scale, 4), 'angle_frame': projector.angle_frame,
               'identity_response': None if response is None else [float(v) for v in response],
               'identity_response_measured': measured,
               **timings,
               'check': {k: v for k, v in (check or {}).items() if not k.startswith('_')},
               'seconds': round(time.time() - t0, 2)}
    write_report(out_dir, lcfg, summary, check, yaw_g, pitch_g, roll_g)
    return summary
