"""MediaPipe Face Mesh wrapper: RGB image -> 468 landmarks per face, in pixel-like units."""

import numpy as np

from .features import N_LANDMARKS, to_pixel_coords
from .images import as_rgb_uint8

# Wire format of one NormalizedLandmark with x, y, z set (and no visibility or
# presence): field-1 tag, length 15, then tag + little-endian float32 for x, y, z.
_RECORD = 17
_TAGS = {0: 0x0A, 1: 15, 2: 0x0D, 7: 0x15, 12: 0x1D}
_FLOAT_BYTES = np.r_[3:7, 8:12, 13:17]


def landmark_list_to_array(landmark_list):
    """Convert a MediaPipe ``NormalizedLandmarkList`` to an ``(n, 3)`` float64 array.

    Fast path: decode the serialized protobuf with numpy (~20x faster than
    reading 468 messages attribute by attribute); any other layout falls back to
    the attribute loop, so the result is always exact.
    """
    raw = landmark_list.SerializeToString()
    if raw and len(raw) % _RECORD == 0:
        buf = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _RECORD)
        if all(np.all(buf[:, col] == val) for col, val in _TAGS.items()):
            floats = np.ascontiguousarray(buf[:, _FLOAT_BYTES]).view('<f4')
            return floats.astype(np.float64)
    return np.array([(p.x, p.y, p.z) for p in landmark_list.landmark],
                    dtype=np.float64).reshape(-1, 3)


class LandmarkExtractor:
    """Detect faces and their 468 Face Mesh landmarks (``refine_landmarks=False``).

    ``streaming=False`` runs detection on every image (``static_image_mode=True``);
    ``streaming=True`` lets MediaPipe track the landmarks from frame to frame
    (``static_image_mode=False``), which is much faster on video but assumes the
    frames form one sequence.

    MediaPipe's Face Mesh solution reports no per-face confidence, so
    :meth:`extract_with_scores` returns as score the fraction of the 468
    landmarks that lie inside the image: 1.0 for a fully visible face, lower for
    faces cut by the image border.  It is a visibility measure, not a
    detection probability (every returned face already passed MediaPipe's
    ``min_detection_confidence``).
    """

    def __init__(self, max_faces=5, min_detection_confidence=0.5,
                 min_tracking_confidence=0.5, streaming=False):
        if int(max_faces) < 1:
            raise ValueError(f'max_faces must be >= 1, got {max_faces}')
        for name, val in (('min_detection_confidence', min_detection_confidence),
                          ('min_tracking_confidence', min_tracking_confidence)):
            if not 0.0 <= float(val) <= 1.0:
                raise ValueError(f'{name} must be in [0, 1], got {val}')
        from mediapipe.python.solutions import face_mesh

        self.max_faces = int(max_faces)
        self.streaming = bool(streaming)
        self._mesh = face_mesh.FaceMesh(
            static_image_mode=not self.streaming,
            max_num_faces=self.max_faces,
            refine_landmarks=False,
            min_detection_confidence=float(min_detection_confidence),
            min_tracking_confidence=float(min_tracking_confidence))
        # SolutionBase.process() builds a new namedtuple class on every call (about
        # 0.15 ms a frame); the same graph calls, made directly, skip that.
        self._direct = all(hasattr(self._mesh, a) for a in (
            '_graph', '_graph_outputs', '_input_stream_type_info', '_output_stream_type_info',
            '_make_packet', '_get_packet_content', '_simulated_timestamp')) and len(
            self._mesh._input_stream_type_info or ()) == 1

    def extract(self, rgb):
        """Return a list of ``(468, 3)`` float64 landmark arrays (``x*W, y*H, z*W``)."""
        return self.extract_with_scores(rgb)[0]

    def extract_with_scores(self, rgb):
        """Return ``(landmarks list, scores list)``; see the class docstring for the score."""
        if self._mesh is None:
            raise RuntimeError('LandmarkExtractor is closed')
        rgb = as_rgb_uint8(rgb)
        h, w = rgb.shape[:2]
        faces, scores = [], []
        for face in self._landmark_lists(rgb) or ():
            pts = landmark_list_to_array(face)
            if pts.shape != (N_LANDMARKS, 3):
                continue
            inside = np.mean((pts[:, 0] >= 0) & (pts[:, 0] <= 1) &
                             (pts[:, 1] >= 0) & (pts[:, 1] <= 1))
            faces.append(to_pixel_coords(pts, w, h))
            scores.append(float(inside))
        return faces, scores

    def _landmark_lists(self, rgb):
        """MediaPipe's ``multi_face_landmarks`` for one RGB image (``None``: no face).

        What ``FaceMesh.process(rgb).multi_face_landmarks`` returns, through the
        same graph calls as ``SolutionBase.process`` (mediapipe 0.10.21) when
        they are there (``test/test_landmarks.py`` checks that both agree).
        """
        mesh = self._mesh
        if not self._direct:
            return mesh.process(rgb).multi_face_landmarks
        outputs = mesh._graph_outputs
        outputs.clear()
        stream, kind = next(iter(mesh._input_stream_type_info.items()))
        mesh._simulated_timestamp += 33333  # as process(): 30 fps video time
        mesh._graph.add_packet_to_input_stream(
            stream=stream, packet=mesh._make_packet(kind, rgb).at(mesh._simulated_timestamp))
        mesh._graph.wait_until_idle()
        packet = outputs.get('multi_face_landmarks')
        if packet is None:
            return None
        return mesh._get_packet_content(mesh._output_stream_type_info['multi_face_landmarks'],
                                        packet)

    def close(self):
        """Release the MediaPipe graph (idempotent)."""
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
