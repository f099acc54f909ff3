"""Every pose output of head_pose_node, one row each (:data:`OUTPUTS`).

A row names its topic, message type and QoS and the function that builds its
message from the frame's result (:class:`FrameResult`); a function may return
None (nothing to publish this frame: no face for ``head_pose``, an unknown
target for ``target_offsets``).  An ``on_demand`` row is built only while
someone subscribes (RViz markers).  Adding a topic is adding a row.

:class:`Outputs` creates the rows' publishers at configure (lifecycle
publishers: silent unless the node is active), publishes a frame, and destroys
them at cleanup.  The ROS4HRI topics are :mod:`nlml_hpe.ros.hri`'s.

Pose outputs carry the faces measured in this frame that are listed (a
tentative track's face, or a coasting track's predicted one, is not published
as a pose), largest first; positions are the faces' REP-155 origins (the
sellion, :func:`nlml_hpe.ros.faces.origin`).
"""

from dataclasses import dataclass, field

from geometry_msgs.msg import (
    Point,
    Pose,
    PoseArray,
    PoseStamped,
    PoseWithCovarianceStamped,
    Quaternion,
    TransformStamped,
)
import numpy as np
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy
from std_msgs.msg import (
    Bool,
    ColorRGBA,
    Float32MultiArray,
    Header,
    Int32MultiArray,
    MultiArrayDimension,
    UInt8MultiArray,
)
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import Marker, MarkerArray

from ..geometry import gaze_frame_quaternion
from . import faces as fv

#: QoS of the pose outputs.
OUT_QOS = QoSProfile(depth=10)
#: QoS of /tf: tf2_ros's TransformBroadcaster's (reliable, volatile, depth 100).
TF_QOS = QoSProfile(depth=100, reliability=QoSReliabilityPolicy.RELIABLE,
                    durability=QoSDurabilityPolicy.VOLATILE)


@dataclass
class FrameResult:
    """One processed frame: its header, its faces (largest first), the image, the settings.

    ``faces``: the stream's faces of the frame, in the message's own pixels;
    ``rgb``: the image as decoded, at 1/``scale`` of the message's ``size``
    ``(width, height)`` (default: ``rgb``'s own size); ``ids``: the node's
    :class:`~nlml_hpe.ros.faces.FaceIds`; ``settings``: the node's parameter
    values; ``target``: the looking-at target in the camera frame (None: TF
    could not locate it).  ``shown``: the faces the pose outputs carry.
    """

    header: Header
    faces: list
    rgb: np.ndarray
    ids: fv.FaceIds
    settings: dict
    target: np.ndarray = None
    size: tuple = None
    scale: int = 1
    shown: list = field(init=False)

    def __post_init__(self):
        self.shown = [f for f in self.faces if fv.listed(f) and fv.seen(f)]
        if self.size is None:
            self.size = (self.rgb.shape[1], self.rgb.shape[0])

    def to_rgb(self, xy):
        """Map points (..., 2+) in the message's pixels to ``rgb``'s (pixel centres)."""
        out = np.array(xy, dtype=float)
        if self.scale != 1:
            out[..., :2] = (out[..., :2] + 0.5) / self.scale - 0.5
        return out



@dataclass(frozen=True)
class Output:
    """One topic: its name, message type, builder ``FrameResult -> message or None``, QoS.

    ``qos``: None = :data:`OUT_QOS`.
    """

    topic: str
    type: type
    build: object
    qos: object = None
    on_demand: bool = False


def _pose(face):
    x, y, z = (float(v) for v in fv.origin(face))
    qx, qy, qz, qw = (float(v) for v in face.quaternion)
    return Pose(position=Point(x=x, y=y, z=z), orientation=Quaternion(x=qx, y=qy, z=qz, w=qw))


def _dim(n):
    return [MultiArrayDimension(label='faces', size=n, stride=n)]


def head_pose(r):
    """PoseStamped of the primary (largest) face; None without a face."""
    return PoseStamped(header=r.header, pose=_pose(r.shown[0])) if r.shown else None


def head_poses(r):
    """PoseArray of every face, largest first (empty without a face)."""
    return PoseArray(header=r.header, poses=[_pose(f) for f in r.shown])


def head_pose_cov(r):
    """PoseWithCovarianceStamped of the primary face; None without a face or a σ."""
    cov = fv.pose_covariance(r.shown[0]) if r.shown else None
    if cov is None:
        return None
    msg = PoseWithCovarianceStamped(header=r.header)
    msg.pose.pose = _pose(r.shown[0])
    msg.pose.covariance = [float(v) for v in cov.ravel()]
    return msg


def face_ids(r):
    """Int32MultiArray: the track number of each head_poses entry."""
    msg = Int32MultiArray(data=[int(f.id) for f in r.shown])
    msg.layout.dim = _dim(len(r.shown))
    return msg


def gaze_offsets(r):
    """Float32MultiArray: per face, the angle (deg) between its forward axis and the camera."""
    msg = Float32MultiArray(data=[float(f.gaze_offset_deg) for f in r.shown])
    msg.layout.dim = _dim(len(r.shown))
    return msg


def looking_at_camera(r):
    """Bool: the primary face looks at the camera (false beyond the readable range)."""
    return Bool(data=fv.looking_at_camera(r.shown[0])) if r.shown else None


def target_offsets(r):
    """Float32MultiArray: per face, the angle (deg) to the target; None if it is unknown."""
    if r.target is None:
        return None
    msg = Float32MultiArray(data=[float(f.target_offset_deg) for f in r.shown])
    msg.layout.dim = _dim(len(r.shown))
    return msg


def looking_at_target(r):
    """UInt8MultiArray: per face, 1 when it looks at the target; None if it is unknown."""
    if r.target is None:
        return None
    msg = UInt8MultiArray(data=[int(bool(fv.looking_at_target(f))) for f in r.shown])
    msg.layout.dim = _dim(len(r.shown))
    return msg


def _transform(header, child, pose, rotation=None):
    tf = TransformStamped(header=header, child_frame_id=child)
    p = pose.position
    tf.transform.translation.x, tf.transform.translation.y = p.x, p.y
    tf.transform.translation.z = p.z
    tf.transform.rotation = pose.orientation if rotation is None else rotation
    return tf


def transforms(r):
    """TFMessage: per face ``<camera frame> -> face_<id>`` and (optionally) ``gaze_<id>``.

    One face frame per face (REP-155: x out of the face, y to the subject's
    left, z up); the gaze frame (REP-155: same origin, z along the gaze, x
    right, y down) only with publish_gaze_frames.  None when publish_tf is off
    or there is no face.
    """
    s = r.settings
    if not s['publish_tf'] or not r.shown:
        return None
    out = []
    for face in r.shown:
        key, pose = r.ids.frame_key(face), _pose(face)
        out.append(_transform(r.header, s['face_frame_prefix'] + key, pose))
        if s['publish_gaze_frames']:
            q = Quaternion(**dict(zip('xyzw', (float(v) for v in
                                                gaze_frame_quaternion(face.rotation)))))
            out.append(_transform(r.header, s['gaze_frame_prefix'] + key, pose, q))
    return TFMessage(transforms=out)


_AXIS_COLOURS = [ColorRGBA(r=1.0, a=1.0), ColorRGBA(g=1.0, a=1.0), ColorRGBA(b=1.0, a=1.0)]


def _marker(header, face, ns, serial, kind=Marker.ARROW):
    m = Marker(header=header, ns=ns, id=int(face.id) * 10 + serial, type=kind,
               action=Marker.ADD)
    m.pose.orientation.w = 1.0
    m.lifetime.sec = 1
    return m


def head_markers(r):
    """MarkerArray for RViz: per face its axes, a gaze arrow and a label (clears old ones)."""
    clear = Marker(header=r.header, action=Marker.DELETEALL)
    out = MarkerArray(markers=[clear])
    for face in r.shown:
        start = fv.origin(face)
        looking = fv.looking_at_camera(face)
        for axis in range(4):
            m = _marker(r.header, face, 'head_axes' if axis < 3 else 'gaze', axis)
            if axis < 3:
                length, direction, m.color = 0.1, face.rotation[:, axis], _AXIS_COLOURS[axis]
                m.scale.x, m.scale.y, m.scale.z = 0.008, 0.016, 0.02
            else:
                length, direction = 0.4, face.rotation[:, 0]
                m.scale.x, m.scale.y, m.scale.z = 0.015, 0.03, 0.05
                m.color = (ColorRGBA(r=0.1, g=0.9, b=0.1, a=0.8) if looking
                           else ColorRGBA(r=0.9, g=0.6, b=0.1, a=0.8))
            end = start + length * direction
            m.points = [Point(x=float(start[0]), y=float(start[1]), z=float(start[2])),
                        Point(x=float(end[0]), y=float(end[1]), z=float(end[2]))]
            out.markers.append(m)
        label = _marker(r.header, face, 'label', 9, Marker.TEXT_VIEW_FACING)
        label.pose.position = Point(x=float(start[0]), y=float(start[1]) - 0.15,
                                    z=float(start[2]))
        label.scale.z = 0.05
        label.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
        label.text = (f'face {r.ids.frame_key(face)}: {face.gaze_offset_deg:.0f} deg'
                      + (' (looking)' if looking else ''))
        out.markers.append(label)
    return out


#: The pose outputs (relative names but /tf), in publishing order.
OUTPUTS = (
    Output('head_poses', PoseArray, head_poses),
    Output('face_ids', Int32MultiArray, face_ids),
    Output('gaze_offsets', Float32MultiArray, gaze_offsets),
    Output('target_offsets', Float32MultiArray, target_offsets),
    Output('looking_at_target', UInt8MultiArray, looking_at_target),
    Output('head_markers', MarkerArray, head_markers, on_demand=True),
    Output('head_pose', PoseStamped, head_pose),
    Output('head_pose_cov', PoseWithCovarianceStamped, head_pose_cov),
    Output('looking_at_camera', Bool, looking_at_camera),
    Output('/tf', TFMessage, transforms, TF_QOS),
)


class Outputs:
    """The publishers of :data:`OUTPUTS` on a lifecycle node."""

    def __init__(self, node):
        self._node = node
        self._pubs = {}  # topic -> LifecyclePublisher, from create() to destroy()

    def create(self):
        """Create every row's lifecycle publisher (configure)."""
        for o in OUTPUTS:
            self._pubs[o.topic] = self._node.create_lifecycle_publisher(o.type, o.topic,
                                                                     o.qos or OUT_QOS)

    def destroy(self):
        """Destroy every publisher (cleanup, shutdown)."""
        pubs, self._pubs = self._pubs, {}
        for pub in pubs.values():
            self._node.destroy_lifecycle_publisher(pub)

    def publisher(self, topic):
        """Return the publisher of ``topic`` (a row's name), or None before configure."""
        return self._pubs.get(topic)

    def publish(self, result):
        """Publish every row's message of one frame (rows returning None are skipped)."""
        for o in OUTPUTS:
            pub = self._pubs.get(o.topic)
            if pub is None or (o.on_demand and pub.get_subscription_count() == 0):
                continue
            msg = o.build(result)
            if msg is not None:
                pub.publish(msg)
