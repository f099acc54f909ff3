"""The NLML-HPE networks as a torch module, for training.

:class:`NLMLNet` has the architecture of :mod:`nlml_hpe.model` (its sizes and
tensor names come from there): an encoder MLP to three 3-d latents and one
head per angle.  The run time never imports this module: it runs the same
weights in numpy (:class:`nlml_hpe.model.PoseModel`), written by
:func:`nlml_hpe.model.save_model` from :func:`state_dict_to_numpy`.
"""

import torch
from torch import nn

from nlml_hpe.features import N_FEATURES
from nlml_hpe.model import ENCODER_SIZES, HEAD_SIZES, LATENT_ANGLES


def mlp(sizes, last_hidden_act=nn.ReLU):
    """``nn.Sequential`` of Linear layers of ``sizes`` with ReLU between.

    The last hidden layer's activation is ``last_hidden_act``.  Linear layers
    are numbered 0, 2, 4, ... (the tensor names :mod:`nlml_hpe.model` expects).
    """
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
        self.encoder = mlp(ENCODER_SIZES, last_hidden_act=nn.Tanh)
        self.heads = nn.ModuleList(mlp(HEAD_SIZES) for _ in LATENT_ANGLES)
        self.register_buffer('feature_mean', torch.zeros(N_FEATURES))
        self.register_buffer('feature_std', torch.ones(N_FEATURES))

    def encode(self, features):
        """Map features ``(N, 1404)`` to latents ``(N, 9)``."""
        return self.encoder((features - self.feature_mean) / self.feature_std)

    def decode(self, latents):
        """Map latents ``(N, 9)`` to ``(N, 3)`` radians, ordered yaw, pitch, roll."""
        return torch.cat([head(latents[:, 3 * i:3 * i + 3])
                          for i, head in enumerate(self.heads)], dim=1)

    def forward(self, features):
        """Return ``(latents, angles)``; angles are radians ordered yaw, pitch, roll."""
        latents = self.encode(features)
        return latents, self.decode(latents)


def state_dict_to_numpy(net):
    """Return a torch module's state dict as float32 numpy arrays."""
    return {k: v.detach().cpu().float().numpy() for k, v in net.state_dict().items()}
