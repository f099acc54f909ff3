"""Real MediaPipe Face Mesh through nlml_hpe.landmarks."""

import numpy as np
import pytest

from nlml_hpe.benchmark import face_sequence, read_rgb
from nlml_hpe.landmarks import LandmarkExtractor


@pytest.fixture
def face_rgb(aflw_dir):
    return read_rgb(aflw_dir / 'image00008.jpg')


def test_extract_one_face(face_rgb):
    with LandmarkExtractor() as ex:
        faces, scores = ex.extract_with_scores(face_rgb)
    assert len(faces) == 1
    lm = faces[0]
    assert lm.shape == (468, 3) and lm.dtype == np.float64
    h, w = face_rgb.shape[:2]
    # Pixel coordinates: the nose tip lies inside the image, far from the origin.
    assert 0 < lm[1, 0] < w and 0 < lm[1, 1] < h
    assert lm[:, 0].max() - lm[:, 0].min() > 0.1 * w
    assert 0.0 < scores[0] <= 1.0


def test_no_face_gives_empty_list():
    rng = np.random.default_rng(0)
    with LandmarkExtractor() as ex:
        assert ex.extract(np.zeros((240, 320, 3), np.uint8)) == []
        assert ex.extract(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)) == []


def test_grayscale_input_accepted(face_rgb):
    gray = face_rgb.mean(axis=2).astype(np.uint8)
    with LandmarkExtractor() as ex:
        assert len(ex.extract(gray)) == 1


def test_bad_input_and_arguments():
    with LandmarkExtractor() as ex:
        with pytest.raises(ValueError, match='empty'):
            ex.extract(np.zeros((0, 10, 3), np.uint8))
    with pytest.raises(ValueError, match='max_faces'):
        LandmarkExtractor(max_faces=0)
    with pytest.raises(ValueError, match='min_detection_confidence'):
        LandmarkExtractor(min_detection_confidence=1.5)


def test_closed_extractor_raises(face_rgb):
    ex = LandmarkExtractor()
    ex.close()
    ex.close()  # idempotent
    with pytest.raises(RuntimeError, match='closed'):
        ex.extract(face_rgb)


def test_streaming_tracks_a_moving_face(face_rgb):
    frames = list(face_sequence(face_rgb, 15))
    with LandmarkExtractor(streaming=True) as stream, LandmarkExtractor() as static:
        assert stream.streaming and not static.streaming
        for frame in frames:
            tracked = stream.extract(frame)
            detected = static.extract(frame)
            assert len(tracked) == 1 and len(detected) == 1
            # Tracking follows the face: same place as per-frame detection within a few px.
            err = np.median(np.linalg.norm(tracked[0][:, :2] - detected[0][:, :2], axis=1))
            assert err < 4.0


def test_fast_protobuf_decoding_is_exact(face_rgb):
    from mediapipe.framework.formats import landmark_pb2
    from mediapipe.python.solutions import face_mesh

    from nlml_hpe.landmarks import landmark_list_to_array

    with face_mesh.FaceMesh(static_image_mode=True) as mesh:
        face = mesh.process(face_rgb).multi_face_landmarks[0]
    slow = np.array([(p.x, p.y, p.z) for p in face.landmark])
    np.testing.assert_array_equal(landmark_list_to_array(face), slow)
    # Other layouts (visibility set, fields omitted) take the exact fallback.
    msg = landmark_pb2.NormalizedLandmarkList()
    msg.landmark.add(x=0.25, y=0.5, z=-0.125, visibility=0.9)
    msg.landmark.add(y=2.0)
    np.testing.assert_array_equal(landmark_list_to_array(msg),
                                  [[0.25, 0.5, -0.125], [0.0, 2.0, 0.0]])


@pytest.mark.parametrize('streaming', [False, True])
def test_direct_graph_calls_match_process(face_rgb, streaming):
    # The extractor drives MediaPipe's graph directly (skipping process()'s per-call
    # namedtuple); it must return exactly what process() returns, frame after frame.
    from mediapipe.python.solutions import face_mesh

    from nlml_hpe.landmarks import landmark_list_to_array

    frames = list(face_sequence(face_rgb, 6)) + [np.zeros((64, 64, 3), np.uint8)]
    n = 1 if streaming else 5  # streaming with 5, the tracker's capacity adapts (below)
    with LandmarkExtractor(max_faces=n, streaming=streaming) as ex, face_mesh.FaceMesh(
            static_image_mode=not streaming, max_num_faces=n, refine_landmarks=False) as mesh:
        assert ex._direct  # the pinned mediapipe has the attributes the direct path needs
        for frame in frames:
            ours = ex.extract(frame)
            ref = mesh.process(frame).multi_face_landmarks or []
            assert len(ours) == len(ref)
            h, w = frame.shape[:2]
            for a, b in zip(ours, ref):
                np.testing.assert_array_equal(a, landmark_list_to_array(b) * [w, h, w])


def test_streaming_tracker_follows_the_number_of_faces(aflw_dir):
    """Built for the faces in view; new ones are found within detection_interval frames."""
    import cv2

    a = cv2.resize(read_rgb(aflw_dir / 'image00008.jpg'), (200, 200))
    b = cv2.resize(read_rgb(aflw_dir / 'image01128.jpg'), (200, 200))

    def frame(i, second):
        out = np.full((480, 640, 3), 100, np.uint8)
        dy = int(round(5 * np.sin(i / 5)))
        out[140 + dy:340 + dy, 60:260] = a
        if second:
            out[140:340, 380:580] = b
        return out

    with pytest.raises(ValueError, match='detection_interval'):
        LandmarkExtractor(streaming=True, detection_interval=0)
    with LandmarkExtractor(max_faces=5, streaming=True, detection_interval=4) as ex:
        counts = [len(ex.extract(frame(i, False))) for i in range(8)]
        assert counts == [1] * 8 and ex.capacity == 1  # no per-frame detection for one face
        seen = [len(ex.extract(frame(i, True))) for i in range(8, 16)]
        assert seen[-1] == 2 and ex.capacity == 2
        assert seen.index(2) <= 4 + 1, seen  # within detection_interval + 1 frames
        assert [len(ex.extract(frame(i, False))) for i in range(16, 19)] == [1, 1, 1]
        assert ex.capacity == 1
        assert ex.extract(np.full((480, 640, 3), 100, np.uint8)) == []
        assert len(ex.extract(frame(20, False))) == 1
    with LandmarkExtractor(max_faces=1, streaming=True) as single:
        assert [len(single.extract(frame(i, True))) for i in range(6)] == [1] * 6
