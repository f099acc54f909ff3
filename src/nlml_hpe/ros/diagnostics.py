"""head_pose_node's warnings (throttled, counted) and its /diagnostics status.

:class:`Warnings` logs a warning at most once per :data:`WARN_PERIOD_S` per
kind (or once), and counts every occurrence, logged or not.

:func:`diagnostic_array` builds the node's 1 Hz status: its level and message
(inactive, no images, all images rejected, faces dropped as non-finite, or the
number of faces) and the figures of the frame pump
(:meth:`nlml_hpe.frame_pump.FramePump.figures`: counts, rejections by reason,
costly messages, latency, CPU per check, decode and frame) and of the last
frame (faces, decode scale, image size, the camera_info in effect).  The
status is named after the node's fully qualified name, which tells apart the
nodes of several cameras.
"""

import collections
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from .inputs import REJECT_REASONS

#: Seconds between two warnings of the same kind.
WARN_PERIOD_S = 5.0


class Warnings:
    """Throttled warnings on ``logger``; :attr:`counts`: kind -> occurrences (all).

    ``live()`` false (the ROS context is shut down, Ctrl-C) mutes the log: a
    logger would fail to reach /rosout then.
    """

    def __init__(self, logger, period_s=WARN_PERIOD_S, live=lambda: True):
        self._logger = logger
        self._live = live
        self._period = period_s
        self._lock = threading.Lock()
        self._last = {}
        self._said = set()
        self.counts = collections.Counter()

    def __call__(self, kind, text, once=False):
        """Count ``kind``; log ``text`` unless it was logged recently (or ever, with ``once``)."""
        now = time.monotonic()
        with self._lock:
            self.counts[kind] += 1
            count = self.counts[kind]
            if once:
                log = kind not in self._said
                self._said.add(kind)
            else:
                log = now - self._last.get(kind, -1e9) >= self._period
            if log:
                self._last[kind] = now
        if log and self._live():
            suffix = f' ({count} so far)' if count > 1 and not once else ''
            self._logger.warning(f'{text}{suffix}')


def frame_record(faces=0, timings=None, frame=None, nonfinite=0):
    """Return what the diagnostics show of the last frame (the defaults: none yet).

    ``faces``: published; ``timings``: the estimate's; ``frame``: the
    :class:`~nlml_hpe.ros.inputs.InputFrame`; ``nonfinite``: faces dropped.
    """
    timings = timings or {}
    return {'faces': faces, 'reread': int(timings.get('warped', 0)),
            'unblurred': int(timings.get('unblurred', 0)),
            'landmarks_ms': float(timings.get('landmarks_ms', 0.0)),
            'scale': 1 if frame is None else frame.scale,
            'size': None if frame is None else frame.size, 'nonfinite': nonfinite}


def _ms(value):
    return 'n/a' if value is None else f'{value:.1f}'


def diagnostic_array(name, stamp, active, figures, frame):
    """Return the node's DiagnosticArray.

    ``name``: the node's fully qualified name; ``stamp``: now; ``active``: the
    lifecycle state is active; ``figures``: the pump's figures; ``frame``: the
    last frame's ``faces``, ``reread`` (faces read on their line of sight),
    ``landmarks_ms``, ``scale`` (decoded at 1/scale), ``size`` (the message's
    image size), ``nonfinite`` (faces dropped), ``camera`` (a valid camera_info
    of the images' size gives their intrinsics), ``camera_problem`` (why
    not) and ``problems`` (options asked for but not in effect, with the
    reasons).  Every value says what is in effect: counts since the node started,
    ``_p95``/``_max`` over the recent frames (CPU ms).
    """
    status = DiagnosticStatus(name=f'{name}: head pose estimation', hardware_id='camera')
    if not active:  # inactive on purpose: not subscribed
        status.level, status.message = DiagnosticStatus.OK, 'inactive (not subscribed)'
    elif not figures.get('recent_frames'):
        status.level, status.message = DiagnosticStatus.WARN, 'no images received'
    elif figures.get('rejected', 0) and not figures.get('processed', 0):
        status.level, status.message = DiagnosticStatus.ERROR, 'all images rejected'
    elif frame.get('nonfinite'):
        status.level = DiagnosticStatus.WARN
        status.message = (f'{frame["faces"]} face(s); {frame["nonfinite"]} dropped: the '
                          'estimator returned non-finite poses')
    elif frame.get('problems'):
        status.level = DiagnosticStatus.WARN
        status.message = f'{frame["faces"]} face(s); {"; ".join(frame["problems"])}'
    else:
        status.level, status.message = DiagnosticStatus.OK, f'{frame["faces"]} face(s)'
    size = frame.get('size')
    status.values = [KeyValue(key=k, value=str(v)) for k, v in [
        ('input_rate_hz', f'{figures.get("input_rate_hz", 0.0):.1f}'),
        ('processing_latency_ms_p50', _ms(figures.get('latency_ms_p50'))),
        ('processing_latency_ms_p95', _ms(figures.get('latency_ms_p95'))),
        ('stamp_to_output_ms_p50', _ms(figures.get('age_ms_p50'))),
        ('faces', frame['faces']),
        ('faces_reread_off_axis', frame['reread']),
        ('crops_motion_blur_undone', frame['unblurred']),
        ('faces_dropped_nonfinite', figures.get('faces_nonfinite', 0)),
        ('landmarks_ms', f'{frame["landmarks_ms"]:.1f}'),
        ('image_size', 'n/a' if size is None else f'{size[0]}x{size[1]}'),
        ('decode_scale', frame.get('scale', 1)),
        ('check_cpu_ms_max', _ms(figures.get('check_ms_max'))),
        ('decode_cpu_ms_p95', _ms(figures.get('decode_ms_p95'))),
        ('decode_cpu_ms_max', _ms(figures.get('decode_ms_max'))),
        ('process_cpu_ms_p95', _ms(figures.get('process_ms_p95'))),
        ('frames_received', figures.get('received', 0)),
        ('frames_processed', figures.get('processed', 0)),
        ('frames_dropped', figures.get('dropped', 0)),
        ('frames_costly', figures.get('costly', 0)),
        ('frames_costly_dropped', figures.get('costly_dropped', 0)),
        ('frames_rejected', figures.get('rejected', 0)),
        *[(f'frames_rejected_{r}', figures.get(f'rejected_{r}', 0)) for r in REJECT_REASONS],
        ('frames_without_face', figures.get('no_face', 0)),
        ('errors', figures.get('errors', 0)),
        ('camera_info_valid', frame['camera']),
        ('camera_info_problem', frame['camera_problem']),
        ('options_not_in_effect', '; '.join(frame.get('problems', ()))),
    ]]
    out = DiagnosticArray(status=[status])
    out.header.stamp = stamp
    return out
