"""The legacy MediaPipe Face Mesh graph (``mediapipe==0.10.21``): a test oracle and baseline.

Nothing at run time imports this module.  :class:`~nlml_hpe.landmarks.LandmarkExtractor`
runs the same face models itself (LiteRT); this wrapper of MediaPipe's own
``solutions.face_mesh`` graph stays only so that tests can show both give the
same landmarks and poses, and so the range and speed benchmarks can print it
as their baseline.  ``mediapipe`` is an optional test dependency (no aarch64
or CPython 3.13 wheel): :func:`available` says whether it can be imported.
"""

import numpy as np

from ..features import N_LANDMARKS, to_pixel_coords
from ..images import as_rgb_uint8
from ..options import EstimatorConfig

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


#: Streaming: frames between two searches for new faces while fewer than
#: ``max_faces`` are tracked (see :class:`LegacyLandmarkExtractor`).


def available():
    """Whether the legacy MediaPipe graph can be imported here."""
    try:
        from mediapipe.python.solutions import face_mesh  # noqa: F401
    except Exception:  # noqa: BLE001 - absent, or a release without solutions
        return False
    return True


class LegacyLandmarkExtractor:
    """Detect faces and their 468 Face Mesh landmarks (``refine_landmarks=False``).

    ``streaming=False`` runs detection on every image (``static_image_mode=True``);
    ``streaming=True`` lets MediaPipe track the landmarks from frame to frame
    (``static_image_mode=False``), which is much faster on video but assumes the
    frames form one sequence.

    Streaming with ``max_faces`` > 1: MediaPipe's tracking graph runs its face
    detector on *every* frame while it tracks fewer faces than it was built
    for (about 1.2 ms a frame here).  So the tracker is built for as many faces
    as it currently tracks (at least one; rebuilt, a few ms, when that number
    changes), and every ``detection_interval`` frames MediaPipe's face detector
    (the same short-range model) looks for faces the tracker does not follow;
    when it sees some, the tracker is rebuilt for them too, up to
    ``max_faces``.  A face that appears is tracked within
    ``detection_interval`` + 1 frames.  ``detection_interval=1`` looks on every
    frame.

    MediaPipe's Face Mesh solution reports no per-face confidence, so
    :meth:`extract_with_scores` returns as score the fraction of the 468
    landmarks that lie inside the image: 1.0 for a fully visible face, lower for
    faces cut by the image border.  It is a visibility measure, not a
    detection probability (every returned face already passed MediaPipe's
    ``min_detection_confidence``).
    """

    def __init__(self, max_faces=5, min_detection_confidence=0.5,
                 min_tracking_confidence=0.5, streaming=False,
                 detection_interval=EstimatorConfig.detection_interval):
        from ..landmarks import check_extractor_args

        check_extractor_args(max_faces, min_detection_confidence, min_tracking_confidence,
                             detection_interval)
        self.max_faces = int(max_faces)
        self.streaming = bool(streaming)
        self.detection_interval = int(detection_interval)
        self._conf = (float(min_detection_confidence), float(min_tracking_confidence))
        self._detector = None
        self._mirror = None
        self._since_search = 0
        #: Faces the tracking graph is built for (streaming; ``max_faces`` otherwise).
        self.capacity = self.max_faces
        self._mesh = self._new_mesh(self.capacity, static=not self.streaming)
        # SolutionBase.process() builds a new namedtuple class on every call (about
        # 0.15 ms a frame); the same graph calls, made directly, skip that.
        self._direct = all(hasattr(self._mesh, a) for a in (
            '_graph', '_graph_outputs', '_input_stream_type_info', '_output_stream_type_info',
            '_make_packet', '_get_packet_content', '_simulated_timestamp')) and len(
            self._mesh._input_stream_type_info or ()) == 1

    def _new_mesh(self, n_faces, static):
        from mediapipe.python.solutions import face_mesh

        return face_mesh.FaceMesh(static_image_mode=static, max_num_faces=n_faces,
                                  refine_landmarks=False,
                                  min_detection_confidence=self._conf[0],
                                  min_tracking_confidence=self._conf[1])

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
        for face in self._run(rgb) or ():
            pts = landmark_list_to_array(face)
            if pts.shape != (N_LANDMARKS, 3):
                continue
            inside = np.mean((pts[:, 0] >= 0) & (pts[:, 0] <= 1) &
                             (pts[:, 1] >= 0) & (pts[:, 1] <= 1))
            faces.append(to_pixel_coords(pts, w, h))
            scores.append(float(inside))
        return faces, scores

    def read_frame(self, rgb, *, mirror=False, camera_matrix=None, line_of_sight_deg=None,
                   camera=None):
        """Read one frame as :meth:`nlml_hpe.landmarks.LandmarkExtractor.read_frame` does.

        As the estimator used this graph: ``mirror`` runs the graph again on
        the mirrored image (its own tracker when streaming) and pairs its faces
        by box overlap.  Line-of-sight re-reading is not done here
        (``camera``, ``camera_matrix`` and ``line_of_sight_deg`` are ignored; no AFLW2000
        dev face is 10 deg off the optical axis).
        """
        from ..estimator import match_mirrored
        from ..landmarks import FrameReading

        rgb = as_rgb_uint8(rgb)
        faces, scores = self.extract_with_scores(rgb)
        mirrored = None
        if mirror:
            if self._mirror is None:
                self._mirror = LegacyLandmarkExtractor(
                    max_faces=self.max_faces, min_detection_confidence=self._conf[0],
                    min_tracking_confidence=self._conf[1], streaming=self.streaming,
                    detection_interval=self.detection_interval)
            found = self._mirror.extract(np.ascontiguousarray(rgb[:, ::-1]))
            twin = match_mirrored(faces, found, rgb.shape[1]) if faces else []
            mirrored = [None if j is None else found[j] for j in twin]
        return FrameReading(faces, scores, mirrored, [False] * len(faces))

    def look_ahead(self):
        """Do nothing: MediaPipe's graph runs its own detector within each frame."""

    def _run(self, rgb):
        """Landmark lists of one image; streaming, adapts the tracker's capacity."""
        tracked = self._landmark_lists(self._mesh, rgb) or []
        if not self.streaming or self.max_faces == 1:
            return tracked
        self._since_search += 1
        if max(len(tracked), 1) < self.capacity:  # faces left: track only the others
            self._rebuild(max(len(tracked), 1))
        elif (len(tracked) == self.capacity < self.max_faces
              and self._since_search >= self.detection_interval):
            # The tracker is full, so its own detector is off: look for new faces.
            self._since_search = 0
            new = self._count_new_faces(rgb, tracked)
            if new:  # the rebuilt tracker detects them all on the next frame
                self._rebuild(min(self.max_faces, len(tracked) + new))
        return tracked

    def _count_new_faces(self, rgb, tracked):
        """Faces MediaPipe's detector finds whose centre is in no tracked face's box."""
        if self._detector is None:
            from mediapipe.python.solutions import face_detection
            self._detector = face_detection.FaceDetection(
                model_selection=0, min_detection_confidence=self._conf[0])
        boxes = []
        for face in tracked:
            pts = landmark_list_to_array(face)
            boxes.append((*pts[:, :2].min(axis=0), *pts[:, :2].max(axis=0)))
        new = 0
        for det in self._detector.process(rgb).detections or ():
            box = det.location_data.relative_bounding_box
            cx, cy = box.xmin + box.width / 2, box.ymin + box.height / 2
            new += not any(x0 <= cx <= x1 and y0 <= cy <= y1 for x0, y0, x1, y1 in boxes)
        return new

    def _rebuild(self, capacity):
        """Replace the tracker by a fresh one for ``capacity`` faces (it detects at once)."""
        self._mesh.close()
        self._mesh = self._new_mesh(capacity, static=False)
        self.capacity = capacity

    def _landmark_lists(self, mesh, rgb):
        """MediaPipe's ``multi_face_landmarks`` for one RGB image (``None``: no face).

        What ``mesh.process(rgb).multi_face_landmarks`` returns, through the
        same graph calls as ``SolutionBase.process`` (mediapipe 0.10.21) when
        they are there (``test/test_landmarks.py`` checks that both agree).
        """
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
        """Release the MediaPipe graphs (idempotent)."""
        for name in ('_mesh', '_detector', '_mirror'):
            mesh = getattr(self, name, None)
            if mesh is not None:
                mesh.close()
                setattr(self, name, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
