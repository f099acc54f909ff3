"""FramePump without ROS: newest frame only, rate cap, errors survived, figures."""

import threading
import time

import pytest

from nlml_hpe.frame_pump import FramePump, gap_wait, percentile


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


# ------------------------------------------------------------------ decode stage

class Decoder:
    """A decode stage: 'bad...' items are refused (None), 'boom' raises, 'C...' burn CPU.

    ``gate`` holds the costly items' decodes; ``cpu`` records each costly decode's
    CPU seconds and its start time.
    """

    def __init__(self, burn_s=0.0):
        self.burn_s = burn_s
        self.decoded, self.cpu = [], []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, item):
        if str(item).startswith('C'):
            self.gate.wait()
            t0, c0 = time.monotonic(), time.thread_time()
            while time.thread_time() - c0 < self.burn_s:
                pass
            self.cpu.append((t0, time.thread_time() - c0))
        self.decoded.append(item)
        if str(item).startswith('bad'):
            return None
        if item == 'boom':
            raise RuntimeError('decoder crashed')
        return f'frame:{item}'


def _busy_pump(decoder, **kw):
    """Return (pump, stage) with the stage busy on frame 0 (its gate closed)."""
    stage = Slow()
    pump = FramePump(stage, decode=decoder, **kw)
    pump.start()
    stage.gate.clear()
    pump.offer(0, pump.arrived(), cost_ms=2.0)
    _wait(lambda: not pump.pending and stage.times)
    return pump, stage


def test_a_refused_newest_item_falls_back_to_the_good_one_before_it():
    errors = []
    pump, stage = _busy_pump(Decoder(), on_error=errors.append)
    try:
        pump.offer('good', pump.arrived(), cost_ms=2.0)
        pump.offer('bad', pump.arrived(), cost_ms=2.0)  # passes the cheap checks, not the decoder
        stage.gate.set()
        _wait(lambda: len(stage.got) == 2)
        pump.offer('good2', pump.arrived(), cost_ms=2.0)
        pump.offer('boom', pump.arrived(), cost_ms=2.0)  # a decoder exception: the same
        _wait(lambda: len(stage.got) == 3)
    finally:
        pump.stop()
    assert stage.got == ['frame:0', 'frame:good', 'frame:good2']
    assert [str(e) for e in errors] == ['decoder crashed']
    c = pump.counts
    assert c['processed'] == 3 and c['errors'] == 1 and c['dropped'] == 0


def test_only_the_newest_decodable_item_is_processed():
    pump, stage = _busy_pump(Decoder())
    try:
        for i in range(1, 6):
            pump.offer(i, pump.arrived(), cost_ms=2.0)
        pump.offer('bad', pump.arrived(), cost_ms=2.0)
        stage.gate.set()
        _wait(lambda: not pump.pending and len(stage.got) == 2)
        time.sleep(0.05)
    finally:
        pump.stop()
    assert stage.got == ['frame:0', 'frame:5']  # 1..4 dropped, 'bad' refused, 5 processed
    assert pump.counts['dropped'] == 4


def test_a_costly_item_never_takes_a_regular_items_place():
    decoder = Decoder()
    pump, stage = _busy_pump(decoder)
    try:
        pump.offer('g1', pump.arrived(), cost_ms=2.0)
        pump.offer('C1', pump.arrived(), cost_ms=50.0)  # costly: decoded on its own thread
        _wait(lambda: pump.waiting['decoded'] == 1)
        assert pump.waiting == {'regular': 1, 'costly': 0, 'decoded': 1}
        stage.gate.set()  # the regular frame first, then the costly one (newer): both
        _wait(lambda: len(stage.got) == 3)
        stage.gate.clear()
        pump.offer('g2', pump.arrived(), cost_ms=2.0)
        _wait(lambda: pump.waiting['regular'] == 0)  # taken: the stage is busy with it
        pump.offer('C2', pump.arrived(), cost_ms=50.0)
        _wait(lambda: pump.waiting['decoded'] == 1)
        pump.offer('g3', pump.arrived(), cost_ms=2.0)  # newer than C2: C2 is now stale
        stage.gate.set()
        _wait(lambda: len(stage.got) == 5 and not pump.pending)
        time.sleep(0.05)
    finally:
        pump.stop()
    assert stage.got == ['frame:0', 'frame:g1', 'frame:C1', 'frame:g2', 'frame:g3']
    c = pump.counts
    assert c['costly'] == 2 and c['costly_dropped'] == 1 and c['processed'] == 5
    assert decoder.decoded.count('g1') == 1 and 'C2' in decoder.decoded


def test_costly_items_take_at_most_their_share_of_time():
    share = 0.05
    decoder = Decoder(burn_s=0.02)
    stage = Slow()
    pump = FramePump(stage, decode=decoder, costly_share=share)
    pump.start()
    try:
        t_end = time.monotonic() + 2.0
        i = 0
        while time.monotonic() < t_end:  # 20 Hz regular items, every other one followed by
            pump.offer(i, pump.arrived(), cost_ms=2.0)  # a costly one (20 ms: fits the gap)
            if i % 2:
                pump.offer(f'C{i}', pump.arrived(), cost_ms=20.0)
            i += 1
            time.sleep(0.05)
        _wait(lambda: not pump.pending)
    finally:
        pump.stop()
    starts = [t for t, _ in decoder.cpu]
    spent = sum(c for _, c in decoder.cpu)
    assert len(starts) >= 2
    # After a costly decode of c CPU seconds the next starts c / share later at the earliest.
    assert spent <= share * (starts[-1] - starts[0]) + max(c for _, c in decoder.cpu) + 1e-3
    assert pump.counts['costly'] == i // 2 >= 2 * len(starts)  # most never decoded


def test_a_costly_item_is_decoded_only_in_a_gap_of_the_stream():
    """Regular items every 200 ms: a 500 ms decode never fits; once they stop, it is decoded."""
    decoder = Decoder()
    stage = Slow()
    pump = FramePump(stage, decode=decoder)
    pump.start()
    try:
        for i in range(10):
            pump.offer(i, pump.arrived(), cost_ms=2.0)
            time.sleep(0.05)
            if i % 2:
                pump.offer(f'C{i}', pump.arrived(), cost_ms=500.0)
            time.sleep(0.15)
        _wait(lambda: not pump.pending)  # the stream stopped: the last one is decoded
        time.sleep(0.05)
    finally:
        pump.stop()
    assert [c for c in decoder.decoded if str(c).startswith('C')] == ['C9']
    assert stage.got[-1] == 'frame:C9' and pump.counts['costly_dropped'] == 4
    assert gap_wait([0.0, 0.1, 0.2], 50.0, 0.21) == 0.0  # next due at 0.3: 90 ms away
    assert gap_wait([0.0, 0.1, 0.2], 50.0, 0.26) == pytest.approx(0.09)  # until 0.35
    assert gap_wait([0.0, 0.1, 0.2], 50.0, 0.36) == 0.0  # late: the stream paused
    assert gap_wait([0.2], 50.0, 0.21) == 0.0


def test_a_stream_whose_frames_all_cost_more_turns_regular():
    pump = FramePump(Slow(), decode=Decoder())  # not started: offers are only classified
    for i in range(20):
        pump.offer(i, pump.arrived(), cost_ms=2.0)
    for i in range(20):
        pump.offer(f'C{i}', pump.arrived(), cost_ms=50.0)
    costly = pump.counts['costly']
    for i in range(20, 40):
        pump.offer(f'C{i}', pump.arrived(), cost_ms=50.0)
    assert 0 < costly < 20 and pump.counts['costly'] == costly  # the median moved
    assert pump.waiting['regular'] == 2


def test_figures_keep_cpu_series():
    pump = FramePump(Slow(), decode=Decoder())
    pump.start()
    try:
        pump.observe('check_ms', 0.25)
        pump.offer('a', pump.arrived(), cost_ms=1.0)
        _wait(lambda: pump.counts['processed'] == 1)
        f = pump.figures()
    finally:
        pump.stop()
    assert f['check_ms_max'] == 0.25 and f['decode_ms_max'] is not None
    assert f['process_ms_p95'] is not None
    assert FramePump(Slow()).figures()['decode_ms_max'] is None
    with pytest.raises(ValueError):
        FramePump(Slow(), costly_share=0.0)
