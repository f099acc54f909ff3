"""Transitional: the AFLW2000 benchmark moved to :mod:`nlml_hpe.bench.aflw2000`.

Only ``range_benchmark.py`` (and its successor ``bench/range.py``) still import
from here, under the old names; remove this module when they import
:mod:`nlml_hpe.bench.aflw2000` directly.
"""

from .bench.aflw2000 import PROTOCOLS as PROTOCOLS
from .bench.aflw2000 import in_protocol as _in_protocol  # noqa: F401 - the old private name
from .bench.aflw2000 import list_aflw2000 as list_aflw2000
from .bench.aflw2000 import mae as _mae  # noqa: F401 - the old private name
from .bench.aflw2000 import pick_labelled_face as pick_labelled_face
from .bench.aflw2000 import read_aflw_box as read_aflw_box
from .bench.aflw2000 import read_aflw_pose as read_aflw_pose
from .bench.aflw2000 import read_rgb as read_rgb
