"""MediaPipe's face models, run with Google's LiteRT (TFLite) runtime.

The three ``.tflite`` files ship in ``nlml_hpe/data/mediapipe/`` (Apache-2.0,
``LICENSE`` beside them; taken unchanged from the ``mediapipe==0.10.21`` wheel).
Nothing is downloaded at run time, and ``mediapipe`` itself is never imported.

:class:`TFLiteModel` opens one with a fixed number of CPU threads and turns
every failure -- file missing, not a
TFLite model, tensors of the wrong shape, no runtime installed -- into a
:class:`~nlml_hpe.model.ModelFileError` that names the file.
"""

from pathlib import Path

import numpy as np

from ..model import ModelFileError
from ..options import EstimatorConfig

MODEL_DIR = Path(__file__).resolve().parent.parent / 'data' / 'mediapipe'

#: The models: file name, input shape (NHWC), output shapes by kind.
LANDMARK_MODEL = 'face_landmark.tflite'
SHORT_RANGE_MODEL = 'face_detection_short_range.tflite'
FULL_RANGE_MODEL = 'face_detection_full_range_sparse.tflite'

#: Threads of each model by default (the options table's ``num_threads``; how the
#: landmark stage spends them: :mod:`nlml_hpe.landmarks`).
DEFAULT_NUM_THREADS = EstimatorConfig.num_threads


def model_path(name):
    """Path of a shipped model file."""
    return MODEL_DIR / name


def check_num_threads(num_threads):
    """Return ``num_threads`` as an int, or raise the options table's ``ValueError``."""
    return EstimatorConfig(num_threads=num_threads).num_threads


class TFLiteModel:
    """One TFLite model with a float32 NHWC image input and float32 outputs.

    ``outputs`` lists the expected output shapes (batch dimension excluded), in
    the order :meth:`run` returns them; the model's own outputs are matched to
    them by shape, so a file whose tensors differ is refused at load.
    ``batch``: :meth:`run` takes any number of images; the interpreter is
    resized when that number changes (the landmark model batches all faces of
    a frame).
    """

    def __init__(self, path, input_shape, outputs, num_threads=DEFAULT_NUM_THREADS):
        path = Path(path)
        self.path = path
        self.num_threads = check_num_threads(num_threads)
        if not path.is_file():
            raise ModelFileError(f'{path}: model file not found')
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:  # pragma: no cover - a broken install
            raise ModelFileError(f'{path}: the LiteRT runtime is not installed '
                                 f'(pip install ai-edge-litert): {exc}') from exc
        try:
            self._it = Interpreter(model_path=str(path), num_threads=self.num_threads)
            self._it.allocate_tensors()
            inp = self._it.get_input_details()
            outs = self._it.get_output_details()
        except Exception as exc:  # noqa: BLE001 - the runtime raises ValueError/RuntimeError
            raise ModelFileError(f'{path}: not a readable TFLite model: {exc}') from exc
        if len(inp) != 1 or tuple(inp[0]['shape'][1:]) != tuple(input_shape) or \
                inp[0]['dtype'] != np.float32:
            raise ModelFileError(f'{path}: expected one float32 input of shape '
                                 f'(1, {", ".join(map(str, input_shape))}), got '
                                 f'{[tuple(d["shape"]) for d in inp]}')
        order = []
        for want in outputs:
            idx = [d['index'] for d in outs if tuple(d['shape'][1:]) == tuple(want)]
            if not idx or idx[0] in order:
                raise ModelFileError(f'{path}: no output of shape (1, {want}); the model has '
                                     f'{[tuple(d["shape"]) for d in outs]}')
            order.append(idx[0])
        self._input = inp[0]['index']
        self._outputs = order
        self.input_shape = tuple(int(v) for v in input_shape)
        self._batch = 1

    def _resize(self, n):
        """Make the input a batch of ``n`` images (reallocating only when that changes)."""
        if n != self._batch:
            self._it.resize_tensor_input(self._input, [n, *self.input_shape])
            self._it.allocate_tensors()
            self._batch = n

    def run_scaled(self, image, scale):
        """Run on one image ``(H, W, C)`` times ``scale``, written straight into the input.

        No float32 copy of the image is made: the product goes into the model's
        own input tensor (:meth:`run` copies a prepared batch in).
        """
        image = np.asarray(image)
        if image.shape != self.input_shape:
            raise ValueError(f'expected an image of shape {self.input_shape}, got {image.shape}')
        self._resize(1)
        # The view is a temporary: nothing that can fail holds it (LiteRT refuses to run
        # while a view of its memory is alive).
        np.multiply(image, np.float32(scale), out=self._it.tensor(self._input)()[0],
                    casting='unsafe')
        self._it.invoke()
        return [self._it.get_tensor(i) for i in self._outputs]

    def run(self, images):
        """Run the model on ``images`` ``(N, H, W, C)`` float32; returns one array per output."""
        n = len(images)
        self._resize(n)
        self._it.set_tensor(self._input, np.ascontiguousarray(images, dtype=np.float32))
        self._it.invoke()
        return [self._it.get_tensor(i) for i in self._outputs]
