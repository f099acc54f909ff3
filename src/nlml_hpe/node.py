"""Compatibility name of :mod:`nlml_hpe.ros.node` (the node moved into the ``ros`` wing).

``python -m nlml_hpe.node`` still runs ``head_pose_node`` (``nlml-hpe benchmark
node`` starts it so), and ``from nlml_hpe.node import HeadPoseNode`` still works.
``PARAMETERS`` (name -> (default, help, descriptor)) is the old table's shape;
new code reads :data:`nlml_hpe.ros.parameters.SPECS`.
"""

from .ros.node import HeadPoseNode, StartError, main
from .ros.parameters import SPECS, default_value, descriptor

PARAMETERS = {name: (default_value(s), s.help, descriptor(s)) for name, s in SPECS.items()}

__all__ = ['PARAMETERS', 'HeadPoseNode', 'StartError', 'main']

if __name__ == '__main__':
    import sys

    sys.exit(main())
