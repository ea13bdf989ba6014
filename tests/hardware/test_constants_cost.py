"""Hardware constants and the counted-event cost model against closed forms and counts."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from eads import EADS, ConfigError
from eads.hardware import (
    CircuitConstants,
    CircuitSize,
    CostModel,
    HardwareConstants,
    PowerConstants,
    ProgrammingConstants,
    StageTimesTau,
    rc_settle_time,
)
from eads.hardware.constants import ConverterConstants


def test_time_constant_and_paper_preset():
    c = HardwareConstants()
    assert c.circuit.node_time_constant_s == pytest.approx(1e-12 / 1e-5)
    assert c.power.training_power_w == 1.8 and c.power.inference_power_w == 0.352
    assert c.power.gpu_power_w == 250.0


@pytest.mark.parametrize(
    "make, field, value",
    [
        (CircuitConstants, "capacitance_f", 0.0),
        (CircuitConstants, "capacitance_f", -1e-12),
        (CircuitConstants, "unit_conductance_s", -1e-5),
        (CircuitConstants, "unit_conductance_s", float("nan")),
        (ConverterConstants, "adc_bits", 0),
        (ConverterConstants, "dac_bits", 0),
        (ProgrammingConstants, "conductance_bits", 0),
        (ProgrammingConstants, "mode", "diagonal"),
        (PowerConstants, "training_power_w", 0.0),
    ],
)
def test_nonphysical_constants_name_field_and_value(make, field, value):
    with pytest.raises(ConfigError) as err:
        make(**{field: value})
    assert field in str(err.value) and repr(value) in str(err.value)


def test_from_dict_rejects_unknown_and_bad():
    with pytest.raises(ConfigError, match="capacitance_f"):
        HardwareConstants.from_dict({"circuit": {"capacitance_f": -1.0}})
    with pytest.raises(ConfigError, match="nonsense"):
        HardwareConstants.from_dict({"circuit": {"nonsense": 1.0}})
    with pytest.raises(ConfigError):
        CostModel(power="magic")


@pytest.mark.parametrize("r, drive", [(1.0, 1.0), (2.0, 3.0), (0.5, 0.2)])
def test_linear_stage_time_is_rc_settling(r, drive):
    """The simulated projection of one node settles after ln(|d| / tol) / r time constants; the
    drive d = P x + P_ref v_ref includes the reference node's current."""
    tol, dt = 1e-6, 0.02
    m = EADS(1, 1, 1, r_hidden=r, settle_tolerance=tol, settle_dt=dt, dtype=torch.float64)
    with torch.no_grad():
        m.P.fill_(drive - 0.1)
        m.P_ref.fill_(0.1 / m.reference_voltage)
    st = m.stage_times(torch.ones(1, 1, dtype=torch.float64))
    expected = rc_settle_time(drive, r, tol)
    assert expected == pytest.approx(math.log(drive / tol) / r)
    # settle checks the current on its grid of dt: within one step of the analytic time
    assert abs(float(st.projection[0]) - expected) <= dt + 1e-9
    # and the cost model turns it into seconds with the node time constant
    cost = CostModel()
    inf = cost.inference(CircuitSize(1, 1, 1), StageTimesTau(float(st.projection[0]), 0.0, 0.0))
    assert inf.projection_s == pytest.approx(float(st.projection[0]) * 1e-7)


def test_unit_drive_is_log_one_over_tol():
    assert rc_settle_time(1.0, 1.0, 1e-4) == pytest.approx(math.log(1e4))
    assert rc_settle_time(1e-7, 1.0, 1e-6) == 0.0


STAGES = StageTimesTau(projection=10.0, coupling=1.0, readout=12.0)


def test_inference_counts_scale_with_sizes():
    cost = CostModel()
    cv = HardwareConstants().converters
    a = cost.inference(CircuitSize(4, 8, 2), STAGES)
    b = cost.inference(CircuitSize(8, 8, 6), STAGES)
    assert (a.dac_conversions, a.adc_conversions) == (4, 2)
    # converter energy: N E_dac + M E_adc exactly
    assert b.converter_energy_j - a.converter_energy_j == pytest.approx(
        4 * cv.dac_energy_j + 4 * cv.adc_energy_j
    )
    # the time is set by the stages, not by N, M (parallel converters)
    assert a.time_s == pytest.approx(b.time_s)
    assert a.time_s == pytest.approx(cv.dac_time_s + 23.0 * 1e-7 + cv.adc_time_s)


def test_bottom_up_power_counts_units():
    p = PowerConstants()
    cost = CostModel(power="bottom-up")
    size = CircuitSize(3, 5, 2)
    watts = cost.power_w(size, training=False)
    expected = (3 + 5 + 2) * p.node_unit_power_w + (5 * 3 + 25 + 5 * 2) * p.coupling_unit_power_w
    assert watts == pytest.approx(expected)
    extra = cost.power_w(size, training=True) - watts
    assert extra == pytest.approx(5 * p.adjoint_unit_power_w + 25 * p.coupling_unit_power_w)


def test_reference_node_adds_one_node_and_h_conductances():
    """CircuitSize.of reads the circuit: the reference node is one more node (a fixed source,
    no DAC) and H more conductances to write and power."""
    with_ref, without = EADS(3, 5, 2), EADS(3, 5, 2, reference=False)
    a, b = CircuitSize.of(with_ref), CircuitSize.of(without)
    assert (a.n_reference, b.n_reference) == (1, 0)
    assert a.n_conductances - b.n_conductances == 5 == with_ref.P_ref.numel()
    assert a.n_conductances == sum(p.numel() for p in with_ref.parameters())
    assert a.n_nodes == b.n_nodes + 1
    cost = CostModel()
    assert cost.update(a)[2] == a.n_conductances
    assert cost.inference(a, STAGES).dac_conversions == 3  # inputs only


def test_training_scales_with_steps_and_programming_mode():
    cost = CostModel()
    size = CircuitSize(4, 16, 3)
    one = cost.training(size, STAGES, n_samples=100, batch_size=10)
    two = cost.training(size, STAGES, n_samples=200, batch_size=10)
    assert two.n_updates == 2 * one.n_updates == 20
    assert two.run_time_s == pytest.approx(2 * one.run_time_s)
    assert two.run_energy_j == pytest.approx(2 * one.run_energy_j)
    assert one.conductance_writes == 10 * size.n_conductances
    pr = HardwareConstants().programming
    assert one.update_time_s == pytest.approx(16 * pr.update_time_s)  # rows: H rows
    par = HardwareConstants(programming=dataclasses.replace(pr, mode="parallel"))
    assert CostModel(par).training(
        size, STAGES, n_samples=100, batch_size=10
    ).update_time_s == pytest.approx(pr.update_time_s)
    # a sample: DAC + projection + coupling + clamped readout + adjoint over [T, 0]
    cv = HardwareConstants().converters
    assert one.sample_time_s == pytest.approx(cv.dac_time_s + (10 + 1 + 12 + 1) * 1e-7)
    # doubling H doubles the rows to program and raises the write count as H N + H^2 + H M
    big = cost.training(CircuitSize(4, 32, 3), STAGES, n_samples=100, batch_size=10)
    assert big.update_time_s == pytest.approx(2 * one.update_time_s)
    assert big.conductance_writes == 10 * (32 * 4 + 32 * 32 + 32 * 3)


def test_training_rejects_bad_counts():
    with pytest.raises(ConfigError, match="n_samples"):
        CostModel().training(CircuitSize(1, 1, 1), STAGES, n_samples=0)
    with pytest.raises(ConfigError, match="n_hidden"):
        CircuitSize(1, 0, 1)
