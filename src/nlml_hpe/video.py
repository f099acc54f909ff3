"""Read a video file's frames, and say when it could not be read whole.

:class:`VideoReader` wraps ``cv2.VideoCapture`` (FFmpeg) for the CLI: it
refuses what is not a regular file and frames above the maximum side before
reading, yields RGB frames (reduced by a whole factor when larger than the
pixel budget, with the factor, as :class:`~nlml_hpe.image_decode.Decoded`
images are), and :meth:`VideoReader.check_complete` raises when fewer frames
were read than the container declares: a truncated file, or one whose
decoding stopped at a corrupt frame (FFmpeg gives up at the first unreadable
packet; later frames cannot be reached reliably), instead of ending quietly.
The declared count is FFmpeg's: the index of AVI, MP4 and MOV files, the
duration times the frame rate for streams without one.
"""

from dataclasses import dataclass
import math
from pathlib import Path
import stat

import numpy as np

from .image_decode import FILE_BUDGET, MAX_SIDE, file_kind, source_poses


@dataclass(frozen=True)
class VideoFrame:
    """One frame: its ``index`` (from 0), ``rgb`` ``(h, w, 3)`` uint8 and its ``scale``.

    ``scale`` 1: full size; ``s``: reduced, pixel ``(u, v)`` covers source
    pixels ``[u*s, (u+1)*s)``.
    """

    index: int
    rgb: np.ndarray
    scale: int = 1

    def to_source(self, poses):
        """Return ``poses`` with boxes and landmarks in source pixels (``source_poses``)."""
        return source_poses(poses, self.scale)


def _check_regular_file(path):
    try:
        mode = Path(path).stat().st_mode
    except OSError as exc:
        raise ValueError(f'cannot read {path}: {exc.strerror}') from None
    if not stat.S_ISREG(mode):
        raise ValueError(f'{path} is not a regular file ({file_kind(mode)})')


class VideoReader:
    """The frames of a video file, read once, in order (a context manager and an iterable).

    ``max_pixels``: frames with more pixels are reduced (``cv2.INTER_AREA``)
    by the smallest whole factor that fits.  Raises ``ValueError`` when the
    file is not a regular file, cannot be opened, or declares frames with a
    side above ``max_side``.
    """

    def __init__(self, path, max_side=MAX_SIDE, max_pixels=FILE_BUDGET.max_pixels):
        import cv2

        self.path = Path(path)
        _check_regular_file(self.path)
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            self._cap.release()
            raise ValueError(f'cannot open video {self.path}')
        self.width = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.max_side = max_side
        if max(self.width, self.height) > max_side:
            self._cap.release()
            raise ValueError(f'video {self.path} declares {self.width}x{self.height} frames: '
                             f'more than the maximum side of {max_side} px')
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        #: Frames a second (25 when the container does not say).
        self.fps = fps if fps and math.isfinite(fps) and fps > 0 else 25.0
        count = self._cap.get(cv2.CAP_PROP_FRAME_COUNT)
        #: Frames the container declares (0: unknown).
        self.declared = int(count) if count and math.isfinite(count) and count > 0 else 0
        #: Frames read so far.
        self.read = 0
        self.scale = 1
        while -(-self.width // self.scale) * -(-self.height // self.scale) > max_pixels:
            self.scale += 1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Release the capture."""
        self._cap.release()

    def __iter__(self):
        """Yield a :class:`VideoFrame` per frame; stop at the end or the first unreadable one."""
        import cv2

        while True:
            ok, bgr = self._cap.read()
            if not ok or bgr is None or bgr.ndim != 3:
                return
            h, w = bgr.shape[:2]
            if max(w, h) > self.max_side:
                raise ValueError(f'video {self.path}: frame {self.read} is {w}x{h}, more than '
                                 f'the maximum side of {self.max_side} px')
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            if self.scale > 1:
                size = (-(-w // self.scale), -(-h // self.scale))
                rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            index = self.read
            self.read += 1
            yield VideoFrame(index, rgb, self.scale)

    def check_complete(self):
        """Raise ``ValueError`` unless every declared frame was read (and at least one).

        The message says how many frames were read and how many the container
        declares.
        """
        if self.read == 0:
            raise ValueError(f'no frames could be decoded from {self.path}'
                             + (f' (its container declares {self.declared})'
                                if self.declared else ''))
        if self.read < self.declared:
            raise ValueError(f'video {self.path}: read {self.read} of the {self.declared} '
                             f'frames its container declares; frame {self.read} could not be '
                             'decoded (truncated or corrupt file)')
