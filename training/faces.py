"""Stage 1 -- faces: sample synthetic identities (and expressions) from a face model.

The default source is the ICT-FaceKit morphable model (MIT): a random identity is
``neutral + sum_k N(0, identity_scale) * mode_k``; expressions are small random
weights on a few of its 53 ARKit blendshapes, drawn per sample by the landmarks
stage.  The paper used FaceScape, which needs a licence; other sources plug in by
implementing :class:`FaceSource` and registering it in :data:`SOURCES`.

Artifact ``faces/faces.npz``: identity coefficients of the training and held-out
identities plus the source description; ``faces/examples.png`` shows a few faces.
"""

from pathlib import Path
import time

import numpy as np

from .render import make_renderer, renderer_available


class FaceSource:
    """A face model in a fixed mesh topology.

    ``neutral`` (V, 3), ``identity_modes`` (K, V, 3) and ``expression_modes``
    (E, V, 3) in centimetres, head frame x = subject's left, y up, z out of the
    face; ``triangles`` (F, 3) vertex indices.
    """

    name = 'abstract'
    neutral = identity_modes = expression_modes = triangles = None
    expression_names = ()

    def vertices(self, identity_coeffs, expression_weights=None, index=None):
        """Vertices ``(V, 3)`` (or only ``index``) for given coefficients."""
        idx = slice(None) if index is None else index
        verts = self.neutral[idx] + np.tensordot(identity_coeffs, self.identity_modes[:, idx], 1)
        if expression_weights is not None and len(self.expression_modes):
            verts = verts + np.tensordot(expression_weights, self.expression_modes[:, idx], 1)
        return verts


class ICTFaceKit(FaceSource):
    """The ICT-FaceKit model from ``ict_facekit.npz`` (quads split into triangles)."""

    name = 'ict'

    def __init__(self, path):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f'ICT-FaceKit model not found: {path}')
        with np.load(path, allow_pickle=False) as data:
            self.neutral = data['neutral'].astype(np.float64)
            self.identity_modes = data['identity_modes'].astype(np.float64)
            self.expression_modes = data['expression_modes'].astype(np.float64)
            self.expression_names = tuple(str(n) for n in data['expression_names'])
            quads = data['faces'].astype(np.int64)
        self.triangles = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])


class MeshDirectory(FaceSource):
    """Scans in a common topology: ``*.npy`` vertex arrays (V, 3) in cm + ``triangles.npy``.

    Identities are the scans themselves (``identity_coeffs`` is a one-hot
    selector), so FaceScape or other registered scans can be used by pointing
    ``faces.path`` at such a directory.
    """

    name = 'mesh_dir'

    def __init__(self, path):
        path = Path(path)
        files = sorted(p for p in path.glob('*.npy') if p.name != 'triangles.npy')
        if not files or not (path / 'triangles.npy').is_file():
            raise FileNotFoundError(f'{path}: expected *.npy meshes and triangles.npy')
        scans = np.stack([np.load(p, allow_pickle=False) for p in files]).astype(np.float64)
        self.neutral = scans.mean(0)
        self.identity_modes = scans - self.neutral
        self.expression_modes = np.zeros((0,) + self.neutral.shape)
        self.triangles = np.load(path / 'triangles.npy', allow_pickle=False).astype(np.int64)


SOURCES = {'ict': ICTFaceKit, 'mesh_dir': MeshDirectory}


def load_source(cfg_faces):
    """Instantiate the configured :class:`FaceSource`."""
    kind = cfg_faces.get('source', 'ict')
    if kind not in SOURCES:
        raise ValueError(f'unknown face source {kind!r}; known: {sorted(SOURCES)}')
    return SOURCES[kind](cfg_faces['path'])


def sample_identities(source, n, rng, scale=1.0):
    """Identity coefficients ``(n, K)``: N(0, scale) for a morphable model, one-hot for scans."""
    k = len(source.identity_modes)
    if isinstance(source, MeshDirectory):
        return np.eye(k)[rng.integers(0, k, n)]
    return rng.normal(0.0, scale, (n, k))


def sample_expressions(source, n, rng, max_weight, n_active):
    """Expression weights ``(n, E)``: ``n_active`` random blendshapes at U(0, max_weight)."""
    e = len(source.expression_modes)
    weights = np.zeros((n, e))
    if e == 0 or max_weight <= 0 or n_active <= 0:
        return weights
    for row in weights:
        active = rng.choice(e, size=min(n_active, e), replace=False)
        row[active] = rng.uniform(0.0, max_weight, len(active))
    return weights


def load_faces(out_dir):
    """Read the faces artifact: dict with ``train_coeffs``, ``test_coeffs``."""
    with np.load(Path(out_dir) / 'faces.npz', allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _render_examples(source, fcfg, coeffs, rng, path):
    """Render a few identities (with random expressions) at small poses; False if no GL."""
    from nlml_hpe.geometry import euler_to_matrix

    if source.name != 'ict' or not renderer_available()[0]:
        return False
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    ecfg = fcfg.get('expressions', {}) or {}
    n = min(6, len(coeffs))
    expr = sample_expressions(source, n, rng, float(ecfg.get('max_weight', 0.0)),
                              int(ecfg.get('n_active', 0)))
    renderer = make_renderer(source, fcfg, (320, 320))
    fig, axes = plt.subplots(1, n, figsize=(2.2 * n, 2.4))
    for i, ax in enumerate(np.atleast_1d(axes)):
        rot = euler_to_matrix(0.0, (-1) ** i * 20.0 * (i % 3) / 2, 0.0)
        ax.imshow(renderer.render(source.vertices(coeffs[i], expr[i]), rot, 60.0, 900.0))
        ax.axis('off')
    renderer.release()
    fig.suptitle('example identities with random expressions (rendered)', fontsize=9)
    fig.savefig(path, dpi=90, bbox_inches='tight')
    plt.close(fig)
    return True


def _plot_examples(source, coeffs, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    n = min(6, len(coeffs))
    fig, axes = plt.subplots(1, n, figsize=(2.2 * n, 2.6))
    for ax, c in zip(np.atleast_1d(axes), coeffs[:n]):
        v = source.vertices(c)
        front = v[:, 2] > np.percentile(v[:, 2], 40)
        ax.scatter(v[front, 0], v[front, 1], s=0.05, c=v[front, 2], cmap='copper')
        ax.set_aspect('equal')
        ax.axis('off')
    fig.suptitle('example training identities (frontal, coloured by depth)')
    fig.savefig(path, dpi=90, bbox_inches='tight')
    plt.close(fig)


def run(cfg, out_dir, inputs):
    """Stage entry point: sample identity coefficients and write ``faces.npz``."""
    t0 = time.time()
    fcfg = cfg['faces']
    source = load_source(fcfg)
    rng = np.random.default_rng(cfg.get('seed', 0))
    n_train, n_test = int(fcfg['n_identities']), int(fcfg.get('n_test_identities', 0))
    if n_train < 2:
        raise ValueError('faces.n_identities must be at least 2')
    scale = float(fcfg.get('identity_scale', 1.0))
    coeffs = sample_identities(source, n_train + n_test, rng, scale)
    np.savez(out_dir / 'faces.npz', train_coeffs=coeffs[:n_train], test_coeffs=coeffs[n_train:],
             source=np.array(source.name), identity_scale=np.array(scale))
    rendered = _render_examples(source, fcfg, coeffs, np.random.default_rng(rng.integers(2**31)),
                                out_dir / 'examples.png')
    if not rendered:
        _plot_examples(source, coeffs, out_dir / 'examples.png')
    (out_dir / 'report.md').write_text(
        f'# faces\n\nsource: {source.name} ({fcfg["path"]})\n\n'
        f'- training identities: {n_train}\n- held-out identities: {n_test}\n'
        f'- identity coefficients ~ N(0, {scale}) over {coeffs.shape[1]} modes\n'
        f'- expressions: up to {fcfg.get("expressions", {}).get("n_active", 0)} blendshapes '
        f'per sample at U(0, {fcfg.get("expressions", {}).get("max_weight", 0)}) '
        '(drawn by the landmarks stage)\n\n![examples](examples.png)\n')
    return {'n_train': n_train, 'n_test': n_test, 'seconds': round(time.time() - t0, 2)}
