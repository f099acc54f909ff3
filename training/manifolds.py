"""Stage 6: cosine manifolds of the pose factor matrices.

Each column of the yaw, pitch and roll factor matrices (from stage 5) is fitted
as ``f(w) = a*cos(b*w + c) + d`` with ``w`` the angle in radians, using
``scipy.optimize.curve_fit`` from several starting frequencies and phases
(the best least-squares fit wins).  Writes ``manifolds.npz`` (``params``
``(3 angles, k columns, 4)`` ordered yaw, pitch, roll and a, b, c, d;
``residual_rms``; the grids), ``manifolds.json``, ``report.md`` and PNG plots:
per-column 2-D plots and the paper's 3-D "spiral" (the three columns as a
curve parametrised by the angle).
"""

import json
from pathlib import Path
import warnings

import numpy as np
from scipy.optimize import curve_fit

ANGLES = ('yaw', 'pitch', 'roll')
B_BOUNDS = (0.05, 6.0)


def cosine(w, a, b, c, d):
    """Return ``a*cos(b*w + c) + d``."""
    return a * np.cos(b * w + c) + d


def fit_cosine(w, y, b_starts=(0.5, 1.0, 1.5, 2.5, 4.0), n_phases=4):
    """Fit :func:`cosine` to samples ``(w, y)``; return ``(params (4,), rms residual)``."""
    w = np.asarray(w, float)
    y = np.asarray(y, float)
    if w.shape != y.shape or w.ndim != 1 or len(w) < 4:
        raise ValueError(f'need >= 4 matching samples to fit a cosine, got {w.shape}, {y.shape}')
    span = float(np.ptp(y))
    scale = max(span, 1e-12)
    best, best_sse = None, np.inf
    lower = [0.0, B_BOUNDS[0], -2 * np.pi, -np.inf]
    upper = [np.inf, B_BOUNDS[1], 2 * np.pi, np.inf]
    for b0 in b_starts:
        for c0 in np.linspace(-np.pi, np.pi, n_phases, endpoint=False):
            p0 = [span / 2 + 1e-9, b0, c0, float(np.mean(y))]
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter('ignore')
                    p, _ = curve_fit(cosine, w, y, p0=p0, bounds=(lower, upper),
                                     x_scale=[scale, 1.0, 1.0, scale], maxfev=20000)
            except (RuntimeError, ValueError):
                continue
            sse = float(np.sum((cosine(w, *p) - y) ** 2))
            if sse < best_sse:
                best, best_sse = p, sse
    if best is None:
        raise RuntimeError('cosine fit failed from every start')
    a, b, c, d = best
    c = (c + np.pi) % (2 * np.pi) - np.pi  # canonical phase in [-pi, pi)
    return np.array([a, b, c, d]), float(np.sqrt(best_sse / len(w)))


def cosine_latents(params, angles_rad):
    """Latents ``(N, 3k)`` (yaw, pitch, roll blocks) of angles ``(N, 3)`` yaw, pitch, roll (rad).

    ``params`` is ``(3, k, 4)`` as saved in ``manifolds.npz``.
    """
    params = np.asarray(params, float)
    ang = np.asarray(angles_rad, float)
    if ang.ndim != 2 or ang.shape[1] != 3:
        raise ValueError(f'angles must be (N, 3) yaw, pitch, roll, got {ang.shape}')
    blocks = []
    for i in range(3):
        a, b, c, d = (params[i, :, j][None] for j in range(4))
        blocks.append(a * np.cos(b * ang[:, i:i + 1] + c) + d)
    return np.concatenate(blocks, axis=1)


def _plots(out_dir, grids, factors, params):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    k = factors[0].shape[1]
    fig, axes = plt.subplots(3, k, figsize=(4 * k, 9), squeeze=False)
    for i, name in enumerate(ANGLES):
        g = grids[i]
        dense = np.linspace(g[0], g[-1], 200)
        for j in range(k):
            ax = axes[i, j]
            ax.plot(g, factors[i][:, j], 'o', label='factor')
            ax.plot(dense, cosine(np.radians(dense), *params[i, j]), '-', label='cosine fit')
            a, b, c, d = params[i, j]
            ax.set_title(f'{name} col {j}: {a:.3g} cos({b:.3g} w {c:+.3g}) {d:+.3g}',
                         fontsize=8)
            ax.set_xlabel(f'{name} (deg)')
        axes[i, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / 'factor_columns.png', dpi=90)
    plt.close(fig)

    fig = plt.figure(figsize=(12, 4))
    for i, name in enumerate(ANGLES):
        ax = fig.add_subplot(1, 3, i + 1, projection='3d')
        g = grids[i]
        dense = np.radians(np.linspace(g[0], g[-1], 200))
        curve = np.stack([cosine(dense, *params[i, j]) for j in range(min(k, 3))], 1)
        ax.plot(*curve.T, '-', color='tab:orange')
        ax.scatter(*factors[i][:, :3].T, c=g, cmap='viridis')
        ax.set_title(f'{name} manifold (colour = angle)')
    fig.tight_layout()
    fig.savefig(out_dir / 'spiral.png', dpi=90)
    plt.close(fig)


def run(cfg, out_dir, inputs):
    """Fit the cosine manifolds of ``decompose/decompose.npz``; return a summary."""
    out_dir = Path(out_dir)
    with np.load(Path(inputs['decompose']) / 'decompose.npz') as dec:
        factors = [dec[f'U_{n}'] for n in ANGLES]
        grids = [dec[f'{n}_grid'] for n in ANGLES]
    k = factors[0].shape[1]
    if any(u.shape[1] != k for u in factors):
        raise ValueError('the yaw, pitch and roll ranks must be equal (one k-d latent each), '
                         f'got {[u.shape[1] for u in factors]}')
    params = np.zeros((3, k, 4))
    rms = np.zeros((3, k))
    for i in range(3):
        for j in range(k):
            params[i, j], rms[i, j] = fit_cosine(np.radians(grids[i]), factors[i][:, j])
    col_std = np.array([u.std(axis=0) for u in factors])
    np.savez(out_dir / 'manifolds.npz', params=params, residual_rms=rms, column_std=col_std,
             yaw_grid=grids[0], pitch_grid=grids[1], roll_grid=grids[2])
    summary = {'max_residual_rms': float(rms.max()),
               'residual_rms': {n: rms[i].tolist() for i, n in enumerate(ANGLES)},
               'relative_residual': {n: (rms[i] / np.maximum(col_std[i], 1e-12)).tolist()
                                     for i, n in enumerate(ANGLES)},
               'params': {n: params[i].tolist() for i, n in enumerate(ANGLES)}}
    (out_dir / 'manifolds.json').write_text(json.dumps(summary, indent=2) + '\n')
    _plots(out_dir, grids, factors, params)
    lines = ['# Stage 6: cosine manifolds', '',
             'f(w) = a cos(b w + c) + d per factor column (w in radians).', '',
             '| angle | col | a | b | c | d | rms residual | rms / column std |',
             '|---|---|---|---|---|---|---|---|']
    for i, n in enumerate(ANGLES):
        for j in range(k):
            a, b, c, d = params[i, j]
            lines.append(f'| {n} | {j} | {a:.4g} | {b:.4g} | {c:.4g} | {d:.4g} | '
                         f'{rms[i, j]:.2e} | {rms[i, j] / max(col_std[i, j], 1e-12):.2e} |')
    lines += ['', 'Plots: factor_columns.png (per column), spiral.png (3-D curves).', '']
    (out_dir / 'report.md').write_text('\n'.join(lines))
    return {'max_residual_rms': summary['max_residual_rms'],
            'max_relative_residual': float((rms / np.maximum(col_std, 1e-12)).max())}
