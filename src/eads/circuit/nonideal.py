"""Device non-idealities of the EADS circuit, and hardware-aware EC-Train through them.

Each non-ideality is off by default and switched on by a field of :class:`NonIdealities`:

* ``conductance_bits``: every conductance of P, J, Q (and the reference node's ``P_ref``) is one
  of ``2^b`` uniform levels over its range ``[-g_max, g_max]`` (signed: a differential pair), see
  :func:`quantize`;
* ``conductance_max``: the range limit ``g_max`` (unit conductances); ``None``: each matrix's
  own largest magnitude (a calibrated programming range);
* ``variation_sigma``: device-to-device variation: each programmed conductance is multiplied by
  its own fixed factor ``exp(sigma * z)``, ``z ~ N(0, 1)`` (lognormal);
* ``noise_std``: thermal noise on the hidden nodes, a Langevin term ``sigma dW`` in the coupling
  stage (integrated by Euler-Maruyama, :mod:`eads.solve.sde`); the settled projection and
  readout nodes carry their stationary noise ``N(0, sigma^2 / (2 r))``;
* ``rail``: supply-rail saturation: node voltages stay in ``[-rail, rail]`` (state units;
  ``HardwareConstants().circuit.rail_units`` is the physical one);
* ``diode``: the rectifier: ``"ideal"`` relu, ``"softplus"`` ``log(1 + e^(beta z)) / beta``
  (a smooth diode), ``"threshold"`` ``relu(z - v_on)`` (a forward voltage).

Hardware-aware EC-Train (:func:`hardware_aware_gradients`) runs the forward pass, the clamped error
measurement and the adjoint circuit all on the *effective* conductances (quantised, varied), and the
diode field returns its derivative ``phi'(J h)`` (times the rail gate) as the aux tensor, which the
core adjoint multiplies by exactly as it does the ideal diode states; the gradient so obtained is
applied to the *programmed* values (a straight-through update: the update circuit adds its pulses to
what was programmed, and the device maps it to the effective value again on the next anneal).

Exactness: with quantisation and variation the adjoint is the exact gradient with respect to the
effective conductances; with the smooth or thresholded diode and the coupling-stage rail gate it is
exact almost everywhere; with noise it is the gradient along the noisy trajectory that was run. Two
approximations are stated: the straight-through step (the quantiser's derivative, zero almost
everywhere, is taken as one), and the projection and readout rails (the core adjoint's ``dL/dP``
does not see a projection node clamped at the rail; keep the rail above the data's range).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from eads._errors import ConfigError
from eads.circuit._checks import check_stable
from eads.circuit.adjoint import adjoint_gradients
from eads.circuit.eads import EADS
from eads.solve import AbstractFixedStep, Euler, Solution
from eads.solve.sde import EulerMaruyama

DIODES = ("ideal", "softplus", "threshold")


@dataclass(frozen=True)
class NonIdealities:
    """Which non-idealities the circuit has; ``NonIdealities()`` is the ideal circuit."""

    conductance_bits: int | None = None
    """Bits per conductance (>= 1), or None for continuous conductances."""

    conductance_max: float | None = None
    """Largest programmable |conductance| (unit conductances), or None for each matrix's max."""

    variation_sigma: float = 0.0
    """Std of log(conductance factor) of the device-to-device variation (0: none)."""

    noise_std: float = 0.0
    """Langevin amplitude on the node voltages (state units per sqrt(time constant); 0: none)."""

    rail: float | None = None
    """Supply-rail saturation of node voltages (state units), or None for no saturation."""

    diode: str = "ideal"
    """Rectifier: "ideal", "softplus" or "threshold"."""

    diode_sharpness: float = 10.0
    """Softplus diode's beta (1/state unit): larger is closer to the ideal relu."""

    diode_threshold: float = 0.0
    """Thresholded diode's turn-on voltage (state units, >= 0)."""

    seed: int = 0
    """Seed of the device-to-device variation (one chip) and of the noise stream."""

    def __post_init__(self) -> None:
        b = self.conductance_bits
        if b is not None and (isinstance(b, bool) or not isinstance(b, int) or b < 1):
            raise ConfigError(
                f"NonIdealities.conductance_bits must be an integer >= 1 or None, got {b!r}."
            )
        for name in ("conductance_max", "rail"):
            v = getattr(self, name)
            if v is not None and not (_is_number(v) and math.isfinite(v) and v > 0):
                raise ConfigError(
                    f"NonIdealities.{name} must be a positive finite number or None, got {v!r}."
                )
        for name in ("variation_sigma", "noise_std", "diode_threshold"):
            v = getattr(self, name)
            if not (_is_number(v) and math.isfinite(v) and v >= 0):
                raise ConfigError(f"NonIdealities.{name} must be a finite number >= 0, got {v!r}.")
        if not (_is_number(self.diode_sharpness) and self.diode_sharpness > 0):
            raise ConfigError(
                f"NonIdealities.diode_sharpness must be positive, got {self.diode_sharpness!r}."
            )
        if self.diode not in DIODES:
            raise ConfigError(f"NonIdealities.diode must be one of {DIODES}, got {self.diode!r}.")

    @property
    def ideal(self) -> bool:
        return self == NonIdealities(seed=self.seed)

    def replace(self, **changes) -> NonIdealities:
        return NonIdealities(**{**asdict(self), **changes})


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def quantize(w: torch.Tensor, bits: int, low: float, high: float) -> torch.Tensor:
    """Clip ``w`` to ``[low, high]`` and round it to the nearest of ``2^bits`` uniform levels.

    The levels include both ends, spaced ``(high - low) / (2^bits - 1)``; inside the range the
    rounding error is at most half a level,
    ``(high - low) / (2 (2^bits - 1)) <= (high - low) 2^-bits``.
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or bits < 1:
        raise ConfigError(f"bits must be an integer >= 1, got {bits!r}.")
    if not (math.isfinite(low) and math.isfinite(high) and high > low):
        raise ConfigError(
            f"the conductance range must satisfy low < high, got [{low!r}, {high!r}]."
        )
    levels = 2**bits - 1
    step = (high - low) / levels
    return torch.round((w.clamp(low, high) - low) / step) * step + low


class NonIdealEADS(EADS):
    """An EADS circuit with the non-idealities of ``nonideal`` (a :class:`NonIdealities`).

    The parameters ``P, J, Q`` are the *programmed* conductances (what a checkpoint holds and what
    updates change); :meth:`effective` gives the conductances the circuit actually has. Forward
    passes use the effective values with a straight-through gradient, so autograd (Backprop) is
    hardware-aware too. Takes every :class:`EADS` argument. With noise on, the coupling stage is
    integrated by Euler-Maruyama with the solver's step count (fixed-step solvers only).
    """

    def __init__(self, *args, nonideal: NonIdealities | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._swapped = False
        self.set_nonidealities(nonideal or NonIdealities())

    @classmethod
    def from_model(cls, model: EADS, nonideal: NonIdealities | None = None) -> NonIdealEADS:
        """A non-ideal copy of a trained ideal ``model`` (its conductances are programmed as-is)."""
        if not isinstance(model, EADS):
            raise ConfigError(f"model must be an EADS circuit, got {type(model).__name__}.")
        new = cls(
            model.n_inputs, model.n_hidden, model.n_outputs,
            duration=model.duration, r_hidden=model.r_hidden, r_output=model.r_output,
            solver=model.solver, stages=model.stages, settle_tolerance=model.settle_tolerance,
            settle_dt=model.settle_dt, rail=model.rail, reference=model.reference,
            reference_voltage=model.reference_voltage, dtype=model.P.dtype,
            device=model.P.device, nonideal=nonideal,
        )  # fmt: skip
        if isinstance(model, NonIdealEADS):
            new.solver = model._ideal_solver
            new.set_nonidealities(nonideal or NonIdealities())
        with torch.no_grad():
            for name in model.conductance_names:
                getattr(new, name).copy_(getattr(model, name))
        return new

    def set_nonidealities(self, nonideal: NonIdealities) -> None:
        """Switch to another set of non-idealities (a new chip: new variation factors)."""
        if not isinstance(nonideal, NonIdealities):
            raise ConfigError(f"nonideal must be a NonIdealities, got {type(nonideal).__name__}.")
        self.nonideal = nonideal
        if not hasattr(self, "_ideal_solver"):
            self._ideal_solver = self.solver
        gen = torch.Generator().manual_seed(nonideal.seed)
        for name in self.conductance_names:
            p = getattr(self, name)
            z = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            factor = torch.exp(nonideal.variation_sigma * z).to(device=p.device, dtype=p.dtype)
            self.register_buffer(f"variation_{name}", factor, persistent=False)
        self._noise_gen = torch.Generator().manual_seed(nonideal.seed + 1)
        if nonideal.noise_std > 0:
            base = self._ideal_solver
            if not isinstance(base, AbstractFixedStep):
                raise ConfigError(
                    f"thermal noise needs a fixed-step solver (Euler-Maruyama takes its steps), "
                    f"got {base!r}."
                )
            self.solver = EulerMaruyama(base.n_steps, nonideal.noise_std, generator=self._noise_gen)
        else:
            self.solver = self._ideal_solver

    # -- effective conductances --------------------------------------------------------------
    def device_value(self, name: str, w: torch.Tensor | None = None) -> torch.Tensor:
        """The conductance the device realises for programmed values ``w`` (no gradient)."""
        ni = self.nonideal
        w = (getattr(self, name) if w is None else w).detach()
        if ni.conductance_bits is not None or ni.conductance_max is not None:
            g_max = ni.conductance_max
            if g_max is None:
                g_max = float(w.abs().max()) or 1.0
            if ni.conductance_bits is not None:
                w = quantize(w, ni.conductance_bits, -g_max, g_max)
            else:
                w = w.clamp(-g_max, g_max)
        if ni.variation_sigma > 0:
            w = w * getattr(self, f"variation_{name}")
        return w

    def effective(self, name: str) -> torch.Tensor:
        """Effective ``P``, ``J``, ``Q`` or ``P_ref``: the device value, with a straight-through
        gradient."""
        if name not in self.conductance_names:
            raise ConfigError(f"name must be one of {self.conductance_names}, got {name!r}.")
        w = getattr(self, name)
        if self._swapped or self.nonideal.ideal:
            return w
        return w + (self.device_value(name, w) - w).detach()

    @contextlib.contextmanager
    def programmed_as_effective(self) -> Iterator[None]:
        """Temporarily hold the effective values in ``P, J, Q, P_ref`` (for no-grad code: the
        adjoint)."""
        if self._swapped or self.nonideal.ideal:
            yield
            return
        saved = {}
        with torch.no_grad():
            for name in self.conductance_names:
                p = getattr(self, name)
                saved[name] = p.detach().clone()
                p.copy_(self.device_value(name))
        self._swapped = True
        try:
            yield
        finally:
            self._swapped = False
            with torch.no_grad():
                for name in self.conductance_names:
                    getattr(self, name).copy_(saved[name])

    # -- the stages, through the imperfect circuit --------------------------------------------
    def _saturate(self, v: torch.Tensor) -> torch.Tensor:
        rail = self.nonideal.rail
        return v if rail is None else v.clamp(-rail, rail)

    def _stationary_noise(self, v: torch.Tensor, r: float) -> torch.Tensor:
        sigma = self.nonideal.noise_std
        if sigma == 0:
            return v
        xi = torch.randn(v.shape, generator=self._noise_gen, dtype=v.dtype).to(v.device)
        return v + (sigma / math.sqrt(2 * r)) * xi

    def project(self, x: torch.Tensor) -> torch.Tensor:
        ref = self.reference_drive(self.effective("P_ref")) if self.reference else 0.0
        drive = x @ self.effective("P").T + ref  # (B, H)
        if self.stages == "equilibrium":
            h0 = drive / self.r_hidden
        else:
            h0, _ = self._settle_linear(drive, self.r_hidden)
        return self._saturate(self._stationary_noise(h0, self.r_hidden))

    def rectifier(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The diode current ``phi(z)`` and its derivative ``phi'(z)``, both ``(B, H)``."""
        ni = self.nonideal
        if ni.diode == "softplus":
            beta = ni.diode_sharpness
            return F.softplus(z, beta=beta), torch.sigmoid(beta * z)
        if ni.diode == "threshold":
            on = z > ni.diode_threshold
            return (z - ni.diode_threshold) * on, on.to(z.dtype)
        on = z > 0
        return z * on, on.to(z.dtype)

    def coupling_field(self, t: float, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``m(h) phi(J_eff h)`` and its aux ``m(h) phi'(J_eff h)`` (the adjoint's diode factor).

        ``m(h) = 1[h < rail]`` stops a node charging at the rail (the rectifier only charges
        upward); ``d/dh`` of the field is ``diag(m phi') J`` almost everywhere, so the aux keeps
        the core adjoint exact.
        """
        if self.nonideal.ideal:
            return super().coupling_field(t, h)
        z = h @ self.effective("J").T  # (B, H)
        current, slope = self.rectifier(z)
        if self.nonideal.rail is not None:
            gate = (h < self.nonideal.rail).to(h.dtype)
            current, slope = current * gate, slope * gate
        return current, slope

    def couple(self, h0: torch.Tensor, *, record: bool = False) -> Solution:
        """Coupling stage through :meth:`coupling_field`, recording a float aux (``phi'``)."""
        if self.nonideal.ideal:
            return super().couple(h0, record=record)
        sol = self.solver.integrate(
            self.coupling_field, h0, 0.0, self.duration, record=record, aux=True,
            aux_dtype=h0.dtype,
        )  # fmt: skip
        check_stable(
            "coupling",
            sol.y,
            self.rail,
            f"lower the duration (T={self.duration:g}) or the coupling conductances J",
        )
        # No clamp here: the gate in the field stops charging at the rail; a step may overshoot
        # it by at most dt * f, and a final clamp would hide zeroed derivatives from the adjoint.
        return sol

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        drive = h @ self.effective("Q")  # (B, M)
        if self.stages == "equilibrium":
            y = drive / self.r_output
        else:
            y, _ = self._settle_linear(drive, self.r_output)
        return self._saturate(self._stationary_noise(y, self.r_output))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", nonideal={self.nonideal!r}"


@torch.no_grad()
def hardware_aware_gradients(
    model: NonIdealEADS, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """EC-Train through the imperfect circuit: ``(loss, {'P', 'J', 'Q'})``.

    Forward anneal, error-current measurement and adjoint pass all see the effective
    conductances, the non-ideal diode's derivative and (if on) the same noisy trajectory; the
    gradients are returned for the programmed values (straight-through).
    """
    if not isinstance(model, NonIdealEADS):
        raise ConfigError(
            f"hardware-aware EC-Train needs a NonIdealEADS circuit, got {type(model).__name__}."
        )
    with model.programmed_as_effective():
        return adjoint_gradients(model, x, y)


def euler_reference(model: EADS) -> AbstractFixedStep:
    """The deterministic solver Euler-Maruyama reduces to at zero noise (for tests and checks)."""
    return Euler(model.solver.n_steps)


__all__ = [
    "DIODES",
    "NonIdealEADS",
    "NonIdealities",
    "hardware_aware_gradients",
    "quantize",
]
