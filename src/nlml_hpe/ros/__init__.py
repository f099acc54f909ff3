"""The ROS 2 wing of nlml_hpe: ``head_pose_node`` and its parts.

* :mod:`~nlml_hpe.ros.node`: the lifecycle node (transitions, the per-frame path);
* :mod:`~nlml_hpe.ros.parameters`: its parameters, declared from
  :mod:`nlml_hpe.options`;
* :mod:`~nlml_hpe.ros.inputs`: the image and camera_info subscriptions' checks;
* :mod:`~nlml_hpe.ros.faces`: what the outputs read from a
  :class:`~nlml_hpe.face_stream.StreamFace` (ids, track state, origin);
* :mod:`~nlml_hpe.ros.outputs`: every pose output, one row each;
* :mod:`~nlml_hpe.ros.hri`: the ROS4HRI face interface (REP-155);
* :mod:`~nlml_hpe.ros.diagnostics`: warnings and ``/diagnostics``.

Importing this package needs rclpy; the numpy core does not.
"""
