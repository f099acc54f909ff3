"""Second opinions on far faces: OpenCV's Haar cascades, and a network of our own (research).

The detector and the landmark model both take some far clutter for a face: a
round badge on a sleeve, poker chips, a knee (``docs/robustness.md``, round 7).
:class:`FaceVerifier` looks at the crop a far face's landmarks frame (their
ROI, :class:`~.roi.Roi`, at :data:`INPUT_PX` px) and scores how much it looks
like a face.  It was trained by :mod:`training.face_verifier` on crops the
landmark stage itself reads -- real faces that are not the dev split (package
registry photos) and renders, against the false faces of face-free frames --
so its errors are not the two MediaPipe models'.

It is not used by default (:data:`~.face_checks.VERIFIED` is 0): trained on the
faces of four registry packages (about 40 people), it takes 4-5 % of the
AFLW2000 dev faces for clutter (``docs/robustness.md``, round 8).  Its weights
are not shipped; ``python -m training.face_verifier OUT ... --install`` writes
them to :data:`WEIGHTS`.

Three 3x3 convolutions with max pooling and two dense layers, about 68k
weights, run in float32 numpy (no torch): well under a millisecond a face.

:class:`HaarVerifier` gives a second opinion from OpenCV's Haar cascades.  As
a veto (research, ``face_checks.VERIFIER = 'haar'``) it drops 2-6 % of the dev
faces.  As a waiver it is on for still images (``haar_second_opinion``,
:class:`SecondOpinions`): a far face the mirror or own-view check refutes is kept
if a cascade finds it.
"""

from pathlib import Path
import warnings

import cv2
import numpy as np

from . import face_checks
from .roi import CROP_PX, Roi

#: The crop is first warped this wide, then area-averaged down to INPUT_PX.
WARP_PX = 48
#: Side of the network's input.
INPUT_PX = 32
#: Added to a crop's spread before it is divided by it: flat crops are not blown up.
SPREAD_FLOOR = 8.0
#: Where ``training.face_verifier --install`` puts the weights (package data; not shipped).
WEIGHTS = Path(__file__).resolve().parents[1] / 'data' / 'face_verifier.safetensors'
LAYERS = ('c1', 'c2', 'c3')


def verifier_crops(rgb, landmarks):
    """Return the verifier's crops ``(N, INPUT_PX, INPUT_PX, 3)`` uint8 of faces ``(N, 468, 3)``.

    Each is the square its landmarks' ROI frames (:class:`~.roi.Roi`), warped to
    :data:`WARP_PX` and area-averaged to :data:`INPUT_PX`.
    """
    out = np.empty((len(landmarks), INPUT_PX, INPUT_PX, 3), np.uint8)
    shrink = np.diag([WARP_PX / CROP_PX, WARP_PX / CROP_PX, 1.0])
    for i, lm in enumerate(landmarks):
        m = (shrink @ Roi.from_landmarks(lm).transform())[:2]
        down = m[0, 0] ** 2 + m[0, 1] ** 2 < 1.0
        warped = cv2.warpAffine(rgb, m, (WARP_PX, WARP_PX), borderMode=cv2.BORDER_REPLICATE,
                                flags=cv2.INTER_AREA if down else cv2.INTER_LINEAR)
        out[i] = cv2.resize(warped, (INPUT_PX, INPUT_PX), interpolation=cv2.INTER_AREA)
    return out


def normalise(crops):
    """uint8 ``(N, H, W, 3)`` -> float32 ``(N, H, W, 3)``, each crop standardised."""
    x = crops.astype(np.float32)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    spread = x.std(axis=(1, 2, 3), keepdims=True)
    return (x - mean) / (spread + np.float32(SPREAD_FLOOR))


def _conv_relu_pool(x, w, b):
    """3x3 convolution (zero padding), ReLU, 2x2 max pooling; ``x`` ``(N, H, W, C)``.

    ``w``: ``(3 * 3 * C, out)``, rows in (dy, dx, c) order (:func:`_im2col_weights`).
    """
    n, h, wd, _ = x.shape
    p = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = np.concatenate([p[:, dy:dy + h, dx:dx + wd] for dy in range(3) for dx in range(3)],
                          axis=3)
    y = cols.reshape(n * h * wd, -1) @ w
    y += b
    np.maximum(y, 0.0, out=y)
    return y.reshape(n, h // 2, 2, wd // 2, 2, -1).max(axis=(2, 4))


def _im2col_weights(w):
    """Torch's ``(out, C, 3, 3)`` convolution weights as ``(3 * 3 * C, out)``."""
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0]))


class FaceVerifier:
    """Scores ``[0, 1]`` of how face-like far faces' crops are (see the module's docstring)."""

    def __init__(self, path=None):
        from safetensors.numpy import load_file

        path = WEIGHTS if path is None else path
        try:
            t = load_file(str(path))
            self._convs = [(_im2col_weights(t[f'{k}.weight'].astype(np.float32)),
                            t[f'{k}.bias'].astype(np.float32)) for k in LAYERS]
            self._dense = [(t[f'{k}.weight'].astype(np.float32), t[f'{k}.bias'].astype(np.float32))
                           for k in ('f1', 'f2')]
        except Exception as exc:  # noqa: BLE001 - safetensors raises several types
            raise RuntimeError(f'cannot load the face verifier from {path}: {exc} (train it: '
                               'python -m training.face_verifier OUT ... --install)') from None

    def scores(self, rgb, landmarks):
        """Return the scores ``(N,)`` of faces ``(N, 468, 3)`` (image pixels) of ``rgb``."""
        if len(landmarks) == 0:
            return np.zeros(0, np.float32)
        return self.score_crops(verifier_crops(rgb, landmarks))

    def score_crops(self, crops):
        """Return the scores ``(N,)`` of verifier crops (:func:`verifier_crops`)."""
        x = normalise(crops)
        for w, b in self._convs:
            x = _conv_relu_pool(x, w, b)
        # Flattened in torch's (C, H, W) order, as the weights were trained.
        x = x.transpose(0, 3, 1, 2).reshape(len(x), -1)
        (w1, b1), (w2, b2) = self._dense
        x = np.maximum(x @ w1.T + b1, 0.0)
        logit = (x @ w2.T + b2)[:, 0]
        return (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)


#: :class:`HaarVerifier`: OpenCV's cascades, where opencv-python or Debian's opencv-data has them.
HAAR_CASCADES = ('haarcascade_frontalface_alt2.xml', 'haarcascade_profileface.xml')
HAAR_DIRS = ('/usr/share/opencv4/haarcascades', '/usr/share/opencv/haarcascades')
#: The verifier crop is upscaled to this before the cascades look at it.
HAAR_SIDE = 96


class HaarVerifier:
    """A second opinion from OpenCV's Haar cascades (``haar_second_opinion``).

    Score 1.0 where the frontal cascade, or the profile cascade either way, finds
    a face at the centre of a far face's verifier crop (:func:`verifier_crops`,
    upscaled to :data:`HAAR_SIDE` and equalised), else 0.0.  Viola-Jones
    cascades were trained on faces other than ours, so their errors are their own.
    """

    def __init__(self):
        dirs = [getattr(getattr(cv2, 'data', None), 'haarcascades', None), *HAAR_DIRS]
        for d in filter(None, dirs):
            paths = [Path(d) / name for name in HAAR_CASCADES]
            if all(p.is_file() for p in paths):
                try:  # a file that is no cascade: cv2.error, or a SystemError around it
                    self._models = [cv2.CascadeClassifier(str(p)) for p in paths]
                except (cv2.error, SystemError):
                    self._models = []
                if not self._models or any(m.empty() for m in self._models):
                    raise RuntimeError(f'cannot load the Haar cascades {HAAR_CASCADES} in {d}')
                return
        raise RuntimeError(f'no Haar cascades {HAAR_CASCADES} in cv2.data or {HAAR_DIRS} '
                           '(pip opencv-python, or apt install opencv-data)')

    def scores(self, rgb, landmarks):
        """Return ``(N,)`` 1.0 / 0.0: a Haar face at the centre of each face's crop."""
        return np.array([self.face_at_centre(c) for c in verifier_crops(rgb, landmarks)],
                        np.float32)

    def face_at_centre(self, crop):
        """Whether a cascade finds a face at the centre of ``crop`` (RGB, any size)."""
        s = HAAR_SIDE
        grey = cv2.cvtColor(cv2.resize(crop, (s, s), interpolation=cv2.INTER_CUBIC),
                            cv2.COLOR_RGB2GRAY)
        grey = cv2.equalizeHist(grey)
        mirrored = np.ascontiguousarray(grey[:, ::-1])
        frontal, profile = self._models
        for model, img in ((frontal, grey), (profile, grey), (profile, mirrored)):
            for x, y, w, h in model.detectMultiScale(img, 1.1, 2, minSize=(s // 3, s // 3)):
                if abs(x + w / 2 - s / 2) < s / 6 and abs(y + h / 2 - s / 2) < s / 6 \
                        and w > s * 3 / 8:
                    return True
        return False


class SecondOpinions:
    """The landmark stage's second opinions on new far faces.

    :meth:`waives` (``haar_second_opinion``, :func:`~.face_checks.haar_waiver`):
    ``waiver`` on, the cascades load now; without their files it is off, with a
    warning, and :attr:`problems` says why.  :meth:`drop_unverified` is a research switch, off
    (``face_checks.VERIFIED``, by ``face_checks.VERIFIER``): the network loads when
    first needed.
    """

    def __init__(self, waiver=False):
        self.verifier = None  # FaceVerifier or HaarVerifier, once VERIFIED needs one
        self._cascades = None
        self.waiver = bool(waiver)
        self.problems = []  # options asked for but not in effect, each with the reason
        if self.waiver:
            try:
                self._haar()
            except RuntimeError as exc:
                self.problems.append(f'haar_second_opinion is off: {exc}')
                warnings.warn(self.problems[-1], RuntimeWarning, stacklevel=3)
                self.waiver = False

    def _haar(self):
        if self._cascades is None:
            self._cascades = HaarVerifier()
        return self._cascades

    def drop_unverified(self, rgb, faces, config):
        """Drop the faces to verify (:func:`~.face_checks.to_verify`) that score too low."""
        check = [f for f in faces if face_checks.to_verify(f, config)]
        if not check:
            return
        if self.verifier is None:
            self.verifier = self._haar() if face_checks.VERIFIER == 'haar' else FaceVerifier()
        for face, score in zip(check, self.verifier.scores(rgb, [f.landmarks for f in check])):
            if face_checks.unverified(score):
                face.landmarks = None

    def waives(self, rgb, face):
        """Whether a refuted far face is kept: a Haar cascade finds it (``waiver``)."""
        return self.waiver and self._haar().face_at_centre(
            verifier_crops(rgb, face.landmarks[None])[0])
