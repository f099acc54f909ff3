"""Launch head_pose_node (and, with ``rviz:=true``, RViz with the shipped config).

    ros2 launch nlml_hpe pose.launch.py [image_topic:=/camera/image_raw] \
        [camera_info_topic:=/camera/camera_info] [camera_frame:=<optical frame>] \
        [namespace:=robot1] [use_compressed:=true] [params_file:=/path/to/pose.yaml] \
        [autostart:=false] [rviz:=true]

With ``use_compressed:=true`` the node subscribes to ``<image_topic>/compressed``
(the image_transport convention).  ``camera_frame`` sets the node's
camera_frame parameter (empty: the images' header.frame_id, the default) and
RViz's fixed frame (empty: ``demo_camera_optical_frame``, the frame of
``nlml-hpe demo``); with a real camera and ``rviz:=true`` pass its optical
frame, e.g. ``camera_frame:=camera_color_optical_frame``.  RViz runs in the
node's namespace, so the config's relative topics find the node's outputs.
RViz is not a dependency of this package (it would pull Qt onto headless robot
computers): with ``rviz:=true`` and no rviz2 installed (``apt install
ros-$ROS_DISTRO-rviz2``) the launch stops with that message before starting
anything.

head_pose_node is a lifecycle node; its ``autostart`` parameter (true in
config/pose.yaml) configures and activates it at start, so this one command
runs it.  Under a lifecycle manager, pass ``autostart:=false`` (or set
``autostart: false`` in params_file; an empty argument keeps the file's value).

For 640x480 or larger images over Fast DDS, export
``FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA`` in every process of the image
pipeline (camera driver included) to cut transport latency, but not together with
``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` (most raw frames are lost then; see
the node's module docstring).
"""

import os  # noqa: I001 - ruff takes launch/ (this folder) for a first-party module

from ament_index_python.packages import (PackageNotFoundError, get_package_prefix,
                                          get_package_share_directory)
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

#: RViz's fixed frame when camera_frame is empty: the frame ``nlml-hpe demo`` publishes
#: (nlml_hpe.bench.demo.FRAME_ID; also the Fixed Frame of config/nlml_hpe.rviz).
DEMO_FRAME = 'demo_camera_optical_frame'


def _check_rviz(context):
    """Raise a clear error when rviz:=true and rviz2 is not installed.

    Checked before any process starts: a launch that fails on a missing package after
    starting head_pose_node leaves the node running without its parent.
    """
    if not IfCondition(LaunchConfiguration('rviz')).evaluate(context):
        return
    try:
        get_package_prefix('rviz2')
    except PackageNotFoundError:
        raise RuntimeError('rviz:=true but RViz (package rviz2) is not installed: install '
                           'it (apt install ros-$ROS_DISTRO-rviz2) or launch without '
                           'rviz:=true; nothing was started') from None


def _nodes(context):
    """Return head_pose_node and RViz (rviz:=true); camera_frame reaches the node only when set.

    (An empty launch argument must not override a camera_frame or autostart set in
    params_file.)
    """
    _check_rviz(context)
    share = get_package_share_directory('nlml_hpe')
    image_topic = LaunchConfiguration('image_topic')
    namespace = LaunchConfiguration('namespace')
    camera_frame = LaunchConfiguration('camera_frame').perform(context)
    overrides = {'use_compressed': ParameterValue(LaunchConfiguration('use_compressed'),
                                                  value_type=bool)}
    if camera_frame:
        overrides['camera_frame'] = camera_frame
    if LaunchConfiguration('autostart').perform(context):
        overrides['autostart'] = ParameterValue(LaunchConfiguration('autostart'),
                                                value_type=bool)
    return [
        Node(
            package='nlml_hpe',
            executable='head_pose_node',
            name='head_pose_node',
            namespace=namespace,
            output='screen',
            emulate_tty=True,
            parameters=[LaunchConfiguration('params_file'), overrides],
            remappings=[
                ('image', image_topic),
                ('image/compressed', [image_topic, '/compressed']),
                ('camera_info', LaunchConfiguration('camera_info_topic')),
            ],
        ),
        Node(
            package='rviz2',
            executable='rviz2',
            name='rviz2',
            namespace=namespace,
            output='screen',
            condition=IfCondition(LaunchConfiguration('rviz')),
            arguments=['-d', os.path.join(share, 'config', 'nlml_hpe.rviz'),
                       '-f', camera_frame or DEMO_FRAME],
            remappings=[('image', image_topic)],
        ),
    ]


def generate_launch_description():
    """Return the launch description of head_pose_node (and optionally RViz)."""
    default_params = os.path.join(get_package_share_directory('nlml_hpe'), 'config',
                                  'pose.yaml')
    return LaunchDescription([
        DeclareLaunchArgument('image_topic', default_value='/camera/image_raw',
                              description='sensor_msgs/Image topic (its /compressed '
                                          'sibling is used with use_compressed:=true)'),
        DeclareLaunchArgument('camera_info_topic', default_value='/camera/camera_info',
                              description='sensor_msgs/CameraInfo topic'),
        DeclareLaunchArgument('camera_frame', default_value='',
                              description="the camera's optical frame: parent of the face "
                                          "frames (empty = the images' header.frame_id, or "
                                          'camera_frame of params_file) and RViz fixed frame '
                                          f'(empty = {DEMO_FRAME})'),
        DeclareLaunchArgument('params_file', default_value=default_params,
                              description='YAML parameter file of head_pose_node'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of the node, its outputs and RViz'),
        DeclareLaunchArgument('use_compressed', default_value='false',
                              description='subscribe to <image_topic>/compressed instead'),
        DeclareLaunchArgument('autostart', default_value='',
                              description='configure and activate the lifecycle node at '
                                          'start: true or false (empty = autostart of '
                                          'params_file, true in config/pose.yaml)'),
        DeclareLaunchArgument('rviz', default_value='false',
                              description='also start RViz with config/nlml_hpe.rviz '
                                          '(needs rviz2: apt install ros-$ROS_DISTRO-rviz2)'),
        OpaqueFunction(function=_nodes),
    ])
