"""Headless face renderer (moderngl over EGL) and the matching pinhole projection.

Camera model shared by :class:`Renderer` and :func:`project`: a pinhole camera
at the origin of the *viewer frame* (x right, y up, z toward the viewer) looking
down -z, focal length ``focal`` pixels, principal point at the image centre.
The head frame's origin sits at ``distance`` cm in front of the camera, shifted
so that it appears ``offset_px`` pixels from the image centre; ``rotation`` is
the head->viewer rotation of :func:`nlml_hpe.geometry.euler_to_matrix`.

Image coordinates are MediaPipe-like (what :func:`nlml_hpe.features.to_pixel_coords`
gives): ``x`` px to the right, ``y`` px down, ``z`` = camera depth relative to the
head origin in pixels at the head's distance (``(depth - distance) * focal /
distance``, smaller = closer), times ``z_scale`` (MediaPipe's z calibration, see
:mod:`training.correspondence`).

Appearance (:func:`ict_appearance`): skin-coloured Lambert shading, darker lips
and brows, eyeballs painted by angle from the eye axis (sclera, iris, pupil),
grey background, no noise -- what a probe found MediaPipe detects reliably.
"""

import numpy as np

#: ICT-FaceKit vertex ranges (inclusive start, exclusive stop), from its README.
ICT_RANGES = {
    'face': (0, 9409), 'head_neck': (9409, 11248), 'mouth_socket': (11248, 13294),
    'eye_socket_left': (13294, 13678), 'eye_socket_right': (13678, 14062),
    'gums_tongue': (14062, 17039), 'teeth': (17039, 21451),
    'eyeball_left': (21451, 23021), 'eyeball_right': (23021, 24591),
}
#: Parts drawn by the renderer (the lacrimal, blend, occlusion and eyelash
#: shells are transparent overlays in the original model and are skipped).
ICT_DRAWN = ('face', 'head_neck', 'mouth_socket', 'eye_socket_left', 'eye_socket_right',
             'gums_tongue', 'teeth', 'eyeball_left', 'eyeball_right')

SKIN = (0.80, 0.60, 0.50)
LIPS = (0.62, 0.34, 0.32)
BROWS = (0.25, 0.18, 0.14)
SCLERA = (0.92, 0.90, 0.88)
IRIS = (0.30, 0.22, 0.15)
PUPIL = (0.03, 0.03, 0.03)
MOUTH = (0.30, 0.12, 0.12)
TEETH = (0.90, 0.88, 0.82)
BACKGROUND = (0.5, 0.5, 0.5)

_VERT = """
#version 330
uniform vec2 focal_ndc;
uniform vec2 near_far;
in vec3 in_view;
in vec3 in_normal;
in vec3 in_colour;
in vec3 in_head;
out vec3 v_normal;
out vec3 v_colour;
out vec3 v_head;
void main() {
    float depth = -in_view.z;
    float n = near_far.x, f = near_far.y;
    gl_Position = vec4(focal_ndc.x * in_view.x, focal_ndc.y * in_view.y,
                       ((f + n) * depth - 2.0 * f * n) / (f - n), depth);
    v_normal = in_normal;
    v_colour = in_colour;
    v_head = in_head;
}
"""
_FRAG = """
#version 330
uniform vec3 light;
in vec3 v_normal;
in vec3 v_colour;
in vec3 v_head;
layout(location = 0) out vec4 out_colour;
layout(location = 1) out vec4 out_head;
void main() {
    vec3 n = normalize(v_normal);
    float lambert = max(dot(n, light), 0.0);
    out_colour = vec4(v_colour * (0.35 + 0.65 * lambert), 1.0);
    out_head = vec4(v_head, 1.0);
}
"""


def camera_centre(distance, focal, offset_px):
    """Viewer-frame position ``(..., 3)`` of the head origin for the given camera."""
    distance = np.asarray(distance, float)
    focal = np.asarray(focal, float)
    off = np.asarray(offset_px, float)
    return np.stack(np.broadcast_arrays(off[..., 0] * distance / focal,
                                        -off[..., 1] * distance / focal, -distance), -1)


def project(points_cm, rotation, distance, focal, size, offset_px=(0.0, 0.0), z_scale=1.0):
    """Project head-frame points to MediaPipe-like pixel landmarks.

    ``points_cm`` ``(..., N, 3)``; ``rotation`` ``(..., 3, 3)`` head->viewer;
    ``distance`` (cm), ``focal`` (px) scalars or ``(...)`` arrays; ``size`` =
    ``(width, height)``; ``offset_px`` ``(..., 2)``.  Returns ``(..., N, 3)``:
    x px, y px (down), z px-scale (see the module docstring).
    """
    width, height = size
    pts = np.asarray(points_cm, float)
    rot = np.asarray(rotation, float)
    distance = np.asarray(distance, float)[..., None]
    focal = np.asarray(focal, float)[..., None]
    centre = camera_centre(distance[..., 0], focal[..., 0], offset_px)
    view = np.einsum('...ij,...kj->...ki', rot, pts) + centre[..., None, :]
    depth = -view[..., 2]
    if np.any(depth <= 0):
        raise ValueError('points behind the camera: increase the distance')
    u = width / 2.0 + focal * view[..., 0] / depth
    v = height / 2.0 - focal * view[..., 1] / depth
    z = z_scale * (depth - distance) * focal / distance
    return np.stack([u, v, z], axis=-1)


def vertex_normals(verts, tris):
    """Area-weighted vertex normals ``(V, 3)``."""
    a, b, c = verts[tris[:, 0]], verts[tris[:, 1]], verts[tris[:, 2]]
    fn = np.cross(b - a, c - a)
    normals = np.zeros_like(verts)
    for k in range(3):
        for d in range(3):
            normals[:, d] += np.bincount(tris[:, k], fn[:, d], minlength=len(verts))
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


class Renderer:
    """Render a triangle mesh with per-vertex colours into an RGB image.

    ``triangles`` (F, 3) and ``colours`` (V, 3) in [0, 1] fix the mesh topology
    and appearance (see :func:`ict_appearance`); :meth:`render` takes the
    head-frame vertices (cm) of one face.  Needs moderngl with a working EGL
    (headless) or another OpenGL 3.3 context; raises ``RuntimeError`` if none.
    """

    def __init__(self, width, height, triangles, colours, background=BACKGROUND):
        if int(width) < 16 or int(height) < 16:
            raise ValueError(f'image size too small: {width}x{height}')
        self.size = (int(width), int(height))
        self.triangles = np.ascontiguousarray(triangles, dtype=np.int32)
        self.colours = np.asarray(colours, np.float32)
        if self.triangles.ndim != 2 or self.triangles.shape[1] != 3:
            raise ValueError(f'triangles must be (F, 3), got {self.triangles.shape}')
        self.background = tuple(float(c) for c in background)
        try:
            import moderngl
            self.ctx = moderngl.create_context(standalone=True, backend='egl')
        except Exception as exc:  # noqa: BLE001 - any backend failure means no renderer
            raise RuntimeError(f'no headless OpenGL (moderngl + EGL) context: {exc}') from exc
        ctx = self.ctx
        self.prog = ctx.program(vertex_shader=_VERT, fragment_shader=_FRAG)
        w, h = self.size
        self._colour = ctx.renderbuffer((w, h), 4)
        self._head = ctx.renderbuffer((w, h), 4, dtype='f4')
        self._depth = ctx.depth_renderbuffer((w, h))
        self.fbo = ctx.framebuffer([self._colour, self._head], self._depth)
        n_vert = len(self.colours)
        self._vbo = ctx.buffer(reserve=n_vert * 12 * 4)
        self._ibo = ctx.buffer(self.triangles.tobytes())
        self.vao = ctx.vertex_array(
            self.prog, [(self._vbo, '3f 3f 3f 3f', 'in_view', 'in_normal', 'in_colour',
                         'in_head')], index_buffer=self._ibo)
        ctx.enable(moderngl.DEPTH_TEST)
        self._light = np.array([0.25, 0.35, 1.0]) / np.linalg.norm([0.25, 0.35, 1.0])

    def render(self, vertices_cm, rotation, distance, focal, offset_px=(0.0, 0.0),
               return_head=False):
        """Render one face; returns RGB ``uint8 (H, W, 3)``.

        With ``return_head=True`` also returns the head-frame surface point seen
        at each pixel, ``float32 (H, W, 3)``, NaN on the background.
        """
        verts = np.asarray(vertices_cm, float)
        if verts.shape != (len(self.colours), 3):
            raise ValueError(f'expected vertices {(len(self.colours), 3)}, got {verts.shape}')
        rot = np.asarray(rotation, float)
        if rot.shape != (3, 3):
            raise ValueError(f'rotation must be 3x3, got {rot.shape}')
        if not (distance > 0 and focal > 0):
            raise ValueError('distance and focal must be positive')
        # Make this context current: creating or releasing another one (a second
        # Renderer, renderer_available()) unbinds it, and drawing would then hit garbage.
        with self.ctx:
            view = verts @ rot.T + camera_centre(distance, focal, offset_px)
            normals = vertex_normals(view, self.triangles)
            data = np.hstack([view, normals, self.colours, verts]).astype(np.float32)
            self._vbo.write(data.tobytes())
            w, h = self.size
            self.prog['focal_ndc'].value = (2.0 * focal / w, 2.0 * focal / h)
            self.prog['near_far'].value = (max(1.0, distance * 0.3), distance * 3.0 + 100.0)
            self.prog['light'].value = tuple(self._light)
            self.fbo.use()
            self.fbo.clear(*self.background, 1.0)
            self.vao.render()
            rgb = np.frombuffer(self.fbo.read(components=3, attachment=0), np.uint8)
            rgb = rgb.reshape(h, w, 3)[::-1].copy()
            if not return_head:
                return rgb
            head = np.frombuffer(self.fbo.read(components=4, attachment=1, dtype='f4'), np.float32)
            head = head.reshape(h, w, 4)[::-1]
            out = head[..., :3].copy()
            out[head[..., 3] < 0.5] = np.nan
            return rgb, out

    def release(self):
        """Free the GL objects."""
        if getattr(self, 'ctx', None) is not None:
            self.ctx.release()
            self.ctx = None


def renderer_available():
    """Return ``(True, '')`` if a headless OpenGL context works, else ``(False, why)``."""
    try:
        import moderngl
        ctx = moderngl.create_context(standalone=True, backend='egl')
        ctx.release()
        return True, ''
    except Exception as exc:  # noqa: BLE001
        return False, f'moderngl/EGL unavailable: {exc}'


def _paint_eye(colours, verts, start, stop):
    """Paint an eyeball shell: pupil / iris / sclera by angle from the eye axis."""
    ball = verts[start:stop]
    centre = ball.mean(0)
    apex = ball[np.argmax(ball[:, 2])]
    axis = (apex - centre) / np.linalg.norm(apex - centre)
    rel = ball - centre
    cosang = rel @ axis / np.maximum(np.linalg.norm(rel, axis=1), 1e-9)
    angle = np.degrees(np.arccos(np.clip(cosang, -1, 1)))
    colours[start:stop] = SCLERA
    colours[start:stop][angle < 38] = IRIS
    colours[start:stop][angle < 15] = PUPIL


def ict_appearance(neutral, triangles, landmark_verts):
    """Triangles to draw and per-vertex colours for the ICT-FaceKit topology.

    ``neutral`` (V, 3) the neutral head (cm, head frame), ``triangles`` all
    model triangles, ``landmark_verts`` the model's 68 iBUG landmark vertex ids
    (used only to outline lips and brows).  Returns ``(triangles, colours)``.
    """
    from matplotlib.path import Path as Polygon

    verts = np.asarray(neutral, float)
    if len(verts) < ICT_RANGES['eyeball_right'][1]:
        raise ValueError('ict_appearance needs the full ICT-FaceKit vertex set')
    colours = np.tile(np.array(SKIN, float), (len(verts), 1))
    lo, hi = ICT_RANGES['mouth_socket'][0], ICT_RANGES['gums_tongue'][1]
    colours[lo:hi] = MOUTH
    colours[slice(*ICT_RANGES['teeth'])] = TEETH
    for side in ('left', 'right'):
        colours[slice(*ICT_RANGES[f'eye_socket_{side}'])] = (0.35, 0.25, 0.22)
        _paint_eye(colours, verts, *ICT_RANGES[f'eyeball_{side}'])
    face = slice(*ICT_RANGES['face'])
    fv = verts[face]
    lm = verts[np.asarray(landmark_verts)]
    # Lips: inside the outer lip contour (iBUG 48-59) seen from the front.
    lips = Polygon(lm[48:60, :2]).contains_points(fv[:, :2])
    lips &= fv[:, 2] > lm[48:60, 2].min() - 1.0
    # Brows: within 0.35 cm (in x, y) of the brow polylines (iBUG 17-21, 22-26).
    brows = np.zeros(len(fv), bool)
    for a, b in ((17, 22), (22, 27)):
        line = lm[a:b]
        for p, q in zip(line[:-1], line[1:]):
            seg = q[:2] - p[:2]
            t = np.clip((fv[:, :2] - p[:2]) @ seg / (seg @ seg), 0, 1)
            near = np.linalg.norm(fv[:, :2] - (p[:2] + t[:, None] * seg), axis=1) < 0.35
            brows |= near & (fv[:, 2] > min(p[2], q[2]) - 1.5)
    colours[face][lips] = LIPS
    colours[face][brows] = BROWS
    keep = np.zeros(len(verts), bool)
    for part in ICT_DRAWN:
        keep[slice(*ICT_RANGES[part])] = True
    tris = np.asarray(triangles)
    tris = tris[np.all(keep[tris], axis=1)]
    return tris, colours


def make_renderer(source, cfg_faces, size):
    """Build a :class:`Renderer` of ``size`` for a face source (ICT-FaceKit only).

    ``source`` is a :class:`training.faces.FaceSource`; ``cfg_faces['path']`` its
    model file (for the landmark vertices that outline lips and brows).
    """
    if source.name != 'ict':
        raise ValueError(f'rendering needs the ICT-FaceKit source, not {source.name!r}')
    with np.load(cfg_faces['path'], allow_pickle=False) as data:
        landmark_verts = data['idx_to_landmark_verts']
    tris, colours = ict_appearance(source.neutral, source.triangles, landmark_verts)
    return Renderer(size[0], size[1], tris, colours)
