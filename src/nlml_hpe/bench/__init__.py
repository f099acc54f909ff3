"""The bench wing: benchmarks, the demo and the legacy MediaPipe graph (tooling, not run time).

Nothing of the run time (``nlml-hpe predict``, the estimator, the node) imports
from here; ``nlml-hpe benchmark ...`` and ``nlml-hpe demo`` reach it lazily.
"""
