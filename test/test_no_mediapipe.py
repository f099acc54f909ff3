"""Run time never needs mediapipe: predict and the node work with it blocked.

``sys.modules['mediapipe'] = None`` makes any ``import mediapipe`` fail, as on a
machine where it is not installed (aarch64, CPython 3.13).  Each check runs in
a fresh interpreter so no earlier import can hide one.
"""

import json
from pathlib import Path
import subprocess
import sys

import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / 'src' / 'nlml_hpe' / 'data' / 'demo'
BLOCK = "import sys; sys.modules['mediapipe'] = None; "


def _run(code, timeout=240):
    return subprocess.run([sys.executable, '-c', BLOCK + code], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def test_the_block_works():
    res = _run('import mediapipe')
    assert res.returncode != 0 and 'ModuleNotFoundError' in res.stderr


def test_predict_without_mediapipe():
    # ... nor the bench wing (benchmarks, demo, legacy graph) nor torch.
    res = _run('from nlml_hpe.cli import main; '
               f"code = main(['predict', '--json', {str(DEMO / '000.jpg')!r}, "
               f"{str(DEMO / '003.jpg')!r}]); "
               "bench = [m for m in sys.modules if m.startswith('nlml_hpe.bench') "
               "or m in ('torch', 'nlml_hpe.benchmark')]; "
               "assert not bench, bench; sys.exit(code)")
    assert res.returncode == 0, res.stderr[-2000:]
    lines = [json.loads(line) for line in res.stdout.splitlines() if line.startswith('{')]
    assert len(lines) == 2 and all(len(r['faces']) == 1 for r in lines)
    # The demo clip's frame 003 is yaw 40: the reading is close.
    assert abs(lines[1]['faces'][0]['yaw'] - 40) < 8


@pytest.mark.ros
def test_node_without_mediapipe(tmp_path):
    pytest.importorskip('rclpy', reason='rclpy is not installed (run bootstrap.sh)')
    res = _run('from nlml_hpe.bench.demo import main; '
               f"sys.exit(main(['--out', {str(tmp_path / 'out')!r}]))")
    assert res.returncode == 0, res.stderr[-2000:] + res.stdout[-2000:]
    results = json.loads((tmp_path / 'out' / 'results.json').read_text())
    assert results and all(r['estimated'] is not None for r in results)
    assert 'mediapipe' not in res.stderr.lower()
