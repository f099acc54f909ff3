"""One-Euro smoothing of head poses, free of ROS.

* :class:`OneEuroFilter` is the One-Euro low-pass filter of Casiez, Roussel and
  Vogel (CHI 2012): a speed-adaptive cut-off that smooths jitter at rest and
  follows fast motion with little lag.  It works on vectors.
* :class:`PoseSmoother` keeps one pair of filters (orientation quaternion and
  position) per track id.

numpy in, numpy out.
"""

import math

import numpy as np


def _alpha(cutoff, dt):
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One-Euro filter for a vector signal.

    ``min_cutoff`` (Hz): cut-off at rest, lower = smoother.  ``beta``: how fast
    the cut-off grows with speed, higher = less lag.  ``d_cutoff`` (Hz): cut-off
    of the derivative estimate.
    """

    def __init__(self, min_cutoff=1.0, beta=0.05, d_cutoff=1.0, default_dt=1.0 / 30.0):
        for name, val in (('min_cutoff', min_cutoff), ('d_cutoff', d_cutoff),
                          ('default_dt', default_dt)):
            if not (math.isfinite(val) and val > 0):
                raise ValueError(f'{name} must be a positive number, got {val}')
        if not (math.isfinite(beta) and beta >= 0):
            raise ValueError(f'beta must be a non-negative number, got {beta}')
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self.default_dt = float(default_dt)
        self.reset()

    def reset(self):
        """Forget the filter state."""
        self._x = None
        self._dx = None
        self._t = None

    def __call__(self, x, t):
        """Filter sample ``x`` taken at time ``t`` (s); return the smoothed value."""
        x = np.asarray(x, float)
        if not np.all(np.isfinite(x)):
            raise ValueError('OneEuroFilter input contains NaN or inf')
        if self._x is None:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), float(t)
            return x.copy()
        if x.shape != self._x.shape:
            raise ValueError(f'OneEuroFilter input shape changed from {self._x.shape} '
                             f'to {x.shape}')
        dt = float(t) - self._t
        if not (math.isfinite(dt) and dt > 0):
            dt = self.default_dt  # repeated or unset stamps: assume the nominal rate
        self._t = float(t) if math.isfinite(float(t)) else self._t + dt
        a_d = _alpha(self.d_cutoff, dt)
        self._dx = a_d * (x - self._x) / dt + (1 - a_d) * self._dx
        cutoff = self.min_cutoff + self.beta * float(np.linalg.norm(self._dx))
        a = _alpha(cutoff, dt)
        self._x = a * x + (1 - a) * self._x
        return self._x.copy()


class PoseSmoother:
    """One-Euro smoothing of orientation (quaternion) and position per track id.

    Quaternions are kept in the hemisphere of the previous output before
    filtering and renormalised after, so the filter never averages ``q`` with
    ``-q``.  Position filtering uses the same parameters (metres).
    """

    def __init__(self, min_cutoff=1.0, beta=0.05, d_cutoff=1.0, max_age=1.0):
        OneEuroFilter(min_cutoff, beta, d_cutoff)  # validates the parameters
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.max_age = float(max_age)
        self._filters = {}  # id -> [quat filter, position filter, last quat, last t]

    def reset(self):
        """Forget all filter state."""
        self._filters.clear()

    def __call__(self, track_id, quat, position, t):
        """Return smoothed ``(quat (4,), position (3,))`` for ``track_id`` at time ``t``."""
        quat = np.asarray(quat, float)
        position = np.asarray(position, float)
        norm = np.linalg.norm(quat)
        if quat.shape != (4,) or not np.isfinite(norm) or norm < 1e-9:
            raise ValueError(f'quaternion must be a finite non-zero (4,) vector, got {quat}')
        for tid in [k for k, v in self._filters.items() if t - v[3] > self.max_age]:
            del self._filters[tid]
        state = self._filters.get(track_id)
        if state is None:
            state = [OneEuroFilter(self.min_cutoff, self.beta, self.d_cutoff),
                     OneEuroFilter(self.min_cutoff, self.beta, self.d_cutoff), None, t]
            self._filters[track_id] = state
        quat = quat / norm
        if state[2] is not None and float(np.dot(quat, state[2])) < 0:
            quat = -quat
        q = state[0](quat, t)
        q = q / np.linalg.norm(q)
        p = state[1](position, t)
        state[2], state[3] = q, t
        return q, p
