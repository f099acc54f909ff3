"""The ``nlml-hpe`` command line, run in-process on real images and a real video."""

import importlib.util
import json
import shutil
import sys

from face_clips import face_sequence
import numpy as np
import pytest

from nlml_hpe import cli
from nlml_hpe.bench.aflw2000 import read_rgb
from nlml_hpe.model import expected_shapes, save_model


@pytest.fixture
def model_dir(tmp_path):
    rng = np.random.default_rng(0)
    w = {k: rng.normal(0, 0.05, s).astype(np.float32) for k, s in expected_shapes().items()}
    w['feature_std'] = np.ones_like(w['feature_std'])
    save_model(w, tmp_path / 'model', {'name': 'random'})
    return tmp_path / 'model'


def _json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_predict_json_images_and_errors(aflw_dir, model_dir, tmp_path, capsys):
    imgs = [aflw_dir / 'image00008.jpg', aflw_dir / 'image00022.jpg']
    corrupt = tmp_path / 'corrupt.jpg'
    corrupt.write_bytes(b'\xff\xd8not really a jpeg')
    missing = tmp_path / 'missing.png'
    code = cli.main(['predict', '--json', '--model', str(model_dir), *map(str, imgs),
                     str(corrupt), str(missing)])
    assert code == 1  # some inputs failed
    lines = _json_lines(capsys.readouterr().out)
    assert [d['image'] for d in lines] == [*map(str, imgs), str(corrupt), str(missing)]
    for d in lines[:2]:
        assert set(d) == {'image', 'faces', 'ms'} and d['ms'] > 0
        assert len(d['faces']) == 1
        face = d['faces'][0]
        assert set(face) == {'yaw', 'pitch', 'roll', 'box', 'score'}
        assert len(face['box']) == 4 and face['box'][0] < face['box'][2]
        assert all(isinstance(face[k], float) for k in ('yaw', 'pitch', 'roll', 'score'))
    assert 'unknown or unsupported image format' in lines[2]['error']
    assert 'no such file' in lines[3]['error']


def test_predict_directory_and_out(aflw_dir, model_dir, tmp_path, capsys):
    src = tmp_path / 'imgs'
    src.mkdir()
    for name in ('image00008.jpg', 'image00039.jpg'):
        shutil.copy(aflw_dir / name, src / name)
    (src / 'notes.txt').write_text('not an image')
    out = tmp_path / 'out'
    code = cli.main(['predict', '--json', '--model', str(model_dir), '--out', str(out),
                     str(src)])
    assert code == 1  # notes.txt: one error line, nothing skipped silently
    lines = _json_lines(capsys.readouterr().out)
    assert len(lines) == 3 and all(len(d['faces']) == 1 for d in lines[:2])
    assert lines[2]['image'] == str(src / 'notes.txt')
    assert 'unsupported file type' in lines[2]['error']
    written = sorted(p.name for p in out.iterdir())
    assert written == ['image00008_pose.png', 'image00039_pose.png']
    annotated = read_rgb(out / 'image00008_pose.png')
    original = read_rgb(src / 'image00008.jpg')
    assert annotated.shape == original.shape
    assert np.mean(np.any(annotated != original, axis=2)) > 0.001  # axes/text were drawn


def test_predict_video_streaming(aflw_dir, model_dir, tmp_path, capsys):
    import cv2

    video = tmp_path / 'clip.mp4'
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*'mp4v'), 10, (640, 480))
    face = read_rgb(aflw_dir / 'image00008.jpg')
    for frame in face_sequence(face, 8):
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    out = tmp_path / 'out'
    code = cli.main(['predict', '--json', '--model', str(model_dir), '--out', str(out),
                     str(video)])
    assert code == 0
    lines = _json_lines(capsys.readouterr().out)
    assert [d['image'] for d in lines] == [f'{video}#{i}' for i in range(8)]
    assert sum(len(d['faces']) == 1 for d in lines) >= 7
    assert (out / 'clip_pose.mp4').stat().st_size > 1000


def test_predict_plain_text(aflw_dir, model_dir, capsys):
    assert cli.main(['predict', '--model', str(model_dir),
                     str(aflw_dir / 'image00008.jpg')]) == 0
    out = capsys.readouterr().out
    assert 'yaw' in out and 'image00008.jpg' in out


def test_missing_model_is_a_clear_error(tmp_path, capsys):
    code = cli.main(['predict', '--model', str(tmp_path / 'nomodel'), 'x.jpg'])
    assert code == 2
    assert str(tmp_path / 'nomodel') in capsys.readouterr().err


def test_benchmark_aflw2000_json(aflw_dir, model_dir, capsys):
    code = cli.main(['benchmark', 'aflw2000', str(aflw_dir), '--json', '--limit', '5',
                     '--model', str(model_dir)])
    assert code == 0
    res = json.loads(capsys.readouterr().out)
    assert res['images'] == 5
    assert res['methods'] == ['model', 'network_only', 'baseline', 'baseline_flip']
    assert {'full', 'paper'} == set(res['protocols']) and res['flip_average']
    code = cli.main(['benchmark', 'aflw2000', str(aflw_dir), '--json', '--limit', '2',
                     '--model', str(model_dir), '--no-flip', '--no-fusion'])
    assert code == 0
    res = json.loads(capsys.readouterr().out)
    assert res['methods'] == ['model', 'baseline'] and not res['flip_average']
    assert not res['rigid_fusion']


def test_benchmark_aflw2000_without_model(aflw_dir, tmp_path, capsys):
    code = cli.main(['benchmark', 'aflw2000', str(aflw_dir), '--limit', '3',
                     '--model', str(tmp_path / 'none')])
    assert code == 0
    captured = capsys.readouterr()
    assert 'baseline only' in captured.err
    assert 'baseline' in captured.out and 'model ' not in captured.out


def test_benchmark_off_axis_json(aflw_dir, capsys):
    # The shipped model: the turned view's rotation must follow the camera's turn.
    code = cli.main(['benchmark', 'offaxis', str(aflw_dir), '--json', '--limit', '1',
                     '--turns', '25,-10'])
    assert code == 0
    res = json.loads(capsys.readouterr().out)
    assert res['pairs'] == 1 and res['turns_deg'] == [[25.0, -10.0]]
    assert set(res['methods']) == {'nlml_hpe', 'nlml_hpe_no_warp', 'baseline_pnp'}
    assert res['off_axis_deg_mean'] > 20.0
    assert res['methods']['nlml_hpe']['landmarks_ms_turned_view']['p50'] > 0
    err = {k: m['rotation_error_deg']['median'] for k, m in res['methods'].items()}
    assert max(err.values()) < 10.0, err
    assert err['nlml_hpe'] < 4.0 and err['nlml_hpe'] < err['nlml_hpe_no_warp'], err
    with pytest.raises(SystemExit, match='YAW,PITCH'):
        cli.main(['benchmark', 'offaxis', str(aflw_dir), '--turns', '25'])


def test_benchmark_position_json(capsys):
    assert cli.main(['benchmark', 'position', '--trials', '50', '--json']) == 0
    res = json.loads(capsys.readouterr().out)
    assert res['trials'] == 50 and res['relative_error_median'] < 0.15


def test_usage_errors(capsys):
    with pytest.raises(SystemExit):
        cli.main([])
    with pytest.raises(SystemExit):
        cli.main(['benchmark', 'nonsense'])


def test_train_dispatch(capsys, monkeypatch):
    if importlib.util.find_spec('training.pipeline') is not None:
        with pytest.raises(SystemExit) as info:  # argparse --help exits 0
            cli.main(['train', '--help'])
        assert info.value.code in (0, None)
        assert 'usage' in capsys.readouterr().out.lower()
    # Without an importable training package the error says why.
    monkeypatch.setitem(sys.modules, 'training.pipeline', None)
    monkeypatch.setitem(sys.modules, 'training', None)
    with pytest.raises(SystemExit, match='source checkout'):
        cli.main(['train', '--help'])


@pytest.mark.parametrize('argv,prog', [(['benchmark', 'node', '--help'], 'benchmark node'),
                                       (['demo', '--help'], 'demo'),
                                       (['benchmark', '--help'], 'benchmark'),
                                       (['--help'], 'nlml-hpe')])
def test_dispatch_to_the_bench_wing(argv, prog, capsys):
    with pytest.raises(SystemExit) as info:  # argparse --help exits 0
        cli.main(argv)
    assert info.value.code in (0, None)
    out = capsys.readouterr().out
    assert out.lower().startswith('usage') and prog in out.split('\n')[0]


def test_predict_flags_come_from_the_options_table(capsys):
    from nlml_hpe.options import EstimatorConfig

    with pytest.raises(SystemExit):
        cli.main(['predict', '--help'])
    text = capsys.readouterr().out
    for spec in EstimatorConfig.specs():  # every public option, spelt as its parameter
        assert '--' + spec.name.replace('_', '-') in text, spec.name
    for old in ('--no-flip', '--no-fusion', '--no-warp', '--threads'):
        assert old in text
    # Range errors come from the table's bounds: exit code 2 and the flag named.
    for argv, message in ((['--min-face-px', '4'], '--min-face-px must be in 8..1000, got 4.0'),
                          (['--num-threads', '17'], '--num-threads must be in 1..16, got 17'),
                          (['--threads', '0'], '--num-threads must be in 1..16, got 0'),
                          (['--perspective-warp-min-deg', 'nan'],
                           '--perspective-warp-min-deg must be in 0..90, got nan')):
        assert cli.main(['predict', *argv, 'x.jpg']) == cli.EXIT_CANNOT_RUN
        assert message in capsys.readouterr().err


def test_predict_flags_reach_the_estimator(aflw_dir, model_dir, capsys):
    # --no-flip and --no-flip-average are one switch; detection options change the run.
    image = str(aflw_dir / 'image00008.jpg')
    runs = {}
    for name, flags in (('default', []), ('no_flip', ['--no-flip']),
                        ('no_flip_long', ['--no-flip-average']),
                        ('flip', ['--flip-average'])):
        assert cli.main(['predict', '--json', '--model', str(model_dir), *flags, image]) == 0
        runs[name] = _json_lines(capsys.readouterr().out)[0]['faces'][0]
    assert runs['no_flip'] == runs['no_flip_long'] and runs['default'] == runs['flip']
    assert runs['no_flip']['yaw'] != runs['default']['yaw']
    # A detector threshold above every score finds nothing.
    assert cli.main(['predict', '--json', '--model', str(model_dir),
                     '--min-detection-confidence', '1.0', image]) == 0
    assert _json_lines(capsys.readouterr().out)[0]['faces'] == []
