"""Compatibility name of :mod:`nlml_hpe.ros.node` (the node moved into the ``ros`` wing).

``python -m nlml_hpe.node`` still runs ``head_pose_node`` (``nlml-hpe benchmark
node`` starts it so), and ``from nlml_hpe.node import HeadPoseNode`` still works.
"""

from .ros.node import HeadPoseNode, StartError, main

__all__ = ['HeadPoseNode', 'StartError', 'main']

if __name__ == '__main__':
    import sys

    sys.exit(main())
