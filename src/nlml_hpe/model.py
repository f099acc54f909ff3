"""The NLML-HPE networks: landmark encoder and per-angle heads, with safe I/O.

* Encoder: 1404 -> 1024 -> 512 -> 256 -> 128 -> 64 -> 9 (ReLU, tanh at 64 as in
  the authors' code).  Its 9 outputs are three 3-d latents: yaw, pitch, roll.
* Heads: one per angle, 3 -> 128 -> 256 -> 128 -> 64 -> 1 (ReLU), each mapping a
  3-d latent to its angle in radians.

Weights are stored as safetensors (never pickles) beside a small JSON file of
metadata.  :func:`load_model` validates every tensor's name and shape and names
the offending file in its error messages.
"""

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .features import N_FEATURES

ENCODER_SIZES = (N_FEATURES, 1024, 512, 256, 128, 64, 9)
HEAD_SIZES = (3, 128, 256, 128, 64, 1)
#: Order of the latents and heads.
LATENT_ANGLES = ('yaw', 'pitch', 'roll')
WEIGHTS_NAME = 'nlml_hpe.safetensors'
METADATA_NAME = 'nlml_hpe.json'


class ModelFileError(ValueError):
    """A model file is missing, unreadable or does not match the architecture."""


def _mlp(sizes, last_hidden_act=nn.ReLU):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            last_hidden = i == len(sizes) - 3
            layers.append(last_hidden_act() if last_hidden else nn.ReLU())
    return nn.Sequential(*layers)


class NLMLNet(nn.Module):
    """Encoder + three heads.  Input: normalised landmark features ``(N, 1404)``."""

    def __init__(self):
        super().__init__()
        self.encoder = _mlp(ENCODER_SIZES, last_hidden_act=nn.Tanh)
        self.heads = nn.ModuleList(_mlp(HEAD_SIZES) for _ in LATENT_ANGLES)
        self.register_buffer('feature_mean', torch.zeros(N_FEATURES))
        self.register_buffer('feature_std', torch.ones(N_FEATURES))

    def encode(self, features):
        """Map features ``(N, 1404)`` to latents ``(N, 9)``."""
        return self.encoder((features - self.feature_mean) / self.feature_std)

    def decode(self, latents):
        """Map latents ``(N, 9)`` to ``(N, 3)`` angles in radians, ordered yaw, pitch, roll."""
        return torch.cat([head(latents[:, 3 * i:3 * i + 3])
                          for i, head in enumerate(self.heads)], dim=1)

    def forward(self, features):
        """Return ``(latents, angles)``; angles are radians ordered yaw, pitch, roll."""
        latents = self.encode(features)
        return latents, self.decode(latents)


class PoseModel:
    """Numpy-in, numpy-out wrapper: features ``(N, 1404)`` -> ``(N, 3)`` pitch, yaw, roll (deg)."""

    def __init__(self, net, metadata=None):
        self.net = net.eval()
        self.metadata = dict(metadata or {})

    @torch.inference_mode()
    def predict(self, features):
        """Predict AFLW2000-convention ``(pitch, yaw, roll)`` in degrees for each row."""
        x = np.asarray(features, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != N_FEATURES:
            raise ValueError(f'expected features of shape (N, {N_FEATURES}), got {x.shape}')
        if len(x) == 0:
            return np.zeros((0, 3), dtype=np.float64)
        _, ang = self.net(torch.from_numpy(x))
        yaw, pitch, roll = np.degrees(ang.numpy().astype(np.float64)).T
        return np.stack([pitch, yaw, roll], axis=1)

    @torch.inference_mode()
    def latents(self, features):
        """Return the encoder's ``(N, 9)`` latents (yaw, pitch, roll blocks)."""
        x = torch.from_numpy(np.asarray(features, dtype=np.float32))
        return self.net.encode(x).numpy()


def save_model(net, directory, metadata):
    """Write ``nlml_hpe.safetensors`` and ``nlml_hpe.json`` into ``directory``."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_NAME), metadata={'format': 'pt'})
    (directory / METADATA_NAME).write_text(json.dumps(metadata, indent=2, sort_keys=True) + '\n')
    return directory / WEIGHTS_NAME


def load_model(path):
    """Load a :class:`PoseModel` from a directory or a ``.safetensors`` file.

    Raises :class:`ModelFileError` (a ``ValueError``) naming the file when it is
    missing, corrupt or of the wrong architecture.
    """
    from safetensors import SafetensorsError
    from safetensors.torch import load_file

    path = Path(path)
    weights = path / WEIGHTS_NAME if path.is_dir() else path
    meta_path = weights.with_suffix('.json')
    if not weights.is_file():
        raise ModelFileError(f'model weights not found: {weights}')
    try:
        state = load_file(str(weights))
    except (SafetensorsError, OSError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f'cannot read model weights {weights}: {exc}') from exc
    net = NLMLNet()
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ModelFileError(f'{weights} does not match the NLML-HPE architecture: '
                             f'missing {missing[:5]}, unexpected {unexpected[:5]}')
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise ModelFileError(f'{weights}: tensor {key!r} has shape {tuple(state[key].shape)}, '
                                 f'expected {tuple(tensor.shape)}')
        if not torch.all(torch.isfinite(state[key])):
            raise ModelFileError(f'{weights}: tensor {key!r} contains NaN or inf')
    net.load_state_dict({k: v.float() for k, v in state.items()})
    metadata = {}
    if meta_path.is_file():
        try:
            metadata = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise ModelFileError(f'cannot read model metadata {meta_path}: {exc}') from exc
    return PoseModel(net, metadata)


def default_model_dir():
    """Locate the shipped ``models/`` directory.

    Order: ``$NLML_HPE_MODEL_DIR``; the source tree (editable install); the
    install prefix ``share/nlml_hpe/models`` (pip or colcon); the ament index.
    """
    import os
    import sys

    candidates = []
    if os.environ.get('NLML_HPE_MODEL_DIR'):
        candidates.append(Path(os.environ['NLML_HPE_MODEL_DIR']))
    candidates.append(Path(__file__).resolve().parents[2] / 'models')
    candidates.append(Path(sys.prefix) / 'share' / 'nlml_hpe' / 'models')
    try:
        from ament_index_python.packages import get_package_share_directory
        candidates.append(Path(get_package_share_directory('nlml_hpe')) / 'models')
    except Exception:  # noqa: BLE001 - ament index absent or package not installed
        pass
    for cand in candidates:
        if (cand / WEIGHTS_NAME).is_file():
            return cand
    return candidates[0] if os.environ.get('NLML_HPE_MODEL_DIR') else candidates[1]
