"""The newest frame, decoded and processed on worker threads at a capped rate; free of ROS.

A camera delivers frames faster than a slow stage may process them; queuing
them would add latency without bound, and a hostile publisher may slip
messages among them that cost far more to decode than a frame is worth.
:class:`FramePump` runs two stages: ``decode(item)`` (optional: a received
item to a frame, or None when it is refused) and ``process(frame)``.  What
waits for them holds the newest items only:

* **Regular items** (at most :data:`REGULAR_DEPTH`): the worker thread takes
  the newest, decodes it and processes its frame; when the decode fails (None
  or an exception) it tries the next newest, so a message that passes the
  caller's cheap checks but cannot be decoded never costs the good frame that
  arrived before it.  Once a frame is processed, every older item is dropped
  (counted *dropped*): nothing stale is processed.
* **Costly items**: an item whose announced cost (``cost_ms``, e.g. the
  decode time estimated from its headers) is above both :data:`COSTLY_MIN_MS`
  and :data:`COSTLY_FACTOR` times the median cost of the last
  :data:`COST_WINDOW` items is not decoded by the worker.  The newest one
  waits for a thread of its own (the *decode stage*), which decodes it only
  when it can be of use and within its share of time: a regular item newer
  than it drops it (it is stale); while regular items keep arriving, it is
  decoded only if its cost fits before the next one is due (from their recent
  period), else it waits until that one is late or drops it when it comes;
  and the time spent on costly items (their decode and their frames'
  processing, CPU time) stays within ``costly_share`` of the wall time.  Its
  frame waits in the *decoded-frame slot* and is processed only when no
  regular item waits and nothing newer has been processed (outputs never go
  back in time).  So a costly message never takes a regular one's place nor
  delays its decode, and costs the worker at most the share; among a steady
  30 Hz stream, a message that takes 50 ms to decode is not decoded at all.  A
  stream whose frames all cost more (a camera switched to 4K) makes them the
  median within half the window, and they are regular again.

``max_rate`` (Hz, 0 = no cap) spaces the starts of two frames; a frame that
arrives meanwhile replaces the waiting one, so the cap never builds a backlog
either.  The pump counts what it sees (``received``, ``dropped``,
``processed``, ``errors``, ``costly``, ``costly_dropped``, and any count a
caller adds with :meth:`FramePump.count`, e.g. frames rejected) and keeps the
recent input rate, the processing latency (arrival to end of processing), the
age of each frame's output (capture stamp to end of processing, on the
caller's clock) and the CPU milliseconds of each decode and processing (and of
any series a caller adds with :meth:`FramePump.observe`).  The ROS node
(:mod:`nlml_hpe.ros.node`) is its one user; the tests drive it without ROS.
"""

import collections
from dataclasses import dataclass
import statistics
import threading
import time

#: Recent frames kept for the rate, latency, age and cost figures.
WINDOW = 120
#: Seconds of arrivals the input rate is measured over.
RATE_WINDOW_S = 2.0
#: Regular items waiting at most: the newest, and the one before it in case the newest fails.
REGULAR_DEPTH = 2
#: An item is costly above COSTLY_FACTOR x the median cost of the last COST_WINDOW items ...
COSTLY_FACTOR = 4.0
COST_WINDOW = 32
#: ... and above COSTLY_MIN_MS (a 640x480 JPEG decodes in about 3 ms, a 1280x720 one in 8).
COSTLY_MIN_MS = 10.0
#: Default share of the time costly items may take (their decode and processing, CPU).
COSTLY_SHARE = 0.1
#: Series of CPU milliseconds kept by the pump (and by callers, :meth:`FramePump.observe`).
SERIES = ('check_ms', 'decode_ms', 'process_ms')


def percentile(values, q):
    """Return the ``q`` quantile (0-1) of ``values`` (nearest rank), or None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class _Entry:
    """An item waiting: arrival (monotonic s), capture stamp (s or None), announced cost."""

    item: object
    arrival: float
    stamp: float
    cost_ms: float
    costly: bool = False


def _cpu():
    return time.thread_time()


def gap_wait(arrivals, cost_ms, now):
    """Return how long a decode of ``cost_ms`` must wait for a gap in a stream (s).

    ``arrivals``: the stream's recent arrival times (monotonic s).  0 when
    no item is due before the decode would end (by the stream's median
    period), or when the next one is late by half a period (the stream
    paused); else until then.
    """
    times = list(arrivals)
    if len(times) < 2:
        return 0.0
    period = statistics.median(b - a for a, b in zip(times, times[1:]))
    due = times[-1] + period
    if due - now > cost_ms / 1e3 or now > due + period / 2:
        return 0.0
    return due + period / 2 - now


class PumpFigures:
    """What a :class:`FramePump` counts and measures (thread-safe; module docstring)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counts = collections.Counter()
        self._arrivals = collections.deque(maxlen=WINDOW)
        self._latency_ms = collections.deque(maxlen=WINDOW)
        self._age_ms = collections.deque(maxlen=WINDOW)
        self._series = {k: collections.deque(maxlen=WINDOW) for k in SERIES}

    def arrived(self, now):
        """Count a frame received at ``now`` (monotonic s)."""
        with self._lock:
            self._counts['received'] += 1
            self._arrivals.append(now)

    def count(self, kind, n=1):
        """Add ``n`` to the count ``kind``."""
        with self._lock:
            self._counts[kind] += n

    def observe(self, series, value):
        """Add ``value`` to a series."""
        with self._lock:
            self._series.setdefault(series, collections.deque(maxlen=WINDOW)).append(value)

    def processed(self, latency_ms, age_ms, cpu_ms):
        """Count a processed frame with its latency, output age (or None) and CPU ms."""
        with self._lock:
            self._counts['processed'] += 1
            self._latency_ms.append(latency_ms)
            self._series['process_ms'].append(cpu_ms)
            if age_ms is not None:
                self._age_ms.append(age_ms)

    @property
    def counts(self):
        """Return a copy of the counts."""
        with self._lock:
            return collections.Counter(self._counts)

    def figures(self):
        """Return the counts and the recent figures (:meth:`FramePump.figures`)."""
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._arrivals if now - t <= RATE_WINDOW_S]
            latency, age = list(self._latency_ms), list(self._age_ms)
            series = {k: list(v) for k, v in self._series.items()}
            out = dict(self._counts)
        span = recent[-1] - recent[0] if len(recent) > 1 else 0.0
        out['recent_frames'] = len(recent)
        out['input_rate_hz'] = (len(recent) - 1) / span if span > 0 else 0.0
        out['latency_ms_p50'] = percentile(latency, 0.5)
        out['latency_ms_p95'] = percentile(latency, 0.95)
        out['age_ms_p50'] = percentile(age, 0.5)
        for name, values in series.items():
            out[f'{name}_p95'] = percentile(values, 0.95)
            out[f'{name}_max'] = max(values) if values else None
        return out


class FramePump:
    """Regular and costly places + worker and decode threads + rate cap + figures.

    ``process(frame)`` runs on the worker thread for each frame taken;
    ``decode(item)`` (default: none, the item is the frame) returns the frame,
    or None when the item is refused (the caller counts why).  An exception
    either raises is counted as an error and handed to ``on_error(exc)`` (the
    pump keeps running).  ``clock()`` gives the time (s) on the clock of the
    frames' capture stamps (default: wall time), for the output age.
    ``costly_share``: the share of time costly items may take (module docstring).
    """

    def __init__(self, process, *, decode=None, on_error=None, clock=time.time,
                 name='frame_pump', costly_share=COSTLY_SHARE):
        if not 0.0 < costly_share <= 1.0:
            raise ValueError(f'costly_share must be in (0, 1], got {costly_share}')
        self._process = process
        self._decode = decode
        self._on_error = on_error
        self._clock = clock
        self._name = name
        self._share = float(costly_share)
        self._lock = threading.Condition()
        self._regular = collections.deque()  # _Entry, oldest first
        self._costly = None  # the newest costly _Entry, waiting for the decode stage
        self._ready = None  # (_Entry, frame): a costly item decoded, waiting for the worker
        self._last_arrival = -float('inf')  # of the newest frame processed
        self._costly_next = 0.0  # monotonic time from which a costly decode may start
        self._stop = False
        self._threads = []
        self._max_rate = 0.0
        self._figures = PumpFigures()
        self._costs = collections.deque(maxlen=COST_WINDOW)
        self._regular_arrivals = collections.deque(maxlen=COST_WINDOW // 2)

    # ------------------------------------------------------------- control
    @property
    def running(self):
        """Whether the worker thread runs."""
        threads = self._threads
        return bool(threads) and threads[0].is_alive()

    @property
    def pending(self):
        """Whether an item or a decoded frame waits."""
        with self._lock:
            return bool(self._regular) or self._costly is not None or self._ready is not None

    @property
    def waiting(self):
        """What waits: ``{'regular': items, 'costly': 0 or 1, 'decoded': 0 or 1}``."""
        with self._lock:
            return {'regular': len(self._regular), 'costly': int(self._costly is not None),
                    'decoded': int(self._ready is not None)}

    @property
    def max_rate(self):
        """Processing-rate cap in Hz (0 = none)."""
        with self._lock:
            return self._max_rate

    @max_rate.setter
    def max_rate(self, hz):
        hz = float(hz)
        if not hz >= 0.0:
            raise ValueError(f'max_rate must be >= 0, got {hz}')
        with self._lock:
            self._max_rate = hz
            self._lock.notify_all()

    def start(self):
        """Start the threads (a no-op when they run); every place starts empty."""
        if self.running:
            return
        with self._lock:
            self._stop = False
            self._clear()
            self._last_arrival = -float('inf')
        self._threads = [threading.Thread(target=self._work, name=self._name, daemon=True)]
        if self._decode is not None:
            self._threads.append(threading.Thread(target=self._decode_costly, daemon=True,
                                                  name=f'{self._name}_decode'))
        for thread in self._threads:
            thread.start()

    def stop(self, timeout=5.0):
        """Stop the threads: the frame in progress is finished, what waits is dropped.

        Returns True when the threads have ended within ``timeout`` seconds.
        """
        threads = self._threads
        with self._lock:
            self._stop = True
            self._clear()
            self._lock.notify_all()
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in threads):
            return False
        self._threads = []
        return True

    def _clear(self):
        self._regular.clear()
        self._costly = self._ready = None

    # ---------------------------------------------------------------- input
    def arrived(self):
        """Count a frame as received; return its arrival time (monotonic s) for :meth:`offer`."""
        now = time.monotonic()
        self._figures.arrived(now)
        return now

    def offer(self, item, arrival, stamp=None, cost_ms=0.0):
        """Put ``item`` (arrived at ``arrival``, captured at ``stamp`` s or None) in its place.

        ``cost_ms``: what decoding it is expected to cost; above the stream's
        usual (module docstring) the item is costly.  Returns True when a
        waiting item was dropped to make room.
        """
        with self._lock:
            self._costs.append(float(cost_ms))
            entry = _Entry(item, arrival, stamp, float(cost_ms))
            dropped = False
            if self._decode is not None and cost_ms > COSTLY_MIN_MS and \
                    cost_ms > COSTLY_FACTOR * statistics.median(self._costs):
                entry.costly = True
                self._figures.count('costly')
                if self._costly is not None:
                    self._drop(self._costly)
                    dropped = True
                self._costly = entry
            else:
                if len(self._regular) >= REGULAR_DEPTH:
                    self._drop(self._regular.popleft())
                    dropped = True
                self._regular.append(entry)
                self._regular_arrivals.append(arrival)
                if self._costly is not None and self._costly.arrival < arrival:
                    self._drop(self._costly)  # stale before its decode started
                    self._costly = None
            self._lock.notify_all()
            return dropped

    def count(self, kind, n=1):
        """Add ``n`` to the count ``kind`` (e.g. ``'rejected'``)."""
        self._figures.count(kind, n)

    def observe(self, series, ms):
        """Add a value (ms) to a series of figures (e.g. ``'check_ms'``, module docstring)."""
        self._figures.observe(series, ms)

    def _drop(self, entry):
        """Count ``entry`` as dropped."""
        self._figures.count('dropped')
        if entry.costly:
            self._figures.count('costly_dropped')

    # --------------------------------------------------------------- worker
    def _take(self, last_start):
        """Wait for an item or a decoded frame (honouring the rate cap); None when stopped.

        Returns ``(entry, frame)``: ``frame`` None for a regular item still to decode.
        """
        with self._lock:
            while True:
                if self._stop:
                    return None
                if self._ready is not None and self._ready[0].arrival <= self._last_arrival:
                    self._drop(self._ready[0])  # something newer was processed meanwhile
                    self._ready = None
                if not self._regular and self._ready is None:
                    self._lock.wait(0.5)
                    continue
                cap = self._max_rate
                wait = last_start + 1.0 / cap - time.monotonic() if cap > 0 else 0.0
                if wait > 0:
                    self._lock.wait(wait)  # a newer frame may replace the pending one
                    continue
                if self._regular:
                    return self._regular.pop(), None
                ready, self._ready = self._ready, None
                return ready

    def _decoded(self, entry):
        """Decode ``entry``'s item here; return ``(frame, CPU ms)``, frame None if refused."""
        if self._decode is None:
            return entry.item, 0.0
        c0 = _cpu()
        try:
            frame = self._decode(entry.item)
        except Exception as exc:  # noqa: BLE001 - the pump must keep running
            frame = None
            self._failed(exc)
        ms = (_cpu() - c0) * 1e3
        self.observe('decode_ms', ms)
        return frame, ms

    def _failed(self, exc):
        self.count('errors')
        if self._on_error is not None:
            self._on_error(exc)

    def _work(self):
        last_start = -1e9
        while True:
            taken = self._take(last_start)
            if taken is None:
                return
            entry, frame = taken
            if frame is None:
                frame, _ = self._decoded(entry)
                if frame is None:
                    continue  # refused: the next newest item, if any, is tried
            with self._lock:
                while self._regular and self._regular[0].arrival < entry.arrival:
                    self._drop(self._regular.popleft())  # older than this frame: stale
                self._last_arrival = max(self._last_arrival, entry.arrival)
            last_start = time.monotonic()
            self._run(entry, frame)

    def _run(self, entry, frame):
        """Process one frame on the worker thread and record its figures."""
        c0 = _cpu()
        try:
            self._process(frame)
        except Exception as exc:  # noqa: BLE001 - the pump must keep running
            self._failed(exc)
            return
        finally:
            cpu = _cpu() - c0
            with self._lock:
                if entry.costly:  # processing a costly frame spends the costly share too
                    self._costly_next = max(self._costly_next, time.monotonic()) + \
                        cpu / self._share
        done = time.monotonic()
        age = None if entry.stamp is None or entry.stamp <= 0 else \
            (self._clock() - entry.stamp) * 1e3
        self._figures.processed((done - entry.arrival) * 1e3, age, cpu * 1e3)

    # --------------------------------------------------------- decode stage
    def _take_costly(self):
        """Wait for a costly item, a gap and the share to allow its decode; None when stopped."""
        with self._lock:
            while True:
                if self._stop:
                    return None
                if self._costly is None:
                    self._lock.wait(0.5)
                    continue
                now = time.monotonic()
                wait = max(self._costly_next - now,
                           gap_wait(self._regular_arrivals, self._costly.cost_ms, now))
                if wait > 0:
                    self._lock.wait(min(wait, 0.5))  # a newer item may replace or drop it
                    continue
                entry, self._costly = self._costly, None
                return entry

    def _decode_costly(self):
        while True:
            entry = self._take_costly()
            if entry is None:
                return
            frame, ms = self._decoded(entry)
            with self._lock:
                now = time.monotonic()
                self._costly_next = now + ms / 1e3 * (1.0 / self._share - 1.0)
                if frame is None:
                    continue
                if entry.arrival <= self._last_arrival:  # a newer frame was processed
                    self._drop(entry)
                    continue
                if self._ready is not None:
                    self._drop(self._ready[0])
                self._ready = (entry, frame)
                self._lock.notify_all()

    # -------------------------------------------------------------- figures
    @property
    def counts(self):
        """Return a copy of the counts (received, dropped, processed, errors, ...)."""
        return self._figures.counts

    def figures(self):
        """Return the counts and, over the recent frames, rates, latency, age and costs.

        Keys: the counts, ``recent_frames`` (arrivals in the last
        :data:`RATE_WINDOW_S` seconds), ``input_rate_hz``, ``latency_ms_p50``,
        ``latency_ms_p95``, ``age_ms_p50``, and per series (:data:`SERIES`)
        ``<series>_p95`` and ``<series>_max`` (None when there is no sample).
        """
        return self._figures.figures()
