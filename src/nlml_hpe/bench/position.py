"""Position accuracy on synthetic faces: ``nlml-hpe benchmark position``.

:func:`synthetic_accuracy` projects perturbed copies of MediaPipe's canonical
face and recovers their position with
:func:`nlml_hpe.position.estimate_position`; the figures quoted in
:mod:`nlml_hpe.position` come from it.
"""

import numpy as np

from ..camera import Camera
from ..geometry import euler_to_matrix, viewer_to_optical
from ..position import canonical_face_m, estimate_position


def synthetic_accuracy(n_trials=500, seed=0, width=640, height=480, focal=600.0,
                       scale_sd=0.07, shape_noise_m=0.002, pixel_noise=1.0,
                       rotation_noise_deg=3.0, distance_range=(0.4, 3.0)):
    """Measure :func:`estimate_position` on synthetic projections of perturbed faces.

    Each trial scales the canonical face by ``N(1, scale_sd)``, adds per-vertex
    noise (``shape_noise_m``), poses it (yaw +-50, pitch +-40, roll +-30 deg) at a
    random distance in ``distance_range`` inside the field of view, projects it
    with ``K`` (``focal``, centred), adds pixel noise, and recovers the position
    with the rotation perturbed by ``rotation_noise_deg`` (like a model error).
    Returns a dict of error statistics.
    """
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(seed)
    k = Camera.pinhole(focal, width, height).k
    base = canonical_face_m()
    err, rel, dist_err = [], [], []
    for _ in range(n_trials):
        pts = base * rng.normal(1.0, scale_sd) + rng.normal(0, shape_noise_m, base.shape)
        ang = rng.uniform([-40, -50, -30], [40, 50, 30])
        rot = viewer_to_optical(euler_to_matrix(*ang))
        z = rng.uniform(*distance_range)
        x = rng.uniform(-0.3, 0.3) * width / focal * z
        y = rng.uniform(-0.3, 0.3) * height / focal * z
        t = np.array([x, y, z])
        cam = pts @ rot.T + t
        uv = cam[:, :2] / cam[:, 2:] * focal + k[:2, 2]
        uv += rng.normal(0, pixel_noise, uv.shape)
        lm = np.column_stack([uv, np.zeros(len(uv))])
        noise = Rotation.from_rotvec(rng.normal(size=3) / np.sqrt(3) *
                                     np.radians(rotation_noise_deg)).as_matrix()
        t_hat = estimate_position(lm, noise @ rot, k)
        err.append(np.linalg.norm(t_hat - t))
        rel.append(np.linalg.norm(t_hat - t) / z)
        dist_err.append(abs(np.linalg.norm(t_hat) - np.linalg.norm(t)) / np.linalg.norm(t))
    err, rel, dist_err = map(np.asarray, (err, rel, dist_err))
    return {
        'trials': int(n_trials), 'scale_sd': scale_sd, 'shape_noise_m': shape_noise_m,
        'pixel_noise_px': pixel_noise, 'rotation_noise_deg': rotation_noise_deg,
        'distance_range_m': list(distance_range),
        'position_error_m_median': float(np.median(err)),
        'position_error_m_p95': float(np.percentile(err, 95)),
        'relative_error_median': float(np.median(rel)),
        'relative_error_p95': float(np.percentile(rel, 95)),
        'distance_relative_error_median': float(np.median(dist_err)),
    }
