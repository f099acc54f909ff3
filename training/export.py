"""Stage 9: export the trained model (safetensors + JSON metadata).

Writes :func:`nlml_hpe.model.save_model` output into ``export.out_dir`` only
(``models/`` for the default config; a ``{workdir}/...`` path for the tiny
config, so tests never overwrite the shipped weights).  Metadata: version,
creation time (UTC), angle ranges, the frame of the angles (``angle_frame``,
see :mod:`nlml_hpe.estimator`), normalisation, the training config and its
sha256 and the synthetic test MAE.  The calibration of stage 8 (when there is
one) is stored in the weights file as ``calibration.<angle>`` tensors and
described in the metadata.  The stage directory gets ``report.md``.

Training never reads the AFLW2000 dev split: ``aflw2000_dev_mae_deg`` is
``null`` and ``aflw2000_note`` says how to score the exported model
(``nlml-hpe benchmark aflw2000 DIR --model OUT_DIR``, see ``docs/training.md``).
A config that still asks for it (``export.aflw2000: true``) is refused when it is
loaded (:data:`training.pipeline.RETIRED_KEYS`), before any stage runs.
"""

import datetime
import hashlib
import json
from pathlib import Path

import numpy as np
import yaml

from nlml_hpe.features import LEFT_EYE_OUTER, NOSE_TIP, RIGHT_EYE_OUTER
from nlml_hpe.model import CALIBRATION_PREFIX

FORMAT_VERSION = 2  # 2: optional calibration.<angle> tensors
MAX_BYTES = 20 * 1024 * 1024


def _out_dir(cfg):
    out = (cfg.get('export') or {}).get('out_dir')
    if not out:
        raise ValueError('export.out_dir is not set')
    out = out.replace('{workdir}', str(cfg['workdir']))
    return Path(out).resolve()


#: Why a trained model's metadata holds no AFLW2000 dev-split MAE.
AFLW_NOTE = ('not measured: training never reads the AFLW2000 dev split; score the exported '
             'model with nlml-hpe benchmark aflw2000 DIR --model OUT_DIR')


def _calibration(inputs):
    """``{angle: coefficients}`` from the calibrate stage (empty when it made none)."""
    path = Path(inputs.get('calibrate', '')) / 'calibration.npz'
    if not inputs.get('calibrate') or not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as data:
        return {k: np.asarray(data[k], dtype=np.float32) for k in data.files}


def angle_frame(inputs):
    """Frame of the training angles, from the landmarks artifact (``camera`` before it said)."""
    path = Path(inputs['landmarks']) / 'landmarks.npz'
    with np.load(path, allow_pickle=False) as data:
        return str(data['angle_frame']) if 'angle_frame' in data.files else 'camera'


def run(cfg, out_dir, inputs):
    """Save the trained net with metadata into ``export.out_dir``; return a summary."""
    from safetensors.numpy import load_file

    from nlml_hpe.model import load_model, save_model

    stage_dir = Path(out_dir)
    target = _out_dir(cfg)
    ndir = Path(inputs['networks'])
    state = load_file(str(ndir / 'net.safetensors'))
    calibration = _calibration(inputs)
    for name, coeffs in calibration.items():
        state[f'{CALIBRATION_PREFIX}{name}'] = coeffs
    net_summary = json.loads((ndir / 'stage.json').read_text())['summary'] \
        if (ndir / 'stage.json').is_file() else {}
    tensor_summary = json.loads((Path(inputs['tensor']) / 'stage.json').read_text())['summary']
    train_cfg = {k: v for k, v in cfg.items() if not k.startswith('_')}
    cfg_text = yaml.safe_dump(train_cfg, sort_keys=True)
    metadata = {
        'format_version': FORMAT_VERSION,
        'version': str((cfg.get('export') or {}).get('version', '0.1.0')),
        'created': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ'),
        'angle_order_output': 'pitch, yaw, roll (deg, AFLW2000 Pose_Para convention)',
        'angle_frame': angle_frame(inputs),
        'angle_ranges_deg': {
            'yaw': [tensor_summary['yaw_grid'][0], tensor_summary['yaw_grid'][-1]],
            'pitch': [tensor_summary['pitch_grid'][0], tensor_summary['pitch_grid'][-1]],
            'roll': [tensor_summary['roll_grid'][0], tensor_summary['roll_grid'][-1]]},
        'normalisation': {
            'input': 'MediaPipe Face Mesh 468 landmarks, pixel-proportional (x*W, y*H, z*W)',
            'translate': f'nose tip landmark {NOSE_TIP}',
            'scale': f'3-D distance between landmarks {RIGHT_EYE_OUTER} and {LEFT_EYE_OUTER}',
            'function': 'nlml_hpe.features.normalise_landmarks'},
        'training_config': train_cfg,
        'training_config_sha256': hashlib.sha256(cfg_text.encode()).hexdigest(),
        'synthetic_test_mae_deg': net_summary.get('test_mae_deg'),
        'aflw2000_dev_mae_deg': None,
        'aflw2000_note': AFLW_NOTE,
        'calibration': {
            'angles': {k: [float(c) for c in v] for k, v in calibration.items()},
            'form': 'angle = c1*x + c3*x**3 + ... of the head output x (radians)',
            'source': 'training/calibrate.py: MediaPipe on renders of held-out identities'},
    }
    if cfg.get('_landmarks_artifact'):
        artifact = Path(cfg['_landmarks_artifact'])
        digest = hashlib.sha256()
        with artifact.open('rb') as fh:
            for block in iter(lambda: fh.read(1 << 24), b''):
                digest.update(block)
        metadata['landmarks_artifact'] = {
            'path': str(artifact), 'sha256': digest.hexdigest(),
            'note': 'external landmarks.npz (--landmarks); stages 1-3 of this config not run'}
    save_model(state, target, metadata)
    for path in target.iterdir():  # safetensors writes 0600; shipped files must be readable
        if path.is_file():
            path.chmod(0o644)
    load_model(target)  # round trip: the exported files load without torch
    sizes = {p.name: p.stat().st_size for p in target.iterdir() if p.is_file()}
    total = sum(sizes.values())
    if total > MAX_BYTES:
        raise ValueError(f'exported model is {total / 1e6:.1f} MB, over the 20 MB limit')
    summary = {'out_dir': str(target), 'bytes': sizes,
               'calibrated_angles': sorted(calibration),
               'synthetic_test_mae_deg': metadata['synthetic_test_mae_deg']}
    lines = ['# Stage 9: export', '', f'- model: {target} ({total / 1e6:.2f} MB)',
             f"- synthetic test MAE (deg): {metadata['synthetic_test_mae_deg']}",
             f'- AFLW2000 dev: {AFLW_NOTE}']
    (stage_dir / 'report.md').write_text('\n'.join(lines) + '\n')
    return summary
