"""nlml_hpe: real-time head pose estimation (NLML-HPE) with a ROS 2 front end.

The ML core (``estimator``, ``landmarks``, ``features``, ``model``, ``geometry``)
is free of ROS: numpy in, numpy out.  ``node`` is the ROS 2 adapter.
"""

__version__ = '0.1.0'
