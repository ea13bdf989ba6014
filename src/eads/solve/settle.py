"""Integrate until the circuit settles: the node currents fall below a tolerance.

This is how a relaxation stage is simulated as a transient: the capacitors charge until the net
current into every node, ``|dv/dt|`` in units of the node time constant, is at most
``tolerance``. The time at which each sample settles is returned too; the hardware model turns
it into seconds.
"""

from __future__ import annotations

import torch

from eads._errors import ConfigError, UnstableCircuitError
from eads.solve._base import RK4, AbstractFixedStep, VectorField


def settle(
    f: VectorField,
    y0: torch.Tensor,
    *,
    tolerance: float = 1e-6,
    dt: float = 0.1,
    max_time: float = 200.0,
    method: AbstractFixedStep | None = None,
    rail: float = float("inf"),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrate ``dy/dt = f(t, y)`` from ``y0`` until ``max |f| <= tolerance`` per sample.

    The tolerance is floored at what the dtype can resolve, ``3 eps max|y| / dt`` (matters in
    float32 only).

    Returns the final state ``(batch, nodes)`` and each sample's settling time ``(batch,)``.
    Samples that have settled keep being integrated with the rest (their change is below the
    tolerance), so the returned state is the state at the time the slowest sample settled.

    Raises :class:`UnstableCircuitError` if the state leaves ``[-rail, rail]`` or becomes
    non-finite, and :class:`ConfigError` if ``max_time`` passes before every sample settles.
    """
    if not tolerance > 0:
        raise ConfigError(f"settle tolerance must be positive, got {tolerance!r}.")
    if not dt > 0:
        raise ConfigError(f"settle step dt must be positive, got {dt!r}.")
    method = method or RK4(1)
    y, t = y0, 0.0
    t_settle = torch.full(y0.shape[:1], float("nan"), dtype=y0.dtype, device=y0.device)
    n_max = int(round(max_time / dt))
    # A step cannot move a node by less than half an ulp of its voltage, so in low precision the
    # current stalls near 1.2 eps |v| / dt (float32, dt=0.05: ~3e-6 |v|); at 2.5 times that the
    # stage is as settled as the dtype can resolve (float64: ~1e-14 |v|, negligible).
    floor = 3 * torch.finfo(y0.dtype).eps / dt if y0.dtype.is_floating_point else 0.0
    for _ in range(n_max + 1):
        current = f(t, y).abs().amax(dim=-1)  # (batch,)
        resolvable = tolerance + floor * y.detach().abs().amax(dim=-1)  # (batch,)
        newly = torch.isnan(t_settle) & (current <= resolvable)
        t_settle = torch.where(newly, torch.full_like(t_settle, t), t_settle)
        if not torch.isnan(t_settle).any():
            return y, t_settle
        y, _, _, _ = method.step(f, t, y, dt)
        t += dt
        if not torch.isfinite(y).all() or y.abs().max() > rail:
            raise UnstableCircuitError(
                f"A node voltage left the rail (|v| > {rail:g}) or became non-finite at t={t:.3g} "
                "while settling; the stage is unstable for these conductances."
            )
    raise ConfigError(
        f"The stage did not settle to tolerance {tolerance:g} within max_time={max_time:g} "
        "time constants; raise max_time or the tolerance."
    )
