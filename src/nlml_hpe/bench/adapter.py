"""What the tracking benchmark reads from the face stream: the one place to update.

:func:`read_face` turns one :class:`~nlml_hpe.face_stream.StreamFace` into a
:class:`Hypothesis`.  Attributes that today's stream does not have are read
with ``getattr`` and become ``None`` (reported as n/a), so the benchmark runs
unchanged on today's stream and on one with a track lifecycle and uncertainty:

* ``state``: the track's lifecycle state (``face.state``; a string or an enum,
  read by its name in lower case), e.g. tentative, confirmed, coasting, ended;
* ``sigma``: the pose's standard deviation in degrees (``face.pose.sigma_deg``
  or ``face.pose.sigma``): a number (all three angles), three numbers (pitch,
  yaw, roll) or a mapping with those keys;
* ``beyond_range``: whether the pose is flagged as beyond the range the model
  reads well (``face.pose.beyond_range``).

A coasting face (``face.seen`` false) is counted with its predicted box, but its
angles, sigma and range state are its last frame's, not a reading: None here.

:func:`counted` says which faces count as people a consumer would act on: all
of today's; with a lifecycle, not those in :data:`NOT_COUNTED_STATES`.
"""

from dataclasses import dataclass, field

import numpy as np

#: Lifecycle states whose faces are not counted as tracked people.
NOT_COUNTED_STATES = frozenset({'tentative', 'ended', 'lost', 'deleted', 'removed'})
_ANGLES = ('pitch', 'yaw', 'roll')


@dataclass
class Hypothesis:
    """One listed face: track ``id``, ``box``, the estimator's ``angles`` (pitch, yaw, roll).

    ``rotation``: the published (smoothed) REP-155 face frame in the optical
    frame; ``state``, ``sigma`` ((3,) degrees) and ``beyond_range``: None when
    the stream has no such attribute.
    """

    id: int
    box: tuple
    angles: np.ndarray = None
    rotation: np.ndarray = field(default=None, repr=False)
    state: str = None
    sigma: np.ndarray = None
    beyond_range: bool = None


def _first(*values):
    return next((v for v in values if v is not None), None)


def _sigma(value):
    """``(3,)`` degrees (pitch, yaw, roll) from a number, 3 numbers or a mapping; else None."""
    if value is None:
        return None
    if isinstance(value, dict):
        value = [value.get(a) for a in _ANGLES]
        if any(v is None for v in value):
            return None
    arr = np.asarray(value, float).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, 3)
    return arr if arr.size == 3 and np.all(np.isfinite(arr)) else None


def _state(value):
    if value is None:
        return None
    name = getattr(value, 'name', value)
    return str(name).lower()


def read_face(face):
    """Return the :class:`Hypothesis` of one stream face."""
    pose = getattr(face, 'pose', None)
    angles = None
    seen = getattr(face, 'seen', True)  # a coasting face shows its last pose: not a reading
    if seen and pose is not None and all(hasattr(pose, a) for a in _ANGLES):
        angles = np.array([float(getattr(pose, a)) for a in _ANGLES])
    beyond = getattr(pose, 'beyond_range', None) if seen else None
    return Hypothesis(
        id=int(face.id), box=tuple(float(v) for v in face.box), angles=angles,
        rotation=getattr(face, 'rotation', None), state=_state(getattr(face, 'state', None)),
        sigma=_sigma(_first(getattr(pose, 'sigma_deg', None), getattr(pose, 'sigma', None))
                     if seen else None),
        beyond_range=None if beyond is None else bool(beyond))


def counted(hyp):
    """Whether a listed face counts as a tracked person (see :data:`NOT_COUNTED_STATES`)."""
    return hyp.state is None or hyp.state not in NOT_COUNTED_STATES
