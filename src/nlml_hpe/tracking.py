"""Face tracks over time, free of ROS: stable ids with a lifecycle and hysteresis.

:class:`FaceTracker` gives each face box of a frame a :class:`Track`.  A track
lives through these states::

    tentative --(seen confirm_frames frames in a row)--> confirmed
    confirmed --(missed)--> coasting --(seen)--> confirmed
    coasting --(missed coast_s seconds, or its predicted box left the image)--> lost
    lost --(a new box where its motion puts it, within memory_s)--> confirmed
    lost --(memory_s seconds)--> ended;   tentative --(missed)--> ended

*Listed* tracks (confirmed or coasting) are the faces a consumer reports: a
face is listed only after a few frames (a detector's one-frame false face never
is), and stays listed for ``coast_s`` after it was last seen (a missed frame or
two does not make it flicker).  A lost track is no longer listed but keeps its
id for ``memory_s``: a face that comes back where its motion puts it (out from
behind an occluder, back from a turn the landmark model could not follow) gets
its old id back; so does a face that walked out of the image and comes back in
through the edge where it left.  Ids are never reused; each track also has a random
:attr:`Track.uid`, unique across streams, nodes and restarts (REP-155 face ids).

Association, every frame: boxes are matched to the live tracks' *predicted*
boxes (constant velocity since last seen) by an optimal assignment (scipy)
over IoU, with a centre-distance fallback for fast motion; boxes left over are
matched to lost tracks by centre distance from their prediction (a gate that
widens with the time since they were lost) and by size; the rest start
tentative tracks.
"""

from dataclasses import dataclass, field
import math
import secrets
import string

import numpy as np
from scipy.optimize import linear_sum_assignment

from .geometry import box_iou

#: Track states (:class:`Track`); ``listed`` ones are reported.
TENTATIVE, CONFIRMED, COASTING, LOST = 'tentative', 'confirmed', 'coasting', 'lost'
LISTED = (CONFIRMED, COASTING)
#: Length of a :attr:`Track.uid` (as ``hri_face_detect``'s ids: 26**5 = 11.9 million).
UID_LENGTH = 5
#: A velocity estimate is an average over about this many frames (exponential).
VELOCITY_MEMORY = 3.0
#: A track's size is an average over about this long (s) ...
SIZE_MEMORY_S = 0.5
#: ... and a box this many times larger or smaller is not taken for its motion.
SIZE_JUMP = 1.2
#: A box a larger one covers this much of may be the far face of two that cross: its
#: reading may be of the near face (:meth:`Track._seen` does not take it for motion).
BEHIND_OVERLAP = 0.2
#: A lost track's predicted motion stops after this long (s): a person does not keep
#: walking in a straight line behind an occluder for long.
MAX_EXTRAPOLATION_S = 0.5
#: Association cost added per second a track went unseen (see FaceTracker._match_active).
UNSEEN_COST_PER_S = 1.0
#: Re-association gate for lost tracks: centre within this many box diagonals of
#: the prediction, plus this many per second since it was lost ...
REVIVE_GATE = 0.6
REVIVE_GATE_PER_S = 1.0
#: ... and a box this many times the lost one's size at most (either way).
REVIVE_SIZE_RATIO = 1.6


def new_uid(taken=()):
    """Return a random id of :data:`UID_LENGTH` lowercase letters not in ``taken``."""
    while True:
        uid = ''.join(secrets.choice(string.ascii_lowercase) for _ in range(UID_LENGTH))
        if uid not in taken:
            return uid


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


def box_size(box):
    """Return a face box's size that turning does not change much: its larger side (px)."""
    return max(float(box[2] - box[0]), float(box[3] - box[1]), 1e-9)


@dataclass
class Track:
    """One face over time.

    ``box`` is where it was last seen, ``hits`` the frames it has been seen in a
    row, ``first_seen`` and ``last_seen`` times (s).  Its motion is kept from
    *consistent* sightings only: ``size`` is a slow average of the box's larger
    side, and a box more than :data:`SIZE_JUMP` off it (another face read in
    its place while it passes behind that face, say) updates neither ``size``
    nor ``velocity`` (px/s of the box centre) nor ``anchor``, the ``(box, t)``
    predictions start from; nor does a box partly behind a larger face's.
    """

    id: int
    uid: str
    box: np.ndarray
    first_seen: float
    last_seen: float
    state: str = TENTATIVE
    hits: int = 1
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))
    size: float = 0.0
    anchor: tuple = None
    exit_box: np.ndarray = None

    def __post_init__(self):
        self.size = self.size or box_size(self.box)
        self.anchor = self.anchor or (self.box.copy(), self.last_seen)

    @property
    def listed(self):
        """Whether the face is reported (confirmed, or coasting after a short miss)."""
        return self.state in LISTED

    def predict(self, t):
        """Predicted box at time ``t`` (its centre at constant velocity, for a short while).

        From the last consistent sighting; from the last one when that is long ago
        (a face turned to profile for a while: its box shrank for good).  A face
        that walked out of the image can only come back through its edge: it is
        expected where it left (``exit_box``).
        """
        if self.exit_box is not None:
            return self.exit_box.copy()
        box, t0 = self.anchor
        if self.last_seen - t0 > MAX_EXTRAPOLATION_S:
            box, t0 = self.box, self.last_seen
        dt = min(max(float(t) - t0, 0.0), MAX_EXTRAPOLATION_S)
        shift = self.velocity * dt
        return box + np.concatenate([shift, shift])

    def consistent(self, box):
        """Whether ``box`` has about this track's size (see the class docstring)."""
        return abs(math.log(box_size(box) / self.size)) <= math.log(SIZE_JUMP)

    def _seen(self, box, t, confirm_frames, behind=False):
        t = float(t)
        self.exit_box = None
        if self.state == LOST:
            self.velocity = np.zeros(2)  # motion across a long gap is not a velocity
            self.anchor, self.size = (box.copy(), t), box_size(box)
        elif not behind and self.consistent(box):
            anchor, t0 = self.anchor
            if t > t0:
                a = 1.0 / VELOCITY_MEMORY if self.hits > 1 else 1.0
                step = (box[:2] + box[2:] - anchor[:2] - anchor[2:]) / 2.0
                self.velocity = (1 - a) * self.velocity + a * step / (t - t0)
                self.size += min((t - t0) / SIZE_MEMORY_S, 1.0) * (box_size(box) - self.size)
            self.anchor = (box.copy(), t)
        self.box, self.last_seen = box.copy(), t
        self.hits = self.hits + 1 if self.state == TENTATIVE else max(self.hits, confirm_frames)
        if self.state != TENTATIVE or self.hits >= confirm_frames:
            self.state = CONFIRMED


class FaceTracker:
    """Track lifecycle and association (see the module docstring).

    ``confirm_frames``: frames in a row before a face is listed (1: at once);
    ``coast_s``: seconds a listed face stays listed unseen; ``memory_s``:
    seconds a lost face keeps its id for re-association; ``min_iou``: a box
    matches a track's prediction at this IoU, or failing that when its centre
    is within ``max_centre_dist`` of the prediction's diagonal.
    """

    def __init__(self, confirm_frames=3, coast_s=0.3, memory_s=1.5, min_iou=0.3,
                 max_centre_dist=0.5):
        if int(confirm_frames) < 1:
            raise ValueError(f'confirm_frames must be >= 1, got {confirm_frames}')
        if not 0.0 <= min_iou <= 1.0:
            raise ValueError(f'min_iou must be in [0, 1], got {min_iou}')
        for name, v in (('coast_s', coast_s), ('memory_s', memory_s),
                        ('max_centre_dist', max_centre_dist)):
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f'{name} must be a non-negative number, got {v}')
        self.confirm_frames = int(confirm_frames)
        self.coast_s, self.memory_s = float(coast_s), float(memory_s)
        self.min_iou, self.max_centre_dist = float(min_iou), float(max_centre_dist)
        self._tracks = {}  # id -> Track (not ended)
        self._uids = set()  # every uid this tracker gave out
        self._next_id = 0

    @property
    def tracks(self):
        """The tracks that have not ended, by id."""
        return dict(self._tracks)

    @property
    def track_ids(self):
        """Ids of the tracks that have not ended."""
        return sorted(self._tracks)

    def reset(self):
        """Forget all tracks (ids keep increasing)."""
        self._tracks.clear()

    def update(self, boxes, t, image_size=None):
        """Assign a :class:`Track` to each of ``boxes`` ``(N, 4)`` seen at time ``t`` (s).

        Returns the N tracks (state updated).  Tracks not seen age as the module
        docstring says; ``image_size`` ``(width, height)``, when given, ends the
        coasting of a track whose predicted box has left the image.
        """
        boxes = _validate_boxes(boxes)
        t = float(t)
        self._behind = _behind(boxes)
        for k in [k for k, tr in self._tracks.items()
                  if tr.state == LOST and t - tr.last_seen > self.memory_s]:
            del self._tracks[k]  # forgotten before this frame's boxes are matched
        active = [k for k, tr in self._tracks.items() if tr.state != LOST]
        out = [None] * len(boxes)
        rest = self._match_active(boxes, active, t, out)
        rest = self._match_lost(boxes, rest, t, out)
        for i in rest:
            out[i] = self._start(boxes[i], t)
        seen = {id(tr) for tr in out}
        for tr in list(self._tracks.values()):
            if id(tr) not in seen:
                self._miss(tr, t, image_size)
        return out

    def _match_active(self, boxes, active, t, out):
        """Match boxes to tentative, confirmed and coasting tracks; return the rest."""
        if not active or not len(boxes):
            return list(range(len(boxes)))
        pred = np.stack([self._tracks[k].predict(t) for k in active])
        iou = box_iou(boxes, pred)
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        pcentres = (pred[:, :2] + pred[:, 2:]) / 2
        diag = np.linalg.norm(pred[:, 2:] - pred[:, :2], axis=1)
        rel = np.linalg.norm(centres[:, None] - pcentres[None], axis=2) / np.maximum(diag, 1e-9)
        # Cost: IoU first (0..1), centre proximity (1..2) rescues IoU misses; else no match.
        # A prediction is the less sure the longer its track went unseen: where two tracks
        # fit a box alike (one passing behind the other), the one seen last takes it.
        # Sizes tell apart a near face from a far one it passes in front of.
        ok = (iou >= self.min_iou) | (rel <= self.max_centre_dist)
        unseen = np.array([t - self._tracks[k].last_seen for k in active])[None]
        sizes = np.array([self._tracks[k].size for k in active])[None]
        jump = np.abs(np.log(np.maximum(boxes[:, 2:] - boxes[:, :2], 1e-9).max(axis=1)[:, None]
                             / sizes))
        cost = np.where(iou >= self.min_iou, 1.0 - iou, 1.0 + rel) + \
            UNSEEN_COST_PER_S * unseen + jump
        return self._assign(cost, ok, [self._tracks[k] for k in active], boxes, t, out)

    def _match_lost(self, boxes, rest, t, out):
        """Match left-over boxes to lost tracks by predicted position and size."""
        lost = [tr for tr in self._tracks.values() if tr.state == LOST]
        if not lost or not rest:
            return rest
        b = boxes[rest]
        pred = np.stack([tr.predict(t) for tr in lost])
        size = np.sqrt(np.prod(b[:, 2:] - b[:, :2], axis=1))[:, None]
        psize = np.sqrt(np.prod(pred[:, 2:] - pred[:, :2], axis=1))[None]
        ratio = np.maximum(size, 1e-9) / np.maximum(psize, 1e-9)
        diag = np.linalg.norm(pred[:, 2:] - pred[:, :2], axis=1)[None]
        dist = np.linalg.norm(((b[:, :2] + b[:, 2:]) / 2)[:, None]
                              - ((pred[:, :2] + pred[:, 2:]) / 2)[None], axis=2)
        gap = np.array([t - tr.last_seen for tr in lost])[None]
        rel = dist / np.maximum(diag, 1e-9)
        ok = (rel <= REVIVE_GATE + REVIVE_GATE_PER_S * gap) & \
            (ratio <= REVIVE_SIZE_RATIO) & (ratio >= 1.0 / REVIVE_SIZE_RATIO)
        sub = [None] * len(rest)
        left = self._assign(rel + np.abs(np.log(ratio)), ok, lost, b, t, sub, rest)
        for j, i in enumerate(rest):
            out[i] = sub[j] if sub[j] is not None else out[i]
        return [rest[j] for j in left]

    def _assign(self, cost, ok, tracks, boxes, t, out, index=None):
        """Optimal assignment of boxes (rows) to ``tracks`` (columns) where ``ok``.

        ``index``: each row's index in the frame's boxes (default: the row's own).
        """
        index = range(len(boxes)) if index is None else index
        rows, cols = linear_sum_assignment(np.where(ok, cost, 1e6))
        for i, j in zip(rows, cols):
            if ok[i, j]:
                tracks[j]._seen(boxes[i], t, self.confirm_frames, self._behind[index[i]])
                out[i] = tracks[j]
        return [i for i in range(len(boxes)) if out[i] is None]

    def _start(self, box, t):
        uid = new_uid(self._uids)
        self._uids.add(uid)
        tr = Track(self._next_id, uid, box.copy(), t, t)
        self._next_id += 1
        if self.confirm_frames <= 1:
            tr.state = CONFIRMED
        self._tracks[tr.id] = tr
        return tr

    def _miss(self, tr, t, image_size):
        """Age a track that was not seen at time ``t``."""
        unseen = t - tr.last_seen
        if tr.state == TENTATIVE:
            del self._tracks[tr.id]
            return
        if tr.state in LISTED:
            tr.state = COASTING
            if _left(tr.predict(t), image_size):
                tr.state, tr.exit_box = LOST, _exit_box(tr, image_size)
            elif unseen > self.coast_s:
                tr.state = LOST
        if tr.state == LOST and unseen > self.memory_s:
            del self._tracks[tr.id]


def _behind(boxes):
    """Per box: whether a larger box of the frame covers :data:`BEHIND_OVERLAP` of it."""
    out = np.zeros(len(boxes), dtype=bool)
    if len(boxes) < 2:
        return out
    x0 = np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    y0 = np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    x1 = np.minimum(boxes[:, None, 2], boxes[None, :, 2])
    y1 = np.minimum(boxes[:, None, 3], boxes[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    larger = area[None, :] > area[:, None]
    return np.any(larger & (inter >= BEHIND_OVERLAP * np.maximum(area[:, None], 1e-9)), axis=1)


def _exit_box(track, image_size):
    """Return a box of the track's size at the image edge's point nearest its last box."""
    c = (track.box[:2] + track.box[2:]) / 2.0
    c = np.clip(c, 0.0, np.asarray(image_size, dtype=np.float64))
    half = track.size / 2.0
    return np.concatenate([c - half, c + half])


def _left(box, image_size):
    """Whether ``box``'s centre is outside an image of ``image_size`` (None: unknown)."""
    if image_size is None:
        return False
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return not (0 <= cx <= image_size[0] and 0 <= cy <= image_size[1])
