"""Stage 4: the pose tensor of normalised landmark features.

Reads ``landmarks/landmarks.npz`` (stage 3's contract), applies
:func:`nlml_hpe.features.normalise_landmarks` (nose tip 1, eye corners 33/263,
pixel-proportional coordinates) and writes:

* ``tensor.npy``: float32 ``(I, Y, P, R, 1404)`` (``np.load(..., mmap_mode='r')``);
* ``sets.npz``: normalised ``extra`` (off-grid training poses) and ``test``
  (held-out identities) features with their ``(pitch, yaw, roll)`` angles and
  identities, plus the angle grids;
* ``report.md``.
"""

from pathlib import Path

import numpy as np
from tqdm import tqdm

from nlml_hpe.features import N_FEATURES, N_LANDMARKS, normalise_landmarks

REQUIRED = ('yaw_grid', 'pitch_grid', 'roll_grid', 'grid', 'extra_landmarks', 'extra_angles',
            'extra_identity', 'test_landmarks', 'test_angles', 'test_identity')


def load_landmarks(path):
    """Load and validate a landmarks artifact; return a dict of arrays."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f'landmarks artifact not found: {path} (run the landmarks stage)')
    with np.load(path) as data:
        missing = [k for k in REQUIRED if k not in data.files]
        if missing:
            raise ValueError(f'{path}: missing arrays {missing} (see the stage-3 contract)')
        arrays = {k: data[k] for k in REQUIRED}
    grids = [np.asarray(arrays[k], float) for k in ('yaw_grid', 'pitch_grid', 'roll_grid')]
    shape = arrays['grid'].shape
    expected = (shape[0],) + tuple(len(g) for g in grids) + (N_LANDMARKS, 3)
    if shape != expected:
        raise ValueError(f'{path}: grid has shape {shape}, expected {expected} '
                         '(I, Y, P, R, 468, 3)')
    for name in ('extra', 'test'):
        lm, ang, ident = (arrays[f'{name}_landmarks'], arrays[f'{name}_angles'],
                          arrays[f'{name}_identity'])
        if lm.ndim != 3 or lm.shape[1:] != (N_LANDMARKS, 3) or ang.shape != (len(lm), 3) \
                or ident.shape != (len(lm),):
            raise ValueError(f'{path}: {name} arrays have inconsistent shapes '
                             f'{lm.shape}, {ang.shape}, {ident.shape}')
    for g, name in zip(grids, ('yaw', 'pitch', 'roll')):
        if len(g) < 4 or np.any(np.diff(g) <= 0):
            raise ValueError(f'{path}: {name}_grid must be increasing with >= 4 values, '
                             f'got {g}')
    return arrays


def run(cfg, out_dir, inputs):
    """Build ``tensor.npy`` and ``sets.npz`` in ``out_dir``; return a summary."""
    out_dir = Path(out_dir)
    arrays = load_landmarks(Path(inputs['landmarks']) / 'landmarks.npz')
    grid = arrays['grid']
    n_id, n_y, n_p, n_r = grid.shape[:4]
    flat = grid.reshape(-1, N_LANDMARKS, 3)
    tensor = np.lib.format.open_memmap(out_dir / 'tensor.npy', mode='w+', dtype=np.float32,
                                       shape=(n_id, n_y, n_p, n_r, N_FEATURES))
    tflat = tensor.reshape(-1, N_FEATURES)
    chunk = 4096
    for i in tqdm(range(0, len(flat), chunk), desc='tensor', unit='chunk'):
        tflat[i:i + chunk] = normalise_landmarks(flat[i:i + chunk])
    tensor.flush()
    sets = {}
    for name in ('extra', 'test'):
        lm = arrays[f'{name}_landmarks']
        sets[f'{name}_features'] = (normalise_landmarks(lm) if len(lm)
                                    else np.zeros((0, N_FEATURES), np.float32))
        sets[f'{name}_angles'] = arrays[f'{name}_angles'].astype(np.float32)
        sets[f'{name}_identity'] = arrays[f'{name}_identity'].astype(np.int64)
    np.savez(out_dir / 'sets.npz', yaw_grid=arrays['yaw_grid'].astype(float),
             pitch_grid=arrays['pitch_grid'].astype(float),
             roll_grid=arrays['roll_grid'].astype(float), **sets)
    summary = {'shape': list(tensor.shape), 'n_extra': len(sets['extra_features']),
               'n_test': len(sets['test_features']),
               'feature_abs_max': float(np.abs(tflat).max()),
               'yaw_grid': arrays['yaw_grid'].tolist(),
               'pitch_grid': arrays['pitch_grid'].tolist(),
               'roll_grid': arrays['roll_grid'].tolist()}
    (out_dir / 'report.md').write_text(
        '# Stage 4: pose tensor\n\n'
        f'- tensor.npy: float32 {tuple(tensor.shape)} (identity, yaw, pitch, roll, 1404)\n'
        f"- extra (off-grid training poses): {summary['n_extra']}, "
        f"test (held-out identities): {summary['n_test']}\n"
        '- normalisation: pixel-proportional (x*W, y*H, z*W), minus nose tip (landmark 1), '
        'divided by the 3-D distance of landmarks 33-263\n')
    del tensor
    return summary
