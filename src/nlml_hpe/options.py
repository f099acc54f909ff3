"""Every option of nlml_hpe, defined once: the ground floor of the house.

Four frozen tables, each a dataclass whose fields carry their default, range
and help text:

* :class:`EstimatorConfig`: :class:`~nlml_hpe.estimator.HeadPoseEstimator` and
  its landmark stage (the extractor is built from it);
* :class:`StreamConfig`: :class:`~nlml_hpe.face_stream.FaceStream` (ids,
  smoothing, positions, looking-at);
* :class:`NodeConfig`: ``head_pose_node``'s own (outputs, frames, rate, start);
* :class:`DecodeConfig`: what decoding one encoded image may cost
  (:class:`~nlml_hpe.image_decode.DecodeBudget`): the node's defaults are the
  stream budget, the CLI's the file budget.

:func:`parameter_specs` lists the public fields of all four as
:class:`Spec` rows: the node declares its parameters from them, the CLI makes
its flags from them, and ``config/pose.yaml`` and the README's parameter table
are checked against them (``test/test_options.py``).  A field's ``ros`` name is
its parameter name where that differs from the field's, and ``node_default``
its default in the node where video differs from still images (flip averaging
costs about 3 ms a face, which the node's latency budget does not spend by
default).

Values are validated when a table is made: integers are accepted for floats
(and stored as floats), integral floats for integers, lists for tuples.  This
module imports nothing of the project, so every stage can take its defaults
from here.
"""

from dataclasses import asdict, dataclass, field, fields, replace
import math

#: Faces per frame at most (node, CLI and API alike).
MAX_FACES = 20
#: CPU threads of the landmark stage at most.
MAX_NUM_THREADS = 16
#: Detection plans: ``auto`` (default) short-range on the whole frame, full-range on
#: the whole frame and tiles; ``short`` / ``full``: that model alone.
DETECTOR_KINDS = ('auto', 'short', 'full')

_UNSET = object()


def option(default, help, low=None, high=None, *, ros=None, node_default=_UNSET,
           read_only=False, public=True, choices=None, length=None, none_ok=False):
    """Return a dataclass field that carries its option's metadata.

    ``low``/``high``: inclusive range of a number; ``choices``: allowed strings;
    ``length``: size of a tuple of numbers; ``none_ok``: ``None`` is a value
    (besides a ``None`` default, which always is); ``public``: a node parameter
    and CLI flag (else an API-only option); ``read_only``: fixed once the node
    runs.
    """
    return field(default=default, metadata={
        'help': help, 'range': (low, high), 'ros': ros, 'node_default': node_default,
        'read_only': read_only, 'public': public, 'choices': choices, 'length': length,
        'none_ok': none_ok})


@dataclass(frozen=True)
class Spec:
    """One public option as a node parameter or CLI flag."""

    name: str  # ROS parameter name
    field: str  # field name in its table
    table: type
    default: object  # in the node
    type: type  # bool, int, float, str or tuple (of floats)
    low: object
    high: object
    help: str
    read_only: bool

    @property
    def bounds(self):
        """``(low, high)`` or ``None``."""
        return None if self.low is None else (self.low, self.high)


def _check(f, value):
    """Return ``value`` of field ``f`` validated and normalised, or raise ValueError."""
    m, name, kind = f.metadata, f.name, _kind(f)
    if value is None:
        if f.default is None or m['none_ok']:
            return None
        raise ValueError(f'{name} must be set')
    if kind is bool:
        if not isinstance(value, bool) and type(value).__name__ != 'bool_':
            raise ValueError(f'{name} must be true or false, got {value!r}')
        return bool(value)
    if kind is str:
        if not isinstance(value, str):
            raise ValueError(f'{name} must be a string, got {value!r}')
        if m['choices'] is not None and value not in m['choices']:
            raise ValueError(f'{name} must be one of {m["choices"]}, got {value!r}')
        return value
    if kind is tuple:
        try:
            out = tuple(_number(name, v) for v in value)
        except TypeError:
            raise ValueError(f'{name} must be {m["length"]} numbers, got {value!r}') from None
        if m['length'] is not None and len(out) != m['length']:
            raise ValueError(f'{name} must be {m["length"]} numbers, got {value!r}')
        return out
    out = _number(name, value)
    if kind is int:
        if out != int(out):
            raise ValueError(f'{name} must be an integer, got {value!r}')
        out = int(out)
    low, high = m['range']
    if low is not None and not low <= out <= high:
        raise ValueError(f'{name} must be in [{low:g}, {high:g}], got {value!r}')
    return out


def _number(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) and \
            type(value).__name__ not in ('int64', 'int32', 'float64', 'float32'):
        raise ValueError(f'{name} must be a number, got {value!r}')
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f'{name} must be a finite number, got {value!r}')
    return out


def _kind(f):
    kinds = {'bool': bool, 'int': int, 'float': float, 'str': str, 'tuple': tuple}
    return kinds[f.type] if isinstance(f.type, str) else f.type


class _Table:
    """What the three tables share: validation, copies, the node's view of them."""

    def __post_init__(self):
        for f in fields(self):
            object.__setattr__(self, f.name, _check(f, getattr(self, f.name)))

    @classmethod
    def with_options(cls, config=None, **options):
        """Return ``config`` (default: the defaults) updated with ``options``, its fields.

        ``TypeError`` for a ``config`` that is not this table, or an unknown option.
        """
        if config is None:
            config = cls()
        elif not isinstance(config, cls):
            raise TypeError(f'config must be a {cls.__name__}, got {type(config).__name__}')
        try:
            return config.updated(**options) if options else config
        except TypeError as exc:  # an unknown option
            raise TypeError(f'{exc}; the options are the fields of '
                            f'nlml_hpe.options.{cls.__name__}') from None

    def updated(self, **changes):
        """Return a copy with ``changes`` (validated; TypeError for an unknown name)."""
        return replace(self, **changes)

    def as_dict(self):
        """``{field name: value}``."""
        return asdict(self)

    @classmethod
    def from_node(cls, params, base=None):
        """Return the table of a node's parameter values (``{ROS name: value}``).

        Fields whose parameter is not in ``params`` keep ``base``'s value (default:
        the node's defaults).
        """
        base = cls.node_defaults() if base is None else base
        return base.updated(**{f.name: params[ros_name(f)] for f in fields(cls)
                               if ros_name(f) in params})

    @classmethod
    def node_defaults(cls):
        """Return the table with the node's defaults."""
        return cls(**{f.name: node_default(f) for f in fields(cls)})

    @classmethod
    def specs(cls):
        """:class:`Spec` of each public field."""
        out = []
        for f in fields(cls):
            if f.metadata['public']:
                low, high = f.metadata['range']
                out.append(Spec(ros_name(f), f.name, cls, node_default(f), _kind(f), low, high,
                                f.metadata['help'], f.metadata['read_only']))
        return out


def ros_name(f):
    """ROS parameter name of a table field."""
    return f.metadata['ros'] or f.name


def node_default(f):
    """Return the field's default in the node."""
    d = f.metadata['node_default']
    return f.default if d is _UNSET else d


@dataclass(frozen=True)
class EstimatorConfig(_Table):
    """Options of :class:`~nlml_hpe.estimator.HeadPoseEstimator` and its landmark stage."""

    max_faces: int = option(5, 'Faces per frame at most.', 1, MAX_FACES)
    min_detection_confidence: float = option(
        0.5, 'Face detector score threshold. A small far face (up to 64 px) is also taken from '
        '0.1 under it where no face at it lies, if the detector finds it again at the '
        'threshold in a view centred on it.', 0.0, 1.0)
    detection_interval: int = option(
        10, 'Video: frames between two looks for new faces while faces are tracked (one '
        'detector run, between frames); with none tracked the detector runs every frame.',
        1, 300)
    min_face_px: float = option(
        24.0, 'Smallest face (pixels wide) the detector searches for: the frame is also '
        'searched in tiles (one per look in video); a face once found is tracked at any size.',
        8.0, 1000.0, none_ok=True)
    num_threads: int = option(
        2, "CPU threads: a frame's faces are shared among up to this many (a lone face's "
        "model run uses them all), and a frame's own face search uses as many (a look "
        'between frames: one).', 1, MAX_NUM_THREADS)
    flip_average: bool = option(
        None, "Also read each face's mirrored crop (same batch) and average the angles: "
        'AFLW2000 dev 2.57 -> 2.47 deg, about 3 ms more a face (default: on for still '
        'images, off in video).', node_default=False)
    rigid_fusion: bool = option(
        True, "Average the network's angles with a rigid fit of the 3D landmarks to "
        "MediaPipe's canonical face: more accurate, about 0.1 ms.")
    perspective_warp: bool = option(
        True, 'Read faces at least perspective_warp_min_deg off the optical axis from a crop '
        'turned onto their line of sight (a tracked face costs nothing more): removes most '
        "of the landmark model's perspective error at the image edge.")
    warp_min_deg: float = option(
        10.0, 'Angle between the optical axis and the ray to a face (deg) from which '
        'perspective_warp reads it on its line of sight.', 0.0, 90.0,
        ros='perspective_warp_min_deg')
    min_tracking_presence: float = option(
        0.1, "Video: the landmark model's face-presence score a tracked face must keep "
        '(a new face needs 0.5). Low enough to keep a face turned to profile (renders: a '
        'face held at 80 deg yaw stays in 62-77 % of frames, 42-66 % at 0.5), high enough to '
        'drop the back of a head and a covered or vanished face at once.', 0.0, 1.0)
    small_face_flip_px: float = option(
        64.0, 'Faces up to this wide (px) are always read with their mirrored crop too and '
        'the two readings averaged (flip averaging of far faces: one more landmark read a '
        'far face); 0 = off.', 0.0, 1000.0)
    confirm_far_faces: bool = option(
        True, 'A new far face must be confirmed: read mirrored too (small_face_flip_px), it '
        'must be a face in its mirrored crop (unless 3 detector runs found it and it reads at '
        'presence 0.9 or more); found by one detector run alone (small, or up '
        'to 96 px and scored under 0.6), the detector must find it again in a view centred '
        'on it. Renders in real-photo clutter at 1280x720: false faces 17 -> 0.5 per 100 '
        'frames, ghost tracks in video on 8 -> 0 of 30 backgrounds, for 3-6 % fewer 28 px '
        'faces found in a single image (docs/robustness.md).')
    haar_second_opinion: bool = option(
        None, "A far face that confirm_far_faces refutes is kept if OpenCV's Haar cascades "
        'find it at its centre (a 96 px view of its crop; about 4 ms a refuted face). Default: '
        'on for still images, off in video, where a refuted false face comes back every frame '
        'until one is let in (photo-clutter backgrounds at 1280x720: ghost tracks on 0 -> 3 '
        'of 60). Still images: 28-40 px faces found 1-2 % more often in many cells, none '
        'less (package-registry faces, AFLW2000 dev). Needs the cascade files of '
        "opencv-python or Debian's opencv-data; without them it is off, with a warning.",
        node_default=False)
    undo_motion_blur: bool = option(
        True, 'Faces up to 80 px wide: where the frame around one is smeared along a line (a '
        'camera turning during its exposure), the smear is measured there and undone, the '
        'face is read from both frames and the reading of higher presence kept; detection '
        'sees the frame as it is. 40 px faces under a 9 px smear: AFLW2000 dev MAE 4.38 -> '
        '3.97 deg. Costs a check per small face (about 1 ms; in video every third frame) '
        'and, while smeared, a restore and a second read (docs/robustness.md, round 6).')
    # API-only options of the landmark stage (the legacy graph's configuration and tests).
    min_tracking_confidence: float = option(
        0.5, "The landmark model's face-presence score a new face needs (the legacy "
        "graph's threshold for every face).", 0.0, 1.0, public=False)
    detector: str = option(
        'auto', "Detection plan: 'auto' (short-range model for near faces, full-range model "
        "and tiles for far ones), 'short' (the legacy graph's) or 'full'.", public=False,
        choices=DETECTOR_KINDS)
    refine: int = option(
        1, 'A new face is read this many more times from its own landmarks (0: from the '
        "detector's region only, as the legacy graph).", 0, 5, public=False)


@dataclass(frozen=True)
class StreamConfig(_Table):
    """Options of :class:`~nlml_hpe.face_stream.FaceStream`."""

    tracking: bool = option(True, 'Keep face ids stable across frames, with a track lifecycle '
                            '(tentative, confirmed, coasting) and re-association.')
    confirm_frames: int = option(
        3, 'Frames in a row a new face must be seen before it is reported (listed); 1 = at '
        'once.', 1, 30, ros='track_confirm_frames')
    coast_s: float = option(
        0.3, 'Seconds a reported face stays reported (coasting, its region predicted) after it '
        'was last seen.', 0.0, 5.0, ros='track_coast_s')
    memory_s: float = option(
        1.5, 'Seconds a face no longer reported keeps its id: one seen again where its motion '
        'puts it gets the id back (occlusions, turns).', 0.0, 30.0, ros='track_memory_s')
    smoothing: bool = option(True, 'One-Euro smoothing of orientation and position (needs '
                             'tracking).')
    smoothing_min_cutoff: float = option(1.0, 'One-Euro cut-off at rest (Hz); lower = smoother.',
                                         0.01, 100.0)
    smoothing_beta: float = option(0.05, 'One-Euro speed coefficient; higher = less lag.',
                                   0.0, 100.0)
    smoothing_d_cutoff: float = option(1.0, 'One-Euro derivative cut-off (Hz).', 0.01, 100.0)
    default_distance_m: float = option(
        1.0, 'Distance of the face along its optical ray when camera_info is missing or '
        'invalid (m).', 0.05, 100.0)
    looking_threshold_deg: float = option(
        15.0, 'Gaze offset (deg) at or below which a face counts as looking at the camera '
        '(and at the target).', 0.0, 180.0)
    target: tuple = option(
        (0.0, 0.0, 0.0), "Point (x, y, z, metres) in the camera frame that looking_at_target "
        "and target_offsets refer to, e.g. the robot's face screen; [0, 0, 0] = the camera.",
        ros='looking_target', length=3)
    target_tolerance_m: float = option(
        0.0, 'Radius of the target (m): widens looking_threshold_deg by the angle it subtends '
        'at the head.', 0.0, 10.0, ros='looking_target_tolerance_m')


@dataclass(frozen=True)
class NodeConfig(_Table):
    """``head_pose_node``'s own options (the estimator's and the stream's are their tables)."""

    model_path: str = option('', 'Model directory or .safetensors file; empty = the shipped '
                             'model.')
    publish_tf: bool = option(True, 'Broadcast <camera frame> -> face_<id> on /tf: one frame per '
                              'face, at its sellion.')
    publish_gaze_frames: bool = option(
        False, 'Also broadcast <camera frame> -> gaze_<id> (REP-155: at the face origin, z along '
        'the gaze, x right, y down).')
    face_frame_prefix: str = option('face_', 'Child frame prefix of the face frames.')
    gaze_frame_prefix: str = option('gaze_', 'Child frame prefix of the gaze frames.')
    camera_frame: str = option('', "Override of the images' header.frame_id (empty = use it).")
    max_rate: float = option(0.0, 'Processing-rate cap in Hz (0 = as fast as frames arrive).',
                             0.0, 1000.0)
    looking_target_frame: str = option(
        '', 'TF frame whose origin is the target, e.g. head_front_screen (needs tf2_ros; empty '
        '= use looking_target).')
    use_compressed: bool = option(False, 'Subscribe to image/compressed instead of image.',
                                  read_only=True)
    autostart: bool = option(
        True, 'Configure (load the model) and activate (subscribe) once the node spins; false '
        'leaves the lifecycle node unconfigured for a lifecycle manager.', read_only=True)
    ros4hri: bool = option(
        True, 'Also publish the ROS4HRI interface (REP-155): /humans/faces/tracked, per face '
        '/humans/faces/<id>/roi, /cropped, /aligned and /landmarks; the TF frames are named '
        'by the REP-155 id (needs hri_msgs).', read_only=True)


#: Largest image side (pixels): the estimator's (``images.DEFAULT_MAX_SIDE``, not imported).
_MAX_SIDE = 8192


@dataclass(frozen=True)
class DecodeConfig(_Table):
    """What decoding one encoded image may cost (``image_decode.DecodeBudget``).

    Defaults: ``image_decode.FILE_BUDGET`` (files, the CLI); the node's:
    ``image_decode.STREAM_BUDGET`` (``test/test_options.py`` keeps them equal).
    """

    max_decode_pixels: int = option(
        2 ** 22, 'Decoded pixels per image at most: a larger JPEG is decoded at 1/2, 1/4 or '
        '1/8 scale (decode_reduced), any other image refused.', 1, _MAX_SIDE ** 2)
    max_decode_ms: float = option(
        1000.0, 'Estimated decode time per image at most (ms, from its headers; above it a '
        'JPEG is decoded reduced, any other image refused).', 1.0, 60000.0, node_default=50.0)
    max_decode_memory_mb: float = option(
        128.0, "The decoder's estimated working memory per image at most (MiB).", 1.0, 4096.0,
        node_default=48.0)
    max_encoded_mb: float = option(
        64.0, 'Encoded bytes per image at most (MiB), checked before anything is parsed.',
        0.01, 1024.0, node_default=16.0)
    decode_reduced: bool = option(
        True, 'Decode a JPEG above max_decode_pixels or max_decode_ms at 1/2, 1/4 or 1/8 scale '
        "(poses and regions stay in the image's own pixels) instead of refusing it.")


#: The tables, in the order of the node's parameters.
TABLES = (NodeConfig, EstimatorConfig, StreamConfig, DecodeConfig)


def parameter_specs():
    """:class:`Spec` of every public option of every table (node parameters, CLI flags)."""
    return [s for table in TABLES for s in table.specs()]
