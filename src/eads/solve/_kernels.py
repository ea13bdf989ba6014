"""Fused element-wise kernels of :class:`eads.solve.SwitchingHeun` (``torch.compile``, optional).

Between its two products per step the forward does about fifteen element-wise passes (relu, the
predictor, the switching fraction ``theta``, the update, the adjoint's weights). In eager PyTorch
each is a trip through memory; compiled by inductor they become one loop each (the adjoint's five
passes a step stay eager: a kernel for them saved no traffic and cost its call). The functions
below are the reference (eager) forms; :func:`compiled` returns their ``torch.compile``d versions,
or None where compiling fails (no C++ compiler, an unsupported device), so callers fall back to
the eager path. Compiling takes seconds the first time in a process (inductor caches on disk).

Each kernel writes its results into the buffers it is given (``copy_``), so the compiled loop
stores straight into the tape. ``dt`` is a 0-d tensor, so that a new step size does not recompile.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def predictor(z0: torch.Tensor, h: torch.Tensor, dt: torch.Tensor, ht: torch.Tensor) -> None:
    """``ht = h + dt relu(z0)``."""
    ht.copy_(h + dt * z0.clamp(min=0.0))


def predictor_record(
    z0: torch.Tensor, h: torch.Tensor, dt: torch.Tensor, ht: torch.Tensor, s0: torch.Tensor
) -> None:
    """``ht = h + dt relu(z0)`` and ``s0 = 1[z0 > 0]``."""
    r0 = z0.clamp(min=0.0)
    ht.copy_(h + dt * r0)
    s0.copy_(torch.sign(r0))


def _theta(z0: torch.Tensor, z1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    p = z0.clamp(min=0.0) + z1.clamp(min=0.0)
    total = (2 * p - z0 - z1).clamp(min=torch.finfo(z0.dtype).tiny)  # |z0| + |z1|
    return p, p / total


def update(
    z0: torch.Tensor, z1: torch.Tensor, h: torch.Tensor, dt: torch.Tensor, out: torch.Tensor
) -> None:
    """``out = h + dt theta p / 2``."""
    p, theta = _theta(z0, z1)
    out.copy_(h + (0.5 * dt) * theta * p)


def update_record(
    z0: torch.Tensor,
    z1: torch.Tensor,
    h: torch.Tensor,
    s0: torch.Tensor,
    dt: torch.Tensor,
    out: torch.Tensor,
    w0: torch.Tensor,
    w1: torch.Tensor,
) -> None:
    """``out = h + dt theta p / 2``, ``w0 = phi0 - s0``, ``w1 = phi1 = theta - phi0``."""
    p, theta = _theta(z0, z1)
    out.copy_(h + (0.5 * dt) * theta * p)
    phi0 = 0.5 * theta * theta + s0 * theta * (1.0 - theta)
    w1.copy_(theta - phi0)
    w0.copy_(phi0 - s0)


KERNELS = ("predictor", "predictor_record", "update", "update_record")
_compiled: dict[str, object] | None = None
_failed = False


def compiled() -> dict[str, object] | None:
    """The kernels compiled by ``torch.compile`` (lazily, once per process), or None if that fails.

    Compilation itself happens on each kernel's first call; a failure there is caught by
    :func:`call`, which switches the process to the eager kernels for good.
    """
    global _compiled
    if _failed:
        return None
    if _compiled is None:
        try:
            _compiled = {
                name: torch.compile(globals()[name], dynamic=True, fullgraph=True)
                for name in KERNELS
            }
        except Exception as exc:  # pragma: no cover - depends on the installation
            _disable(exc)
            return None
    return _compiled


def call(name: str, *args) -> None:
    """Run kernel ``name`` compiled if possible, else eagerly (and stay eager after a failure)."""
    kernels = compiled()
    if kernels is not None:
        try:
            kernels[name](*args)
            return
        except Exception as exc:  # pragma: no cover - depends on the installation
            _disable(exc)
    globals()[name](*args)


def reset() -> None:
    """Forget the compiled kernels (and a past failure): the next call compiles afresh. Needed
    after ``torch.set_num_threads``, since inductor fixes a CPU kernel's thread count when it
    generates it."""
    global _failed, _compiled
    _failed, _compiled = False, None
    torch.compiler.reset()


def _disable(exc: Exception) -> None:
    global _failed, _compiled
    _failed, _compiled = True, None
    log.warning("torch.compile of the SwitchingHeun kernels failed (%s); using eager ones.", exc)
