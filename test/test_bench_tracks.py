"""The tracking benchmark: MOT metrics on hand-made tracks, events, adapter, sequences, a run."""

import json

import numpy as np
import pytest

from nlml_hpe.bench import tracks
from nlml_hpe.bench.adapter import Hypothesis, counted, read_face
from nlml_hpe.bench.mot import MotAccumulator, assign
from nlml_hpe.bench.scenes import held_out_identities
from nlml_hpe.bench.sequences import Truth, keyframes, yaw_bin
from nlml_hpe.bench.track_metrics import SequenceScore, summarise

A = (0.0, 0.0, 10.0, 10.0)


def run(frames, **kw):
    """Feed ``[(gts [(id, box[, ignore])], hyps [(id, box)]), ...]``; return the summary."""
    acc = MotAccumulator(**kw)
    for gts, hyps in frames:
        acc.update([g[0] for g in gts], [g[1] for g in gts], [h[0] for h in hyps],
                   [h[1] for h in hyps], [len(g) > 2 and g[2] for g in gts])
    return acc.summary()


def test_assign_pairs_only_above_threshold():
    sim = np.array([[0.9, 0.6], [0.7, 0.2]])
    assert sorted(assign(sim, 0.5)) == [(0, 1), (1, 0)]  # 0.6 + 0.7 beats 0.9 alone
    assert assign(sim, 0.8) == [(0, 0)]
    assert assign(np.zeros((0, 3)), 0.5) == []


def test_perfect_track():
    s = run([([('a', A)], [(1, A)])] * 10)
    assert (s['idf1'], s['mota'], s['id_switches'], s['fragmentations']) == (1.0, 1.0, 0, 0)
    assert s['mostly_tracked'] == 1 and s['motp_iou'] == 1.0


def test_identity_switch_halves_idf1():
    s = run([([('a', A)], [(1 if f < 5 else 2, A)]) for f in range(10)])
    assert s['id_switches'] == 1 and s['fragmentations'] == 0
    assert s['idtp'] == 5 and s['idf1'] == pytest.approx(0.5)
    assert s['mota'] == pytest.approx(0.9)


def test_fragmentation_counts_interruptions_followed_by_a_match():
    frag = run([([('a', A)], [] if f in (4, 5) else [(1, A)]) for f in range(10)])
    assert (frag['fragmentations'], frag['id_switches'], frag['fn']) == (1, 0, 2)
    assert frag['idf1'] == pytest.approx(2 * 8 / 18)
    assert frag['mota'] == pytest.approx(0.8)
    tail = run([([('a', A)], [] if f >= 7 else [(1, A)]) for f in range(10)])
    assert tail['fragmentations'] == 0 and tail['fn'] == 3
    both = run([([('a', A)], [] if f in (4, 5) else [(1 if f < 4 else 2, A)])
                for f in range(10)])
    assert (both['fragmentations'], both['id_switches']) == (1, 1)


def test_crossing_swap_is_two_switches():
    b = (20.0, 0.0, 30.0, 10.0)
    frames = [([('a', A), ('b', b)], [(1, A), (2, b)] if f < 5 else [(2, A), (1, b)])
              for f in range(10)]
    s = run(frames)
    assert s['id_switches'] == 2 and s['idf1'] == pytest.approx(0.5)


def test_previous_match_kept_while_it_overlaps():
    """CLEAR MOT continuity: no switch although the Hungarian would swap the tracks."""
    b = (3.0, 0.0, 13.0, 10.0)
    frames = [([('a', A)], [(1, A)]),
              ([('a', A), ('b', b)], [(1, (2.0, 0.0, 12.0, 10.0)), (2, A)])]
    s = run(frames)
    assert s['id_switches'] == 0 and s['tp'] == 3


def test_ignore_regions_and_false_positives():
    far = (50.0, 50.0, 60.0, 60.0)
    s = run([([('a', A, True)], [(1, A)]), ([('a', A)], [(1, A), (2, far)]),
             ([('a', A)], [(1, (6.0, 0.0, 16.0, 10.0))])])  # IoU 0.25: a miss and a false
    assert s['gt'] == 2 and s['ignored_hypotheses'] == 1
    assert (s['tp'], s['fp'], s['fn']) == (1, 2, 1)


def test_bad_input_is_refused():
    acc = MotAccumulator()
    with pytest.raises(ValueError, match='unique'):
        acc.update([1, 1], [A, A], [], [])
    with pytest.raises(ValueError, match='one box'):
        acc.update([1], [], [], [])
    with pytest.raises(ValueError):
        MotAccumulator(iou_threshold=0.0)


def truth(status, yaw=0.0):
    vis = {'visible': 1.0, 'ignore': 0.2, 'absent': 0.0}[status]
    return Truth('p', A, vis, status != 'absent', (0.0, yaw, 0.0))


def test_gaps_and_drops():
    """Person visible 0-9, away 10-19, back 20-29; track 1 listed until 11, track 2 after."""
    score = SequenceScore('t', 'rendered', 30.0)
    for f in range(30):
        status = 'absent' if 10 <= f < 20 else 'visible'
        hyps = [Hypothesis(1 if f < 12 else 2, A, np.array([0.0, 2.0, 0.0]))] \
            if f < 12 or f >= 20 else []
        score.add([truth(status, yaw=70.0)], hyps, 1.0)
    drops, gaps = score.drops(), score.gaps()
    assert len(drops) == 1 and drops[0]['listed_after_s'] == pytest.approx(2 / 30, abs=1e-3)
    assert drops[0]['absent_s'] == pytest.approx(10 / 30, abs=1e-3)
    assert len(gaps) == 1 and gaps[0]['kind'] == 'left' and not gaps[0]['kept_id']
    s = summarise([score])
    assert s['recall_by_yaw']['70-80'] == {'visible': 20, 'listed': 20, 'recall': 1.0}
    assert s['recall_by_pitch']['0-30']['visible'] == 20
    assert s['pose_mae_by_yaw']['70-80']['yaw'] == pytest.approx(68.0)
    assert s['beyond_range'] == 'n/a' and s['sigma_calibration'] == 'n/a'
    assert s['mot']['id_switches'] == 1 and s['false_tracks'] == 0


def test_covered_gap_keeps_id_and_beyond_range_and_sigma_scoring():
    score = SequenceScore('t', 'rendered', 30.0)
    for f in range(12):
        status = 'ignore' if 4 <= f < 8 else 'visible'
        yaw = 80.0 if f < 6 else 30.0
        h = Hypothesis(5, A, np.array([0.0, yaw - 3.0, 0.0]), sigma=np.array([1.0, 4.0, 1.0]),
                       beyond_range=f < 2 or f >= 10)  # wrong on frames 2-3 and 10-11
        score.add([truth(status, yaw=yaw)], [h], 1.0)
    gaps = score.gaps()
    assert len(gaps) == 1 and gaps[0]['kind'] == 'covered' and gaps[0]['kept_id']
    s = summarise([score])
    assert s['beyond_range']['tp'] == 2 and s['beyond_range']['fn'] == 2
    assert s['beyond_range']['fp'] == 2 and s['beyond_range']['tn'] == 2
    assert s['sigma_calibration']['80-90']['within_1_sigma'] == pytest.approx(1.0)


def test_adapter_reads_stream_faces_and_optional_attributes():
    from nlml_hpe.estimator import FacePose
    from nlml_hpe.face_stream import FaceStream
    from nlml_hpe.geometry import euler_to_optical_face_quaternion

    pose = FacePose(yaw=20.0, pitch=-5.0, roll=2.0, rotation=np.eye(3),
                    quaternion=euler_to_optical_face_quaternion(-5.0, 20.0, 2.0),
                    box=(10.0, 20.0, 110.0, 140.0), landmarks=np.zeros((468, 3)))
    stream = FaceStream(confirm_frames=1)
    faces, _ = stream.update([pose], 0.0, (640, 480))
    h = read_face(faces[0])
    assert h.box == (10.0, 20.0, 110.0, 140.0) and counted(h)
    assert np.allclose(h.angles, [-5.0, 20.0, 2.0]) and h.rotation.shape == (3, 3)
    assert h.state == 'confirmed' and h.sigma is None and h.beyond_range is None
    # A tentative face is not counted; an uncertainty and range state are read.
    faces[0].state = type('State', (), {'name': 'TENTATIVE'})()
    pose.sigma_deg, pose.beyond_range = np.array([7.5, 8.0, 3.0]), True
    h = read_face(faces[0])
    assert h.state == 'tentative' and not counted(h)
    assert np.allclose(h.sigma, [7.5, 8.0, 3.0]) and h.beyond_range is True
    # Unseen (coasting): its predicted box counts, its last pose is not a reading.
    (coasting,) = stream.update([], 0.05, (640, 480))[0]
    h = read_face(coasting)
    assert h.state == 'coasting' and counted(h) and h.angles is None and h.sigma is None


def test_helpers():
    f = keyframes((0, 0), (1, 10), (2, 10))
    assert f(-1)[0] == 0 and f(0.5)[0] == pytest.approx(5) and f(3)[0] == 10
    assert [yaw_bin(y) for y in (0, -45, 59.9, 60, -89, 95)] == \
        ['0-30', '30-50', '50-60', '60-70', '80-90', '80-90']
    ids = held_out_identities(100, 8, 0)
    assert np.array_equal(ids, held_out_identities(100, 8, 0))
    # The training pipeline's identities (training/faces.py, seed 0: 100 + 20 held out).
    trained = np.random.default_rng(0).normal(0.0, 1.0, (120, 100))
    assert np.abs(ids[:, None] - trained[None]).max(axis=2).min() > 1.0


def test_cli_face_free_json(capsys):
    assert tracks.main(['--sequences', 'face_free', '--face-free-min', '0.05', '--json',
                        '--quiet']) == 0
    out = json.loads(capsys.readouterr().out)
    free = out['sequences']['face_free']
    assert free['frames'] == 90 and free['false_tracks'] == free['mot']['track_ids']
    assert out['targets'] == {} and out['config']['face_free_min'] == 0.05


def test_real_face_sequence(aflw_dir):
    from nlml_hpe.bench.photos import GAP, MAX_TILT, SHOWN, photo_sequence, pick_photos

    photos = pick_photos(aflw_dir, 12, seed=0)
    assert len(photos) == 12
    assert all(max(abs(p[0]), abs(p[2])) <= MAX_TILT for _, _, p in photos)
    assert len({yaw_bin(p[1]) for _, _, p in photos}) == 6  # every |yaw| bin
    seq = photo_sequence(aflw_dir, 2, seed=0)
    frames = list(seq.frames())
    assert len(frames) == seq.n_frames == 2 * (SHOWN + GAP)
    shown = [bool(fr.truths) for fr in frames]
    assert shown == ([True] * SHOWN + [False] * GAP) * 2
    for fr in frames[:SHOWN]:
        x0, y0, x1, y1 = fr.truths[0].box
        assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 480 and fr.truths[0].status == 'visible'
    assert frames[0].truths[0].identity != frames[SHOWN + GAP].truths[0].identity


@pytest.fixture
def kit(ict_npz):
    from training.render import renderer_available

    ok, why = renderer_available()
    if not ok:
        pytest.skip(f'no headless OpenGL: {why}')
    from nlml_hpe.bench.scenes import HeadKit

    kit = HeadKit(ict_npz)
    yield kit
    kit.release()


def test_rendered_ground_truth(kit):
    from nlml_hpe.bench.sequences import rendered_sequence

    seq = rendered_sequence(kit, 'occlusion', seed=0, time_scale=0.5)
    status = [fr.truths[0].status for fr in seq.frames()]
    assert len(status) == seq.n_frames == 158
    # The 0.1 s board at 1.5 s and the 0.25 s one at 3.5 s make the face unscorable briefly.
    assert status[:40].count('visible') == 40 and 'ignore' in status[44:52]
    assert 'visible' in status[60:100]


def test_frontal_face_keeps_one_id(kit):
    from nlml_hpe.bench.sequences import rendered_sequence
    from nlml_hpe.estimator import HeadPoseEstimator

    seq = rendered_sequence(kit, 'frontal', seed=0)
    with HeadPoseEstimator.from_pretrained(streaming=True, flip_average=False) as est:
        result = tracks.run_tracks([seq], est)
    r = result['sequences']['frontal']
    assert r['frames'] == seq.n_frames == 90
    m = r['mot']
    assert m['track_ids'] == 1 and m['id_switches'] == 0 and m['idf1'] > 0.95
    assert r['recall_by_yaw']['0-30']['recall'] > 0.95
    assert r['pose_mae_by_yaw']['0-30']['mean'] < 10.0
    assert r['ms_per_frame']['p50'] > 0
    assert set(result['targets']) == {'listed_at_yaw_60_90', 'dropped_after_leaving_s',
                                      'false_tracks_per_10_min'}
    assert 'frontal' in tracks.format_tracks(result)
