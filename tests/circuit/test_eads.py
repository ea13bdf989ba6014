"""The EADS circuit: closed-form equilibria of the linear stages, the coupling stage against
torchdiffeq on the identical model, shapes, gradients, and the boundary checks."""

from __future__ import annotations

import pytest
import torch
from conftest import F64, rel_err
from torchdiffeq import odeint

import eads
from eads.circuit import StageTimes


def make_model(stages="equilibrium", solver=None, seed=0, N=3, H=8, M=2, **kw):
    return eads.EADS(N, H, M, stages=stages, solver=solver, seed=seed, dtype=F64, **kw)


def same_params(src: eads.EADS, dst: eads.EADS) -> eads.EADS:
    dst.load_state_dict(src.state_dict())
    return dst


def inputs(B=5, N=3, seed=1):
    return torch.randn(B, N, generator=torch.Generator().manual_seed(seed), dtype=F64)


# -- linear stages ---------------------------------------------------------------------------------
@pytest.mark.parametrize("r_hidden", [1.0, 2.5])
def test_transient_projection_reaches_closed_form(r_hidden):
    tol = 1e-7
    eq = make_model(r_hidden=r_hidden, settle_tolerance=tol)
    tr = same_params(eq, make_model("transient", r_hidden=r_hidden, settle_tolerance=tol))
    x = inputs()
    h0 = (x @ eq.P.detach().T + eq.reference_voltage * eq.P_ref.detach()) / r_hidden  # closed form
    assert torch.allclose(eq.project(x), h0, rtol=1e-14, atol=1e-14)
    # settled: the node current |P x + p v_ref - r_h h| <= tol, so the voltage is within tol / r_h
    assert float((tr.project(x) - h0).detach().abs().max()) <= 1.01 * tol / r_hidden


@pytest.mark.parametrize("r_output", [1.0, 0.5])
def test_transient_readout_reaches_closed_form(r_output):
    tol = 1e-7
    eq = make_model(r_output=r_output, settle_tolerance=tol)
    tr = same_params(eq, make_model("transient", r_output=r_output, settle_tolerance=tol))
    h = inputs(B=4, N=8, seed=2)
    y = h @ eq.Q.detach() / r_output  # closed form Q^T h / r_y
    assert torch.allclose(eq.readout(h), y, rtol=1e-14, atol=1e-14)
    assert float((tr.readout(h) - y).detach().abs().max()) <= 1.01 * tol / r_output


def test_transient_and_equilibrium_models_agree_within_settle_tolerance():
    tol = 1e-8
    eq = make_model(settle_tolerance=tol)
    tr = same_params(eq, make_model("transient", settle_tolerance=tol))
    x = inputs(B=16)
    y_eq, y_tr = eq(x), tr(x)
    # the projection's settle error (tol) is carried through the coupling (|expm(J T)| ~ e) and
    # the readout (|Q| ~ 1), plus the readout's own tol
    assert float((y_eq - y_tr).detach().abs().max()) < 20 * tol
    assert not torch.equal(y_eq, y_tr)  # the transient really ran


def test_stage_times_match_rc_closed_form():
    """Projection node currents decay as |d| exp(-r t), d = P x + p v_ref: settle time
    log(max|d| / tol) / r."""
    tol, dt = 1e-6, 0.05
    m = make_model(settle_tolerance=tol, settle_dt=dt, r_hidden=2.0)
    x = inputs(B=4)
    times = m.stage_times(x)
    assert isinstance(times, StageTimes)
    assert times.projection.shape == (4,) and times.readout.shape == (4,)
    assert times.coupling == m.duration
    drive = (x @ m.P.detach().T + m.reference_voltage * m.P_ref.detach()).abs().amax(dim=1)
    t_star = torch.log(drive / tol) / 2.0
    assert torch.all(times.projection >= t_star - 1e-9)
    assert torch.all(times.projection <= t_star + dt + 1e-9)


# -- coupling stage vs torchdiffeq -----------------------------------------------------------------
class CouplingField(torch.nn.Module):
    """The coupling stage written independently for torchdiffeq: dh/dt = relu(J h)."""

    def __init__(self, J):
        super().__init__()
        self.J = J

    def forward(self, t, h):
        return torch.relu(h @ self.J.T)


@pytest.mark.parametrize(("ours", "theirs"), [(eads.Euler, "euler"), (eads.Midpoint, "midpoint")])
def test_coupling_matches_torchdiffeq_same_scheme_to_rounding(ours, theirs):
    m = make_model(solver=ours(16), coupling_init=1.5)
    h0 = m.project(inputs(B=6))
    t = torch.tensor([0.0, m.duration], dtype=F64)
    ref = odeint(CouplingField(m.J), h0, t, method=theirs, options={"step_size": 1 / 16})[-1]
    assert rel_err(m.couple(h0).y, ref) < 1e-13


@pytest.fixture(scope="module")
def kinked_coupling():
    """A coupling stage whose diodes switch, and torchdiffeq's tight dopri5 solution of it
    (rtol=1e-12: 2e-10 from a 1e-13 solve)."""
    m = make_model(solver=eads.RK4(32), coupling_init=1.5)
    h0 = m.project(inputs(B=6)).detach()
    t = torch.tensor([0.0, m.duration], dtype=F64)
    f = CouplingField(m.J.detach())
    with torch.no_grad():
        exact = odeint(f, h0, t, method="dopri5", rtol=1e-12, atol=1e-13)[-1]
    return m, h0, exact


def test_coupling_matches_torchdiffeq_rk4_same_step(kinked_coupling):
    """torchdiffeq's "rk4" is the 3/8-rule variant, so the two RK4s agree to their common
    truncation error, not to rounding; both are checked against a tight reference too. Diodes
    switch inside steps here, so both are only ~2nd order (measured 1.1e-5 at 32 steps)."""
    m, h0, exact = kinked_coupling
    t = torch.tensor([0.0, m.duration], dtype=F64)
    with torch.no_grad():
        theirs = odeint(CouplingField(m.J), h0, t, method="rk4", options={"step_size": 1 / 32})[-1]
        ours = m.couple(h0).y
    assert rel_err(ours, theirs) < 1e-4
    assert rel_err(ours, exact) < 1e-4
    assert rel_err(theirs, exact) < 1e-4


def test_coupling_dopri5_matches_torchdiffeq_dopri5_tight(kinked_coupling):
    m, h0, exact = kinked_coupling
    m = same_params(m, make_model(solver=eads.Dopri5(rtol=1e-10, atol=1e-12), coupling_init=1.5))
    with torch.no_grad():
        ours = m.couple(h0).y
    # the diode kinks cost the error estimator some accuracy: measured 1.7e-8 at rtol=1e-10
    assert rel_err(ours, exact) < 1e-7


def test_coupling_is_linear_while_no_diode_switches():
    """With J >= 0 and h0 > 0, J h > 0 all along: h(T) = h0 expm(J T)^T exactly."""
    m = make_model(solver=eads.RK4(64), duration=1.5)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        m.J.copy_(torch.rand(8, 8, generator=g, dtype=F64) * 0.3)
    h0 = torch.rand(4, 8, generator=g, dtype=F64) + 0.1
    exact = h0 @ torch.linalg.matrix_exp(m.J.detach() * 1.5).T
    assert bool((m.coupling_field(0.0, h0)[1]).all())
    assert rel_err(m.couple(h0).y, exact) < 1e-7  # RK4 truncation: measured 6e-9


def test_coupling_trajectory_shapes_and_ends():
    m = make_model(solver=eads.RK4(10))
    x = inputs(B=3)
    times, h = m.coupling_trajectory(x)
    assert times.shape == (11,) and h.shape == (11, 3, 8)
    assert times[0] == 0 and float(times[-1]) == pytest.approx(m.duration)
    assert torch.allclose(h[0], m.project(x))
    assert torch.allclose(h[-1], m.couple(m.project(x)).y)


# -- shapes, dtypes, gradients ---------------------------------------------------------------------
@pytest.mark.parametrize("stages", ["equilibrium", "transient"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_output_shape_dtype_and_single_sample(stages, dtype):
    m = eads.EADS(4, 16, 3, stages=stages, seed=0, dtype=dtype, settle_dt=0.25)
    assert m.P.shape == (16, 4) and m.J.shape == (16, 16) and m.Q.shape == (16, 3)
    y = m(torch.randn(7, 4))
    assert y.shape == (7, 3) and y.dtype == dtype
    assert m(torch.randn(4)).shape == (1, 3)  # one sample as a 1-D tensor


def test_every_parameter_gets_a_gradient():
    m = make_model()
    m(inputs()).pow(2).sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_seeded_construction_repeats_and_seeds_differ():
    a, b, c = make_model(seed=3), make_model(seed=3), make_model(seed=4)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(a.J, c.J)


# -- bad input -------------------------------------------------------------------------------------
def test_blow_up_raises_unstable_circuit_error():
    m = eads.EADS(3, 8, 2, duration=200.0, coupling_init=5.0, seed=0)
    with torch.no_grad():
        m.J.copy_(torch.eye(8) * 5.0)
    with pytest.raises(eads.UnstableCircuitError, match="coupling") as info:
        m(torch.randn(4, 3))
    assert "duration" in str(info.value)


def test_blow_up_beyond_rail_without_overflow():
    m = make_model(duration=5.0, rail=100.0)
    with torch.no_grad():
        m.J.copy_(torch.eye(8, dtype=F64) * 2.0)  # e^10 growth, finite
        m.P.copy_(torch.ones(8, 3, dtype=F64))
    with pytest.raises(eads.UnstableCircuitError, match="rail"):
        m(torch.ones(1, 3, dtype=F64))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_inputs": 0},
        {"n_hidden": -1},
        {"n_outputs": 2.5},
        {"n_hidden": True},
        {"duration": 0.0},
        {"duration": float("nan")},
        {"r_hidden": -1.0},
        {"settle_tolerance": 0.0},
        {"stages": "steady"},
        {"solver": "rk4"},
        {"coupling_init": 0.0},
    ],
)
def test_bad_settings_raise_config_error(kwargs):
    args = {"n_inputs": 3, "n_hidden": 4, "n_outputs": 2} | kwargs
    name = next(iter(kwargs))
    with pytest.raises(eads.ConfigError, match=name):
        eads.EADS(args.pop("n_inputs"), args.pop("n_hidden"), args.pop("n_outputs"), **args)


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (torch.tensor([[0.0, float("nan"), 1.0]]), "NaN"),
        (torch.tensor([[0.0, float("inf"), 1.0]]), "NaN or infinite"),
        (torch.zeros(4, 5), r"shape \(batch, 3\)"),
        (torch.zeros(2, 3, 1), r"shape \(batch, 3\)"),
        (torch.zeros(0, 3), "empty"),
        ([[0.0, 1.0, 2.0]], "torch.Tensor"),
    ],
)
def test_bad_inputs_raise_data_error(x, match):
    m = eads.EADS(3, 4, 2, seed=0)
    with pytest.raises(eads.DataError, match=match):
        m(x)
    with pytest.raises(eads.DataError):
        eads.ectrain_gradients(m, x, torch.zeros(1, 2))


def test_bad_targets_raise_data_error():
    m = eads.EADS(3, 4, 2, seed=0)
    x = torch.zeros(4, 3)
    with pytest.raises(eads.DataError, match="same number of samples"):
        eads.ectrain_gradients(m, x, torch.zeros(3, 2))
    with pytest.raises(eads.DataError, match="y"):
        eads.ectrain_gradients(m, x, torch.zeros(4, 5))
    with pytest.raises(eads.DataError, match="NaN"):
        eads.ectrain_gradients(m, x, torch.full((4, 2), float("nan")))
