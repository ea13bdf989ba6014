"""Time and energy of EADS inference and EC-Train on the circuit, from counted events.

Units: times in seconds (``_s``), energies in joules (``_j``), powers in watts (``_w``). The
simulator's time unit is the node time constant ``tau = C / g`` (:class:`CircuitConstants`).

One **inference** of a circuit with N inputs, H hidden and M output nodes is::

    t_inf = t_DAC + tau (t_proj + T + t_read) + t_ADC
    E_inf = P_analog (t_inf) + N E_DAC + M E_ADC

where ``t_proj`` and ``t_read`` are the simulated settle times of the linear stages (until the
node currents fall under the settle tolerance; for a single RC node charged by a drive ``d`` this
is ``ln(|d| / tol) / r`` time constants, see :func:`rc_settle_time`), ``T`` the coupling
duration, one DAC per input and one ADC per output converting in parallel (time of one
conversion, energy of all of them).

One **EC-Train sample** (seed paper Sec. 3.2) is the forward anneal with inputs and targets
converted (N + M DAC conversions), the clamped error-current measurement (the output nodes settle
with their outputs clamped: ``t_read`` again), and the adjoint circuit run from T back to 0 (a
time ``T``); an **update** writes every conductance once (``H (N + R) + H H + H M`` writes, ``R``
the reference nodes: 1 with the reference node, 0 without), by rows or
all in parallel (:class:`ProgrammingConstants`). With minibatches of B samples the updates of B
samples are accumulated in the analog update circuit and written once per batch (assumed).

**Power** of the analog core is either the seed paper's preset (1.8 W training, 352 mW inference,
``power="paper"``) or a bottom-up sum (``power="bottom-up"``) over node units (N + R + H + M; the
reference source is counted as one node unit, an assumption), coupling units (one per
conductance, ``H (N + R) + H H + H M``), and, while training, H adjoint node units and the
H x H adjoint coupling array. The reference node is a fixed voltage: it needs no DAC.
Converter and programming energies are counted on top of it.

Do not read these numbers as a chip's datasheet: every constant is stated in
:mod:`eads.hardware.constants` with its source, and most are assumptions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from eads._errors import ConfigError
from eads.hardware.constants import HardwareConstants

POWER_MODES = ("paper", "bottom-up")


def rc_settle_time(drive: float, conductance: float, tolerance: float) -> float:
    """Analytic settle time (time constants) of ``dv/dt = d - r v`` from ``v = 0``.

    The node current ``|dv/dt| = |d| e^(-r t)`` falls under ``tol`` at ``t = ln(|d| / tol) / r``
    (0 if ``|d| <= tol``): ``ln(1/tol)`` time constants for a unit drive, plus ``ln|d|`` for a
    drive of ``d``, divided by the node's conductance ``r`` in unit conductances.
    """
    for name, v in (("conductance", conductance), ("tolerance", tolerance)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ConfigError(f"{name} must be a positive finite number, got {v!r}.")
    d = abs(float(drive))
    return max(math.log(d / tolerance), 0.0) / conductance if d > 0 else 0.0


@dataclass(frozen=True)
class CircuitSize:
    """Node counts: N inputs, H hidden, M outputs, and R = 0 or 1 reference nodes."""

    n_inputs: int
    n_hidden: int
    n_outputs: int
    n_reference: int = 0  #: 1: a reference node wired into every hidden node (``P_ref``)

    def __post_init__(self) -> None:
        for name in ("n_inputs", "n_hidden", "n_outputs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"CircuitSize.{name} must be a positive integer, got {v!r}.")
        if self.n_reference not in (0, 1) or isinstance(self.n_reference, bool):
            raise ConfigError(f"CircuitSize.n_reference must be 0 or 1, got {self.n_reference!r}.")

    @property
    def n_nodes(self) -> int:
        return self.n_inputs + self.n_reference + self.n_hidden + self.n_outputs

    @property
    def n_conductances(self) -> int:
        """``H (N + R) + H H + H M``: every element of P, P_ref, J and Q."""
        H = self.n_hidden
        return H * (self.n_inputs + self.n_reference) + H * H + H * self.n_outputs

    @property
    def n_rows(self) -> int:
        """Rows written one after another when P, J, Q (each H rows) program concurrently."""
        return self.n_hidden

    @classmethod
    def of(cls, model) -> CircuitSize:
        reference = int(bool(getattr(model, "reference", False)))
        return cls(int(model.n_inputs), int(model.n_hidden), int(model.n_outputs), reference)


@dataclass(frozen=True)
class StageTimesTau:
    """Stage durations in node time constants: projection and readout settle times, coupling T."""

    projection: float
    coupling: float
    readout: float

    def __post_init__(self) -> None:
        for name in ("projection", "coupling", "readout"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ConfigError(f"stage time {name} must be a finite number >= 0, got {v!r}.")


@dataclass(frozen=True)
class InferenceCost:
    """Modeled time and energy of one inference, by part."""

    dac_s: float
    projection_s: float
    coupling_s: float
    readout_s: float
    adc_s: float
    time_s: float
    power_w: float
    analog_energy_j: float
    converter_energy_j: float
    energy_j: float
    dac_conversions: int
    adc_conversions: int


@dataclass(frozen=True)
class TrainingCost:
    """Modeled time and energy of one EC-Train sample, of one update, and of a whole run."""

    sample_time_s: float  #: one sample: convert, anneal, clamp, adjoint
    update_time_s: float  #: one conductance update (all of P, J, Q)
    time_per_sample_s: float  #: run time / samples (updates shared out)
    power_w: float
    sample_energy_j: float
    update_energy_j: float
    energy_per_sample_j: float
    n_samples: int  #: training samples processed (epochs x training set)
    n_updates: int
    n_inferences: int  #: validation inferences during the run
    run_time_s: float
    run_energy_j: float
    dac_conversions: int
    conductance_writes: int


class CostModel:
    """Counted-event cost model; ``power`` is ``"paper"`` (preset) or ``"bottom-up"``."""

    def __init__(self, constants: HardwareConstants | None = None, power: str = "paper"):
        constants = constants if constants is not None else HardwareConstants()
        if not isinstance(constants, HardwareConstants):
            raise ConfigError(
                f"constants must be a HardwareConstants, got {type(constants).__name__}."
            )
        if power not in POWER_MODES:
            raise ConfigError(f"power must be one of {POWER_MODES}, got {power!r}.")
        self.constants, self.power = constants, power

    def __repr__(self) -> str:
        return f"CostModel(power={self.power!r})"

    @property
    def tau_s(self) -> float:
        return self.constants.circuit.node_time_constant_s

    # -- power ------------------------------------------------------------------------------
    def bottom_up_power_w(self, size: CircuitSize, training: bool) -> float:
        """Sum of component powers: node and coupling units, plus adjoint units when training."""
        p = self.constants.power
        watts = size.n_nodes * p.node_unit_power_w + size.n_conductances * p.coupling_unit_power_w
        if training:
            H = size.n_hidden
            watts += H * p.adjoint_unit_power_w + H * H * p.coupling_unit_power_w
        return watts

    def power_w(self, size: CircuitSize, training: bool) -> float:
        if self.power == "paper":
            p = self.constants.power
            return p.training_power_w if training else p.inference_power_w
        return self.bottom_up_power_w(size, training)

    # -- inference --------------------------------------------------------------------------
    def inference(self, size: CircuitSize, stages: StageTimesTau) -> InferenceCost:
        """One inference: DAC, projection settle, coupling for T, readout settle, ADC."""
        cv = self.constants.converters
        tau = self.tau_s
        proj, coup, read = stages.projection * tau, stages.coupling * tau, stages.readout * tau
        time_s = cv.dac_time_s + proj + coup + read + cv.adc_time_s
        power = self.power_w(size, training=False)
        analog = power * time_s
        conv = size.n_inputs * cv.dac_energy_j + size.n_outputs * cv.adc_energy_j
        return InferenceCost(
            dac_s=cv.dac_time_s, projection_s=proj, coupling_s=coup, readout_s=read,
            adc_s=cv.adc_time_s, time_s=time_s, power_w=power, analog_energy_j=analog,
            converter_energy_j=conv, energy_j=analog + conv, dac_conversions=size.n_inputs,
            adc_conversions=size.n_outputs,
        )  # fmt: skip

    # -- training ---------------------------------------------------------------------------
    def update(self, size: CircuitSize) -> tuple[float, float, int]:
        """``(time_s, energy_j, writes)`` of writing every conductance once."""
        pr = self.constants.programming
        writes = size.n_conductances
        rows = size.n_rows if pr.mode == "rows" else 1
        return rows * pr.update_time_s, writes * pr.update_energy_j, writes

    def training(
        self,
        size: CircuitSize,
        stages: StageTimesTau,
        *,
        n_samples: int,
        batch_size: int = 1,
        n_inferences: int = 0,
    ) -> TrainingCost:
        """A training run of ``n_samples`` EC-Train samples in batches of ``batch_size``.

        ``n_inferences`` counts the extra inferences of the run (validation after each epoch).
        """
        for name, v, low in (("n_samples", n_samples, 1), ("batch_size", batch_size, 1),
                             ("n_inferences", n_inferences, 0)):  # fmt: skip
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ConfigError(f"{name} must be an integer >= {low}, got {v!r}.")
        cv = self.constants.converters
        tau = self.tau_s
        analog_s = tau * (stages.projection + stages.coupling + stages.readout + stages.coupling)
        sample_s = cv.dac_time_s + analog_s  # inputs and targets convert at once
        power = self.power_w(size, training=True)
        dacs = size.n_inputs + size.n_outputs
        sample_j = power * sample_s + dacs * cv.dac_energy_j
        upd_s, upd_writes_j, writes = self.update(size)
        upd_j = upd_writes_j + power * upd_s
        n_updates = math.ceil(n_samples / batch_size)
        inf = self.inference(size, stages)
        run_s = n_samples * sample_s + n_updates * upd_s + n_inferences * inf.time_s
        run_j = n_samples * sample_j + n_updates * upd_j + n_inferences * inf.energy_j
        return TrainingCost(
            sample_time_s=sample_s, update_time_s=upd_s, time_per_sample_s=run_s / n_samples,
            power_w=power, sample_energy_j=sample_j, update_energy_j=upd_j,
            energy_per_sample_j=run_j / n_samples, n_samples=n_samples, n_updates=n_updates,
            n_inferences=n_inferences, run_time_s=run_s, run_energy_j=run_j,
            dac_conversions=n_samples * dacs + n_inferences * size.n_inputs,
            conductance_writes=n_updates * writes,
        )  # fmt: skip


def as_dict(obj) -> dict:
    """A cost dataclass as a plain dict (for JSON)."""
    return asdict(obj)


__all__ = [
    "POWER_MODES",
    "CircuitSize",
    "CostModel",
    "InferenceCost",
    "StageTimesTau",
    "TrainingCost",
    "as_dict",
    "rc_settle_time",
]
