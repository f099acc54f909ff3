"""Figures the benchmarks share: latency percentiles and the process's memory."""

from pathlib import Path

import numpy as np


def latency_stats(values):
    """Return ``{'p50', 'p95', 'mean'}`` of ``values`` (ms), ``None`` each when empty."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return {'p50': None, 'p95': None, 'mean': None}
    return {'p50': float(np.percentile(v, 50)), 'p95': float(np.percentile(v, 95)),
            'mean': float(v.mean())}


def rss_mb():
    """Return ``(current RSS, peak RSS)`` of this process in MB (Linux ``/proc``)."""
    cur = peak = float('nan')
    try:
        for line in Path('/proc/self/status').read_text().splitlines():
            if line.startswith('VmRSS:'):
                cur = int(line.split()[1]) / 1024.0
            elif line.startswith('VmHWM:'):
                peak = int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return cur, peak
