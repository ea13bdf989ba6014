"""A test hook, not a feature: make this process SIGKILL itself at a named point of a run.

``EADS_TEST_KILL_AT=<point>[:<n>]`` in the environment kills the process (``SIGKILL``: no
``finally``, no ``atexit``, no flush, as ``kill -9`` or the kernel's OOM killer would) at the
``n``-th pass (default 1, counted in this process) through ``point``, so that a test can
interrupt a real ``eads fit`` at a chosen moment and check that ``--resume`` finishes it. The
points:

* ``before-run-dir``: ``RunDir.create``, before the run directory is made;
* ``before-rename:<file>``: an atomic write of ``<file>`` (e.g. ``checkpoint.safetensors``)
  whose temporary file is complete and fsynced, before it is renamed over ``<file>``;
* ``after-rename:<file>``: just after that rename (``after-rename:checkpoint.safetensors:3``
  is the moment after epoch 3's checkpoint, counting from 1);
* ``minibatch``: after a trainer has computed a minibatch's gradients (``eads fit`` only),
  before the update is applied (``minibatch:1``: in the first epoch).

Unset (always, outside tests) the hook costs one module-level boolean test per point. Spawned
data-parallel ranks inherit the variable and each counts its own passes; use it on one process.
"""

from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("EADS_TEST_KILL_AT", "")
ARMED = bool(_SPEC)


def _parse(spec: str) -> tuple[str, int]:
    name, _, count = spec.rpartition(":")
    if name and count.isdigit():
        return name, int(count)
    return spec, 1


_POINT, _AT = _parse(_SPEC)
_passes = 0


def point(name: str) -> None:
    """Pass through the point ``name``; the ``n``-th pass through the armed point is fatal."""
    global _passes
    if not ARMED or name != _POINT:
        return
    _passes += 1
    if _passes == _AT:
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


def after_each_call(obj, method: str, name: str):
    """``obj`` with ``obj.method`` passing through point ``name`` after each call (when armed)."""
    if ARMED and _POINT == name:
        real = getattr(obj, method)

        def wrapped(*args, **kwargs):
            out = real(*args, **kwargs)
            point(name)
            return out

        object.__setattr__(obj, method, wrapped)
    return obj
