"""Stage 2 -- correspondence: where MediaPipe's 468 landmarks sit on the face model.

Method ``canonical`` (default, no rendering): MediaPipe's own canonical face
(its 468-vertex topology, Apache-2.0) is aligned to the model's mean face by
similarity ICP restricted to the facial region, then every canonical vertex is
snapped to the closest point on the model's surface and stored as a triangle plus
barycentric coordinates.  The alignment also fixes the *head frame* of the
synthetic faces: they are expressed in the canonical face's frame, the frame the
MediaPipe + solvePnP baseline uses, so "zero pose" means the same thing for both.

Artifact ``correspondence/correspondence.npz``: ``tri_vertices`` (468, 3) vertex
ids, ``bary`` (468, 3), ``rotation``/``translation`` (model frame -> canonical
frame, rigid), ``scale`` (the fitted similarity scale, reported only) and the
per-landmark snapping distance.  The report states the residuals.
"""

from pathlib import Path
import time

import numpy as np
from scipy.spatial import cKDTree

from .faces import load_source

#: ICT-FaceKit's facial skin region (the eyeballs, mouth socket, teeth and head
#: back are excluded from the snapping target).
ICT_FACE_VERTICES = 9409
REPO = Path(__file__).resolve().parents[1]


def load_canonical_obj(path):
    """Read the 468 vertices of MediaPipe's ``canonical_face_model.obj`` (cm)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'MediaPipe canonical face not found: {path}')
    verts = [[float(t) for t in line.split()[1:4]]
             for line in path.read_text().splitlines() if line.startswith('v ')]
    verts = np.asarray(verts, dtype=np.float64)
    if verts.shape != (468, 3):
        raise ValueError(f'{path}: expected 468 vertices, found {len(verts)}')
    return verts


def umeyama(src, dst, with_scale=True):
    """Similarity ``(s, R, t)`` minimising ``|s R src + t - dst|``."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ d @ vt
    scale = (sig * np.diag(d)).sum() / a.var(0).sum() if with_scale else 1.0
    return scale, rot, mu_d - scale * rot @ mu_s


def closest_points_on_triangles(points, verts, tris, k=24):
    """Closest surface point of each point: ``(triangle index, barycentric, distance)``."""
    centroids = verts[tris].mean(1)
    tree = cKDTree(centroids)
    _, cand = tree.query(points, k=k)
    best_tri = np.zeros(len(points), np.int64)
    best_bary = np.zeros((len(points), 3))
    best_dist = np.full(len(points), np.inf)
    for j in range(k):
        tri = tris[cand[:, j]]
        bary, dist = _closest_on_triangle(points, verts[tri[:, 0]], verts[tri[:, 1]],
                                          verts[tri[:, 2]])
        better = dist < best_dist
        best_tri[better] = cand[better, j]
        best_bary[better] = bary[better]
        best_dist[better] = dist[better]
    return best_tri, best_bary, best_dist


def _closest_on_triangle(p, a, b, c):
    """Vectorised closest point on triangles (a, b, c); returns barycentrics and distance."""
    ab, ac, ap = b - a, c - a, p - a
    d00 = np.einsum('ij,ij->i', ab, ab)
    d01 = np.einsum('ij,ij->i', ab, ac)
    d11 = np.einsum('ij,ij->i', ac, ac)
    d20 = np.einsum('ij,ij->i', ap, ab)
    d21 = np.einsum('ij,ij->i', ap, ac)
    denom = np.maximum(d00 * d11 - d01 * d01, 1e-18)
    v = (d11 * d20 - d01 * d21) / denom
    w = (d00 * d21 - d01 * d20) / denom
    bary = np.stack([1 - v - w, v, w], 1)
    # Outside the triangle: clamp to the best of the three edges.
    inside = np.all(bary >= 0, 1)
    if not np.all(inside):
        cands = []
        for (e0, e1, i0, i1) in ((a, b, 0, 1), (b, c, 1, 2), (a, c, 0, 2)):
            seg = e1 - e0
            t = np.clip(np.einsum('ij,ij->i', p - e0, seg) /
                        np.maximum(np.einsum('ij,ij->i', seg, seg), 1e-18), 0, 1)
            bb = np.zeros_like(bary)
            bb[:, i0], bb[:, i1] = 1 - t, t
            cands.append(bb)
        pts = [bb[:, :1] * a + bb[:, 1:2] * b + bb[:, 2:] * c for bb in cands]
        dists = np.stack([np.linalg.norm(p - q, axis=1) for q in pts], 1)
        pick = np.argmin(dists, 1)
        edge_bary = np.stack(cands, 1)[np.arange(len(p)), pick]
        bary = np.where(inside[:, None], bary, edge_bary)
    proj = bary[:, :1] * a + bary[:, 1:2] * b + bary[:, 2:] * c
    return bary, np.linalg.norm(p - proj, axis=1)


def fit_canonical(canonical, verts, tris, n_iter=40):
    """Similarity-ICP of the canonical face onto the mesh, then snap; return a dict."""
    target = verts
    tree = cKDTree(target)
    # Initial guess: same axes and units; align the nose tips (canonical landmark 1
    # and the most protruding model vertex), then refine.
    nose_model = target[np.argmax(target[:, 2] - 0.05 * np.abs(target[:, 0]))]
    scale, rot, trans = 1.0, np.eye(3), nose_model - canonical[1]
    for _ in range(n_iter):
        moved = scale * canonical @ rot.T + trans
        _, nn = tree.query(moved)
        scale, rot, trans = umeyama(canonical, target[nn])
    moved = scale * canonical @ rot.T + trans
    tri, bary, dist = closest_points_on_triangles(moved, verts, tris)
    return {'scale': scale, 'rotation': rot, 'translation': trans, 'tri': tri, 'bary': bary,
            'distance': dist}


def load_correspondence(out_dir):
    """Read ``correspondence.npz`` as a dict of arrays."""
    with np.load(Path(out_dir) / 'correspondence.npz', allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def landmarks_of(source, corr, identity_coeffs, expression_weights=None):
    """468 landmark positions ``(N, 468, 3)`` in the canonical head frame (cm).

    ``identity_coeffs`` ``(N, K)``; ``expression_weights`` ``(N, E)`` or None.
    """
    ids = corr['tri_vertices']
    bary = corr['bary']
    flat = ids.ravel()
    neutral = source.neutral[flat]
    id_modes = source.identity_modes[:, flat]
    verts = neutral[None] + np.tensordot(identity_coeffs, id_modes, 1)
    if expression_weights is not None and len(source.expression_modes):
        verts = verts + np.tensordot(expression_weights, source.expression_modes[:, flat], 1)
    verts = verts.reshape(len(identity_coeffs), 468, 3, 3)
    pts = np.einsum('nlkd,lk->nld', verts, bary)
    # model frame -> canonical frame (rigid; the model's own scale is kept)
    return (pts - corr['translation']) @ corr['rotation']


def run(cfg, out_dir, inputs):
    """Stage entry point: build the ICT <-> MediaPipe correspondence."""
    t0 = time.time()
    ccfg = cfg.get('correspondence', {})
    method = ccfg.get('method', 'canonical')
    if method != 'canonical':
        raise ValueError(f'unknown correspondence method {method!r} (known: canonical)')
    source = load_source(cfg['faces'])
    obj = Path(ccfg.get('canonical_obj', Path(cfg['faces']['path']).parents[1]
                        / 'mediapipe_canonical' / 'canonical_face_model.obj'))
    canonical = load_canonical_obj(obj if obj.is_absolute() else REPO / obj)
    face_vertices = int(ccfg.get('face_vertices', ICT_FACE_VERTICES if source.name == 'ict'
                                 else len(source.neutral)))
    tris = source.triangles[np.all(source.triangles < face_vertices, axis=1)]
    fit = fit_canonical(canonical, source.neutral, tris)
    tri_vertices = tris[fit['tri']]
    np.savez(out_dir / 'correspondence.npz', tri_vertices=tri_vertices, bary=fit['bary'],
             rotation=fit['rotation'], translation=fit['translation'],
             scale=np.array(fit['scale']), distance_cm=fit['distance'], method=np.array(method))
    corr = load_correspondence(out_dir)
    neutral_lm = landmarks_of(source, corr, np.zeros((1, len(source.identity_modes))))[0]
    rms_shape = float(np.sqrt(np.mean(np.sum((neutral_lm - neutral_lm.mean(0)
                                              - (canonical - canonical.mean(0))) ** 2, 1))))
    _plot(canonical, neutral_lm, out_dir / 'correspondence.png')
    summary = {
        'method': method, 'icp_scale': round(float(fit['scale']), 4),
        'snap_distance_cm_mean': round(float(fit['distance'].mean()), 3),
        'snap_distance_cm_max': round(float(fit['distance'].max()), 3),
        'neutral_vs_canonical_rms_cm': round(rms_shape, 3),
        'seconds': round(time.time() - t0, 2)}
    (out_dir / 'report.md').write_text(
        '# correspondence\n\nMediaPipe canonical face (468 vertices) aligned to the model mean '
        'face by similarity ICP, then snapped to the surface.\n\n'
        + '\n'.join(f'- {k}: {v}' for k, v in summary.items())
        + '\n\n![canonical vs model landmarks](correspondence.png)\n')
    return summary


def _plot(canonical, model_lm, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.5))
    for ax, (i, j, name) in zip(axes, ((0, 1, 'front (x, y)'), (2, 1, 'side (z, y)'))):
        cx, cy = canonical[:, i], canonical[:, j]
        ax.scatter(cx - cx.mean(), cy - cy.mean(), s=3, label='MediaPipe canonical')
        ax.scatter(model_lm[:, i] - model_lm[:, i].mean(), model_lm[:, j] - model_lm[:, j].mean(),
                   s=3, label='model landmarks (neutral)')
        ax.set_aspect('equal')
        ax.set_title(name)
    axes[0].legend(fontsize=7)
    fig.savefig(path, dpi=90, bbox_inches='tight')
    plt.close(fig)
