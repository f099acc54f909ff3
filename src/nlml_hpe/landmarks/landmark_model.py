"""MediaPipe's Face Mesh landmark model, run on a frame's crops by a set of threads."""

from concurrent.futures import ThreadPoolExecutor, wait
import math

import numpy as np

from ..features import N_LANDMARKS
from .litert import DEFAULT_NUM_THREADS, LANDMARK_MODEL, TFLiteModel, check_num_threads, model_path
from .roi import CROP_PX, crop

_INV_255 = np.float32(1.0 / 255.0)


class LandmarkModel:
    """MediaPipe's face landmark model: 192x192 crops -> 468 x, y, z + presence.

    ``num_threads`` (N): the crops of one :meth:`read` are shared among up to
    N copies of the model, each single-threaded and run on its own thread
    (the caller's and N - 1 workers of this model's own), crop and all: whole
    faces split evenly (crowds, and a face with its mirrored crop).  A read of
    one crop (one tracked face, the common frame) instead goes through one
    more copy that splits that face's convolutions among all N threads: here
    that reads it in about 0.75 ms instead of 1.1 ms, for about 35 % more CPU
    time (``docs/results.md``).  Each copy holds about 8 MB.  Every copy reads
    a crop alike, so the thread count never changes a landmark.

    One caller at a time: a read uses the copies and the workers.
    """

    def __init__(self, num_threads=DEFAULT_NUM_THREADS):
        n = check_num_threads(num_threads)
        path = model_path(LANDMARK_MODEL)
        outputs = [(1, 1, 3 * N_LANDMARKS), (1, 1, 1)]
        self._models = [TFLiteModel(path, (CROP_PX, CROP_PX, 3), outputs, num_threads=1)
                        for _ in range(n)]
        #: The copy that reads a single crop with all the threads (``None`` with one thread).
        self._solo = (TFLiteModel(path, (CROP_PX, CROP_PX, 3), outputs, num_threads=n)
                      if n > 1 else None)
        self._pool = None

    @property
    def num_threads(self):
        """Threads of a read at most: copies of the model, one thread each."""
        return len(self._models)

    @property
    def workers_started(self):
        """Whether the worker threads run (they start at the first read that shares crops)."""
        return self._pool is not None

    @staticmethod
    def _read_part(model, rgb, transforms, images=None):
        """Read crops one at a time with ``model``: ``(raw landmarks, raw flags)``."""
        raw = np.empty((len(transforms), 3 * N_LANDMARKS), np.float32)
        flag = np.empty(len(transforms), np.float32)
        for i, m in enumerate(transforms):
            r, f = model.run_scaled(crop(rgb if images is None else images[i], m), _INV_255)
            raw[i], flag[i] = r.reshape(-1), f.reshape(-1)[0]
        return raw, flag

    def read(self, rgb, transforms, threads=None, images=None):
        """Landmarks ``(N, 468, 3)`` in crop pixels and presence scores ``(N,)``.

        ``images``: the image each transform's crop is cut from, one per
        transform (default: ``rgb`` for all).

        ``threads``: how many threads this read may take (default, and at most,
        :attr:`num_threads`): the crops are shared among that many
        single-threaded copies; a single crop takes the all-thread copy only
        when given every thread (a look between frames may hold one).  The
        crops are read one by one: one crop at a time beats a batch through
        LiteRT's CPU kernels here (a batch of 15 cost 2.2 ms a face, single
        crops 1.6-1.8 ms; a batch's activations outgrow the caches;
        ``docs/results.md``).
        """
        n = len(transforms)
        if not n:
            return np.zeros((0, N_LANDMARKS, 3)), np.zeros(0)
        threads = self.num_threads if threads is None else max(1, min(int(threads),
                                                                      self.num_threads))
        if n == 1 and threads == self.num_threads and self._solo is not None:
            return self._finish([self._read_part(self._solo, rgb, transforms, images)], n)
        parts = min(n, threads)
        cuts = [n - round(n * (parts - j) / parts) for j in range(parts + 1)]

        def share(j):
            return (transforms[cuts[j]:cuts[j + 1]],
                    None if images is None else images[cuts[j]:cuts[j + 1]])

        futures = [self._executor().submit(self._read_part, self._models[j], rgb, *share(j))
                   for j in range(1, parts)]
        try:
            first = self._read_part(self._models[0], rgb, *share(0))
        finally:  # the workers read rgb: never return (or raise) before they are done
            wait(futures)
        return self._finish([first] + [f.result() for f in futures], n)

    @staticmethod
    def _finish(results, n):
        """Join the shares' ``(raw landmarks, raw flags)``: ``(landmarks, presence scores)``."""
        raw = results[0][0] if len(results) == 1 else np.concatenate([r[0] for r in results])
        flags = [f for r in results for f in r[1].tolist()]
        lm = raw.reshape(n, N_LANDMARKS, 3).astype(np.float64)
        # The logistic of each flag, in plain floats (a few per frame).
        score = np.array([1.0 / (1.0 + math.exp(-min(max(f, -100.0), 100.0))) for f in flags])
        return lm, score

    def _executor(self):
        if self._pool is None:
            self._pool = ThreadPoolExecutor(len(self._models) - 1,
                                            thread_name_prefix='nlml_hpe_landmarks')
        return self._pool

    def close(self):
        """Stop the worker threads (idempotent)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
