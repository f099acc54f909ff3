"""Face tracking (stable ids across frames) and One-Euro smoothing, free of ROS.

* :class:`FaceTracker` gives each detected face box an integer id that stays the
  same from frame to frame: greedy matching of boxes to live tracks by IoU, with
  a normalised centre-distance fallback for fast motion.  Tracks that are not
  seen for ``max_age`` seconds are forgotten; ids are never reused.
* :class:`OneEuroFilter` is the One-Euro low-pass filter of Casiez, Roussel and
  Vogel (CHI 2012): a speed-adaptive cut-off that smooths jitter at rest and
  follows fast motion with little lag.  It works on vectors.
* :class:`PoseSmoother` keeps one pair of filters (orientation quaternion and
  position) per track id.

numpy in, numpy out.
"""

import math

import numpy as np

from .geometry import box_iou


def _validate_boxes(boxes):
    arr = np.asarray(boxes, float)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f'boxes must have shape (N, 4) as (x0, y0, x1, y1), got {arr.shape}')
    if not np.all(np.isfinite(arr)):
        raise ValueError('boxes contain NaN or inf')
    if np.any(arr[:, 2] < arr[:, 0]) or np.any(arr[:, 3] < arr[:, 1]):
        raise ValueError('boxes must satisfy x1 >= x0 and y1 >= y0')
    return arr


class FaceTracker:
    """Greedy IoU / centre-distance tracker giving stable integer face ids.

    ``min_iou``: a box matches a track when their IoU is at least this, or,
    failing that, when the centre distance is below ``max_centre_dist`` times the
    track box's diagonal.  ``max_age``: seconds a track survives unseen.
    """

    def __init__(self, min_iou=0.3, max_centre_dist=0.5, max_age=1.0):
        if not 0.0 <= min_iou <= 1.0:
            raise ValueError(f'min_iou must be in [0, 1], got {min_iou}')
        if max_centre_dist < 0 or max_age < 0:
            raise ValueError('max_centre_dist and max_age must be non-negative')
        self.min_iou = float(min_iou)
        self.max_centre_dist = float(max_centre_dist)
        self.max_age = float(max_age)
        self._tracks = {}  # id -> (box (4,), last_seen time)
        self._next_id = 0

    @property
    def track_ids(self):
        """Ids of the live tracks."""
        return sorted(self._tracks)

    def reset(self):
        """Forget all tracks (ids keep increasing)."""
        self._tracks.clear()

    def update(self, boxes, t):
        """Assign ids to ``boxes`` ``(N, 4)`` seen at time ``t`` (s); return a list of N ids."""
        boxes = _validate_boxes(boxes)
        t = float(t)
        for tid in [k for k, (_, seen) in self._tracks.items() if t - seen > self.max_age]:
            del self._tracks[tid]
        ids = [None] * len(boxes)
        track_ids = list(self._tracks)
        if track_ids and len(boxes):
            tboxes = np.stack([self._tracks[k][0] for k in track_ids])
            iou = box_iou(boxes, tboxes)
            centres = (boxes[:, :2] + boxes[:, 2:]) / 2
            tcentres = (tboxes[:, :2] + tboxes[:, 2:]) / 2
            diag = np.linalg.norm(tboxes[:, 2:] - tboxes[:, :2], axis=1)
            dist = np.linalg.norm(centres[:, None] - tcentres[None], axis=2)
            rel = dist / np.maximum(diag[None], 1e-9)
            # Score: IoU first; centre proximity breaks ties and rescues IoU misses.
            score = np.where(iou >= self.min_iou, 1.0 + iou,
                             np.where(rel <= self.max_centre_dist, 1.0 - rel, -1.0))
            used_tracks = set()
            for flat in np.argsort(-score, axis=None):
                i, j = np.unravel_index(flat, score.shape)
                if score[i, j] < 0:
                    break
                if ids[i] is not None or j in used_tracks:
                    continue
                ids[i] = track_ids[j]
                used_tracks.add(j)
        for i, box in enumerate(boxes):
            if ids[i] is None:
                ids[i] = self._next_id
                self._next_id += 1
            self._tracks[ids[i]] = (box.copy(), t)
        return ids


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
