"""head_pose_node's parameters, declared from the options tables (:mod:`nlml_hpe.options`).

Every public option of :class:`~nlml_hpe.options.NodeConfig`,
:class:`~nlml_hpe.options.EstimatorConfig` and
:class:`~nlml_hpe.options.StreamConfig` is one parameter, statically typed
(``ros2 param describe`` shows its type, range, read-only flag and help):
bool, integer, double, string, or double array (``looking_target``).

Integers are accepted where a double is expected, as ROS users write them
(``ros2 param set /head_pose_node looking_threshold_deg 30``, ``[0, 0, 1]``,
``looking_threshold_deg: 30`` in a YAML file): a pre-set callback turns them
into doubles before rclpy checks the type, so the parameter stays a double.
Nothing else is converted: a double for an integer (``max_faces: 5.0``) or a
string for a number is refused with the reason.

At start-up (:func:`declare`) the values given by a params file or the
command line are checked the same way; any problem stops the node with one
clear message (``cannot start: max_faces: must be an integer (INTEGER), got 'five'``),
and a parameter the node does not have is reported (a typo in a params file
would otherwise be ignored silently).
"""

from pathlib import Path

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
)
from rclpy.parameter import Parameter

from ..face_stream import check_target
from ..input_policy import frame_name_problem, frame_prefix_problem
from ..options import EstimatorConfig, StreamConfig, parameter_specs

#: ROS parameter name -> :class:`~nlml_hpe.options.Spec`.
SPECS = {s.name: s for s in parameter_specs()}
#: Parameters whose change needs a new estimator.
RELOAD = frozenset({'model_path'} | {s.name for s in EstimatorConfig.specs()})
#: Parameter -> its FaceStream option.
STREAM = {s.name: s.field for s in StreamConfig.specs()}

#: Option type -> (ROS parameter type, its name, what a value must be).
_KINDS = {bool: (ParameterType.PARAMETER_BOOL, 'BOOL', 'true or false'),
          int: (ParameterType.PARAMETER_INTEGER, 'INTEGER', 'an integer'),
          float: (ParameterType.PARAMETER_DOUBLE, 'DOUBLE', 'a number'),
          str: (ParameterType.PARAMETER_STRING, 'STRING', 'a string'),
          tuple: (ParameterType.PARAMETER_DOUBLE_ARRAY, 'DOUBLE_ARRAY', 'a list of numbers')}


def default_value(spec):
    """Return the parameter value of a spec's default (a list for a tuple)."""
    return list(spec.default) if spec.type is tuple else spec.default


def descriptor(spec):
    """Return the static ParameterDescriptor of a spec: type, help, range, read-only."""
    d = ParameterDescriptor(name=spec.name, type=_KINDS[spec.type][0], description=spec.help,
                            read_only=spec.read_only)
    if spec.bounds is not None:
        lo, hi = spec.bounds
        if spec.type is int:
            d.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]
        else:
            d.floating_point_range = [FloatingPointRange(from_value=float(lo),
                                                         to_value=float(hi), step=0.0)]
    if spec.type is tuple:
        d.additional_constraints = f'{len(spec.default)} numbers'
    return d


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def coerce(spec, value):
    """Return ``value`` as the spec's type (integers widened to doubles), or raise ValueError.

    Then checked against the spec's table (range, length, choices, finiteness).
    """
    kind, name = spec.type, spec.name
    if kind is float and _is_int(value):
        value = float(value)
    elif kind is tuple and not isinstance(value, (str, bytes)) and hasattr(value, '__len__'):
        items = list(value)
        if all(_is_int(v) or isinstance(v, float) for v in items):
            value = [float(v) for v in items]
    ok = {bool: isinstance(value, bool), int: _is_int(value), float: isinstance(value, float),
          str: isinstance(value, str), tuple: isinstance(value, list)}[kind]
    if not ok:
        _, type_name, must = _KINDS[kind]
        raise ValueError(f'{name}: must be {must} ({type_name}), got {value!r}')
    try:
        checked = getattr(spec.table.node_defaults().updated(**{spec.field: value}), spec.field)
    except ValueError as exc:  # the table names its field: say the parameter's name
        text = str(exc)
        raise ValueError(f'{name}:{text[len(spec.field):]}' if text.startswith(spec.field)
                         else f'{name}: {text}') from None
    return list(checked) if kind is tuple else checked


def widen(params):
    """Pre-set callback: integers given for doubles (and integer arrays) become doubles."""
    out = []
    for p in params:
        spec = SPECS.get(p.name)
        if spec is not None and spec.type is float and p.type_ == Parameter.Type.INTEGER:
            p = Parameter(p.name, Parameter.Type.DOUBLE, float(p.value))
        elif spec is not None and spec.type is tuple and \
                p.type_ == Parameter.Type.INTEGER_ARRAY:
            p = Parameter(p.name, Parameter.Type.DOUBLE_ARRAY, [float(v) for v in p.value])
        out.append(p)
    return out


def problem(values, tf_available=True):
    """Return why these values cannot be used together ('' when they can).

    ``values``: ``{name: value}``, all parameters or some of them (a change).
    The values' types and ranges are checked by :func:`coerce` (start-up) and by
    rclpy with the descriptors (a change); this checks frame names, the target,
    the model path and the values' tables.
    """
    for name, value in values.items():
        if name in SPECS:
            try:
                coerce(SPECS[name], value)
            except ValueError as exc:
                return str(exc)
    for key in ('face_frame_prefix', 'gaze_frame_prefix'):
        reason = frame_prefix_problem(values[key]) if key in values else ''
        if reason:
            return f'{key}: {reason}'
    for key in ('camera_frame', 'looking_target_frame'):
        reason = frame_name_problem(values[key]) if values.get(key) else ''
        if reason:
            return f'{key}: {reason}'
    if 'looking_target' in values:
        try:
            check_target(values['looking_target'])
        except ValueError as exc:
            return f'looking_target: {exc}'
    if values.get('looking_target_frame') and not tf_available:
        return ('looking_target_frame needs tf2_ros, which is not installed; give the target '
                'as looking_target (a point in the camera frame) instead')
    path = values.get('model_path', '')
    if path and not Path(path).exists():
        return f'model_path {path!r} does not exist'
    return ''


def stream_options(values):
    """Return the FaceStream options among parameter values ``{name: value}``."""
    return {option: values[name] for name, option in STREAM.items() if name in values}


def declare(node, tf_available=True):
    """Declare every parameter on ``node``; return ``{name: value}``.

    A given value (params file, command line, overrides) of the wrong type is
    refused as a change would be, except integers for doubles, which are
    widened.  Raises ValueError with every problem found; logs a warning naming
    the given parameters the node does not have.
    """
    values, problems = {}, []
    for spec in SPECS.values():
        loose = ParameterDescriptor(dynamic_typing=True, description=spec.help)
        given = node.declare_parameter(spec.name, default_value(spec), loose).value
        try:
            value = coerce(spec, given)
        except ValueError as exc:
            problems.append(str(exc))
            value = default_value(spec)
        # Now the static descriptor (a value of the wrong type is replaced by ``value``).
        node.set_descriptor(spec.name, descriptor(spec),
                            Parameter(spec.name, value=value).get_parameter_value())
        values[spec.name] = value
    unknown = unknown_overrides(node)
    if unknown:
        node.get_logger().warning(
            f'ignoring unknown parameter(s): {", ".join(unknown)} (not parameters of '
            f'{node.get_name()}; misspelt?)')
    reason = '' if problems else problem(values, tf_available)
    if problems or reason:
        raise ValueError('; '.join(problems) or reason)
    return values


def unknown_overrides(node):
    """Return the names of the given parameters (params file, command line) ``node`` lacks.

    rclpy keeps them in ``Node._parameter_overrides`` and has no public accessor;
    without it (another rclpy) nothing is reported.
    """
    given = getattr(node, '_parameter_overrides', None) or {}
    return sorted(n for n in given if not node.has_parameter(n)
                  and not n.startswith('qos_overrides.'))
