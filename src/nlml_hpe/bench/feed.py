"""The node benchmark's camera: face frames (and hostile payloads) published at a rate.

Runs as its own process (``python -m nlml_hpe.bench.node --role publisher``,
started by :func:`nlml_hpe.bench.node.run_benchmark`), stamping each frame
with the time it is published, under ``/nlml_bench``.  The hostile payloads
are :func:`nlml_hpe.bench.hostile.abuse_payloads`'s of one kind, in turn.
Once a second it prints a JSON line with the counts so far (``t`` wall time,
``published`` good frames, ``bombs``), so the benchmark knows how many good
frames a window really held.
"""

import json
import time

import numpy as np

from .hostile import abuse_payloads

#: Namespace of the benchmark's topics.
NS = '/nlml_bench'


def face_frame(width=640, height=480, image=None, off_axis=False, faces=1):
    """Return an RGB face frame of the given size: ``image`` or the first demo clip frame.

    The picture is scaled to fit and letterboxed; ``off_axis`` instead scales it
    to half the height and centres it at 81 % of the width (about 20 deg off
    the optical axis of a 60 deg camera), where the node re-reads the face
    (``perspective_warp``).  ``faces`` > 1: that many copies in a grid (a crowd).
    """
    import cv2

    from .demo import DEMO_DIR, load_clip

    canvas = np.full((height, width, 3), 100, np.uint8)
    if image:
        bgr = cv2.imread(str(image))
        if bgr is None:
            raise ValueError(f'cannot read image {image}')
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    else:
        frames, _, _ = load_clip(DEMO_DIR)
        rgb = frames[0][1]
    if faces > 1:
        cols = int(np.ceil(np.sqrt(faces)))
        rows = int(np.ceil(faces / cols))
        cw, ch = width // cols, height // rows
        s = min(cw / rgb.shape[1], ch / rgb.shape[0])
        tile = cv2.resize(rgb, (int(rgb.shape[1] * s), int(rgb.shape[0] * s)),
                          interpolation=cv2.INTER_AREA)
        for i in range(faces):
            y, x = (i // cols) * ch, (i % cols) * cw
            canvas[y:y + tile.shape[0], x:x + tile.shape[1]] = tile
        return canvas
    scale = min(width / rgb.shape[1], height / rgb.shape[0])
    if off_axis:
        scale *= 0.5
    w, h = int(rgb.shape[1] * scale), int(rgb.shape[0] * scale)
    x0, y0 = (width - w) // 2, (height - h) // 2
    if off_axis:
        x0 = min(int(0.81 * width) - w // 2, width - w)
    canvas[y0:y0 + h, x0:x0 + w] = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
    return canvas


def bombs():
    """Decompression bombs: small real images whose headers declare huge sizes.

    ``[32768^2 JPEG, 8000^2 JPEG, 20000^2 PNG]``, each made from an 8x8 grey
    image: the JPEGs are 629 bytes (the issue's bomb was 631).  Every one is
    refused from its header.
    """
    import struct
    import zlib

    import cv2

    small = np.full((8, 8, 3), 128, np.uint8)
    jpg = bytearray(cv2.imencode('.jpg', small)[1].tobytes())
    i = jpg.find(b'\xff\xc0')
    out = []
    for side in (32768, 8000):
        b = bytearray(jpg)
        b[i + 5:i + 9] = struct.pack('>HH', side, side)
        out.append(bytes(b))
    png = cv2.imencode('.png', small)[1].tobytes()
    ihdr = b'IHDR' + struct.pack('>IIBBBBB', 20000, 20000, 8, 2, 0, 0, 0)
    out.append(png[:8] + struct.pack('>I', 13) + ihdr
               + struct.pack('>I', zlib.crc32(ihdr) & 0xFFFFFFFF) + png[33:])
    return out


def run_publisher(rate, duration, width, height, image=None, off_axis=False, compressed=False,
                  abuse_rate=0.0, faces=1, abuse='bomb'):
    """Publish frames at ``rate`` Hz (and ``abuse`` payloads at ``abuse_rate``) for ``duration`` s.

    Prints the counts every second and at the end.
    """
    import cv2
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image

    rgb = face_frame(width, height, image, off_axis, faces)
    with rclpy.init():
        node = rclpy.create_node('nlml_bench_publisher')
        if compressed:
            pub = node.create_publisher(CompressedImage, f'{NS}/image/compressed',
                                        qos_profile_sensor_data)
            jpg = cv2.imencode('.jpg', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()
            msg = CompressedImage(format='jpeg', data=jpg)
            bomb_msgs = [CompressedImage(format='jpeg', data=b) for b in abuse_payloads(abuse)]
            for b in bomb_msgs:
                b.header.frame_id = 'bench_camera_optical_frame'
        else:
            pub = node.create_publisher(Image, f'{NS}/image', qos_profile_sensor_data)
            msg = Image(height=height, width=width, encoding='rgb8', is_bigendian=0,
                        step=width * 3, data=rgb.tobytes())
        info_pub = node.create_publisher(CameraInfo, f'{NS}/camera_info', qos_profile_sensor_data)
        msg.header.frame_id = 'bench_camera_optical_frame'
        f = 0.9 * width
        info = CameraInfo(width=width, height=height,
                          k=[f, 0.0, width / 2, 0.0, f, height / 2, 0.0, 0.0, 1.0])
        info.header.frame_id = msg.header.frame_id
        period = 1.0 / rate
        bomb_period = 1.0 / abuse_rate if abuse_rate > 0 else float('inf')
        sent = bombed = 0
        start = time.monotonic()
        next_report = start + 1.0
        next_t = start
        next_bomb = start + bomb_period / 2  # between good frames
        while time.monotonic() - start < duration:
            if time.monotonic() >= next_report:
                print(json.dumps({'t': time.time(), 'published': sent, 'bombs': bombed}),
                      flush=True)
                next_report += 1.0
            delay = min(next_t, next_bomb) - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if next_bomb < next_t:
                bomb = bomb_msgs[bombed % len(bomb_msgs)]
                bomb.header.stamp = node.get_clock().now().to_msg()
                pub.publish(bomb)
                bombed += 1
                next_bomb = max(next_bomb + bomb_period, time.monotonic())
                continue
            now = node.get_clock().now().to_msg()
            msg.header.stamp = info.header.stamp = now
            pub.publish(msg)
            if sent % max(1, int(rate)) == 0:
                info_pub.publish(info)
            sent += 1
            next_t = max(next_t + period, time.monotonic())  # behind: never burst to catch up
        print(json.dumps({'t': time.time(), 'published': sent, 'bombs': bombed,
                          'seconds': time.monotonic() - start}), flush=True)
        node.destroy_node()
    return 0
