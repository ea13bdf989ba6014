"""Boundary checks shared by the circuits: sizes, input tensors, blow-up."""

from __future__ import annotations

import math

import torch

from eads._errors import ConfigError, DataError, UnstableCircuitError


def check_size(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}.")
    return value


def check_positive(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a positive number, got {value!r}.") from None
    if not value > 0 or value != value or value == float("inf"):
        raise ConfigError(f"{name} must be a positive finite number, got {value!r}.")
    return value


def check_reference(reference: bool, voltage: float, rail: float) -> bool:
    """A reference node's switch and voltage: a finite, nonzero voltage inside the rail."""
    if not isinstance(reference, bool):
        raise ConfigError(f"reference must be True or False, got {reference!r}.")
    if not reference:
        return False
    try:
        v = float(voltage)
    except (TypeError, ValueError):
        raise ConfigError(f"reference_voltage must be a number, got {voltage!r}.") from None
    if not math.isfinite(v):
        raise ConfigError(f"reference_voltage must be finite, got {voltage!r}.")
    if v == 0.0:
        raise ConfigError(
            "reference_voltage must be nonzero (a 0 V reference drives nothing); "
            "pass reference=False for a circuit without one."
        )
    if abs(v) > rail:
        raise ConfigError(
            f"reference_voltage {v:g} lies outside the supply rail (+-{rail:g} state units)."
        )
    return True


def check_batch(name: str, x: torch.Tensor, width: int, width_name: str) -> torch.Tensor:
    """``x`` must be a finite (batch, width) tensor; a 1-D tensor is taken as one sample."""
    if not isinstance(x, torch.Tensor):
        raise DataError(f"{name} must be a torch.Tensor, got {type(x).__name__}.")
    if x.ndim == 1:
        x = x.unsqueeze(0)
    if x.ndim != 2 or x.shape[1] != width:
        raise DataError(
            f"{name} must have shape (batch, {width}) to match {width_name}={width}, "
            f"got {tuple(x.shape)}."
        )
    if x.shape[0] == 0:
        raise DataError(f"{name} is empty (batch size 0).")
    if not all_finite(x):
        raise DataError(f"{name} holds NaN or infinite values.")
    return x


_ORDERED_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def all_finite(x: torch.Tensor) -> bool:
    """Whether every entry of ``x`` is finite (one reduction for real floating tensors)."""
    if x.dtype in _ORDERED_FLOATS:
        return all(math.isfinite(v) for v in extremes(x))
    return bool(torch.isfinite(x).all())


def extremes(x: torch.Tensor) -> tuple[float, float]:
    """``(min, max)`` of a non-empty real floating tensor in one pass. A NaN anywhere makes both
    NaN and an infinite entry is an infinite extreme, so both are finite iff every entry is.

    One ``aminmax`` costs a tenth of ``isfinite(x).all()`` plus ``x.abs().max()`` (five passes
    and two temporaries): 0.03 ms against 0.32 ms at 1024 x 128, float32, one thread."""
    lo, hi = torch.stack(torch.aminmax(x.detach())).tolist()  # one host sync
    return lo, hi


def check_stable(stage: str, state: torch.Tensor, rail: float, hint: str) -> None:
    """Raise if the state left the supply rail or became non-finite."""
    lo, hi = extremes(state)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise UnstableCircuitError(f"The {stage} stage blew up (non-finite node voltages); {hint}.")
    peak = max(-lo, hi)
    if peak > rail:
        raise UnstableCircuitError(
            f"The {stage} stage blew up: a node voltage reached {peak:.3g}, beyond the rail "
            f"{rail:g}; {hint}."
        )
