"""Stage 2 -- correspondence: where MediaPipe's 468 landmarks sit on the face model.

Methods (``correspondence.method``):

* ``mediapipe`` -- measured from MediaPipe's own output: several identities are
  rendered (:mod:`training.render`) frontally and slightly rotated, MediaPipe Face
  Mesh runs on each render, and every landmark is cast back onto the mesh (the
  renderer's per-pixel surface-point buffer = a ray cast), snapped to the face
  surface of that identity (triangle + barycentric coordinates) and carried to the
  mean face through the common topology.  The per-landmark median over all views
  and identities, made left-right symmetric with MediaPipe's own mirror pairing
  (``symmetrise``, default for ICT, see :func:`symmetrise`), is the
  correspondence; the spread is reported.  The same renders
  calibrate MediaPipe's z: the slope of MediaPipe ``z * W`` against the projected
  camera depth (px at the head's distance) is stored as ``z_scale``.
* ``shipped`` (default) -- the ``mediapipe`` result stored in
  ``training/data/ict_mediapipe_correspondence.npz`` (ICT-FaceKit topology), so a
  pipeline run needs no rendering.
* ``canonical`` -- no MediaPipe run: MediaPipe's canonical face (its 468-vertex
  topology) is aligned to the mean face by similarity ICP and snapped to the
  surface (a first approximation; MediaPipe's real output differs, e.g. its
  landmark 1 sits below the model's nose tip).

In every method the *head frame* of the synthetic faces is the canonical face's
frame (a rigid fit of the 468 model points to MediaPipe's canonical face), the
frame the MediaPipe + solvePnP baseline uses, so "zero pose" means the same for
both.

Artifact ``correspondence/correspondence.npz``: ``tri_vertices`` (468, 3) vertex
ids, ``bary`` (468, 3), ``rotation``/``translation`` (model frame -> head frame,
rigid: ``head = (model - translation) @ rotation``), ``scale`` (fitted similarity
scale, reported only), ``distance_cm`` (per-landmark snapping distance or
spread), ``z_scale``, ``method`` and ``diagnostics`` (JSON of the measurement).
"""

import json
from pathlib import Path
import time

import numpy as np
from scipy.spatial import cKDTree

from .faces import load_source
from .render import make_renderer, project

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


def face_model_available(inputs):
    """Return whether stages 1-2 wrote their artifacts (not so under ``--landmarks``)."""
    return ((Path(inputs['faces']) / 'faces.npz').is_file() and
            (Path(inputs['correspondence']) / 'correspondence.npz').is_file())


def to_head_frame(model_points, corr):
    """Model-frame points (cm) -> the synthetic head frame (canonical face frame)."""
    return (np.asarray(model_points) - corr['translation']) @ corr['rotation']


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
    return to_head_frame(pts, corr)


def sample_surface(buffer, points_px):
    """Bilinearly sample an ``(H, W, 3)`` surface-point buffer at ``(N, 2)`` pixel positions.

    Pixel centres are at ``i + 0.5``.  Where a bilinear neighbour is background
    (NaN) the nearest valid neighbour is used; NaN rows mean no surface there.
    """
    h, w = buffer.shape[:2]
    u = np.asarray(points_px, float)[:, 0] - 0.5
    v = np.asarray(points_px, float)[:, 1] - 0.5
    x0 = np.clip(np.floor(u).astype(int), 0, w - 2)
    y0 = np.clip(np.floor(v).astype(int), 0, h - 2)
    fx = np.clip(u - x0, 0, 1)[:, None]
    fy = np.clip(v - y0, 0, 1)[:, None]
    q = [buffer[y0, x0], buffer[y0, x0 + 1], buffer[y0 + 1, x0], buffer[y0 + 1, x0 + 1]]
    wts = [(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy]
    out = sum(wq * qq for wq, qq in zip(wts, q))
    bad = ~np.all(np.isfinite(out), 1)
    if np.any(bad):
        stack = np.stack(q, 1)[bad]                             # (B, 4, 3)
        weight = np.concatenate(wts, 1)[bad]                    # (B, 4)
        weight[~np.all(np.isfinite(stack), 2)] = -1
        pick = np.argmax(weight, 1)
        chosen = stack[np.arange(len(pick)), pick]
        chosen[weight[np.arange(len(pick)), pick] < 0] = np.nan
        out[bad] = chosen
    return out


def _observe(source, coeffs, views, frame, tris, cfg_faces, camera):
    """Render each identity at each view, read it, cast every landmark onto the mesh.

    ``camera`` is ``(size, focal, distance)``.  Returns ``(obs, records)``:
    the landmarks carried to the neutral mesh ``(n_obs, 468, 3)`` (NaN where a
    landmark missed the surface) and per render a record (None: no face).
    """
    from nlml_hpe.geometry import euler_to_matrix
    from nlml_hpe.landmarks import LandmarkExtractor

    size, focal, distance = camera
    renderer = make_renderer(source, cfg_faces, size)
    obs, records = [], []          # neutral-mesh points per observation; per-view records
    with LandmarkExtractor(max_faces=1) as extractor:
        for c in coeffs:
            verts = source.vertices(c)
            head = to_head_frame(verts, frame)
            for pitch, yaw, roll in views:
                rot = euler_to_matrix(pitch, yaw, roll)
                rgb, surf = renderer.render(head, rot, distance, focal, return_head=True)
                found = extractor.extract(rgb)
                if not found:
                    records.append(None)
                    continue
                lm = found[0]
                hit = sample_surface(surf, lm[:, :2])
                ok = np.all(np.isfinite(hit), 1)
                model_pts = hit @ frame['rotation'].T + frame['translation']
                pts = np.where(ok[:, None], model_pts, 0.0)
                tri, bary, _ = closest_points_on_triangles(pts, verts, tris)
                on_neutral = np.einsum('lkd,lk->ld', source.neutral[tris[tri]], bary)
                on_neutral[~ok] = np.nan
                obs.append(on_neutral)
                records.append({'coeffs': c, 'rot': rot, 'lm': lm, 'hit': hit, 'ok': ok})
    renderer.release()
    if not obs:
        raise RuntimeError('MediaPipe found no face in any correspondence render')
    return np.stack(obs), records


def _z_calibration(source, corr, records, frame, camera):
    """MediaPipe's z against the correspondence projected, and the 2D agreement.

    Returns ``(z_scale, z_rms, err2d (n, 468), zs)``: the slope of MediaPipe's z
    on the projected depth, its residual, the per-landmark 2D distance (px)
    and MediaPipe's centred z.
    """
    size, focal, distance = camera
    zs, zp, err2d = [], [], []
    for rec in records:
        if rec is None:
            continue
        pts = landmarks_of(source, corr, rec['coeffs'][None])[0]
        # The renders used the initial frame: project the points in that frame.
        pts_init = to_head_frame(pts @ corr['rotation'].T + corr['translation'], frame)
        proj = project(pts_init, rec['rot'], distance, focal, size)
        err2d.append(np.linalg.norm(proj[:, :2] - rec['lm'][:, :2], axis=1))
        zs.append(rec['lm'][:, 2] - rec['lm'][:, 2].mean())
        zp.append(proj[:, 2] - proj[:, 2].mean())
    zs, zp = np.concatenate(zs), np.concatenate(zp)
    z_scale = float(zs @ zp / (zp @ zp))
    z_rms = float(np.sqrt(np.mean((zs - z_scale * zp) ** 2)))
    return z_scale, z_rms, np.stack(err2d), zs


def mediapipe_correspondence(source, canonical, tris, cfg_faces, ccfg, rng):
    """Measure the correspondence from MediaPipe run on renders (see module docstring).

    Returns ``(fit dict, z_scale, diagnostics dict)``; ``fit`` has the artifact fields.
    """
    camera = (tuple(int(v) for v in ccfg.get('image_size', (640, 480))),
              float(ccfg.get('focal_px', 800.0)), float(ccfg.get('distance_cm', 55.0)))
    views = [tuple(float(a) for a in v) for v in ccfg.get(
        'views', [[0, 0, 0], [0, 15, 0], [0, -15, 0], [10, 0, 0], [-10, 0, 0],
                  [0, 0, 15], [8, 10, -8]])]
    n_ids = int(ccfg.get('n_identities', 8))
    k = len(source.identity_modes)
    coeffs = np.vstack([np.zeros((1, k)), rng.normal(0.0, 1.0, (max(n_ids - 1, 0), k))])
    init = fit_canonical(canonical, source.neutral, tris)
    frame = {'rotation': init['rotation'], 'translation': init['translation']}
    obs, records = _observe(source, coeffs, views, frame, tris, cfg_faces, camera)
    median = np.nanmedian(obs, 0)
    if not np.all(np.isfinite(median)):
        raise RuntimeError('some landmarks were never seen on the mesh surface')
    spread = np.sqrt(np.nanmean(np.sum((obs - median) ** 2, 2), 0))
    if ccfg.get('symmetrise', source.name == 'ict'):
        median = symmetrise(median, canonical)
    tri, bary, snap = closest_points_on_triangles(median, source.neutral, tris)
    neutral_pts = np.einsum('lkd,lk->ld', source.neutral[tris[tri]], bary)
    scale, rot_c, trans_c = umeyama(canonical, neutral_pts)
    if ccfg.get('pnp_frame', False):
        rot_c = rot_c @ pnp_frame_correction(
            source, {'tri_vertices': tris[tri], 'bary': bary, 'rotation': rot_c,
                     'translation': trans_c}, canonical, coeffs)
    fit = {'scale': scale, 'rotation': rot_c, 'translation': trans_c, 'tri': tri,
           'bary': bary, 'distance': spread}
    # z calibration and 2D agreement: MediaPipe vs. the final correspondence projected.
    corr = {'tri_vertices': tris[tri], 'bary': bary, 'rotation': rot_c,
            'translation': trans_c}
    z_scale, z_rms, err2d, zs = _z_calibration(source, corr, records, frame, camera)
    diag = {
        'renders': len(records), 'detected': int(len(obs)),
        'spread_cm_mean': round(float(spread.mean()), 3),
        'spread_cm_max': round(float(spread.max()), 3),
        'snap_cm_max': round(float(snap.max()), 3),
        'reprojection_px_mean': round(float(err2d.mean()), 3),
        'reprojection_px_median': round(float(np.median(err2d)), 3),
        'z_scale': round(z_scale, 4), 'z_residual_px_rms': round(z_rms, 3),
        'z_mediapipe_px_std': round(float(zs.std()), 3),
        'neutral_points_cm': neutral_pts}
    return fit, z_scale, diag


def mirror_pairs(canonical):
    """Index of each canonical landmark's left-right mirror partner (x -> -x)."""
    dist, pair = cKDTree(canonical).query(canonical * [-1.0, 1.0, 1.0])
    if dist.max() > 0.05 or not np.all(pair[pair] == np.arange(len(pair))):
        raise ValueError('the canonical face is not left-right symmetric about x = 0')
    return pair


def symmetrise(points, canonical):
    """Average model points with their mirrored partners (model symmetric about x = 0).

    MediaPipe's landmarks on a symmetric render are slightly asymmetric (median
    1.6 mm here); unsymmetrised, the fitted head frame is turned by 1.35 deg of
    yaw against the canonical face (symmetrised: 0.0 yaw, 0.23 pitch vs. the
    canonical-ICP frame, whose model has an AFLW2000 dev yaw bias of 0.05 deg).
    """
    pair = mirror_pairs(canonical)
    return 0.5 * (points + points[pair] * [-1.0, 1.0, 1.0])


def pnp_frame_correction(source, corr, canonical, coeffs, focal=800.0, distance=55.0):
    """Rotation ``E`` that makes solvePnP's zero pose the synthetic zero pose.

    A 3D least-squares fit to the canonical face does not give the frame that
    MediaPipe + solvePnP (the baseline, whose frame matches AFLW2000's labels)
    reads from 2D landmarks: depth differences between the model's landmarks and
    the canonical face tilt it by a few degrees of pitch.  The frontal projections
    of ``coeffs`` identities are solved with PnP against the canonical face; the
    mean rotation ``E`` (head->viewer) is returned, and ``rotation @ E`` is the
    corrected frame (``head' = head @ E``).  Off by default
    (``correspondence.pnp_frame``): measured, the discrepancy behaves like a
    viewer-frame pitch offset (about -4.5 deg at every yaw), which no head-frame
    rotation removes -- the correction trades it for roll errors at large yaw.
    """
    import cv2
    from scipy.spatial.transform import Rotation

    from nlml_hpe.camera import Camera
    from nlml_hpe.geometry import optical_to_viewer

    size = (640, 480)
    k = Camera.pinhole(focal, *size).k
    rots = []
    for c in coeffs:
        pts = landmarks_of(source, corr, np.asarray(c)[None])[0]
        img = project(pts, np.eye(3), distance, focal, size)[:, :2]
        ok, rvec, _ = cv2.solvePnP(np.ascontiguousarray(canonical), np.ascontiguousarray(img),
                                   k, None, flags=cv2.SOLVEPNP_ITERATIVE)
        if ok:
            rots.append(optical_to_viewer(cv2.Rodrigues(rvec)[0]))
    if not rots:
        raise RuntimeError('solvePnP failed on every frontal projection')
    return Rotation.from_matrix(np.stack(rots)).mean().as_matrix()


SHIPPED = REPO / 'training' / 'data' / 'ict_mediapipe_correspondence.npz'
CORR_KEYS = ('tri_vertices', 'bary', 'rotation', 'translation', 'scale', 'distance_cm',
             'z_scale')


def _save(path, fit, tri_vertices, z_scale, method, diag=None):
    np.savez(path, tri_vertices=tri_vertices.astype(np.int32), bary=fit['bary'],
             rotation=fit['rotation'], translation=fit['translation'],
             scale=np.array(fit['scale']), distance_cm=fit['distance'],
             z_scale=np.array(z_scale), method=np.array(method),
             diagnostics=np.array(json.dumps(diag or {})))


def run(cfg, out_dir, inputs):
    """Stage entry point: build (or copy the shipped) ICT <-> MediaPipe correspondence."""
    t0 = time.time()
    ccfg = cfg.get('correspondence', {}) or {}
    method = ccfg.get('method', 'shipped')
    if method not in ('shipped', 'mediapipe', 'canonical'):
        raise ValueError(f'unknown correspondence method {method!r} '
                         '(known: shipped, mediapipe, canonical)')
    source = load_source(cfg['faces'])
    obj = Path(ccfg.get('canonical_obj', Path(cfg['faces']['path']).parents[1]
                        / 'mediapipe_canonical' / 'canonical_face_model.obj'))
    canonical = load_canonical_obj(obj if obj.is_absolute() else REPO / obj)
    face_vertices = int(ccfg.get('face_vertices', ICT_FACE_VERTICES if source.name == 'ict'
                                 else len(source.neutral)))
    tris = source.triangles[np.all(source.triangles < face_vertices, axis=1)]
    diag = {}
    if method == 'shipped':
        shipped = Path(ccfg.get('shipped', SHIPPED))
        shipped = shipped if shipped.is_absolute() else REPO / shipped
        if source.name != 'ict':
            raise ValueError('the shipped correspondence is for ICT-FaceKit; use '
                             "correspondence.method 'mediapipe' or 'canonical' for "
                             f'source {source.name!r}')
        if not shipped.is_file():
            raise FileNotFoundError(f'shipped correspondence missing: {shipped} (run with '
                                    'correspondence.method: mediapipe to rebuild it)')
        with np.load(shipped, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        if int(arrays['tri_vertices'].max()) >= len(source.neutral):
            raise ValueError(f'{shipped} does not match the face model topology')
        np.savez(out_dir / 'correspondence.npz', **arrays)
        diag = {'shipped': str(shipped)}
        if 'diagnostics' in arrays:
            diag['measured'] = json.loads(str(arrays['diagnostics']))
    elif method == 'canonical':
        fit = fit_canonical(canonical, source.neutral, tris)
        if ccfg.get('pnp_frame', False):
            k = len(source.identity_modes)
            fit['rotation'] = fit['rotation'] @ pnp_frame_correction(
                source, {'tri_vertices': tris[fit['tri']], 'bary': fit['bary'],
                         'rotation': fit['rotation'], 'translation': fit['translation']},
                canonical, np.zeros((1, k)))
        _save(out_dir / 'correspondence.npz', fit, tris[fit['tri']],
              float(ccfg.get('z_scale', 1.0)), method)
    else:
        rng = np.random.default_rng(int(cfg.get('seed', 0)) + 2)
        fit, z_scale, diag = mediapipe_correspondence(source, canonical, tris, cfg['faces'],
                                                      ccfg, rng)
        diag.pop('neutral_points_cm')
        _save(out_dir / 'correspondence.npz', fit, tris[fit['tri']], z_scale, method, diag)
        if ccfg.get('update_shipped', False):
            _save(SHIPPED, fit, tris[fit['tri']], z_scale, method, diag)
            diag['updated_shipped'] = str(SHIPPED)
    corr = load_correspondence(out_dir)
    neutral_lm = landmarks_of(source, corr, np.zeros((1, len(source.identity_modes))))[0]
    rms_shape = float(np.sqrt(np.mean(np.sum((neutral_lm - neutral_lm.mean(0)
                                              - (canonical - canonical.mean(0))) ** 2, 1))))
    _plot(canonical, neutral_lm, out_dir / 'correspondence.png')
    summary = {
        'method': str(corr['method']), 'fit_scale': round(float(corr['scale']), 4),
        'z_scale': round(float(corr['z_scale']), 4),
        'distance_cm_mean': round(float(corr['distance_cm'].mean()), 3),
        'distance_cm_max': round(float(corr['distance_cm'].max()), 3),
        'neutral_vs_canonical_rms_cm': round(rms_shape, 3), **diag,
        'seconds': round(time.time() - t0, 2)}
    what = {'canonical': 'MediaPipe canonical face aligned to the model mean face by '
                         'similarity ICP, then snapped to the surface (distance_cm = snap).',
            'mediapipe': 'MediaPipe run on renders of several identities and views; '
                         'landmarks cast back onto the mesh (distance_cm = per-landmark '
                         'spread over views and identities).'}
    (out_dir / 'report.md').write_text(
        f'# correspondence\n\nstage method: {method}; stored method: {corr["method"]} -- '
        + what.get(str(corr['method']), '') + '\n\n'
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
