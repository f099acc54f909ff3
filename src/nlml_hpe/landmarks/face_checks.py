"""Which readings of a frame are faces, and which are one face.

The rules the landmark stage (:mod:`.extractor`) applies to its readings
(:class:`~.extractor.FaceRead`), as plain functions of a reading and the options:

* :func:`presence_floor`: the face presence a new face needs;
* :func:`refuted_by_mirror`, :func:`seen_clearly`: with ``confirm_far_faces``,
  a new far face must be a face in its mirrored crop too, unless several
  detector runs found it and it reads surely;
* :func:`needs_own_view`: ... and one that a single detector run found, or one
  found only under the detector's threshold, must be found again in a view of its own;
* :func:`haar_waiver`: ``haar_second_opinion``: a far face those checks refute is
  kept if OpenCV's Haar cascades find it (still images);
* :func:`to_verify`: a research switch, off: a new far face must also look like a face
  to a network of our own (:class:`~.face_verifier.FaceVerifier`, :data:`VERIFIED`);
* :func:`keep_faces`: one reading per face, the surest.
"""

import numpy as np

from ..features import N_LANDMARKS, landmark_extent
from ..geometry import box_cover, box_iou
from .roi import CROP_PX, ROI_SCALE, crop_scale

#: Two faces whose landmark boxes overlap more than this are one face.
SAME_FACE_IOU = 0.5
#: ... and a reading of which this much lies inside a surer one's box, or around which a
#: surer one lies (:func:`keep_faces`): a crop twice a face's size can read as a weak
#: face around it, and a real face that far inside another's box would be hidden by it.
#: Two sure readings, one inside the other, stay two faces: either may be the real one.
NESTED_FACE = 0.8
#: Presence scores this close count as equal when two readings of one face compete.
SCORE_TIE = 0.05
#: A small new face (detector box at most SMALL_FACE_PX wide: its crop is upscaled 2x or
#: more) that the detector scores at least STRONG_DETECTION needs only WEAK_PRESENCE from
#: the landmark model.  Blur, noise and JPEG blocks take the presence score of such an
#: upscaled crop near zero while the detector still sees the face clearly; background
#: seldom fools both models (tools/clutter_synthetic.py, docs/robustness.md).
SMALL_FACE_PX = 64.0
STRONG_DETECTION = 0.75
WEAK_PRESENCE = 0.1
#: With ``confirm_far_faces``, a new face one detector run alone found needs a view of its
#: own (:data:`~.detection_plan.CONFIRM_VIEW`) if it is small (SMALL_FACE_PX), or up to
#: UNSURE_FACE_PX wide and scored under UNSURE_DETECTION (renders: real faces of 100 px
#: found by one run at that score are rare; texture that looks like a face is not).
UNSURE_FACE_PX = 96.0
UNSURE_DETECTION = 0.6
#: A new far face that at least CLEAR_VIEWS detector runs found and the landmark model reads
#: at a presence of at least CLEAR_PRESENCE is a face even if its mirrored crop reads as
#: none (:func:`seen_clearly`).  The mirror check exists for what one tile takes for a
#: face: in 1,500 face-free frames of every kind per size, with free photo textures, none
#: of the false faces that reached it (6 at 640x480, 33 at 1280x720) was both; of the real
#: 28-40 px faces it refuted, about half were (renders: 6 of 10 at 640x480, 6 of 15 at
#: 1280x720; real faces from the package registries, tools/registry_faces.py: 6 of 28).
#: Video is not changed: a look runs one or two regions a frame (docs/robustness.md).
CLEAR_VIEWS = 3
CLEAR_PRESENCE = 0.9
#: A research switch, off (0.0): with ``confirm_far_faces``, a new face at most
#: VERIFY_FACE_PX wide (its landmarks' box) that the face verifier
#: (:class:`~.face_verifier.FaceVerifier`, weights from ``training.face_verifier
#: --install``) scores under VERIFIED is no face, unless the landmark model reads it at a
#: presence of at least VERIFY_PRESENCE.  Not on: trained on the faces of four registry
#: packages, it drops 4-5 % of the AFLW2000 dev faces at every size (docs/robustness.md,
#: round 8).  A/B: ``tools/clutter_synthetic.py --setting landmarks.face_checks.VERIFIED=0.05``.
VERIFIED = 0.0
#: ... by ``'network'`` (:class:`~.face_verifier.FaceVerifier`) or ``'haar'``
#: (:class:`~.face_verifier.HaarVerifier`, scores 0 or 1: VERIFIED 0.5; it drops 2-6 % of
#: the dev faces).
VERIFIER = 'network'
VERIFY_FACE_PX = 128.0
VERIFY_PRESENCE = 1.01
#: :attr:`FaceRead.source` of a face read from its landmarks of the previous frame.
TRACKED = 'tracked'
#: ... and of a face a detector found.
NEW = 'new'


def landmark_boxes(landmarks):
    """Boxes ``(N, 4)`` of landmark sets ``(N, 468, 3)``."""
    lm = np.asarray(landmarks).reshape(-1, N_LANDMARKS, 3)
    return np.concatenate(landmark_extent(lm), axis=1)


def same_face(a, b):
    """Whether landmarks ``a`` and ``b`` ``(468, 3)`` are one face (their boxes overlap)."""
    return box_iou(landmark_boxes(a), landmark_boxes(b))[0, 0] > SAME_FACE_IOU


def at_most(roi, face_px):
    """Whether the face behind a detector ``roi`` is at most ``face_px`` wide."""
    return roi.side <= face_px * ROI_SCALE


def small_face(roi):
    """Whether the face behind a detector ``roi`` is small (:data:`SMALL_FACE_PX`)."""
    return at_most(roi, SMALL_FACE_PX)


def presence_floor(found, config):
    """Return the face presence a new face (:class:`~.detection_plan.Found`) needs.

    ``config.min_tracking_confidence``, or at most :data:`WEAK_PRESENCE` for a
    small face the detector is sure of (:data:`STRONG_DETECTION`).
    """
    if found.score >= STRONG_DETECTION and small_face(found.roi):
        return min(WEAK_PRESENCE, config.min_tracking_confidence)
    return config.min_tracking_confidence


def reads_mirrored(plan, config):
    """Whether a face read through ``plan`` is small enough to read mirrored too."""
    px = config.small_face_flip_px
    return px > 0 and CROP_PX / crop_scale(plan.transform) <= px * ROI_SCALE


def refuted_by_mirror(face, plan, config):
    """Whether a new far face is no face in its mirror image (``config.confirm_far_faces``).

    A face small enough to be read mirrored (:func:`reads_mirrored`, through
    ``plan``) must reach its presence floor in the mirrored crop too, unless
    it is :func:`seen_clearly`.
    """
    return (config.confirm_far_faces and reads_mirrored(plan, config)
            and (face.mirrored_score or 0.0) < face.floor and not seen_clearly(face))


def seen_clearly(face):
    """Whether several detector runs found a new face and the landmark model is sure of it.

    :data:`CLEAR_VIEWS` runs and :data:`CLEAR_PRESENCE`: such a face needs no
    mirror check.
    """
    d = face.detection
    return (d is not None and not d.weak and d.views >= CLEAR_VIEWS
            and face.score >= CLEAR_PRESENCE)


def needs_own_view(face, config):
    """Whether a new far face must be found again in a view centred on it.

    Always, a face found only under the detector's threshold (``weak``,
    :data:`~.detection_plan.WEAK_MARGIN`); with ``confirm_far_faces``, a face
    that one detector run alone found, small (:data:`SMALL_FACE_PX`) or unsure
    (:data:`UNSURE_FACE_PX`, :data:`UNSURE_DETECTION`); see
    :data:`~.detection_plan.CONFIRM_VIEW`.
    """
    d = face.detection
    if not (face.source == NEW and face.landmarks is not None and d is not None):
        return False
    if d.weak:
        return True
    if not (config.confirm_far_faces and d.views <= 1):
        return False
    return small_face(d.roi) or (at_most(d.roi, UNSURE_FACE_PX) and d.score < UNSURE_DETECTION)


def haar_waiver(config, streaming):
    """Whether refuted far faces get OpenCV's cascades as a second opinion.

    ``config.haar_second_opinion``, by default on for still images only: in video a
    refuted false face comes back every frame, until one is let in (a ghost track).
    """
    on = config.haar_second_opinion
    return config.confirm_far_faces and ((not streaming) if on is None else on)


def to_verify(face, config):
    """Whether a reading is a new far face the face verifier must pass (:data:`VERIFIED`)."""
    if not (VERIFIED > 0.0 and config.confirm_far_faces and face.source == NEW
            and face.landmarks is not None and face.score < VERIFY_PRESENCE):
        return False
    x0, _, x1, _ = landmark_boxes(face.landmarks)[0]
    return float(x1 - x0) <= VERIFY_FACE_PX


def unverified(score):
    """Whether a face verifier score says a far face is none (:data:`VERIFIED`)."""
    return score < VERIFIED


def keep_faces(faces, max_faces):
    """Return the readings to report (:class:`~.extractor.FaceRead`): one per face, largest first.

    Readings without landmarks are left out.  Readings whose landmark boxes
    overlap (:data:`SAME_FACE_IOU`) are of one face: of those, the surest; of
    about as sure ones, the largest.  A reading inside or around a surer one
    (:data:`NESTED_FACE`) is of that face too.  At most ``max_faces``.
    """
    present = [f for f in faces if f.landmarks is not None]
    if len(present) < 2:
        return present
    boxes = landmark_boxes(np.stack([f.landmarks for f in present]))
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    sure = np.array([round(f.score / SCORE_TIE) for f in present])
    # ``same[a, b]``: a is b's face, if b is kept.
    same = (box_iou(boxes, boxes) > SAME_FACE_IOU) \
        | ((box_cover(boxes, boxes) > NESTED_FACE) & (sure[:, None] < sure[None, :]))
    # Of two readings of one face that are about as sure, the larger: a region that
    # slid onto a nearer face (one face passing in front of another) reads it cut off.
    rank = sorted(range(len(present)), key=lambda a: (-sure[a], -area[a]))
    chosen = []
    for a in rank:
        if not any(same[a, b] for b in chosen):
            chosen.append(a)
    chosen.sort(key=lambda a: -area[a])
    return [present[a] for a in chosen[:max_faces]]
