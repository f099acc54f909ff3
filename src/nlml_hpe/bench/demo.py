"""Built-in demo: head_pose_node on a bundled clip of a face at known poses.

    nlml-hpe demo [--out demo_out] [--clip DIR] [--model PATH]

Runs the real node in this process (real rclpy, no ROS install needed) and a
publisher that plays the clip on ``/nlml_hpe_demo/image`` with a matching
``camera_info``; every ``/head_pose`` received is converted back to AFLW2000
angles and printed beside the known pose.  Annotated frames (the estimated head
axes drawn from the received pose) and a video are written to the output
directory, with ``results.json``.

Clip format (``src/nlml_hpe/data/demo/``): JPEG frames plus ``poses.json``::

    {"camera": {"fx": .., "fy": .., "cx": .., "cy": .., "width": .., "height": ..},
     "frames": [{"file": "000.jpg", "pitch": .., "yaw": .., "roll": ..}, ...],
     "source": "...", "license": "..."}

Angles are degrees in the AFLW2000 convention (see :mod:`nlml_hpe.geometry`).
"""

import argparse
import json
from pathlib import Path
import sys
import threading
import time

import numpy as np

from ..camera import Camera

DEMO_DIR = Path(__file__).resolve().parents[1] / 'data' / 'demo'
IMAGE_TOPIC = '/nlml_hpe_demo/image'
INFO_TOPIC = '/nlml_hpe_demo/camera_info'
FRAME_ID = 'demo_camera_optical_frame'


def load_clip(clip_dir):
    """Return ``(frames list of (name, rgb, (pitch, yaw, roll))), K (3, 3), meta dict)``."""
    import cv2

    clip_dir = Path(clip_dir)
    meta_path = clip_dir / 'poses.json'
    if not meta_path.is_file():
        raise ValueError(f'demo clip not found: {meta_path} is missing')
    meta = json.loads(meta_path.read_text())
    cam = meta['camera']
    K = Camera.from_intrinsics(cam['fx'], cam['fy'], cam['cx'], cam['cy'], cam['width'],
                               cam['height']).k
    frames = []
    for item in meta['frames']:
        bgr = cv2.imread(str(clip_dir / item['file']))
        if bgr is None:
            raise ValueError(f'cannot read demo frame {clip_dir / item["file"]}')
        if bgr.shape[:2] != (cam['height'], cam['width']):
            raise ValueError(f'{item["file"]} is {bgr.shape[1]}x{bgr.shape[0]}, poses.json '
                             f'says {cam["width"]}x{cam["height"]}')
        pose = (float(item['pitch']), float(item['yaw']), float(item['roll']))
        frames.append((item['file'], cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), pose))
    if not frames:
        raise ValueError(f'{meta_path} lists no frames')
    return frames, K, meta


#: Known poses of the bundled clip, (pitch, yaw, roll) degrees.
CLIP_POSES = [(0, 0, 0), (0, 20, 0), (0, -20, 0), (0, 40, 0), (0, -40, 0), (15, 0, 0),
              (-15, 0, 0), (25, 0, 0), (-25, 0, 0), (0, 0, 15), (0, 0, -20), (10, 30, 10),
              (-15, -30, -10), (20, -20, 15), (-10, 35, -15)]
#: ICT-FaceKit vertex ranges used by the clip renderer (from the ICT-FaceKit README).
_ICT_PARTS = {'skin': (0, 11248), 'mouth': (11248, 13294), 'socket': (13294, 14062),
              'eye': (21451, 24591)}
_ICT_EYES = ((21451, 23021), (23021, 24591))
_COLOURS_BGR = {'skin': (120, 150, 200), 'mouth': (60, 60, 140), 'socket': (90, 110, 160),
                'eye': (230, 230, 230), 'iris': (50, 70, 90), 'pupil': (20, 20, 20)}


class ClipRenderer:
    """Flat-shaded painter's-algorithm renderer of the ICT-FaceKit neutral head (OpenCV).

    Good enough for MediaPipe to find the face; used once, offline, to make the
    bundled demo clip (``python -m nlml_hpe.bench.demo --make-clip ict_facekit.npz``).
    The head frame is ICT-FaceKit's (x subject's left, y up, z out of the face),
    the frame of :mod:`nlml_hpe.geometry`.
    """

    def __init__(self, ict_npz):
        data = np.load(ict_npz)
        self.vertices = data['neutral'].astype(np.float64)
        part_of = np.full(len(self.vertices), '', dtype=object)
        for name, (a, b) in _ICT_PARTS.items():
            part_of[a:b] = name
        tris, parts = [], []
        for quad in data['faces']:
            part = part_of[quad[0]]
            if not part:
                continue
            tris.append(quad[[0, 1, 2]])
            parts.append(part)
            if quad[3] != quad[2] and quad[3] >= 0:
                tris.append(quad[[0, 2, 3]])
                parts.append(part)
        self.tris = np.array(tris)
        self.parts = np.array(parts)
        front = np.zeros(len(self.vertices))
        for a, b in _ICT_EYES:
            eye = self.vertices[a:b]
            centre = eye.mean(axis=0)
            front[a:b] = (eye[:, 2] - centre[2]) / np.linalg.norm(eye - centre, axis=1).mean()
        tri_front = front[self.tris].min(axis=1)
        eye = self.parts == 'eye'
        self.parts[eye & (tri_front > 0.80)] = 'iris'
        self.parts[eye & (tri_front > 0.93)] = 'pupil'
        face = self.vertices[:9409]
        self.centre = np.array([0.0, face[:, 1].mean(), face[:, 2].mean() - 5.0])

    def render(self, pitch, yaw, roll, K, size, distance_cm=55.0):
        """BGR image of the head at AFLW2000 angles (deg), ``distance_cm`` in front of K."""
        import cv2

        from ..geometry import euler_to_matrix

        width, height = size
        rot = euler_to_matrix(pitch, yaw, roll)
        viewer = (self.vertices - self.centre) @ rot.T
        optical = viewer * [1.0, -1.0, -1.0] + [0.0, 0.0, distance_cm]
        uvw = optical @ np.asarray(K, float).T
        uv = uvw[:, :2] / uvw[:, 2:3]
        img = np.empty((height, width, 3), np.uint8)
        img[:] = (70, 80, 90)
        tv = viewer[self.tris]
        normal = np.cross(tv[:, 1] - tv[:, 0], tv[:, 2] - tv[:, 0])
        normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-12
        to_cam = np.array([0.0, 0.0, distance_cm]) - tv.mean(axis=1)
        facing = np.sum(normal * to_cam, axis=1) > 0
        light = np.array([0.3, 0.5, 1.0]) / np.linalg.norm([0.3, 0.5, 1.0])
        shade = np.clip(0.35 + 0.75 * np.abs(normal @ light), 0.0, 1.1)
        depth = optical[self.tris][:, :, 2].mean(axis=1)
        pts = np.round(uv[self.tris] * 16).astype(np.int32)
        solid = np.isin(self.parts, ['skin', 'mouth', 'socket'])
        for t in np.argsort(-depth):
            if solid[t] and not facing[t]:
                continue
            colour = np.clip(np.array(_COLOURS_BGR[self.parts[t]]) * shade[t], 0, 255)
            cv2.fillConvexPoly(img, pts[t], tuple(int(c) for c in colour), cv2.LINE_AA, 4)
        return img


def make_clip(ict_npz, out_dir=DEMO_DIR, poses=CLIP_POSES, size=(640, 480), focal=700.0):
    """Render the demo clip (JPEG frames + poses.json) from ICT-FaceKit."""
    import cv2

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    renderer = ClipRenderer(ict_npz)
    width, height = size
    K = Camera.pinhole(focal, width, height).k
    frames = []
    for i, (pitch, yaw, roll) in enumerate(poses):
        name = f'{i:03d}.jpg'
        img = renderer.render(pitch, yaw, roll, K, size)
        cv2.imwrite(str(out_dir / name), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        frames.append({'file': name, 'pitch': pitch, 'yaw': yaw, 'roll': roll})
    meta = {
        'camera': {'fx': focal, 'fy': focal, 'cx': width / 2, 'cy': height / 2,
                   'width': width, 'height': height},
        'frames': frames,
        'source': 'ICT-FaceKit neutral head rendered by nlml_hpe.bench.demo.make_clip at 55 cm',
        'license': 'MIT (ICT-FaceKit, Copyright (c) 2020 USC Institute for Creative '
                   'Technologies); see LICENSE.ict_facekit',
        'angles': 'degrees, AFLW2000 convention (nlml_hpe.geometry), head frame of '
                  'ICT-FaceKit',
    }
    (out_dir / 'poses.json').write_text(json.dumps(meta, indent=1) + '\n')
    return out_dir


def annotate(rgb, K, pose_msg, known, estimated):
    """BGR image with the received head axes (x red = forward, y green, z blue) and labels."""
    import cv2
    from scipy.spatial.transform import Rotation

    img = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if pose_msg is not None:
        p, q = pose_msg.position, pose_msg.orientation
        origin = np.array([p.x, p.y, p.z])
        rot = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()
        pts = [origin] + [origin + 0.08 * rot[:, i] for i in range(3)]
        uv = [(K @ pt)[:2] / (K @ pt)[2] for pt in pts]
        o = tuple(int(round(v)) for v in uv[0])
        for i, colour in enumerate([(0, 0, 255), (0, 200, 0), (255, 0, 0)]):
            cv2.arrowedLine(img, o, tuple(int(round(v)) for v in uv[i + 1]), colour, 2,
                            tipLength=0.2)
    lines = ['known     yaw %6.1f pitch %6.1f roll %6.1f' % (known[1], known[0], known[2])]
    if estimated is not None:
        lines.append('estimated yaw %6.1f pitch %6.1f roll %6.1f'
                     % (estimated[1], estimated[0], estimated[2]))
    else:
        lines.append('estimated: no face')
    for i, text in enumerate(lines):
        cv2.putText(img, text, (8, 18 + 18 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3)
        cv2.putText(img, text, (8, 18 + 18 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (255, 255, 255), 1)
    return img


def _write_video(path, images, fps=2.0):
    import cv2

    h, w = images[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), fps, (w, h))
    if not writer.isOpened():
        return None
    for img in images:
        writer.write(img)
    writer.release()
    return path


def _answered(entry):
    """Tell whether head_poses arrived and, when it lists a face, head_pose too."""
    return 'poses' in entry and ('pose' in entry or not entry['poses'].poses)


class _Rig:
    """The node and a player node (publisher of the clip, listener of the answers), spinning."""

    def __init__(self, context, model_path, log):
        self.executor = self.spinner = self.node = self.player = None
        self.got = {}
        self.cond = threading.Condition()
        try:
            self._start(context, model_path, log)
        except BaseException:
            self.close()
            raise

    def _start(self, context, model_path, log):
        from geometry_msgs.msg import PoseArray, PoseStamped
        import rclpy
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.parameter import Parameter
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image

        from ..ros.node import HeadPoseNode

        # Each frame is a new pose, shown once: no smoothing, and a face is listed at once
        # (a camera's face is listed after track_confirm_frames frames in a row).
        overrides = [Parameter('smoothing', value=False),
                     Parameter('track_confirm_frames', value=1)]
        if model_path:
            overrides.append(Parameter('model_path', value=str(model_path)))
        t0 = time.monotonic()
        self.node = HeadPoseNode(context=context, parameter_overrides=overrides,
                                 cli_args=['--ros-args', '-r', f'image:={IMAGE_TOPIC}',
                                           '-r', f'camera_info:={INFO_TOPIC}'])
        log(f'head_pose_node started in {time.monotonic() - t0:.1f} s; '
            f'publishing on {IMAGE_TOPIC}, listening to /head_pose')
        self.player = rclpy.create_node('nlml_hpe_demo_player', context=context)
        self.image_pub = self.player.create_publisher(Image, IMAGE_TOPIC,
                                                      qos_profile_sensor_data)
        self.info_pub = self.player.create_publisher(CameraInfo, INFO_TOPIC,
                                                     qos_profile_sensor_data)
        self.player.create_subscription(PoseStamped, '/head_pose', self._on_msg('pose'), 10)
        self.player.create_subscription(PoseArray, '/head_poses', self._on_msg('poses'), 10)
        self.executor = MultiThreadedExecutor(num_threads=2, context=context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.player)
        self.spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self.spinner.start()

    def _on_msg(self, kind):
        def cb(msg):
            with self.cond:
                key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
                self.got.setdefault(key, {})[kind] = msg
                self.cond.notify_all()
        return cb

    def wait_for_node(self, timeout):
        """Wait until the node subscribes to the clip's images (at most ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        while self.image_pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)

    def play(self, rgb, info, timeout):
        """Publish one frame (again each second while unanswered); return its answers.

        Returns ``{'pose': PoseStamped, 'poses': PoseArray}``, either absent when
        it did not come within ``timeout`` s.
        """
        from sensor_msgs.msg import Image

        height, width = rgb.shape[:2]
        stamp = self.node.get_clock().now().to_msg()
        key = (stamp.sec, stamp.nanosec)
        msg = Image(height=height, width=width, encoding='rgb8', is_bigendian=0,
                    step=width * 3, data=rgb.tobytes())
        msg.header.stamp = info.header.stamp = stamp
        msg.header.frame_id = FRAME_ID
        deadline = time.monotonic() + timeout
        next_send = 0.0
        with self.cond:
            while not _answered(self.got.get(key, {})) and time.monotonic() < deadline:
                if time.monotonic() >= next_send:  # best effort: resend if lost
                    self.info_pub.publish(info)
                    self.image_pub.publish(msg)
                    next_send = time.monotonic() + 1.0
                self.cond.wait(0.05)
            return dict(self.got.get(key, {}))

    def close(self):
        """Stop spinning and destroy both nodes."""
        if self.executor is not None:
            self.executor.shutdown(timeout_sec=2.0)
            self.spinner.join(timeout=2.0)
        for n in (self.player, self.node):
            if n is not None:
                n.destroy_node()


def _frame_result(name, known, entry):
    """Return a frame's result dict and its ``/head_pose`` (or None) from its answers."""
    from ..geometry import optical_face_quaternion_to_euler

    pose = entry.get('pose')
    est = None
    if pose is not None:
        q = pose.pose.orientation
        est = tuple(float(v) for v in optical_face_quaternion_to_euler([q.x, q.y, q.z, q.w]))
    result = {'file': name, 'known': dict(zip(('pitch', 'yaw', 'roll'), known)),
              'estimated': None if est is None else dict(zip(('pitch', 'yaw', 'roll'), est)),
              'position_m': None if pose is None else
              [pose.pose.position.x, pose.pose.position.y, pose.pose.position.z]}
    return result, None if pose is None else pose.pose


def _table_row(result, answered):
    """One printed line: the frame, its known and received angles, and their errors."""
    fmt = '%6.1f %6.1f %6.1f'
    k, e = result['known'], result['estimated']
    line = f"{result['file']:>10} | {fmt % (k['yaw'], k['pitch'], k['roll']):>26} | "
    if e is None:
        return line + f'{"no face" if answered else "no answer":>26} |'
    err = [abs(e[a] - k[a]) for a in ('yaw', 'pitch', 'roll')]
    return line + f"{fmt % (e['yaw'], e['pitch'], e['roll']):>26} | {fmt % tuple(err):>18}"


def _write_outputs(results, annotated, out_dir, log):
    """Log the clip's MAE; write the video and ``results.json``."""
    errs = np.array([[abs(r['estimated'][k] - r['known'][k]) for k in ('yaw', 'pitch', 'roll')]
                     for r in results if r['estimated'] is not None]).reshape(-1, 3)
    if len(errs):
        mae = errs.mean(axis=0)
        log(f'faces found in {len(errs)}/{len(results)} frames; MAE yaw {mae[0]:.1f}, '
            f'pitch {mae[1]:.1f}, roll {mae[2]:.1f}, mean {mae.mean():.1f} deg')
    else:
        log(f'no face found in any of the {len(results)} frames')
    video = _write_video(out_dir / 'demo.mp4', annotated)
    (out_dir / 'results.json').write_text(json.dumps(results, indent=2) + '\n')
    log(f'wrote {len(annotated)} annotated frames'
        + (f', {video.name}' if video else '') + f' and results.json to {out_dir}')


def run_demo(clip_dir=DEMO_DIR, out_dir='demo_out', model_path=None, timeout=10.0,
             log=print):
    """Run the node on the clip; return a list of per-frame result dicts."""
    import cv2
    import rclpy
    from sensor_msgs.msg import CameraInfo

    frames, K, meta = load_clip(clip_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log(f'demo clip: {len(frames)} frames from {clip_dir} ({meta.get("source", "")})')
    context = rclpy.Context()
    rclpy.init(context=context)
    rig = None
    try:
        rig = _Rig(context, model_path, log)
        rig.wait_for_node(timeout)
        height, width = frames[0][1].shape[:2]
        info = CameraInfo(width=width, height=height, k=[float(v) for v in K.ravel()],
                          distortion_model='plumb_bob', d=[0.0] * 5)
        info.header.frame_id = FRAME_ID
        results, annotated = [], []
        header = f'{"frame":>10} | {"known yaw/pitch/roll (deg)":>26} | ' \
                 f'{"/head_pose yaw/pitch/roll":>26} | {"abs err":>18}'
        log(header)
        log('-' * len(header))
        for i, (name, rgb, known) in enumerate(frames):
            entry = rig.play(rgb, info, timeout)
            result, pose = _frame_result(name, known, entry)
            log(_table_row(result, 'poses' in entry))
            est = result['estimated']
            img = annotate(rgb, K, pose, known, None if est is None else
                           (est['pitch'], est['yaw'], est['roll']))
            cv2.imwrite(str(out_dir / f'annotated_{i:03d}.jpg'), img)
            annotated.append(img)
            results.append(result)
        _write_outputs(results, annotated, out_dir, log)
        return results
    finally:
        if rig is not None:
            rig.close()
        if context.ok():
            rclpy.shutdown(context=context)


def main(argv=None):
    """Entry point of ``nlml-hpe demo``; returns a process exit code."""
    parser = argparse.ArgumentParser(prog='nlml-hpe demo', description=__doc__.split('\n')[0])
    parser.add_argument('--out', default='demo_out',
                        help='output directory (default: %(default)s)')
    parser.add_argument('--clip', default=str(DEMO_DIR), help='clip directory with poses.json')
    parser.add_argument('--model', default=None, help='model directory or .safetensors file')
    parser.add_argument('--timeout', type=float, default=10.0,
                        help='seconds to wait for each answer (default: %(default)s)')
    parser.add_argument('--make-clip', metavar='ICT_NPZ', default=None,
                        help='(maintainers) re-render the clip into --clip from ICT-FaceKit')
    args = parser.parse_args(argv)
    if args.make_clip:
        print(f'wrote {make_clip(args.make_clip, args.clip)}')
        return 0
    try:
        results = run_demo(args.clip, args.out, args.model, args.timeout)
    except ValueError as exc:
        print(f'nlml-hpe demo: error: {exc}', file=sys.stderr)
        return 2
    return 0 if any(r['estimated'] is not None for r in results) else 1


if __name__ == '__main__':
    sys.exit(main())
