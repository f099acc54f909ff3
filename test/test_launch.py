"""launch/pose.launch.py expands correctly (launch API); test_launch_run runs it for real.

launch and launch_ros are not on PyPI: on the pip route bootstrap.sh installs them
from ../shared/ros2_launch when that folder exists; without them (and without a
sourced ROS 2 Jazzy/Kilted install) these tests skip with the reason.
"""

import importlib.util
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO / 'launch' / 'pose.launch.py'
ARGS = {'image_topic', 'camera_info_topic', 'camera_frame', 'params_file', 'namespace',
        'use_compressed', 'autostart', 'rviz'}


def _require_launch():
    if importlib.util.find_spec('launch_ros') is None:
        pytest.skip('launch_ros is not importable (not on PyPI: bootstrap.sh installs it '
                    'from ../shared/ros2_launch when present; or source a ROS 2 install)')
    launch = pytest.importorskip('launch')
    if not hasattr(launch, 'LaunchDescription'):
        pytest.skip('"launch" resolves to a directory, not the ROS 2 launch package')
    return launch


@pytest.fixture
def description(tmp_path, monkeypatch):
    _require_launch()
    # A minimal ament index so get_package_share_directory('nlml_hpe') resolves.
    marker = tmp_path / 'share' / 'ament_index' / 'resource_index' / 'packages' / 'nlml_hpe'
    marker.parent.mkdir(parents=True)
    marker.write_text('')
    (marker.parent / 'rviz2').write_text('')  # as if installed: the arguments are checked
    config = tmp_path / 'share' / 'nlml_hpe' / 'config'
    config.mkdir(parents=True)
    (config / 'pose.yaml').write_text((REPO / 'config' / 'pose.yaml').read_text())
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(tmp_path))
    spec = importlib.util.spec_from_file_location('pose_launch', LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description(), tmp_path


def _actions(description, overrides):
    """Declare the arguments, run the OpaqueFunction; return (context, launch_ros Nodes)."""
    from launch import LaunchContext  # noqa: I001 - ruff takes launch/ for first-party
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch_ros.actions import Node

    ld, _ = description
    context = LaunchContext()
    context.launch_configurations.update(overrides)
    nodes = []
    for entity in ld.entities:
        if isinstance(entity, DeclareLaunchArgument):
            entity.visit(context)
        elif isinstance(entity, OpaqueFunction):
            nodes += [a for a in entity.execute(context) or [] if isinstance(a, Node)]
        elif isinstance(entity, Node):
            nodes.append(entity)
    return context, nodes


def _expand(description, overrides):
    context, nodes = _actions(description, overrides)
    node = next((n for n in nodes if n.node_package == 'nlml_hpe'), None)
    assert node is not None, 'no head_pose_node in the description'
    node._perform_substitutions(context)
    params = {}
    for arg, is_file in node._Node__expanded_parameter_arguments:
        if is_file and Path(arg).is_file():
            for section in yaml.safe_load(Path(arg).read_text()).values():
                params.update(section['ros__parameters'])
    return node, dict(node.expanded_remapping_rules), params


def _rviz(description, overrides):
    """Return the RViz Node, whether its condition lets it start, its arguments, remaps."""
    context, nodes = _actions(description, overrides)
    rviz = [n for n in nodes if n.node_package == 'rviz2']
    assert len(rviz) == 1
    rviz = rviz[0]
    rviz._perform_substitutions(context)
    from launch.utilities import normalize_to_list_of_substitutions, perform_substitutions

    args = [perform_substitutions(context, normalize_to_list_of_substitutions(a))
            for a in rviz._Node__arguments]
    return rviz, rviz.condition.evaluate(context), args, dict(rviz.expanded_remapping_rules)


def test_launch_arguments_and_defaults(description):
    from launch.actions import DeclareLaunchArgument

    ld, prefix = description
    declared = {e.name: e for e in ld.entities if isinstance(e, DeclareLaunchArgument)}
    assert set(declared) == ARGS
    node, remaps, params = _expand(description, {})
    assert node.node_package == 'nlml_hpe' and node.node_executable == 'head_pose_node'
    assert remaps == {'image': '/camera/image_raw',
                      'image/compressed': '/camera/image_raw/compressed',
                      'camera_info': '/camera/camera_info'}
    assert params['use_compressed'] is False
    assert params['camera_frame'] == ''  # the images' header.frame_id
    assert params['autostart'] is True  # config/pose.yaml's
    default_params = [a for a, f in node._Node__expanded_parameter_arguments if f]
    assert str(prefix / 'share' / 'nlml_hpe' / 'config' / 'pose.yaml') in default_params


def test_launch_arguments_are_applied(description, tmp_path):
    params_file = tmp_path / 'mine.yaml'
    params_file.write_text((REPO / 'config' / 'pose.yaml').read_text())
    node, remaps, params = _expand(description, {
        'image_topic': '/cam2/image', 'camera_info_topic': '/cam2/info',
        'namespace': 'robot1', 'use_compressed': 'true', 'params_file': str(params_file),
        'autostart': 'false'})
    assert node.expanded_node_namespace == '/robot1'
    assert remaps['image/compressed'] == '/cam2/image/compressed'
    assert remaps['camera_info'] == '/cam2/info'
    assert params['use_compressed'] is True and params['autostart'] is False
    # The shipped YAML's values reach the node too.
    assert params['looking_threshold_deg'] == 15.0 and params['max_faces'] == 5


def test_empty_arguments_keep_the_params_file_values(description, tmp_path):
    _, _, params = _expand(description, {'camera_frame': 'camera_color_optical_frame'})
    assert params['camera_frame'] == 'camera_color_optical_frame'
    # An empty camera_frame or autostart keeps the value of the params file.
    mine = yaml.safe_load((REPO / 'config' / 'pose.yaml').read_text())
    mine['/**']['ros__parameters']['camera_frame'] = 'head_camera_optical_frame'
    mine['/**']['ros__parameters']['autostart'] = False
    params_file = tmp_path / 'mine.yaml'
    params_file.write_text(yaml.safe_dump(mine))
    _, _, params = _expand(description, {'params_file': str(params_file)})
    assert params['camera_frame'] == 'head_camera_optical_frame'
    assert params['autostart'] is False


def test_rviz_is_off_by_default_and_follows_the_camera_frame(description):
    from nlml_hpe.bench.demo import FRAME_ID

    ld, prefix = description
    rviz, starts, args, _ = _rviz(description, {})
    assert not starts
    rviz, starts, args, remaps = _rviz(description, {'rviz': 'true', 'namespace': 'robot1',
                                                     'image_topic': '/cam2/image'})
    assert starts and rviz.node_executable == 'rviz2'
    config = str(prefix / 'share' / 'nlml_hpe' / 'config' / 'nlml_hpe.rviz')
    assert args[args.index('-d') + 1] == config
    assert args[args.index('-f') + 1] == FRAME_ID  # the demo's frame by default
    assert rviz.expanded_node_namespace == '/robot1'  # its relative topics = the node's
    assert remaps == {'image': '/cam2/image'}
    _, _, args, _ = _rviz(description, {'rviz': 'true', 'camera_frame': 'cam_optical'})
    assert args[args.index('-f') + 1] == 'cam_optical'


def test_rviz_without_rviz2_stops_before_any_node(description):
    """rviz:=true without rviz2 raises a clear error before returning any action."""
    ld, prefix = description
    (prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' / 'rviz2').unlink()
    with pytest.raises(RuntimeError, match=r'rviz2\) is not installed.*apt install'):
        _actions(description, {'rviz': 'true'})
    _, nodes = _actions(description, {})  # rviz:=false does not need it
    assert [n.node_package for n in nodes] == ['nlml_hpe', 'rviz2']


def test_pose_yaml_matches_the_node_parameters():
    """Every key of config/pose.yaml is a declared parameter with the same type."""
    from nlml_hpe.ros.parameters import SPECS, default_value

    data = yaml.safe_load((REPO / 'config' / 'pose.yaml').read_text())
    values = data['/**']['ros__parameters']
    assert set(values) == set(SPECS)
    for key, value in values.items():
        assert type(value) is type(default_value(SPECS[key])), key


def test_rviz_config_shows_tf_and_markers():
    from nlml_hpe.bench.demo import FRAME_ID

    data = yaml.safe_load((REPO / 'config' / 'nlml_hpe.rviz').read_text())
    displays = {d['Class']: d for d in data['Visualization Manager']['Displays']}
    assert displays['rviz_default_plugins/TF']['Enabled']
    assert displays['rviz_default_plugins/MarkerArray']['Topic']['Value'] == 'head_markers'
    # Relative topics (they follow the namespace), and the demo's frame as Fixed Frame.
    topics = [d['Topic']['Value'] for d in displays.values() if 'Topic' in d]
    assert topics and not any(t.startswith('/') for t in topics), topics
    assert data['Visualization Manager']['Global Options']['Fixed Frame'] == FRAME_ID


def test_launch_file_names_the_demo_frame():
    """The launch file (not importable without launch_ros) uses the demo's frame name."""
    from nlml_hpe.bench.demo import FRAME_ID

    assert f"DEMO_FRAME = '{FRAME_ID}'" in LAUNCH_FILE.read_text()
