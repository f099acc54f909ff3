"""The estimator's options, defined once.

:class:`EstimatorConfig` is a frozen dataclass: each field carries its default,
range and help text, and is the single table from which
:class:`~nlml_hpe.estimator.HeadPoseEstimator` takes its options, ``head_pose_node``
its parameter descriptors (:func:`node_parameters`), ``nlml-hpe predict`` its
flags' ranges, and ``config/pose.yaml`` and the README's parameter table their
values (``test/test_options.py`` checks that they agree).

A field's ``node`` metadata is its ROS parameter name where that differs, and
``node_default`` its default in the node where video differs from still images
(flip averaging costs about 3 ms a face, which the node's latency budget does
not spend by default).
"""

from dataclasses import dataclass, field, fields, replace
import math

from .landmarks import DEFAULT_DETECTION_INTERVAL, DEFAULT_MIN_FACE_PX
from .tflite import DEFAULT_NUM_THREADS, MAX_NUM_THREADS

#: Faces per frame at most (node, CLI and API alike).
MAX_FACES = 20


def _opt(default, help, low=None, high=None, node=None, node_default=None):
    return field(default=default, metadata={
        'help': help, 'range': (low, high), 'node': node, 'node_default': node_default})


@dataclass(frozen=True)
class EstimatorConfig:
    """Options of :class:`~nlml_hpe.estimator.HeadPoseEstimator` (validated at creation)."""

    max_faces: int = _opt(5, 'Faces per frame at most.', 1, MAX_FACES)
    min_detection_confidence: float = _opt(0.5, 'Face detector score threshold.', 0.0, 1.0)
    detection_interval: int = _opt(
        DEFAULT_DETECTION_INTERVAL, 'Video: frames between two looks for new faces while '
        'faces are tracked (one detector run, between frames); with none tracked the detector '
        'runs every frame.', 1, 300)
    min_face_px: float = _opt(
        DEFAULT_MIN_FACE_PX, 'Smallest face (pixels wide) the detector searches for: the '
        'frame is also searched in tiles (one per look in video); a face once found is '
        'tracked at any size.', 8.0, 1000.0)
    num_threads: int = _opt(
        DEFAULT_NUM_THREADS, "CPU threads: a frame's faces are shared among up to this many (a "
        "lone face's model run uses them all), and a frame's own face search uses as many "
        '(a look between frames: one).', 1, MAX_NUM_THREADS)
    flip_average: bool = _opt(
        None, "Also read each face's mirrored crop (same batch) and average the angles: "
        'AFLW2000 dev 2.57 -> 2.47 deg, about 3 ms more a face (default: on for still '
        'images, off in video).', node_default=False)
    rigid_fusion: bool = _opt(
        True, "Average the network's angles with a rigid fit of the 3D landmarks to "
        "MediaPipe's canonical face: more accurate, about 0.1 ms.")
    perspective_warp: bool = _opt(
        True, 'Read faces at least perspective_warp_min_deg off the optical axis from a crop '
        'turned onto their line of sight (a tracked face costs nothing more): removes most '
        "of the landmark model's perspective error at the image edge.")
    warp_min_deg: float = _opt(
        10.0, 'Angle between the optical axis and the ray to a face (deg) from which '
        'perspective_warp reads it on its line of sight.', 0.0, 90.0,
        node='perspective_warp_min_deg')

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                if f.default is None:
                    continue
                raise ValueError(f'{f.name} must be set')
            if f.type in ('int', int):
                if isinstance(value, bool) or int(value) != value:
                    raise ValueError(f'{f.name} must be an integer, got {value!r}')
            elif f.type in ('float', float):
                if not isinstance(value, (int, float)) or isinstance(value, bool) or \
                        not math.isfinite(float(value)):
                    raise ValueError(f'{f.name} must be a finite number, got {value!r}')
            elif f.type in ('bool', bool) and not isinstance(value, bool):
                raise ValueError(f'{f.name} must be true or false, got {value!r}')
            low, high = f.metadata['range']
            if low is not None and not low <= value <= high:
                raise ValueError(f'{f.name} must be in [{low:g}, {high:g}], got {value}')

    def updated(self, **changes):
        """Return a copy with ``changes`` (validated)."""
        return replace(self, **changes)

    @classmethod
    def from_node(cls, params):
        """Return the config of a node's parameter values (``{ROS name: value}``)."""
        return cls(**{f.name: params[node_name(f)] for f in fields(cls)
                      if node_name(f) in params})


def node_name(f):
    """ROS parameter name of a config field."""
    return f.metadata['node'] or f.name


def node_default(f):
    """Return the field's default in the node."""
    return f.metadata['node_default'] if f.metadata['node_default'] is not None else f.default


def node_parameters():
    """``{ROS name: (default, description, range)}`` of the estimator's options."""
    out = {}
    for f in fields(EstimatorConfig):
        low, high = f.metadata['range']
        out[node_name(f)] = (node_default(f), f.metadata['help'],
                             None if low is None else (low, high))
    return out
