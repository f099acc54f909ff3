"""Launch head_pose_node.

    ros2 launch nlml_hpe pose.launch.py image_topic:=/camera/image_raw \
        camera_info_topic:=/camera/camera_info [namespace:=robot1] [use_compressed:=true] \
        [params_file:=/path/to/pose.yaml]

With ``use_compressed:=true`` the node subscribes to ``<image_topic>/compressed``
(the image_transport convention).  For 640x480 or larger images over Fast DDS,
export ``FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA`` in every process of the image
pipeline (camera driver included) to cut transport latency.
"""

import os  # noqa: I001 - ruff takes launch/ (this folder) for a first-party module

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description():
    """Return the launch description of head_pose_node."""
    default_params = os.path.join(get_package_share_directory('nlml_hpe'), 'config', 'pose.yaml')
    image_topic = LaunchConfiguration('image_topic')
    use_compressed = LaunchConfiguration('use_compressed')
    return LaunchDescription([
        DeclareLaunchArgument('image_topic', default_value='/camera/image_raw',
                              description='sensor_msgs/Image topic (its /compressed '
                                          'sibling is used with use_compressed:=true)'),
        DeclareLaunchArgument('camera_info_topic', default_value='/camera/camera_info',
                              description='sensor_msgs/CameraInfo topic'),
        DeclareLaunchArgument('params_file', default_value=default_params,
                              description='YAML parameter file of head_pose_node'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of the node and its outputs'),
        DeclareLaunchArgument('use_compressed', default_value='false',
                              description='subscribe to <image_topic>/compressed instead'),
        Node(
            package='nlml_hpe',
            executable='head_pose_node',
            name='head_pose_node',
            namespace=LaunchConfiguration('namespace'),
            output='screen',
            emulate_tty=True,
            parameters=[
                LaunchConfiguration('params_file'),
                {'use_compressed': ParameterValue(use_compressed, value_type=bool)},
            ],
            remappings=[
                ('image', image_topic),
                ('image/compressed', [image_topic, '/compressed']),
                ('camera_info', LaunchConfiguration('camera_info_topic')),
            ],
        ),
    ])
