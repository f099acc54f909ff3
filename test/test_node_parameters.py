"""head_pose_node's parameters with real rclpy: validation, reloads, the parameter service.

Uses test_node's rig (the node with the shipped model, a probe, the demo clip's face).
"""

import pytest

rclpy = pytest.importorskip('rclpy', reason='rclpy is not installed (run bootstrap.sh)')
pytest.importorskip('nlml_hpe.estimator', reason='the inference core (nlml_hpe.estimator) '
                    'is not in this checkout yet')
from builtin_interfaces.msg import Time  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from test_node import Rig, _face_rgb, _image_msg  # noqa: E402

from nlml_hpe.model import default_model_dir  # noqa: E402


@pytest.fixture(scope='module')
def rig():
    r = Rig(default_model_dir(), smoothing=False, publish_gaze_frames=True)
    yield r
    r.close()


@pytest.mark.ros
def test_parameters_validated_at_runtime(rig):
    node = rig.node
    bad = [Parameter('max_faces', value=0), Parameter('min_detection_confidence', value=1.5),
           Parameter('face_frame_prefix', value=''), Parameter('model_path', value='/nope/x'),
           Parameter('looking_threshold_deg', value=-1.0), Parameter('max_rate', value='fast')]
    for p in bad:
        result = node.set_parameters([p])[0]
        assert not result.successful, p.name
    assert node.get_parameter('max_faces').value == 5
    ok = node.set_parameters([Parameter('looking_threshold_deg', value=30.0),
                              Parameter('smoothing_beta', value=0.5)])
    assert all(r.successful for r in ok)
    assert node.get_parameter('looking_threshold_deg').value == 30.0
    node.set_parameters([Parameter('looking_threshold_deg', value=15.0)])
    assert not node.set_parameters([Parameter('use_compressed', value=True)])[0].successful
    desc = node.describe_parameter('max_faces')
    assert desc.integer_range[0].from_value == 1 and desc.description


@pytest.mark.ros
def test_flip_average_switch_reloads_and_publishes(rig):
    assert rig.node.get_parameter('flip_average').value is False  # the node's default
    assert not rig.node.estimator.flip_average
    rig.node.set_parameters([Parameter('flip_average', value=True)])
    try:
        rig.clear()
        rig.send(_image_msg(_face_rgb(), Time(sec=900)))
        assert rig.node.estimator.flip_average
        assert rig.node.estimator.last_timings['flip_matched'] == 1
        assert rig.count('head_pose') == 1
    finally:
        rig.node.set_parameters([Parameter('flip_average', value=False)])
        rig.send(_image_msg(_face_rgb(), Time(sec=901)))
        assert not rig.node.estimator.flip_average
        assert rig.node.estimator.last_timings['flip_matched'] == 0


@pytest.mark.ros
def test_perspective_warp_switch_reloads(rig):
    assert rig.node.get_parameter('perspective_warp').value is True
    config = rig.node.estimator.config
    assert config.perspective_warp and config.warp_min_deg == 10.0
    result = rig.node.set_parameters([Parameter('perspective_warp_min_deg', value=120.0)])[0]
    assert not result.successful  # out of its 0-90 range
    rig.node.set_parameters([Parameter('perspective_warp', value=False),
                             Parameter('perspective_warp_min_deg', value=5.0)])
    try:
        rig.send(_image_msg(_face_rgb(), Time(sec=960)))
        est = rig.node.estimator
        assert not est.config.perspective_warp and est.config.warp_min_deg == 5.0
        assert rig.count('head_pose') >= 1
    finally:
        rig.node.set_parameters([Parameter('perspective_warp', value=True),
                                 Parameter('perspective_warp_min_deg', value=10.0)])
        rig.send(_image_msg(_face_rgb(), Time(sec=961)))
        assert rig.node.estimator.config.perspective_warp


@pytest.mark.ros
def test_rigid_fusion_switch_reloads(rig):
    assert rig.node.get_parameter('rigid_fusion').value is True
    assert rig.node.estimator.config.rigid_fusion
    rig.node.set_parameters([Parameter('rigid_fusion', value=False)])
    try:
        rig.send(_image_msg(_face_rgb(), Time(sec=950)))
        assert not rig.node.estimator.config.rigid_fusion and rig.count('head_pose') >= 1
    finally:
        rig.node.set_parameters([Parameter('rigid_fusion', value=True)])
        rig.send(_image_msg(_face_rgb(), Time(sec=951)))
        assert rig.node.estimator.config.rigid_fusion


def _call(rig, client, request):
    assert client.wait_for_service(timeout_sec=10)
    future = client.call_async(request)
    rig._wait(future.done, 'the service call')
    return future.result()


@pytest.mark.ros
def test_parameters_through_the_service_as_ros2_param_set_sends_them(rig):
    """ros2 param set sends YAML-typed values: integers for doubles, double arrays."""
    from rcl_interfaces.msg import Parameter as ParameterMsg
    from rcl_interfaces.msg import ParameterType, ParameterValue
    from rcl_interfaces.srv import DescribeParameters, GetParameters, SetParameters

    node = '/head_pose_node'
    set_client = rig.probe.create_client(SetParameters, f'{node}/set_parameters')
    get_client = rig.probe.create_client(GetParameters, f'{node}/get_parameters')
    describe = rig.probe.create_client(DescribeParameters, f'{node}/describe_parameters')

    def set_one(name, **value):
        msg = ParameterMsg(name=name, value=ParameterValue(**value))
        return _call(rig, set_client, SetParameters.Request(parameters=[msg])).results[0]

    def get_one(name):
        return _call(rig, get_client, GetParameters.Request(names=[name])).values[0]

    try:
        # `ros2 param set /head_pose_node looking_threshold_deg 30`
        assert set_one('looking_threshold_deg', type=ParameterType.PARAMETER_INTEGER,
                       integer_value=30).successful
        value = get_one('looking_threshold_deg')
        assert value.type == ParameterType.PARAMETER_DOUBLE and value.double_value == 30.0
        (desc,) = _call(rig, describe, DescribeParameters.Request(
            names=['looking_threshold_deg'])).descriptors
        assert desc.type == ParameterType.PARAMETER_DOUBLE and not desc.dynamic_typing
        # `ros2 param set /head_pose_node looking_target '[0.0, 0.0, 0.5]'` (and '[0, 0, 1]')
        assert set_one('looking_target', type=ParameterType.PARAMETER_DOUBLE_ARRAY,
                       double_array_value=[0.0, 0.0, 0.5]).successful
        assert list(get_one('looking_target').double_array_value) == [0.0, 0.0, 0.5]
        assert set_one('looking_target', type=ParameterType.PARAMETER_INTEGER_ARRAY,
                       integer_array_value=[0, 0, 1]).successful
        assert list(get_one('looking_target').double_array_value) == [0.0, 0.0, 1.0]
        rig.clear()
        rig.send(_image_msg(_face_rgb(), Time(sec=1500)))
        assert rig.count('target_offsets') == 1
        # Refused: a double for an integer, the wrong length, a string.
        assert not set_one('max_faces', type=ParameterType.PARAMETER_DOUBLE,
                           double_value=5.0).successful
        result = set_one('looking_target', type=ParameterType.PARAMETER_INTEGER_ARRAY,
                         integer_array_value=[0, 1])
        assert not result.successful and 'looking_target' in result.reason
        assert not set_one('looking_target', type=ParameterType.PARAMETER_STRING,
                           string_value='[0, 0, 1]').successful
        assert get_one('max_faces').integer_value == 5
    finally:
        rig.node.set_parameters([Parameter('looking_threshold_deg', value=15.0),
                                 Parameter('looking_target', value=[0.0, 0.0, 0.0])])


def _other_value(spec):
    """Return a valid value of ``spec`` other than its default."""
    d = spec.default
    if spec.type is bool:
        return not d
    if spec.type is tuple:
        return [0.1, 0.0, 0.5]
    if spec.type is str:
        return {'model_path': str(default_model_dir()), 'face_frame_prefix': 'head_',
                'gaze_frame_prefix': 'look_', 'camera_frame': 'override_optical_frame',
                'looking_target_frame': 'screen'}[spec.name]
    lo, hi = spec.bounds
    return spec.type(d + 1 if d + 1 <= hi else lo) if spec.type is int else (lo + hi) / 2


@pytest.mark.ros
def test_every_writable_parameter_changes_at_run_time(rig):
    """Each parameter not read-only takes a new value while the node runs, and acts on it."""
    from nlml_hpe.options import EstimatorConfig
    from nlml_hpe.ros.inputs import TF_AVAILABLE
    from nlml_hpe.ros.parameters import SPECS

    node = rig.node
    before = {name: node.get_parameter(name).value for name in SPECS}
    estimator_fields = {s.name: s.field for s in EstimatorConfig.specs()}
    try:
        for spec in SPECS.values():
            if spec.read_only:
                assert not node.set_parameters([Parameter(spec.name, value=_other_value(
                    spec))])[0].successful, spec.name
                continue
            value = _other_value(spec)
            result = node.set_parameters([Parameter(spec.name, value=value)])[0]
            if spec.name == 'looking_target_frame' and not TF_AVAILABLE:
                assert not result.successful and 'tf2_ros' in result.reason
                continue
            assert result.successful, (spec.name, result.reason)
            got = node.get_parameter(spec.name).value
            assert (list(got) if spec.type is tuple else got) == value, spec.name
            if spec.name in estimator_fields:  # rebuilt with it
                assert getattr(node.estimator.config, estimator_fields[spec.name]) == value
        assert node.pump.max_rate == _other_value(SPECS['max_rate'])
        node.set_parameters([Parameter('max_rate', value=0.0),
                             Parameter('max_faces', value=5)])
        rig.clear()
        rig.send(_image_msg(_face_rgb(), Time(sec=2000)))
        assert rig.last('head_pose').header.frame_id == 'override_optical_frame'
        assert rig.count('/tf') == 0  # publish_tf is now false
        node.set_parameters([Parameter('publish_tf', value=True)])
        rig.send(_image_msg(_face_rgb(), Time(sec=2001)))
        names = sorted(t.child_frame_id for t in rig.last('/tf').transforms)
        assert len(names) == 2 and names[0].startswith('head_')  # the new prefixes, and
        assert names[1] == 'look_' + names[0][len('head_'):]    # publish_gaze_frames on
    finally:
        node.set_parameters([Parameter(name, value=value) for name, value in before.items()
                             if not SPECS[name].read_only])
    assert {n: node.get_parameter(n).value for n in SPECS} == before
