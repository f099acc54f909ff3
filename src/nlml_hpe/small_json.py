"""Read a small JSON file that may be broken or hostile: a model's metadata, an artifact."""

import json
from pathlib import Path


def read_small_json(path, max_bytes):
    """Return the JSON value in ``path``, a regular file of at most ``max_bytes``.

    Raises ``OSError`` (missing, not a regular file, too large, unreadable),
    ``ValueError`` (not JSON) or ``RecursionError`` (nested too deep); callers
    name the file in their own error.
    """
    path = Path(path)
    if not path.is_file():
        raise OSError('not found or not a regular file')
    if path.stat().st_size > max_bytes:
        raise OSError(f'larger than {max_bytes} bytes')
    return json.loads(path.read_text())
