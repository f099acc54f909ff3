"""nlml_hpe: real-time head pose estimation (NLML-HPE) with a ROS 2 front end.

The ML core (``estimator``, ``landmarks``, ``features``, ``model``, ``geometry``)
is free of ROS: numpy in, numpy out.  ``node`` is the ROS 2 adapter.

Threads: the per-frame numpy work is small matrices, where OpenBLAS's worker
threads only spin against the LiteRT models and the robot's other processes
(a 5-face frame took 60 ms instead of 8 on a busy 2-core machine).  So,
unless the environment says otherwise, numpy's OpenBLAS runs single-threaded
when this package is imported before numpy (as by ``head_pose_node`` and
``nlml-hpe``); the models' threads are the ``num_threads`` option.
"""

import os

os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')

__version__ = '0.1.0'
