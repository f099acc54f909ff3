"""Benchmark head_pose_node end to end over real DDS.

    nlml-hpe benchmark node --rate 30 --duration 120 [--large-data] [--model PATH]
    python -m nlml_hpe.bench.node --rate 60 --duration 600 --rss-every 60   # soak
    nlml-hpe benchmark node --rate 30 --abuse-rate 20 --duration 60   # sustained abuse
    nlml-hpe benchmark node --rate 30 --abuse mixed --abuse-rate 20 --duration 600 --rss-every 60

Three processes: a publisher of 640x480 ``rgb8`` face frames at ``--rate``
(another process, stamping each frame with the time it is published), the node
(``python -m nlml_hpe.ros.node``, a separate process so its CPU and RSS can be read
from ``/proc``) and the receiver (this process).  After a warm-up (first
``head_pose`` received) it measures for ``--duration`` seconds and prints:

* achieved output rate of ``head_pose`` and ``head_poses`` (Hz);
* latency from the image header stamp to reception of ``head_pose``, p50/p95/max;
* the node's CPU (% of one core) and RSS (start / max / end, MiB);
* frames published, received by the node, processed and dropped (overwritten
  before processing: the node never builds a backlog).

``--large-data`` sets ``FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA`` for all three
processes (Fast DDS >= 2.13 / ROS 2 Jazzy+): large samples then go over TCP +
shared memory instead of fragmented UDP, which cuts image transport latency.
Topics live under ``/nlml_bench`` (plus ``/tf`` and ``/diagnostics``).

``--compressed`` publishes the frames as JPEG ``sensor_msgs/CompressedImage``
(the node runs with ``use_compressed:=true``).  ``--abuse-rate HZ`` (implies
``--compressed``) interleaves that many hostile messages a second with the
good frames, on the same topic, the payloads of ``--abuse KIND``
(:func:`nlml_hpe.bench.hostile.abuse_payloads`) in turn: ``bomb`` (default:
headers declaring 32768x32768 and 8000x8000 on small JPEGs, 20000x20000 on a
PNG), ``scan`` (a progressive JPEG of 5000 scans), ``webp`` (32 bytes
declaring 8192x8192), ``big`` (a flat 8192x8192 JPEG, decoded at 1/4 within
the budget), ``chunks`` (a PNG padded with 400,000 chunks, 4.8 MB) or
``mixed`` (one of each).  The figures then add the share of the good frames
published in the window that were answered on ``head_pose`` (the publisher
reports its counts every second), the node's rejections by reason, the
messages it found costly (decoded on their own thread within their share of
time), the largest CPU time of a check, a decode and a frame in the node (its
diagnostics, over the last 120 frames), and its RSS over time
(``node_rss_mib_series``: every ``--rss-every`` seconds, default 10).  The
load average of the machine is reported at the start and the end.
"""

import argparse
import json
import os
from pathlib import Path
import subprocess
import sys
import threading
import time

import numpy as np

from ..flags import add_option_flags, config_from_flags
from ..options import MAX_FACES, EstimatorConfig
from .feed import NS, face_frame, run_publisher
from .hostile import ABUSE_KINDS
from .node_figures import figures, float_or_none, print_figures

PAGE_MIB = os.sysconf('SC_PAGE_SIZE') / 2 ** 20 if hasattr(os, 'sysconf') else 4096 / 2 ** 20
CLK_TCK = os.sysconf('SC_CLK_TCK') if hasattr(os, 'sysconf') else 100


def _proc_cpu_seconds(pid):
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def _proc_rss_mib(pid):
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024.0
    return float('nan')


def _child_env(large_data):
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    src = str(Path(__file__).resolve().parents[2])
    env['PYTHONPATH'] = src + os.pathsep + env.get('PYTHONPATH', '')
    if large_data:
        env['FASTDDS_BUILTIN_TRANSPORTS'] = 'LARGE_DATA'
    else:
        env.pop('FASTDDS_BUILTIN_TRANSPORTS', None)
    return env


def _ros_value(value):
    """Spell a parameter value as ``ros2 run`` ``-p name:=value`` takes it."""
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, float) else str(value)


def node_command(model=None, config=None, compressed=False):
    """Return the command line of ``head_pose_node`` with the estimator options of ``config``.

    ``config`` (default: the node's defaults) sets every public estimator
    parameter explicitly, so the figures say what ran.
    """
    config = EstimatorConfig.node_defaults() if config is None else config
    cmd = [sys.executable, '-m', 'nlml_hpe.ros.node', '--ros-args', '-r', f'__ns:={NS}']
    if model:
        cmd += ['-p', f'model_path:={model}']
    for spec in EstimatorConfig.specs():
        value = getattr(config, spec.field)
        if value is not None:
            cmd += ['-p', f'{spec.name}:={_ros_value(value)}']
    if compressed:
        cmd += ['-p', 'use_compressed:=true']
    return cmd


def _publisher_command(rate, total, width, height, image, off_axis, compressed, abuse_rate,
                       faces, abuse='bomb'):
    return [sys.executable, '-m', 'nlml_hpe.bench.node', '--role', 'publisher',
            '--rate', str(rate), '--duration', str(total), '--width', str(width),
            '--height', str(height)] + (['--image', str(image)] if image else []) + (
                ['--off-axis'] if off_axis else []) + (
                ['--compressed'] if compressed else []) + (
                ['--abuse-rate', str(abuse_rate), '--abuse', abuse] if abuse_rate > 0 else []) + (
                ['--faces', str(faces)] if faces > 1 else [])


class _Receiver:
    """This process's listener: ``head_pose`` latencies, ``head_poses`` times, diagnostics."""

    def __init__(self):
        import rclpy

        self.lat, self.poses_t, self.diag, self.peaks = [], [], {}, {}
        self.lock = threading.Lock()
        self.executor = self.spinner = None
        self.context = rclpy.Context()
        rclpy.init(context=self.context)

    def start(self):
        """Subscribe and spin in a thread."""
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseArray, PoseStamped
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        rx = rclpy.create_node('nlml_bench_receiver', context=self.context)
        rx.create_subscription(PoseStamped, f'{NS}/head_pose', self._on_pose, 100)
        rx.create_subscription(PoseArray, f'{NS}/head_poses', self._on_poses, 100)
        rx.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(rx)
        self.spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self.spinner.start()

    def _on_pose(self, msg):
        now = time.time()
        st = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        with self.lock:
            self.lat.append((now, (now - st) * 1e3))

    def _on_poses(self, msg):
        with self.lock:
            self.poses_t.append(time.time())

    def _on_diag(self, msg):
        for status in msg.status:
            if status.name.startswith(f'{NS}/head_pose_node:'):
                values = {kv.key: kv.value for kv in status.values}
                with self.lock:
                    self.diag.update(values)
                    for key, value in values.items():  # the largest of each *_max seen
                        number = float_or_none(value)
                        if key.endswith('_max') and number is not None:
                            self.peaks[key] = max(self.peaks.get(key, number), number)

    def diagnostics(self):
        """Return a copy of the node's latest diagnostics values."""
        with self.lock:
            return dict(self.diag)

    def peaks_since_reset(self, reset=False):
        """Return the largest ``*_max`` diagnostics values seen (since the last reset)."""
        with self.lock:
            out = dict(self.peaks)
            if reset:
                self.peaks.clear()
        return out

    def window(self, t0, t1):
        """``(head_pose latencies (ms), number of head_poses)`` received in ``[t0, t1]``."""
        with self.lock:
            return ([v for ts, v in self.lat if t0 <= ts <= t1],
                    sum(1 for ts in self.poses_t if t0 <= ts <= t1))

    def close(self):
        """Stop spinning and shut the context down."""
        import rclpy

        if self.executor is not None:
            self.executor.shutdown(timeout_sec=2.0)
            self.spinner.join(timeout=2.0)
        rclpy.shutdown(context=self.context)


class _Processes:
    """The node and publisher processes, with the node's log."""

    def __init__(self, node_cmd, pub_cmd, env):
        import tempfile

        self.pub_cmd, self.env, self.pub = pub_cmd, env, None
        self.reports, self._reader = [], None  # the running publisher's (t, published)
        self.log = tempfile.TemporaryFile(mode='w+')
        self.node = subprocess.Popen(node_cmd, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, text=True)

    def start_publisher(self):
        """(Re)start the publisher: a new DDS participant."""
        if self.pub is not None:
            self.pub.kill()
            self.pub.wait()
        self.pub = subprocess.Popen(self.pub_cmd, env=self.env, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, text=True)
        self.reports = []  # a new publisher counts from zero
        self._reader = threading.Thread(target=self._read_reports,
                                        args=(self.pub, self.reports), daemon=True)
        self._reader.start()

    @staticmethod
    def _read_reports(proc, reports):
        for line in proc.stdout:
            try:
                r = json.loads(line)
                reports.append((float(r['t']), int(r['published'])))
            except (ValueError, KeyError, TypeError):
                continue

    def published(self, t0, t1):
        """Good frames the running publisher published in ``[t0, t1]`` (wall s), or None."""
        reports = list(self.reports)
        if len(reports) < 2 or reports[0][0] > t0 or reports[-1][0] < t1:
            return None
        times, counts = zip(*reports)
        return float(np.interp(t1, times, counts) - np.interp(t0, times, counts))

    def node_log(self):
        """Return the last 2000 characters the node printed."""
        self.log.seek(0)
        return self.log.read()[-2000:]

    def close(self):
        """Interrupt both, kill what does not stop within 15 s."""
        for proc in (self.pub, self.node):
            if proc is not None and proc.poll() is None:
                proc.send_signal(2)
        for proc in (self.pub, self.node):
            if proc is not None:
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        self.log.close()


def _wait_first_pose(rx, procs, warmup_timeout, log):
    """Wait for the first ``head_pose``; restart the publisher when discovery failed."""
    t_wait = t_pub = time.monotonic()
    restarts = 0
    while True:
        with rx.lock:
            ready = len(rx.lat) > 0
        diag = rx.diagnostics()
        if ready:
            return
        received = int(diag.get('frames_received', 0) or 0)
        if diag and received == 0 and restarts < 2 and time.monotonic() - t_pub > 15.0:
            # The node runs (it sends diagnostics) but has no frame: Fast DDS
            # discovery between publisher and node failed (about 1 run in 6 here,
            # right after another run). A new publisher is a new participant.
            procs.start_publisher()
            t_pub = time.monotonic()
            restarts += 1
            log('no frame reached the node in 15 s: publisher restarted')
        if procs.node.poll() is not None:
            raise RuntimeError('head_pose_node exited: ' + procs.node_log())
        if time.monotonic() - t_wait > warmup_timeout:
            raise RuntimeError(
                f'no head_pose within {warmup_timeout:.0f} s (is there a model? pass '
                f'--model); publisher running: {procs.pub.poll() is None}; last '
                f'diagnostics: {diag or "none"}; node log:\n' + procs.node_log())
        time.sleep(0.05)


def _measure(rx, procs, duration, rss_every, log):
    """Measure for ``duration`` s; return the raw readings of the window."""
    pid = procs.node.pid
    time.sleep(2.0)  # settle
    d0 = rx.diagnostics()
    rx.peaks_since_reset(reset=True)
    load0 = os.getloadavg()[0]
    cpu0, t0 = _proc_cpu_seconds(pid), time.time()
    rss = [(0.0, _proc_rss_mib(pid))]
    next_print = t0 + rss_every if rss_every > 0 else float('inf')
    while time.time() - t0 < duration:
        time.sleep(1.0)
        rss.append((time.time() - t0, _proc_rss_mib(pid)))
        if time.time() >= next_print:
            log(f'  t={time.time() - t0:6.0f} s  node RSS {rss[-1][1]:7.1f} MiB, load '
                f'{os.getloadavg()[0]:.1f}')
            next_print += rss_every
    cpu1, t1 = _proc_cpu_seconds(pid), time.time()
    time.sleep(1.2)  # one more diagnostics message
    window, n_poses = rx.window(t0, t1)
    return {'d0': d0, 'd1': rx.diagnostics(), 'cpu': cpu1 - cpu0, 'elapsed': t1 - t0,
            'rss': rss, 'window': window, 'n_poses': n_poses,
            'published': procs.published(t0, t1), 'peaks': rx.peaks_since_reset(),
            'load': (load0, os.getloadavg()[0])}


def run_benchmark(rate=30.0, duration=120.0, width=640, height=480, model=None,
                  large_data=False, rss_every=0.0, image=None, warmup_timeout=60.0, log=print,
                  off_axis=False, compressed=False, abuse_rate=0.0, faces=1, config=None,
                  abuse='bomb'):
    """Run publisher, node and receiver; return a dict of figures.

    ``config``: the node's estimator options (an
    :class:`~nlml_hpe.options.EstimatorConfig`; default: the node's defaults).
    """
    compressed = compressed or abuse_rate > 0
    face_frame(width, height, image, off_axis, faces)  # fail early: a bad image, no clip
    env = _child_env(large_data)
    pub_cmd = _publisher_command(rate, duration + warmup_timeout + 5, width, height, image,
                                 off_axis, compressed, abuse_rate, faces, abuse)
    procs = _Processes(node_command(model, config, compressed), pub_cmd, env)
    rx = None
    try:
        rx = _Receiver()
        rx.start()
        procs.start_publisher()
        _wait_first_pose(rx, procs, warmup_timeout, log)
        log(f'measuring {duration:.0f} s at {rate:g} Hz, {width}x{height} '
            f'{"JPEG" if compressed else "rgb8"}'
            f'{f" + {abuse_rate:g} Hz of {abuse!r} abuse" if abuse_rate > 0 else ""}, '
            f'FASTDDS_BUILTIN_TRANSPORTS={"LARGE_DATA" if large_data else "(default)"}')
        raw = _measure(rx, procs, duration, rss_every, log)
    finally:
        procs.close()
        if rx is not None:
            rx.close()
    return figures(raw, rate, large_data, compressed, abuse_rate, abuse,
                   rss_every if rss_every > 0 else 10.0)


def build_parser():
    """Return the parser of ``nlml-hpe benchmark node``."""
    parser = argparse.ArgumentParser(prog='nlml-hpe benchmark node',
                                     description='head_pose_node rate, latency, CPU and RSS')
    parser.add_argument('--rate', type=float, default=30.0, help='input rate in Hz')
    parser.add_argument('--duration', type=float, default=120.0, help='measured seconds')
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--model', default=None, help='model directory or .safetensors file')
    parser.add_argument('--large-data', action='store_true',
                        help='set FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA for all processes')
    parser.add_argument('--faces', type=int, default=1,
                        help='publish this many faces in a grid (a crowd; set --max-faces too)')
    parser.add_argument('--rss-every', type=float, default=0.0,
                        help='print the node RSS every N seconds (soak test)')
    parser.add_argument('--image', default=None,
                        help='face picture to publish (default: the first demo clip frame)')
    parser.add_argument('--off-axis', action='store_true',
                        help='publish the face about 20 deg off the optical axis (re-read)')
    parser.add_argument('--compressed', action='store_true',
                        help='publish JPEG CompressedImage frames (node: use_compressed:=true)')
    parser.add_argument('--abuse-rate', type=float, default=0.0, metavar='HZ',
                        help='also publish this many hostile messages a second between the '
                             'good frames (implies --compressed)')
    parser.add_argument('--abuse', choices=ABUSE_KINDS, default='bomb',
                        help='what the hostile messages are (nlml_hpe.bench.hostile): bomb '
                             '(lying headers), scan (5000-scan progressive JPEG), webp (32 '
                             'bytes declaring 8192^2), big (flat 8192^2 JPEG), chunks (PNG '
                             'of 400,000 chunks), mixed (one of each, in turn)')
    parser.add_argument('--json', default=None, help='also write the figures to this file')
    parser.add_argument('--role', choices=['benchmark', 'publisher'], default='benchmark',
                        help=argparse.SUPPRESS)
    specs = add_option_flags(parser, EstimatorConfig.node_defaults(),
                             title="the node's estimator parameters (default: the node's)")
    return parser, specs


def _check_args(parser, args, specs):
    """Exit with a usage error for a value out of range; return the node's estimator options."""
    if not (0 < args.rate <= 1000) or args.duration <= 0 or args.width <= 0 or args.height <= 0:
        parser.error('rate must be in (0, 1000], duration and image size positive')
    if not 1 <= args.faces <= MAX_FACES:
        parser.error(f'--faces must be in 1..{MAX_FACES}')
    if not 0 <= args.abuse_rate <= 1000:
        parser.error('--abuse-rate must be in [0, 1000]')
    try:
        return config_from_flags(args, specs, EstimatorConfig.node_defaults())
    except ValueError as exc:
        parser.error(str(exc))


def main(argv=None):
    """Entry point of ``nlml-hpe benchmark node``; returns a process exit code."""
    parser, specs = build_parser()
    args = parser.parse_args(argv)
    config = _check_args(parser, args, specs)
    want = 'LARGE_DATA' if args.large_data else None
    if args.role == 'benchmark' and os.environ.get('FASTDDS_BUILTIN_TRANSPORTS') != want:
        # Fast DDS reads the variable once per process: restart with the right environment.
        env = _child_env(args.large_data)
        argv = sys.argv[1:] if argv is None else list(argv)
        os.execve(sys.executable, [sys.executable, '-m', 'nlml_hpe.bench.node', *argv], env)
    if args.role == 'publisher':
        return run_publisher(args.rate, args.duration, args.width, args.height, args.image,
                             args.off_axis, args.compressed or args.abuse_rate > 0,
                             args.abuse_rate, args.faces, args.abuse)
    try:
        res = run_benchmark(args.rate, args.duration, args.width, args.height, args.model,
                            args.large_data, args.rss_every, args.image,
                            off_axis=args.off_axis, compressed=args.compressed,
                            abuse_rate=args.abuse_rate, faces=args.faces, config=config,
                            abuse=args.abuse)
    except (RuntimeError, ValueError) as exc:
        print(f'nlml-hpe benchmark node: error: {exc}', file=sys.stderr)
        return 1
    print_figures(res)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
