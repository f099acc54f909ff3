"""OpenCV's Haar cascades as a second opinion on refuted far faces (``haar_second_opinion``).

Checked with the real models and cascades: the option is on for still images and
off in video unless set; a far face the mirror check refutes is reported only
where a cascade sees it; the cascades look at faces, not at flat frames; and
without their files (a ROS install without ``opencv-data``) the estimator runs as
before, with a warning that says why.
"""

from conftest import demo_frame
import cv2
import numpy as np
import pytest

from nlml_hpe.bench.aflw2000 import pick_labelled_face
from nlml_hpe.bench.clutter import frame_rng, scene
from nlml_hpe.estimator import HeadPoseEstimator
from nlml_hpe.landmarks import LandmarkExtractor, extractor, face_checks, face_verifier
from nlml_hpe.options import EstimatorConfig


@pytest.mark.parametrize('option, streaming, on', [
    (None, False, True), (None, True, False), (True, True, True), (False, False, False)])
def test_on_for_still_images_off_in_video_unless_set(option, streaming, on):
    config = EstimatorConfig(haar_second_opinion=option)
    assert face_checks.haar_waiver(config, streaming) is on
    ext = LandmarkExtractor(config, streaming=streaming)
    try:
        assert ext.opinions.waiver is on
    finally:
        ext.close()
    # Nothing is refuted without confirm_far_faces, so nothing is waived either.
    assert not face_checks.haar_waiver(EstimatorConfig(haar_second_opinion=True,
                                                       confirm_far_faces=False), False)


def test_the_cascades_see_a_face_and_not_a_flat_frame(estimator):
    from nlml_hpe.landmarks.extractor import FaceRead
    from nlml_hpe.landmarks.roi import ReadPlan, Roi

    rgb = demo_frame('000.jpg')
    lm = np.asarray(estimator.estimate(rgb)[0].landmarks)
    face = FaceRead(ReadPlan.of_roi(Roi.from_landmarks(lm)), face_checks.NEW, lm, 0.9)
    opinions = face_verifier.SecondOpinions(waiver=True)
    assert opinions.waives(rgb, face)
    assert not opinions.waives(np.full_like(rgb, 128), face)
    assert not face_verifier.SecondOpinions(waiver=False).waives(rgb, face)


@pytest.mark.parametrize('name, width', [('000.jpg', 40), ('003.jpg', 28)])
def test_a_refuted_far_face_is_reported_only_with_the_second_opinion(
        estimator, monkeypatch, name, width):
    rgb = demo_frame(name)
    box = estimator.estimate(rgb)[0].box
    frame, label = scene((rgb, box), 640, 480, width, 'clutter', 'photo',
                         frame_rng(0, 'haar'))
    with HeadPoseEstimator.from_pretrained(flip_average=False) as est:
        assert est.extractor.opinions.waiver  # a still image: on by default
        assert pick_labelled_face([p.box for p in est.estimate(frame)], label) is not None
        monkeypatch.setattr(extractor, 'refuted_by_mirror', lambda *_: True)
        assert pick_labelled_face([p.box for p in est.estimate(frame)], label) is not None
    with HeadPoseEstimator.from_pretrained(flip_average=False,
                                           haar_second_opinion=False) as est:
        assert est.estimate(frame) == []  # refuted, and no second opinion


def test_without_the_cascade_files_it_is_off_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(face_verifier, 'HAAR_DIRS', ())
    monkeypatch.setattr(cv2.data, 'haarcascades', str(tmp_path), raising=False)
    with pytest.warns(RuntimeWarning, match='haar_second_opinion is off.*opencv-data'):
        ext = LandmarkExtractor()
    with ext:
        assert not ext.opinions.waiver
        assert len(ext.extract(demo_frame('000.jpg'))) == 1  # the stage runs as before
    for name in face_verifier.HAAR_CASCADES:  # files that are not cascades
        (tmp_path / name).write_text('<opencv_storage>broken')
    with pytest.warns(RuntimeWarning, match='cannot load the Haar cascades'):
        LandmarkExtractor().close()
