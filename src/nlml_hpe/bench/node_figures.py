"""The node benchmark's figures: from the window's raw readings to the result and its lines.

:func:`figures` turns what :func:`nlml_hpe.bench.node.run_benchmark` read in
its window (the receiver's latencies, the node's diagnostics at the start and
the end and the largest ``*_max`` values in between, the node's RSS every
second, the publisher's counts, the load average) into the result dict;
:func:`print_figures` prints it.
"""

import numpy as np

#: Prefix of the node's diagnostics keys of rejections by reason.
REJECTED = 'frames_rejected_'


def float_or_none(value):
    """Return ``value`` as a float rounded to 2 places, or None when it is not a number."""
    try:
        return round(float(value), 2)
    except (TypeError, ValueError):
        return None


def _series(rss, every):
    """Return ``[[t, MiB], ...]`` of the RSS readings, one every ``every`` s, and the last."""
    out, next_t = [], 0.0
    for t, mib in rss:
        if t >= next_t:
            out.append([round(t), round(mib, 1)])
            next_t += every
    if out[-1][0] != round(rss[-1][0]):
        out.append([round(rss[-1][0]), round(rss[-1][1], 1)])
    return out


def figures(raw, rate, large_data, compressed, abuse_rate, abuse='bomb', rss_every=10.0):
    """Return the benchmark's result dict from the window's raw readings."""
    d0, d1, elapsed, rss = raw['d0'], raw['d1'], raw['elapsed'], raw['rss']
    window = raw['window']

    def delta(key):
        try:
            return int(d1[key]) - int(d0.get(key, 0))
        except (KeyError, ValueError):
            return None

    arr = np.array(window) if window else np.array([np.nan])
    mib = [m for _, m in rss]
    res = {
        'rate_hz': rate, 'duration_s': round(elapsed, 1), 'large_data': large_data,
        'load_average': [round(v, 1) for v in raw.get('load', ())],
        'head_pose_rate_hz': round(len(window) / elapsed, 2),
        'head_poses_rate_hz': round(raw['n_poses'] / elapsed, 2),
        'latency_ms_p50': round(float(np.percentile(arr, 50)), 2),
        'latency_ms_p95': round(float(np.percentile(arr, 95)), 2),
        'latency_ms_max': round(float(np.max(arr)), 2),
        'node_cpu_percent': round(100.0 * raw['cpu'] / elapsed, 1),
        'node_rss_mib_start': round(mib[0], 1), 'node_rss_mib_max': round(max(mib), 1),
        'node_rss_mib_end': round(mib[-1], 1),
        'node_rss_mib_series': _series(rss, rss_every),
        'frames_received_by_node': delta('frames_received'),
        'frames_processed': delta('frames_processed'),
        'frames_dropped': delta('frames_dropped'),
        'frames_without_face': delta('frames_without_face'),
        'compressed': compressed,
        # received -> published inside the node (its diagnostics, last 120 frames)
        'node_processing_ms_p50': float_or_none(d1.get('processing_latency_ms_p50')),
        'node_processing_ms_p95': float_or_none(d1.get('processing_latency_ms_p95')),
        # CPU ms in the node, the largest in any diagnostics of the window
        'node_cpu_ms_max': dict(raw.get('peaks', {})),
    }
    published = raw.get('published')
    res['good_frames_published'] = None if published is None else round(published)
    res['good_frames_answered'] = round(len(window) / (published or elapsed * rate), 4)
    if abuse_rate > 0:
        res.update(abuse=abuse, abuse_rate_hz=abuse_rate,
                   frames_rejected=delta('frames_rejected'),
                   frames_rejected_by_reason={k[len(REJECTED):]: delta(k) for k in d1
                                              if k.startswith(REJECTED) and delta(k)},
                   frames_costly=delta('frames_costly'),
                   frames_costly_dropped=delta('frames_costly_dropped'),
                   node_errors=delta('errors'))
    return res


def print_figures(res, log=print):
    """Print the result dict of :func:`figures`, a few lines."""
    log(f"output rate: head_pose {res['head_pose_rate_hz']} Hz, head_poses "
        f"{res['head_poses_rate_hz']} Hz (input {res['rate_hz']:g} Hz); good frames answered "
        f"{100 * res['good_frames_answered']:.1f} % of {res['good_frames_published']} "
        'published in the window')
    log(f"latency stamp->head_pose: p50 {res['latency_ms_p50']} ms, p95 {res['latency_ms_p95']} "
        f"ms, max {res['latency_ms_max']} ms; of which in the node (received -> published) "
        f"p50 {res['node_processing_ms_p50']} ms, p95 {res['node_processing_ms_p95']} ms")
    log(f"node CPU {res['node_cpu_percent']} % of one core; RSS start "
        f"{res['node_rss_mib_start']} MiB, max {res['node_rss_mib_max']} MiB, end "
        f"{res['node_rss_mib_end']} MiB; load average {res['load_average']}")
    log(f"node CPU ms, largest seen: {res['node_cpu_ms_max']}")
    log(f"frames: received by node {res['frames_received_by_node']}, processed "
        f"{res['frames_processed']}, dropped (stale, overwritten) {res['frames_dropped']}, "
        f"without face {res['frames_without_face']}")
    if 'abuse_rate_hz' in res:
        log(f"abuse: {res['abuse_rate_hz']:g} Hz of {res['abuse']!r}; rejected by the node "
            f"{res['frames_rejected']} {res['frames_rejected_by_reason']}; costly "
            f"{res['frames_costly']} ({res['frames_costly_dropped']} dropped); node errors "
            f"{res['node_errors']}")
    log('RSS over time [s, MiB]: ' + ' '.join(f'{t}:{m}' for t, m in res['node_rss_mib_series']))
