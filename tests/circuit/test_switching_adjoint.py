"""EC-Train through SwitchingHeun (the adjoint of the switch-locating scheme), in float64.

Oracles: autograd through the same solver, with the switching weights held constant (what the
solver's autograd form does) and with the switching integral differentiated as written (no
weights at all); central finite differences of the simulated loss; the continuous circuit's
exact gradient where no diode switches (``matrix_exp``); a 8192-step RK4 reference where diodes
switch, approached at order two (while Heun, the same tableau without the switch location,
converges at order about one).
"""

from __future__ import annotations

import pytest
import torch
from conftest import fitted_order, max_rel_err, rel_err
from test_adjoint import (
    autograd_gradients,
    continuous_gradients,
    data,
    finite_differences,
    model,
    no_switch_case,
)

import eads
from eads.circuit import adjoint_gradients
from eads.circuit.nonideal import NonIdealEADS, NonIdealities, hardware_aware_gradients
from eads.solve import SwitchingHeun
from eads.solve.switching import switching_integral


@pytest.mark.parametrize(("r_output", "reference"), [(1.0, True), (1.7, True), (1.0, False)])
def test_ectrain_equals_autograd_through_switching_heun(r_output, reference):
    m = model(SwitchingHeun(6), r_output=r_output, reference=reference, reference_voltage=0.7)
    x, y = data()
    loss, ec = adjoint_gradients(m, x, y)
    ref_loss, ref = autograd_gradients(m, x, y)
    assert set(ec) == set(m.conductance_names)
    assert float(loss) == pytest.approx(float(ref_loss), rel=1e-13)
    assert max_rel_err(ec, ref) < 1e-10  # measured ~2e-16


def written_out_gradients(m, x, y, n):
    """Autograd through the scheme as the module docstring writes it: ``switching_integral``
    differentiated directly, no weights involved."""
    names = m.conductance_names
    P, J, Q, *p = (getattr(m, k).detach().clone().requires_grad_() for k in names)
    h = (x @ P.T + (m.reference_voltage * p[0] if p else 0.0)) / m.r_hidden
    dt = m.duration / n
    for _ in range(n):
        z0 = h @ J.T
        z1 = (h + dt * torch.relu(z0)) @ J.T
        h = h + dt * switching_integral(z0, z1)
    loss = ((h @ Q - m.r_output * y) ** 2).mean()
    return dict(zip(names, torch.autograd.grad(loss, (P, J, Q, *p)), strict=True))


def test_ectrain_equals_autograd_of_the_switching_integral_itself():
    """The adjoint's weights are the integral's partials (Euler's theorem for a degree-one
    homogeneous function), so the gradient is that of the map as written."""
    m = model(SwitchingHeun(5))
    x, y = data()
    assert max_rel_err(eads.ectrain_gradients(m, x, y), written_out_gradients(m, x, y, 5)) < 1e-10


def test_ectrain_equals_central_finite_differences():
    m = model(SwitchingHeun(6))
    x, y = data(B=4)
    ec = eads.ectrain_gradients(m, x, y)
    for k in m.conductance_names:
        fd = finite_differences(m, x, y, k, 1e-6)
        assert rel_err(ec[k].reshape(-1), fd) < 1e-6, k  # measured ~1e-10


def test_gradient_converges_at_order_two_without_switching():
    steps = [8, 16, 32, 64]
    errors = []
    for n in steps:
        m, x, y = no_switch_case(SwitchingHeun(n))
        errors.append(max_rel_err(eads.ectrain_gradients(m, x, y), continuous_gradients(m, x, y)))
    assert fitted_order(steps, errors) == pytest.approx(2.0, abs=0.1)  # measured 2.00


def test_gradient_converges_at_order_two_through_diode_switches():
    """The point of the scheme. Measured over 8..64 steps against RK4(16384), seeds 10-12:
    SwitchingHeun 1.9-2.0 (errors 2e-3 -> 4e-5), Heun 0.8-1.3 and irregular."""
    x, y = data(B=8, seed=10)
    ref = eads.ectrain_gradients(model(eads.RK4(8192)), x, y)
    with torch.no_grad():
        m = model(eads.RK4(8))
        tape = m.couple(m.project(x), record=True).tape
    states = tape.aux_buffer.flatten(0, 1)  # (steps * stages, B, H)
    assert bool(((states.amax(0) - states.amin(0)) > 0).any())  # diodes do switch
    steps = [8, 16, 32, 64]
    ours = [max_rel_err(eads.ectrain_gradients(model(SwitchingHeun(n)), x, y), ref) for n in steps]
    heun = [max_rel_err(eads.ectrain_gradients(model(_Heun(n)), x, y), ref) for n in (8, 64)]
    assert fitted_order(steps, ours) > 1.7, ours
    assert ours[-1] < heun[-1] / 10  # 64 steps: ~4e-5 against ~3e-3
    assert ours[0] < 5e-3


class _Heun(eads.solve.AbstractFixedStep):
    """Heun's tableau on the Runge-Kutta path (diode states sampled at the stage points)."""

    a, b, c = ((), (1.0,)), (0.5, 0.5), (0.0, 1.0)


def test_nonideal_circuit_with_switching_heun():
    """An ideal NonIdealEADS takes the switching path like EADS; a non-ideal diode falls back to
    Heun's method on the generic field, where hardware-aware EC-Train equals autograd."""
    m = model(SwitchingHeun(5))
    x, y = data()
    ideal = NonIdealEADS.from_model(m)
    assert max_rel_err(hardware_aware_gradients(ideal, x, y)[1], eads.ectrain_gradients(m, x, y)) \
        < 1e-14  # fmt: skip
    soft = NonIdealEADS.from_model(m, NonIdealities(diode="softplus", diode_sharpness=5.0))
    _, hw = hardware_aware_gradients(soft, x, y)
    _, ref = eads.Backprop().loss_and_gradients(soft, x, y)
    assert max_rel_err(hw, ref) < 1e-10
