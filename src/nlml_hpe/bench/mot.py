"""Multi-object-tracking metrics as the MOT benchmarks define them, free of ROS.

:class:`MotAccumulator` takes, frame by frame, the ground-truth objects (an
identity and a box each, some marked *ignore*) and the tracker's hypotheses (a
track id and a box each) and gives:

* **CLEAR MOT** (Bernardin and Stiefelhagen 2008, as MOTChallenge computes it):
  per frame, ground truth and hypotheses are matched one to one by box IoU of at
  least ``iou_threshold`` (default 0.5); a pair matched in the previous frame
  stays matched while its IoU stays above the threshold, the rest is matched by
  the Hungarian algorithm on IoU.  Unmatched ground truth is a miss (FN), an
  unmatched hypothesis a false positive (FP).  An *identity switch* (IDSW) is a
  ground-truth object matched to another track id than at its previous match
  (however long ago).  A *fragmentation* (Frag) is an interruption of a
  ground-truth trajectory's matches that is followed by a match again.
  MOTA = 1 - (FN + FP + IDSW) / GT; MOTP here is the mean IoU of the matches.
* **Identity metrics** (Ristani et al. 2016): every ground-truth identity is
  paired with at most one track id (and the reverse) so as to maximise the
  frames where the pair's boxes overlap by at least ``iou_threshold`` (IDTP);
  IDF1 = 2 IDTP / (GT detections + hypothesis detections).
* Mostly tracked / mostly lost: ground-truth identities matched in at least
  80 % / at most 20 % of their frames.

*Ignore* ground truth (an object that is there but cannot be expected to be
found: covered, mostly out of the image) is a don't-care region, as in
MOTChallenge's preprocessing: a hypothesis matched to it (Hungarian, IoU at
least the threshold, against all ground truth of the frame) is removed before
scoring, and the object itself is neither a match nor a miss.  Its frames do not
interrupt a trajectory (no fragmentation).
"""

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..geometry import box_iou

#: Default matching criterion: box IoU at least this.
IOU_THRESHOLD = 0.5
#: A ground-truth identity matched in at least / at most this fraction of its frames
#: is mostly tracked / mostly lost.
MOSTLY_TRACKED, MOSTLY_LOST = 0.8, 0.2


def assign(similarity, threshold):
    """One-to-one pairs ``[(row, col), ...]`` maximising total similarity, each >= threshold.

    ``similarity`` ``(N, M)``; the Hungarian algorithm (scipy) on the pairs that
    reach ``threshold`` (the others can never be paired).
    """
    sim = np.asarray(similarity, float)
    if sim.ndim != 2 or sim.size == 0:
        return []
    ok = sim >= threshold
    if not ok.any():
        return []
    cost = np.where(ok, -sim, 1e6)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if ok[r, c]]


def _boxes(boxes):
    arr = np.asarray(boxes, float)
    return arr.reshape(-1, 4) if arr.size else np.zeros((0, 4))


@dataclass
class FrameResult:
    """The scoring of one frame by :meth:`MotAccumulator.update`.

    ``matches``: ``(ground-truth id, track id, IoU)``; ``misses``: ground-truth
    ids not matched; ``false``: track ids matched to nothing; ``ignored``: track
    ids removed as matches of ignore ground truth; ``switches``: ground-truth
    ids whose track id changed since their previous match.
    """

    matches: list = field(default_factory=list)
    misses: list = field(default_factory=list)
    false: list = field(default_factory=list)
    ignored: list = field(default_factory=list)
    switches: list = field(default_factory=list)


class MotAccumulator:
    """Accumulate CLEAR MOT and identity metrics over the frames of one sequence.

    Call :meth:`update` once per frame, then :meth:`summary`.  Ids may be any
    hashable values; ground-truth ids and track ids live in separate spaces.
    """

    def __init__(self, iou_threshold=IOU_THRESHOLD):
        if not 0.0 < float(iou_threshold) <= 1.0:
            raise ValueError(f'iou_threshold must be in (0, 1], got {iou_threshold}')
        self.iou_threshold = float(iou_threshold)
        self.frames = 0
        self._prev = {}  # gt id -> track id matched in the previous frame
        self._last = {}  # gt id -> track id of its latest match
        self._tracked = defaultdict(list)  # gt id -> matched? per frame it was scored
        self._overlap = Counter()  # (gt id, track id) -> frames with IoU >= threshold
        self._gt_count = Counter()
        self._hyp_count = Counter()
        self._ious = []
        self._totals = Counter()

    def _drop_ignored(self, gt_boxes, ignore, hyp_ids, hyp_boxes):
        """Return the indices of the hypotheses that do not match ignore ground truth."""
        keep = list(range(len(hyp_ids)))
        if not ignore.any() or not len(hyp_ids):
            return keep, []
        pairs = assign(box_iou(gt_boxes, hyp_boxes), self.iou_threshold)
        dropped = {j for i, j in pairs if ignore[i]}
        return [j for j in keep if j not in dropped], [hyp_ids[j] for j in sorted(dropped)]

    def update(self, gt_ids, gt_boxes, hyp_ids, hyp_boxes, gt_ignore=None):
        """Score one frame; return its :class:`FrameResult`.

        ``gt_ids`` (N), ``gt_boxes`` (N, 4) as (x0, y0, x1, y1); ``hyp_ids`` (M),
        ``hyp_boxes`` (M, 4); ``gt_ignore`` (N) booleans (default: none ignored).
        Ids must be unique within the frame.
        """
        gt_ids, hyp_ids = list(gt_ids), list(hyp_ids)
        gt_boxes, hyp_boxes = _boxes(gt_boxes), _boxes(hyp_boxes)
        if len(gt_boxes) != len(gt_ids) or len(hyp_boxes) != len(hyp_ids):
            raise ValueError('one box per id is needed')
        if len(set(gt_ids)) != len(gt_ids) or len(set(hyp_ids)) != len(hyp_ids):
            raise ValueError('ids must be unique within a frame')
        ignore = (np.zeros(len(gt_ids), bool) if gt_ignore is None
                  else np.asarray(gt_ignore, bool).reshape(-1))
        if len(ignore) != len(gt_ids):
            raise ValueError('one ignore flag per ground-truth object is needed')
        self.frames += 1
        keep, ignored = self._drop_ignored(gt_boxes, ignore, hyp_ids, hyp_boxes)
        gi = [i for i in range(len(gt_ids)) if not ignore[i]]
        gids, gboxes = [gt_ids[i] for i in gi], gt_boxes[gi]
        hids, hboxes = [hyp_ids[j] for j in keep], hyp_boxes[keep]
        iou = box_iou(gboxes, hboxes) if len(gids) and len(hids) else np.zeros((len(gids),
                                                                                len(hids)))
        pairs = self._match(gids, hids, iou)
        result = FrameResult(ignored=ignored)
        matched_g, matched_h = {i for i, _ in pairs}, {j for _, j in pairs}
        for i, j in pairs:
            g, h = gids[i], hids[j]
            result.matches.append((g, h, float(iou[i, j])))
            if g in self._last and self._last[g] != h:
                result.switches.append(g)
            self._last[g] = h
            self._ious.append(float(iou[i, j]))
        result.misses = [g for i, g in enumerate(gids) if i not in matched_g]
        result.false = [h for j, h in enumerate(hids) if j not in matched_h]
        self._prev = {gids[i]: hids[j] for i, j in pairs}
        for i, g in enumerate(gids):
            self._tracked[g].append(i in matched_g)
            self._gt_count[g] += 1
        for h in hids:
            self._hyp_count[h] += 1
        for i, j in zip(*np.nonzero(iou >= self.iou_threshold)):
            self._overlap[(gids[i], hids[j])] += 1
        self._totals.update(gt=len(gids), tp=len(pairs), fn=len(result.misses),
                            fp=len(result.false), idsw=len(result.switches),
                            ignored=len(ignored))
        return result

    def _match(self, gids, hids, iou):
        """CLEAR MOT matching: the previous frame's pairs that still overlap, then Hungarian."""
        pairs, used_g, used_h = [], set(), set()
        col = {h: j for j, h in enumerate(hids)}
        for i, g in enumerate(gids):
            j = col.get(self._prev.get(g))
            if j is not None and iou[i, j] >= self.iou_threshold:
                pairs.append((i, j))
                used_g.add(i)
                used_h.add(j)
        rest_g = [i for i in range(len(gids)) if i not in used_g]
        rest_h = [j for j in range(len(hids)) if j not in used_h]
        if rest_g and rest_h:
            sub = iou[np.ix_(rest_g, rest_h)]
            pairs += [(rest_g[a], rest_h[b]) for a, b in assign(sub, self.iou_threshold)]
        return pairs

    def identity_scores(self):
        """``(IDTP, IDFP, IDFN)``: the best one-to-one pairing of identities and track ids."""
        gts, hyps = sorted(self._gt_count, key=str), sorted(self._hyp_count, key=str)
        idtp = 0
        if gts and hyps:
            counts = np.zeros((len(gts), len(hyps)))
            gi = {g: i for i, g in enumerate(gts)}
            hj = {h: j for j, h in enumerate(hyps)}
            for (g, h), n in self._overlap.items():
                counts[gi[g], hj[h]] = n
            rows, cols = linear_sum_assignment(-counts)
            idtp = int(counts[rows, cols].sum())
        n_gt, n_hyp = sum(self._gt_count.values()), sum(self._hyp_count.values())
        return idtp, n_hyp - idtp, n_gt - idtp

    def fragmentations(self):
        """Interruptions of ground-truth trajectories that are followed by a match again."""
        frag = 0
        for flags in self._tracked.values():
            f = np.asarray(flags, bool)
            hit = np.flatnonzero(f)
            if len(hit) < 2:
                continue
            inner = f[hit[0]:hit[-1] + 1]
            frag += int(np.sum(inner[1:] < inner[:-1]))
        return frag

    def summary(self):
        """Return the sequence's metrics as a JSON-friendly dict (None where undefined)."""
        t = self._totals
        idtp, idfp, idfn = self.identity_scores()
        n_gt, n_hyp = t['gt'], t['tp'] + t['fp']
        fractions = [np.mean(v) for v in self._tracked.values()]

        def ratio(a, b):
            return float(a / b) if b else None
        return {
            'frames': self.frames, 'gt': n_gt, 'tp': t['tp'], 'fn': t['fn'], 'fp': t['fp'],
            'id_switches': t['idsw'], 'fragmentations': self.fragmentations(),
            'ignored_hypotheses': t['ignored'],
            'recall': ratio(t['tp'], n_gt), 'precision': ratio(t['tp'], n_hyp),
            'mota': None if not n_gt else 1.0 - (t['fn'] + t['fp'] + t['idsw']) / n_gt,
            'motp_iou': float(np.mean(self._ious)) if self._ious else None,
            'idtp': idtp, 'idfp': idfp, 'idfn': idfn,
            'idf1': ratio(2 * idtp, n_gt + n_hyp), 'idp': ratio(idtp, n_hyp),
            'idr': ratio(idtp, n_gt),
            'gt_identities': len(self._gt_count), 'track_ids': len(self._hyp_count),
            'mostly_tracked': int(sum(f >= MOSTLY_TRACKED for f in fractions)),
            'mostly_lost': int(sum(f <= MOSTLY_LOST for f in fractions)),
        }
