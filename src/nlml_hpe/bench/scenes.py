"""Rendered heads for the benchmarks: ICT-FaceKit identities at any pose and expression.

The face-free scenery they are put in front of (rooms, a moving camera) is
:mod:`nlml_hpe.scenery`'s, which needs no training package.

* :class:`HeadKit`: ICT-FaceKit identities rendered with the training renderer
  (``training/render.py``, moderngl over EGL) at a pose, position and
  expression; returns the image, the head's pixel mask and its 468 projected
  MediaPipe-like landmarks (the ground-truth box is their bounding box, the
  same definition as the estimator's face box).
* :func:`held_out_identities`: identity coefficients drawn from the training
  distribution (N(0, 1) per ICT-FaceKit mode) from a random stream of this
  benchmark's own; the training pipeline draws its training and held-out
  identities from ``default_rng(seed)`` (``training/faces.py``), a different
  stream, so none of these faces was seen in training or calibration.

``training`` is a folder beside ``src/`` in a source checkout;
:func:`import_training` finds it or says why it cannot.
"""

import importlib
from pathlib import Path
import sys

import numpy as np

#: Stream key of the benchmark's identities (SeedSequence entropy beside the seed).
IDENTITY_STREAM = 0x7472616B


def import_training():
    """Return the ``training`` package (source checkout), or raise RuntimeError with why not."""
    repo = Path(__file__).resolve().parents[3]
    if (repo / 'training' / '__init__.py').is_file() and str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    try:
        return importlib.import_module('training')
    except ImportError as exc:
        raise RuntimeError('rendered sequences need the training package (training/ beside '
                           f'src/ in a source checkout): {exc}') from exc


# ----------------------------------------------------------------------- rendered heads

def held_out_identities(n_modes, n, seed):
    """Identity coefficients ``(n, n_modes)`` ~ N(0, 1) from the benchmark's own stream."""
    rng = np.random.default_rng([int(seed), IDENTITY_STREAM])
    return rng.normal(0.0, 1.0, (int(n), int(n_modes)))


class HeadKit:
    """Renders ICT-FaceKit heads (any identity and expression) for benchmark frames.

    One GL renderer per frame size; :meth:`release` frees them.  Raises
    RuntimeError (with the reason) when the training package, the model file
    or a headless OpenGL context is unavailable.
    """

    def __init__(self, ict_npz):
        import_training()
        render = importlib.import_module('training.render')
        ok, why = render.renderer_available()
        if not ok:
            raise RuntimeError(why)
        faces = importlib.import_module('training.faces')
        self._corr_mod = importlib.import_module('training.correspondence')
        self._project = render.project
        self.source = faces.ICTFaceKit(ict_npz)
        self._cfg = {'path': str(ict_npz)}
        with np.load(self._corr_mod.SHIPPED, allow_pickle=False) as data:
            self.corr = {k: data[k] for k in data.files}
        self.expression_names = self.source.expression_names
        self._renderers = {}

    @property
    def n_identity_modes(self):
        """Number of identity coefficients."""
        return len(self.source.identity_modes)

    def base(self, identity):
        """Return an identity at rest: its model-frame and landmark-triangle vertices."""
        ident = np.asarray(identity, float)
        flat = self.corr['tri_vertices'].ravel()
        return {'vertices': self.source.vertices(ident),
                'landmark_vertices': self.source.vertices(ident, index=flat)}

    def shape(self, base, expression):
        """Head-frame ``(vertices (V, 3), 468 landmark points (468, 3))`` (cm).

        The landmark points are :func:`training.correspondence.landmarks_of`'s,
        with the identity part computed once in :meth:`base`.
        """
        expr = np.asarray(expression, float)
        active = np.flatnonzero(expr)
        verts, lmv = base['vertices'], base['landmark_vertices']
        if len(active):
            modes = self.source.expression_modes[active]
            verts = verts + np.tensordot(expr[active], modes, 1)
            flat = self.corr['tri_vertices'].ravel()
            lmv = lmv + np.tensordot(expr[active], modes[:, flat], 1)
        points = np.einsum('lkd,lk->ld', lmv.reshape(468, 3, 3), self.corr['bary'])
        to_head = self._corr_mod.to_head_frame
        return to_head(verts, self.corr), to_head(points, self.corr)

    def _renderer(self, size):
        if size not in self._renderers:
            self._renderers[size] = self._corr_mod.make_renderer(self.source, self._cfg, size)
        return self._renderers[size]

    def render(self, size, vertices, points, rotation, distance, focal, offset_px):
        """Return ``(rgb uint8, mask bool, landmarks (468, 3) px)`` of one head.

        ``rotation``: head-to-viewer; ``distance`` (cm) and ``offset_px``: where
        the head origin is (see :mod:`training.render`); ``mask``: the pixels the
        head covers (its depth is written there).
        """
        r = self._renderer(tuple(size))
        rgb = r.render(vertices, rotation, float(distance), float(focal), offset_px)
        with r.ctx:
            depth = np.frombuffer(r.fbo.read(components=1, attachment=-1, dtype='f4'),
                                  np.float32)
        w, h = size
        mask = depth.reshape(h, w)[::-1] < 1.0
        lm = self._project(points, rotation, float(distance), float(focal), tuple(size),
                           offset_px)
        return rgb, mask, lm

    def head(self, size=(640, 480), identity=None, expression=None):
        """Return one identity (default: the mean face) ready to render: a :class:`Head`."""
        ident = np.zeros(self.n_identity_modes) if identity is None else identity
        expr = np.zeros(len(self.expression_names)) if expression is None else expression
        return Head(self, tuple(size), *self.shape(self.base(ident), expr))

    def release(self):
        """Free the GL contexts."""
        for r in self._renderers.values():
            r.release()
        self._renderers.clear()


class Head:
    """One head of a :class:`HeadKit`, rendered at any pose (tests and tools).

    ``render(pitch, yaw, roll)`` (degrees, :func:`nlml_hpe.geometry.euler_to_matrix`)
    gives the RGB frame of the head at ``distance`` cm, ``focal`` px (default:
    the frame's larger side), ``offset_px`` from the frame's centre.
    """

    def __init__(self, kit, size, vertices, points):
        self.kit, self.size, self.vertices, self.points = kit, size, vertices, points

    def frame(self, pitch, yaw, roll, distance=60.0, focal=None, offset_px=(0.0, 0.0)):
        """Return ``(rgb, mask, landmarks (468, 3) px)`` of the head (:meth:`HeadKit.render`)."""
        from ..geometry import euler_to_matrix

        focal = float(max(self.size)) if focal is None else float(focal)
        return self.kit.render(self.size, self.vertices, self.points,
                               euler_to_matrix(pitch, yaw, roll), distance, focal, offset_px)

    def render(self, pitch, yaw, roll, distance=60.0, focal=None, offset_px=(0.0, 0.0)):
        """Return the RGB ``uint8 (H, W, 3)`` frame of the head at (pitch, yaw, roll)."""
        return self.frame(pitch, yaw, roll, distance, focal, offset_px)[0]
