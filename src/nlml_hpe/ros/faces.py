"""What the ROS outputs read from a :class:`~nlml_hpe.face_stream.StreamFace`.

The one place that adapts the stream's records to the outputs: a face's
ROS4HRI id, its track state, whether it was measured in this frame, whether
the estimator could read it, its uncertainty, and the origin of its frame.

Track contract (``nlml_hpe.face_stream``): each StreamFace carries ``uid``
(a string, unique across nodes and restarts, stable for the track's life),
``state`` (``tentative``, ``confirmed`` or ``coasting``) and ``seen`` (measured
in this frame; while coasting ``box`` is the predicted region and the pose
the last one); ``face.pose`` (the estimator's FacePose) carries ``sigma_deg``
(standard deviations of the angles, degrees, in :mod:`nlml_hpe.uncertainty`'s
order) and ``beyond_range``.  Faces
without them (a stream that does not track states yet) count as confirmed,
seen, readable, of unknown uncertainty; their id is made unique here: a
random prefix of the node (:class:`FaceIds`) and the track number.

Origin: REP-155 puts the ``face_<id>`` frame on the sellion (between the
eyes, on the nose bridge); the estimator places the origin of MediaPipe's
canonical face, about 6 cm behind it.  :func:`origin` moves it by the
canonical face's sellion offset (:func:`nlml_hpe.face_points.sellion_offset_m`)
turned with the face; head_pose, head_poses, TF and the markers all use it.
The gaze and target offsets stay FaceStream's, measured from the head centre:
the estimator's angles are relative to the line of sight to that point, so a
face it reads as frontal has a zero offset (from the sellion, 3 cm above,
the camera would appear 2-4 degrees off at 0.5-1 m).  Without camera
intrinsics a face is placed on the ray through its box centre at
``default_distance_m``: that guess is the origin, unmoved.
"""

import random
import string

import numpy as np

from ..face_points import sellion_offset_m

#: Order of ``FacePose.sigma_deg``: that of ``FacePose.angles``, as
#: :data:`nlml_hpe.uncertainty.ANGLES` gives it (not imported: the node does not
#: load the uncertainty module's tooling).
SIGMA_ORDER = ('pitch', 'yaw', 'roll')
#: Track states whose faces are listed on /humans/faces/tracked.
LISTED_STATES = ('confirmed', 'coasting')
#: Letters of a node's id prefix (REP-155 ids are ROS name tokens: start with a letter).
ID_PREFIX_LETTERS = 4

#: Position uncertainty rule (README): standard deviation along the ray from the
#: camera and across it, as fractions of the distance, for a metric position (from
#: camera_info's K: head size varies by about 7 %, which scales the distance) ...
METRIC_SIGMA_ALONG = 0.07
METRIC_SIGMA_ACROSS = 0.01
#: ... and for a face placed at default_distance_m without K (the distance is a guess).
GUESS_SIGMA_ALONG = 1.0
GUESS_SIGMA_ACROSS = 0.05


def state(face):
    """Return the face's track state (``confirmed`` when the stream gives none)."""
    return getattr(face, 'state', 'confirmed')


def seen(face):
    """Whether the face was measured in this frame (else: coasting on its last pose)."""
    return bool(getattr(face, 'seen', True))


def listed(face):
    """Whether the face belongs on /humans/faces/tracked (its track is confirmed or coasting)."""
    return state(face) in LISTED_STATES


def readable(face):
    """Whether the estimator could read the face (False beyond its readable range)."""
    return not bool(getattr(face.pose, 'beyond_range', False))


def sigma_deg(face):
    """Return ``(yaw, pitch, roll)`` standard deviations in degrees, or None when unknown.

    ``pose.sigma_deg`` is in the order :data:`SIGMA_ORDER`; it is read by name.
    """
    sigma = getattr(face.pose, 'sigma_deg', None)
    if sigma is None:
        return None
    by_name = dict(zip(SIGMA_ORDER, np.asarray(sigma, float).reshape(3)))
    return np.array([by_name['yaw'], by_name['pitch'], by_name['roll']])


def origin(face):
    """Return the face frame's origin ``(3,)`` (m, camera frame): the sellion.

    Without camera intrinsics the position is a guess on the ray through the box
    centre at ``default_distance_m``, and is kept as it is.
    """
    position = np.asarray(face.position, float)
    if not face.metric:
        return position
    return position + np.asarray(face.rotation, float) @ sellion_offset_m()


def looking_at_camera(face):
    """Return looking_at_camera, false for a face beyond the readable range."""
    return bool(face.looking_at_camera) and readable(face)


def looking_at_target(face):
    """Return looking_at_target (None: target unknown), false beyond the readable range."""
    if face.looking_at_target is None:
        return None
    return bool(face.looking_at_target) and readable(face)


def pose_covariance(face):
    """Return the 6x6 covariance of the face's pose (m², rad²), or None when σ is unknown.

    Rotation block: the estimator's yaw, pitch and roll σ are rotations about
    the face's z, y and x axes; turned into the camera frame.  Position block:
    :data:`METRIC_SIGMA_ALONG` / :data:`METRIC_SIGMA_ACROSS` of the distance
    along / across the ray from the camera (``GUESS_*`` without camera_info).
    """
    sigma = sigma_deg(face)
    if sigma is None:
        return None
    yaw, pitch, roll = np.radians(sigma)
    rot = np.asarray(face.rotation, float)
    angular = rot @ np.diag([roll ** 2, pitch ** 2, yaw ** 2]) @ rot.T
    pos = origin(face)
    distance = float(np.linalg.norm(pos))
    ray = pos / distance if distance > 0 else np.array([0.0, 0.0, 1.0])
    along, across = ((METRIC_SIGMA_ALONG, METRIC_SIGMA_ACROSS) if face.metric
                     else (GUESS_SIGMA_ALONG, GUESS_SIGMA_ACROSS))
    linear = (across * distance) ** 2 * np.eye(3) + \
        ((along * distance) ** 2 - (across * distance) ** 2) * np.outer(ray, ray)
    out = np.zeros((6, 6))
    out[:3, :3], out[3:, 3:] = linear, angular
    return out


class FaceIds:
    """A node's face ids: the stream's ``uid``, else a random node prefix + the track number.

    ``rep155`` (ROS4HRI on): TF frames are named after the REP-155 id; off, after
    the track number, as before ROS4HRI (``face_3``).
    """

    def __init__(self, rep155=True, rng=None):
        rng = rng or random.SystemRandom()
        self.prefix = ''.join(rng.choice(string.ascii_lowercase)
                              for _ in range(ID_PREFIX_LETTERS))
        self.rep155 = rep155

    def uid(self, face):
        """Return the face's ROS4HRI id (a ROS name token, unique across nodes and restarts)."""
        return getattr(face, 'uid', None) or f'{self.prefix}{int(face.id)}'

    def frame_key(self, face):
        """Return what names the face's TF frames after the prefix."""
        return self.uid(face) if self.rep155 else str(int(face.id))
