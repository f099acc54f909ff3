"""FramePump without ROS: newest frame only, rate cap, errors survived, figures."""

import threading
import time

import pytest

from nlml_hpe.frame_pump import FramePump, percentile


def _wait(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, 'timed out'
        time.sleep(0.005)


class Slow:
    """A stage that takes ``seconds`` per frame and records what it got."""

    def __init__(self, seconds=0.0):
        self.seconds = seconds
        self.got = []
        self.times = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, item):
        self.times.append(time.monotonic())
        self.gate.wait()
        time.sleep(self.seconds)
        if item == 'boom':
            raise RuntimeError('bad frame')
        self.got.append(item)


def test_a_busy_stage_gets_the_newest_frame_and_the_rest_are_dropped():
    stage = Slow()
    pump = FramePump(stage)
    pump.start()
    try:
        stage.gate.clear()  # the stage is busy with frame 0 while 1..9 arrive
        pump.offer(0, pump.arrived())
        _wait(lambda: not pump.pending)
        for i in range(1, 10):
            pump.offer(i, pump.arrived())
        assert pump.pending
        stage.gate.set()
        _wait(lambda: pump.counts['processed'] == 2)
        time.sleep(0.05)
        assert stage.got == [0, 9]
        c = pump.counts
        assert (c['received'], c['dropped'], c['processed']) == (10, 8, 2)
    finally:
        assert pump.stop()
    assert not pump.running


def test_rate_cap_spaces_frames_and_builds_no_backlog():
    stage = Slow()
    pump = FramePump(stage)
    pump.max_rate = 10.0
    pump.start()
    try:
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < 0.55:
            pump.offer(i, pump.arrived())
            i += 1
            time.sleep(0.01)
        _wait(lambda: pump.counts['processed'] + pump.counts['dropped'] == i)
        done = len(stage.got)
        assert 5 <= done <= 8, done  # ~10 Hz over ~0.55 s, and the last frame
        assert stage.got == sorted(stage.got) and stage.got[-1] == i - 1  # fresh, not queued
        gaps = [b - a for a, b in zip(stage.times, stage.times[1:])]
        assert min(gaps) >= 0.06, gaps  # starts 1 / max_rate apart (no cap: 0.01 s)
    finally:
        pump.stop()
    with pytest.raises(ValueError):
        pump.max_rate = -1.0


def test_errors_are_counted_reported_and_survived():
    seen = []
    pump = FramePump(Slow(), on_error=seen.append)
    pump.start()
    try:
        pump.offer('boom', pump.arrived())
        _wait(lambda: pump.counts['errors'] == 1)
        pump.offer('ok', pump.arrived())
        _wait(lambda: pump.counts['processed'] == 1)
    finally:
        pump.stop()
    assert [str(e) for e in seen] == ['bad frame']


def test_stop_finishes_the_frame_in_progress_and_drops_the_waiting_one():
    stage = Slow(0.2)
    pump = FramePump(stage)
    pump.start()
    pump.offer('a', pump.arrived())
    _wait(lambda: not pump.pending)
    pump.offer('b', pump.arrived())
    assert pump.stop(timeout=5.0)
    assert stage.got == ['a'] and not pump.pending
    pump.start()  # restarts with an empty slot
    try:
        pump.offer('c', pump.arrived())
        _wait(lambda: stage.got == ['a', 'c'])
    finally:
        pump.stop()


def test_figures_latency_age_and_rate():
    now = [1000.0]
    pump = FramePump(Slow(0.01), clock=lambda: now[0])
    pump.start()
    try:
        for i in range(5):
            pump.offer(i, pump.arrived(), stamp=now[0] - 0.25)  # captured 250 ms ago
            _wait(lambda i=i: pump.counts['processed'] == i + 1)
            time.sleep(0.02)
        pump.count('rejected', 2)
        f = pump.figures()
    finally:
        pump.stop()
    assert f['processed'] == 5 and f['rejected'] == 2 and f['recent_frames'] == 5
    assert 5 <= f['latency_ms_p50'] < 1000
    assert f['age_ms_p50'] == pytest.approx(250.0)
    assert 5.0 < f['input_rate_hz'] < 60.0
    assert percentile([], 0.5) is None and percentile([3, 1, 2], 0.5) == 2
