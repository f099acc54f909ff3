"""ament_python / pip package definition for nlml_hpe."""

from glob import glob

from setuptools import find_namespace_packages, setup

package_name = 'nlml_hpe'

setup(
    name=package_name,
    version='0.1.0',
    package_dir={'': 'src'},
    # The data folders (no __init__.py) are namespace packages of package data: listing
    # them keeps setuptools from warning that they are absent from `packages`.
    packages=find_namespace_packages('src', include=[package_name, package_name + '.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', glob('launch/*.launch.py')),
        ('share/' + package_name + '/config', glob('config/*.yaml') + glob('config/*.rviz')),
        ('share/' + package_name + '/models',
         glob('models/*.safetensors') + glob('models/*.json')),
    ],
    package_data={package_name: ['data/*', 'data/demo/*', 'data/mediapipe/*']},
    include_package_data=True,
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='nlml_hpe developers',
    maintainer_email='nlml-hpe@example.com',
    description='Real-time head pose estimation (NLML-HPE) for ROS 2: '
                'camera images in, head poses, TF face frames and a gaze signal out.',
    license='MIT',
    entry_points={
        'console_scripts': [
            'head_pose_node = nlml_hpe.ros.node:main',
            'nlml-hpe = nlml_hpe.cli:main',
        ],
    },
)
