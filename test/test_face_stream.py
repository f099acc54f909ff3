"""The ROS-free looking-at signal (nlml_hpe.face_stream)."""

import math

import numpy as np
import pytest

from nlml_hpe.face_stream import check_target, looking_at, target_offset_deg

# A face 1 m in front of the camera looking straight back at it: REP-155 axes (columns)
# in the optical frame, x out of the face = -z, y = the subject's left = +x, z up = -y.
FACING = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]])
HEAD = np.array([0.0, 0.0, 1.0])


def test_camera_target_is_the_gaze_offset():
    rot = FACING @ np.array([[math.cos(0.3), 0, math.sin(0.3)], [0, 1, 0],
                             [-math.sin(0.3), 0, math.cos(0.3)]])
    # The face turned 0.3 rad about its up axis looks 0.3 rad past the camera.
    assert target_offset_deg(rot, HEAD) == pytest.approx(math.degrees(0.3))


def test_target_beside_the_camera():
    # Gaze straight back at the camera; a target 20 cm to the side is atan(0.2) off.
    off = target_offset_deg(FACING, HEAD, (0.2, 0.0, 0.0))
    assert off == pytest.approx(math.degrees(math.atan(0.2)))
    assert not looking_at(off, HEAD, (0.2, 0.0, 0.0), threshold_deg=10.0)
    # A 20 cm radius widens the threshold by asin(0.2 / distance).
    assert looking_at(off, HEAD, (0.2, 0.0, 0.0), threshold_deg=10.0, tolerance_m=0.2)
    assert looking_at(90.0, HEAD, HEAD + 0.05, threshold_deg=10.0, tolerance_m=0.1)  # inside


@pytest.mark.parametrize('bad', [[0.0, 0.0], [0.0, 0.0, float('inf')], 'abc', [[0, 0, 0]]])
def test_bad_targets_are_refused(bad):
    with pytest.raises(ValueError, match='3 finite numbers'):
        check_target(bad)


class _Face:
    """The fields of nlml_hpe.estimator.FacePose that FaceStream reads."""

    def __init__(self, box, yaw_rad=0.0, position=None, score=0.9):
        self.box = box
        # Facing the camera, turned by yaw about the optical y axis.
        c, s = math.cos(yaw_rad), math.sin(yaw_rad)
        rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]) @ FACING
        from scipy.spatial.transform import Rotation

        self.quaternion = Rotation.from_matrix(rot).as_quat()
        self.position = position
        self.score = score


def test_stream_ids_positions_order_and_options():
    from nlml_hpe.face_stream import FaceStream

    stream = FaceStream(smoothing=False, default_distance_m=2.0, confirm_frames=1)
    k = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    left, right = (50, 100, 150, 200), (400, 100, 560, 260)
    faces, skipped = stream.update([_Face(left), _Face(right, position=[0.3, 0, 1.2])],
                                   0.0, (640, 480), k)
    assert skipped == 0 and [f.box for f in faces] == [right, left]  # largest first
    ids = {f.box: f.id for f in faces}
    assert faces[0].metric and np.allclose(faces[0].position, [0.3, 0, 1.2])
    assert not faces[1].metric and np.linalg.norm(faces[1].position) == pytest.approx(2.0)
    # Next frame, moved a little and listed in the other order: same ids.
    moved = [_Face((60, 104, 160, 204)), _Face((395, 98, 555, 258), position=[0.3, 0, 1.2])]
    faces, _ = stream.update(moved[::-1], 0.05, (640, 480), k)
    assert {f.box[0] < 300: f.id for f in faces} == {True: ids[left], False: ids[right]}
    # Without intrinsics every face is on its box ray at the default distance.
    faces, _ = stream.update(moved, 0.1, (640, 480))
    assert all(not f.metric for f in faces)
    # A non-finite pose is skipped and counted.
    bad = _Face(left)
    bad.quaternion = np.array([np.nan, 0, 0, 1])
    assert stream.update([bad], 0.15, (640, 480))[1] == 1
    with pytest.raises(ValueError, match='smoothing_beta'):
        stream.configure(smoothing_beta=-1.0)
    with pytest.raises(ValueError, match='unknown'):
        stream.configure(nonsense=1)
    stream.configure(tracking=False)
    faces, _ = stream.update(moved, 0.2, (640, 480))
    assert sorted(f.id for f in faces) == [0, 1]


def test_configure_while_updating_from_another_thread():
    """The node's race: parameters reset the tracker while the worker updates it."""
    import threading

    from nlml_hpe.face_stream import FaceStream

    stream = FaceStream()
    errors = []
    stop = threading.Event()

    def worker():
        t = 0.0
        try:
            while not stop.is_set():
                t += 0.01
                boxes = [(10 + i * 100, 10, 90 + i * 100, 90) for i in range(6)]
                stream.update([_Face(b, 0.1 * i) for i, b in enumerate(boxes)], t, (640, 480))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        for i in range(300):
            stream.configure(tracking=bool(i % 2), smoothing_beta=0.01 * (i % 5))
            stream.reset()
    finally:
        stop.set()
        thread.join()
    assert not errors, errors


def test_predict_video_json_gives_stable_ids(tmp_path, capsys):
    """Two demo faces side by side in a video: each keeps its id in every frame."""
    import json

    import cv2

    from nlml_hpe import cli
    from nlml_hpe.bench.demo import DEMO_DIR, load_clip

    frames, _, _ = load_clip(DEMO_DIR)
    video = tmp_path / 'two.mp4'
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*'mp4v'), 10, (640, 480))
    n = 10
    for i in range(n):
        canvas = np.full((480, 640, 3), 90, np.uint8)
        for j, side in enumerate((0, 320)):
            small = cv2.resize(frames[(i + 5 * j) % len(frames)][1], (320, 240))
            canvas[120:360, side:side + 320] = small
        writer.write(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    writer.release()
    assert cli.main(['predict', '--json', str(video)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]
    assert [d['image'] for d in lines] == [f'{video}#{i}' for i in range(n)]
    sides = {}
    for d in lines:
        assert len(d['faces']) == 2, d
        for f in d['faces']:
            sides.setdefault(f['box'][0] < 320, set()).add(f['id'])
    assert len(sides[True]) == len(sides[False]) == 1 and sides[True] != sides[False]
