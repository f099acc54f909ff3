"""The landmark stage: RGB image -> 468 Face Mesh landmarks per face, in pixel-like units.

The project runs MediaPipe's face models itself (LiteRT) and does the graph's
work in numpy/OpenCV.  The rooms of this wing:

* :mod:`.litert`: the model files and :class:`~.litert.TFLiteModel`, one
  LiteRT interpreter with its checks;
* :mod:`.face_detector`: BlazeFace (short- and full-range) decoded in numpy,
  :class:`~.face_detector.FaceDetector`;
* :mod:`.detection_plan`: where the detectors look (whole frame, tiles for
  faces down to ``min_face_px`` in frames up to 1920x1080), how runs are
  merged, and in video which runs each frame makes;
* :mod:`.roi`: the region of interest of a face (a square 1.5 times its box,
  turned so the eyes are level -- from the detector's box and eye keypoints,
  or from the previous frame's landmarks, as MediaPipe's
  ``FaceDetectionFrontDetectionToRoi`` and ``FaceLandmarkLandmarksToRoi``),
  its crop to 192x192, line-of-sight crops, and mapping landmarks back;
* :mod:`.landmark_model`: the Face Mesh model on a frame's crops, shared among
  threads;
* :mod:`.look`: the look for new faces between frames (video);
* :mod:`.extractor`: :class:`LandmarkExtractor`, which ties them together.

Landmarks come back in the convention the model was trained on: ``x, y`` in
pixels, ``z`` in the same pixel scale as ``x`` (MediaPipe's normalised
``x*W, y*H, z*W``).

Video: each face's ROI comes from its landmarks of the previous frame, so the
detector runs only to look for new faces: every ``detection_interval`` frames
one run of the detection plan (whole frame and tiles, in turn), between frames,
while faces are tracked; every frame while none is.  A face, once found, is
tracked at any size the landmark model still reads and while its face-presence
score stays above ``min_tracking_presence`` (a new one needs
``min_tracking_confidence``), so a face that turns to profile is kept.

Threads: ``num_threads`` (N) is the stage's budget.  A frame's crops are
shared among N single-threaded copies of the landmark model (the caller's
thread and N - 1 workers), a lone crop goes through one copy on all N, and a
frame's own face search runs each detector on N threads.  A look between
frames runs on its own worker with single-threaded detectors and holds one of
the N while it runs (a frame's reads then take N - 1); with N = 1 it runs on
the caller's thread, after the frame.  Thread counts never change a landmark.

``detector='short', min_face_px=None, refine=0`` reproduces the legacy
``mediapipe.solutions.face_mesh`` graph (short-range detector on the whole
frame); ``test/test_landmarks_oracle.py`` checks that both give the same
landmarks.
"""

from .extractor import FaceRead, FrameReading, LandmarkExtractor, check_extractor_args
from .face_checks import landmark_boxes
from .landmark_model import LandmarkModel
from .roi import CROP_PX, Roi, from_crop, roi_transforms

__all__ = ['CROP_PX', 'FaceRead', 'FrameReading', 'LandmarkExtractor', 'LandmarkModel', 'Roi',
           'check_extractor_args', 'from_crop', 'landmark_boxes', 'roi_transforms']
