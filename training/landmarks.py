"""Stage 3 -- landmarks: MediaPipe-like landmarks of every identity at every pose.

Mode ``projection``: the 468 corresponded points of each synthetic face (stage 2)
are rotated with :func:`nlml_hpe.geometry.euler_to_matrix` and projected with a
pinhole camera whose focal length, distance and image position are drawn per
sample.  The output imitates what :func:`nlml_hpe.features.to_pixel_coords` gives
for MediaPipe: ``x, y`` in pixels and ``z`` = depth relative to the head centre,
in pixels at the head's distance (MediaPipe's z "uses roughly the same scale as
x"; ``landmarks.z_scale`` adjusts it), smaller = closer to the camera.

Artifact ``landmarks/landmarks.npz`` (the contract with stages 4-8):

* ``yaw_grid``, ``pitch_grid``, ``roll_grid`` -- degrees
* ``grid`` float32 ``(I, Y, P, R, 468, 3)`` -- complete: one sample per identity and pose
* ``extra_landmarks`` ``(M, 468, 3)``, ``extra_angles`` ``(M, 3)`` (pitch, yaw, roll),
  ``extra_identity`` ``(M,)`` -- training identities at continuous poses
* ``test_landmarks``, ``test_angles``, ``test_identity`` -- held-out identities
"""

import time

import numpy as np
from tqdm import tqdm

from nlml_hpe.geometry import euler_to_matrix

from .correspondence import landmarks_of, load_correspondence
from .faces import load_faces, load_source, sample_expressions


def grid_values(spec):
    """Inclusive ``[start, stop, step]`` degrees -> array."""
    start, stop, step = (float(v) for v in spec)
    if step <= 0 or stop < start:
        raise ValueError(f'bad grid spec {spec}: need start <= stop and step > 0')
    return np.arange(start, stop + step / 2, step)


def project(points, pitch, yaw, roll, *, focal, distance, image_size, offset_px=(0.0, 0.0),
            z_scale=1.0):
    """Project head-frame points ``(N, 468, 3)`` (cm) to MediaPipe-like pixel coordinates.

    ``pitch, yaw, roll, focal, distance`` are ``(N,)`` arrays (degrees, px, cm);
    ``offset_px`` ``(N, 2)`` shifts the head's image position from the centre.
    Returns ``(N, 468, 3)``: x px, y px (down), z px-scale (smaller = closer).
    """
    width, height = image_size
    rot = euler_to_matrix(pitch, yaw, roll)                     # head -> viewer
    focal = np.asarray(focal, float)[:, None]
    distance = np.asarray(distance, float)[:, None]
    offset = np.broadcast_to(np.asarray(offset_px, float), (len(points), 2))
    # Put the head centre on the ray through the requested image point.
    cx, cy = width / 2.0 + offset[:, 0:1], height / 2.0 + offset[:, 1:2]
    centre_x = (cx - width / 2.0) * distance / focal
    centre_y = -(cy - height / 2.0) * distance / focal
    view = np.einsum('nij,nkj->nki', rot, points)
    x = view[..., 0] + centre_x
    y = view[..., 1] + centre_y
    depth = distance - view[..., 2]                              # camera depth (cm)
    u = width / 2.0 + focal * x / depth
    v = height / 2.0 - focal * y / depth
    z = z_scale * (depth - distance) * focal / distance
    return np.stack([u, v, z], axis=-1)


class Projector:
    """Draws camera parameters and projects faces for one config."""

    def __init__(self, lcfg, rng):
        self.cfg = lcfg
        self.rng = rng
        self.size = tuple(int(v) for v in lcfg.get('image_size', (640, 480)))

    def __call__(self, points, angles):
        n = len(points)
        rng, c = self.rng, self.cfg
        focal = rng.uniform(*c.get('focal_px', (500, 900)), n)
        distance = rng.uniform(*c.get('distance_cm', (45, 120)), n)
        frac = float(c.get('offset_frac', 0.2))
        offset = np.stack([rng.uniform(-frac, frac, n) * self.size[0],
                           rng.uniform(-frac, frac, n) * self.size[1]], 1)
        lm = project(points, angles[:, 0], angles[:, 1], angles[:, 2], focal=focal,
                     distance=distance, image_size=self.size, offset_px=offset,
                     z_scale=float(c.get('z_scale', 1.0)))
        noise = float(c.get('noise_px', 0.0))
        if noise > 0:
            lm = lm + rng.normal(0.0, noise, lm.shape)
        return lm.astype(np.float32)


def _uniform_angles(rng, n, grids, margin):
    lo = [g.min() - margin for g in grids]
    hi = [g.max() + margin for g in grids]
    yaw = rng.uniform(lo[0], hi[0], n)
    pitch = rng.uniform(lo[1], hi[1], n)
    roll = rng.uniform(lo[2], hi[2], n)
    return np.stack([pitch, yaw, roll], 1)


def run(cfg, out_dir, inputs):
    """Stage entry point: write ``landmarks.npz`` and the report."""
    t0 = time.time()
    lcfg = cfg.get('landmarks', {})
    mode = lcfg.get('mode', 'projection')
    if mode != 'projection':
        raise ValueError(f'landmarks.mode {mode!r} is not available (known: projection)')
    rng = np.random.default_rng(int(cfg.get('seed', 0)) + 3)
    source = load_source(cfg['faces'])
    faces = load_faces(inputs['faces'])
    corr = load_correspondence(inputs['correspondence'])
    ecfg = cfg['faces'].get('expressions', {}) or {}
    max_w, n_act = float(ecfg.get('max_weight', 0.0)), int(ecfg.get('n_active', 0))
    yaw_g, pitch_g, roll_g = (grid_values(cfg['grid'][k]) for k in ('yaw', 'pitch', 'roll'))
    ny, np_, nr = len(yaw_g), len(pitch_g), len(roll_g)
    yy, pp, rr = np.meshgrid(yaw_g, pitch_g, roll_g, indexing='ij')
    grid_angles = np.stack([pp.ravel(), yy.ravel(), rr.ravel()], 1)    # (pitch, yaw, roll)
    projector = Projector(lcfg, rng)
    train, test = faces['train_coeffs'], faces['test_coeffs']

    def faces_for(coeffs, n):
        expr = sample_expressions(source, n, rng, max_w, n_act)
        return landmarks_of(source, corr, np.repeat(coeffs[None], n, 0), expr)

    grid = np.zeros((len(train), ny, np_, nr, 468, 3), np.float32)
    for i, coeffs in enumerate(tqdm(train, desc='landmarks: grid', unit='identity')):
        pts = faces_for(coeffs, len(grid_angles))
        grid[i] = projector(pts, grid_angles).reshape(ny, np_, nr, 468, 3)

    margin = float(lcfg.get('margin_deg', 0.0))
    grids = (yaw_g, pitch_g, roll_g)

    def continuous(coeff_set, per_identity, desc):
        lms, angs, ids = [], [], []
        for i, coeffs in enumerate(tqdm(coeff_set, desc=desc, unit='identity')):
            ang = _uniform_angles(rng, per_identity, grids, margin)
            lms.append(projector(faces_for(coeffs, per_identity), ang))
            angs.append(ang)
            ids.append(np.full(per_identity, i))
        if not lms:
            return np.zeros((0, 468, 3), np.float32), np.zeros((0, 3)), np.zeros(0, int)
        return np.concatenate(lms), np.concatenate(angs), np.concatenate(ids)

    extra = continuous(train, int(lcfg.get('extra_per_identity', 0)), 'landmarks: extra')
    test_set = continuous(test, int(lcfg.get('test_per_identity', 0)), 'landmarks: test')
    np.savez(out_dir / 'landmarks.npz', yaw_grid=yaw_g, pitch_grid=pitch_g, roll_grid=roll_g,
             grid=grid, extra_landmarks=extra[0], extra_angles=extra[1].astype(np.float32),
             extra_identity=extra[2], test_landmarks=test_set[0],
             test_angles=test_set[1].astype(np.float32), test_identity=test_set[2],
             mode=np.array(mode))
    _plot_examples(grid, yaw_g, pitch_g, roll_g, out_dir / 'examples.png')
    summary = {'mode': mode, 'grid_shape': list(grid.shape[:4]),
               'grid_complete': bool(np.all(np.isfinite(grid))),
               'n_extra': int(len(extra[0])), 'n_test': int(len(test_set[0])),
               'seconds': round(time.time() - t0, 2)}
    (out_dir / 'report.md').write_text(
        '# landmarks\n\n'
        f'mode: {mode} (correspondence + pinhole projection; focal '
        f'{lcfg.get("focal_px")} px, distance {lcfg.get("distance_cm")} cm, '
        f'noise {lcfg.get("noise_px", 0.0)} px, z_scale {lcfg.get("z_scale", 1.0)})\n\n'
        + '\n'.join(f'- {k}: {v}' for k, v in summary.items())
        + '\n\n![examples](examples.png)\n')
    return summary


def _plot_examples(grid, yaw_g, pitch_g, roll_g, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    picks = [(len(yaw_g) // 2, len(pitch_g) // 2, len(roll_g) // 2), (0, len(pitch_g) // 2, 0),
             (len(yaw_g) - 1, 0, len(roll_g) - 1), (len(yaw_g) // 2, len(pitch_g) - 1,
                                                    len(roll_g) // 2)]
    fig, axes = plt.subplots(1, len(picks), figsize=(3 * len(picks), 3.2))
    for ax, (y, p, r) in zip(axes, picks):
        lm = grid[0, y, p, r]
        ax.scatter(lm[:, 0], lm[:, 1], s=2, c=lm[:, 2], cmap='viridis')
        ax.invert_yaxis()
        ax.set_aspect('equal')
        ax.set_title(f'yaw {yaw_g[y]:.0f} pitch {pitch_g[p]:.0f} roll {roll_g[r]:.0f}',
                     fontsize=8)
        ax.axis('off')
    fig.savefig(path, dpi=90, bbox_inches='tight')
    plt.close(fig)
