"""Test clips: a face photo drifting on a grey canvas, as a video of a person sitting still."""

import cv2
import numpy as np


def face_sequence(rgb_face, n_frames, size=(640, 480), amplitude=6.0):
    """Yield ``n_frames`` frames of ``size`` with ``rgb_face`` drifting a few pixels.

    A real face image pasted on a grey canvas, moved along a smooth path
    (``amplitude`` pixels), imitates a video of a person sitting still.
    """
    w, h = size
    fh, fw = rgb_face.shape[:2]
    scale = min(1.0, 0.8 * h / fh, 0.8 * w / fw)
    if scale < 1.0:
        rgb_face = cv2.resize(rgb_face, (int(fw * scale), int(fh * scale)),
                              interpolation=cv2.INTER_AREA)
        fh, fw = rgb_face.shape[:2]
    x_c, y_c = (w - fw) / 2.0, (h - fh) / 2.0
    for i in range(n_frames):
        frame = np.full((h, w, 3), 110, dtype=np.uint8)
        x = int(round(x_c + amplitude * np.sin(i / 7.0)))
        y = int(round(y_c + 0.5 * amplitude * np.cos(i / 11.0)))
        frame[y:y + fh, x:x + fw] = rgb_face
        yield frame
