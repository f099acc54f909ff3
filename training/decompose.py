"""Stage 5: Tucker/HOSVD of the pose tensor with tensorly.

The tensor ``(I, Y, P, R, 1404)`` is decomposed as ``core x_0 U_id x_1 U_yaw
x_2 U_pitch x_3 U_roll x_4 U_lm`` with configurable ranks (the authors use
``[5, 3, 3, 3, 1404]``).  When the landmark rank is full, the landmark mode is
kept as is (its factor is the identity) and only modes 0-3 are decomposed with
``tensorly.decomposition.partial_tucker`` (HOSVD init + a few HOOI sweeps),
which is much cheaper than a full Tucker.

Writes ``decompose.npz`` (core, factors ``U_identity``, ``U_yaw``, ``U_pitch``,
``U_roll`` and ``U_landmark`` when not full, the angle grids) and ``report.md``.
"""

from pathlib import Path

import numpy as np

MODE_NAMES = ('identity', 'yaw', 'pitch', 'roll', 'landmark')


def _ranks(cfg, shape):
    ranks = list(cfg.get('decompose', {}).get('ranks', [5, 3, 3, 3, shape[-1]]))
    if len(ranks) != 5 or not all(isinstance(r, int) and r >= 1 for r in ranks):
        raise ValueError(f'decompose.ranks must be 5 positive integers, got {ranks}')
    for r, n, name in zip(ranks, shape, MODE_NAMES):
        if r > n:
            raise ValueError(f'decompose.ranks: {name} rank {r} exceeds the mode size {n}')
    if min(ranks[1:4]) < 2:
        raise ValueError('decompose.ranks: the yaw, pitch and roll ranks must be >= 2')
    return ranks


def fix_signs(factors):
    """Flip factor columns so the largest-magnitude entry is positive (deterministic)."""
    out = []
    for u in factors:
        idx = np.argmax(np.abs(u), axis=0)
        sign = np.sign(u[idx, np.arange(u.shape[1])])
        sign[sign == 0] = 1.0
        out.append(u * sign)
    return out


def tucker_decompose(tensor, ranks, n_iter_max=10, tol=1e-6):
    """Return ``(core, [U_id, U_yaw, U_pitch, U_roll, U_lm or None])`` of ``tensor``.

    ``U_lm`` is ``None`` when the landmark rank equals the feature size (identity).
    """
    import tensorly as tl
    from tensorly.decomposition import partial_tucker, tucker

    tl.set_backend('numpy')
    x = np.asarray(tensor, dtype=np.float64)
    if ranks[4] >= x.shape[4]:
        (core, factors), _ = partial_tucker(x, rank=ranks[:4], modes=[0, 1, 2, 3],
                                            n_iter_max=n_iter_max, init='svd', tol=tol)
        factors = fix_signs(list(factors))
        core = tl.tenalg.multi_mode_dot(x, factors, modes=[0, 1, 2, 3], transpose=True)
        return core, factors + [None]
    core, factors = tucker(x, rank=ranks, n_iter_max=n_iter_max, init='svd', tol=tol)
    factors = fix_signs(list(factors))
    core = tl.tenalg.multi_mode_dot(x, factors, transpose=True)
    return core, factors


def reconstruct(core, factors):
    """Rebuild the full tensor from ``core`` and ``factors`` (``None`` = identity)."""
    import tensorly as tl

    modes = [n for n, u in enumerate(factors) if u is not None]
    return tl.tenalg.multi_mode_dot(core, [factors[n] for n in modes], modes=modes)


def run(cfg, out_dir, inputs):
    """Decompose ``tensor/tensor.npy``; write ``decompose.npz``; return a summary."""
    import time

    out_dir = Path(out_dir)
    tdir = Path(inputs['tensor'])
    tensor = np.load(tdir / 'tensor.npy', mmap_mode='r')
    with np.load(tdir / 'sets.npz') as sets:
        grids = {k: sets[k] for k in ('yaw_grid', 'pitch_grid', 'roll_grid')}
    dcfg = cfg.get('decompose', {})
    ranks = _ranks(cfg, tensor.shape)
    t0 = time.perf_counter()
    core, factors = tucker_decompose(tensor, ranks, n_iter_max=int(dcfg.get('n_iter_max', 10)))
    t_fit = time.perf_counter() - t0
    x = np.asarray(tensor, dtype=np.float64)
    rec = reconstruct(core, factors)
    rel_err = float(np.linalg.norm(rec - x) / np.linalg.norm(x))
    # Same error on the mean-removed tensor (how much pose/identity variation is kept).
    mean = x.mean(axis=(0, 1, 2, 3), keepdims=True)
    rel_err_centred = float(np.linalg.norm(rec - x) / np.linalg.norm(x - mean))
    del rec, x
    arrays = {'core': core.astype(np.float64), 'ranks': np.array(ranks)}
    for name, u in zip(MODE_NAMES, factors):
        if u is not None:
            arrays[f'U_{name}'] = u.astype(np.float64)
    arrays.update(grids)
    np.savez(out_dir / 'decompose.npz', **arrays)
    summary = {'ranks': ranks, 'core_shape': list(core.shape),
               'relative_error': rel_err, 'relative_error_of_variation': rel_err_centred,
               'fit_s': round(t_fit, 2), 'landmark_mode': 'full (identity)'
               if factors[4] is None else f'rank {ranks[4]}'}
    (out_dir / 'report.md').write_text(
        '# Stage 5: Tucker/HOSVD\n\n'
        f'- ranks {ranks} (identity, yaw, pitch, roll, landmark); core {tuple(core.shape)}\n'
        f"- landmark mode: {summary['landmark_mode']}\n"
        f'- relative reconstruction error ||T - T_hat|| / ||T||: {rel_err:.3e}\n'
        f'- relative to the variation about the mean face ||T - T_hat|| / ||T - mean||: '
        f'{rel_err_centred:.3e}\n'
        f'- fit time {t_fit:.1f} s\n')
    return summary
