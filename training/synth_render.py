"""MediaPipe on renders of synthetic samples, in worker processes.

:func:`render_mediapipe` renders samples of the landmarks stage (identity,
expression, pose, camera) and reads them with the project's landmark stage;
each worker process has its own EGL context and landmark models.
"""

import multiprocessing

import numpy as np
from tqdm import tqdm

from nlml_hpe.geometry import euler_to_matrix

from .correspondence import to_head_frame
from .faces import load_source
from .render import make_renderer

#: The renderer, landmark extractor and face model of this worker process.
_WORKER = {}


def _init_worker(cfg_faces, corr, size):
    from nlml_hpe.landmarks import LandmarkExtractor

    source = load_source(cfg_faces)
    _WORKER.update(source=source, corr=corr, renderer=make_renderer(source, cfg_faces, size),
                   extractor=LandmarkExtractor(max_faces=1))


def _render_chunk(task):
    """Render + MediaPipe for a chunk of samples; NaN rows where nothing was found."""
    coeffs, expr, angles, focal, distance, offset = task
    source, corr = _WORKER['source'], _WORKER['corr']
    out = np.full((len(coeffs), 468, 3), np.nan, np.float32)
    for i in range(len(coeffs)):
        verts = to_head_frame(source.vertices(coeffs[i], expr[i]), corr)
        rot = euler_to_matrix(*angles[i])
        rgb = _WORKER['renderer'].render(verts, rot, distance[i], focal[i], offset[i])
        found = _WORKER['extractor'].extract(rgb)
        if found:
            out[i] = found[0]
    return out


def render_mediapipe(cfg_faces, corr, size, coeffs, expr, angles, cams, workers=2,
                     chunk=24, desc='render + MediaPipe'):
    """MediaPipe landmarks ``(n, 468, 3)`` of rendered samples (NaN where not detected).

    ``coeffs`` (n, K) identity coefficients, ``expr`` (n, E), ``angles`` (n, 3)
    (pitch, yaw, roll), ``cams`` from
    :meth:`training.synth_landmarks.Projector.cameras`.  Uses
    ``workers`` processes (each with its own EGL context and MediaPipe graph).
    """
    n = len(coeffs)
    tasks = [(coeffs[s:s + chunk], expr[s:s + chunk], angles[s:s + chunk],
              cams['focal'][s:s + chunk], cams['distance'][s:s + chunk],
              cams['offset'][s:s + chunk]) for s in range(0, n, chunk)]
    bar = tqdm(total=n, desc=desc, unit='render')
    results = []
    if workers <= 1:
        _init_worker(cfg_faces, corr, size)
        try:
            for t in tasks:
                results.append(_render_chunk(t))
                bar.update(len(t[0]))
        finally:
            _WORKER['renderer'].release()
            _WORKER['extractor'].close()
            _WORKER.clear()
    else:
        ctx = multiprocessing.get_context('spawn')
        with ctx.Pool(workers, _init_worker, (cfg_faces, corr, size)) as pool:
            for res in pool.imap(_render_chunk, tasks):
                results.append(res)
                bar.update(len(res))
    bar.close()
    return np.concatenate(results) if results else np.zeros((0, 468, 3), np.float32)
