"""The landmarks stage's check and report: MediaPipe on renders against the projection.

:func:`check_renders` renders the grid samples of a few training identities
with their own cameras and expressions and compares MediaPipe's landmarks with
the projected ones (px, normalised features, solvePnP angles);
:func:`write_report` writes ``landmarks/report.md`` with its figures.  The
sampler passed in is :mod:`training.synth_landmarks`'s.
"""

import warnings

import numpy as np

from nlml_hpe.camera import Camera

from .correspondence import to_head_frame
from .render import make_renderer


def check_renders(sampler, samples, rendered, grid_angles, out_dir):
    """Render the grid samples of a few identities; compare MediaPipe with projection."""
    from nlml_hpe.baseline import baseline_angles
    from nlml_hpe.features import normalise_landmarks

    merged = sampler.merge(samples)
    mp = sampler.mediapipe(merged, 'landmarks: check renders')
    found = np.all(np.isfinite(mp), axis=(1, 2))
    proj = merged['proj']
    px = np.full(len(mp), np.nan)
    feat = np.full(len(mp), np.nan)
    pnp = np.full((len(mp), 3), np.nan)
    if found.any():
        px[found] = np.linalg.norm(mp[found, :, :2] - proj[found, :, :2], axis=2).mean(1)
        fm = normalise_landmarks(mp[found])
        fp = normalise_landmarks(proj[found])
        feat[found] = np.abs(fm - fp).mean(1)
        w, h = sampler.projector.size
        cam_angles = sampler.projector.render_angles(merged['angles'], merged['cams'])
        for i in np.flatnonzero(found):
            f = merged['cams']['focal'][i]
            k = Camera.pinhole(f, w, h).k
            pnp[i] = baseline_angles(mp[i][None], w, h, k)[0] - cam_angles[i]
        zs = mp[found, :, 2] - mp[found, :, 2].mean(1, keepdims=True)
        zp = proj[found, :, 2] - proj[found, :, 2].mean(1, keepdims=True)
        z_slope = float((zs * zp).sum() / (zp * zp).sum())
    else:
        z_slope = float('nan')
    n_pose = len(grid_angles)
    with np.errstate(all='ignore'), warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)
        per_pose = {'detected': found.reshape(-1, n_pose).mean(0),
                    'px': np.nanmean(px.reshape(-1, n_pose), 0),
                    'feat': np.nanmean(feat.reshape(-1, n_pose), 0)}
    np.savez_compressed(out_dir / 'check.npz', mediapipe=mp, projected=proj,
                        angles=merged['angles'], focal=merged['cams']['focal'],
                        distance=merged['cams']['distance'], offset=merged['cams']['offset'],
                        detected=found, px_error=px, feature_error=feat, pnp_error_deg=pnp)
    _plot_check_renders(sampler, merged, mp, out_dir / 'renders.png')
    res = {
        'identities': len(samples), 'renders': int(len(mp)),
        'detection_rate': round(float(found.mean()), 4),
        'px_error_mean': round(float(np.nanmean(px)), 3),
        'px_error_median': round(float(np.nanmedian(px)), 3),
        'px_error_p90': round(float(np.nanpercentile(px, 90)), 3),
        'feature_abs_error_mean': round(float(np.nanmean(feat)), 5),
        'feature_abs_error_median': round(float(np.nanmedian(feat)), 5),
        'mediapipe_z_vs_projected_z_slope': round(z_slope, 4),
        'pnp_mae_deg_pitch_yaw_roll': [round(float(v), 2) for v in
                                       np.nanmean(np.abs(pnp), 0)],
        '_per_pose': per_pose, '_grid_angles': grid_angles, '_pnp': pnp, '_found': found}
    return res


def _plot_check_renders(sampler, merged, mp, path):
    """Plot a few renders with MediaPipe (green) and projected (red) landmarks overlaid."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    n = len(merged['angles'])
    picks = np.unique(np.linspace(0, n - 1, 8).astype(int))
    renderer = make_renderer(sampler.source, sampler.cfg['faces'], sampler.projector.size)
    fig, axes = plt.subplots(2, (len(picks) + 1) // 2, figsize=(3.2 * ((len(picks) + 1) // 2),
                                                                6.0))
    for ax, i in zip(np.ravel(axes), picks):
        verts = to_head_frame(sampler.source.vertices(merged['coeffs'][i], merged['expr'][i]),
                              sampler.corr)
        cams = merged['cams']
        rot = sampler.projector.rotations(merged['angles'][i:i + 1],
                                          {k: v[i:i + 1] for k, v in cams.items()})[0]
        rgb = renderer.render(verts, rot, cams['distance'][i], cams['focal'][i],
                              cams['offset'][i])
        ax.imshow(rgb)
        ax.scatter(merged['proj'][i, :, 0], merged['proj'][i, :, 1], s=1.5, c='r')
        if np.all(np.isfinite(mp[i])):
            ax.scatter(mp[i, :, 0], mp[i, :, 1], s=1.5, c='lime')
        lo, hi = merged['proj'][i, :, :2].min(0), merged['proj'][i, :, :2].max(0)
        pad = 0.3 * (hi - lo).max()
        ax.set_xlim(lo[0] - pad, hi[0] + pad)
        ax.set_ylim(hi[1] + pad, lo[1] - pad)
        p, y, r = merged['angles'][i]
        ax.set_title(f'p {p:.0f} y {y:.0f} r {r:.0f}'
                     + ('' if np.all(np.isfinite(mp[i])) else ' (missed)'), fontsize=8)
        ax.axis('off')
    renderer.release()
    fig.suptitle('renders: MediaPipe (green) vs projected correspondence (red)', fontsize=9)
    fig.savefig(path, dpi=90, bbox_inches='tight')
    plt.close(fig)


def _heatmaps(check, yaw_g, pitch_g, roll_g, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    shape = (len(yaw_g), len(pitch_g), len(roll_g))
    pp = check['_per_pose']
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, (key, title, fmt) in zip(axes, (('detected', 'detection rate', '.2f'),
                                            ('px', 'mean px error (detected)', '.1f'),
                                            ('feat', 'mean |feature error|', '.3f'))):
        with np.errstate(all='ignore'), warnings.catch_warnings():
            warnings.simplefilter('ignore', RuntimeWarning)
            vals = np.nanmean(pp[key].reshape(shape), 2).T           # (pitch, yaw)
        im = ax.imshow(vals, origin='lower', cmap='viridis', aspect='auto')
        ax.set_xticks(range(len(yaw_g)), [f'{v:.0f}' for v in yaw_g], fontsize=7)
        ax.set_yticks(range(len(pitch_g)), [f'{v:.0f}' for v in pitch_g], fontsize=7)
        ax.set_xlabel('yaw')
        ax.set_ylabel('pitch')
        ax.set_title(title + ' (mean over roll)', fontsize=9)
        for (r, c), v in np.ndenumerate(vals):
            if np.isfinite(v):
                ax.text(c, r, format(v, fmt), ha='center', va='center', fontsize=5, color='w')
        fig.colorbar(im, ax=ax)
    fig.savefig(path, dpi=90, bbox_inches='tight')
    plt.close(fig)


def _marginal_table(check, yaw_g, pitch_g, roll_g):
    shape = (len(yaw_g), len(pitch_g), len(roll_g))
    pp = check['_per_pose']
    lines = []
    for axis, (name, vals) in enumerate((('yaw', yaw_g), ('pitch', pitch_g), ('roll', roll_g))):
        others = tuple(a for a in range(3) if a != axis)
        det = pp['detected'].reshape(shape).mean(others)
        with np.errstate(all='ignore'), warnings.catch_warnings():
            warnings.simplefilter('ignore', RuntimeWarning)
            px = np.nanmean(pp['px'].reshape(shape), others)
            ft = np.nanmean(pp['feat'].reshape(shape), others)
        lines += [f'\n| {name} | detected | px error | feature error |', '|---|---|---|---|']
        lines += [f'| {v:.0f} | {d:.2f} | {e:.2f} | {f:.4f} |'
                  for v, d, e, f in zip(vals, det, px, ft)]
    return '\n'.join(lines) + '\n'


def write_report(out_dir, lcfg, summary, check, yaw_g, pitch_g, roll_g):
    text = ['# landmarks\n',
            f'mode: {summary["mode"]}; focal {lcfg.get("focal_px")} px, distance '
            f'{lcfg.get("distance_cm")} cm, offset_frac {lcfg.get("offset_frac", 0.2)}, '
            f'noise {lcfg.get("noise_px", 0.0)} px, z_scale {summary["z_scale"]}\n']
    text += [f'- {k}: {v}' for k, v in summary.items() if k != 'check']
    text.append('\n![projected examples](examples.png)\n')
    if check and 'skipped' not in check:
        _heatmaps(check, yaw_g, pitch_g, roll_g, out_dir / 'check.png')
        text.append('## MediaPipe on renders vs. projection (check)\n')
        text.append(f'{check["identities"]} training identities rendered at every grid pose '
                    'with their own camera and expression; px error = mean distance of the '
                    "468 projected landmarks to MediaPipe's (x, y); feature error = mean "
                    '|difference| of the 1404 normalised features; PnP = solvePnP baseline '
                    'on the render vs. the true pose (convention check).\n')
        text += [f'- {k}: {v}' for k, v in check.items() if not k.startswith('_')]
        text.append('\n![renders](renders.png)\n\n![per pose](check.png)\n')
        text.append(_marginal_table(check, yaw_g, pitch_g, roll_g))
    elif check:
        text.append(f'\ncheck skipped: {check["skipped"]}\n')
    (out_dir / 'report.md').write_text('\n'.join(text))


def plot_examples(grid, yaw_g, pitch_g, roll_g, path):
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
