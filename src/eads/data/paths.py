"""Where data lives: the shared real data sets, and the cache of generated ones.

Real data sets are read in place from the project's ``shared/data`` folder (never copied into the
repository). Set ``EADS_SHARED_DATA`` to point elsewhere; otherwise the folder is looked for as
``../shared/data`` beside the checkout (and beside the current directory). Generated data sets
(PDE instances) are cached under ``EADS_CACHE_DIR`` (default ``.cache/eads`` in the current
directory), each with a manifest.
"""

from __future__ import annotations

import os
from pathlib import Path

from eads._errors import DataError

_REPO_ROOT = Path(__file__).resolve().parents[3]


def shared_data_dir() -> Path:
    """The folder of real data sets (``EADS_SHARED_DATA``, else ``../shared/data``)."""
    env = os.environ.get("EADS_SHARED_DATA")
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise DataError(f"EADS_SHARED_DATA={env!r} is not a directory.")
        return path
    for base in (_REPO_ROOT, Path.cwd()):
        for candidate in (base.parent / "shared" / "data", base / "shared" / "data"):
            if candidate.is_dir():
                return candidate
    raise DataError(
        "Could not find the shared data folder; set EADS_SHARED_DATA to the path of shared/data."
    )


def shared_file(relative: str) -> Path:
    """Path of one file under the shared data folder, with a clear error if it is missing."""
    path = shared_data_dir() / relative
    if not path.exists():
        raise DataError(f"Data file {str(path)!r} does not exist.")
    return path


def cache_dir() -> Path:
    """The cache folder for generated data sets (created on first use)."""
    path = Path(os.environ.get("EADS_CACHE_DIR", ".cache/eads")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path
