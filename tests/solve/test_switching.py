"""SwitchingHeun and the fused rectified-field paths against oracles, in float64.

Oracles: a 20000-point midpoint quadrature of ``relu`` on the linear interpolant (the switching
integral); autograd of the integral (its partials); ``torch.linalg.matrix_exp`` where no diode
switches (the field is then linear); a 16384-step RK4 solve where diodes switch; the generic
``integrate`` on the same field (the fused paths must equal it to rounding).
"""

from __future__ import annotations

import copy
import logging
import math
import pickle

import pytest
import torch
from conftest import F64, fitted_order, rel_err

import eads
from eads.solve import (
    RK4,
    RK38,
    SOLVERS,
    Euler,
    Midpoint,
    SwitchingHeun,
    SwitchingTape,
    Workspace,
    _kernels,
    make_solver,
)
from eads.solve.switching import switching_integral, switching_weights


def relu_field(W):
    return lambda t, y: torch.relu(y @ W.T)


def switching_problem(H=6, B=5, seed=0, scale=1.5):
    """A coupling matrix and starts whose diodes switch along [0, 1] (checked below)."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(H, H, generator=g, dtype=F64) * scale / math.sqrt(H)
    y0 = torch.randn(B, H, generator=g, dtype=F64)
    return W, y0


def linear_problem(H=5, B=4, seed=1):
    """W >= 0 and y0 > 0: every diode conducts throughout, ``y(t) = y0 expm(W t)^T``."""
    g = torch.Generator().manual_seed(seed)
    W = torch.rand(H, H, generator=g, dtype=F64) * 0.4
    y0 = torch.rand(B, H, generator=g, dtype=F64) + 0.1
    return W, y0


# -- the switching integral ----------------------------------------------------------------------
def test_switching_integral_equals_quadrature_of_relu_on_the_interpolant():
    g = torch.Generator().manual_seed(3)
    z0 = torch.randn(400, generator=g, dtype=F64)
    z1 = torch.randn(400, generator=g, dtype=F64)
    z0[:4] = torch.tensor([0.0, 0.0, 1.0, -1.0], dtype=F64)  # zeros and equal ends
    z1[:4] = torch.tensor([0.0, 2.0, 1.0, -1.0], dtype=F64)
    s = (torch.arange(20000, dtype=F64) + 0.5) / 20000  # midpoints
    quad = torch.relu((1 - s)[:, None] * z0 + s[:, None] * z1).mean(0)  # (400,)
    phi = switching_integral(z0, z1)
    # the midpoint rule is exact on linear pieces; its error sits at the kink, <= |dz| / n^2
    assert torch.allclose(phi, quad, rtol=0, atol=1e-8)
    phi0, phi1, s0 = switching_weights(z0, z1)
    assert torch.allclose(phi0 * z0 + phi1 * z1, phi, rtol=1e-14, atol=1e-15)  # Euler's theorem
    assert torch.equal(s0, (z0 > 0).to(F64))
    theta = phi0 + phi1  # the weighted conducting fraction
    assert bool(((theta >= 0) & (theta <= 1)).all())
    both_on, both_off = (z0 > 0) & (z1 > 0), (z0 < 0) & (z1 < 0)
    assert torch.equal(phi0[both_on], torch.full_like(phi0[both_on], 0.5))  # Heun's weights
    assert torch.equal(theta[both_off], torch.zeros_like(theta[both_off]))


def test_switching_weights_are_the_partials_of_the_integral():
    g = torch.Generator().manual_seed(4)
    z0 = torch.randn(300, generator=g, dtype=F64).requires_grad_()
    z1 = torch.randn(300, generator=g, dtype=F64).requires_grad_()
    d0, d1 = torch.autograd.grad(switching_integral(z0, z1).sum(), (z0, z1))
    phi0, phi1, _ = switching_weights(z0.detach(), z1.detach())
    assert torch.allclose(d0, phi0, rtol=1e-13, atol=1e-15)
    assert torch.allclose(d1, phi1, rtol=1e-13, atol=1e-15)


# -- SwitchingHeun as an integrator --------------------------------------------------------------
def test_switching_heun_is_heun_where_no_diode_switches_and_second_order():
    W, y0 = linear_problem()
    exact = y0 @ torch.linalg.matrix_exp(W).T
    steps = [8, 16, 32, 64]
    errors = []
    for n in steps:
        sol = SwitchingHeun(n).integrate_rectified(W, y0, 0.0, 1.0)
        heun = SwitchingHeun(n).integrate(relu_field(W), y0, 0.0, 1.0)  # the Heun tableau
        assert torch.allclose(sol.y, heun.y, rtol=1e-14, atol=0)
        assert sol.n_evals == 2 * n
        errors.append(rel_err(sol.y, exact))
    assert fitted_order(steps, errors) == pytest.approx(2.0, abs=0.1)  # measured 2.00


def test_switching_heun_state_converges_at_order_two_through_switches():
    W, y0 = switching_problem()
    ref = RK4(16384).integrate(relu_field(W), y0, 0.0, 1.0).y
    k = torch.stack([torch.relu(u @ W.T) > 0 for u in
                     RK4(64).integrate(relu_field(W), y0, 0.0, 1.0, record=True).tape.input_buffer
                     .flatten(0, 1)])  # fmt: skip
    assert bool((k.any(0) & ~k.all(0)).any())  # some diode switches
    steps = [8, 16, 32, 64]
    errors = [rel_err(SwitchingHeun(n).integrate_rectified(W, y0, 0.0, 1.0).y, ref) for n in steps]
    assert fitted_order(steps, errors) == pytest.approx(2.0, abs=0.25)  # measured 2.0


@pytest.mark.parametrize("solver", [Euler(7), Midpoint(5), RK4(4), RK38(3), SwitchingHeun(4)])
@pytest.mark.parametrize("record", [False, True])
def test_fused_rectified_path_equals_the_generic_field(solver, record):
    """The preallocated paths do the generic step's arithmetic (Runge-Kutta) or the documented
    scheme (SwitchingHeun, against its differentiable form), to rounding."""
    W, y0 = switching_problem()
    fast = solver.integrate_rectified(W, y0, 0.0, 1.0, record=record)
    if isinstance(solver, SwitchingHeun):
        Wg = W.clone().requires_grad_()
        slow = solver.integrate_rectified(Wg, y0, 0.0, 1.0, record=record)  # autograd form
    else:
        slow = solver.integrate(relu_field(W), y0, 0.0, 1.0)
    assert torch.allclose(fast.y, slow.y.detach(), rtol=1e-14, atol=1e-15)
    assert fast.n_evals == slow.n_evals
    if record:
        tape = fast.tape
        assert tape.n_steps == solver.n_steps and len(tape.inputs) == solver.n_steps
        assert torch.equal(tape.inputs[0][0], y0)
        for inputs, auxes in zip(tape.inputs, tape.aux, strict=True):
            s = auxes[0]  # the diode states at each step's first stage
            assert torch.equal(s, (inputs[0] @ W.T > 0).to(F64))
        if isinstance(solver, SwitchingHeun):
            ref = slow.tape
            assert isinstance(tape, SwitchingTape)
            assert torch.allclose(tape.weights, ref.weights, rtol=1e-13, atol=1e-15)
            assert torch.allclose(tape.input_buffer, ref.input_buffer, rtol=1e-14, atol=1e-15)


class _RepeatedStart(eads.solve.AbstractFixedStep):
    """A tableau whose second stage input is y_n again (a zero row): its tape slot must hold it."""

    a, b, c = ((), (0.0,), (0.5, 0.5)), (0.25, 0.25, 0.5), (0.0, 0.0, 0.5)


def test_fused_path_fills_the_slot_of_a_stage_that_starts_at_y():
    W, y0 = switching_problem()
    solver = _RepeatedStart(3)
    fast = solver.integrate_rectified(W, y0, 0.0, 1.0, record=True)
    slow = solver.integrate(relu_field(W), y0, 0.0, 1.0)
    assert torch.allclose(fast.y, slow.y, rtol=1e-14, atol=1e-15)
    for inputs in fast.tape.inputs:
        assert torch.equal(inputs[1], inputs[0])


def test_rectified_path_under_autograd_is_differentiable():
    W, y0 = switching_problem()
    Wg = W.clone().requires_grad_()
    for solver in (RK4(4), SwitchingHeun(4)):
        y = solver.integrate_rectified(Wg, y0, 0.0, 1.0).y
        assert y.requires_grad
        (g,) = torch.autograd.grad(y.sum(), Wg)
        assert torch.isfinite(g).all() and float(g.abs().sum()) > 0


def test_tape_bytes_and_workspace_reuse():
    W, y0 = switching_problem(H=6, B=5)
    solver = SwitchingHeun(3)
    tape = solver.integrate_rectified(W, y0, 0.0, 1.0, record=True).tape
    assert tape.nbytes == 5 * 3 * 5 * 6 * 8  # h, h~, two weights, s0 per step
    again = solver.integrate_rectified(W, y0, 0.0, 1.0, record=True).tape
    assert again.input_buffer.data_ptr() == tape.input_buffer.data_ptr()  # allocated once
    other = solver.integrate_rectified(W, y0[:2], 0.0, 1.0, record=True).tape
    assert other.input_buffer.data_ptr() != tape.input_buffer.data_ptr()
    rk = RK4(2).integrate_rectified(W, y0, 0.0, 1.0, record=True).tape
    assert rk.nbytes == 2 * 2 * 4 * 5 * 6 * 8  # stage inputs and diode states
    assert copy.deepcopy(solver).workspace.nbytes == 0  # copies do not share or carry buffers
    assert pickle.loads(pickle.dumps(solver)).workspace.nbytes == 0
    ws = Workspace(capacity=2)
    for n in range(4):
        ws.get("x", (n + 1,), y0)
    assert len(ws._buffers) == 2


def test_switching_heun_in_the_registry_and_bad_settings():
    assert SOLVERS["switching-heun"] is SwitchingHeun
    solver = make_solver("switching-heun", n_steps=4)
    assert isinstance(solver, SwitchingHeun) and solver.n_steps == 4 and solver.order == 2
    assert repr(SwitchingHeun(3, compile=True)) == "SwitchingHeun(n_steps=3, compile=True)"
    with pytest.raises(eads.ConfigError, match="compile"):
        SwitchingHeun(4, compile="yes")
    with pytest.raises(eads.ConfigError, match="n_steps"):
        SwitchingHeun(0)


def test_compile_failure_falls_back_to_eager_kernels(monkeypatch, caplog):
    """Where torch.compile is unavailable the compiled solver gives the eager result."""

    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setattr(_kernels, "_compiled", None)
    monkeypatch.setattr(_kernels, "_failed", False)
    W, y0 = switching_problem()
    with caplog.at_level(logging.WARNING, logger="eads.solve._kernels"):
        sol = SwitchingHeun(4, compile=True).integrate_rectified(W, y0, 0.0, 1.0, record=True)
    eager = SwitchingHeun(4).integrate_rectified(W, y0, 0.0, 1.0, record=True)
    assert torch.equal(sol.y, eager.y)
    assert torch.equal(sol.tape.weights, eager.tape.weights)
    assert not sol.tape.fused
    assert "eager" in caplog.text


@pytest.mark.slow
def test_compiled_kernels_equal_the_eager_ones():
    """~30 s on first use (inductor compiles five kernels; cached on disk after that)."""
    if _kernels.compiled() is None:
        pytest.skip("torch.compile is not available in this installation")
    W, y0 = switching_problem(H=16, B=8)
    for record in (False, True):
        fused = SwitchingHeun(4, compile=True).integrate_rectified(W, y0, 0.0, 1.0, record=record)
        eager = SwitchingHeun(4).integrate_rectified(W, y0, 0.0, 1.0, record=record)
        assert torch.allclose(fused.y, eager.y, rtol=1e-13, atol=1e-15)
        if record:
            assert fused.tape.fused
            assert torch.allclose(fused.tape.weights, eager.tape.weights, rtol=1e-12, atol=1e-14)
    m = eads.EADS(3, 16, 2, solver=SwitchingHeun(4, compile=True), seed=0, dtype=F64)
    e = eads.EADS(3, 16, 2, solver=SwitchingHeun(4), seed=0, dtype=F64)
    x, y = torch.randn(8, 3, dtype=F64), torch.randn(8, 2, dtype=F64)
    gm, ge = eads.ectrain_gradients(m, x, y), eads.ectrain_gradients(e, x, y)
    assert all(torch.allclose(gm[k], ge[k], rtol=1e-12, atol=1e-15) for k in ge)
