"""The newest frame, processed on a worker thread at a capped rate; free of ROS.

A camera delivers frames faster than a slow stage may process them; queuing
them would add latency without bound.  :class:`FramePump` keeps one slot: a
new frame replaces the one waiting (counted *dropped*), and a worker thread
takes the newest frame when it is free.  ``max_rate`` (Hz, 0 = no cap) spaces
the starts of two frames; a frame that arrives meanwhile replaces the waiting
one, so the cap never builds a backlog either.

The pump counts what it sees (``received``, ``dropped``, ``processed``,
``errors``, and any count a caller adds with :meth:`FramePump.count`, e.g.
frames rejected before they reach the slot) and keeps the recent input rate,
the processing latency (arrival to end of processing) and the age of each
frame's output (capture stamp to end of processing, on the caller's clock).
The ROS node (:mod:`nlml_hpe.ros.node`) is its one user; the tests drive it
without ROS.
"""

import collections
import threading
import time

#: Recent frames kept for the rate, latency and age figures.
WINDOW = 120
#: Seconds of arrivals the input rate is measured over.
RATE_WINDOW_S = 2.0


def percentile(values, q):
    """Return the ``q`` quantile (0-1) of ``values`` (nearest rank), or None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class FramePump:
    """Newest-frame slot + worker thread + rate cap + figures.

    ``process(item)`` runs on the worker thread for each frame taken; an
    exception it raises is counted as an error and handed to ``on_error(exc)``
    (the pump keeps running).  ``clock()`` gives the time (s) on the clock of
    the frames' capture stamps (default: wall time), for the output age.
    """

    def __init__(self, process, *, on_error=None, clock=time.time, name='frame_pump'):
        self._process = process
        self._on_error = on_error
        self._clock = clock
        self._name = name
        self._lock = threading.Condition()
        self._pending = None  # (item, arrival time, capture stamp) waiting for the worker
        self._stop = False
        self._thread = None
        self._max_rate = 0.0
        self._counts = collections.Counter()
        self._arrivals = collections.deque(maxlen=WINDOW)
        self._latency_ms = collections.deque(maxlen=WINDOW)
        self._age_ms = collections.deque(maxlen=WINDOW)

    # ------------------------------------------------------------- control
    @property
    def running(self):
        """Whether the worker thread runs."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def pending(self):
        """Whether a frame waits for the worker."""
        with self._lock:
            return self._pending is not None

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
        """Start the worker (a no-op when it runs); the slot starts empty."""
        if self.running:
            return
        with self._lock:
            self._stop = False
            self._pending = None
        self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout=5.0):
        """Stop the worker: the frame in progress is finished, the waiting one dropped.

        Returns True when the worker has ended within ``timeout`` seconds.
        """
        thread = self._thread
        with self._lock:
            self._stop = True
            self._pending = None
            self._lock.notify_all()
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                return False
        self._thread = None
        return True

    # ---------------------------------------------------------------- input
    def arrived(self):
        """Count a frame as received; return its arrival time (monotonic s) for :meth:`offer`."""
        now = time.monotonic()
        with self._lock:
            self._counts['received'] += 1
            self._arrivals.append(now)
        return now

    def offer(self, item, arrival, stamp=None):
        """Put ``item`` (arrived at ``arrival``, captured at ``stamp`` s or None) in the slot.

        A frame still waiting is replaced and counted as dropped (:meth:`start`
        empties the slot).  Returns True when a waiting frame was replaced.
        """
        with self._lock:
            replaced = self._pending is not None
            if replaced:
                self._counts['dropped'] += 1
            self._pending = (item, arrival, stamp)
            self._lock.notify_all()
            return replaced

    def count(self, kind, n=1):
        """Add ``n`` to the count ``kind`` (e.g. ``'rejected'``)."""
        with self._lock:
            self._counts[kind] += n

    # --------------------------------------------------------------- worker
    def _take(self, last_start):
        """Wait for a frame (honouring the rate cap); return it, or None when stopped."""
        with self._lock:
            while True:
                if self._stop:
                    return None
                if self._pending is None:
                    self._lock.wait(0.5)
                    continue
                cap = self._max_rate
                wait = last_start + 1.0 / cap - time.monotonic() if cap > 0 else 0.0
                if wait > 0:
                    self._lock.wait(wait)  # a newer frame may replace the pending one
                    continue
                pending, self._pending = self._pending, None
                return pending

    def _work(self):
        last_start = -1e9
        while True:
            taken = self._take(last_start)
            if taken is None:
                return
            item, arrival, stamp = taken
            last_start = time.monotonic()
            try:
                self._process(item)
            except Exception as exc:  # noqa: BLE001 - the pump must keep running
                self.count('errors')
                if self._on_error is not None:
                    self._on_error(exc)
                continue
            done = time.monotonic()
            age = None if stamp is None or stamp <= 0 else (self._clock() - stamp) * 1e3
            with self._lock:
                self._counts['processed'] += 1
                self._latency_ms.append((done - arrival) * 1e3)
                if age is not None:
                    self._age_ms.append(age)

    # -------------------------------------------------------------- figures
    @property
    def counts(self):
        """Return a copy of the counts (received, dropped, processed, errors, ...)."""
        with self._lock:
            return collections.Counter(self._counts)

    def figures(self):
        """Return the counts and, over the recent frames, the input rate, latency and age.

        Keys: the counts, ``recent_frames`` (arrivals in the last
        :data:`RATE_WINDOW_S` seconds), ``input_rate_hz``, ``latency_ms_p50``,
        ``latency_ms_p95``, ``age_ms_p50`` (None when there is no sample).
        """
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._arrivals if now - t <= RATE_WINDOW_S]
            latency, age = list(self._latency_ms), list(self._age_ms)
            out = dict(self._counts)
        span = recent[-1] - recent[0] if len(recent) > 1 else 0.0
        out['recent_frames'] = len(recent)
        out['input_rate_hz'] = (len(recent) - 1) / span if span > 0 else 0.0
        out['latency_ms_p50'] = percentile(latency, 0.5)
        out['latency_ms_p95'] = percentile(latency, 0.95)
        out['age_ms_p50'] = percentile(age, 0.5)
        return out
