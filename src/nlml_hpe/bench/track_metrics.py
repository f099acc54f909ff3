"""Scoring a face stream over a sequence: MOT metrics plus what a behaviour layer needs.

:class:`SequenceScore` takes each frame's ground truth
(:class:`~nlml_hpe.bench.sequences.Truth`) and listed faces
(:class:`~nlml_hpe.bench.adapter.Hypothesis`) and keeps:

* the CLEAR MOT and identity metrics (:class:`~nlml_hpe.bench.mot.MotAccumulator`:
  box IoU >= 0.5, ignore ground truth as don't-care);
* per |yaw| bin (:data:`~nlml_hpe.bench.sequences.YAW_BINS`): visible faces and
  how many were listed (matched), the pose errors of the matched ones (the
  estimator's angles against the truth, and the published, smoothed face frame's
  geodesic error), the fraction of errors within 1 sigma;
* the beyond-range flag against the truth: should be set at |yaw| > 65 deg,
  should not at |yaw| < 45 deg;
* *gaps*: each stretch in which a person was not visible (covered, or out of
  the image) between two visible stretches: its length, and whether the track
  id after it is the one before it;
* *drops*: each time a person leaves the image (or, in the photo sequence, is
  cut away): how long its track stays listed afterwards;
* false tracks: track ids never matched to anyone (every id on face-free video);
* the time per frame and the lifecycle states seen.

:func:`summarise` turns one or several scores (pooled) into a JSON-friendly dict.
"""

from collections import Counter

import numpy as np

from ..geometry import rotation_angle_deg
from .adapter import counted
from .mot import MotAccumulator
from .sequences import PITCH_BINS, angle_bin, bin_labels, yaw_bin, yaw_bin_labels

#: The beyond-range flag should be set above this |yaw| and not below the next (deg).
BEYOND_SET_DEG, BEYOND_CLEAR_DEG = 65.0, 45.0
#: Drops: the target, seconds from leaving the image to no longer being listed.
DROP_TARGET_S = 0.5


def _wrap(d):
    return (np.asarray(d, float) + 180.0) % 360.0 - 180.0


class SequenceScore:
    """Accumulates the scoring of one sequence (see the module docstring)."""

    def __init__(self, name, kind, fps, iou_threshold=0.5):
        self.name, self.kind, self.fps = name, kind, float(fps)
        self.mot = MotAccumulator(iou_threshold)
        self.visible, self.listed = Counter(), Counter()
        self.visible_pitch, self.listed_pitch = Counter(), Counter()
        self.errors = {b: [] for b in yaw_bin_labels()}  # (pitch, yaw, roll) abs errors
        self.orientation = {b: [] for b in yaw_bin_labels()}
        self.sigma_within = {b: [] for b in yaw_bin_labels()}
        self.beyond = Counter()
        self.states = Counter()
        self.timeline = []  # per frame: ({gt id: (status, matched track id)}, {listed ids})
        self.ever_matched = set()
        self.listed_ids = set()
        self.ms = []

    def add(self, truths, hyps, ms):
        """Score one frame: its truths, the stream's hypotheses, the stream's time (ms)."""
        self.ms.append(float(ms))
        for h in hyps:
            self.states[h.state or 'n/a'] += 1
        hyps = [h for h in hyps if counted(h)]
        scored = [tr for tr in truths if tr.status != 'absent']
        res = self.mot.update([tr.identity for tr in scored], [tr.box for tr in scored],
                              [h.id for h in hyps], [h.box for h in hyps],
                              [tr.status == 'ignore' for tr in scored])
        matched = {g: h for g, h, _ in res.matches}
        by_id = {h.id: h for h in hyps}
        self.ever_matched.update(matched.values())
        self.listed_ids.update(by_id)
        for tr in truths:
            if tr.status != 'visible' or tr.angles is None:
                continue
            b, bp = yaw_bin(tr.angles[1]), angle_bin(tr.angles[0], PITCH_BINS)
            self.visible[b] += 1
            self.visible_pitch[bp] += 1
            h = by_id.get(matched.get(tr.identity))
            if h is not None:
                self.listed[b] += 1
                self.listed_pitch[bp] += 1
                self._pose(b, tr, h)
        self.timeline.append(({tr.identity: (tr.status, matched.get(tr.identity))
                               for tr in truths}, set(by_id)))

    def _pose(self, b, tr, h):
        if h.angles is not None:
            err = np.abs(_wrap(h.angles - np.asarray(tr.angles, float)))
            self.errors[b].append(err)
            if h.sigma is not None:
                self.sigma_within[b].append(err <= h.sigma)
        if h.rotation is not None and tr.face_rotation is not None:
            self.orientation[b].append(float(rotation_angle_deg(h.rotation, tr.face_rotation)))
        if h.beyond_range is not None:
            yaw = abs(tr.angles[1])
            truth = True if yaw > BEYOND_SET_DEG else False if yaw < BEYOND_CLEAR_DEG else None
            if truth is not None:
                self.beyond[('t' if h.beyond_range == truth else 'f')
                            + ('p' if h.beyond_range else 'n')] += 1
        else:
            self.beyond['n/a'] += 1

    # ------------------------------------------------------------------ events
    def _track(self, gid):
        return [(fr.get(gid, ('absent', None))) for fr, _ in self.timeline]

    def gaps(self):
        """Stretches a person was not visible between two visible ones (see module docstring)."""
        out = []
        for gid in sorted({g for fr, _ in self.timeline for g in fr}, key=str):
            track = self._track(gid)
            vis = [s == 'visible' for s, _ in track]
            i, seen = 0, False
            while i < len(track):
                if vis[i] or not seen:
                    seen = seen or vis[i]
                    i += 1
                    continue
                j = i
                while j < len(track) and not vis[j]:
                    j += 1
                if j == len(track):
                    break
                before = next((h for s, h in reversed(track[:i]) if h is not None), None)
                after_k = next((k for k in range(j, len(track)) if track[k][1] is not None), None)
                after = None if after_k is None else track[after_k][1]
                out.append({'identity': gid, 'start_s': round(i / self.fps, 3),
                            'duration_s': round((j - i) / self.fps, 3),
                            'kind': 'left' if any(s == 'absent' for s, _ in track[i:j])
                            else 'covered',
                            'id_before': before, 'id_after': after,
                            'kept_id': before is not None and before == after,
                            'relisted_after_s': None if after_k is None
                            else round((after_k - j) / self.fps, 3)})
                i = j
        return out

    def drops(self):
        """Each exit from the image: how long the person's track stayed listed after it."""
        out = []
        for gid in sorted({g for fr, _ in self.timeline for g in fr}, key=str):
            track = self._track(gid)
            for i in range(1, len(track)):
                if track[i][0] != 'absent' or track[i - 1][0] == 'absent':
                    continue
                hid = next((h for s, h in reversed(track[:i]) if h is not None), None)
                if hid is None:
                    continue
                back = next((k for k in range(i, len(track)) if track[k][0] != 'absent'),
                            len(track))
                k = i
                while k < back and hid in self.timeline[k][1]:
                    k += 1
                out.append({'identity': gid, 'exit_s': round(i / self.fps, 3), 'track': hid,
                            'listed_after_s': round((k - i) / self.fps, 3),
                            'absent_s': round((back - i) / self.fps, 3),
                            'kept_until_back': k == back and back < len(track)})
        return out

    def false_tracks(self):
        """Track ids never matched to a visible person."""
        return len(self.listed_ids - self.ever_matched)


def _mean_or_none(values):
    return float(np.mean(values)) if len(values) else None


def _r(v, nd=4):
    return None if v is None else round(float(v), nd)


def _pose_table(scores):
    out = {}
    for b in yaw_bin_labels():
        err = [e for s in scores for e in s.errors[b]]
        ori = [e for s in scores for e in s.orientation[b]]
        arr = np.array(err).reshape(-1, 3)
        row = {'n': len(err)}
        for k, name in enumerate(('pitch', 'yaw', 'roll')):
            row[name] = _r(_mean_or_none(arr[:, k]), 3)
        row['mean'] = _r(_mean_or_none(arr), 3)
        row['orientation_deg'] = _r(_mean_or_none(ori), 3)
        out[b] = row
    return out


def _beyond(scores):
    c = Counter()
    for s in scores:
        c.update(s.beyond)
    if not any(c[k] for k in ('tp', 'fp', 'tn', 'fn')):
        return 'n/a'
    return {'precision': _r(c['tp'] / (c['tp'] + c['fp']) if c['tp'] + c['fp'] else None),
            'recall': _r(c['tp'] / (c['tp'] + c['fn']) if c['tp'] + c['fn'] else None),
            'false_alarm_rate': _r(c['fp'] / (c['fp'] + c['tn']) if c['fp'] + c['tn'] else None),
            **{k: c[k] for k in ('tp', 'fp', 'tn', 'fn')}}


def _sigma(scores):
    rows = {}
    for b in yaw_bin_labels():
        flags = [f for s in scores for f in s.sigma_within[b]]
        rows[b] = None if not flags else {'n': len(flags),
                                          'within_1_sigma': _r(np.mean(flags))}
    return 'n/a' if all(v is None for v in rows.values()) else rows


def _recall(scores, visible, listed, labels):
    out = {b: {'visible': sum(getattr(s, visible)[b] for s in scores),
               'listed': sum(getattr(s, listed)[b] for s in scores)} for b in labels}
    for row in out.values():
        row['recall'] = _r(row['listed'] / row['visible']) if row['visible'] else None
    return out


def _mot(scores):
    keys = ('frames', 'gt', 'tp', 'fn', 'fp', 'id_switches', 'fragmentations', 'idtp',
            'gt_identities', 'track_ids', 'mostly_tracked', 'mostly_lost')
    parts = [s.mot.summary() for s in scores]
    if len(parts) == 1:
        return parts[0]
    out = {k: sum(p[k] for p in parts) for k in keys}
    n_hyp = out['tp'] + out['fp']
    out['recall'] = _r(out['tp'] / out['gt']) if out['gt'] else None
    out['precision'] = _r(out['tp'] / n_hyp) if n_hyp else None
    out['mota'] = _r(1 - (out['fn'] + out['fp'] + out['id_switches']) / out['gt']) \
        if out['gt'] else None
    out['idf1'] = _r(2 * out['idtp'] / (out['gt'] + n_hyp)) if out['gt'] + n_hyp else None
    return out


def summarise(scores):
    """JSON-friendly summary of one score, or of several pooled (overall figures)."""
    scores = list(scores)
    ms = np.concatenate([s.ms for s in scores]) if scores else np.zeros(0)
    frames = int(sum(len(s.ms) for s in scores))
    minutes = frames / scores[0].fps / 60.0 if scores else 0.0
    recall = _recall(scores, 'visible', 'listed', yaw_bin_labels())
    recall_pitch = _recall(scores, 'visible_pitch', 'listed_pitch', bin_labels(PITCH_BINS))
    drops = [d for s in scores for d in s.drops()]
    left = [d['listed_after_s'] for d in drops if not d['kept_until_back']]
    states = Counter()
    for s in scores:
        states.update(s.states)
    false = sum(s.false_tracks() for s in scores)
    mot = {k: (_r(v) if isinstance(v, float) else v) for k, v in _mot(scores).items()}
    return {
        'frames': frames, 'minutes': _r(minutes, 3), 'mot': mot,
        'recall_by_yaw': recall, 'recall_by_pitch': recall_pitch,
        'pose_mae_by_yaw': _pose_table(scores),
        'beyond_range': _beyond(scores), 'sigma_calibration': _sigma(scores),
        'gaps': [g for s in scores for g in s.gaps()], 'drops': drops,
        'drop_listed_after_s': {'n': len(left), 'max': _r(max(left)) if left else None,
                                'median': _r(float(np.median(left))) if left else None,
                                f'within_{DROP_TARGET_S}s': _r(np.mean(
                                    [v <= DROP_TARGET_S for v in left])) if left else None},
        'false_tracks': false,
        'false_tracks_per_min': _r(false / minutes) if minutes else None,
        'states': dict(states) if set(states) != {'n/a'} else 'n/a',
        'ms_per_frame': {'p50': _r(np.percentile(ms, 50), 2) if len(ms) else None,
                         'p95': _r(np.percentile(ms, 95), 2) if len(ms) else None,
                         'mean': _r(ms.mean(), 2) if len(ms) else None},
    }
