"""Atomic file writes: a reader sees the old file or the whole new one, never half of it.

Each writer writes to a temporary file in the same folder, flushes and fsyncs it, then renames it
over the target (``os.replace`` is atomic on POSIX and Windows). An interrupted write leaves at
most a ``.tmp-<name>-*`` file beside the target, which no reader looks at; a process killed
outright (``SIGKILL``, power loss) cannot remove it, so whoever resumes work in that folder calls
:func:`remove_temporaries`.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from eads import _faults

TEMPORARY_PREFIX = ".tmp-"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it replaces ``path`` atomically.

    The result keeps the permissions of the file it replaces, or gets the umask's for a new
    file (``mkstemp``'s owner-only mode would otherwise leak into every result and page)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_file():
        mode = stat.S_IMODE(target.stat().st_mode)
    else:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(
        prefix=f"{TEMPORARY_PREFIX}{target.name}-", suffix=target.suffix, dir=target.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, mode)
        if _faults.ARMED:
            _faults.point(f"before-rename:{target.name}")
        os.replace(tmp_path, target)
        if _faults.ARMED:
            _faults.point(f"after-rename:{target.name}")
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def remove_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that interrupted atomic writes left in ``folder``.

    Only for a folder no other process is writing to at the same time (its temporaries are
    someone's writes in progress); returns the paths removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.glob(f"{TEMPORARY_PREFIX}*")):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def atomic_write_with(path: str | os.PathLike, writer: Callable[[Path], None]) -> None:
    """Atomically create ``path`` with ``writer(tmp_path)`` (e.g. ``np.savez``, safetensors)."""
    with atomic_path(path) as tmp:
        writer(tmp)


def atomic_write_csv(path: str | os.PathLike, rows: list[dict], fields: list[str]) -> None:
    """Atomically write ``rows`` as CSV with the given columns (extra keys are left out)."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _json_default(obj: Any) -> Any:
    # arrays and tensors with elements first: their ``item()`` raises for more than one element
    if hasattr(obj, "tolist") and getattr(obj, "ndim", 0) > 0:
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")
