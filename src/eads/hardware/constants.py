"""Physical constants of the EADS hardware model, each with its unit, default and source.

Every field is a number with its unit in its name (``capacitance_f``, ``time_s``, ``energy_j``,
``power_w``) and a docstring giving the default and where it came from: the seed paper (Liu et
al., "An Expressive and Self-Adaptive Dynamical System for Efficient Function Learning", ICML
2025, Sec. 4.4) or "assumed" with the reason. The groups are frozen dataclasses, one per concern:

=========================  =====================================================================
class                      what it fixes
=========================  =====================================================================
:class:`CircuitConstants`  node capacitance, unit conductance (-> node time constant), supply
                           rail, volts per unit of the simulator's state, temperature
:class:`ConverterConstants` DACs on the inputs, ADCs on the outputs: bits, time, energy
:class:`ProgrammingConstants` writing a conductance: time, energy, rows or all in parallel, bits
:class:`PowerConstants`    the paper's power presets, bottom-up component powers, the baselines'
                           device powers
:class:`HardwareConstants` all of the above, the object the cost model takes
=========================  =====================================================================

Non-physical values (a capacitance or conductance <= 0, bits < 1, a negative time) raise
:class:`eads.ConfigError` naming the field and the value.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from eads._errors import ConfigError

#: Boltzmann's constant (J/K), exact in the 2019 SI.
BOLTZMANN_J_PER_K = 1.380649e-23

#: The programming schedules a :class:`ProgrammingConstants` may name.
PROGRAMMING_MODES = ("rows", "parallel")


def _check_positive(owner: str, name: str, value: Any) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{owner}.{name} must be a positive finite number, got {value!r}.")


def _check_nonnegative(owner: str, name: str, value: Any) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{owner}.{name} must be a finite number >= 0, got {value!r}.")


def _check_bits(owner: str, name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{owner}.{name} must be an integer number of bits >= 1, got {value!r}.")


@dataclass(frozen=True)
class CircuitConstants:
    """The analog nodes: what one unit of the simulator's time and state is in the real circuit."""

    capacitance_f: float = 1e-12
    """Node capacitance C (farad). Default 1 pF. Assumed: a typical on-chip MIM capacitor per node;
    the seed paper does not state its node capacitance."""

    unit_conductance_s: float = 1e-5
    """Unit conductance g (siemens): the conductance a parameter value of 1 stands for. Default
    10 uS (100 kOhm). Assumed: the middle of the range of programmable resistive elements
    (10 kOhm - 1 MOhm); the seed paper does not state it."""

    supply_rail_v: float = 1.0
    """Supply rail (volt): node voltages saturate at +/- this value. Default 1.0 V. Assumed: a
    low-voltage analog supply in a modern CMOS node."""

    volts_per_unit: float = 0.1
    """Voltage scale (volt per unit of the simulator's state): a state of 1 is this many volts.
    Default 0.1 V, so the rail sits at +/-10 state units. Assumed: keeps the standardised data
    (|x| of a few units) inside the rail with headroom."""

    temperature_k: float = 300.0
    """Temperature (kelvin) for thermal noise. Default 300 K. Assumed: room temperature."""

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_positive("CircuitConstants", f.name, getattr(self, f.name))

    @property
    def node_time_constant_s(self) -> float:
        """tau = C / g (seconds): one unit of the simulator's time. 1 pF / 10 uS = 100 ns."""
        return self.capacitance_f / self.unit_conductance_s

    @property
    def rail_units(self) -> float:
        """The supply rail in the simulator's state units, ``supply_rail_v / volts_per_unit``."""
        return self.supply_rail_v / self.volts_per_unit

    @property
    def thermal_variance_v2(self) -> float:
        """kT/C (volt^2): the stationary variance of a node's voltage from thermal noise."""
        return BOLTZMANN_J_PER_K * self.temperature_k / self.capacitance_f

    def thermal_noise_sigma(self, conductance: float = 1.0) -> float:
        """The Langevin noise amplitude, in state units per sqrt(time constant), of a node.

        A node of capacitance C leaking through a conductance ``r g`` obeys, in units of tau and
        of ``volts_per_unit``, ``dv = -r v dt + sigma dW`` with ``sigma^2 = 2 r kT / (C V_s^2)``
        (Johnson-Nyquist current noise ``2 k T r g`` per unit bandwidth), whose stationary
        variance ``sigma^2 / (2 r)`` is kT/C whatever r is.
        """
        _check_positive("thermal_noise_sigma", "conductance", conductance)
        return math.sqrt(2.0 * conductance * self.thermal_variance_v2) / self.volts_per_unit


@dataclass(frozen=True)
class ConverterConstants:
    """Data converters: one DAC per input node and one ADC per output node, all in parallel."""

    dac_bits: int = 8
    """DAC resolution (bits). Default 8. Assumed: matches 8-bit conductance programming."""

    dac_time_s: float = 1e-9
    """Time of one DAC conversion (seconds). Default 1 ns. Assumed: a current-steering DAC at
    ~1 GS/s; all inputs convert at once (one DAC per input)."""

    dac_energy_j: float = 1e-12
    """Energy of one DAC conversion (joule). Default 1 pJ. Assumed: typical 8-bit DAC figures of
    merit (0.1 - few pJ per conversion)."""

    adc_bits: int = 8
    """ADC resolution (bits). Default 8. Assumed."""

    adc_time_s: float = 1e-8
    """Time of one ADC conversion (seconds). Default 10 ns. Assumed: an 8-bit SAR ADC at
    ~100 MS/s; all outputs convert at once (one ADC per output)."""

    adc_energy_j: float = 2e-12
    """Energy of one ADC conversion (joule). Default 2 pJ. Assumed: Walden figure of merit
    ~10 fJ per conversion step times 2^8 steps (Murmann's ADC survey range for SAR ADCs)."""

    def __post_init__(self) -> None:
        _check_bits("ConverterConstants", "dac_bits", self.dac_bits)
        _check_bits("ConverterConstants", "adc_bits", self.adc_bits)
        for name in ("dac_time_s", "dac_energy_j", "adc_time_s", "adc_energy_j"):
            _check_positive("ConverterConstants", name, getattr(self, name))


@dataclass(frozen=True)
class ProgrammingConstants:
    """Writing the learned conductances P, J, Q after an EC-Train step."""

    update_time_s: float = 1e-8
    """Time of one conductance write (seconds). Default 10 ns. Assumed: one programming pulse of
    a CMOS-programmable (transistor-array) conductance; ReRAM/PCM pulses are 10 - 100 ns."""

    update_energy_j: float = 1e-13
    """Energy of one conductance write (joule). Default 0.1 pJ. Assumed: switching a transistor-
    array conductance's control bits; ReRAM writes cost ~1 - 10 pJ, so this is optimistic."""

    mode: str = "rows"
    """How writes are scheduled: ``"rows"`` writes one row of each matrix at a time, all its
    columns at once (time = rows x update_time_s, the usual crossbar scheme), ``"parallel"``
    writes every conductance at once (time = one update_time_s). Default ``"rows"``. Assumed:
    the conservative crossbar scheme; the seed paper does not state its programming scheme."""

    conductance_bits: int = 8
    """Resolution of a programmed conductance (bits). Default 8. Assumed; the robustness study
    varies it."""

    def __post_init__(self) -> None:
        _check_positive("ProgrammingConstants", "update_time_s", self.update_time_s)
        _check_positive("ProgrammingConstants", "update_energy_j", self.update_energy_j)
        _check_bits("ProgrammingConstants", "conductance_bits", self.conductance_bits)
        if self.mode not in PROGRAMMING_MODES:
            raise ConfigError(
                f"ProgrammingConstants.mode must be one of {PROGRAMMING_MODES}, got {self.mode!r}."
            )


@dataclass(frozen=True)
class PowerConstants:
    """Power: the seed paper's presets, a bottom-up component model, and the baselines' devices."""

    training_power_w: float = 1.8
    """Average power of the EADS chip while training (watt). Default 1.8 W. Source: seed paper
    Sec. 4.4 (the power used for its training-energy comparison)."""

    inference_power_w: float = 0.352
    """Average power of the EADS chip while inferring (watt). Default 352 mW. Source: seed paper
    Sec. 4.4 (the power used for its inference-energy comparison)."""

    node_unit_power_w: float = 5e-5
    """Bottom-up: static power of one node unit (capacitor + buffer/integrator amplifier) (watt).
    Default 50 uW. Assumed: a low-power OTA at ~50 uA from a 1 V supply."""

    coupling_unit_power_w: float = 1e-6
    """Bottom-up: power of one coupling unit (a programmable conductance with its diode, or a
    projection/readout conductance) (watt). Default 1 uW. Assumed: a 10 uS conductance across
    ~0.1 - 0.3 V dissipates 0.1 - 1 uW, rounded up for its control logic."""

    adjoint_unit_power_w: float = 5e-5
    """Bottom-up: power of one adjoint-circuit node unit, active only during EC-Train's backward
    pass (watt). Default 50 uW. Assumed: the same amplifier as a node unit."""

    gpu_power_w: float = 250.0
    """Average power of the GPU baseline (watt). Default 250 W. Source: seed paper Sec. 4.4 (an
    NVIDIA A100 at its 250 W board power, the PCIe card's TDP)."""

    cpu_power_w: float = 65.0
    """Average power charged to a CPU baseline measured on this machine (watt). Default 65 W.
    Assumed: a desktop-class CPU package TDP; the host's real draw was not measured."""

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_positive("PowerConstants", f.name, getattr(self, f.name))


@dataclass(frozen=True)
class PaperClaims:
    """The seed paper's headline efficiency figures (abstract, Sec. 4.4), for comparison tables."""

    training_speedup: float = 300.0
    """Training speed-up of EADS over GPU baselines (x). Source: seed paper abstract/Sec. 4.4."""

    inference_speedup: float = 1000.0
    """Inference speed-up of EADS over GPU baselines (x). Source: seed paper abstract/Sec. 4.4."""

    energy_gain: float = 1e5
    """Energy-efficiency gain over GPU baselines (x, order of magnitude). Source: seed paper
    abstract/Sec. 4.4."""


@dataclass(frozen=True)
class HardwareConstants:
    """Every constant the cost model uses; ``HardwareConstants()`` is the default setting."""

    circuit: CircuitConstants = field(default_factory=CircuitConstants)
    converters: ConverterConstants = field(default_factory=ConverterConstants)
    programming: ProgrammingConstants = field(default_factory=ProgrammingConstants)
    power: PowerConstants = field(default_factory=PowerConstants)

    def __post_init__(self) -> None:
        for name, cls in (
            ("circuit", CircuitConstants),
            ("converters", ConverterConstants),
            ("programming", ProgrammingConstants),
            ("power", PowerConstants),
        ):
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(
                    f"HardwareConstants.{name} must be a {cls.__name__}, "
                    f"got {type(getattr(self, name)).__name__}."
                )

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict (for JSON and the run directory)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HardwareConstants:
        """Build from a nested dict such as a TOML ``[hardware]`` table; unknown keys raise."""
        groups = {
            "circuit": CircuitConstants,
            "converters": ConverterConstants,
            "programming": ProgrammingConstants,
            "power": PowerConstants,
        }
        if not isinstance(data, dict):
            raise ConfigError(f"hardware constants must be a table, got {type(data).__name__}.")
        unknown = set(data) - set(groups)
        if unknown:
            raise ConfigError(
                f"Unknown hardware constant group(s) {sorted(unknown)}; allowed: {sorted(groups)}."
            )
        built = {}
        for name, group in groups.items():
            values = data.get(name, {})
            allowed = {f.name for f in fields(group)}
            bad = set(values) - allowed
            if bad:
                raise ConfigError(
                    f"Unknown field(s) {sorted(bad)} in hardware.{name}; "
                    f"allowed: {sorted(allowed)}."
                )
            built[name] = group(**values)
        return cls(**built)


__all__ = [
    "BOLTZMANN_J_PER_K",
    "PROGRAMMING_MODES",
    "CircuitConstants",
    "ConverterConstants",
    "HardwareConstants",
    "PaperClaims",
    "PowerConstants",
    "ProgrammingConstants",
]
