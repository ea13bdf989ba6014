"""Non-idealities: quantisation bound, Euler-Maruyama oracles, hardware-aware EC-Train."""

from __future__ import annotations

import pytest
import torch

from eads import EADS, ConfigError, Euler, TrainConfig, fit
from eads.circuit.nonideal import (
    NonIdealEADS,
    NonIdealities,
    hardware_aware_gradients,
    quantize,
)
from eads.hardware import CircuitConstants, HardwareAwareECTrain
from eads.hardware.constants import BOLTZMANN_J_PER_K
from eads.solve.sde import EulerMaruyama

F64 = torch.float64


@pytest.mark.parametrize("bits", [1, 2, 3, 5, 8, 12])
def test_quantization_error_at_most_two_to_minus_bits_of_range(bits):
    low, high = -1.5, 2.5
    w = torch.linspace(low, high, 10_001, dtype=F64)
    q = quantize(w, bits, low, high)
    assert (q - w).abs().max() <= (high - low) * 2.0**-bits + 1e-12
    assert len(torch.unique(q)) <= 2**bits


def test_quantized_circuit_conductances_within_bound():
    m = EADS(5, 12, 3, seed=1, dtype=F64)
    bits = 4
    nm = NonIdealEADS.from_model(m, NonIdealities(conductance_bits=bits))
    assert nm.conductance_names == ("P", "J", "Q", "P_ref")
    for name in nm.conductance_names:  # the reference node's conductances are quantised too
        w = getattr(m, name).detach()
        span = 2 * float(w.abs().max())
        err = (nm.device_value(name) - w).abs().max()
        assert err <= span * 2.0**-bits + 1e-12


def test_bad_nonidealities_raise():
    with pytest.raises(ConfigError, match="conductance_bits"):
        NonIdealities(conductance_bits=0)
    with pytest.raises(ConfigError, match="variation_sigma"):
        NonIdealities(variation_sigma=-0.1)
    with pytest.raises(ConfigError, match="diode"):
        NonIdealities(diode="zener")
    with pytest.raises(ConfigError, match="bits"):
        quantize(torch.zeros(3), 0, -1.0, 1.0)
    with pytest.raises(ConfigError, match="noise_std"):
        EulerMaruyama(4, noise_std=-1.0)


def test_zero_noise_reproduces_euler_exactly():
    m = EADS(4, 10, 2, seed=0, dtype=F64, solver=Euler(16))
    x = torch.randn(6, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    nm = NonIdealEADS.from_model(m, NonIdealities(noise_std=0.0))
    assert torch.equal(nm(x), m(x))
    f = lambda t, h: torch.relu(h @ m.J.detach().T)  # noqa: E731
    h0 = m.project(x).detach()
    em = EulerMaruyama(16, noise_std=0.0, seed=3).integrate(f, h0, 0.0, 1.0)
    assert torch.equal(em.y, Euler(16).integrate(f, h0, 0.0, 1.0).y)


def test_stationary_variance_of_rc_node_is_kT_over_C():
    """dv = -r v dt + sigma dW with sigma from kT/C: Var(v) V_s^2 = kT/C within sampling error."""
    circuit = CircuitConstants()
    r, dt = 2.0, 0.01
    sigma = circuit.thermal_noise_sigma(r)
    n_nodes, n_steps = 4000, 400  # from v = 0: r t = 8, so the start is forgotten (e^-16)
    em = EulerMaruyama(n_steps, noise_std=sigma, seed=0)
    v0 = torch.zeros(n_nodes, 1, dtype=F64)
    v = em.integrate(lambda t, v: -r * v, v0, 0.0, n_steps * dt).y
    var_units = float(v.var())
    discrete = sigma**2 / (r * (2 - r * dt))  # Euler-Maruyama's exact stationary variance
    assert var_units == pytest.approx(discrete, rel=4 * (2 / n_nodes) ** 0.5)
    kT_over_C = BOLTZMANN_J_PER_K * circuit.temperature_k / circuit.capacitance_f
    var_volts = var_units * circuit.volts_per_unit**2
    assert var_volts == pytest.approx(kT_over_C, rel=4 * (2 / n_nodes) ** 0.5 + r * dt)


def test_noise_changes_output_and_is_seeded():
    m = EADS(3, 8, 2, seed=0, dtype=F64, solver=Euler(8))
    x = torch.randn(4, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    a = NonIdealEADS.from_model(m, NonIdealities(noise_std=0.1, seed=5))(x)
    b = NonIdealEADS.from_model(m, NonIdealities(noise_std=0.1, seed=5))(x)
    assert torch.equal(a, b) and not torch.allclose(a, m(x))


@pytest.mark.parametrize(
    "ni",
    [
        NonIdealities(conductance_bits=3),
        NonIdealities(variation_sigma=0.2),
        NonIdealities(diode="softplus", diode_sharpness=5.0),
        NonIdealities(diode="threshold", diode_threshold=0.1),
        NonIdealities(rail=2.0),
        NonIdealities(conductance_bits=4, variation_sigma=0.1, diode="softplus"),
    ],
)
def test_hardware_aware_adjoint_matches_autograd_through_effective_circuit(ni):
    """The core adjoint, with the rectifier's derivative as aux, is exact for the chip."""
    m = EADS(4, 12, 3, seed=2, dtype=F64)
    nm = NonIdealEADS.from_model(m, ni)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 4, dtype=F64, generator=g), torch.randn(8, 3, dtype=F64, generator=g)
    loss, grads = hardware_aware_gradients(nm, x, y)
    h = nm.couple(nm.project(x)).y
    ref = ((h @ nm.effective("Q") - nm.r_output * y) ** 2).mean()
    ref.backward()
    assert float(loss) == pytest.approx(float(ref.detach()), rel=1e-12)
    # the rail clamps projection nodes that the core adjoint's dL/dP does not see (documented)
    names = ("J", "Q") if ni.rail is not None else nm.conductance_names
    assert "P_ref" in grads
    for name in names:
        torch.testing.assert_close(grads[name], getattr(nm, name).grad, rtol=1e-9, atol=1e-12)
    # the programmed values are untouched by the swap
    assert torch.equal(nm.P.detach(), m.P.detach())
    assert torch.equal(nm.P_ref.detach(), m.P_ref.detach())


def test_hardware_aware_ectrain_lowers_the_loss():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 4, generator=g)
    y = torch.tanh(x[:, :2] - 0.5 * x[:, 2:])
    m = NonIdealEADS(
        4, 16, 2, seed=0,
        nonideal=NonIdealities(conductance_bits=5, variation_sigma=0.1, noise_std=0.02,
                               diode="softplus"),
    )  # fmt: skip
    trainer = HardwareAwareECTrain()
    before = float(trainer.loss_and_gradients(m, x, y)[0])
    hist = fit(m, trainer, (x, y), None, TrainConfig(epochs=15, lr=1e-2, batch_size=16),
               progress=False)  # fmt: skip
    assert hist.train_loss[-1] < 0.6 * before
    with pytest.raises(ConfigError, match="NonIdealEADS"):
        trainer.check_model(EADS(4, 8, 2))
